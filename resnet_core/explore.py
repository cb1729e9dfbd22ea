"""What the data page shows, computed here so pages stay UI only and the numbers are tested.

Everything returns plain numpy arrays or lists; the page draws them with plotly.

The bundled and torchvision sets are small images already in memory: each view reads what it
needs from them. A folder of photos is not decoded whole for a look: its samples decode only the
images shown, at thumbnail size (:data:`THUMB_SIDE`), and its mean images, histogram and PCA
map share one seeded sample of at most about :data:`STATS_IMAGES` training images decoded at
:data:`STATS_SIDE` px, each result saying how many images it is computed from. Before, a folder
of 3,168 photos (1,944 for training) was decoded whole at 224 px to draw 20 thumbnails (4-13 s on
2 shared cores, and a 280 MB decoded cache written by opening the page), and its PCA was an SVD of
600 images of 150,528 pixels (16-90 s); the page's five views now take 1-6 s there, cold.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch

from resnet_core import data as data_mod
from resnet_core import folders

THUMB_SIDE = 112  # px: the page draws a sample 56 px wide, twice that for high-density screens
STATS_IMAGES = 400  # a folder's means, histogram and PCA: about this many training images, as many of each class
STATS_SIDE = 64  # px: what a mean image (drawn 84 px wide), a histogram and a 2-D PCA need of a photo
_SAMPLES: OrderedDict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]] = OrderedDict()
_SAMPLES_KEPT = 4  # datasets whose decoded sample stays in memory (5 MB each for 400 images)
# One decode at a time: the page's three statistics views, and several visitors opening a new
# folder at once, ask for the same sample together; the first decodes it and the others reuse it.
_SAMPLES_LOCK = threading.Lock()


def _pixels(d: data_mod.LabData, idx: list[int]) -> torch.Tensor:
    if d.images is not None:
        return d.images[idx]
    ds = d.dataset()
    return torch.stack([ds[i][0] for i in idx])


def class_indices(d: data_mod.LabData, per_class: int, seed: int = 0) -> dict[int, list[int]]:
    """Up to ``per_class`` row numbers of each class, chosen with a fixed seed."""
    rng = np.random.default_rng(seed)
    targets = d.targets.numpy()
    out = {}
    for c in range(len(d.classes)):
        rows = np.flatnonzero(targets == c)
        out[c] = sorted(rng.choice(rows, min(per_class, len(rows)), replace=False).tolist()) if len(rows) else []
    return out


def _is_folder(name: str) -> bool:
    return data_mod.get_spec(name).kind == "folder"


def sample_grid(name: str, per_class: int = 8, split: str = "train") -> dict[str, np.ndarray]:
    """class name -> uint8 images (n, H, W) or (n, H, W, 3) for ``st.image``.

    A folder's images are decoded here, only those shown, at :data:`THUMB_SIDE` px with the
    JPEG decoder scaled down to it (the dataset's own size when smaller); the same rows are
    chosen as from a decoded split."""
    folder = _is_folder(name)
    d = data_mod.load_dataset(name, split, decode=not folder)
    chosen = {c: rows for c, rows in class_indices(d, per_class).items() if rows}
    if folder:
        flat = [r for rows in chosen.values() for r in rows]
        side = min(THUMB_SIDE, d.size)  # a folder of 32 px images is not blown up to 112
        thumbs = folders.decode_all([d.files[r] for r in flat], side, 3, draft=side)
        starts = np.cumsum([0] + [len(rows) for rows in chosen.values()])
        return {d.classes[c]: _hwc(thumbs[a:b]) for c, a, b in zip(chosen, starts[:-1], starts[1:])}
    return {d.classes[c]: _hwc(_pixels(d, rows)) for c, rows in chosen.items()}


def _hwc(x: torch.Tensor) -> np.ndarray:
    x = x.permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def _folder_sample(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, torch.Tensor]:
    """A folder's statistics sample: training rows, their labels, each one's rank within its class,
    and the images (uint8, :data:`STATS_SIDE` px), decoded once per version of the dataset.

    Each class's rows are in a seeded random order and the sample takes the first
    ``max(1, STATS_IMAGES // classes)`` of each, so a view that wants fewer per class takes the
    lowest ranks: still a random sample, and part of the same one."""
    # A folder deleted and added again is other images; another lab (a test's) other folders.
    key = (str(data_mod.data_root()), name, data_mod.version(name), seed)
    with _SAMPLES_LOCK:
        if key in _SAMPLES:
            _SAMPLES.move_to_end(key)
            return _SAMPLES[key]
        d = data_mod.load_dataset(name, "train", decode=False)
        per = max(1, STATS_IMAGES // len(d.classes))
        rng = np.random.default_rng(seed)
        targets = d.targets.numpy()
        orders = [rng.permutation(np.flatnonzero(targets == c))[:per] for c in range(len(d.classes))]
        rows = np.concatenate(orders).astype(np.int64)
        labels = targets[rows]
        ranks = np.concatenate([np.arange(len(o)) for o in orders]).astype(np.int64)
        side = min(STATS_SIDE, d.size)
        images = folders.decode_all([d.files[r] for r in rows], side, 3, draft=side)
        _SAMPLES[key] = (rows, labels, ranks, images)
        while len(_SAMPLES) > _SAMPLES_KEPT:
            _SAMPLES.popitem(last=False)
        return _SAMPLES[key]


def class_means(name: str, limit_per_class: int = 500) -> dict:
    """``means``: class name -> the average of up to ``limit_per_class`` training images (uint8);
    ``counts``: class name -> how many images each average is of; ``of``: the training images.

    A folder's averages come from its statistics sample (:func:`_folder_sample`), so of at most
    about ``STATS_IMAGES / classes`` images each, at :data:`STATS_SIDE` px."""
    means, counts = {}, {}
    if _is_folder(name):
        d = data_mod.load_dataset(name, "train", decode=False)
        _, labels, ranks, images = _folder_sample(name)
        for c in range(len(d.classes)):
            pick = np.flatnonzero((labels == c) & (ranks < limit_per_class))
            if len(pick):
                means[d.classes[c]] = _hwc(images[pick].float().mean(0, keepdim=True).round().byte())[0]
                counts[d.classes[c]] = len(pick)
        return {"means": means, "counts": counts, "of": len(d)}
    d = data_mod.load_dataset(name, "train")
    for c, rows in class_indices(d, limit_per_class).items():
        if rows:
            means[d.classes[c]] = _hwc(_pixels(d, rows).float().mean(0, keepdim=True).round().byte())[0]
            counts[d.classes[c]] = len(rows)
    return {"means": means, "counts": counts, "of": len(d)}


def mean_images(name: str, limit_per_class: int = 500) -> dict[str, np.ndarray]:
    """class name -> the average of up to ``limit_per_class`` training images (uint8)."""
    return class_means(name, limit_per_class)["means"]


def _folder_rows(name: str, n: int, seed: int = 0) -> tuple[data_mod.LabData, list[int], torch.Tensor]:
    """About ``n`` of a folder's training images from its statistics sample, as many of each class
    (their training rows, then their images): the histogram's and the PCA map's."""
    d = data_mod.load_dataset(name, "train", decode=False)
    rows, _, ranks, images = _folder_sample(name, seed)
    pick = np.flatnonzero(ranks < max(1, n // len(d.classes)))
    return d, rows[pick].tolist(), images[pick]


def intensity_histogram(name: str, sample: int = 2000, bins: int = 32) -> dict[str, list]:
    """Counts of pixel intensities (0-255) per channel over a seeded sample of training images;
    ``images``: how many, of the ``of`` training images. A folder's sample is its statistics
    sample's, as many of each class, at :data:`STATS_SIDE` px."""
    if _is_folder(name):
        d, _, x = _folder_rows(name, sample)
    else:
        d = data_mod.load_dataset(name, "train")
        rows = np.random.default_rng(0).permutation(len(d))[:sample].tolist()
        x = _pixels(d, rows)
    edges = np.linspace(0, 256, bins + 1)
    channels = ["gray"] if x.shape[1] == 1 else ["red", "green", "blue"]
    counts = {ch: np.histogram(x[:, i].numpy().ravel(), bins=edges)[0].tolist() for i, ch in enumerate(channels)}
    return {"edges": edges.tolist(), "counts": counts, "images": len(x), "of": len(d)}


def _pca2(x: torch.Tensor) -> tuple[np.ndarray, list[float]]:
    """Coordinates of uint8 images on their first two principal axes, and each axis's share of the variance."""
    x = x.flatten(1).double() / 255
    x = x - x.mean(0)
    # SVD of the centred data: the principal axes without forming the covariance matrix.
    _, s, v = torch.linalg.svd(x, full_matrices=False)
    return (x @ v[:2].T).numpy(), (s**2 / (s**2).sum())[:2].tolist()


def _pca2_wide(x: torch.Tensor) -> tuple[np.ndarray, list[float]]:
    """:func:`_pca2` for far more pixels than images (a folder's sample: 400 x 12,288), through the
    images' Gram matrix: X Xᵀ = U S² Uᵀ, so the coordinates X V = U S come from an n x n eigenproblem.
    The same numbers up to each axis's sign, but torch's SVD of 244-600 such rows took 2 to 17 s,
    erratically, on the 2 busy cores of the test box, where this took 0.2 to 0.7 s."""
    x = x.flatten(1).double() / 255
    x = x - x.mean(0)
    eigenvalues, u = torch.linalg.eigh(x @ x.T)  # ascending
    top = eigenvalues.flip(0)[:2].clamp_min(0)
    coords = u.flip(1)[:, :2] * top.sqrt()
    total = eigenvalues.clamp_min(0).sum().clamp_min(1e-12)  # identical images: no variance, not 0/0
    return coords.numpy(), (top / total).tolist()


def pca_map(name: str, n: int = 600, seed: int = 0) -> dict[str, np.ndarray | list]:
    """A 2-D PCA of ``n`` stratified training images: coordinates, labels, explained variance;
    ``row``: each point's training row; ``of``: the training images. A folder's images are its
    statistics sample's (at most about :data:`STATS_IMAGES`, at :data:`STATS_SIDE` px)."""
    folder = _is_folder(name)
    if folder:
        d, rows, x = _folder_rows(name, n, seed)
    else:
        d = data_mod.load_dataset(name, "train")
        rows = [r for rs in class_indices(d, max(1, n // len(d.classes)), seed).values() for r in rs]
        x = _pixels(d, rows)
    coords, variance = _pca2_wide(x) if folder else _pca2(x)
    labels = [d.classes[int(d.targets[r])] for r in rows]
    return {"x": coords[:, 0], "y": coords[:, 1], "label": labels, "row": rows, "explained": variance, "of": len(d)}
