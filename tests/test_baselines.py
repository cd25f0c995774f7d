"""Known-answer tests of the baseline defenses on a synthetic set with a planted trigger.

Data: 10 classes of 16×16 images whose class is a faint colour offset under strong pixel noise (so the clean
task is harder than the trigger, as on real data); 10% of the non-target samples carry a 4×4 black/white
checkerboard in the bottom-right corner and are relabelled to class 1. A separate clean reserve and test set
come from the same generator. Neural Cleanse gets a second set with well-separated class colours (its
premise: a benign class needs a much larger mask than the trigger). Models are ``tiny``; runs are
single-threaded and seeded, so they are deterministic. Some tests shorten or strengthen a defense's stages: the defaults are tuned for CIFAR-sized
profiles, not 600 images.
"""
from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest
import torch

from advrbd.defenses import DEFENSES, Defense, DefenseContext, create_defense
from advrbd.defenses.clp import conv_bn_pairs
from advrbd.defenses.cutmix import cutmix
from advrbd.errors import BadInputError, ConfigError
from advrbd.models import create_model
from advrbd.train.infer import accuracy
from advrbd.train.loop import TrainConfig, fit
from advrbd.types import ImageData

K, SIZE, TARGET, N_TRAIN, RATE = 10, 16, 1, 600, 0.1
BASELINES = ("finetuning", "fineprune", "cutmix", "clp", "dbr", "scan", "abl", "oracle", "neural_cleanse")
RECIPE = TrainConfig(epochs=15, batch_size=64, lr=0.1, device="cpu", seed=0)
PATCH = ((torch.arange(4)[:, None] + torch.arange(4)[None]) % 2 == 0).float()


def _images(n: int, seed: int, spread: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    colours = 0.5 + spread * torch.randn(K, 3, generator=torch.Generator().manual_seed(1234))
    y = torch.arange(n) % K
    noise = torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    x = colours[y][:, :, None, None] + 0.2 * noise
    return x.clamp(0, 1), y


def _stamp(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[:, :, -5:-1, -5:-1] = PATCH
    return x


def _data(x: torch.Tensor, y: torch.Tensor) -> ImageData:
    return ImageData.from_float(x, y, [f"c{i}" for i in range(K)])


def _new_model() -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model("tiny", K)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # the shared 2-core machine is oversubscribed; one thread is several times faster for the tiny model
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _world(spread: float) -> dict:
    x, y = _images(N_TRAIN, 0, spread)
    cand = (y != TARGET).nonzero().flatten()
    pick = cand[torch.randperm(len(cand), generator=torch.Generator().manual_seed(7))[: int(RATE * N_TRAIN)]]
    poison = torch.zeros(N_TRAIN, dtype=torch.bool)
    poison[pick] = True
    x[poison] = _stamp(x[poison])
    y = y.clone()
    y[poison] = TARGET
    xt, yt = _images(400, 99, spread)
    non_target = yt != TARGET
    test = _data(xt, yt)
    triggered = _data(_stamp(xt[non_target]), torch.full((int(non_target.sum()),), TARGET))
    train = _data(x, y)
    backdoored = _new_model()
    fit(backdoored, train, RECIPE)
    w = {"train": train, "poison": poison, "test": test, "triggered": triggered,
         "reserve": _data(*_images(200, 55, spread)),
         "model": backdoored, "state": {k: v.clone() for k, v in backdoored.state_dict().items()}}
    w["acc"], w["asr"] = accuracy(backdoored, test), accuracy(backdoored, triggered)
    assert w["acc"] > 70 and w["asr"] > 90, (w["acc"], w["asr"])  # the planted backdoor works
    return w


@pytest.fixture(scope="module")
def world():
    """Close class colours: the clean task is harder than the trigger, as on real data."""
    return _world(0.05)


@pytest.fixture(scope="module")
def easy_world():
    """Well-separated classes: a benign class needs a large mask, as Neural Cleanse assumes. At spread 0.25
    the target's anomaly index was 2.01 on one machine and below 2 with another torch build; at 0.45 it
    is 3.0, well clear of the threshold."""
    return _world(0.45)


def _ctx(world, reserve: bool = True, **extra) -> DefenseContext:
    return DefenseContext(train=world["train"], new_model=_new_model, recipe=RECIPE,
                          clean_reserve=world["reserve"] if reserve else None,
                          standard_model=lambda: world["model"], extra=dict(extra))


def _unchanged(world) -> bool:
    return all(torch.equal(v, world["state"][k]) for k, v in world["model"].state_dict().items())


def _precision(suspected: torch.Tensor, poison: torch.Tensor) -> float:
    return (suspected & poison).sum().item() / max(1, suspected.sum().item())


# --- contract and settings -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BASELINES)
def test_registered_with_documented_settings(name):
    cls = DEFENSES.get(name)
    assert issubclass(cls, Defense) and dataclasses.is_dataclass(cls) and cls.name == name
    assert all(f.metadata.get("doc") for f in dataclasses.fields(cls)), "every setting needs a doc"
    assert isinstance(create_defense(name), cls)  # defaults are valid and the constructor does no work
    assert cls.requires_clean_reserve == (name in ("finetuning", "fineprune", "scan"))
    assert getattr(cls, "requires_ground_truth", False) == (name == "oracle")


@pytest.mark.parametrize("name, settings", [
    ("finetuning", {"lr": 0}), ("finetuning", {"epochs_factor": -1}),
    ("fineprune", {"max_ratio": 1.0}), ("fineprune", {"max_ratio": -0.1}), ("fineprune", {"max_acc_drop": -1}),
    ("cutmix", {"prob": 1.5}), ("cutmix", {"beta": 0}),
    ("clp", {"u": -1}),
    ("dbr", {"clean_ratio": -0.2}), ("dbr", {"poison_ratio": 0}), ("dbr", {"clean_ratio": 0.7, "poison_ratio": 0.5}),
    ("scan", {"threshold": 0}), ("scan", {"em_iters": 0}),
    ("abl", {"isolation_ratio": 1.0}), ("abl", {"gamma": -0.5}), ("abl", {"unlearn_lr": 0}),
    ("neural_cleanse", {"steps": 0}), ("neural_cleanse", {"success": 1.5}),
    ("abl", {"no_such_setting": 1}),
])
def test_invalid_settings_raise(name, settings):
    with pytest.raises(ConfigError):
        create_defense(name, **settings)


def test_invalid_settings_raise_valueerror_when_built_directly():
    with pytest.raises(ValueError, match="max_ratio"):
        DEFENSES.get("fineprune")(max_ratio=1.0)


def test_reserve_defenses_need_a_reserve(world):
    for name in ("finetuning", "fineprune", "scan"):
        with pytest.raises(BadInputError, match="clean reserve"):
            create_defense(name).run(_ctx(world, reserve=False))


# --- the fit mix hook used by CutMix ------------------------------------------------------------------------

def test_fit_mix_identity_matches_plain_fit(world):
    cfg = replace(RECIPE, epochs=1)
    a, b = _new_model(), _new_model()
    fit(a, world["train"], cfg)
    fit(b, world["train"], cfg, mix=lambda x, y, g: (x, y, torch.ones(())))
    assert all(torch.allclose(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_cutmix_pastes_one_box_and_reports_its_area():
    x = torch.arange(8.0)[:, None, None, None].expand(8, 3, 16, 16) / 10  # sample i is the constant i/10
    y = torch.arange(8)
    g = torch.Generator().manual_seed(3)
    cut = 0
    for _ in range(20):
        xm, y2, lam = cutmix(prob=1.0, beta=1.0)(x, y, g)
        box = xm[:, 0] != x[:, 0]  # N×H×W: pixels that came from the partner
        assert torch.equal(xm[box.unsqueeze(1).expand_as(xm)].view(-1), (y2.float() / 10)[:, None, None, None]
                           .expand_as(xm)[box.unsqueeze(1).expand_as(xm)].view(-1))
        moved = y2 != y
        if moved.any() and float(lam) < 1:
            cut += 1
            area = box[moved].float().mean((1, 2))
            assert torch.allclose(area, torch.full_like(area, 1 - float(lam)))
    assert cut > 5
    xm, y2, lam = cutmix(prob=0.0, beta=1.0)(x, y, g)
    assert torch.equal(xm, x) and torch.equal(y2, y) and float(lam) == 1.0


# --- one known-answer test per defense ----------------------------------------------------------------------

def test_finetuning_reduces_asr_keeps_accuracy(world):
    # a larger lr / longer run than the CIFAR default (lr 0.01): the reserve here is 200 images, 4 steps an epoch
    res = create_defense("finetuning", lr=0.1, epochs_factor=2).run(_ctx(world))
    assert accuracy(res.model, world["triggered"]) < world["asr"] - 15
    assert accuracy(res.model, world["test"]) > world["acc"] - 5
    assert _unchanged(world)


def test_fineprune_prunes_then_reduces_asr(world):
    # a 200-image reserve measures accuracy in 0.5-point steps; allow a 10-point drop (paper: 4) to prune enough
    pruned_only = create_defense("fineprune", max_acc_drop=10, epochs_factor=0).run(_ctx(world))
    assert pruned_only.info["reserve_acc_before"] - pruned_only.info["reserve_acc_pruned"] <= 10
    assert accuracy(pruned_only.model, world["triggered"]) < world["asr"] - 30  # pruning alone hits the backdoor
    res = create_defense("fineprune", max_acc_drop=10, lr=0.05).run(_ctx(world))
    pruned = res.info["pruned_channels"]
    assert pruned == pruned_only.info["pruned_channels"] and 0 < len(pruned) <= int(0.9 * res.model.head.in_features)
    assert torch.all(res.model.head.weight[:, pruned] == 0), "pruned channels must stay pruned after fine-tuning"
    assert accuracy(res.model, world["triggered"]) < world["asr"] - 15
    assert accuracy(res.model, world["test"]) > world["acc"] - 5
    assert _unchanged(world)


def test_cutmix_trains_from_scratch(world):
    res = create_defense("cutmix").run(_ctx(world, reserve=False))
    assert accuracy(res.model, world["test"]) > 60


def test_clp_prunes_a_planted_high_lipschitz_channel(world):
    model = _new_model()
    model.load_state_dict(world["state"])
    _, conv, bn = conv_bn_pairs(model)[0]
    with torch.no_grad():
        conv.weight[5] *= 50  # channel 5 of the first layer now amplifies its input 50×: a trigger-like channel
    ctx = _ctx(world, reserve=False)
    ctx.standard_model = lambda: model
    res = create_defense("clp").run(ctx)
    first = res.info["layers"][0]
    assert first["pruned"] == [5]
    bn_out = conv_bn_pairs(res.model)[0][2]
    assert bn_out.weight[5] == 0 and bn_out.bias[5] == 0
    assert bn.weight[5] != 0, "the input model must not be modified"


def test_dbr_poison_set_is_mostly_poison(world):
    res = create_defense("dbr", warmup_epochs=4, rounds=2).run(_ctx(world, reserve=False))
    assert res.suspected.sum() == round(0.05 * N_TRAIN)
    assert _precision(res.suspected, world["poison"]) >= 0.7
    assert res.scores.shape == (N_TRAIN,) and _unchanged(world)


def test_scan_flags_target_class_and_its_poison(world):
    res = create_defense("scan").run(_ctx(world))
    j = torch.tensor(res.info["j_star"])
    assert TARGET in res.info["flagged_classes"] and int(j.argmax()) == TARGET
    in_target = res.suspected & (world["train"].labels == TARGET)
    assert _precision(in_target, world["poison"]) >= 0.9
    assert (res.suspected & world["poison"]).sum() >= 0.9 * world["poison"].sum()
    assert accuracy(res.model, world["triggered"]) < 20  # retrained on the kept samples


def test_abl_isolates_mostly_poison(world):
    # 12 isolation epochs (default 0.2 × recipe = 3): on 600 images the model needs ~12 epochs to bring its mean
    # loss down to the flood level γ, where LGA holds clean samples back while the poison keeps being fitted
    res = create_defense("abl", isolation_factor=0.8, train_factor=0.2).run(_ctx(world, reserve=False))
    assert res.suspected.sum() == round(0.01 * N_TRAIN)
    assert _precision(res.suspected, world["poison"]) >= 0.8
    assert res.scores[res.suspected].min() >= res.threshold
    assert accuracy(res.model, world["test"]) > 50


def test_oracle_needs_ground_truth(world):
    with pytest.raises(BadInputError, match="poison_mask"):
        create_defense("oracle").run(_ctx(world, reserve=False))


def test_oracle_drops_true_poison(world):
    res = create_defense("oracle").run(_ctx(world, reserve=False, poison_mask=world["poison"]))
    assert torch.equal(res.suspected, world["poison"])
    assert accuracy(res.model, world["triggered"]) < 20


def test_neural_cleanse_flags_target_class(easy_world):
    world = easy_world
    res = create_defense("neural_cleanse", steps=150, batch_size=16).run(_ctx(world, reserve=False))
    norms = torch.tensor(res.info["mask_norms"])
    assert int(norms.argmin()) == TARGET
    assert res.info["flagged_class"] == TARGET and res.info["anomaly_index"] > 2
    assert res.suspected is None and _unchanged(world)
