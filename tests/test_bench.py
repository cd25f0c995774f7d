"""The benchmark grid end to end on the smoke profile: cells, files, resume, defend CLI with a manifest."""
import json

from advrbd.cli import main

DATA = "synthetic:n=240,test=80,size=16,classes=4,seed=2"
KEYS = {"profile", "dataset", "model", "attack", "poison_rate", "target", "defense", "seed", "acc", "asr", "n_test",
        "n_asr", "recall", "fpr", "precision", "auroc", "n_flagged", "seconds", "standard_train_seconds", "device",
        "torch_version", "advrbd_version"}


def test_smoke_grid_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "--profile", "smoke", "--data", DATA, "--attacks", "badnet,none", "--defenses",
            "none,oracle,advrbd", "--set", "advrbd.enhance.rounds=1", "--out", str(out)]
    assert main(argv) == 0
    cells = json.loads((out / "results.json").read_text())
    assert len(cells) == 6 and all(KEYS <= set(c) for c in cells)
    by = {(c["attack"], c["defense"]): c for c in cells}
    assert by[("badnet", "oracle")]["recall"] == 100 and by[("badnet", "none")]["asr"] is not None
    assert by[("none", "none")]["asr"] is None and by[("none", "none")]["poison_rate"] == 0
    adv = by[("badnet", "advrbd")]
    assert adv["seconds"] >= adv["standard_train_seconds"] > 0  # shared warm-up counted in its cost
    assert {"warmup", "score", "guard", "enhance", "identify", "clean", "relearn"} <= set(adv["stage_seconds"])
    # the ASR floor: badnet's trigger on the none row's model (trained without poison), on every badnet cell
    floors = {by[("badnet", d)]["clean_model_asr"] for d in ("none", "oracle", "advrbd")}
    assert len(floors) == 1 and 0 <= floors.pop() <= 100
    assert "clean_model_asr" not in by[("none", "none")]
    for f in ("results.csv", "results.md", "report.html"):
        assert (out / f).is_file()
    assert "badnet" in (out / "results.md").read_text() and "clean-model ASR" in (out / "results.md").read_text()
    capsys.readouterr()
    assert main(argv) == 0  # resume: nothing left to run
    assert len(json.loads((out / "results.json").read_text())) == 6
    assert "6 cells" in capsys.readouterr().out


def test_poison_then_defend_with_ground_truth(tmp_path, capsys):
    pdir, run = tmp_path / "poisoned", tmp_path / "run"
    assert main(["poison", "--data", DATA, "--attack", "badnet", "--rate", "0.1", "--out", str(pdir), "--quiet"]) == 0
    assert main(["defend", "--data", f"imagefolder:{pdir}", "--profile", "smoke", "--set", "enhance.rounds=1",
                 "--out", str(run), "--quant", "--json"]) == 0
    for f in ("model.safetensors", "samples.csv", "summary.json", "evaluation.json", "config.json", "report.html"):
        assert (run / f).is_file(), f
    ev = json.loads((run / "evaluation.json").read_text())
    assert {"acc", "asr", "recall", "fpr", "precision", "auroc", "per_class", "quant"} <= set(ev)
    assert set(ev["quant"]) == {"fp32", "int8", "int4"}
    header = (run / "samples.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["index", "path", "given_label", "score", "verdict", "suggested_label"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"]["n_train"] == 240 and "warmup" in summary["stage_seconds"]
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--attack-from", str(pdir)]) == 0
    assert "ASR" in capsys.readouterr().out


def test_grid_holds_out_the_reserve_on_a_subset_profile(tmp_path):
    """The clean reserve is split from the profile's subset (its indices point into the full set), is held
    out for every defense of the grid, and is given only to defenses that need it."""
    from dataclasses import replace

    from advrbd.bench import run_grid
    from advrbd.profiles import get_profile

    profile = replace(get_profile("smoke"), subset=200)
    cells = run_grid(profile, DATA, ["badnet"], ["none", "finetuning"], tmp_path / "g", reserve=0.1)
    by = {c["defense"]: c for c in cells}
    assert by["none"]["n_train"] == by["finetuning"]["n_train"] == 180
    assert by["none"]["clean_reserve"] == 0 and by["finetuning"]["clean_reserve"] == 20


def test_variant_column_reuses_early_stages_and_bad_entries_fail_fast(tmp_path, monkeypatch):
    """``advrbd[relearn.epochs=0]`` is its own column; it loads the enhanced model the plain advrbd cell saved
    (the paper's rule, guard off, so that every stage runs on the tiny set)."""
    import pytest

    import advrbd.defenses.advrbd.steps as mod
    from advrbd.bench import run_grid
    from advrbd.errors import BadInputError, ConfigError
    from advrbd.profiles import get_profile

    out = tmp_path / "bench"
    base = ["bench", "--profile", "smoke", "--data", DATA, "--attacks", "badnet", "--set", "advrbd.enhance.rounds=1",
            "--set", "advrbd.guard.rule=off", "--out", str(out), "--quiet"]
    assert main(base + ["--defenses", "advrbd"]) == 0
    monkeypatch.setattr(mod, "enhance", lambda *a, **k: pytest.fail("enhancement ran again"))
    assert main(base + ["--defenses", "advrbd,advrbd[relearn.epochs=0]"]) == 0
    cells = json.loads((out / "results.json").read_text())
    assert [c["defense"] for c in cells] == ["advrbd", "advrbd[relearn.epochs=0]"]
    assert r"advrbd\[relearn.epochs=0\] ACC" in (out / "results.md").read_text()
    for bad in ("advrbd[enhance.rounds=-1]", "advrbd[nope=1]", "advrbd[x", "nodefense"):
        with pytest.raises((ConfigError, BadInputError)):
            run_grid(get_profile("smoke"), DATA, ["badnet"], ["none", bad], tmp_path / "bad")
    assert not (tmp_path / "bad" / "results.json").exists()


def test_round_evaluation_is_left_out_of_the_defense_cost(monkeypatch):
    """AdvrBD on tiny data with an evaluation callback that sleeps 0.3 s per round: run_defense leaves that
    time out of the cost and AdvrBD out of its enhancement stage."""
    import time

    from advrbd import pipeline
    from advrbd.data import make_synthetic
    from advrbd.profiles import get_profile
    from advrbd.types import EvalResult

    def slow_evaluate(model, test, attack, asr_set):
        time.sleep(0.3)
        return EvalResult(acc=50.0, n_test=1, asr=10.0, n_asr=1)

    monkeypatch.setattr("advrbd.metrics.model.evaluate", slow_evaluate)
    data = make_synthetic(n_train=200, n_test=10, num_classes=4, size=16, seed=0).train
    prof = get_profile("smoke")
    ctx = pipeline.make_context(data, prof, pipeline.resolve_recipe(prof, "cpu", 0),
                                extra={"on_round": pipeline.RoundEvaluator(None, None, None)})
    t = time.perf_counter()
    result, seconds = pipeline.run_defense("advrbd", {"enhance.rounds": 1, "guard.rule": "off"}, ctx)
    wall = time.perf_counter() - t
    assert [{k: h[k] for k in ("acc", "asr")} for h in result.history] == [{"acc": 50.0, "asr": 10.0}] * 2
    assert result.info["evaluation_seconds"] >= 0.6
    assert seconds <= wall - 0.6
    stages = result.info["stage_seconds"]
    assert 0 <= stages["enhance"] and sum(stages.values()) <= seconds


def test_paper_trigger_folder_sets_the_trigger_files_and_grids_do_not_mix_settings(tmp_path, capsys):
    """``--triggers DIR`` gives blend (and the other image-trigger attacks) the toolkit files; the cell
    records them, its stages live in their own work folder, and one --out refuses a second configuration."""
    import numpy as np
    from PIL import Image

    from advrbd.attacks.triggers import PAPER_TRIGGER_FILES

    folder = tmp_path / "triggers"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for names in PAPER_TRIGGER_FILES.values():
        for n in names:
            Image.fromarray(rng.integers(1, 256, (32, 32, 3), dtype=np.uint8)).save(folder / n)
    out = tmp_path / "bench"
    base = ["bench", "--profile", "smoke", "--data", DATA, "--attacks", "blend", "--defenses", "none", "--quiet"]
    assert main(base + ["--triggers", str(folder), "--out", str(out)]) == 0
    (cell,) = json.loads((out / "results.json").read_text())
    assert cell["attack_settings"] == {"trigger": str(folder.resolve() / "hellokitty_32.png")}
    (work,) = (out / "work").iterdir()
    assert work.name.startswith("blend-t1-r0.05-s0-res0.05-")  # not the default trigger's folder
    capsys.readouterr()
    assert main(base + ["--out", str(out)]) == 2  # same --out, default trigger
    assert "attack settings" in capsys.readouterr().err
    assert main(base + ["--triggers", str(tmp_path / "missing"), "--out", str(tmp_path / "b2")]) == 2
    assert "trigger folder not found" in capsys.readouterr().err


def test_grid_axes_targets_rates_and_attack_variants(tmp_path):
    """--targets and --rates are grid axes, an attack variant NAME[k=v] is its own row, each cell records
    its target, rate and role, the clean row runs once per seed and gives every cell its target's floor."""
    out = tmp_path / "axes"
    assert main(["bench", "--profile", "smoke", "--data", DATA, "--attacks", "badnet,badnet[patch_size=2],none",
                 "--defenses", "none,oracle", "--targets", "1,2", "--rates", "0.05,0.1", "--role", "validation",
                 "--out", str(out), "--quiet"]) == 0
    cells = json.loads((out / "results.json").read_text())
    attacked = [c for c in cells if c["attack"] != "none"]
    assert len(attacked) == 16 and len(cells) == 18
    assert {(c["attack"], c["target"], c["poison_rate"]) for c in attacked} == {
        (a, t, r) for a in ("badnet", "badnet[patch_size=2]") for t in (1, 2) for r in (0.05, 0.1)}
    assert all(c["role"] == "validation" and c["clean_model_asr"] is not None for c in attacked)
    assert {c["attack_settings"]["patch_size"] for c in attacked if c["attack"] == "badnet[patch_size=2]"} == {"2"}
    md = (out / "results.md").read_text()
    assert "## Every cell" in md and "target 2" in md
    assert main(["bench", "--profile", "smoke", "--data", DATA, "--targets", "x", "--out", str(tmp_path / "b")]) == 2
