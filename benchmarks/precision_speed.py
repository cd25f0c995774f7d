"""Training images/s of ``fit`` at each precision × memory format on this machine, and what
``precision="auto"`` picks here (``advrbd.train.infer.bf16_is_fast``).

    python benchmarks/precision_speed.py [--model fastnet] [--width 0.5] [--batch 128] [--steps 12]

Random uint8 32×32 data, one epoch of ``steps`` batches per setting after one warm-up epoch (oneDNN's
first-call set-up), CPU. Writes JSON lines to stdout.
"""
from __future__ import annotations

import argparse
import json
import platform

import torch

from advrbd.models import create_model
from advrbd.train import TrainConfig, fit
from advrbd.train.infer import bf16_is_fast
from loop_overhead import random_data  # same folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fastnet")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12)
    a = ap.parse_args()
    data = random_data(a.batch * a.steps, torch.Generator().manual_seed(0))
    print(json.dumps({"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "auto_is_bf16": bf16_is_fast("cpu")}))
    for precision in ("fp32", "bf16"):
        for channels_last in (True, False):
            cfg = TrainConfig(epochs=1, batch_size=a.batch, device="cpu", precision=precision,
                              channels_last=channels_last)
            m = create_model(a.model, 10, a.width)
            fit(m, data, cfg)  # warm-up epoch
            r = fit(m, data, cfg)
            print(json.dumps({"precision": precision, "channels_last": channels_last,
                              "images_per_second": round(r.images_per_second, 1)}), flush=True)


if __name__ == "__main__":
    main()
