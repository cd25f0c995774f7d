"""Run by tests/test_dist.py under ``torchrun --nproc_per_node 2`` (gloo, CPU): checks on each rank what
sharding does, against the same computation unsharded on the same rank (``dist.local()``), and writes
``OUT/rank<r>.json`` for the test to compare across ranks."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

from advrbd import dist
from advrbd.data import make_synthetic
from advrbd.defenses.advrbd.scoring import consistency_scores
from advrbd.defenses.advrbd.settings import ScoreSettings
from advrbd.models import Classifier, create_model
from advrbd.train.infer import predict_logits
from advrbd.train.loop import TrainConfig, fit


def bn_free(seed: int) -> nn.Module:
    """Without BatchNorm a sharded step equals a single-process one up to floating-point summation order."""
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten())
    return Classifier(body, 8 * 16, 10)


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().float().flatten() for t in model.state_dict().values()])


class Stop(Exception):
    pass


def main(out: Path) -> None:
    torch.set_num_threads(1)
    with dist.launched("cpu"):
        r, w = dist.rank(), dist.world_size()
        data = make_synthetic(n_train=300, n_test=10, num_classes=10, size=16, seed=0).train
        cfg = TrainConfig(epochs=2, batch_size=64, lr=0.05, precision="fp32", device="cpu", seed=3)
        res: dict = {"rank": r, "world": w}

        # fit: which samples this rank trains on (the loss hook sees their positions)
        seen: list[list[int]] = []

        def recording_loss(logits, y, idx):
            seen.append(idx.tolist())
            return nn.functional.cross_entropy(logits, y, reduction="none")

        model = bn_free(0)
        fit(model, data, cfg, loss=recording_loss)
        res["seen"] = seen
        res["weights_sum"] = float(flat(model).double().sum())
        with dist.local():
            ref = bn_free(0)
            fit(ref, data, cfg)
        res["fit_max_abs_diff"] = float((flat(model) - flat(ref)).abs().max())

        # resume: interrupted after epoch 1 (its checkpoint written by rank 0), rerun, same end weights
        ck = out / "fit.ckpt"

        def stop_at_2(epoch, m, logs):
            if epoch == 2:
                raise Stop

        a = bn_free(1)
        try:
            fit(a, data, cfg, checkpoint=ck, callbacks=[stop_at_2])
        except Stop:
            pass
        a = bn_free(1)
        resumed = fit(a, data, cfg, checkpoint=ck)
        b = bn_free(1)
        fit(b, data, cfg)
        res["resumed_from"] = resumed.resumed_from
        res["resume_equal"] = bool(torch.equal(flat(a), flat(b)))

        # per-sample passes: sharded outputs equal the unsharded ones exactly (same batches, same draws)
        tiny = create_model("tiny", 10, 1.0, 3)
        fit(tiny, data, cfg)
        logits = predict_logits(tiny, data, batch_size=50)
        s = ScoreSettings(batch_size=40)
        idx = torch.arange(len(data)).flip(0)
        scores = consistency_scores(tiny, data, idx, s, 5, "test")
        with dist.local():
            res["logits_equal"] = bool(torch.equal(logits, predict_logits(tiny, data, batch_size=50)))
            res["scores_equal"] = bool(torch.equal(scores, consistency_scores(tiny, data, idx, s, 5, "test")))
        res["bn_buffers_sum"] = float(sum(b.double().sum() for n, b in tiny.named_buffers() if "running" in n))
        batches: list[int] = []
        dist.map_batches(len(data), 64, lambda a, b: batches.append(a) or torch.zeros(b - a, 1))
        res["batches"] = batches
    (out / f"rank{r}.json").write_text(json.dumps(res))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
