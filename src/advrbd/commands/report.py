"""``advrbd report DIR``: regenerate report.html / report.md of a run or bench directory."""
from __future__ import annotations

import argparse
import json

HELP = "regenerate report.html and report.md (with figures/) for a run or bench directory"
EXAMPLE = """advrbd report runs/defended          # prints the path of runs/defended/report.html
advrbd report bench/smoke --json       # {"report": "bench/smoke/report.html"}"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", metavar="DIR", help="a run directory (with summary.json) or bench directory (results.json)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--quiet", action="store_true", help="print nothing")
    out.add_argument("--json", action="store_true", help='print {"report": PATH} as JSON')


def run(args: argparse.Namespace) -> int:
    from ..report import write_report

    path = write_report(args.dir)
    if args.json:
        print(json.dumps({"report": str(path)}))
    elif not args.quiet:
        print(path)
    return 0
