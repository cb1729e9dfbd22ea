"""A folder of photos on the Data page: the samples decode only the images shown, at thumbnail size;
the means, histogram and PCA map come from one bounded sample that says how many images it holds;
the counts come from the index, with nothing decoded. The photos are solid colours, so what each
view must show is known without running the code under test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core import data, explore, folders, imaging

CLASSES = ["blue", "green", "red"]  # the index sorts them
CHANNEL = {"red": 0, "green": 1, "blue": 2}
TRAIN, TEST = 12, 4  # photos per class
HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera.zip"


def colour(cls: str, i: int, base: int = 120) -> tuple[int, int, int]:
    """Photo ``i`` of class ``cls``: its class's channel at ``base + 8 i``, the others at 20."""
    rgb = [20, 20, 20]
    rgb[CHANNEL[cls]] = base + 8 * i
    return tuple(rgb)


def make_photos(root: Path, base: int = 120) -> Path:
    """``train/`` and ``test/`` of 320x240 JPEGs, one solid colour each, named by their number."""
    for split, n, first in (("train", TRAIN, 0), ("test", TEST, TRAIN)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(first, first + n):
                Image.new("RGB", (320, 240), colour(c, i, base)).save(root / split / c / f"{i:03d}.jpg", quality=95)
    return root


def colour_of(path: Path, base: int = 120) -> np.ndarray:
    return np.array(colour(path.parent.name, int(path.stem), base), dtype=float)


@pytest.fixture
def photos(lab, tmp_path) -> str:
    data.add_folder("photos", make_photos(tmp_path / "photos"))
    return "photos"


def count_decodes(monkeypatch) -> list[tuple[str, int | None, tuple[int, int]]]:
    """Every decode from now on: (file, the side asked of the decoder, the size it decoded at)."""
    calls = []
    real = imaging.decode

    def counting(source, name=None, max_side=None):
        image = real(source, name, max_side)
        calls.append((Path(source).name, max_side, image.size))
        return image

    monkeypatch.setattr(imaging, "decode", counting)
    return calls


@pytest.fixture
def decodes(photos, monkeypatch) -> list[tuple[str, int | None, tuple[int, int]]]:
    """The decodes after the folder was added; decoding a whole split (the training cache) fails the test."""

    def whole_split(*args, **kwargs):
        raise AssertionError("the data page decoded a whole split")

    monkeypatch.setattr(folders, "cached_images", whole_split)
    return count_decodes(monkeypatch)


def test_the_grid_decodes_only_the_images_it_shows_at_thumbnail_size(lab, photos, decodes):
    grid = explore.sample_grid(photos, per_class=3)
    assert list(grid) == CLASSES
    assert len(decodes) == 3 * len(CLASSES)  # not the 36 training photos
    assert {side for _, side, _ in decodes} == {explore.THUMB_SIDE}
    assert {size for _, _, size in decodes} == {(160, 120)}  # JPEG DCT scaling: half of 320x240
    d = data.load_dataset(photos, "train", decode=False)
    for c, rows in explore.class_indices(d, 3).items():  # the rows a decoded split would show
        thumbs = grid[CLASSES[c]]
        assert thumbs.shape == (3, explore.THUMB_SIDE, explore.THUMB_SIDE, 3) and thumbs.dtype == np.uint8
        for thumb, row in zip(thumbs, rows):  # each thumbnail is its own file, in order
            assert np.abs(thumb.reshape(-1, 3).mean(0) - colour_of(d.files[row])).max() < 3
    assert not folders.cache_dir(data.data_root(), photos).exists()  # no decoded split written either


def test_the_mean_of_solid_colours_is_their_mean(photos, decodes):
    means = explore.class_means(photos)
    assert means["counts"] == {c: TRAIN for c in CLASSES} and means["of"] == TRAIN * len(CLASSES)
    assert len(decodes) == TRAIN * len(CLASSES)  # fewer photos than the sample's bound: all of them
    for c in CLASSES:
        expected = np.mean([colour(c, i) for i in range(TRAIN)], 0)  # e.g. red: (164, 20, 20)
        image = means["means"][c]
        assert image.shape == (explore.STATS_SIDE, explore.STATS_SIDE, 3)
        assert np.abs(image.reshape(-1, 3).astype(float) - expected).max() <= 3  # flat, and that colour


def test_means_histogram_and_pca_share_one_bounded_sample(photos, decodes, monkeypatch):
    monkeypatch.setattr(explore, "STATS_IMAGES", 6)  # two of each class
    means = explore.class_means(photos)
    hist = explore.intensity_histogram(photos)
    pca = explore.pca_map(photos)
    assert len(decodes) == 6  # once for the three views
    assert {side for _, side, _ in decodes} == {explore.STATS_SIDE}
    assert all(size[0] < 320 for _, _, size in decodes)  # decoded small, not at the photos' size
    assert means["counts"] == {c: 2 for c in CLASSES} and means["of"] == 36
    assert (hist["images"], hist["of"], len(pca["row"]), pca["of"]) == (6, 36, 6, 36)
    pixels = 6 * explore.STATS_SIDE**2
    assert all(sum(counts) == pixels for counts in hist["counts"].values())
    # Two thirds of the sample's pixels are 20 in any channel (the other classes'): the bin 16-24.
    assert all(counts[20 * 32 // 256] >= 4 / 6 * pixels for counts in hist["counts"].values())
    d = data.load_dataset(photos, "train", decode=False)
    for c in CLASSES:  # each mean is of the very images the PCA map shows of its class
        rows = [r for r, label in zip(pca["row"], pca["label"]) if label == c]
        assert len(rows) == 2 and all(d.classes[int(d.targets[r])] == c for r in rows)
        expected = np.mean([colour_of(d.files[r]) for r in rows], 0)
        assert np.abs(means["means"][c].reshape(-1, 3).mean(0) - expected).max() < 3
    # Three colours in a plane: the first two axes hold nearly all of the variance.
    assert sum(pca["explained"]) > 0.95 and pca["explained"][0] >= pca["explained"][1]


def test_counts_come_from_the_index_with_nothing_decoded(lab, photos, monkeypatch):
    def no_decode(*args, **kwargs):
        raise AssertionError("counts decoded an image")

    monkeypatch.setattr(imaging, "decode", no_decode)
    info = data.describe(photos)
    index = json.loads((folders.folders_dir(data.data_root()) / photos / "index.json").read_text())
    for split in ("train", "test"):
        labels = [y for y, s in zip(index["labels"], index["split"]) if s == split]
        assert info.counts[split] == np.bincount(labels, minlength=3).tolist()
    assert info.counts == {"train": [TRAIN] * 3, "test": [TEST] * 3}


def test_a_folder_added_again_under_its_name_is_sampled_anew(lab, photos, tmp_path):
    """The decoded sample is kept per version of the dataset: new images, new means."""
    assert abs(explore.class_means(photos)["means"]["red"][..., 0].mean() - 164) < 3
    data.remove_folder(photos)
    data.add_folder(photos, make_photos(tmp_path / "again", base=30))  # red 30..118: mean 74
    assert abs(explore.class_means(photos)["means"]["red"][..., 0].mean() - 74) < 3


def test_the_wide_pca_is_the_svds(lab):
    x = torch.randint(0, 256, (30, 500), dtype=torch.uint8)
    (ours, ours_var), (svd, svd_var) = explore._pca2_wide(x), explore._pca2(x)
    assert np.allclose(np.abs(ours), np.abs(svd), atol=1e-8)  # equal up to the sign of each axis
    assert np.allclose(ours_var, svd_var)


def test_a_thumbnail_decoded_small_looks_as_one_decoded_large(tmp_path):
    """The JPEG decoder's scaling (1/4 here) averages as a resize would: a preview shows the photo."""
    yy, xx = np.mgrid[0:480, 0:640]
    rgb = np.stack([xx * 255 // 639, yy * 255 // 479, (xx + yy) * 255 // 1118], -1).astype(np.uint8)
    path = tmp_path / "gradient.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    assert imaging.decode(path, max_side=112).size == (160, 120)
    small = folders.load_image(path, 112, 3, draft=112).float()
    large = folders.load_image(path, 112, 3).float()
    assert (small - large).abs().mean() < 2


@pytest.mark.skipif(not HYMENOPTERA.is_file(), reason="the team's ants and bees (../shared/data) are not here")
def test_real_photos_decode_only_what_the_page_shows(lab, monkeypatch):
    """The PyTorch tutorial's ants and bees (244 training photos, most 500x375): 20 thumbnails
    decode 20 photos, at reduced scale; the statistics all 244, as fewer than STATS_IMAGES."""
    data.add_folder("hymenoptera", HYMENOPTERA)
    decodes = count_decodes(monkeypatch)
    grid = explore.sample_grid("hymenoptera", 10)
    assert [len(v) for v in grid.values()] == [10, 10] and len(decodes) == 20
    d = data.load_dataset("hymenoptera", "train", decode=False)
    stored = {f.name: Image.open(f).size for f in d.files}
    decoded = sum(w * h for _, _, (w, h) in decodes)
    assert decoded < 0.5 * sum(stored[name][0] * stored[name][1] for name, _, _ in decodes)
    decodes.clear()
    means = explore.class_means("hymenoptera")
    assert sum(means["counts"].values()) == len(decodes) == means["of"] == 244
