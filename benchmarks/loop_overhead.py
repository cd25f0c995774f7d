"""Images/s of advrbd's `fit` against a bare hand-written PyTorch loop, same model, batch and precision,
measured side by side (alternating, best of R repetitions) in one process.

    python benchmarks/loop_overhead.py [--model fastnet] [--width 0.5] [--batch 512] [--steps 20] [--reps 3]

Both loops: uint8 NHWC data on the device, random crop + flip on the batch, the "auto" precision (bf16
autocast where the CPU runs it fast, else fp32), channels_last, SGD with Nesterov momentum. Writes JSON to stdout.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from advrbd.models import create_model
from advrbd.train import TrainConfig, fit
from advrbd.train.augment import random_crop, random_flip
from advrbd.train.infer import autocast
from advrbd.types import ImageData


def random_data(n: int, g: torch.Generator) -> ImageData:
    """``n`` random uint8 32×32 RGB images with random labels of 10 classes."""
    return ImageData(torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g), tuple(map(str, range(10))))


def bare_loop(model, images, labels, batch, steps, g):
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    t = time.perf_counter()
    for i in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=g)
        x = images[idx].permute(0, 3, 1, 2).float().div_(255)
        x = random_flip(random_crop(x, 4, g), g).contiguous(memory_format=torch.channels_last)
        with autocast(torch.device("cpu")):
            out = model(x)
        loss = F.cross_entropy(out.float(), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fastnet")
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    data = random_data(a.batch * a.steps, g)
    best_fit = best_bare = 0.0
    for _ in range(a.reps):
        m = create_model(a.model, 10, a.width).to(memory_format=torch.channels_last)
        best_bare = max(best_bare, bare_loop(m, data.images, data.labels, a.batch, a.steps, g))
        m = create_model(a.model, 10, a.width)
        r = fit(m, data, TrainConfig(epochs=1, batch_size=a.batch, device="cpu"))
        best_fit = max(best_fit, r.images_per_second)
    print(json.dumps({"model": a.model, "width": a.width, "batch": a.batch, "steps": a.steps,
                      "torch_threads": torch.get_num_threads(), "fit_images_per_second": round(best_fit, 1),
                      "bare_images_per_second": round(best_bare, 1), "ratio": round(best_fit / best_bare, 3)}))


if __name__ == "__main__":
    main()
