"""Benchmark grid (SPEC §11): attacks × defenses × seeds on one profile.

Each finished cell is appended to ``DIR/results.json`` at once (atomically), so an interrupted grid
resumes where it stopped. Defenses of one attack share one standard (backdoored) training, which is
also the reference for cost ratios (``standard_train_seconds``). When the grid has the clean row
(``none`` attack) of a seed, every attack cell of that seed also gets ``clean_model_asr``: the ASR floor
(see ``_set_asr_floor``). Axes: seeds × poison rates × target classes × attack variants × defenses.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .attacks import create_attack
from .config import parse_overrides
from .defenses import DEFENSES, create_defense
from .errors import ConfigError
from .io import load_state_dict, read_json, save_state_dict, write_json
from .metrics.model import attack_success_rate
from .pipeline import (environment, evaluate_defense, make_context, prepare, resolve_recipe, RoundEvaluator,
                       run_defense, train_standard)
from .profiles import Profile
from .types import PoisonedDataset

log = logging.getLogger(__name__)
KEY = ("dataset", "model", "attack", "poison_rate", "target", "defense", "seed", "reserve")


def _clean_poisoned(train) -> PoisonedDataset:
    n = len(train)
    z = torch.zeros(n, dtype=torch.bool)
    return PoisonedDataset(train, train.labels.clone(), z, z.clone(), "none", {})


def _settings_tag(settings: dict[str, str]) -> str:
    """"" for an attack's defaults, else a short hash of its settings: it names the cell's work folder, so
    cells of one attack with other settings (e.g. another trigger file) never share stages."""
    if not settings:
        return ""
    return "-" + hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def _check_attack_settings(cells: list[dict], attack: str, settings: dict[str, str], out: Path) -> None:
    """One results.json holds one configuration per attack: its tables average cells by attack name."""
    for c in cells:
        if c.get("attack") == attack and (c.get("attack_settings") or {}) != settings:
            raise ConfigError(f"{out} already holds {attack} cells with attack settings "
                              f"{c.get('attack_settings') or 'default'}, not {settings or 'default'}; use another --out")


def parse_entry(entry: str) -> tuple[str, dict[str, str]]:
    """``name`` or ``name[key=value;key=value]``: a variant of an attack or defense with its own settings,
    e.g. ``advrbd[rounds=4]`` or ``blend[trigger=photo.png;alpha=0.15]`` (a grid axis of trigger files).
    Defense variants share the defense's work folder, so stages their settings do not change are reused.
    Syntax only: ``run_grid`` validates names and settings."""
    m = re.fullmatch(r"([\w-]+)(?:\[([^\]]*)\])?", entry.strip())
    if m is None:
        raise ConfigError(f"bad grid entry {entry!r}: expected NAME or NAME[key=value;...]")
    return m.group(1), parse_overrides([kv for kv in (m.group(2) or "").split(";") if kv.strip()])


def _split_reserve(prep, frac: float, seed: int):
    """Hold out a stratified clean reserve (before poisoning): ``(rest of the training set, reserve)``."""
    from .data.subset import stratified_split

    return stratified_split(prep.splits.train, frac, seed + 7919, "reserve")


def run_grid(profile: Profile, data: str | None, attacks: Sequence[str], defenses: Sequence[str], out: Path, *,
             rate: float | Sequence[float] = 0.05, target: int | Sequence[int] = 1, seeds: Sequence[int] = (0,),
             device: str = "auto", reserve: float = 0.05, attack_settings: dict | None = None,
             defense_settings: dict | None = None, role: str | None = None, progress: bool = False,
             on_cell: Callable[[dict], None] | None = None, results_file: str = "results.json",
             precisions: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run the grid seeds × rates × targets × attacks × defenses and return all cells (finished earlier and
    now). ``attacks`` and ``defenses``: names or variants (``parse_entry``). ``role``: "tuning" or
    "validation", recorded on every new cell so a results file says which cells chose the settings.
    ``results_file``: where cells are written, relative to ``out`` (a ``bench --jobs`` worker writes its own
    file; cells already in ``out/results.json`` count as done too). ``precisions`` (e.g. fp32, int8, int4-sim):
    also export each cell's model to ONNX, quantize it with ONNX Runtime and measure it there
    (``cell["deployed"]``); finished cells without them get them too."""
    from .quant.cells import deployed_fields, load_final_model, needs_deployment, save_final_model

    rates = [rate] if isinstance(rate, (int, float)) else list(rate)
    targets = [target] if isinstance(target, int) else list(target)
    variants = {d: parse_entry(d) for d in defenses}
    for name, variant in variants.values():  # bad settings fail now, not hours into the grid
        create_defense(name, **{**(defense_settings or {}).get(name, {}), **variant})
    attack_entries = {a: parse_entry(a) for a in attacks}
    for a, (name, variant) in attack_entries.items():
        if name != "none":
            create_attack(name, **{**(attack_settings or {}).get(name, {}), **variant})
    out.mkdir(parents=True, exist_ok=True)
    results_path, shared = out / results_file, out / "results.json"
    cells: list[dict] = read_json(results_path) if results_path.is_file() else []
    done = {tuple(c.get(k) for k in KEY): c for c in cells}
    for c in read_json(shared) if shared != results_path and shared.is_file() else []:
        done.setdefault(tuple(c.get(k) for k in KEY), c)
    prep = prepare(data, profile, seed=0)
    dataset = data or profile.data
    # The reserve is held out whatever defenses this call runs, so that every defense of a grid (and a
    # later call adding defenses to it) sees the same training set and the same standard model.
    train, clean_reserve = (_split_reserve(prep, reserve, 0) if reserve > 0 else (prep.splits.train, None))
    test = prep.splits.test
    env = environment()
    grid = [(seed, r, t, a) for seed in seeds for a in attacks
            for r, t in ([(0.0, None)] if attack_entries[a][0] == "none" else [(r, t) for r in rates for t in targets])]
    for seed, r, t, attack_entry in grid:
        attack_name, variant = attack_entries[attack_entry]
        a_settings = {**(attack_settings or {}).get(attack_name, {}), **variant} if attack_name != "none" else {}
        recorded = {k: str(v) for k, v in a_settings.items()}  # as results.json keeps them
        _check_attack_settings(cells, attack_entry, recorded, out)
        attack = None if attack_name == "none" else create_attack(
            attack_name, rate=r, target=t, seed=seed, **a_settings)
        keys = {d: (dataset, profile.model, attack_entry, r, t, d, seed, reserve) for d in defenses}
        todo = [d for d in defenses if keys[d] not in done
                or needs_deployment(done[keys[d]], precisions)]  # a finished cell still to deploy
        if not todo:
            continue
        poisoned = attack.poison(train) if attack else _clean_poisoned(train)
        asr_set = attack.make_asr_set(test) if attack else None
        recipe = resolve_recipe(profile, device, seed, attack)
        std = _standard_cache(_workdir(out, attack_name, r, t, seed, reserve, recorded), poisoned, profile, recipe,
                              progress)
        std.seconds  # train it now, so no defense's wall time includes it by accident
        for d in todo:
            name, variant = variants[d]
            wants_reserve = getattr(DEFENSES.get(name), "requires_clean_reserve", False)
            extra = {"on_round": RoundEvaluator(test, attack, asr_set)} if attack else {}
            ctx = make_context(poisoned.public(), profile, recipe, workdir=std.work / name, progress=progress,
                               clean_reserve=clean_reserve if wants_reserve else None,
                               standard_model=std.model, extra=extra)
            settings = {**(defense_settings or {}).get(name, {}), **variant}
            if keys[d] in done:  # finished earlier: deploy its saved model (or re-run it from its stages)
                model = load_final_model(std.work / name, d, ctx.new_model)
                if model is None:
                    log.info("re-running %s × %s from its stages to deploy it", attack_entry, d)
                    model = run_defense(name, settings, ctx, poisoned)[0].model
                    save_final_model(std.work / name, d, model)
                if model is not None:
                    done[keys[d]].update(deployed_fields(model, std.work / name, d, name, settings, poisoned.public(),
                                                         test, attack, asr_set, recipe, precisions, seed))
                    write_json(results_path, cells)
                continue
            log.info("cell %s × %s (target %s, rate %s, seed %d)", attack_entry, d, t, r, seed)
            result, seconds = run_defense(name, settings, ctx, poisoned)
            save_final_model(std.work / name, d, result.model)
            if name == "none" or result.info.get("reused_standard_training"):
                seconds += std.seconds  # the shared standard training is part of this defense's cost
            ev = evaluate_defense(result, poisoned.data, test, attack, poisoned if attack else None, asr_set)
            cell = {"profile": profile.name, "dataset": dataset, "model": profile.model, "attack": attack_entry,
                    "poison_rate": r, "target": t, "defense": d, "attack_settings": recorded or None,
                    "seed": seed, "reserve": reserve, "role": role, "acc": ev["acc"], "asr": ev["asr"],
                    "n_test": ev["n_test"], "n_asr": ev["n_asr"],
                    "recall": ev.get("recall"), "fpr": ev.get("fpr"), "precision": ev.get("precision"),
                    "auroc": ev.get("auroc"), "n_flagged": ev.get("n_flagged"), "seconds": seconds,
                    "standard_train_seconds": std.seconds, "n_train": len(poisoned.data),
                    "clean_reserve": len(clean_reserve) if clean_reserve is not None and wants_reserve else 0,
                    "history": list(result.history) or None,
                    "stage_seconds": result.info.get("stage_seconds"), **env}
            if precisions and result.model is not None:
                cell.update(deployed_fields(result.model, std.work / name, d, name, settings, poisoned.public(),
                                            test, attack, asr_set, recipe, precisions, seed))
            cells.append(cell)
            write_json(results_path, cells)
            if on_cell:
                on_cell(cell)
    # the ASR floor of every attack cell whose seed's clean row (its standard model) exists
    for seed in seeds:
        clean_work = _workdir(out, "none", 0.0, None, seed, reserve, {})
        lacking = [c for c in cells if c.get("attack") not in (None, "none") and c.get("clean_model_asr") is None
                   and c.get("seed") == seed and c.get("dataset") == dataset and c.get("model") == profile.model
                   and c.get("reserve") == reserve]
        if lacking and (clean_work / "standard.json").is_file():  # written last
            clean = _standard_cache(clean_work, _clean_poisoned(train), profile,
                                    resolve_recipe(profile, device, seed, None), progress).model()
            _set_asr_floor(lacking, clean, test, lambda c: create_attack(
                parse_entry(c["attack"])[0], rate=c["poison_rate"], target=c["target"], seed=seed,
                **(c.get("attack_settings") or {})))
            write_json(results_path, cells)
    return cells


def _workdir(out: Path, attack: str, rate: float, target: int | None, seed: int, reserve: float,
             settings: dict[str, str]) -> Path:
    """One work folder per poisoned training set: its standard model and every defense's stages."""
    t = "" if target is None else f"-t{target}"
    return out / "work" / f"{attack}{t}-r{rate}-s{seed}-res{reserve}{_settings_tag(settings)}"


def _set_asr_floor(cells: list[dict], clean_model: torch.nn.Module, test, make_attack) -> None:
    """Set ``clean_model_asr`` on ``cells``: the ASR (percent) of each cell's attack trigger on the standard
    model trained on the same set **without poison**. A model that never saw a poison still classifies some
    triggered images as the target (on CIFAR-10 ``quick``, 5.2% for the PhysicalBA logo), so a defense's
    ASR is judged against this floor. Inference only."""
    floors: dict[tuple, float] = {}
    for c in cells:
        key = (c["attack"], c["target"])
        if key not in floors:
            attack = make_attack(c)
            floors[key] = attack_success_rate(clean_model, attack.make_asr_set(test), attack.target)
        c["clean_model_asr"] = floors[key]


class _standard_cache:
    """Lazily trained standard model of one attack cell, kept on disk so a resumed grid reuses it."""

    def __init__(self, work: Path, poisoned: PoisonedDataset, profile: Profile, recipe, progress: bool):
        self.work, self.poisoned, self.profile, self.recipe, self.progress = work, poisoned, profile, recipe, progress
        self._model = None
        self._seconds: float | None = None

    def _ensure(self) -> None:
        if self._model is not None:
            return
        ctx = make_context(self.poisoned.public(), self.profile, self.recipe, progress=self.progress)
        weights, meta = self.work / "standard.safetensors", self.work / "standard.json"
        if weights.is_file() and meta.is_file():
            self._model = ctx.new_model()
            self._model.load_state_dict(load_state_dict(weights))
            self._seconds = float(read_json(meta)["seconds"])
            return
        self.work.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        self._model, _ = train_standard(ctx, self.work / "standard.ckpt")
        self._seconds = time.perf_counter() - t
        save_state_dict(weights, self._model.state_dict())
        write_json(meta, {"seconds": self._seconds})
        (self.work / "standard.ckpt").unlink(missing_ok=True)

    def model(self) -> torch.nn.Module:
        import copy

        self._ensure()
        return copy.deepcopy(self._model)  # defenses modify their model in place

    @property
    def seconds(self) -> float:
        self._ensure()
        return float(self._seconds)

