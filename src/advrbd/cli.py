"""Command-line entry point: parses arguments and calls one command module, nothing else.

Exit codes: 0 success, 2 bad input (missing file, bad setting, corrupt data), 1 other failure,
130 interrupted (finished stages are kept and the same command resumes).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys

from . import dist
from .errors import BadInputError

# Each command module defines HELP (one line), EXAMPLE, add_arguments(parser) and run(args) -> int.
COMMANDS = ("train", "evaluate", "poison", "defend", "audit", "bench", "demo", "report", "list")
SHARDED = ("train", "defend", "audit", "bench")  # under torchrun every rank runs these (dist.py)
COMMANDS += ("export",)

EPILOG = """examples:
  advrbd demo                                   # poison bundled digits, defend, write demo-run/report.html
  advrbd train --data imagefolder:/data/cifar10 --profile cpu --out runs/clean
  advrbd poison --data cifar10:/data/cifar-10-batches-py --attack badnet --out poisoned/badnet
  advrbd defend --data imagefolder:poisoned/badnet --out runs/defended   # every sample, model chosen from the data
  advrbd audit --data imagefolder:mydata --out runs/audit --export cleaned   # flag only, export the kept samples
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
        # -v also after the subcommand; SUPPRESS keeps a -v given before it
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)
    # no terminal, so no progress bars: every stage and every few epochs log one line (INFO) instead
    lines = not args.verbose and not quiet and not getattr(args, "json", False) and not sys.stderr.isatty()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else (logging.ERROR if quiet else logging.WARNING),
        format="advrbd %(asctime)s %(levelname)s %(message)s" if lines else "%(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("advrbd").setLevel(logging.INFO if lines else logging.NOTSET)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        # under torchrun: join the process group; ranks other than 0 compute their share and print nothing;
        # commands that do not shard their work run on rank 0 alone
        with dist.launched(getattr(args, "device", "auto")):
            sharded = args.command in SHARDED
            if not dist.is_writer():
                if not sharded:
                    return 0
                args.quiet, args.json = True, False
                logging.getLogger().setLevel(logging.ERROR)
            with contextlib.nullcontext() if sharded else dist.local():
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
