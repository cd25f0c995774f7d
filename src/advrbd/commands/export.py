"""advrbd export: a run's model as a deployable ONNX file, optionally quantized by ONNX Runtime."""
from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import BadInputError
from .common import add_output_flags, emit, load_run_model

HELP = "export a run's model to ONNX (normalization included, dynamic batch), optionally INT8 / INT4-sim quantized"
EXAMPLE = """advrbd export --run runs/defended --format onnx --out model.onnx
advrbd export --run runs/defended --format onnx --quantize int8 --out model-int8.onnx"""


def add_arguments(p) -> None:
    p.add_argument("--run", required=True, help="run directory written by train or defend")
    p.add_argument("--format", default="onnx", choices=("onnx",), help="output format (onnx)")
    p.add_argument("--quantize", choices=("int8", "int4", "int4-sim"), default=None,
                   help="ONNX Runtime static quantization (QDQ, per-channel weights, INT8 activations calibrated on "
                   "training images); int4 = int4-sim: INT4 weights that ORT runs dequantized (no INT4 conv kernels)")
    p.add_argument("--calibration", type=int, default=256, metavar="N", help="training images to calibrate on (256)")
    p.add_argument("--data", metavar="SPEC", help="training data for calibration and validation (default: the run's)")
    p.add_argument("--out", required=True, metavar="FILE", help="output .onnx file")
    add_output_flags(p)


def training_images(cfg: dict, spec: str | None = None, resize: int | None = None):
    """The run's training split (poisoned or not: it is what the user has), for calibration."""
    from ..data import load_dataset

    spec = spec or cfg.get("data")
    if not spec:
        raise BadInputError("the run does not record its data; pass --data SPEC")
    root = Path(spec.split(":", 1)[-1])
    if (root / "manifest.json").is_file():
        from ..attacks import load_poisoned

        return load_poisoned(root)[1].train
    return load_dataset(spec, resize=resize or cfg.get("resize")).train


def run(args) -> int:
    from ..quant.deployed import calibration_images
    from ..quant.onnx_export import export_onnx, parse_precisions, quantize_onnx

    model, cfg = load_run_model(args.run)
    out = Path(args.out)
    if out.is_dir():
        raise BadInputError(f"--out {out} is a directory; give a file name")
    train = training_images(cfg, args.data)
    if train.shape[0] != cfg.get("in_channels", train.shape[0]) or train.num_classes != cfg["num_classes"]:
        raise BadInputError(f"the data ({train.shape[0]} channels, {train.num_classes} classes) do not fit the model")
    if args.calibration < 1:
        raise BadInputError("--calibration must be at least 1")
    calib = calibration_images(train, args.calibration)
    record: dict = {"out": str(out), "format": "onnx", "run": str(args.run)}
    if args.quantize is None:
        record["validation"] = export_onnx(model, out, train.shape, probe=calib[:32])
        record["precision"] = "fp32"
    else:
        precision = parse_precisions(args.quantize)[0]
        with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
            fp32 = Path(tmp) / "model-fp32.onnx"
            record["validation"] = export_onnx(model, fp32, train.shape, probe=calib[:32])
            record["quantization"] = quantize_onnx(fp32, out, calib, precision)
        record["precision"] = precision
    v = record["validation"]
    text = (f"wrote {out} ({record['precision']}); FP32 export checked by onnx.checker, ONNX Runtime vs PyTorch "
            f"max |Δlogit| {v['max_abs_diff']:.2g} (tolerance {v['atol']:g} + {v['rtol']:g}·|logit|)")
    if args.quantize:
        q = record["quantization"]
        text += f"\nquantized by ONNX Runtime: QDQ, {q['weights']} per-channel weights, {q['activations']} " \
                f"activations calibrated on {q['n_calibration']} training images; {q['executed_as']}"
    emit(args, text, record)
    return 0
