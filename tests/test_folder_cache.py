"""Folder datasets decoded once into a uint8 cache when they fit, streamed when they do not.

The oracle is ``folders.load_image``, the decoder training used on every batch before the cache:
a cached split must equal it file by file, exactly. The pictures are real bundled test digits,
saved as 3-channel 32 px PNGs and JPEGs in class sub-folders.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core import data, engine, folders, imaging, predict
from resnet_core.config import TrainConfig


def digit_folder(root: Path, n: int = 60, start: int = 0) -> Path:
    """``n`` bundled test digits as RGB 32 px pictures in class sub-folders, PNG and JPEG alternating."""
    test = data.load_dataset("mnist-sample", "test")
    for i in range(start, start + n):
        label = int(test.targets[i])
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(test.images[i, 0].numpy()).convert("RGB").resize((32, 32), Image.BILINEAR)
        picture.save(root / str(label) / f"{i:04d}.{'png' if i % 2 else 'jpg'}")
    return root


def decoded_by_hand(d: data.LabData) -> torch.Tensor:
    return torch.stack([folders.load_image(f, d.size, d.channels) for f in d.files])


def cache_files(lab: Path, name: str) -> list[Path]:
    return sorted((lab / "data" / "folders" / name / "cache").glob("*.npy"))


class Counting:
    """``folders.load_image`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.real = folders.load_image
        self.lock = threading.Lock()

    def __call__(self, *args):
        with self.lock:
            self.calls += 1
        return self.real(*args)


@pytest.fixture
def digits(lab, tmp_path, monkeypatch) -> str:
    monkeypatch.delenv("RESNET_LAB_CACHE_MB", raising=False)
    data.add_folder("digits", digit_folder(tmp_path / "digits"))
    return "digits"


def test_a_split_that_fits_is_decoded_once_into_the_cache(lab, digits):
    for split in data.SPLITS:
        d = data.load_dataset(digits, split)
        assert d.images is not None and d.images.dtype == torch.uint8 and d.images.shape == (len(d), 3, 32, 32)
        assert d.files is not None and len(d.files) == len(d)  # the galleries still name the files
        assert torch.equal(d.images, decoded_by_hand(d))
        image, label = d.dataset()[0]
        assert torch.equal(image, decoded_by_hand(d)[0]) and label == int(d.targets[0])
    names = [p.name for p in cache_files(lab, digits)]
    assert len(names) == 2 and {n.split("-")[0] for n in names} == {"train", "test"}
    assert all(n.endswith("-32px-3ch-" + n.rsplit("-", 1)[1]) for n in names)


def test_a_second_load_reads_the_cache_without_decoding(lab, digits, monkeypatch):
    first = data.load_dataset(digits, "train")
    expected = first.images.clone()

    def no_decoding(*args):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(folders, "load_image", no_decoding)
    again = data.load_dataset(digits, "train")
    assert torch.equal(again.images, expected) and again.files == first.files
    assert torch.equal(engine.fetch(again, torch.tensor([3, 1]))[0], expected[[3, 1]])


def test_describe_and_adding_a_folder_decode_nothing_for_the_cache(lab, digits, monkeypatch):
    monkeypatch.setattr(folders, "load_image", Counting())
    info = data.describe(digits)
    assert sum(info.counts["train"]) + sum(info.counts["test"]) == 60
    assert folders.load_image.calls == 0 and cache_files(lab, digits) == []


def test_a_folder_added_again_with_one_more_file_is_decoded_again(lab, tmp_path, digits, monkeypatch):
    before = {s: data.load_dataset(digits, s) for s in data.SPLITS}
    stale = {p.name: p.read_bytes() for p in cache_files(lab, digits)}
    # Remove the dataset, add it again with one more picture, and put the old cache files back.
    shutil.rmtree(lab / "data" / "folders" / digits)
    digit_folder(tmp_path / "digits", n=1, start=60)
    data.add_folder(digits, tmp_path / "digits")
    cache = lab / "data" / "folders" / digits / "cache"
    cache.mkdir()
    for name, raw in stale.items():
        (cache / name).write_bytes(raw)
    counting = Counting()
    monkeypatch.setattr(folders, "load_image", counting)
    after = {s: data.load_dataset(digits, s) for s in data.SPLITS}
    assert len(after["train"]) + len(after["test"]) == len(before["train"]) + len(before["test"]) + 1
    (grown,) = [s for s in data.SPLITS if len(after[s]) > len(before[s])]
    assert counting.calls >= len(after[grown])  # its file list changed, so did its key: decoded again
    monkeypatch.setattr(folders, "load_image", counting.real)
    for d in after.values():
        assert torch.equal(d.images, decoded_by_hand(d))
    names = [p.name for p in cache_files(lab, digits)]
    assert sorted(n.split("-")[0] for n in names) == ["test", "train"]  # one per split: the stale one went
    assert not [n for n in names if n.startswith(grown) and n in stale]


def test_a_picture_edited_in_place_is_decoded_again(lab, tmp_path, digits):
    d = data.load_dataset(digits, "test")
    target = d.files[0]
    Image.new("RGB", (32, 32), (200, 30, 90)).save(target, format="PNG" if target.suffix == ".png" else "JPEG")
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    again = data.load_dataset(digits, "test")
    assert torch.equal(again.images, decoded_by_hand(again))
    assert not torch.equal(again.images[0], d.images[0])


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "wrong shape", "trailing bytes"])
def test_a_damaged_cache_file_is_ignored_and_rebuilt(lab, digits, damage):
    data.load_dataset(digits, "train")  # builds the cache
    (path,) = [p for p in cache_files(lab, digits) if p.name.startswith("train-")]
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"\x93NUMPY not really" + bytes(100))
    elif damage == "wrong shape":
        np.save(path, np.zeros((2, 3, 32, 32), dtype=np.uint8))
    else:
        path.write_bytes(raw + b"extra")
    d = data.load_dataset(digits, "train")
    assert torch.equal(d.images, decoded_by_hand(d))
    assert path.read_bytes() == raw  # rebuilt whole, in place of the damaged one


def test_a_cache_that_cannot_be_written_costs_speed_not_the_run(lab, digits):
    (lab / "data" / "folders" / digits / "cache").write_text("a file where the cache folder goes")
    d = data.load_dataset(digits, "test")
    assert torch.equal(d.images, decoded_by_hand(d))


def test_a_broken_picture_is_named_and_nothing_is_cached(lab, digits):
    d = data.load_dataset(digits, "test", download=False)
    broken = d.files[2]
    for p in cache_files(lab, digits):
        p.unlink()
    broken.write_bytes(b"no longer a picture")
    with pytest.raises(imaging.ImageError, match=re.escape(f"Training cannot read {broken}")):
        data.load_dataset(digits, "test")
    assert cache_files(lab, digits) == []


def test_over_the_budget_a_split_streams_the_same_pixels(lab, digits, monkeypatch):
    cached = {s: data.load_dataset(digits, s) for s in data.SPLITS}
    for p in cache_files(lab, digits):
        p.unlink()
    monkeypatch.setenv("RESNET_LAB_CACHE_MB", "0")
    for split, c in cached.items():
        d = data.load_dataset(digits, split)
        assert d.images is None and d.files == c.files and torch.equal(d.targets, c.targets)
        ds = d.dataset()
        assert torch.equal(torch.stack([ds[i][0] for i in range(len(ds))]), c.images)
    assert cache_files(lab, digits) == []
    # 0.1 MB holds the 12 test pictures (3 x 32 x 32 bytes each) but not the 48 training ones.
    monkeypatch.setenv("RESNET_LAB_CACHE_MB", "0.1")
    assert data.load_dataset(digits, "train").images is None
    assert torch.equal(data.load_dataset(digits, "test").images, cached["test"].images)


def test_two_loaders_building_the_same_cache_at_once(lab, digits):
    results, errors = [], []

    def load():
        try:
            results.append(data.load_dataset(digits, "train").images)
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == 2 and torch.equal(results[0], results[1])
    (path,) = [p for p in cache_files(lab, digits) if p.name.startswith("train-")]
    assert torch.equal(folders.read_cache(path, tuple(results[0].shape)), results[0])
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


@pytest.mark.parametrize("budget_mb", [None, "0"], ids=["cached", "streaming"])
def test_training_on_a_folder_cached_or_streaming(lab, digits, monkeypatch, budget_mb):
    if budget_mb is not None:
        monkeypatch.setenv("RESNET_LAB_CACHE_MB", budget_mb)
    config = TrainConfig(
        dataset=digits,
        model="resnet20",
        epochs=1,
        batch_size=8,
        augment="crop+flip",
        max_train_batches=3,
        max_test_images=20,
        workers=0,  # streaming: the engine asks data.stream_workers for one per spare core
    )
    summary = engine.fit(config)
    assert len(summary["history"]) == 1 and 0 <= summary["history"][0]["test_acc"] <= 1
    assert (cache_files(lab, digits) != []) == (budget_mb is None)


def test_the_gallery_of_a_cached_folder_shows_its_pixels_and_names_its_files(lab, digits):
    test = data.load_dataset(digits, "test")
    torch.manual_seed(0)
    from resnet_core import models

    model = models.get_model("resnet20", num_classes=len(test.classes), in_channels=3, image_size=32).eval()
    p = predict.Predictor(model, list(test.classes), [0.5] * 3, [0.25] * 3, 32, 3, "natural", digits)
    g = predict.evaluate_gallery(p, batch_size=5)
    assert g["files"] == test.files
    assert torch.equal(predict.gallery_images(g, [2, 0]), decoded_by_hand(test)[[2, 0]])


def test_stream_workers_leave_a_core_for_training(monkeypatch):
    assert data.stream_workers(3) == 3
    for cpus, workers in [(1, 0), (2, 1), (3, 2), (8, 4), (64, 4)]:
        monkeypatch.setattr(folders, "usable_cpus", lambda cpus=cpus: cpus)
        assert data.stream_workers(0) == workers


def test_the_budget_comes_from_the_environment_or_the_memory(monkeypatch):
    monkeypatch.delenv("RESNET_LAB_CACHE_MB", raising=False)
    default = data.cache_budget_mb()
    assert 0 < default <= 4096
    for value, expected in [("0", 0), ("512", 512), ("-3", 0), ("lots", default), ("nan", default), ("inf", default)]:
        monkeypatch.setenv("RESNET_LAB_CACHE_MB", value)
        assert data.cache_budget_mb() == expected
