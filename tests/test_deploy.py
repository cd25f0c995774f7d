"""Deployed artefacts: ONNX export, ONNX Runtime static quantization, ACC/ASR measured in ORT, Neural Cleanse
on each artefact, and the CLI / bench paths. Tiny models on synthetic data (seconds)."""
import json

import pytest
import torch

pytest.importorskip("onnxruntime")

from advrbd.cli import main  # noqa: E402
from advrbd.models import create_model  # noqa: E402
from advrbd.quant.deployed import build_artefacts, calibration_images, deployed_metrics  # noqa: E402
from advrbd.quant.onnx_export import FP32_ATOL, parse_precisions, run_onnx, session  # noqa: E402
from advrbd.quant.onnx_torch import max_logit_diff  # noqa: E402
from advrbd.train.loop import TrainConfig, fit  # noqa: E402

# Stated tolerance: static INT8 (per-channel weights, activations calibrated on 256 images) may cost at most
# 3 points of accuracy on this fixture (200 test images: one image is 0.5 points).
INT8_ACC_TOL = 3.0
DATA = "synthetic:n=300,test=100,size=16,classes=5,seed=1"


@pytest.fixture(scope="module")
def trained(synth):
    torch.manual_seed(0)
    model = create_model("tiny", synth.train.num_classes, 1.0, 3)
    fit(model, synth.train, TrainConfig(epochs=4, batch_size=64, lr=0.05, device="cpu", precision="fp32", seed=0))
    return model.eval()


def test_export_quantize_and_measure_in_onnx_runtime(trained, synth, tmp_path):
    calib = calibration_images(synth.train, 256)
    paths, records = build_artefacts(trained, tmp_path, calib, ["fp32", "int8", "int4-sim"])
    assert records["fp32"]["max_abs_diff"] <= FP32_ATOL
    # dynamic batch, normalization inside: raw [0,1] images of any batch size; ORT FP32 logits = PyTorch's
    x = synth.test.float_nchw()[:37]
    with torch.no_grad():
        ref = trained(x).numpy()
    got = run_onnx(session(paths["fp32"]), x.numpy(), batch_size=37)
    assert got.shape == ref.shape and abs(got - ref).max() <= FP32_ATOL
    m = deployed_metrics(paths, synth.test)
    with torch.no_grad():
        torch_acc = 100.0 * (trained(synth.test.float_nchw()).argmax(1) == synth.test.labels).float().mean().item()
    assert m["fp32"]["acc"] == pytest.approx(torch_acc, abs=1e-6) and torch_acc > 60
    assert abs(m["int8"]["acc"] - m["fp32"]["acc"]) <= INT8_ACC_TOL, m
    assert 0 <= m["int4-sim"]["acc"] <= 100 and m["int8"]["runtime"] == "onnxruntime-cpu"
    assert records["int8"]["weights"] == "int8" and "simulated" in records["int4-sim"]["executed_as"]


def test_quantized_graph_reexecution_matches_runtime(trained, synth, tmp_path):
    """Neural Cleanse's differentiable re-execution of the QDQ file agrees with ORT on that file."""
    paths, _ = build_artefacts(trained, tmp_path, calibration_images(synth.train, 128), ["fp32", "int8", "int4-sim"])
    x = synth.test.float_nchw()[:64]
    for p, path in paths.items():
        diff, agree = max_logit_diff(path, x)
        assert agree >= 0.98 and diff < 0.05, (p, diff, agree)


def test_neural_cleanse_on_each_artefact(trained, synth, tmp_path):
    from advrbd.quant.detection import neural_cleanse_verdicts

    paths, _ = build_artefacts(trained, tmp_path, calibration_images(synth.train, 64), ["fp32", "int8"])
    rec = TrainConfig(device="cpu", seed=0)
    v = neural_cleanse_verdicts(paths, synth.train, rec, {"steps": 10, "n_images": 50, "batch_size": 4}, target=1)
    assert set(v) == {"fp32", "int8"}
    assert all({"flagged_class", "anomaly_index", "detected"} <= set(r) for r in v.values())


def test_precision_names():
    assert parse_precisions("fp32,int8,int4") == ["fp32", "int8", "int4-sim"]
    from advrbd.errors import BadInputError

    with pytest.raises(BadInputError):
        parse_precisions("int2")


def test_cli_export_and_evaluate_precisions(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", DATA, "--profile", "smoke", "--epochs", "2", "--out", str(run), "--quiet"]) == 0
    assert main(["export", "--run", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["precision"] == "fp32" and rec["validation"]["max_abs_diff"] <= FP32_ATOL
    assert main(["export", "--run", str(run), "--quantize", "int8", "--calibration", "64",
                 "--out", str(tmp_path / "m8.onnx"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["quantization"]["format"] == "QDQ" and (tmp_path / "m8.onnx").is_file()
    assert not list(tmp_path.glob("tmp*"))  # no temporary files left beside the output
    assert main(["evaluate", "--run", str(run), "--precision", "fp32,int8,int4"]) == 0
    assert "int4-sim" in capsys.readouterr().out
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["deployed"]) == {"fp32", "int8", "int4-sim"}
    assert ev["deployed"]["fp32"]["acc"] == pytest.approx(ev["acc"], abs=1.01)  # one image of 100


def test_bench_precisions_deploys_finished_cells_without_retraining(tmp_path):
    out = tmp_path / "bench"
    base = ["bench", "--profile", "smoke", "--data", DATA, "--attacks", "badnet", "--defenses",
            "none,neural_cleanse", "--set", "neural_cleanse.steps=10", "--set", "neural_cleanse.n_images=50",
            "--out", str(out), "--quiet"]
    assert main(base) == 0
    before = json.loads((out / "results.json").read_text())
    assert not any("deployed" in c for c in before)
    assert list((out / "work").rglob("final-none.safetensors"))
    assert main(base + ["--precisions", "fp32,int8,int4"]) == 0
    cells = json.loads((out / "results.json").read_text())
    assert len(cells) == 2 and [c["seconds"] for c in cells] == [c["seconds"] for c in before]
    assert all(set(c["deployed"]) == {"fp32", "int8", "int4-sim"} for c in cells)
    nc = next(c for c in cells if c["defense"] == "neural_cleanse")
    assert set(nc["nc_precisions"]) == {"fp32", "int8", "int4-sim"}
    md = (out / "deployed.md").read_text()
    assert "ASR int8" in md and "Neural Cleanse" in md
