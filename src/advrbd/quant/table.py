"""Markdown table of the deployed precisions of benchmark cells (``deployed.md`` beside ``results.md``)."""
from __future__ import annotations

from typing import Sequence

from .onnx_export import PRECISIONS


def _f(v) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "–"


def _nc(v: dict | None) -> str:
    if not v:
        return "–"
    cls = v.get("flagged_class")
    return (f"class {cls}" if cls is not None else "none") + f" ({v.get('anomaly_index', float('nan')):.1f})"


def deployed_markdown(cells: Sequence[dict]) -> str:
    """ACC and ASR (percent) of every cell at each deployed precision, side by side, measured with ONNX
    Runtime on the exported / quantized files; Neural Cleanse's verdict per artefact on its own rows."""
    cells = [c for c in cells if isinstance(c, dict) and c.get("deployed")]
    if not cells:
        return ""
    precs = [p for p in PRECISIONS if any(p in c["deployed"] for c in cells)]
    head = (["attack", "defense", "seed"] + [f"ACC {p}" for p in precs] + [f"ASR {p}" for p in precs]
            + [f"ΔASR {p}" for p in precs if p != "fp32"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        d = c["deployed"]
        base = (d.get("fp32") or {}).get("asr")
        row = [str(c.get("attack")), str(c.get("defense")), str(c.get("seed"))]
        row += [_f((d.get(p) or {}).get("acc")) for p in precs] + [_f((d.get(p) or {}).get("asr")) for p in precs]
        for p in precs:
            if p != "fp32":
                a = (d.get(p) or {}).get("asr")
                row.append(f"{a - base:+.2f}" if isinstance(a, (int, float)) and isinstance(base, (int, float)) else "–")
        lines.append("| " + " | ".join(row) + " |")
    nc = [c for c in cells if c.get("nc_precisions")]
    if nc:
        lines += ["", "Neural Cleanse on each artefact: flagged class (anomaly index of the smallest-mask class); "
                  "detected = the attack's target flagged first.", "",
                  "| attack | seed | target | " + " | ".join(precs) + " | detected |",
                  "|---|---|---|" + "---|" * (len(precs) + 1)]
        for c in nc:
            v = c["nc_precisions"]
            det = "/".join({True: "yes", False: "no", None: "–"}[(v.get(p) or {}).get("detected")] for p in precs)
            lines.append(f"| {c.get('attack')} | {c.get('seed')} | {c.get('target')} | "
                         + " | ".join(_nc(v.get(p)) for p in precs) + f" | {det} |")
    lines += ["", "ACC on the clean test set, ASR on the triggered non-target test images, both measured with "
              "ONNX Runtime (CPU) on the deployed file: fp32 = ONNX export; int8 = ORT static QDQ quantization, "
              "per-channel INT8 weights, INT8 activations calibrated on 256 training images; int4-sim = the same "
              "with INT4 weights, executed by dequantizing them (no INT4 convolution kernels)."]
    return "\n".join(lines) + "\n"
