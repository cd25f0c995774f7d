"""Pipeline stages shared by the CLI, the Python API and the benchmarks:
load data (with ground truth when a poison manifest is present) → build a defense context → run the
defense → evaluate against ground truth (outside the defense) → write the run directory.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from . import __version__
from .config import build
from .defenses import DEFENSES, DefenseContext, create_defense
from .models import create_model
from .profiles import Profile, get_profile
from .seeding import derive_seed
from .train.infer import bf16_is_fast, resolve_device
from .train.loop import TrainConfig, fit
from .types import DefenseResult, ImageData, PoisonedDataset, Splits

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Data ready for a run: splits (train possibly poisoned), and ground truth when known."""

    splits: Splits
    poisoned: PoisonedDataset | None = None
    attack: Any = None


def subset_poisoned(pd: PoisonedDataset, idx: torch.Tensor) -> PoisonedDataset:
    return PoisonedDataset(pd.data.subset(idx), pd.true_labels[idx], pd.poison_mask[idx], pd.cover_mask[idx],
                           pd.attack, pd.params)


def prepare(spec: str | None, profile: Profile, *, resize: int | None = None, skip_bad: bool = False,
            download: bool = False, seed: int = 0) -> Prepared:
    """Load ``spec`` (or the profile's default data), apply the profile's stratified subset, and pick up
    ground truth when the data is a directory written by ``advrbd poison`` (it has a manifest.json)."""
    from .attacks import load_data
    from .data import stratified_subset

    spec = spec or profile.data
    if spec is None:
        from .errors import BadInputError

        raise BadInputError(f"profile {profile.name!r} needs --data (e.g. --data imagefolder:/path/to/cifar10)")
    poisoned, splits, attack = load_data(spec, resize=resize, skip_bad=skip_bad, download=download)
    if profile.subset and profile.subset < len(splits.train):
        pos = stratified_subset(splits.train, profile.subset, seed).index  # positions in the full set
        if poisoned is not None:
            poisoned = subset_poisoned(poisoned, pos)
        splits = replace(splits, train=splits.train.subset(pos))
    return Prepared(splits, poisoned, attack)


def model_factory(name: str, width: float | None, num_classes: int, in_channels: int, seed: int) -> Callable:
    """``new_model()``: deterministic fresh models (call k gets init seed derive(seed, k))."""
    count = [0]

    def new_model() -> torch.nn.Module:
        count[0] += 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "init", count[0]))
            return create_model(name, num_classes, width, in_channels)

    return new_model


def resolve_recipe(profile: Profile, device: str = "auto", seed: int = 0, attack=None, **overrides: Any) -> TrainConfig:
    """The profile's recipe with device/seed, the attack's training-loop overrides and user overrides."""
    values = {**asdict(profile.recipe), "device": str(resolve_device(device)), "seed": seed}
    if attack is not None:
        values.update(getattr(attack, "train_overrides", {}) or {})
    values.update(overrides)
    return build(TrainConfig, values)


def make_context(train: ImageData, profile: Profile, recipe: TrainConfig, *, model: str | None = None,
                 width: float | None = None, workdir: Path | None = None, progress: bool = False,
                 clean_reserve: ImageData | None = None, standard_model: Callable | None = None,
                 extra: dict | None = None) -> DefenseContext:
    c = train.shape[0]
    factory = model_factory(model or profile.model, width if width is not None else profile.width,
                            train.num_classes, c, recipe.seed)
    return DefenseContext(train=train, new_model=factory, recipe=recipe, clean_reserve=clean_reserve,
                          workdir=workdir, standard_model=standard_model, progress=progress, extra=extra or {})


def run_defense(defense: str, settings: dict[str, Any], ctx: DefenseContext,
                poisoned: PoisonedDataset | None = None) -> tuple[DefenseResult, float]:
    """Run a registered defense; returns (result, wall seconds without the evaluation callbacks' time).
    Ground truth reaches only the oracle."""
    d = create_defense(defense, **settings)
    cls = DEFENSES.get(defense)
    if getattr(cls, "requires_ground_truth", False):
        if poisoned is None:
            from .errors import BadInputError

            raise BadInputError(f"defense {defense!r} needs ground truth (data written by `advrbd poison`)")
        ctx.extra["poison_mask"] = poisoned.poison_mask
    t = time.perf_counter()
    result = d.run(ctx)
    seconds = time.perf_counter() - t
    # evaluation done inside the run (ACC/ASR after every enhancement round) is not the defense's cost
    eval_s = getattr(ctx.extra.get("on_round"), "seconds", 0.0)
    if eval_s:
        seconds -= eval_s
        result.info["evaluation_seconds"] = eval_s
    return result, seconds


def defend(data: ImageData, defense: str = "advrbd", *, profile: str | Profile = "quick", model: str | None = None,
           width: float | None = None, device: str = "auto", seed: int = 0, workdir: str | Path | None = None,
           progress: bool = False, recipe: dict[str, Any] | None = None, **settings: Any) -> DefenseResult:
    """One-call API: run ``defense`` on an untrusted training set and return its ``DefenseResult``.

    ``data`` is the public training set (uint8 ImageData). ``profile`` picks model and recipe.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    rec = resolve_recipe(prof, device, seed, **(recipe or {}))
    ctx = make_context(data, prof, rec, model=model, width=width,
                       workdir=Path(workdir) if workdir else None, progress=progress)
    return run_defense(defense, settings, ctx)[0]


def environment() -> dict[str, str]:
    dev = resolve_device("auto")
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    return {"device": name, "auto_precision": "bf16" if bf16_is_fast(dev.type) else "fp32",
            "torch_version": torch.__version__, "advrbd_version": __version__}


def train_standard(ctx: DefenseContext, checkpoint: Path | None = None) -> tuple[torch.nn.Module, float]:
    """One standard training on ``ctx.train`` (the reference for cost ratios); returns (model, seconds)."""
    model = ctx.new_model()
    t = time.perf_counter()
    fit(model, ctx.train, ctx.recipe, checkpoint=checkpoint, progress="standard training" if ctx.progress else False)
    return model, time.perf_counter() - t


class RoundEvaluator:
    """Callback for AdvrBD's enhancement rounds: ACC/ASR (percent) of the round's model on the test set
    (evaluation only; the defense records the numbers but never reads them). ``seconds`` accumulates its
    own wall time, which :func:`run_defense` takes out of the defense's cost."""

    def __init__(self, test: ImageData, attack, asr_set: ImageData | None):
        self.test, self.attack, self.asr_set, self.seconds = test, attack, asr_set, 0.0

    def __call__(self, r: int, model: torch.nn.Module) -> dict:
        from .metrics.model import evaluate

        t = time.perf_counter()
        ev = evaluate(model, self.test, self.attack, self.asr_set)
        self.seconds += time.perf_counter() - t
        return {"acc": ev.acc, "asr": ev.asr}


def evaluate_defense(result: DefenseResult, train: ImageData, test: ImageData, attack=None,
                     poisoned: PoisonedDataset | None = None, asr_set: ImageData | None = None,
                     quant: bool = False) -> dict[str, Any]:
    """ACC/ASR of the defended model and detection metrics against ground truth (evaluation only)."""
    from .metrics import detection_metrics
    from .metrics.model import evaluate

    out: dict[str, Any] = {"acc": None, "asr": None, "n_test": len(test), "n_asr": None}
    if attack is not None and asr_set is None:
        asr_set = attack.make_asr_set(test)
    if result.model is not None:
        ev = evaluate(result.model, test, attack, asr_set)
        out.update(acc=ev.acc, asr=ev.asr, n_asr=ev.n_asr)
        if quant:
            from .quant import quantized_metrics

            out["quant"] = quantized_metrics(result.model, test, attack, asr_set)
    if poisoned is not None and result.suspected is not None:
        det = detection_metrics(result.suspected, poisoned.poison_mask, poisoned.cover_mask, result.scores,
                                train.labels, train.classes)
        out.update(det)
    out["n_flagged"] = int(result.suspected.sum()) if result.suspected is not None else None
    return out
