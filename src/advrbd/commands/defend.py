"""advrbd defend: train a backdoor-robust model on an untrusted dataset (the main job)."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .. import dist
from ..defenses import DEFENSES
from ..io import write_json
from ..pipeline import (environment, evaluate_defense, make_context, prepare, resolve_recipe, RoundEvaluator,
                        run_defense)
from ..autosetup import setup_line
from ..rundir import write_run
from ..verdict import run_verdict
from .common import (add_data_args, add_output_flags, add_run_args, emit, out_dir, progress_on, resolve_setup, say,
                     settings_from)

HELP = "train a backdoor-robust model on an untrusted dataset with AdvrBD (or another defense)"
EXAMPLE = """advrbd defend --data imagefolder:poisoned/badnet --out runs/defended
advrbd defend --data imagefolder:mydata --model mynet.py:make --out runs/mine
advrbd defend --data cifar10:/data/cifar-10-batches-py --profile cpu --set enhance.rounds=4 --set recipe.epochs=10 --out runs/d"""


def add_arguments(p) -> None:
    add_data_args(p, required=False)
    p.add_argument("--out", required=True, help="run directory (an interrupted run resumes from it)")
    p.add_argument("--defense", default="advrbd", help="registered defense (default advrbd; see `advrbd list defenses`)")
    p.add_argument("--model", help="model name, package.module:callable or path/to/file.py:callable "
                                   "(default: chosen from the data and device)")
    p.add_argument("--width", type=float, help="width multiplier of a registered model")
    p.add_argument("--quant", action="store_true", help="also evaluate INT8 / INT4 weight quantization (needs ground truth)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    add_run_args(p, default_profile=None)
    p.epilog = (p.epilog or "") + "\n\nsettings: --set KEY=VALUE sets a defense setting; --set recipe.KEY=VALUE a training one"
    add_output_flags(p)


def split_recipe(values: dict) -> tuple[dict, dict]:
    """(defense settings, training-recipe overrides given as recipe.KEY)."""
    recipe = {k[len("recipe."):]: v for k, v in values.items() if k.startswith("recipe.")}
    return {k: v for k, v in values.items() if not k.startswith("recipe.")}, recipe


def run(args) -> int:
    settings, recipe_values = split_recipe(settings_from(args))
    DEFENSES.get(args.defense)  # unknown defense: exit 2 before any work
    out = out_dir(args.out)
    profile, prep = resolve_setup(args)
    recipe = resolve_recipe(profile, args.device, args.seed, prep.attack, **recipe_values)
    t = time.perf_counter()
    summary, evaluation, report = defend_to_dir(
        prep, profile, recipe, args.defense, settings, out, data_spec=args.data or profile.data, model=args.model,
        width=args.width, resize=args.resize, quant=args.quant, report=not args.no_report, progress=progress_on(args),
        announce=lambda line: say(args, line))
    emit(args, describe(args.defense, summary, evaluation, out, report, time.perf_counter() - t),
         {"summary": summary, "evaluation": evaluation, "out": str(out), "report": str(report) if report else None})
    return 0


def defend_to_dir(prep, profile, recipe, defense: str, settings: dict, out: Path, *, data_spec: str | None,
                  model: str | None = None, width: float | None = None, resize: int | None = None,
                  quant: bool = False, report: bool = True, progress: bool = False,
                  no_defense: dict | None = None, announce=None, flag_only: bool = False,
                  kind: str = "defend", post=None) -> tuple[dict, dict | None, Path | None]:
    """Run ``defense`` on prepared data and write the run directory; returns (summary, evaluation, report).
    ``announce(line)`` gets the one-line set-up (model, recipe, precision, samples) before any training;
    ``flag_only``: AdvrBD stops after identification (``advrbd audit``), no model; ``post(result, ctx)``
    may replace the result before it is evaluated and written."""
    train, test = prep.splits.train, prep.splits.test
    model_name = model or profile.model
    width = width if width is not None else profile.width
    line, setup = setup_line(profile, model_name, width, recipe, len(train), prep.n_total or len(train),
                             prep.subset_source)
    asr_set = prep.attack.make_asr_set(test) if prep.attack is not None else None
    extra = {"on_round": RoundEvaluator(test, prep.attack, asr_set)} if prep.attack is not None else {}
    if flag_only:
        extra["stop_after"] = "identify"
    ctx = make_context(train, profile, recipe, model=model_name, width=width, workdir=out / "stages",
                       progress=progress, extra=extra, defense=defense)
    if announce is not None:  # after the model check: a refused model gives one line
        announce(line)
    result, seconds = run_defense(defense, settings, ctx, prep.poisoned)
    if post is not None:  # e.g. audit's suggested labels
        result = post(result, ctx)
    evaluation = None
    if prep.poisoned is not None:
        evaluation = evaluate_defense(result, train, test, prep.attack, prep.poisoned, asr_set, quant=quant)
        evaluation["no_defense"] = no_defense
    final = None
    if result.model is not None and len(test):  # the user's own test split: accuracy needs no ground truth
        from ..metrics.model import evaluate

        final = {"acc": evaluate(result.model, test).acc, "n_test": len(test),
                 "no_defense_acc": (no_defense or {}).get("acc")}
    config = {"command": kind, "data": data_spec, "profile": profile.name, "defense": defense,
              "model": model_name, "width": width, "num_classes": train.num_classes, "in_channels": train.shape[0],
              "resize": resize, "recipe": dataclasses.asdict(recipe), "settings": result.info.get("settings", settings)}
    summary = {
        "kind": kind, "setup": setup, "data": data_spec, "defense": defense, "model": model_name,
        "settings": config["settings"], "recipe": config["recipe"], "classes": list(train.classes),
        "attack": getattr(prep.attack, "name", None),
        "counts": {"n_train": len(train), "n_flagged": None if result.suspected is None else int(result.suspected.sum()),
                   "n_classes": train.num_classes},
        "threshold": result.threshold, "stage_seconds": result.info.get("stage_seconds", {}),
        "total_seconds": seconds, "evaluation_seconds": result.info.get("evaluation_seconds", 0.0),
        "history": list(result.history), "final_model": final, **environment(recipe.device),
    }
    summary["verdict"] = run_verdict(train, result, evaluation, final)
    write_json(out / "config.json", config)
    write_run(out, train, result, summary, evaluation, prep.poisoned)
    path = None
    if report and dist.is_writer():  # the report reads the files that only rank 0 wrote
        from ..report import write_report

        path = write_report(out)
    return summary, evaluation, path


def describe(defense: str, summary: dict, evaluation: dict | None, out: Path, report: Path | None, secs: float) -> str:
    flagged = summary["counts"]["n_flagged"]
    lines = [summary["verdict"]["sentence"], f"{defense}: {summary['counts']['n_train']} training samples, "
             f"{flagged if flagged is not None else '-'} flagged, {secs:.0f} s"]
    if evaluation is not None and evaluation.get("acc") is not None:
        asr = f"  ASR {evaluation['asr']:.2f}% (n={evaluation['n_asr']})" if evaluation.get("asr") is not None else ""
        det = (f"  recall {evaluation['recall']:.1f}%  FPR {evaluation['fpr']:.1f}%"
               if evaluation.get("recall") is not None else "")
        lines.append(f"ACC {evaluation['acc']:.2f}% (n={evaluation['n_test']}){asr}{det}")
    lines.append(f"wrote {out}" + (f"; report: {report}" if report else ""))
    return "\n".join(lines)
