"""Command-line entry point: parses arguments and calls one command module, nothing else.

Exit codes: 0 success, 2 bad input (missing file, bad setting, corrupt data), 1 other failure,
130 interrupted (finished stages are kept and the same command resumes).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import BadInputError

# Each command module defines HELP (one line), EXAMPLE, add_arguments(parser) and run(args) -> int.
COMMANDS = ("train", "evaluate", "poison", "defend", "bench", "demo", "report", "list")
COMMANDS += ("export",)

EPILOG = """examples:
  advrbd demo                                   # poison bundled digits, defend, write demo-run/report.html
  advrbd train --data imagefolder:/data/cifar10 --profile cpu --out runs/clean
  advrbd poison --data cifar10:/data/cifar-10-batches-py --attack badnet --out poisoned/badnet
  advrbd defend --data imagefolder:poisoned/badnet --profile quick --out runs/defended
  advrbd evaluate --run runs/defended --attack-from poisoned/badnet
  advrbd bench --profile smoke --out bench/smoke

exit codes: 0 ok, 2 bad input, 1 failure, 130 interrupted (rerun the same command to resume)"""


def _module(name: str):
    return importlib.import_module(f"advrbd.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="advrbd",
        description="Train backdoor-robust image classifiers on untrusted, possibly poisoned datasets (AdvrBD).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"advrbd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _module(name)
        p = sub.add_parser(
            name,
            help=mod.HELP,
            description=mod.HELP,
            epilog="example:\n  " + mod.EXAMPLE.strip().replace("\n", "\n  "),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.ERROR if getattr(args, "quiet", False) else logging.WARNING),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except BadInputError as e:
        print(f"advrbd: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("advrbd: interrupted; finished stages are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - last line of defence: one line, not a traceback
        if args.verbose:
            raise
        print(f"advrbd: failed: {type(e).__name__}: {e} (rerun with -v for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
