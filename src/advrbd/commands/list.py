"""advrbd list: registered attacks, defenses, models, datasets and profiles with one-line descriptions."""
from __future__ import annotations

from .common import add_output_flags, emit

HELP = "list registered attacks, defenses, models, datasets or profiles"
EXAMPLE = "advrbd list defenses"


def add_arguments(p) -> None:
    p.add_argument("kind", choices=("attacks", "defenses", "models", "datasets", "profiles"), help="what to list")
    add_output_flags(p)


def run(args) -> int:
    if args.kind == "profiles":
        from ..profiles import PROFILES

        rows = [(p.name, p.description) for p in PROFILES.values()]
    else:
        if args.kind == "attacks":
            from ..attacks import ATTACKS as reg
        elif args.kind == "defenses":
            from ..defenses import DEFENSES as reg
        elif args.kind == "models":
            from ..models import MODELS as reg
        else:
            from ..data import DATASETS as reg
        rows = [(e.name, e.description) for e in reg.entries()]
    width = max((len(n) for n, _ in rows), default=0)
    emit(args, "\n".join(f"{n:<{width}}  {d}" for n, d in rows), [{"name": n, "description": d} for n, d in rows])
    return 0
