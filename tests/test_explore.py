"""What the data page shows: samples, means, histograms and the PCA map, checked against numpy."""

import numpy as np
import pytest

from resnet_core import data, explore


def test_sample_grid_has_real_images_of_each_class(lab):
    grid = explore.sample_grid("mnist-sample", per_class=4)
    test = data.load_dataset("mnist-sample", "train")
    assert list(grid) == test.classes
    first = grid[test.classes[0]]
    assert first.shape == (4, 28, 28) and first.dtype == np.uint8
    # Each shown image is a training image of that class.
    rows = explore.class_indices(test, 4)[0]
    assert np.array_equal(first, test.images[rows, 0].numpy())


def test_mean_image_is_the_pixel_mean(lab):
    means = explore.mean_images("fashion-sample", limit_per_class=50)
    d = data.load_dataset("fashion-sample", "train")
    rows = explore.class_indices(d, 50)[1]
    expected = np.round(d.images[rows, 0].numpy().astype(float).mean(0))
    assert np.abs(means["Trouser"].astype(float) - expected).max() <= 1


def test_histogram_counts_every_sampled_pixel(lab):
    hist = explore.intensity_histogram("mnist-sample", sample=100, bins=16)
    assert len(hist["edges"]) == 17 and list(hist["counts"]) == ["gray"]
    assert sum(hist["counts"]["gray"]) == 100 * 28 * 28
    assert hist["counts"]["gray"][0] > sum(hist["counts"]["gray"][1:])  # MNIST is mostly black


def test_pca_map_matches_numpy_and_separates_classes(lab):
    emb = explore.pca_map("mnist-sample", n=300)
    d = data.load_dataset("mnist-sample", "train")
    x = d.images[emb["row"]].reshape(len(emb["row"]), -1).numpy().astype(float) / 255
    x -= x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    ours = np.stack([emb["x"], emb["y"]], 1)
    theirs = x @ vt[:2].T
    assert np.allclose(np.abs(ours), np.abs(theirs), atol=1e-6)  # equal up to the sign of each axis
    assert emb["explained"][0] == pytest.approx(s[0] ** 2 / (s**2).sum())
    ones = np.array(emb["label"]) == d.classes[1]
    zeros = np.array(emb["label"]) == d.classes[0]
    assert abs(ours[ones, 0].mean() - ours[zeros, 0].mean()) > ours[:, 0].std()  # 0s and 1s fall apart on PC1


def test_each_view_says_how_many_images_it_is_computed_from(lab):
    d = data.load_dataset("fashion-sample", "train")
    means = explore.class_means("fashion-sample", limit_per_class=50)
    assert means["counts"] == {c: 50 for c in d.classes} and means["of"] == len(d)
    same = explore.mean_images("fashion-sample", limit_per_class=50)
    assert list(same) == list(means["means"]) and all(np.array_equal(same[c], means["means"][c]) for c in same)
    hist = explore.intensity_histogram("fashion-sample", sample=100)
    assert (hist["images"], hist["of"]) == (100, len(d))
    assert explore.pca_map("fashion-sample", n=100)["of"] == len(d)
