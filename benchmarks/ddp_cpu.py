"""Images/s of ``fit`` and of AdvrBD's consistency scoring in one process and under torchrun (CPU, gloo).

    OMP_NUM_THREADS=2 python benchmarks/ddp_cpu.py                                   # 1 process, 2 threads
    OMP_NUM_THREADS=1 python benchmarks/ddp_cpu.py                                   # 1 process, 1 thread
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 benchmarks/ddp_cpu.py # 2 processes

Synthetic 32×32 images (4,096), fastnet ×½ (the CPU default model), the cpu profile's batch 512, precision
"auto". fit: the second of two epochs (the first pays one-time costs); scoring: all images, 2 PGD steps.
Rank 0 prints one JSON line; images/s are of the whole job (divide by the world size for per rank).
"""
from __future__ import annotations

import json
import time

import torch

from advrbd import dist
from advrbd.data import make_synthetic
from advrbd.defenses.advrbd.scoring import consistency_scores
from advrbd.defenses.advrbd.settings import AdvrBDSettings
from advrbd.models import create_model
from advrbd.train.loop import TrainConfig, fit

N = 4096


def main() -> None:
    with dist.launched("cpu"):
        data = make_synthetic(n_train=N, n_test=10, num_classes=10, size=32, seed=0).train
        torch.manual_seed(0)
        model = create_model("fastnet", 10, 0.5, 3)
        cfg = TrainConfig(epochs=2, batch_size=512, lr=0.2, device="cpu")
        res = fit(model, data, cfg)
        fit_ips = (len(data) // 512) * 512 / res.history[-1]["seconds"]
        s = AdvrBDSettings()
        t = time.perf_counter()
        consistency_scores(model, data, torch.arange(N), s, "bench")
        score_ips = N / (time.perf_counter() - t)
        if dist.is_writer():
            print(json.dumps({"world": dist.world_size(), "threads_per_rank": torch.get_num_threads(),
                              "fit_images_per_s": round(fit_ips, 1), "score_images_per_s": round(score_ips, 1),
                              "torch": torch.__version__}))


if __name__ == "__main__":
    main()
