"""Tests of advrbd.data: every reader on a tiny fixture of its format, bad-input errors, the cache,
the restricted unpickler, subsets, generated sets, the ImageFolder writer and downloads (offline)."""
from __future__ import annotations

import io
import logging
import os
import pickle
import tarfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

import advrbd.data.decode as decode_mod
from advrbd.data import (DATASETS, load_dataset, make_synthetic, parse_spec, spec_path, stratified_subset,
                         write_imagefolder)
from advrbd.data.cifar import CIFAR_SOURCES, load_pickle
from advrbd.errors import BadInputError
from advrbd.types import ImageData


def rng_image(seed: int, h: int = 8, w: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def load(spec: str, tmp_path: Path, **kw):
    return load_dataset(spec, cache_dir=tmp_path / "cache", **kw)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """ImageFolder: 3 classes × (3 train, 2 test) PNGs, plus one JPEG, one grayscale and one RGBA image."""
    root = tmp_path / "ds"
    for split, n in (("train", 3), ("test", 2)):
        for k, cls in enumerate(("bird", "cat", "ant")):
            for i in range(n):
                save(root / split / cls / f"{i:03d}.png", rng_image(100 * k + 10 * i + (split == "test")))
    save(root / "train" / "cat" / "100.jpg", rng_image(7))
    Image.fromarray(rng_image(8)[..., 0]).save(root / "train" / "bird" / "100.png")           # grayscale
    Image.fromarray(np.dstack([rng_image(9), np.full((8, 8), 255, np.uint8)])).save(root / "train" / "ant" / "100.png")
    return root


# ---------------------------------------------------------------- readers on their formats


def test_imagefolder_reader(folder: Path, tmp_path: Path):
    s = load(f"imagefolder:{folder}", tmp_path)
    assert s.train.classes == ("ant", "bird", "cat") and s.name == "imagefolder"
    assert s.train.images.shape == (12, 8, 8, 3) and s.train.images.dtype == torch.uint8
    assert s.test.images.shape == (6, 8, 8, 3) and s.train.labels.dtype == torch.int64
    assert s.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4                   # class-major
    assert [Path(p).name for p in s.train.paths[:4]] == ["000.png", "001.png", "002.png", "100.png"]
    assert np.array_equal(s.train.images[0].numpy(), rng_image(200))                 # lossless pixels
    gray = s.train.images[s.train.paths.index(str(folder / "train/bird/100.png"))]
    assert torch.equal(gray[..., 0], gray[..., 1])
    assert len(s.fingerprint) == 16 and s.source == str(folder)


def test_imagefolder_resize_and_bare_path(folder: Path, tmp_path: Path):
    save(folder / "train" / "cat" / "101.png", rng_image(1, 12, 10))
    s = load(str(folder), tmp_path, resize=16)
    assert s.name == "imagefolder" and s.train.images.shape[1:] == (16, 16, 3)


def test_test_split_may_miss_classes_but_not_add(folder: Path, tmp_path: Path):
    import shutil

    shutil.rmtree(folder / "test" / "ant")
    s = load(f"imagefolder:{folder}", tmp_path)
    assert set(s.test.labels.tolist()) == {1, 2} and s.test.classes == ("ant", "bird", "cat")
    save(folder / "test" / "zebra" / "0.png", rng_image(0))
    with pytest.raises(BadInputError, match="zebra"):
        load(f"imagefolder:{folder}", tmp_path)


def write_cifar(root: Path, fmt: str, n: int = 4) -> np.ndarray:
    """Official-style pickles (protocol 2, bytes keys); returns all train rows (N×3072)."""
    src = CIFAR_SOURCES[fmt]
    k = 10 if fmt == "cifar10" else 100
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for j, name in enumerate([*src["train"], src["test"]]):
        data = np.random.default_rng(j).integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [(j + i) % k for i in range(n)]
        with open(root / name, "wb") as f:
            pickle.dump({b"data": data, src["labels"].encode(): labels, b"filenames": [b"x.png"] * n}, f, protocol=2)
        if name != src["test"]:
            rows.append(data)
    with open(root / src["meta"], "wb") as f:
        pickle.dump({src["names"].encode(): [f"c{i}".encode() for i in range(k)]}, f, protocol=2)
    return np.concatenate(rows)


@pytest.mark.parametrize("fmt", ["cifar10", "cifar100"])
def test_cifar_readers(tmp_path: Path, fmt: str):
    rows = write_cifar(tmp_path / "raw" / CIFAR_SOURCES[fmt]["folder"], fmt)
    s = load(f"{fmt}:{tmp_path / 'raw'}", tmp_path)                                    # parent folder works
    assert s.train.num_classes == (10 if fmt == "cifar10" else 100) and s.train.classes[1] == "c1"
    assert len(s.train) == len(rows) and len(s.test) == 4
    assert np.array_equal(s.train.images[1].numpy(), rows[1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert s.train.labels[:4].tolist() == [0, 1, 2, 3] and s.train.paths[1].endswith("#1")
    assert load(f"{fmt}:{tmp_path / 'raw'}", tmp_path, resize=16).train.images.shape[1:] == (16, 16, 3)


def test_bare_cifar_path_and_unknown_layout(tmp_path: Path):
    write_cifar(tmp_path / "c10", "cifar10")
    assert parse_spec(str(tmp_path / "c10")) == ("cifar10", str(tmp_path / "c10"))
    (tmp_path / "other").mkdir()
    with pytest.raises(BadInputError, match="cannot tell the format"):
        load(str(tmp_path / "other"), tmp_path)


def write_gtsrb(root: Path, rows: dict[str, list[str]] | None = None) -> Path:
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    for k in range(3):
        d = root / "Final_Training" / "Images" / f"{k:05d}"
        lines = []
        for i in range(2):
            save(d / f"00000_{i:05d}.ppm", rng_image(k * 10 + i, 20 + 5 * i, 24), "PPM")
            lines.append(f"00000_{i:05d}.ppm;24;{20 + 5 * i};1;1;20;18;{k}")
        (d / f"GT-{k:05d}.csv").write_text(header + "\n".join((rows or {}).get(f"{k:05d}", lines)) + "\n")
    t = root / "Final_Test" / "Images"
    for i in range(3):
        save(t / f"{i:05d}.ppm", rng_image(50 + i, 30, 30), "PPM")
    (t / "GT-final_test.csv").write_text(header + "".join(f"{i:05d}.ppm;30;30;1;1;28;28;{i % 3}\n" for i in range(3)))
    return root


def test_gtsrb_reader(tmp_path: Path):
    root = write_gtsrb(tmp_path / "GTSRB")
    s = load(f"gtsrb:{tmp_path}", tmp_path)                                          # parent of GTSRB/
    assert s.train.classes == ("00000", "00001", "00002") and s.train.images.shape == (6, 32, 32, 3)
    assert s.train.labels.tolist() == [0, 0, 1, 1, 2, 2] and s.test.labels.tolist() == [0, 1, 2]
    assert s.source == str(root)


@pytest.mark.parametrize("row,match", [("bad;row", r"GT-00001\.csv:3"),
                                       ("00000_00001.ppm;24;25;1;1;20;18;7", r"GT-00001\.csv:3.*ClassId 7"),
                                       ("00000_00001.ppm;24;25;1;1;20;18;-1", "ClassId -1"),
                                       ("../00000_00001.ppm;24;25;1;1;20;18;1", "bad file name")])
def test_gtsrb_bad_rows(tmp_path: Path, row: str, match: str, caplog):
    write_gtsrb(tmp_path / "g", {"00001": ["00000_00000.ppm;24;20;1;1;20;18;1", row]})
    with pytest.raises(BadInputError, match=match):
        load(f"gtsrb:{tmp_path / 'g'}", tmp_path)
    with caplog.at_level(logging.WARNING):
        s = load(f"gtsrb:{tmp_path / 'g'}", tmp_path, skip_bad=True)
    assert len(s.train) == 5 and "skipped 1 unreadable row" in caplog.text


def test_tinyimagenet_reader(tmp_path: Path):
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n02", "n01"]
    for k, w in enumerate(wnids):
        for i in range(2):
            save(root / "train" / w / "images" / f"{w}_{i}.JPEG", rng_image(k + i, 16, 16), "JPEG")
    for i in range(3):
        save(root / "val" / "images" / f"val_{i}.JPEG", rng_image(9 + i, 16, 16), "JPEG")
    rows = "".join(f"val_{i}.JPEG\t{wnids[i % 2]}\t0\t0\t9\t9\n" for i in range(3))
    (root / "val" / "val_annotations.txt").write_text(rows)
    s = load(f"tinyimagenet:{root}", tmp_path)
    assert s.train.classes == ("n01", "n02") and s.train.images.shape == (4, 16, 16, 3)
    assert s.test.labels.tolist() == [1, 0, 1]
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99\n")
    with pytest.raises(BadInputError, match=r"val_annotations\.txt:1.*n99"):
        load(f"tinyimagenet:{root}", tmp_path)


def test_imagenette_reader(tmp_path: Path):
    root = tmp_path / "imagenette2"
    for split in ("train", "val"):
        for w in ("n01440764", "n02102040"):
            save(root / split / w / "a.JPEG", rng_image(1, 90, 120), "JPEG")
            save(root / split / w / "b.JPEG", rng_image(2, 100, 80), "JPEG")
    s = load(f"imagenette:{root}", tmp_path)
    assert s.train.images.shape == (4, 64, 64, 3) and s.test.images.shape == (4, 64, 64, 3)


def test_digits():
    s = load_dataset("digits")
    assert s.train.num_classes == 10 and s.train.images.shape[1:] == (32, 32, 3)
    assert len(s.train) + len(s.test) == 1797 and abs(len(s.test) - 449) <= 1
    assert torch.equal(load_dataset("digits").train.images, s.train.images)


def test_synthetic_determinism():
    a, b = make_synthetic(200, 50, seed=3), load_dataset("synthetic:n=200,test=50,seed=3")
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert a.fingerprint == b.fingerprint != make_synthetic(200, 50, seed=4).fingerprint
    assert torch.bincount(a.train.labels).tolist() == [20] * 10
    c = load_dataset("synthetic:n=30,test=10,classes=12,size=16")
    assert c.train.images.shape == (30, 16, 16, 3) and c.train.classes[10] == "class10"
    with pytest.raises(BadInputError, match="bogus"):
        load_dataset("synthetic:bogus=1")


# ---------------------------------------------------------------- bad input


def test_missing_paths_and_splits(tmp_path: Path, folder: Path):
    with pytest.raises(BadInputError, match="does-not-exist"):
        load(f"imagefolder:{tmp_path / 'does-not-exist'}", tmp_path)
    with pytest.raises(BadInputError, match="unknown dataset 'nope'"):
        load("nope:/x", tmp_path)
    import shutil

    shutil.rmtree(folder / "test")
    with pytest.raises(BadInputError, match="no test/ folder"):
        load(f"imagefolder:{folder}", tmp_path)


@pytest.mark.parametrize("name", ["ant/000.png", "cat/100.jpg"])  # the first file, a JPEG
def test_truncated_image(folder: Path, tmp_path: Path, name: str, caplog):
    bad = folder / "train" / name
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    with pytest.raises(BadInputError, match=name.replace(".", r"\.")):
        load(f"imagefolder:{folder}", tmp_path)
    with caplog.at_level(logging.WARNING):
        s = load(f"imagefolder:{folder}", tmp_path, skip_bad=True)
    assert len(s.train) == 11 and str(bad) not in s.train.paths and "skipped 1 corrupt image" in caplog.text


def test_empty_class_and_mixed_sizes(folder: Path, tmp_path: Path):
    (folder / "train" / "dog").mkdir()
    with pytest.raises(BadInputError, match=r"empty class folder .*dog"):
        load(f"imagefolder:{folder}", tmp_path)
    (folder / "train" / "dog").rmdir()
    save(folder / "train" / "cat" / "101.png", rng_image(1, 12, 10))
    with pytest.raises(BadInputError, match=r"000\.png is 8×8 but .*101\.png is 10×12"):
        load(f"imagefolder:{folder}", tmp_path)


# ---------------------------------------------------------------- cache


def test_cache_hit_and_invalidation(folder: Path, tmp_path: Path, monkeypatch):
    first = load(f"imagefolder:{folder}", tmp_path)
    assert len(list((tmp_path / "cache").glob("imagefolder-*.npz"))) == 1

    calls = []
    real = decode_mod.decode_image
    monkeypatch.setattr(decode_mod, "decode_image", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = load(f"imagefolder:{folder}", tmp_path)
    assert calls == []                                                                # served from the cache
    assert torch.equal(again.train.images, first.train.images) and again.train.paths == first.train.paths
    assert again.fingerprint == first.fingerprint and again.train.classes == first.train.classes
    changed = folder / "train" / "ant" / "000.png"
    save(changed, rng_image(999))
    os.utime(changed, ns=(1, 1))
    new = load(f"imagefolder:{folder}", tmp_path)
    assert len(calls) == 18                                                           # decoded again
    assert np.array_equal(new.train.images[0].numpy(), rng_image(999)) and new.fingerprint != first.fingerprint
    caches = list((tmp_path / "cache").glob("imagefolder-*.npz"))
    assert len(caches) == 1                                                           # stale one removed
    caches[0].write_bytes(b"garbage")
    assert torch.equal(load(f"imagefolder:{folder}", tmp_path).train.images, new.train.images)


# ---------------------------------------------------------------- restricted unpickler


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_restricted_unpickler_refuses_code(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(BadInputError, match=r"refusing to load global (posix|os|nt)\.system"):
        load_pickle(path)
    assert not (tmp_path / "pwned").exists()
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for proto in (2, 4, 5):
        path.write_bytes(pickle.dumps({b"data": arr, b"labels": [1, 2]}, protocol=proto))
        assert np.array_equal(load_pickle(path)[b"data"], arr)
    write_cifar(tmp_path / "c", "cifar10")
    (tmp_path / "c" / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(BadInputError, match="data_batch_3"):
        load(f"cifar10:{tmp_path / 'c'}", tmp_path)


# ---------------------------------------------------------------- subsets and writer


def test_stratified_subset():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    data = ImageData(torch.zeros(100, 2, 2, 3, dtype=torch.uint8), labels, ("a", "b", "c"))
    sub = stratified_subset(data, 10, seed=1)
    assert len(sub) == 10 and torch.bincount(sub.labels).tolist() == [5, 3, 2]
    assert torch.bincount(stratified_subset(data, 7, seed=1).labels).sum() == 7
    assert torch.equal(sub.index, stratified_subset(data, 10, seed=1).index)
    assert not torch.equal(sub.index, stratified_subset(data, 10, seed=2).index)
    assert torch.equal(labels[sub.index], sub.labels) and bool((sub.index.diff() > 0).all())
    with pytest.raises(BadInputError):
        stratified_subset(data, 101, seed=0)


def test_write_imagefolder_round_trip(tmp_path: Path):
    s = make_synthetic(60, 20, num_classes=3, size=8, seed=5)
    perms = write_imagefolder(s, tmp_path / "out")
    back = load(f"imagefolder:{tmp_path / 'out'}", tmp_path)
    for split in ("train", "test"):
        orig, got = getattr(s, split), getattr(back, split)
        assert torch.equal(got.images, orig.images[perms[split]]) and torch.equal(got.labels, orig.labels[perms[split]])
    with pytest.raises(BadInputError, match="not empty"):
        write_imagefolder(s, tmp_path / "out")
    odd = ImageData(s.train.images, s.train.labels, ("zeta", "alpha", "mid"))           # unsorted names
    perm = write_imagefolder([("train", odd), ("test", odd)], tmp_path / "out", overwrite=True)["train"]
    back = load(f"imagefolder:{tmp_path / 'out'}", tmp_path)
    assert back.train.classes == odd.classes and torch.equal(back.train.labels, odd.labels[perm])


# ---------------------------------------------------------------- download


def fake_archive(fmt: str, tmp_path: Path, extra: tarfile.TarInfo | None = None) -> bytes:
    src = tmp_path / "src"
    write_cifar(src / CIFAR_SOURCES[fmt]["folder"], fmt)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / CIFAR_SOURCES[fmt]["folder"], arcname=CIFAR_SOURCES[fmt]["folder"])
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size))
    return buf.getvalue()


def serve(monkeypatch, payload: bytes, fmt: str = "cifar10"):
    import hashlib
    import urllib.request

    monkeypatch.setitem(CIFAR_SOURCES, fmt, {**CIFAR_SOURCES[fmt], "md5": hashlib.md5(payload).hexdigest()})
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(payload))


def test_download_success_and_unsafe_archive(tmp_path: Path, monkeypatch):
    serve(monkeypatch, fake_archive("cifar10", tmp_path))
    s = load(f"cifar10:{tmp_path / 'dl'}", tmp_path, download=True)
    assert len(s.train) == 20 and (tmp_path / "dl" / "cifar-10-batches-py" / "test_batch").is_file()
    assert not list((tmp_path / "dl").glob("*.tar.gz"))
    evil = tarfile.TarInfo("../escape.txt")
    evil.size = 1
    serve(monkeypatch, fake_archive("cifar10", tmp_path, evil))
    with pytest.raises(BadInputError, match="escape"):
        load(f"cifar10:{tmp_path / 'dl2'}", tmp_path, download=True)
    assert not (tmp_path / "escape.txt").exists()


def test_download_failures(tmp_path: Path, monkeypatch):
    import urllib.request

    with pytest.raises(BadInputError, match="--download"):
        load(f"cifar100:{tmp_path / 'none'}", tmp_path)

    def offline(url, timeout=None):
        raise URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(BadInputError, match=r"cifar-100-python\.tar\.gz.*by hand"):
        load(f"cifar100:{tmp_path / 'none'}", tmp_path, download=True)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"not the archive"))
    with pytest.raises(BadInputError, match="md5"):
        load(f"cifar10:{tmp_path / 'none'}", tmp_path, download=True)
    assert not list((tmp_path / "none").glob(".*.part"))  # the corrupt download is not left behind


def test_registry_entries_described():
    formats = {"imagefolder", "cifar10", "cifar100", "gtsrb", "tinyimagenet", "imagenette", "synthetic", "digits"}
    assert formats <= set(DATASETS.names())
    assert all(e.description for e in DATASETS.entries())
    assert parse_spec("synthetic") == ("synthetic", "") and parse_spec("cifar10:/a:b") == ("cifar10", "/a:b")
    assert spec_path("digits") is None and spec_path("cifar10:/a:b") == Path("/a:b")


def test_atomic_writer_all_or_nothing(tmp_path: Path):
    from advrbd.io import atomic_writer

    target = tmp_path / "sub" / "f.bin"
    with atomic_writer(target) as f:
        f.write(b"one")
    assert target.read_bytes() == b"one"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as readable as any new file, not mkstemp's 0600
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as f:
            f.write(b"two")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"one" and sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]
