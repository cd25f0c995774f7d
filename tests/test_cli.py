"""CLI end to end on synthetic data: help texts, list, train → evaluate, config files, exit codes."""
import json

import pytest

from advrbd.cli import COMMANDS, build_parser, main

DATA = "synthetic:n=300,test=100,size=16,classes=5,seed=1"


def test_help_texts_show_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "exit codes" in out
    for cmd in COMMANDS:
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = capsys.readouterr().out
        assert "example:" in text and "advrbd " + cmd in text, cmd


@pytest.mark.parametrize("kind", ["attacks", "defenses", "models", "datasets", "profiles"])
def test_list(kind, capsys):
    assert main(["list", kind, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["name"] and r["description"] for r in rows)


def test_list_contents(capsys):
    main(["list", "defenses", "--json"])
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert {"none", "advrbd", "abl", "clp", "dbr", "scan", "cutmix", "finetuning", "fineprune", "oracle",
            "neural_cleanse"} <= set(rows)
    settings = {s["name"]: s for s in rows["advrbd"]["settings"]}  # every --set key with default and doc
    assert settings["identify.rule"]["default"] == "consensus" and settings["enhance.rounds"]["doc"]
    assert settings["guard.rule"]["default"] == "evidence" and "seed" in settings


def test_train_then_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", DATA, "--profile", "smoke", "--epochs", "2", "--set", "batch_size=64",
                 "--out", str(run), "--json"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test_acc", "train_seconds", "epochs", "images_per_second"} <= set(metrics)
    assert metrics["epochs"] == 2
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["recipe"]["batch_size"] == 64 and cfg["model"] == "tiny"
    assert (run / "model.safetensors").is_file() and not (run / "train.ckpt").exists()
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--quant"]) == 0
    out = capsys.readouterr().out
    assert "ACC" in out and "int4" in out
    ev = json.loads((run / "eval.json").read_text())
    assert ev["acc"] == pytest.approx(metrics["test_acc"], abs=1e-6) and ev["n_test"] == 100


def test_config_file_and_unknown_keys(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": 1, "lr": 0.01}))
    assert main(["train", "--data", DATA, "--profile", "smoke", "--config", str(cfg), "--set", "lr=0.02",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    rec = json.loads((tmp_path / "r" / "config.json").read_text())["recipe"]
    assert rec["epochs"] == 1 and rec["lr"] == 0.02
    assert main(["train", "--data", DATA, "--profile", "smoke", "--set", "no_such_key=1",
                 "--out", str(tmp_path / "r2")]) == 2
    assert "no_such_key" in capsys.readouterr().err


@pytest.mark.parametrize("argv, needle", [
    (["train", "--data", "imagefolder:/no/such/dir", "--out", "OUT"], "/no/such/dir"),
    (["train", "--data", DATA, "--model", "nope", "--out", "OUT"], "unknown model"),
    (["evaluate", "--run", "/no/such/run"], "not a run directory"),
    (["defend", "--data", DATA, "--defense", "nope", "--out", "OUT"], "unknown defense"),
])
def test_bad_input_exit_2_one_line(argv, needle, tmp_path, capsys):
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_parser_builds_every_command():
    parser = build_parser()
    assert set(parser._subparsers._group_actions[0].choices) == set(COMMANDS)
