"""What the data page shows, computed here so pages stay UI only and the numbers are tested.

Everything returns plain numpy arrays or lists; the page draws them with plotly.
"""

from __future__ import annotations

import numpy as np
import torch

from resnet_core import data as data_mod


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


def sample_grid(name: str, per_class: int = 8, split: str = "train") -> dict[str, np.ndarray]:
    """class name -> uint8 images (n, H, W) or (n, H, W, 3) for ``st.image``."""
    d = data_mod.load_dataset(name, split)
    grid = {}
    for c, rows in class_indices(d, per_class).items():
        if rows:
            grid[d.classes[c]] = _hwc(_pixels(d, rows))
    return grid


def _hwc(x: torch.Tensor) -> np.ndarray:
    x = x.permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def mean_images(name: str, limit_per_class: int = 500) -> dict[str, np.ndarray]:
    """class name -> the average of up to ``limit_per_class`` training images (uint8)."""
    d = data_mod.load_dataset(name, "train")
    means = {}
    for c, rows in class_indices(d, limit_per_class).items():
        if rows:
            means[d.classes[c]] = _hwc(_pixels(d, rows).float().mean(0, keepdim=True).round().byte())[0]
    return means


def intensity_histogram(name: str, sample: int = 2000, bins: int = 32) -> dict[str, list]:
    """Counts of pixel intensities (0-255) per channel over a seeded sample of training images."""
    d = data_mod.load_dataset(name, "train")
    rows = np.random.default_rng(0).permutation(len(d))[:sample].tolist()
    x = _pixels(d, rows)
    edges = np.linspace(0, 256, bins + 1)
    channels = ["gray"] if x.shape[1] == 1 else ["red", "green", "blue"]
    counts = {ch: np.histogram(x[:, i].numpy().ravel(), bins=edges)[0].tolist() for i, ch in enumerate(channels)}
    return {"edges": edges.tolist(), "counts": counts}


def pca_map(name: str, n: int = 600, seed: int = 0) -> dict[str, np.ndarray | list]:
    """A 2-D PCA of ``n`` stratified training images: coordinates, labels, explained variance."""
    d = data_mod.load_dataset(name, "train")
    rows = [r for rs in class_indices(d, max(1, n // len(d.classes)), seed).values() for r in rs]
    x = _pixels(d, rows).flatten(1).double() / 255
    x = x - x.mean(0)
    # SVD of the centred data: the principal axes without forming the covariance matrix.
    _, s, v = torch.linalg.svd(x, full_matrices=False)
    coords = (x @ v[:2].T).numpy()
    variance = (s**2 / (s**2).sum())[:2].tolist()
    labels = [d.classes[int(d.targets[r])] for r in rows]
    return {"x": coords[:, 0], "y": coords[:, 1], "label": labels, "row": rows, "explained": variance}
