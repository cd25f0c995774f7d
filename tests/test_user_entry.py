"""A user's entry points (issue 29): any nn.Module, numpy / tensors / Dataset through the API and the CLI,
a file-path model, refusal of unusable models before training, the precision choice on both kinds of CPU."""
import json

import numpy as np
import pytest
import torch
from torch import nn

import advrbd
from advrbd.cli import main
from advrbd.errors import BadInputError
from advrbd.data import make_synthetic
from advrbd.train import precision

FAST = dict(recipe={"epochs": 2, "batch_size": 64}, **{"enhance.rounds": 1, "enhance.epochs": 1.0})
USER_MODEL = __file__.replace("test_user_entry.py", "user_model.py")


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_train=240, n_test=60, num_classes=4, size=16, seed=0)


def sequential(k: int = 4) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                         nn.Flatten(), nn.Linear(128, 32), nn.ReLU(), nn.Linear(32, k))


def _check(res, n, label_values):
    assert res.scores.shape == (n,) and res.suspected.shape == (n,) and isinstance(res.model, nn.Module)
    table = res.table()
    assert len(table) == n and set(table[0]) == {"index", "given_label", "score", "verdict", "suggested_label",
                                                  "action"}
    assert {r["given_label"] for r in table} <= set(label_values)
    idx = res.suspected_indices
    assert bool(res.suspected[idx].all()) and len(idx) == int(res.suspected.sum())
    assert torch.all(res.scores[idx][:-1] >= res.scores[idx][1:])  # ranked, most suspicious first
    if res.suspected.any() and (~res.suspected).any():  # the score ranks like the verdict
        assert res.scores[res.suspected].min() > res.scores[~res.suspected].max()


def test_plain_sequential_and_numpy_arrays_through_defend(small):
    x = small.train.images.numpy()  # uint8 N×H×W×C
    y = small.train.labels.numpy() * 10 + 7  # any integer labels
    res = advrbd.defend(x, y, model=sequential(), **FAST)
    _check(res, len(x), {7, 17, 27, 37})


def test_tensor_dataset_float_nchw_and_file_path_model(small):
    x = small.train.float_nchw()  # float N×C×H×W in [0,1]
    ds = torch.utils.data.TensorDataset(x, small.train.labels)
    res = advrbd.defend(ds, model=f"{USER_MODEL}:make_mlp", **FAST)
    _check(res, len(ds), set(range(4)))


def test_unusable_models_are_refused_before_training(small):
    x, y = small.train.images.numpy(), small.train.labels.numpy()
    with pytest.raises(BadInputError, match="logits of shape"):
        advrbd.defend(x, y, model=nn.Sequential(nn.Flatten(), nn.Linear(768, 3)))
    with pytest.raises(BadInputError, match="nn.Linear"):
        advrbd.defend(x, y, model=nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    with pytest.raises(BadInputError, match="in \\[0,1\\]"):
        advrbd.defend(x.astype(np.float32), y)  # 0..255 floats: normalization belongs inside the model


def test_image_data_error_names_the_real_problem():
    from advrbd.types import ImageData

    with pytest.raises(BadInputError, match="float32 tensor of shape"):
        ImageData(torch.zeros(2, 4, 4, 3), torch.zeros(2, dtype=torch.long), ("a",))
    data = ImageData(np.zeros((2, 4, 4, 3), np.uint8), np.zeros(2, np.int64), ("a",))  # numpy is accepted
    assert data.images.dtype == torch.uint8 and len(data) == 2


def test_cli_defend_file_model_whole_data_and_audit_export(small, tmp_path, capsys):
    from advrbd.data.writer import write_imagefolder

    write_imagefolder(small, tmp_path / "data")
    run = tmp_path / "run"
    rc = main(["defend", "--data", f"imagefolder:{tmp_path / 'data'}", "--out", str(run), "--model",
               f"{USER_MODEL}:make_mlp", "--set", "enhance.rounds=1", "--set", "recipe.epochs=2", "--no-report", "-v"])
    assert rc == 0
    err = capsys.readouterr().err
    assert err.startswith("setup (chosen from the data):") and "all 240 training samples" in err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["setup"]["n_train_used"] == 240 and summary["setup"]["precision"] in ("bf16", "fp32")
    assert summary["verdict"]["sentence"]
    rows = (run / "samples.csv").read_text().splitlines()
    assert len(rows) == 241 and rows[0].split(",")[6] == "action"
    audit = tmp_path / "audit"
    rc = main(["audit", "--data", f"imagefolder:{tmp_path / 'data'}", "--out", str(audit), "--set", "enhance.rounds=1",
               "--set", "recipe.epochs=2"])
    assert rc == 0
    summary = json.loads((audit / "summary.json").read_text())
    assert summary["kind"] == "audit" and (audit / "report.html").is_file() and (audit / "samples.csv").is_file()
    assert not (audit / "model.safetensors").exists()  # flag only


def test_audit_export_drops_or_relabels_flagged_samples(small, tmp_path):
    from types import SimpleNamespace

    from advrbd.commands.audit import export
    from advrbd.data import load_dataset

    train = small.train
    flagged = torch.zeros(len(train), dtype=torch.bool)
    flagged[:10] = True
    relabels = train.labels.clone()
    relabels[:4] = (relabels[:4] + 1) % 4  # four confident relabels, six drops
    res = SimpleNamespace(suspected=flagged, relabels=relabels)
    counts = export(tmp_path / "drop", train, small.test, res, relabel=False)
    assert counts["n_kept"] == 230 and len(load_dataset(f"imagefolder:{tmp_path / 'drop'}").train) == 230
    counts = export(tmp_path / "rel", train, small.test, res, relabel=True)
    assert (counts["n_kept"], counts["n_dropped"], counts["n_relabelled"]) == (234, 6, 4)


def test_cli_refuses_unusable_model_in_one_line(small, tmp_path, capsys):
    rc = main(["defend", "--data", "synthetic:n=200,test=50,size=16,classes=4", "--out", str(tmp_path / "r"),
               "--model", f"{USER_MODEL}:make_no_linear"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("advrbd: error:") and "nn.Linear" in err[-1]
    assert not list((tmp_path / "r").glob("stages/*"))


def test_precision_auto_follows_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setenv("ADVRBD_CACHE", str(tmp_path))
    for flags, expect in (({"avx512f", "avx512_bf16"}, True), ({"avx512f", "amx_bf16"}, True),
                          ({"avx512f", "avx512bw", "avx2"}, False), ({"avx2"}, False)):
        precision.precision_choice.cache_clear()
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: flags)
        assert precision.bf16_is_fast("cpu") is expect
    # no /proc/cpuinfo (macOS, Windows): a measured probe decides, and its answer is cached
    precision.precision_choice.cache_clear()
    monkeypatch.setattr(precision, "cpu_flags", lambda: None)
    calls = []
    monkeypatch.setattr(precision, "_probe_once", lambda bf16, steps=6: calls.append(bf16) or (1.0 if bf16 else 2.0))
    assert precision.precision_choice("cpu") == (True, "measured bf16 speed-up 2.00x on this CPU")
    precision.precision_choice.cache_clear()
    monkeypatch.setattr(precision, "_probe_once", lambda bf16, steps=6: 1 / 0)  # cached: not measured again
    assert precision.bf16_is_fast("cpu") is True and len(calls) == 2
    precision.precision_choice.cache_clear()


def test_verbose_after_the_subcommand():
    from advrbd.cli import build_parser

    args = build_parser().parse_args(["defend", "--data", "digits", "--out", "x", "-v"])
    assert args.verbose and not build_parser().parse_args(["list", "models"]).verbose
