"""advrbd list: registered attacks, defenses, models, datasets and profiles with one-line descriptions, and
the settings (``--set`` keys) of every attack and defense with their defaults and docs."""
from __future__ import annotations

import dataclasses

from .common import add_output_flags, emit

HELP = "list registered attacks, defenses, models, datasets or profiles"
EXAMPLE = "advrbd list defenses"


def add_arguments(p) -> None:
    p.add_argument("kind", choices=("attacks", "defenses", "models", "datasets", "profiles"), help="what to list")
    add_output_flags(p)


def run(args) -> int:
    if args.kind == "profiles":
        from ..profiles import PROFILES

        rows = [(p.name, p.description, []) for p in PROFILES.values()]
    else:
        if args.kind == "attacks":
            from ..attacks import ATTACKS as reg
        elif args.kind == "defenses":
            from ..defenses import DEFENSES as reg
        elif args.kind == "models":
            from ..models import MODELS as reg
        else:
            from ..data import DATASETS as reg
        rows = [(e.name, e.description, _settings(e.obj)) for e in reg.entries()]
    width = max((len(r[0]) for r in rows), default=0)
    text = []
    for n, d, settings in rows:
        text.append(f"{n:<{width}}  {d}")
        text += [f"{'':<{width}}    {s['name']} = {s['default']!r}  {s['doc']}" for s in settings]
    emit(args, "\n".join(text), [{"name": n, "description": d, "settings": s} for n, d, s in rows])
    return 0


def _settings(obj) -> list[dict]:
    """The dataclass fields of an attack or defense (name, default, doc); [] for other registered objects."""
    if not dataclasses.is_dataclass(obj):
        return []
    out = []
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):  # a stage's settings: listed as stage.key
            out += [{**s, "name": f"{f.name}.{s['name']}"} for s in _settings(default)]
        elif default is not dataclasses.MISSING:
            out.append({"name": f.name, "default": default, "doc": f.metadata.get("doc", "")})
    return out
