"""A differentiable re-execution of a (QDQ-quantized) ONNX classifier in PyTorch, for gradient-based
detectors (Neural Cleanse) on the *deployed* artefact: ONNX Runtime computes no gradients.

Weights are the file's own integers times its scales (DequantizeLinear of constants: exact); activations go
through QuantizeLinear → DequantizeLinear with the file's calibrated scales and zero points, rounded half to
even as ONNX specifies, with a straight-through gradient. ACC / ASR are never measured here, only with ORT;
``max_logit_diff`` checks this re-execution against ORT on the same file. Covers the operators the exporter
emits for advrbd's models; an unknown operator raises ``NotImplementedError`` naming it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_QRANGE = {np.dtype("int8"): (-128, 127), np.dtype("uint8"): (0, 255), np.dtype("int32"): (-2**31, 2**31 - 1)}


def _qrange(zp: np.ndarray) -> tuple[int, int]:
    if zp.dtype in _QRANGE:
        return _QRANGE[zp.dtype]
    name = str(zp.dtype)
    if name == "int4":
        return -8, 7
    if name == "uint4":
        return 0, 15
    raise NotImplementedError(f"quantized type {name}")


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _along(v: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-channel parameter ``v`` shaped to broadcast along ``axis`` of ``x`` (scalars unchanged)."""
    if v.ndim == 0 or v.numel() == 1:
        return v.reshape(())
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    return v.reshape(shape)


def _pads(p: list[int]) -> tuple[list[int], list[int] | None]:
    """ONNX pads ``[begin..., end...]`` → (symmetric padding, or None and an F.pad spec)."""
    k = len(p) // 2
    begin, end = p[:k], p[k:]
    if begin == end:
        return begin, None
    spec: list[int] = []
    for b, e in reversed(list(zip(begin, end))):
        spec += [b, e]
    return [0] * k, spec


class OnnxTorch(nn.Module):
    """``forward(x)`` runs the ONNX graph of ``path`` with torch ops (float32, CPU or CUDA)."""

    def __init__(self, path: str | Path):
        import onnx
        from onnx import numpy_helper

        super().__init__()
        model = onnx.load(str(path))
        g = model.graph
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n)) for n in g.node if n.op_type != "Constant"]
        self.input_name, self.output_name = g.input[0].name, g.output[0].name
        self.names: dict[str, str] = {}
        self.ranges: dict[str, tuple[int, int]] = {}
        consts = [n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute[0].name == "value"]
        for n, t in zip([n for n in g.node if n.op_type == "Constant"], consts):
            t.name = n.output[0]
        if len(consts) != sum(n.op_type == "Constant" for n in g.node):
            raise NotImplementedError("Constant nodes other than value=tensor")
        for i, init in enumerate(list(g.initializer) + consts):
            arr = numpy_helper.to_array(init)
            if arr.dtype.kind not in "fc" and init.name.endswith("zero_point"):
                self.ranges[init.name] = _qrange(arr)
            t = torch.from_numpy(np.asarray(arr.astype(np.float32) if arr.dtype.kind not in "i" or str(arr.dtype)
                                            in ("int4", "uint4") else arr.astype(np.int64)).copy())
            if t.dtype == torch.float64:
                t = t.float()
            self.register_buffer(f"t{i}", t)
            self.names[init.name] = f"t{i}"

    def _const(self, name: str) -> torch.Tensor:
        return getattr(self, self.names[name])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x.float()}

        def get(name: str):
            if name == "":
                return None
            return env[name] if name in env else self._const(name)

        for op, ins, outs, a in self.nodes:
            args = [get(n) for n in ins]
            env[outs[0]] = self._op(op, ins, args, a)
        return env[self.output_name]

    def _op(self, op: str, ins: list[str], args: list, a: dict) -> torch.Tensor:
        if op == "QuantizeLinear":
            x, s, zp = args[0], args[1], args[2]
            lo, hi = self.ranges.get(ins[2], (-128, 127)) if len(ins) > 2 else (0, 255)
            axis = a.get("axis", 1)
            v = x / _along(s, x, axis) + _along(zp.float(), x, axis)
            # round half to even (torch.round) and saturate, as ONNX QuantizeLinear; straight-through gradient
            return v + (v.round().clamp(lo, hi) - v).detach()
        if op == "DequantizeLinear":
            q, s = args[0].float(), args[1]
            zp = args[2].float() if len(args) > 2 and args[2] is not None else torch.zeros(())
            axis = a.get("axis", 1)
            return (q - _along(zp, q, axis)) * _along(s, q, axis)
        if op == "Conv":
            pad, spec = _pads(a.get("pads", [0] * (2 * (args[1].ndim - 2))))
            x = F.pad(args[0], spec) if spec else args[0]
            return F.conv2d(x, args[1], args[2] if len(args) > 2 else None, a.get("strides", 1), pad,
                            a.get("dilations", 1), a.get("group", 1))
        if op in ("MaxPool", "AveragePool"):
            pad, spec = _pads(a.get("pads", [0, 0, 0, 0]))
            k, s = a["kernel_shape"], a.get("strides", a["kernel_shape"])
            if op == "MaxPool":
                x = F.pad(args[0], spec, value=-math.inf) if spec else args[0]
                return F.max_pool2d(x, k, s, pad, a.get("dilations", 1), bool(a.get("ceil_mode", 0)))
            x = F.pad(args[0], spec) if spec else args[0]
            return F.avg_pool2d(x, k, s, pad, bool(a.get("ceil_mode", 0)), bool(a.get("count_include_pad", 0)))
        if op == "GlobalAveragePool":
            return args[0].mean((2, 3), keepdim=True)
        if op == "GlobalMaxPool":
            return args[0].amax((2, 3), keepdim=True)
        if op == "BatchNormalization":
            x, w, b, m, v = args[:5]
            return F.batch_norm(x, m, v, w, b, False, 0.0, a.get("epsilon", 1e-5))
        if op == "Gemm":
            A = args[0].transpose(-1, -2) if a.get("transA", 0) else args[0]
            B = args[1].transpose(-1, -2) if a.get("transB", 0) else args[1]
            y = a.get("alpha", 1.0) * (A @ B)
            return y + a.get("beta", 1.0) * args[2] if len(args) > 2 and args[2] is not None else y
        if op == "Flatten":
            ax = a.get("axis", 1)
            return args[0].reshape(int(np.prod(args[0].shape[:ax])), -1)
        if op == "Reshape":
            return args[0].reshape([int(d) if int(d) != 0 else args[0].shape[i] for i, d in enumerate(args[1].tolist())])
        if op == "Clip":
            lo = args[1] if len(args) > 1 and args[1] is not None else a.get("min")
            hi = args[2] if len(args) > 2 and args[2] is not None else a.get("max")
            return args[0].clamp(lo, hi)
        simple = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "MatMul": torch.matmul}
        if op in simple:
            return simple[op](args[0], args[1])
        unary = {"Relu": torch.relu, "Erf": torch.erf, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
                 "Identity": lambda t: t}
        if op in unary:
            return unary[op](args[0])
        raise NotImplementedError(f"ONNX operator {op} is not supported by advrbd's differentiable re-execution")


def max_logit_diff(path: str | Path, x: torch.Tensor) -> tuple[float, float]:
    """(max |logit difference|, argmax agreement) between this re-execution and ONNX Runtime on ``x``."""
    from .onnx_export import run_onnx, session

    with torch.no_grad():
        ours = OnnxTorch(path)(x).numpy()
    ref = run_onnx(session(path), x.numpy())
    return float(np.abs(ours - ref).max()), float((ours.argmax(1) == ref.argmax(1)).mean())
