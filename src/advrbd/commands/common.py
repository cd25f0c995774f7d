"""Argument groups and helpers shared by the command modules."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import load_file, parse_overrides
from ..errors import BadInputError
from ..io import load_state_dict, read_json


def add_data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=required, metavar="SPEC",
                   help="dataset spec: imagefolder:DIR, cifar10:DIR, cifar100:DIR, gtsrb:DIR, tinyimagenet:DIR, "
                        "imagenette:DIR, digits, synthetic[:n=..,size=..]")
    g.add_argument("--resize", type=int, default=None, metavar="N", help="resize images to N×N")
    g.add_argument("--skip-bad", action="store_true", help="skip corrupt files and report how many")
    g.add_argument("--download", action="store_true", help="download CIFAR-10/100 if absent (needs network)")


def add_run_args(p: argparse.ArgumentParser, profiles: str = "smoke,quick,cpu,paper",
                 default_profile: str | None = "quick") -> None:
    if default_profile is None:  # a user's data: every sample, model and recipe chosen from the data
        p.add_argument("--profile", default=None,
                       help=f"benchmark profile ({profiles}) instead of the model and recipe chosen from the data "
                            "and device; a profile's training subset applies only with --subset")
        p.add_argument("--subset", type=int, default=None, metavar="N",
                       help="train on a stratified subset of N samples (default: every sample)")
    else:
        p.add_argument("--profile", default=default_profile, help=f"benchmark profile ({profiles}); default "
                                                                  f"{default_profile}")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seed of every random step")
    p.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable)")


def add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def settings_from(args: argparse.Namespace) -> dict[str, Any]:
    """Settings from --config FILE, then --set overrides on top."""
    values: dict[str, Any] = load_file(args.config) if getattr(args, "config", None) else {}
    values.update(parse_overrides(getattr(args, "set", [])))
    return values


def split_settings(values: dict[str, Any], keys: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values whose key is in ``keys``, the rest)."""
    return {k: v for k, v in values.items() if k in keys}, {k: v for k, v in values.items() if k not in keys}


def emit(args: argparse.Namespace, text: str, obj: Any) -> None:
    """Print ``text`` (human) or ``obj`` (--json) unless --quiet."""
    if getattr(args, "quiet", False):
        return
    if getattr(args, "json", False):
        print(json.dumps(obj, indent=2, default=str))
    else:
        print(text)


def progress_on(args: argparse.Namespace) -> bool:
    """Progress wanted: bars on a terminal, one log line per stage and every few epochs elsewhere."""
    return not getattr(args, "quiet", False) and not getattr(args, "json", False)


def say(args: argparse.Namespace, line: str) -> None:
    """One line to stderr now (the run's set-up, before a long run), unless --quiet."""
    if not getattr(args, "quiet", False):
        print(line, file=sys.stderr, flush=True)


def resolve_setup(args: argparse.Namespace, values: dict | None = None):
    """(profile, prepared data) for train/defend/audit: a named profile when --profile is given, else the
    model and recipe chosen from the data and the device (every sample unless --subset N)."""
    from ..autosetup import auto_profile
    from ..pipeline import prepare
    from ..profiles import get_profile
    from ..train.infer import resolve_device

    named = get_profile(args.profile) if args.profile else None
    subset = getattr(args, "subset", None)
    if subset is not None and subset < 1:
        raise BadInputError(f"--subset must be a positive number of samples, got {subset}")
    prep = prepare(args.data, named, resize=args.resize, skip_bad=args.skip_bad, download=args.download,
                   seed=args.seed, subset=subset)
    profile = named or auto_profile(prep.splits.train, resolve_device(args.device))
    return profile, prep


def out_dir(path: str, overwrite: bool = False, resumable: bool = True) -> Path:
    """Validate an output directory: it must not be a file; an existing run may be resumed."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BadInputError(f"--out {p} exists and is not a directory")
    p.mkdir(parents=True, exist_ok=True)
    return p


def load_run_model(run: str | Path):
    """(model with weights, config dict) of a run directory written by train/defend."""
    from ..models import create_model

    run = Path(run)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise BadInputError(f"{run} is not a run directory (no config.json)")
    cfg = read_json(cfg_path)
    weights = run / "model.safetensors"
    if not weights.is_file():
        raise BadInputError(f"{run} has no model.safetensors")
    model = create_model(cfg["model"], cfg["num_classes"], cfg.get("width"), cfg.get("in_channels", 3))
    model.load_state_dict(load_state_dict(weights))
    model.eval()
    return model, cfg
