"""advrbd audit: flag the suspicious samples of a dataset without training a final model on it (AdvrBD's
stages up to identification), for a user who wants to clean the dataset and train with their own tools."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from ..errors import BadInputError
from ..pipeline import resolve_recipe
from .common import (add_data_args, add_output_flags, add_run_args, emit, out_dir, progress_on, resolve_setup, say,
                     settings_from)
from .defend import defend_to_dir, split_recipe

HELP = "flag suspicious samples (AdvrBD up to identification); optionally export the cleaned dataset"
EXAMPLE = """advrbd audit --data imagefolder:mydata --out runs/audit
advrbd audit --data imagefolder:mydata --out runs/audit --export cleaned --relabel"""


def add_arguments(p) -> None:
    add_data_args(p)
    p.add_argument("--out", required=True, help="run directory: samples.csv (ranked), summary.json, report.html")
    p.add_argument("--export", metavar="DIR", help="write the dataset without the flagged samples as an ImageFolder "
                                                    "(DIR/train/<class>/*.png, DIR/test/...)")
    p.add_argument("--relabel", action="store_true",
                   help="keep flagged samples with a confident suggested label (from a model trained on the kept "
                        "samples) instead of dropping them; costs one extra training")
    p.add_argument("--model", help="model name, package.module:callable or path/to/file.py:callable")
    p.add_argument("--width", type=float, help="width multiplier of a registered model")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    add_run_args(p, default_profile=None)
    add_output_flags(p)


def suggest_labels(result, ctx_train, recipe, settings: dict, model_factory) -> "object":
    """The result with suggested labels: a model trained on the unflagged samples relabels the flagged ones
    it is confident about (AdvrBD's stages 4–5a, ``retrain.clean_training`` / ``retrain.relabel``)."""
    from ..defenses import create_defense
    from ..defenses._common import scaled_epochs
    from ..defenses.advrbd.retrain import clean_predictions, clean_training

    s = create_defense("advrbd", **settings)
    model = model_factory()
    clean_training(model, ctx_train, result.suspected, recipe, scaled_epochs(s.clean.epochs, recipe.epochs))
    pred, conf = clean_predictions(model, ctx_train)
    sure = result.suspected & (conf >= s.relearn.min_confidence)
    return replace(result, relabels=torch.where(sure, pred, ctx_train.labels), model=model)


def export(out: Path, train, test, result, relabel: bool) -> dict:
    """Write the cleaned set; returns counts. Flagged samples are dropped, or with ``relabel`` kept under
    their suggested label where it differs from the given one (the model was confident)."""
    from ..data.writer import write_imagefolder

    flagged = result.suspected
    changed = result.relabels is not None and relabel
    relabelled = flagged & (result.relabels != train.labels) if changed else torch.zeros_like(flagged)
    keep = (~flagged | relabelled).nonzero().flatten()
    kept = train.subset(keep)
    empty = [train.classes[c] for c in range(train.num_classes) if not bool((kept.labels == c).any())]
    if empty:
        raise BadInputError(f"every sample of class {empty[0]!r} was flagged, so the cleaned set cannot hold it as "
                            f"an ImageFolder; see samples.csv (or use --relabel)")
    if changed:
        kept = kept.with_labels(result.relabels[keep])
    pairs = [("train", kept)] + ([("test", test)] if len(test) else [])
    write_imagefolder(pairs, out)
    return {"n_kept": len(kept), "n_dropped": int(flagged.sum() - relabelled.sum()),
            "n_relabelled": int(relabelled.sum()), "dir": str(out)}


def run(args) -> int:
    settings, recipe_values = split_recipe(settings_from(args))
    if args.export and Path(args.export).exists() and any(Path(args.export).iterdir()):
        raise BadInputError(f"--export {args.export} is not empty; choose a new folder")
    out = out_dir(args.out)
    profile, prep = resolve_setup(args)
    recipe = resolve_recipe(profile, args.device, args.seed, prep.attack, **recipe_values)
    t = time.perf_counter()
    kept: dict = {}

    def post(result, ctx):  # suggested labels with --relabel; the result is kept for --export
        if args.relabel:
            result = suggest_labels(result, ctx.train, ctx.recipe, settings, ctx.new_model)
        kept["result"] = result
        return result

    summary, evaluation, report = defend_to_dir(
        prep, profile, recipe, "advrbd", settings, out, data_spec=args.data, model=args.model, width=args.width,
        resize=args.resize, report=not args.no_report, progress=progress_on(args),
        announce=lambda line: say(args, line), flag_only=True, kind="audit", post=post)
    exported = None
    if args.export:
        exported = export(Path(args.export), prep.splits.train, prep.splits.test, kept["result"], args.relabel)
    secs = time.perf_counter() - t
    lines = [summary["verdict"]["sentence"], f"audit: {summary['counts']['n_train']} samples ranked in "
             f"{out / 'samples.csv'} ({secs:.0f} s)"]
    if exported:
        lines.append(f"exported {exported['n_kept']} samples to {exported['dir']} ({exported['n_dropped']} dropped, "
                     f"{exported['n_relabelled']} relabelled)")
    if report:
        lines.append(f"report: {report}")
    emit(args, "\n".join(lines), {"summary": summary, "evaluation": evaluation, "export": exported,
                                  "out": str(out), "report": str(report) if report else None})
    return 0
