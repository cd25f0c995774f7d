"""Pipeline stages shared by the CLI, the Python API and the benchmarks:
load data (with ground truth when a poison manifest is present) → build a defense context → run the
defense → evaluate against ground truth (outside the defense) → write the run directory.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch

from . import __version__
from .config import build
from .defenses import DEFENSES, DefenseContext, create_defense
from .models import check_model, create_model
from .models.adapter import materialize
from .profiles import Profile, get_profile
from .seeding import derive_seed
from .train.infer import resolve_device
from .train.precision import precision_choice
from .train.loop import TrainConfig, fit
from .types import DefenseResult, ImageData, PoisonedDataset, Splits

log = logging.getLogger(__name__)

# defenses that read penultimate activations (features() or the input of the last nn.Linear)
FEATURE_DEFENSES = frozenset({"advrbd", "scan", "dbr", "fineprune"})


@dataclass
class Prepared:
    """Data ready for a run: splits (train possibly poisoned), and ground truth when known."""

    splits: Splits
    poisoned: PoisonedDataset | None = None
    attack: Any = None
    n_total: int | None = None  # training samples before any subset
    subset_source: str | None = None  # why a subset was taken (None: every sample is used)


def subset_poisoned(pd: PoisonedDataset, idx: torch.Tensor) -> PoisonedDataset:
    return PoisonedDataset(pd.data.subset(idx), pd.true_labels[idx], pd.poison_mask[idx], pd.cover_mask[idx],
                           pd.attack, pd.params)


def prepare(spec: str | None, profile: Profile | None, *, resize: int | None = None, skip_bad: bool = False,
            download: bool = False, seed: int = 0, subset: int | None | str = "profile") -> Prepared:
    """Load ``spec`` (or the profile's default data), cut a stratified training subset when asked, and pick
    up ground truth when the data is a directory written by ``advrbd poison`` (it has a manifest.json).

    ``subset``: "profile" = the profile's subset (benchmarks), None = every sample, N = N samples.
    ``Prepared.n_total`` and ``Prepared.subset_source`` say whether a subset was taken and why."""
    from .attacks import load_data
    from .data import stratified_subset

    spec = spec or (profile.data if profile is not None else None)
    if spec is None:
        from .errors import BadInputError

        needs = f"profile {profile.name!r} needs" if profile is not None else "needs"
        raise BadInputError(f"{needs} --data (e.g. --data imagefolder:/path/to/cifar10)")
    poisoned, splits, attack = load_data(spec, resize=resize, skip_bad=skip_bad, download=download)
    n_total, source = len(splits.train), None
    if subset == "profile":
        subset, source = (profile.subset if profile is not None else None), f"profile {getattr(profile, 'name', '')}"
    elif subset is not None:
        source = "--subset"
    if subset and subset < n_total:
        pos = stratified_subset(splits.train, int(subset), seed).index  # positions in the full set
        if poisoned is not None:
            poisoned = subset_poisoned(poisoned, pos)
        splits = replace(splits, train=splits.train.subset(pos))
        log.warning("training on a stratified subset of %d of %d samples (%s); the rest get no verdict",
                    len(pos), n_total, source)
    return Prepared(splits, poisoned, attack, n_total, source if len(splits.train) < n_total else None)


def model_factory(name: "str | torch.nn.Module | Callable", width: float | None, num_classes: int, in_channels: int,
                  seed: int, shape: tuple[int, int, int] | None = None) -> Callable:
    """``new_model()``: deterministic fresh models (call k gets init seed derive(seed, k)).

    ``name``: a registered name, ``module:callable`` / ``file.py:callable``, a factory called as
    ``factory(num_classes=...)``, or an ``nn.Module`` instance (each call returns a copy with its
    parameters re-initialised by ``reset_parameters``). ``shape`` (C, H, W) initialises lazy layers."""
    count = [0]

    def build() -> torch.nn.Module:
        m = _build()
        return materialize(m, shape) if shape is not None else m

    def _build() -> torch.nn.Module:
        if isinstance(name, torch.nn.Module):
            m = copy.deepcopy(name)
            for mod in m.modules():
                if hasattr(mod, "reset_parameters") and not isinstance(mod, torch.nn.modules.lazy.LazyModuleMixin):
                    mod.reset_parameters()
            return m
        if callable(name) and not isinstance(name, str):
            return name(num_classes=num_classes)
        return create_model(name, num_classes, width, in_channels)

    def new_model() -> torch.nn.Module:
        count[0] += 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "init", count[0]))
            return build()

    new_model.build = build  # for the pre-training check, without advancing the init counter
    return new_model


def model_label(model: Any) -> str:
    """How a model is named in config.json / summary.json."""
    if model is None or isinstance(model, str):
        return str(model)
    return type(model).__name__ if isinstance(model, torch.nn.Module) else getattr(model, "__qualname__", str(model))


def resolve_recipe(profile: Profile, device: str = "auto", seed: int = 0, attack=None, **overrides: Any) -> TrainConfig:
    """The profile's recipe with device/seed, the attack's training-loop overrides and user overrides."""
    values = {**asdict(profile.recipe), "device": str(resolve_device(device)), "seed": seed}
    if attack is not None:
        values.update(getattr(attack, "train_overrides", {}) or {})
    values.update(overrides)
    return build(TrainConfig, values)


def make_context(train: ImageData, profile: Profile, recipe: TrainConfig, *, model: Any = None,
                 width: float | None = None, workdir: Path | None = None, progress: bool = False,
                 clean_reserve: ImageData | None = None, standard_model: Callable | None = None,
                 extra: dict | None = None, defense: str | None = None) -> DefenseContext:
    """Defense context; the model is checked first (``models.check_model``: one-line ``BadInputError``
    before any training) — with penultimate activations when ``defense`` reads them."""
    c = train.shape[0]
    chosen = model if model is not None else profile.model
    factory = model_factory(chosen, width if width is not None else profile.width,
                            train.num_classes, c, recipe.seed, train.shape)
    with torch.random.fork_rng(devices=[]):
        probe = factory.build()
    check_model(probe, train.shape, train.num_classes, f"model {model_label(chosen)}",
                needs_features=defense in FEATURE_DEFENSES)
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


def defend(data: Any, defense: str = "advrbd", *, profile: str | Profile | None = None, model: Any = None,
           width: float | None = None, device: str = "auto", seed: int = 0, workdir: str | Path | None = None,
           progress: bool = False, recipe: dict[str, Any] | None = None, **settings: Any) -> DefenseResult:
    """Lower-level one-call form returning the raw ``DefenseResult`` (``advrbd.defend`` returns the
    per-sample table, ranked indices and model). ``data``: anything ``advrbd.as_image_data`` accepts;
    ``profile`` None = model and recipe chosen from the data and the device; every sample is used."""
    from .autosetup import auto_profile
    from .data.convert import as_image_data

    train, _ = as_image_data(data)
    prof = get_profile(profile) if isinstance(profile, str) else profile
    prof = prof or auto_profile(train, resolve_device(device))
    rec = resolve_recipe(prof, device, seed, **(recipe or {}))
    ctx = make_context(train, prof, rec, model=model, width=width, workdir=Path(workdir) if workdir else None,
                       progress=progress, defense=defense)
    return run_defense(defense, settings, ctx)[0]


def environment(device: str | torch.device = "auto") -> dict[str, str]:
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    bf16, why = precision_choice(dev.type)
    return {"device": name, "auto_precision": "bf16" if bf16 else "fp32", "auto_precision_reason": why,
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
