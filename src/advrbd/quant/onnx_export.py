"""Deployed artefacts: the model as ONNX, quantized with ONNX Runtime's own tools (paper 000's question, asked
of the model a user ships rather than of a simulation).

- ``fp32``: ``torch.onnx.export`` (TorchScript-based exporter, ``dynamo=False``: it needs no onnxscript and
  exports every advrbd model), normalization included (it is the model's first layer), dynamic batch.
  Validated with ``onnx.checker`` and by ONNX Runtime's outputs against PyTorch's (``FP32_ATOL``/``FP32_RTOL``).
- ``int8``: ``onnxruntime.quantization.quantize_static``, QDQ format, per-channel INT8 weights, INT8
  activations calibrated (MinMax) on a few hundred training images. ORT's CPU provider fuses QDQ groups into
  integer kernels where its fusions apply (fastnet ×½: 3 of 7 convolutions become QLinearConv, the Gemm QGemm)
  and runs the rest as dequantize → float op → quantize, the same values up to float rounding.
- ``int4-sim``: the same tool with per-channel INT4 weights (W4A8). No runtime here has INT4 convolution
  kernels: ORT dequantizes the INT4 weights and convolves in float, so INT4 is *simulated* (as in paper 000)
  and named so. The rounding is ORT's in both quantized artefacts; advrbd rounds nothing here.
"""
from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# ORT and PyTorch both compute in float32 but in other orders; measured on fastnet ×½: 7.5e-9 max |Δlogit|.
FP32_ATOL, FP32_RTOL = 1e-4, 1e-4
OPSET = 17
PRECISIONS = ("fp32", "int8", "int4-sim")
_ALIASES = {"fp32": "fp32", "int8": "int8", "int4": "int4-sim", "int4-sim": "int4-sim"}


class ExportError(RuntimeError):
    """The exported file failed validation."""


def parse_precisions(text: str | list[str]) -> list[str]:
    """``"fp32,int8,int4"`` -> ``["fp32", "int8", "int4-sim"]`` (``int4`` means the simulated INT4)."""
    from ..errors import BadInputError

    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in _ALIASES]
    if bad or not items:
        raise BadInputError(f"unknown precision(s) {bad or text!r}; known: fp32, int8, int4 (= int4-sim)")
    return list(dict.fromkeys(_ALIASES[t] for t in items))


def session(path: str | Path):
    """An ONNX Runtime CPU session with as many threads as torch uses (the machine is shared)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(sess, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits (float32 ``N×K``) of an ONNX session on float [0,1] NCHW images."""
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: np.ascontiguousarray(x[i:i + batch_size], dtype=np.float32)})[0]
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def _replace_atomically(write, out: Path) -> None:
    """``write(tmp_path)`` then rename over ``out``, so a failed export never leaves half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def export_onnx(model: torch.nn.Module, out: str | Path, image_shape: tuple[int, int, int],
                probe: torch.Tensor | None = None) -> dict:
    """Export ``model`` (float [0,1] NCHW in, logits out) to ``out`` and validate it; returns the validation
    record ``{"max_abs_diff", "atol", "rtol", "n_probe", "opset"}``. Raises :class:`ExportError`."""
    import onnx

    out = Path(out)
    m = copy.deepcopy(model).float().cpu().eval()
    dummy = torch.rand(1, *image_shape, generator=torch.Generator().manual_seed(0))

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (dummy,), str(tmp), dynamo=False, opset_version=OPSET, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        onnx.checker.check_model(onnx.load(str(tmp)), full_check=True)

    _replace_atomically(write, out)
    if probe is None:
        probe = torch.rand(16, *image_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = m(probe.float()).numpy()
    got = run_onnx(session(out), probe.numpy())
    diff = float(np.abs(got - ref).max())
    if not np.allclose(got, ref, atol=FP32_ATOL, rtol=FP32_RTOL):
        out.unlink(missing_ok=True)
        raise ExportError(f"ONNX Runtime's FP32 logits differ from PyTorch's by {diff:.3g} "
                          f"(tolerance atol {FP32_ATOL}, rtol {FP32_RTOL})")
    return {"max_abs_diff": diff, "atol": FP32_ATOL, "rtol": FP32_RTOL, "n_probe": len(probe), "opset": OPSET}


class _Reader:
    """Calibration batches for ``quantize_static`` (the CalibrationDataReader protocol)."""

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int = 32):
        self.batches = iter([{input_name: images[i:i + batch_size]} for i in range(0, len(images), batch_size)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # pragma: no cover - called by some ORT versions' calibrators only
        pass


def quantize_onnx(fp32_path: str | Path, out: str | Path, calibration: torch.Tensor, precision: str = "int8") -> dict:
    """Static QDQ quantization of the FP32 ONNX file by ONNX Runtime, calibrated on ``calibration`` (float
    [0,1] NCHW training images). ``precision``: ``int8`` or ``int4-sim`` (INT4 weights, INT8 activations)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    precision = parse_precisions(precision)[0]
    if precision == "fp32":
        raise ValueError("quantize_onnx: precision must be int8 or int4-sim")
    out = Path(out)
    x = calibration.float().cpu().numpy().astype(np.float32)
    name = onnx.load(str(fp32_path)).graph.input[0].name
    weight = QuantType.QInt8 if precision == "int8" else QuantType.QInt4

    def write(tmp: Path) -> None:
        pre = tmp.with_suffix(".pre.onnx")
        try:
            quant_pre_process(str(fp32_path), str(pre))  # shape inference + ORT's graph fusions (e.g. Conv+BN)
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # ORT logs a warning for every rank-1 BatchNorm weight it skips
            try:
                quantize_static(str(pre), str(tmp), _Reader(x, name), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=weight,
                                calibrate_method=CalibrationMethod.MinMax)
            finally:
                root.setLevel(level)
        finally:
            pre.unlink(missing_ok=True)
        session(tmp)  # it must load in the runtime that serves it

    _replace_atomically(write, out)
    return {"precision": precision, "n_calibration": len(x), "format": "QDQ", "per_channel_weights": True,
            "weights": "int8" if precision == "int8" else "int4", "activations": "int8", "calibration": "minmax",
            "executed_as": "ORT CPU: integer kernels where ORT fuses the QDQ groups, else dequantize-op-quantize"
            if precision == "int8"
            else "INT4 weights dequantized to float by ORT (no INT4 convolution kernel): simulated INT4"}
