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
from ..profiles import get_profile
from ..rundir import write_run
from .common import add_data_args, add_output_flags, add_run_args, emit, out_dir, progress_on, settings_from

HELP = "train a backdoor-robust model on an untrusted dataset with AdvrBD (or another defense)"
EXAMPLE = """advrbd defend --data imagefolder:poisoned/badnet --profile quick --out runs/defended
advrbd defend --data cifar10:/data/cifar-10-batches-py --profile cpu --set rounds=4 --set recipe.epochs=10 --out runs/d"""


def add_arguments(p) -> None:
    add_data_args(p, required=False)
    p.add_argument("--out", required=True, help="run directory (an interrupted run resumes from it)")
    p.add_argument("--defense", default="advrbd", help="registered defense (default advrbd; see `advrbd list defenses`)")
    p.add_argument("--model", help="model name or package.module:callable (default: the profile's)")
    p.add_argument("--width", type=float, help="width multiplier (default: the profile's)")
    p.add_argument("--quant", action="store_true", help="also evaluate INT8 / INT4 weight quantization (needs ground truth)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    add_run_args(p)
    p.epilog = (p.epilog or "") + "\n\nsettings: --set KEY=VALUE sets a defense setting; --set recipe.KEY=VALUE a training one"
    add_output_flags(p)


def split_recipe(values: dict) -> tuple[dict, dict]:
    """(defense settings, training-recipe overrides given as recipe.KEY)."""
    recipe = {k[len("recipe."):]: v for k, v in values.items() if k.startswith("recipe.")}
    return {k: v for k, v in values.items() if not k.startswith("recipe.")}, recipe


def run(args) -> int:
    profile = get_profile(args.profile)
    settings, recipe_values = split_recipe(settings_from(args))
    DEFENSES.get(args.defense)  # unknown defense: exit 2 before any work
    out = out_dir(args.out)
    prep = prepare(args.data, profile, resize=args.resize, skip_bad=args.skip_bad, download=args.download, seed=args.seed)
    recipe = resolve_recipe(profile, args.device, args.seed, prep.attack, **recipe_values)
    t = time.perf_counter()
    summary, evaluation, report = defend_to_dir(
        prep, profile, recipe, args.defense, settings, out, data_spec=args.data or profile.data, model=args.model,
        width=args.width, resize=args.resize, quant=args.quant, report=not args.no_report, progress=progress_on(args))
    emit(args, describe(args.defense, summary, evaluation, out, report, time.perf_counter() - t),
         {"summary": summary, "evaluation": evaluation, "out": str(out), "report": str(report) if report else None})
    return 0


def defend_to_dir(prep, profile, recipe, defense: str, settings: dict, out: Path, *, data_spec: str | None,
                  model: str | None = None, width: float | None = None, resize: int | None = None,
                  quant: bool = False, report: bool = True, progress: bool = False,
                  no_defense: dict | None = None) -> tuple[dict, dict | None, Path | None]:
    """Run ``defense`` on prepared data and write the run directory; returns (summary, evaluation, report)."""
    train, test = prep.splits.train, prep.splits.test
    asr_set = prep.attack.make_asr_set(test) if prep.attack is not None else None
    extra = {"on_round": RoundEvaluator(test, prep.attack, asr_set)} if prep.attack is not None else {}
    ctx = make_context(train, profile, recipe, model=model, width=width, workdir=out / "stages",
                       progress=progress, extra=extra)
    result, seconds = run_defense(defense, settings, ctx, prep.poisoned)
    evaluation = None
    if prep.poisoned is not None:
        evaluation = evaluate_defense(result, train, test, prep.attack, prep.poisoned, asr_set, quant=quant)
        evaluation["no_defense"] = no_defense
    model_name = model or profile.model
    width = width if width is not None else profile.width
    config = {"command": "defend", "data": data_spec, "profile": profile.name, "defense": defense,
              "model": model_name, "width": width, "num_classes": train.num_classes, "in_channels": train.shape[0],
              "resize": resize, "recipe": dataclasses.asdict(recipe), "settings": result.info.get("settings", settings)}
    summary = {
        "kind": "defend", "data": data_spec, "defense": defense, "model": model_name,
        "settings": config["settings"], "recipe": config["recipe"], "classes": list(train.classes),
        "attack": getattr(prep.attack, "name", None),
        "counts": {"n_train": len(train), "n_flagged": None if result.suspected is None else int(result.suspected.sum()),
                   "n_classes": train.num_classes},
        "threshold": result.threshold, "stage_seconds": result.info.get("stage_seconds", {}),
        "total_seconds": seconds, "evaluation_seconds": result.info.get("evaluation_seconds", 0.0),
        "history": list(result.history), **environment(),
    }
    write_json(out / "config.json", config)
    write_run(out, train, result, summary, evaluation, prep.poisoned)
    path = None
    if report and dist.is_writer():  # the report reads the files that only rank 0 wrote
        from ..report import write_report

        path = write_report(out)
    return summary, evaluation, path


def describe(defense: str, summary: dict, evaluation: dict | None, out: Path, report: Path | None, secs: float) -> str:
    flagged = summary["counts"]["n_flagged"]
    lines = [f"{defense}: {summary['counts']['n_train']} training samples, "
             f"{flagged if flagged is not None else '-'} flagged, {secs:.0f} s"]
    if evaluation is not None and evaluation.get("acc") is not None:
        asr = f"  ASR {evaluation['asr']:.2f}% (n={evaluation['n_asr']})" if evaluation.get("asr") is not None else ""
        det = (f"  recall {evaluation['recall']:.1f}%  FPR {evaluation['fpr']:.1f}%"
               if evaluation.get("recall") is not None else "")
        lines.append(f"ACC {evaluation['acc']:.2f}% (n={evaluation['n_test']}){asr}{det}")
    lines.append(f"wrote {out}" + (f"; report: {report}" if report else ""))
    return "\n".join(lines)
