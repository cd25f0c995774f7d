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


def add_run_args(p: argparse.ArgumentParser, profiles: str = "smoke,quick,cpu,paper") -> None:
    p.add_argument("--profile", default="quick", help=f"benchmark profile ({profiles}); default quick")
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
    return not getattr(args, "quiet", False) and not getattr(args, "json", False) and sys.stderr.isatty()


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
