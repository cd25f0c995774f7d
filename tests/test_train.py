"""The one training loop: learning, per-sample weights, subsets, schedules, exact resume."""
import shutil

import torch

from advrbd.models import create_model
from advrbd.train import TrainConfig, accuracy, fit, lr_factor

CFG = TrainConfig(epochs=6, batch_size=100, lr=0.05, device="cpu")


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("tiny", num_classes=10)


def test_fit_learns_separable_synthetic(synth):
    m = _model()
    res = fit(m, synth.train, CFG)
    assert accuracy(m, synth.test) >= 95.0
    assert res.epochs == 6 and len(res.history) == 6 and res.images_per_second > 0
    assert res.history[-1]["loss"] < res.history[0]["loss"]


def test_resume_after_interruption_gives_same_weights(synth, tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=100, lr=0.05, device="cpu", seed=3)
    full = _model(1)
    fit(full, synth.train, cfg)

    class Crash(Exception):
        pass

    def crash_after_two(epoch, model, logs):
        if epoch == 2:
            raise Crash

    ckpt = tmp_path / "run.ckpt"
    part = _model(1)
    try:
        fit(part, synth.train, cfg, checkpoint=ckpt, callbacks=[crash_after_two])
    except Crash:
        pass
    # callbacks run before the end-of-epoch checkpoint, so the crash leaves epoch 1 on disk
    # a run from other starting weights is another run: it must not pick up this checkpoint (on a copy:
    # that run overwrites the file it was given)
    shutil.copy(ckpt, tmp_path / "copy.ckpt")
    assert fit(_model(99), synth.train, cfg, checkpoint=tmp_path / "copy.ckpt").resumed_from == 0
    resumed = _model(1)  # a resumed run rebuilds the same starting model
    res = fit(resumed, synth.train, cfg, checkpoint=ckpt)
    assert res.resumed_from >= 1
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_subset_labels_and_negative_weights(synth):
    idx = torch.arange(0, 600, 2)
    m = _model()
    fit(m, synth.train, TrainConfig(epochs=1, batch_size=50, lr=0.05, device="cpu"), indices=idx)
    # negative weights (gradient ascent) on everything drive training accuracy down
    w = -torch.ones(len(synth.train))
    m2 = _model()
    fit(m2, synth.train, CFG)
    before = accuracy(m2, synth.train)
    fit(m2, synth.train, TrainConfig(epochs=2, batch_size=100, lr=0.05, schedule="constant", device="cpu"), weights=w)
    assert accuracy(m2, synth.train) < before - 30
    # label override: train on shifted labels, the model predicts the shifted labels
    m3 = _model()
    shifted = (synth.train.labels + 1) % 10
    fit(m3, synth.train, CFG, labels=shifted)
    assert accuracy(m3, synth.test.with_labels((synth.test.labels + 1) % 10)) > 90


def test_deterministic_under_seed(synth):
    a, b = _model(), _model()
    cfg = TrainConfig(epochs=1, batch_size=100, lr=0.05, device="cpu", seed=5)
    fit(a, synth.train, cfg)
    fit(b, synth.train, cfg)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_schedules():
    c = TrainConfig(epochs=1, warmup=0.2, schedule="onecycle")
    assert lr_factor(c, 0, 100) == 0 and lr_factor(c, 20, 100) == 1 and lr_factor(c, 100, 100) == 0
    c = TrainConfig(epochs=1, warmup=0.0, schedule="cosine")
    assert abs(lr_factor(c, 50, 100) - 0.5) < 1e-9
    assert lr_factor(TrainConfig(schedule="constant"), 7, 10) == 1


def test_auto_precision_follows_the_hardware(monkeypatch):
    """"auto" autocasts to bf16 only where bf16 is fast (an AVX2-only CPU runs it 16× slower than fp32);
    "bf16" and "fp32" are obeyed whatever the hardware."""
    from advrbd.train import infer

    cpu = torch.device("cpu")
    x = torch.rand(2, 3)
    for fast in (True, False):
        monkeypatch.setattr(infer, "bf16_is_fast", lambda device_type, fast=fast: fast)
        with infer.autocast(cpu, "auto"):
            assert (torch.nn.functional.linear(x, x).dtype == torch.bfloat16) is fast
        with infer.autocast(cpu, "bf16"):
            assert torch.nn.functional.linear(x, x).dtype == torch.bfloat16
        with infer.autocast(cpu, "fp32"):
            assert torch.nn.functional.linear(x, x).dtype == torch.float32
