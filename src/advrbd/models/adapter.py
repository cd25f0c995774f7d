"""Any ``nn.Module`` as an advrbd model: loading a user's factory, the penultimate activations of a model
without ``features()``, and the check that refuses an unusable model before any training.

The contract every defense relies on: float [0,1] NCHW in, logits ``N×K`` out. Defenses that read
penultimate activations (AdvrBD's latent guard, SCAn, DBR, Fine-Pruning) use ``model.features(x)`` when the
model has it, else the input of its last ``nn.Linear`` (a forward hook): for a classifier ending in a linear
layer that input is exactly the penultimate representation.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import BadInputError


def load_factory(spec: str) -> Callable[..., nn.Module]:
    """The callable named by ``package.module:callable`` or ``path/to/file.py:callable``."""
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise BadInputError(f"model {spec!r}: expected package.module:callable or path/to/file.py:callable")
    try:
        if target.endswith(".py") or "/" in target or "\\" in target:
            path = Path(target).expanduser().resolve()
            if not path.is_file():
                raise BadInputError(f"model file {target} not found")
            # a stable, unique module name per file, so that the same file imports once
            name = "advrbd_user_model_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
            module = sys.modules.get(name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = module
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
        else:
            module = importlib.import_module(target)
        fn = getattr(module, attr)
    except BadInputError:
        raise
    except (ImportError, AttributeError, SyntaxError, OSError) as e:
        raise BadInputError(f"cannot load model {spec!r}: {type(e).__name__}: {e}") from None
    if not callable(fn):
        raise BadInputError(f"model {spec!r}: {attr} is not callable")
    return fn


def last_linear(model: nn.Module) -> nn.Linear | None:
    """``model.head`` when it is linear (advrbd's own models), else the last ``nn.Linear`` registered."""
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Penultimate activations ``N×D`` of ``x``: ``model.features(x)`` or the input of the last linear layer."""
    if callable(getattr(model, "features", None)):
        return model.features(x).flatten(1)
    layer = last_linear(model)
    if layer is None:
        raise BadInputError(f"{type(model).__name__} has neither features() nor an nn.Linear layer")
    seen: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda mod, inputs, output: seen.append(inputs[0]))
    try:
        model(x)
    finally:
        handle.remove()
    if not seen:
        raise BadInputError(f"the last nn.Linear of {type(model).__name__} was not used by its forward()")
    return seen[-1].flatten(1)


def materialize(model: nn.Module, shape: tuple[int, int, int]) -> nn.Module:
    """Initialise lazy layers (``nn.LazyLinear`` ...) with one forward pass on zeros, in eval mode so that
    BatchNorm statistics are untouched: an optimizer cannot be built over uninitialised parameters."""
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
        was = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *shape))
        model.train(was)
    return model


def check_model(model: nn.Module, shape: tuple[int, int, int], num_classes: int, name: str = "model",
                needs_features: bool = True) -> None:
    """Refuse (``BadInputError``, one line) a model that cannot be used: it must map two float [0,1]
    ``C×H×W`` images to logits ``2×num_classes``, have parameters to train, and (``needs_features``) expose
    penultimate activations. Runs on a copy on the CPU; the caller's model and random state are untouched."""
    import copy

    if not isinstance(model, nn.Module):
        raise BadInputError(f"{name} is a {type(model).__name__}, not a torch.nn.Module")
    probe = copy.deepcopy(model).cpu()
    probe.train()  # BatchNorm needs a batch of 2 in training mode, the mode defenses train in
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.random.fork_rng(devices=[]):
        try:
            out = probe(x)
        except Exception as e:  # noqa: BLE001 - any failure of the user's forward is a bad model
            raise BadInputError(f"{name} cannot run on {shape[0]}×{shape[1]}×{shape[2]} images: "
                                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        if not isinstance(out, torch.Tensor) or out.shape != (2, num_classes):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise BadInputError(f"{name} must return logits of shape (N, {num_classes}) for {num_classes} classes; "
                                f"got {got}")
        if not any(p.requires_grad for p in probe.parameters()):
            raise BadInputError(f"{name} has no trainable parameters")
        if needs_features:
            try:
                feats = penultimate(probe, x)
            except BadInputError as e:
                raise BadInputError(f"{name}: {e}; defenses read penultimate activations from features(x) or "
                                    f"the input of the last nn.Linear") from None
            if feats.shape[0] != 2:
                raise BadInputError(f"{name}: penultimate activations have batch size {feats.shape[0]}, not 2")
