"""advrbd bench: run a grid of attacks × defenses on a profile and write results.json/csv/md + report."""
from __future__ import annotations

from pathlib import Path

from .. import dist
from ..config import parse_overrides
from ..profiles import get_profile
from .common import add_output_flags, emit, out_dir, progress_on

HELP = "benchmark grid of attacks × defenses (resumable; writes results.json, results.csv, results.md)"
EXAMPLE = """advrbd bench --profile smoke --out bench/smoke
advrbd bench train --profile quick --data imagefolder:/tmp/cifar10 --out bench/train
advrbd bench attacks --profile quick --data imagefolder:/tmp/cifar10 --out bench/attacks
advrbd bench --profile quick --data imagefolder:/tmp/cifar10 --attacks badnet,blend --defenses none,advrbd --out bench/q
advrbd bench --profile quick --data imagefolder:/tmp/cifar10 --triggers ../shared/data/triggers --out bench/paper-triggers"""

ALL_ATTACKS = "badnet,blend,sig,wanet,physical,tact,adaptive_blend,adaptive_patch"


def add_arguments(p) -> None:
    p.add_argument("what", nargs="?", default="grid", choices=("grid", "train", "attacks"),
                   help="grid (default): --attacks × --defenses; train: clean training only; attacks: every attack, no defense")
    p.add_argument("--profile", default="quick", help="smoke (no data needed), quick, cpu or paper")
    p.add_argument("--data", help="dataset spec (smoke: synthetic by default)")
    p.add_argument("--attacks", default=None, help=f"comma-separated attacks or none (default: {ALL_ATTACKS}); NAME[key=value;...] is a "
                   "variant row, e.g. blend[trigger=photo.png;alpha=0.15] (trigger files as a grid axis)")
    p.add_argument("--defenses", default="none,advrbd",
                   help="comma-separated defenses (default none,advrbd); NAME[key=value;...] adds a variant column, "
                   "e.g. advrbd[enhance.rounds=4]")
    p.add_argument("--rates", "--rate", dest="rates", default="0.05",
                   help="comma-separated poison rates, fractions of the training set (grid axis; default 0.05)")
    p.add_argument("--targets", "--target", dest="targets", default="1",
                   help="comma-separated target classes (grid axis; default 1)")
    p.add_argument("--role", choices=("tuning", "validation"),
                   help="record whether these cells were used to choose settings (tuning) or not (validation)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--reserve", type=float, default=0.05, help="clean reserve fraction for defenses that need one")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--set", action="append", default=[], metavar="DEFENSE.KEY=VALUE",
                   help="defense or attack setting, e.g. advrbd.enhance.rounds=4 or wanet.s=0.75 (repeatable)")
    p.add_argument("--triggers", metavar="DIR",
                   help="folder with the paper toolkits' trigger images (hellokitty_32.png, firefox_corner_32.png, "
                   "firefox_corner_split_{1..4}_32.png): blend, adaptive_blend, physical and adaptive_patch use "
                   "them instead of the generated defaults (paper Table I); --set NAME.trigger=... wins")
    p.add_argument("--jobs", type=int, default=1, metavar="K",
                   help="run K attack units at once, one process each, on the same device (default 1)")
    p.add_argument("--precisions", metavar="LIST", default=None,
                   help="also deploy every cell's model: ONNX export (fp32) and ONNX Runtime static quantization "
                   "(int8; int4 = int4-sim, simulated INT4 weights), ACC/ASR measured with ORT, Neural Cleanse "
                   "re-run on each artefact; writes deployed.md. On an existing --out, finished cells are deployed "
                   "from their saved models / stage checkpoints, not retrained. E.g. fp32,int8,int4")
    p.add_argument("--out", required=True, help="output directory (a rerun resumes it)")
    add_output_flags(p)


def _per_name(overrides: dict[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for k, v in overrides.items():
        name, _, key = k.partition(".")
        if not key:
            from ..errors import ConfigError

            raise ConfigError(f"bench --set expects NAME.KEY=VALUE, got {k}={v}")
        out.setdefault(name, {})[key] = v
    return out


def _numbers(text: str, kind, flag: str) -> list:
    from ..errors import ConfigError

    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated numbers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag} is empty")
    return values


def run(args) -> int:
    from ..attacks import ATTACKS
    from ..bench import parse_entry, run_grid

    profile = get_profile(args.profile)
    if args.what == "train":
        attacks, defenses = ["none"], ["none"]
    else:
        attacks = (args.attacks or ALL_ATTACKS).split(",")
        defenses = ["none"] if args.what == "attacks" else args.defenses.split(",")
    per = _per_name(parse_overrides(args.set))
    if args.triggers:
        from ..attacks.triggers import paper_trigger_settings

        for a, files in paper_trigger_settings(args.triggers).items():
            if a in {parse_entry(e)[0] for e in attacks}:
                per[a] = {**files, **per.get(a, {})}
    precisions = []
    if args.precisions:
        from ..quant.onnx_export import parse_precisions

        precisions = parse_precisions(args.precisions)
    out = out_dir(args.out)
    quiet = args.quiet or args.json

    def on_cell(c: dict) -> None:
        from ..io import read_json
        from ..report import write_results_csv, write_results_md

        if not dist.is_writer():  # under torchrun only rank 0 wrote results.json
            return
        so_far = read_json(out / "results.json")  # tables stay current while a long grid runs
        write_results_csv(so_far, out / "results.csv")
        write_results_md(so_far, out / "results.md")
        if not quiet:
            asr = f"{c['asr']:6.2f}" if c["asr"] is not None else "     -"
            where = "" if c["target"] is None else f" (target {c['target']}, rate {c['poison_rate']:g})"
            print(f"{c['attack']:>15}{where} × {c['defense']:<12} ACC {c['acc']:6.2f}  ASR {asr}  "
                  f"{c['seconds']:7.1f} s", flush=True)

    kw = dict(rate=_numbers(args.rates, float, "--rates"), target=_numbers(args.targets, int, "--targets"),
              device=args.device, reserve=args.reserve, role=args.role, precisions=precisions,
              attack_settings={k: v for k, v in per.items() if k in ATTACKS},
              defense_settings={k: v for k, v in per.items() if k not in ATTACKS})
    seeds = _numbers(args.seeds, int, "--seeds")
    if args.jobs != 1:
        from ..bench_jobs import run_grid_jobs

        cells = run_grid_jobs(profile, args.data, attacks, defenses, out, jobs=args.jobs, seeds=seeds,
                              on_cell=on_cell, **kw)
    else:
        cells = run_grid(profile, args.data, attacks, defenses, out, seeds=seeds, progress=progress_on(args),
                         on_cell=on_cell, **kw)
    report = write_outputs(out, cells)
    if precisions:
        from ..io import atomic_write_text
        from ..quant.table import deployed_markdown

        atomic_write_text(out / "deployed.md", deployed_markdown(cells))
    emit(args, f"{len(cells)} cells; wrote {out / 'results.json'}, results.csv, results.md, {report}",
         {"cells": cells, "out": str(out), "report": str(report)})
    return 0


def write_outputs(out: Path, cells: list[dict]) -> Path | None:
    from ..report import write_report, write_results_csv, write_results_md

    if not dist.is_writer():
        return None
    write_results_csv(cells, out / "results.csv")
    write_results_md(cells, out / "results.md")
    return write_report(out)
