"""Channel Lipschitzness-based Pruning, CLP (Zheng, Zhang, Wang, Zhao and Zhang, 2022, "Data-Free Backdoor
Removal Based on Channel Lipschitzness", ECCV).

Data-free: for every convolution followed by batch norm, the upper bound of each output channel's Lipschitz
constant (UCLC) is the largest singular value of the channel's kernel (reshaped ``C_in × k·k``) scaled by
the BN gain ``|γ_c| / sqrt(σ²_c + ε)``. Backdoor channels react strongly to a tiny trigger and so have
outlying UCLC: within each layer, channels with ``UCLC > mean + u·std`` are pruned by zeroing their BN
weight and bias (persistent in ``state_dict``, as in the authors' code).

Values: u = 3 is the paper's CIFAR-10 default (its Fig. 5 sweeps u ∈ [0, 10]; BackdoorBench
``config/defense/clp``: ``u: 3``). No retraining: CLP is data-free and this benchmark gives it no clean
data (SPEC §5); the AdvrBD paper mentions a repair phase whose length was lost in extraction, and a repair
on the untrusted data would re-learn the backdoor, so none is done.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import nn

from ..types import DefenseResult
from ._common import check_range, clone_model
from .base import DEFENSES, Defense, DefenseContext


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d]]:
    """``(bn name, conv, bn)`` for every BatchNorm2d whose closest preceding Conv2d (in registration order)
    has as many output channels (the authors' pairing rule)."""
    pairs, conv = [], None
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            conv = m
        elif isinstance(m, nn.BatchNorm2d) and m.affine and conv is not None and conv.out_channels == m.num_features:
            pairs.append((name, conv, m))
            conv = None
    return pairs


@torch.no_grad()
def channel_lipschitz(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """UCLC of each output channel: spectral norm of its BN-scaled kernel (float32, ``C_out``)."""
    w = conv.weight.detach().float()
    w = w.reshape(w.shape[0], w.shape[1], -1)  # C_out × C_in/groups × k·k
    gain = bn.weight.detach().float().abs() / torch.sqrt(bn.running_var.float() + bn.eps)
    return torch.linalg.matrix_norm(w, ord=2).cpu() * gain.cpu()


@DEFENSES.register("clp", "data-free pruning of channels with outlying Lipschitz upper bounds (Zheng et al., 2022)")
@dataclass
class CLP(Defense):
    """Prune, in every conv–BN pair, channels whose UCLC exceeds mean + u·std of the layer."""

    name = "clp"

    # Zheng et al. (2022): u = 3 on CIFAR-10 (default of the authors' code and of BackdoorBench).
    u: float = field(default=3.0, metadata={"doc": "threshold in standard deviations above the layer's mean UCLC"})

    def __post_init__(self) -> None:
        check_range("u", self.u, 0, 1e3)

    def run(self, ctx: DefenseContext) -> DefenseResult:
        t0 = time.perf_counter()
        model = clone_model(ctx.backdoored_model())
        layers, total, pruned_total = [], 0, 0
        for name, conv, bn in conv_bn_pairs(model):
            lips = channel_lipschitz(conv, bn)
            if lips.numel() < 2:
                continue
            thr = lips.mean() + self.u * lips.std()
            idx = (lips > thr).nonzero().flatten()
            if idx.numel():
                with torch.no_grad():
                    bn.weight[idx.to(bn.weight.device)] = 0
                    bn.bias[idx.to(bn.bias.device)] = 0
            layers.append({"layer": name, "channels": int(lips.numel()), "pruned": idx.tolist(),
                           "threshold": float(thr), "max_uclc": float(lips.max())})
            total += int(lips.numel())
            pruned_total += int(idx.numel())
        info = {"layers": layers, "channels": total, "pruned": pruned_total, "seconds": time.perf_counter() - t0}
        return DefenseResult(model=model, info=info)
