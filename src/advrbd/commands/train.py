"""advrbd train: standard training of a registered model on a dataset."""
from __future__ import annotations

import dataclasses
import time

from ..io import save_state_dict, write_json
from ..metrics.model import evaluate
from ..pipeline import environment, model_factory, prepare, resolve_recipe
from ..autosetup import setup_line
from ..models import check_model
from ..train.loop import fit
from .common import (add_data_args, add_output_flags, add_run_args, emit, out_dir, progress_on, resolve_setup, say,
                     settings_from, split_settings)

HELP = "train a model without defense (writes model.safetensors, config.json, metrics.json)"
EXAMPLE = "advrbd train --data imagefolder:/data/cifar10 --model fastnet --width 0.5 --epochs 12 --out runs/clean"


def add_arguments(p) -> None:
    add_data_args(p)
    p.add_argument("--model", help="registered model name, package.module:callable or path/to/file.py:callable "
                                   "(default: chosen from the data and device)")
    p.add_argument("--width", type=float, help="width multiplier (default: the profile's)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the profile's)")
    p.add_argument("--out", required=True, help="run directory to write")
    add_run_args(p, default_profile=None)
    add_output_flags(p)


def run(args) -> int:
    values = settings_from(args)
    top, recipe_values = split_settings(values, {"model", "width"})
    if args.epochs is not None:
        recipe_values["epochs"] = args.epochs
    out = out_dir(args.out)
    profile, prep = resolve_setup(args)
    model_name = args.model or top.get("model") or profile.model
    width = args.width if args.width is not None else (float(top["width"]) if "width" in top else profile.width)
    if args.model and args.model != profile.model and args.width is None:
        width = None  # the model's own default width
    train, test = prep.splits.train, prep.splits.test
    recipe = resolve_recipe(profile, args.device, args.seed, prep.attack, **recipe_values)
    line, setup = setup_line(profile, model_name, width, recipe, len(train), prep.n_total or len(train),
                             prep.subset_source)
    model = model_factory(model_name, width, train.num_classes, train.shape[0], args.seed, train.shape)()
    check_model(model, train.shape, train.num_classes, f"model {model_name}", needs_features=False)
    say(args, line)  # after the model is known to be usable: a refusal stays one line
    config = {"command": "train", "data": args.data, "profile": profile.name, "model": model_name, "width": width,
              "num_classes": train.num_classes, "in_channels": train.shape[0], "image_size": list(train.shape[1:]),
              "classes": list(train.classes), "n_train": len(train), "recipe": dataclasses.asdict(recipe),
              "setup": setup, **environment(recipe.device)}
    write_json(out / "config.json", config)
    t = time.perf_counter()
    res = fit(model, train, recipe, checkpoint=out / "train.ckpt", progress="training" if progress_on(args) else False)
    seconds = time.perf_counter() - t
    ev = evaluate(model, test, prep.attack)
    save_state_dict(out / "model.safetensors", model.state_dict())
    metrics = {"test_acc": ev.acc, "n_test": ev.n_test, "asr": ev.asr, "n_asr": ev.n_asr,
               "train_seconds": seconds, "epochs": recipe.epochs, "images_per_second": res.images_per_second,
               "n_train": len(train)}
    write_json(out / "metrics.json", metrics)
    (out / "train.ckpt").unlink(missing_ok=True)
    asr = f", ASR {ev.asr:.2f}% (n={ev.n_asr})" if ev.asr is not None else ""
    emit(args, f"test accuracy {ev.acc:.2f}% (n={ev.n_test}){asr}; {seconds:.0f} s, "
               f"{res.images_per_second:.0f} images/s; wrote {out}", metrics)
    return 0
