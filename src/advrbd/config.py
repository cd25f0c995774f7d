"""Settings are dataclass fields; config files, ``--set key=value`` overrides and run manifests derive
from them. Unknown keys are errors, values are coerced to the field's declared type.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        last: Exception | None = None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                last = e
        raise last or ConfigError(f"setting {key!r}: cannot use {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip() != ""]
        inner = args[0] if args else str
        return tuple(_coerce(v, inner, key) for v in value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"setting {key!r} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    try:
        if tp is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {key!r} expects {getattr(tp, '__name__', tp)}; got {value!r}") from None
    return value


def build(cls: type[T], values: Mapping[str, Any] | None = None, **more: Any) -> T:
    """Instantiate dataclass ``cls`` from ``values``; unknown keys raise ``ConfigError``.

    A field whose type is itself a dataclass (a method's stage settings) takes ``field.key`` entries
    (``enhance.rounds=3``), a mapping (a config file's ``{"enhance": {"rounds": 3}}``) or an instance."""
    merged = {**(values or {}), **more}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    nested: dict[str, dict[str, Any]] = {}
    for k in list(merged):
        head, dot, rest = k.partition(".")
        if dot and head in names and dataclasses.is_dataclass(hints[head]):
            nested.setdefault(head, {})[rest] = merged.pop(k)
    unknown = sorted(set(merged) - names)
    if unknown:
        known = sorted(f"{n}.*" if dataclasses.is_dataclass(hints[n]) else n for n in names)
        raise ConfigError(
            f"unknown setting(s) for {cls.__name__}: {', '.join(unknown)}; known: {', '.join(known)}"
        )
    kwargs = {}
    for k, v in merged.items():
        if dataclasses.is_dataclass(hints[k]) and not isinstance(v, hints[k]):
            if not isinstance(v, Mapping):
                raise ConfigError(f"setting {k!r} expects a mapping of {k}.KEY settings; got {v!r}")
            nested[k] = {**v, **nested.get(k, {})}
        else:
            kwargs[k] = _coerce(v, hints[k], k)
    for k, vals in nested.items():
        base = dataclasses.asdict(kwargs[k]) if k in kwargs else {}
        try:
            kwargs[k] = build(hints[k], {**base, **vals})
        except ConfigError as e:
            raise ConfigError(f"{cls.__name__}.{k}: {e}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{cls.__name__}: {e}") from None


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``."""
    out: dict[str, str] = {}
    for item in items or ():
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file into a flat dict."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse failure is bad input
        raise ConfigError(f"cannot parse config file {p}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of settings")
    return data


def as_dict(obj: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (for config.json / summary.json)."""
    return dataclasses.asdict(obj)


def describe(cls: type) -> list[tuple[str, Any, str]]:
    """``(name, default, doc)`` for every field; doc comes from ``field(metadata={"doc": ...})``."""
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append((f.name, default, f.metadata.get("doc", "")))
    return out
