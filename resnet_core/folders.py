"""Folders of the user's own images: one sub-folder per class, from a directory or a zip.

Layout accepted: ``CLASS/*.jpg``, or ``train/CLASS/...`` with ``test/`` (or ``val/``) beside
it, possibly wrapped in one top-level folder, as zips made by "compress folder" usually are.
Hidden files, ``__MACOSX`` and files that are not images are skipped and counted, never fatal.
Without a test folder the split is a seeded stratified 80/20.

What we write (``<data>/folders/NAME/``): ``index.json`` (classes, files, split, skipped,
size, mean/std) and, for a zip, ``files/`` with its checked contents. A directory is read in
place. torchvision's ``ImageFolder`` would reject the hidden and broken files instead of
counting them, and has no split, hence this module.
"""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import functional as TF

from resnet_core.checkpoints import atomic_write_text

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
MAX_ZIP_BYTES = 4 * 1024**3  # uncompressed; a zip bomb stops here
MAX_ZIP_FILES = 200_000
TEST_DIRS = ("test", "val", "valid", "validation")
DEFAULT_SIZE = 224  # ImageNet's, so pretrained backbones see what they were trained on


class FolderError(ValueError):
    """A folder or zip that is not a dataset; the message says what shape is expected."""


def folders_dir(root: Path) -> Path:
    return root / "folders"


def list_folders(root: Path) -> list[str]:
    base = folders_dir(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / "index.json").is_file())


def read_index(root: Path, name: str) -> dict | None:
    path = folders_dir(root) / name / "index.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _safe_extract(zip_path: Path, dest: Path) -> None:
    """Extract only regular files with relative, in-tree paths; refuse bombs and traversal."""
    try:
        zf = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise FolderError(f"{zip_path.name} is not a readable zip file.") from err
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_FILES or sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise FolderError(
                f"{zip_path.name} unpacks to more than {MAX_ZIP_FILES:,} files or "
                f"{MAX_ZIP_BYTES // 1024**3} GB; point at a directory on the server instead."
            )
        for m in members:
            parts = Path(m.filename.replace("\\", "/")).parts
            is_link = (m.external_attr >> 16) & 0o170000 == 0o120000
            if is_link or m.filename.startswith("/") or ".." in parts or not parts:
                continue  # skipped silently: such entries never hold training images
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(m) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


def _unwrap(root: Path) -> Path:
    """Descend through lone wrapper folders ("mydata/cats/..." -> "mydata")."""
    while True:
        entries = [p for p in root.iterdir() if not _hidden(p)]
        dirs = [p for p in entries if p.is_dir()]
        if len(dirs) == 1 and len(entries) == 1:
            root = dirs[0]
        else:
            return root


def _hidden(path: Path | str) -> bool:
    name = Path(path).name
    return name.startswith(".") or name == "__MACOSX"


def _scan_classes(split_root: Path, skipped: Counter) -> dict[str, list[Path]]:
    """Map class name -> image files under ``split_root``; count what is skipped and why."""
    classes: dict[str, list[Path]] = {}
    for entry in sorted(split_root.iterdir()):
        if _hidden(entry):
            skipped["hidden or __MACOSX"] += sum(1 for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else 1
            continue
        if not entry.is_dir():
            skipped["not inside a class folder"] += 1
            continue
        files = []
        for path in sorted(entry.rglob("*")):
            if not path.is_file():
                continue
            if any(_hidden(part) for part in path.relative_to(entry).parts):
                skipped["hidden or __MACOSX"] += 1
            elif path.suffix.lower() not in IMG_EXTENSIONS:
                skipped["not an image file"] += 1
            elif not _readable(path):
                skipped["unreadable or corrupt image"] += 1
            else:
                files.append(path)
        if files:
            classes[entry.name] = files
    return classes


def _readable(path: Path) -> bool:
    """Header check only (PIL reads no pixels here), so scanning thousands of files is quick."""
    try:
        with Image.open(path) as im:
            im.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _stratified(labels: list[int], test_share: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    split = ["train"] * len(labels)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    for idx in by_class.values():
        n_test = int(round(len(idx) * test_share)) if len(idx) > 1 else 0
        for i in rng.permutation(idx)[:n_test]:
            split[i] = "test"
    return split


def scan(data_dir: Path, seed: int = 0) -> dict:
    """Build the index of a class-folder tree: files, labels, split, skipped counts."""
    base = _unwrap(data_dir)
    skipped: Counter = Counter()
    names = {p.name.lower(): p for p in base.iterdir() if p.is_dir()}
    test_dir = next((names[d] for d in TEST_DIRS if d in names), None)
    if "train" in names and test_dir is not None:
        train = _scan_classes(names["train"], skipped)
        test = _scan_classes(test_dir, skipped)
        classes = sorted(set(train) | set(test))
        rows = [(f, c, "train") for c in classes for f in train.get(c, [])]
        rows += [(f, c, "test") for c in classes for f in test.get(c, [])]
    else:
        found = _scan_classes(base, skipped)
        classes = sorted(found)
        rows = [(f, c, None) for c in classes for f in found[c]]
    if len(classes) < 2:
        raise FolderError(
            f"Found {len(classes)} class folder(s) with images in {data_dir.name}; a dataset needs at "
            "least two sub-folders of images, one per class (e.g. cats/ and dogs/)."
        )
    labels = [classes.index(c) for _, c, _ in rows]
    split = [s for _, _, s in rows]
    if None in split:
        split = _stratified(labels, 0.2, seed)
    return {
        "classes": classes,
        "files": [str(f.relative_to(data_dir)) for f, _, _ in rows],
        "labels": labels,
        "split": split,
        "skipped": dict(skipped),
    }


def add(root: Path, name: str, source: Path, seed: int = 0) -> dict:
    """Register ``source`` (directory or zip) as folder dataset ``name``; return its index."""
    if not NAME_RE.match(name):
        raise FolderError(f"Dataset name {name!r} must be 1-40 lowercase letters, digits, '-' or '_'.")
    if not source.exists():
        raise FolderError(f"{source} does not exist; give a directory or a .zip of class folders.")
    target = folders_dir(root) / name
    if target.exists():
        raise FolderError(f"A folder dataset named {name!r} exists already; choose another name.")
    staging = folders_dir(root) / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if source.is_dir():
            data_dir = source.resolve()
        elif zipfile.is_zipfile(source):
            _safe_extract(source, staging / "files")
            data_dir = staging / "files"
        else:
            raise FolderError(f"{source.name} is neither a directory nor a zip of class folders.")
        index = scan(data_dir, seed)
        index["source"] = str(source.resolve()) if source.is_dir() else f"zip: {source.name}"
        index["base"] = str(data_dir) if source.is_dir() else "files"
        index["size"] = _typical_size(data_dir, index["files"])
        index["mean"], index["std"] = _folder_stats(data_dir, index, seed)
        atomic_write_text(staging / "index.json", json.dumps(index))
        staging.rename(target)  # the dataset appears whole or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return index


def _base(root: Path, name: str, index: dict) -> Path:
    base = Path(index["base"])
    return base if base.is_absolute() else folders_dir(root) / name / base


def split_files(root: Path, name: str, index: dict, split: str) -> tuple[list[Path], list[int]]:
    base = _base(root, name, index)
    rows = [(base / f, y) for f, y, s in zip(index["files"], index["labels"], index["split"]) if s == split]
    return [f for f, _ in rows], [y for _, y in rows]


def _typical_size(data_dir: Path, files: list[str], sample: int = 200) -> int:
    """Median short side of up to ``sample`` images, capped at 224 and rounded to 8 px."""
    sides = []
    for f in files[:: max(1, len(files) // sample)][:sample]:
        with Image.open(data_dir / f) as im:
            sides.append(min(im.size))
    return int(max(16, min(DEFAULT_SIZE, int(np.median(sides)) // 8 * 8)))


def _folder_stats(data_dir: Path, index: dict, seed: int, sample: int = 500) -> tuple[list, list]:
    from resnet_core.data import channel_stats

    train = [f for f, s in zip(index["files"], index["split"]) if s == "train"]
    pick = np.random.default_rng(seed).permutation(len(train))[:sample]
    images = torch.stack([load_image(data_dir / train[i], index["size"], 3) for i in pick])
    return channel_stats(images)


def load_image(path: Path, size: int, channels: int) -> torch.Tensor:
    """Decode, undo EXIF rotation, resize the short side to ``size``, centre-crop: uint8 CHW."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB" if channels == 3 else "L")
        t = TF.pil_to_tensor(im)
    t = TF.resize(t, size, antialias=True)
    return TF.center_crop(t, [size, size])


class FolderImages(torch.utils.data.Dataset):
    """Lazily decoded images of a folder dataset, as ``(uint8 CHW, label)``."""

    def __init__(self, files: list[Path], targets: torch.Tensor, size: int, channels: int) -> None:
        self.files, self.targets, self.size, self.channels = files, targets, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            image = load_image(self.files[i], self.size, self.channels)
        except (OSError, ValueError, Image.DecompressionBombError):
            # A file that broke after the scan: a black image keeps the epoch going.
            image = torch.zeros(self.channels, self.size, self.size, dtype=torch.uint8)
        return image, int(self.targets[i])
