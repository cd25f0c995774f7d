"""Attack contract tests (every registry entry), trigger known-answer tests and the `advrbd poison` CLI.

Synthetic tensors only; the shared toolkit trigger images are used when present (skipped otherwise).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from advrbd.attacks import ATTACKS, RateCapWarning, create_attack, load_data, load_poisoned
from advrbd.attacks import triggers
from advrbd.errors import BadInputError, ConfigError
from advrbd.train import TrainConfig
from advrbd.types import ImageData

NAMES = ATTACKS.names()
SHARED_TRIGGERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "triggers"
DEFAULT_COVER = {"wanet": 0.05, "tact": 0.01, "adaptive_blend": 0.01, "adaptive_patch": 0.01}


def make_data(n: int = 400, classes: int = 10, size: int = 32, channels: int = 3, seed: int = 0) -> ImageData:
    """Random-noise images (every trigger changes them) with balanced labels."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, size, size, channels), dtype=torch.uint8, generator=g)
    labels = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
    return ImageData(images, labels, tuple(f"c{i}" for i in range(classes)))


def expected_counts(attack, data: ImageData) -> tuple[int, int]:
    n = len(data)
    size = lambda cls: int((data.labels == cls).sum())  # noqa: E731
    want_p, want_c = round(attack.rate * n), round(attack.cover_rate * n)
    if attack.name == "sig":
        return min(want_p, size(attack.target)), want_c
    if attack.name == "tact":
        pool = sum(size(c) for c in attack.usable_cover_classes(data.num_classes))
        return min(want_p, size(attack.source)), min(want_c, pool)
    return want_p, want_c


def check_poisoned(attack, data: ImageData) -> None:
    pd = attack.poison(data)
    p, c = pd.poison_mask, pd.cover_mask
    n_p, n_c = expected_counts(attack, data)
    assert (int(p.sum()), int(c.sum())) == (n_p, n_c)
    assert not (p & c).any()
    assert pd.data.images.dtype == torch.uint8 and pd.data.images.shape == data.images.shape
    assert torch.equal(pd.true_labels, data.labels)
    assert (pd.data.labels[p] == attack.target).all()
    assert torch.equal(pd.data.labels[~p], data.labels[~p])
    # untouched samples are byte-identical; every poison/cover image carries a visible change
    assert torch.equal(pd.data.images[~(p | c)], data.images[~(p | c)])
    changed = (pd.data.images != data.images).flatten(1).any(1)
    assert changed[p | c].all()
    asr = attack.make_asr_set(data)
    keep = data.labels == attack.source if attack.name == "tact" else data.labels != attack.target
    assert len(asr) == int(keep.sum()) and torch.equal(asr.labels, data.labels[keep])
    assert torch.equal(asr.index, data.index[keep])
    assert (asr.images != data.images[keep]).flatten(1).any(1).all()


# ------------------------------------------------------------------------------------ registry contract


def test_registry_lists_the_eight_spec_attacks():
    assert NAMES == ["badnet", "blend", "sig", "wanet", "physical", "tact", "adaptive_blend", "adaptive_patch"]


@pytest.mark.parametrize("name", NAMES)
def test_contract(name):
    data = make_data()
    attack = create_attack(name)
    assert (attack.target, attack.rate, attack.seed) == (1, 0.05, 0)
    assert attack.cover_rate == DEFAULT_COVER.get(name, 0.0)
    assert attack.__doc__ and ATTACKS.get(name).__module__.endswith(name)
    check_poisoned(attack, data)
    pd = attack.poison(data)
    assert pd.attack == name and pd.params == dataclasses.asdict(attack)
    assert create_attack(name, **pd.params) == attack
    # threat-model specific labelling
    if name == "sig":
        assert (pd.true_labels[pd.poison_mask] == attack.target).all()
    if name == "tact":
        assert (pd.true_labels[pd.poison_mask] == 0).all()
        assert set(pd.true_labels[pd.cover_mask].tolist()) <= {5, 7}
    assert torch.equal(pd.data.labels[pd.cover_mask], pd.true_labels[pd.cover_mask])
    # reproducible; another seed selects differently
    again = create_attack(name).poison(data)
    assert torch.equal(again.data.images, pd.data.images) and torch.equal(again.poison_mask, pd.poison_mask)
    other = create_attack(name, seed=1).poison(data)
    assert not torch.equal(other.poison_mask, pd.poison_mask)
    # float API keeps [0,1], shape and input
    x = data.float_nchw(torch.arange(8))
    x0 = x.clone()
    for mode in ("poison", "cover", "test"):
        y = attack.apply_trigger(x, mode, generator=torch.Generator().manual_seed(0))
        assert y.shape == x.shape and y.dtype == torch.float32 and 0 <= y.min() and y.max() <= 1
    assert torch.equal(x, x0)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(attack.train_overrides) <= fields
    assert attack.train_overrides == ({"physical": True} if name == "physical" else {})


@pytest.mark.filterwarnings("ignore::advrbd.attacks.RateCapWarning")  # 43 classes: sig/tact pools of 10
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(64, 3, 10), (32, 1, 10), (32, 3, 43)], ids=["64px", "grey", "43cls"])
def test_any_size_channels_classes(name, shape):
    size, channels, classes = shape
    data = make_data(n=430 if classes == 43 else 200, classes=classes, size=size, channels=channels)
    check_poisoned(create_attack(name), data)


@pytest.mark.parametrize("name", ["sig", "tact"])
def test_rate_capped_at_pool_with_warning(name):
    data = make_data(n=200)
    attack = create_attack(name, rate=0.3)
    with pytest.warns(RateCapWarning):
        pd = attack.poison(data)
    cls = attack.target if name == "sig" else attack.source
    assert int(pd.poison_mask.sum()) == int((data.labels == cls).sum())


def test_tact_without_cover_classes_falls_back(recwarn):
    data = make_data(n=120, classes=4)  # classes 5 and 7 do not exist
    pd = create_attack("tact").poison(data)
    assert set(pd.true_labels[pd.cover_mask].tolist()) <= {2, 3} and int(pd.cover_mask.sum()) == 1


def test_invalid_settings():
    with pytest.raises(ConfigError):
        create_attack("badnet", alpah=0.3)
    with pytest.raises(ConfigError):
        create_attack("sig", trigger="x.png")
    with pytest.raises(ConfigError):
        create_attack("blend", rate=1.5)
    with pytest.raises(ConfigError):
        create_attack("tact", source=1)
    with pytest.raises(ConfigError):
        create_attack("adaptive_patch", trigger="a.png,b.png")
    with pytest.raises(BadInputError):
        create_attack("nope")
    with pytest.raises(BadInputError):
        create_attack("badnet", target=12).poison(make_data(n=50))
    with pytest.raises(BadInputError):
        create_attack("blend", trigger="/no/such/file.png").poison(make_data(n=50))


# ----------------------------------------------------------------------------------- trigger geometry


def changed_region(name: str, size: int, **settings) -> torch.Tensor:
    data = make_data(n=200, size=size)
    pd = create_attack(name, **settings).poison(data)
    return (pd.data.images != data.images).any(-1)[pd.poison_mask].any(0)  # H×W


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name,rows", [("badnet", (29, 31)), ("tact", (21, 28))])
def test_patch_diff_confined_to_scaled_box(name, rows, size):
    region = changed_region(name, size)
    box = triggers.box_mask(size, size, rows, rows)[0].bool()
    assert torch.equal(region, box)  # random-noise images: every patch pixel changes somewhere
    k = size // 32
    assert int(box.sum()) == ((rows[1] - rows[0] + 1) * k) ** 2


def test_physical_patch_in_logo_corner():
    region = changed_region("physical", 64)
    ys, xs = region.nonzero(as_tuple=True)
    assert ys.min() >= 2 and ys.max() <= 27 and xs.min() >= 36 and xs.max() <= 61  # rows 1–13, cols 18–30 ×2


def test_blend_and_sig_known_answers():
    x = torch.full((2, 3, 32, 48), 0.5)
    blend = create_attack("blend")
    t, m = blend.pattern(3, 32, 48)
    assert torch.allclose(blend.apply_trigger(x), 0.8 * x + 0.2 * t, atol=1e-6) and bool((m == 1).all())
    sig = create_attack("sig", delta=0.1, freq=6)
    j = torch.arange(48, dtype=torch.float32)
    expect = 0.5 + 0.1 * torch.sin(2 * math.pi * j * 6 / 48)
    assert torch.allclose(sig.apply_trigger(x), expect.expand_as(x), atol=1e-6)
    assert sig.apply_trigger(torch.ones_like(x)).max() == 1  # clamped


def test_wanet_is_a_smooth_bounded_warp():
    attack = create_attack("wanet")
    h = w = 32
    x = make_data(n=4).float_nchw()
    grid = attack.warp_grid(h, w)
    # no permutation: the trigger is exactly a bilinear grid_sample of the original
    assert torch.equal(attack.apply_trigger(x, "test"), F.grid_sample(x, grid.expand(4, -1, -1, -1), align_corners=True).clamp(0, 1))
    const = torch.full((1, 3, h, w), 0.3)
    assert torch.allclose(attack.apply_trigger(const), const, atol=1e-6)
    # the field: s/size × bicubic upsampling of a k×k control grid (clamped to [-1, 1])
    coarse = attack.coarse_field()
    assert coarse.shape == (1, 2, 4, 4) and torch.isclose(coarse.abs().mean(), torch.tensor(1.0))
    ident = torch.stack(torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")[::-1], 2)[None]
    up = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    assert torch.allclose(grid, (ident + 0.5 * up / h).clamp(-1, 1), atol=1e-6)
    # displacement in pixels: s·n·(H−1)/(2H) ≤ 0.625·s·max|coarse| (bicubic overshoot ≤ 1.25)
    disp = (grid - ident) * (h - 1) / 2
    assert disp.abs().max() <= 0.625 * 0.5 * coarse.abs().max() + 1e-5
    # smooth (away from the clamped border): neighbours differ by a small fraction of the range
    inner = disp[:, 1:-1, 1:-1]
    for a, b in ((inner[:, 1:], inner[:, :-1]), (inner[:, :, 1:], inner[:, :, :-1])):
        assert (a - b).abs().max() <= 0.2 * (inner.max() - inner.min())
    # cover ("noise") mode: warp + per-sample noise, different from the plain warp
    cover = attack.apply_trigger(x, "cover", generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(cover, attack.apply_trigger(x, "test"))


def test_adaptive_blend_masks_exactly_half_the_pieces():
    attack = create_attack("adaptive_blend")
    x = torch.full((16, 3, 32, 32), 0.5)
    t, _ = attack.pattern(3, 32, 32)
    y = attack.apply_trigger(x, "poison", generator=torch.Generator().manual_seed(0))
    changed = ((y - x).abs() > 1e-7).any(1).float()  # N×H×W
    ids = triggers.piece_ids(32, 32, 4)
    frac = torch.stack([changed[:, ids == p].mean(1) for p in range(16)], 1)  # N×16
    assert bool(((frac > 0.9) | (frac < 0.1)).all())
    assert ((frac > 0.9).sum(1) == 8).all()
    assert len({tuple(r) for r in (frac > 0.9).int().tolist()}) > 1  # the half varies per image
    on = (frac > 0.9)[:, ids][:, None]
    assert torch.allclose(y, torch.where(on, 0.85 * x + 0.15 * t, x), atol=1e-6)
    assert torch.allclose(attack.apply_trigger(x, "test"), 0.8 * x + 0.2 * t, atol=1e-6)


def test_adaptive_patch_one_piece_per_image_balanced_all_at_test():
    attack = create_attack("adaptive_patch", rate=0.1)
    data = make_data(n=410)
    pd = attack.poison(data)
    _, masks = attack.patches(3, 32, 32)
    diff = (pd.data.images != data.images).any(-1)[pd.poison_mask].float()  # P×H×W
    inside = torch.einsum("phw,khw->pk", diff, masks[:, 0])
    which = inside.argmax(1)
    assert torch.equal(inside.sum(1), diff.flatten(1).sum(1))  # all change inside one piece
    assert ((inside > 0).sum(1) == 1).all()
    counts = torch.bincount(which, minlength=4)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 41
    test_diff = (attack.make_asr_set(data).images != data.images[data.labels != 1]).any(-1).any(0)
    assert torch.equal(test_diff, masks.sum(0)[0] > 0)


# ------------------------------------------------------------------------------------------ trigger files


def _png(path: Path, arr: np.ndarray) -> str:
    Image.fromarray(arr).save(path)
    return str(path)


def test_trigger_file_black_is_no_trigger_unless_mask(tmp_path):
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[2:6, 3:9] = (255, 0, 0)
    f = _png(tmp_path / "t.png", arr)
    t, m = triggers.load_trigger_and_mask(f, None, 64, 3)
    assert t.shape == (3, 64, 64) and torch.equal(m[0].nonzero().amin(0), torch.tensor([4, 6]))
    assert int(m.sum()) == 8 * 12
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[0:10, 0:10] = 255
    _, m2 = triggers.load_trigger_and_mask(f, _png(tmp_path / "m.png", mask), 32, 1)
    assert int(m2.sum()) == 100
    small = _png(tmp_path / "s.png", np.full((4, 4, 3), 200, np.uint8))  # patch file: bottom-right, scaled
    assert torch.equal(triggers.implied_mask(small, 64)[0].nonzero().amin(0), torch.tensor([56, 56]))
    pd = create_attack("badnet", trigger=f).poison(make_data(n=100, channels=1))
    assert pd.data.images.shape[-1] == 1


@pytest.mark.skipif(not SHARED_TRIGGERS.is_dir(), reason="shared toolkit triggers not present")
@pytest.mark.parametrize("size", [32, 64])
def test_shared_toolkit_triggers(size):
    d = SHARED_TRIGGERS
    split = ",".join(str(d / f"firefox_corner_split_{i}_32.png") for i in range(1, 5))
    cases = {
        "blend": {"trigger": str(d / "hellokitty_32.png")},
        "adaptive_blend": {"trigger": str(d / "hellokitty_224.png")},
        "physical": {"trigger": str(d / "firefox_corner_32.png")},
        "adaptive_patch": {"trigger": split},
        "tact": {"trigger": str(d / "trojan_square_32.png"), "mask": str(d / "mask_trojan_square_32.png")},
    }
    data = make_data(n=200, size=size)
    for name, settings in cases.items():
        check_poisoned(create_attack(name, **settings), data)
    _, m = create_attack("physical", **cases["physical"]).pattern(3, size, size)
    ys, xs = m[0].nonzero(as_tuple=True)
    k = size // 32
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (1 * k, 14 * k - 1, 18 * k, 31 * k - 1)
    _, m = create_attack("tact", **cases["tact"]).pattern(3, size, size)
    assert torch.equal(m, triggers.box_mask(size, size, (21, 28), (21, 28)))
    _, masks = create_attack("adaptive_patch", **cases["adaptive_patch"]).patches(3, size, size)
    assert masks.shape == (4, 1, size, size) and (masks.sum(0) <= 1).all()


# ---------------------------------------------------------------------------------------------- CLI


def _cli(argv: list[str], monkeypatch) -> int:
    """``advrbd.cli.main`` restricted to the command modules that import (others are being written)."""
    from advrbd import cli

    present = []
    for name in cli.COMMANDS:
        try:
            importlib.import_module(f"advrbd.commands.{name}")
            present.append(name)
        except ImportError:
            pass
    monkeypatch.setattr(cli, "COMMANDS", tuple(present))
    return cli.main(argv)


def test_cli_poison_roundtrip(tmp_path, monkeypatch, capsys):
    from advrbd.data import load_dataset

    monkeypatch.setenv("ADVRBD_CACHE", str(tmp_path / "cache"))
    spec = "synthetic:n=200,test=50,size=32"
    out = tmp_path / "p"
    argv = ["poison", "--data", spec, "--attack", "tact", "--rate", "0.05", "--set", "cover_classes=5,7",
            "--out", str(out), "--json"]
    assert _cli(argv, monkeypatch) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["poison"], summary["cover"], summary["train"], summary["test"]) == (10, 2, 200, 50)
    assert (out / "manifest.json").is_file() and (out / "gallery.png").stat().st_size > 1000
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["attack"] == "tact" and manifest["params"]["cover_classes"] == [5, 7]

    pd, splits, attack = load_poisoned(out)
    source = load_dataset(spec)
    assert manifest["source"]["fingerprint"] == source.fingerprint
    ref = create_attack("tact").poison(source.train)
    perm = torch.tensor(manifest["original_index"])
    assert torch.equal(pd.data.images, ref.data.images[perm])  # same pixels, lossless
    assert torch.equal(pd.data.labels, ref.data.labels[perm])
    assert torch.equal(pd.poison_mask, ref.poison_mask[perm]) and torch.equal(pd.cover_mask, ref.cover_mask[perm])
    assert torch.equal(pd.true_labels, source.train.labels[perm])
    assert torch.equal(splits.test.images, source.test.images[torch.argsort(source.test.labels, stable=True)])
    assert attack == create_attack("tact") and len(attack.make_asr_set(splits.test)) > 0

    # a non-empty folder is refused (exit 2) unless --overwrite
    assert _cli(argv[:-1] + ["--quiet"], monkeypatch) == 2
    assert "not empty" in capsys.readouterr().err
    argv2 = ["poison", "--data", spec, "--attack", "badnet", "--out", str(out), "--overwrite", "--quiet"]
    assert _cli(argv2, monkeypatch) == 0
    assert capsys.readouterr().out == ""
    pd2, _, attack2 = load_poisoned(out)
    assert attack2.name == "badnet" and int(pd2.poison_mask.sum()) == 10 and int(pd2.cover_mask.sum()) == 0
    # any spec naming the folder finds its ground truth; other data comes without
    for s in (str(out), f"imagefolder:{out}"):
        pd3, _, attack3 = load_data(s)
        assert torch.equal(pd3.poison_mask, pd2.poison_mask) and attack3 == attack2
    assert load_data(spec)[0] is None and load_data(spec)[2] is None
    # unknown trigger settings are bad input
    assert _cli(["poison", "--data", spec, "--attack", "wanet", "--set", "bogus=1", "--out", str(tmp_path / "q")], monkeypatch) == 2
    assert not (tmp_path / "q").exists()
    # never into (or over) the source data, even with --overwrite
    assert _cli(["poison", "--data", f"imagefolder:{out}", "--attack", "blend", "--out", str(out / "sub"),
                 "--overwrite"], monkeypatch) == 2
    assert "overlaps the source" in capsys.readouterr().err
