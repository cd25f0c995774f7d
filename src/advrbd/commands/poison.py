"""advrbd poison: write a poisoned copy of a dataset with ground truth (red-team / research)."""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from ..config import parse_overrides
from ..errors import BadInputError
from .common import add_data_args, add_output_flags, emit

HELP = "write a poisoned copy of a dataset (ImageFolder of PNGs + manifest.json with ground truth)"
EXAMPLE = """advrbd poison --data cifar10:/data/cifar-10-batches-py --attack badnet --out poisoned/badnet
advrbd poison --data synthetic:n=2000 --attack blend --trigger hellokitty_32.png --set alpha=0.2 --out poisoned/blend"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..attacks import ATTACKS

    add_data_args(p)
    g = p.add_argument_group("attack")
    g.add_argument("--attack", required=True, metavar="NAME", help=f"one of: {', '.join(ATTACKS.names())}")
    g.add_argument("--rate", type=float, default=None, metavar="R",
                   help="poison fraction of the WHOLE training set (default 0.05)")
    g.add_argument("--target", type=int, default=None, help="target class index (default 1)")
    g.add_argument("--cover-rate", type=float, default=None, metavar="R",
                   help="cover fraction of the whole training set (default per attack: wanet 0.05, "
                        "tact/adaptive 0.01, else 0)")
    g.add_argument("--trigger", metavar="PATH", help="trigger image file (adaptive_patch: comma-separated list)")
    g.add_argument("--mask", metavar="PATH", help="mask image file (default: non-black trigger pixels)")
    g.add_argument("--seed", type=int, default=None, help="seed of selection and trigger randomness (default 0)")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other attack setting, e.g. alpha=0.2 (repeatable; unknown keys are errors)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must be empty or absent)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out folder")
    add_output_flags(p)


def _check_out(out: Path, source: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise BadInputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise BadInputError(f"--out {out} is not empty; choose another folder or pass --overwrite")
    # Never write into (or over) the source data, even with --overwrite.
    from ..data import spec_path

    src = spec_path(source)
    if src is not None and src.exists():
        a, b = out.resolve(), src.resolve()
        if a == b or a in b.parents or b in a.parents:
            raise BadInputError(f"--out {out} overlaps the source data {src}; choose a separate folder")


def run(args: argparse.Namespace) -> int:
    from ..attacks import AttackWarning, create_attack, write_poisoned
    from ..data import load_dataset

    settings: dict[str, object] = {}
    for key in ("rate", "target", "cover_rate", "trigger", "mask", "seed"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    overlap = sorted(set(settings) & set(parse_overrides(args.set)))
    if overlap:
        raise BadInputError(f"{', '.join(overlap)} given both as an option and with --set")
    settings.update(parse_overrides(args.set))
    attack = create_attack(args.attack, **settings)  # unknown keys -> ConfigError before any work
    out = Path(args.out)
    _check_out(out, args.data, args.overwrite)
    source = load_dataset(args.data, resize=args.resize, skip_bad=args.skip_bad, download=args.download)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AttackWarning)  # the same message is logged (and --quiet hides it)
        _, manifest = write_poisoned(out, source, attack, spec=args.data, overwrite=args.overwrite)
    c = manifest["counts"]
    summary = {"out": str(out), "attack": attack.name, "params": attack.params(), "train": c["train"],
               "test": c["test"], "poison": c["poison"], "cover": c["cover"], "target": attack.target,
               "train_overrides": dict(attack.train_overrides)}
    text = (f"{attack.name}: poisoned {c['poison']} and covered {c['cover']} of {c['train']} training images "
            f"(target {attack.target}); wrote them and {c['test']} clean test images to {out}/ "
            f"with manifest.json and gallery.png")
    if attack.train_overrides:
        text += f"\nvictim training must use: {attack.train_overrides}"
    emit(args, text, summary)
    return 0
