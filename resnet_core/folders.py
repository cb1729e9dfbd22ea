"""Folders of the user's own images: one sub-folder per class, from a directory or a zip.

Layout accepted: ``CLASS/*.jpg``, or ``train/CLASS/...`` with ``test/`` (or ``val/``) beside
it, possibly wrapped in one top-level folder, as zips made by "compress folder" usually are.
Hidden files, ``__MACOSX`` and files that are not images are skipped and counted, never fatal.
Without a test folder the split is a seeded stratified 80/20.

What we write (``<data>/folders/NAME/``): ``index.json`` (classes, files, split, skipped,
size, mean/std), for a zip ``files/`` with its checked contents, and ``cache/`` with each split
decoded once (:func:`cached_images`). A directory is read in place. torchvision's
``ImageFolder`` would reject the hidden and broken files instead of counting them, and has no
split, hence this module.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import unicodedata
import zipfile
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version as _version
from pathlib import Path

import numpy as np
import PIL
import torch
from PIL import Image

from resnet_core import imaging
from resnet_core.checkpoints import CheckpointError, _atomic, atomic_write_text
from resnet_core.messages import LabError

# A dataset's name is a folder name and part of run names: letters of any script (形状, ants),
# digits, "-" and "_", not starting with "_" or "-"; Latin letters lower case (two names never
# differ only by case on a case-insensitive disk).
NAME_RE = re.compile(r"^(?![_-])[\w-]{1,40}$")
MAX_ZIP_BYTES = 4 * 1024**3  # uncompressed; a zip bomb stops here
MAX_ZIP_FILES = 200_000
MAX_RATIO = 100  # JPEG/PNG barely compress; 100:1 over all members is a bomb, not photos
RATIO_FLOOR = 64 * 1024**2  # small zips of BMPs or blank drawings may compress well; let them
TEST_DIRS = ("test", "val", "valid", "validation")
DEFAULT_SIZE = 224  # ImageNet's, so pretrained backbones see what they were trained on


class FolderError(LabError, ValueError):
    """A folder or zip that is not a dataset; the message says what shape is expected."""


def image_extensions() -> tuple[str, ...]:
    """The file endings torchvision's ImageFolder reads, imported when a folder is scanned: a
    trainer on a bundled sample never imports torchvision (see data._MNIST_CLASSES)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def folders_dir(root: Path) -> Path:
    return root / "folders"


def list_folders(root: Path) -> list[str]:
    base = folders_dir(root)
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if NAME_RE.match(p.name) and (p / "index.json").is_file())


def read_index(root: Path, name: str) -> dict | None:
    path = folders_dir(root) / name / "index.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _names_encoding(members: list[zipfile.ZipInfo]) -> tuple[str, ...]:
    """UTF-8 when every unflagged name is UTF-8, else GBK first: one zipper made the whole zip.

    Decided per zip, not per name: 猫 in GBK (C3 A8) is also valid UTF-8 (è), so a name at a
    time turned one class of a Windows zip into mojibake beside its correctly decoded sister.
    """
    for m in members:
        if not m.flag_bits & 0x800:
            try:
                m.filename.encode("cp437").decode("utf-8")
            except UnicodeError:
                return ("gbk", "utf-8")
    return ("utf-8", "gbk")


def _member_name(info: zipfile.ZipInfo, encodings: tuple[str, ...] = ("utf-8", "gbk")) -> str:
    """The member's name as its author typed it: the UTF-8 flag, else UTF-8, else GBK.

    Zips made on Windows store names in the OEM code page with no flag; ``zipfile`` then decodes
    them as cp437, so a Chinese class folder arrives as mojibake. Re-encoding to the original
    bytes and trying UTF-8 (macOS, 7-Zip) before GBK (Windows in Chinese) recovers both.
    """
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:  # decoded with another metadata_encoding already
        return info.filename
    for encoding in encodings:
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def _member_parts(name: str) -> tuple[str, ...] | None:
    """Path parts of a member with either separator, or None when it could leave the folder.

    Windows zips may use ``\\``; an absolute path (``/x``, ``\\x``, ``C:x``, ``//host/x``) or a
    ``..`` is refused here, before any path is built, and again by resolving the target.
    """
    name = name.replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        return None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if any(p == ".." for p in parts):
        return None
    return parts


def _safe_extract(zip_path: Path, dest: Path, skipped: Counter, label: str = "") -> None:
    """Extract the regular files of a zip inside ``dest`` only; refuse bombs and traversal.

    ``zipfile.extractall`` sanitises names its own way (it drops ``..`` and drive letters and
    carries on), which would hide a hostile archive and merge folders; here every target is
    resolved and must lie inside ``dest``, and a zip that tries to leave it is refused whole.
    """
    shown = label or zip_path.name  # the name the user knows: a page stages the upload under another
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise FolderError("folder.bad_zip", zip=shown) from err
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        declared = sum(m.file_size for m in members)
        packed = sum(m.compress_size for m in members)
        if len(members) > MAX_ZIP_FILES or declared > MAX_ZIP_BYTES:
            gb = MAX_ZIP_BYTES // 1024**3
            raise FolderError("folder.zip_too_large", zip=shown, files=f"{MAX_ZIP_FILES:,}", gb=gb)
        if declared > RATIO_FLOOR and declared > MAX_RATIO * max(packed, 1):
            raise FolderError("folder.zip_bomb", zip=shown, ratio=f"{declared // max(packed, 1):,}")
        seen: set[str] = set()
        written = 0
        encodings = _names_encoding(members)
        for m in members:
            name = _member_name(m, encodings)
            parts = _member_parts(name)
            if parts == ():
                continue  # "./" and the like: nothing to write
            target = dest.joinpath(*parts) if parts else None
            if target is None or not target.resolve().is_relative_to(root):
                raise FolderError("folder.zip_escape", zip=shown, entry=name)
            if (m.external_attr >> 16) & 0o170000 == 0o120000:
                skipped["links"] += 1  # a symlink could point anywhere on the server
                continue
            key = "/".join(parts)
            if key in seen:
                skipped["duplicate names"] += 1
                continue
            seen.add(key)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(target, "xb") as out:
                    written += _copy_limited(src, out, MAX_ZIP_BYTES - written)
            except RuntimeError as err:  # zipfile's word for an encrypted member
                raise FolderError("folder.zip_password", zip=shown) from err
            except (zipfile.BadZipFile, EOFError, zlib.error) as err:
                raise FolderError("folder.zip_damaged", zip=shown, entry=name, why=str(err)) from err
            except OSError:  # a name the file system refuses (too long, a file where a folder is)
                skipped["unusable names"] += 1


def _copy_limited(src, out, budget: int) -> int:
    """Copy at most ``budget`` bytes: a header that understates a member's size cannot bomb us."""
    total = 0
    while chunk := src.read(1 << 20):
        total += len(chunk)
        if total > budget:
            raise FolderError("folder.zip_bytes", gb=MAX_ZIP_BYTES // 1024**3)
        out.write(chunk)
    return total


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


def _scan_classes(split_root: Path, skipped: Counter, inside: Path | None = None) -> dict[str, list[Path]]:
    """Map class name -> image files under ``split_root``; count what is skipped and why.

    ``inside``: a link (a class folder or an image) whose target leaves this directory is
    skipped, so a browser given one server folder cannot reach files beyond it."""
    classes: dict[str, list[Path]] = {}
    for entry in sorted(split_root.iterdir()):
        if _hidden(entry):
            skipped["hidden or __MACOSX"] += sum(1 for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else 1
            continue
        if not entry.is_dir():
            skipped["not inside a class folder"] += 1
            continue
        if inside is not None and not entry.resolve().is_relative_to(inside):
            skipped["links leaving the folder"] += 1  # never walked: it could be "/" (rglob follows it)
            continue
        files = []
        for path in sorted(entry.rglob("*")):
            if not path.is_file():
                continue
            if inside is not None and not path.resolve().is_relative_to(inside):
                skipped["links leaving the folder"] += 1
            elif any(_hidden(part) for part in path.relative_to(entry).parts):
                skipped["hidden or __MACOSX"] += 1
            elif path.suffix.lower() not in image_extensions():
                skipped["not an image file"] += 1
            elif not _readable(path):
                skipped["unreadable or corrupt image"] += 1
            else:
                files.append(path)
        if files:
            classes[entry.name] = files
    return classes


def _readable(path: Path) -> bool:
    """A real decode, as training will do it: ``verify()`` skips JPEG data, so a truncated JPEG
    passed it and failed later. JPEGs decode at 1/8 scale here (a few ms each), the rest in full."""
    return imaging.check(path) is None


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


def scan(data_dir: Path, seed: int = 0, skipped: Counter | None = None, confine: bool = False, label: str = "") -> dict:
    """Build the index of a class-folder tree: files, labels, split, skipped counts.

    ``confine``: skip links whose target lies outside ``data_dir`` (see :func:`_scan_classes`).
    ``label``: how messages name the source (a zip's name, not its staging folder's)."""
    base = _unwrap(data_dir)
    skipped = Counter() if skipped is None else skipped
    inside = data_dir.resolve() if confine else None
    names = {p.name.lower(): p for p in base.iterdir() if p.is_dir()}
    test_dir = next((names[d] for d in TEST_DIRS if d in names), None)
    if "train" in names and test_dir is not None:
        train = _scan_classes(names["train"], skipped, inside)
        test = _scan_classes(test_dir, skipped, inside)
        classes = sorted(set(train) | set(test))
        rows = [(f, c, "train") for c in classes for f in train.get(c, [])]
        rows += [(f, c, "test") for c in classes for f in test.get(c, [])]
    else:
        found = _scan_classes(base, skipped, inside)
        classes = sorted(found)
        rows = [(f, c, None) for c in classes for f in found[c]]
    if len(classes) < 2:
        raise FolderError("folder.too_few_classes", n=len(classes), source=label or data_dir.name)
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


def add(
    root: Path, name: str, source: Path, seed: int = 0, confine: bool = False, owner: str | None = None, label: str = ""
) -> dict:
    """Register ``source`` (directory or zip) as folder dataset ``name``; return its index.

    ``confine``: links leaving ``source`` are skipped (a browser's server folder; the shell's
    own datasets may be trees of links into a shared image store). ``owner``: the browser that
    added it (``classroom.owner_id``; None from the shell), who may delete it besides the teacher.
    ``label``: the zip's name as the user knows it (a browser's upload is staged under another)."""
    if not NAME_RE.match(name) or name != name.lower() or name != unicodedata.normalize("NFC", name):
        raise FolderError("folder.bad_name", name=name)
    if not source.exists():
        raise FolderError("folder.no_source", source=source)
    target = folders_dir(root) / name
    if target.exists():
        raise FolderError("folder.exists", name=name)
    folders_dir(root).mkdir(parents=True, exist_ok=True)
    # A private staging folder: two students adding the same name at once never share one.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".staging", dir=folders_dir(root)))
    try:
        skipped: Counter = Counter()
        if source.is_dir():
            data_dir = source.resolve()
        elif zipfile.is_zipfile(source):
            _safe_extract(source, staging / "files", skipped, label)
            data_dir = staging / "files"
        else:
            raise FolderError("folder.not_a_dataset", source=label or source.name)
        index = scan(data_dir, seed, skipped, confine, label=label or source.name)
        if not source.is_dir():  # our own copy: what the scan skipped is never read, so not kept
            _keep_only(data_dir, {data_dir / f for f in index["files"]})
        index["source"] = str(source.resolve()) if source.is_dir() else f"zip: {label or source.name}"
        index["owner"] = owner
        index["base"] = str(data_dir) if source.is_dir() else "files"
        index["size"] = _typical_size(data_dir, index["files"])
        index["mean"], index["std"] = _folder_stats(data_dir, index, seed)
        atomic_write_text(staging / "index.json", json.dumps(index))
        try:
            staging.rename(target)  # the dataset appears whole or not at all
        except OSError as err:  # someone registered the same name while we scanned
            raise FolderError("folder.exists", name=name) from err
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return index


def _keep_only(data_dir: Path, files: set[Path]) -> None:
    """Delete every file of an extracted zip that is not one of the dataset's images.

    Junk beside the classes (videos, documents, __MACOSX, unreadable images) would otherwise
    sit on the server's disk for as long as the dataset, counted in its size but never used.
    """
    for path in data_dir.rglob("*"):
        if path not in files and (path.is_file() or path.is_symlink()):
            path.unlink()


def _base(root: Path, name: str, index: dict) -> Path:
    base = Path(index["base"])
    return base if base.is_absolute() else folders_dir(root) / name / base


_SPLITS: dict[tuple, tuple[list[Path], list[int]]] = {}  # (index file, its mtime, split) -> files, labels
_SPLITS_LOCK = threading.Lock()


def split_files(root: Path, name: str, index: dict, split: str) -> tuple[list[Path], list[int]]:
    """A split's files and labels, kept per version of the index: 50,000 paths take a third of a
    second to make, and the Data page asks for them five times per open (counts, thumbnails, means,
    histogram, PCA). Copies, so a caller's change stays its own."""
    base = _base(root, name, index)
    if not base.is_dir():
        raise FolderError("folder.gone", name=name, folder=base)
    index_file = folders_dir(root) / name / "index.json"
    try:
        key = (str(index_file), index_file.stat().st_mtime_ns, len(index["files"]), str(base), split)
    except OSError:  # deleted meanwhile: made afresh, not kept
        key = None
    with _SPLITS_LOCK:
        kept = _SPLITS.get(key) if key else None
    if kept is None:
        rows = [(base / f, y) for f, y, s in zip(index["files"], index["labels"], index["split"]) if s == split]
        kept = ([f for f, _ in rows], [y for _, y in rows])
        if key:
            with _SPLITS_LOCK:
                if len(_SPLITS) >= 16:
                    _SPLITS.clear()
                _SPLITS[key] = kept
    return list(kept[0]), list(kept[1])


def _typical_size(data_dir: Path, files: list[str], sample: int = 200) -> int:
    """Median short side of up to ``sample`` images, capped at 224 and rounded to 8 px."""
    sides = []
    for f in files[:: max(1, len(files) // sample)][:sample]:
        with Image.open(data_dir / f, formats=imaging.FORMATS) as im:  # the header only: quick
            sides.append(min(im.size))
    return int(max(16, min(DEFAULT_SIZE, int(np.median(sides)) // 8 * 8)))


def _folder_stats(data_dir: Path, index: dict, seed: int, sample: int = 500) -> tuple[list, list]:
    from resnet_core.data import channel_stats

    train = [f for f, s in zip(index["files"], index["split"]) if s == "train"]
    pick = np.random.default_rng(seed).permutation(len(train))[:sample]
    images = torch.stack([load_image(data_dir / train[i], index["size"], 3) for i in pick])
    return channel_stats(images)


def load_image(path: Path, size: int, channels: int, draft: int | None = None) -> torch.Tensor:
    """uint8 CHW as the predict page prepares a photo for this dataset (``imaging``: EXIF rotation,
    transparency on white, 16-bit and CMYK to RGB, then short side to ``size`` and a centre crop).

    ``draft``: the short side the JPEG decoder may scale down to (``imaging.decode``'s
    ``max_side``). Training keeps twice ``size`` so the resize has pixels to average; a preview
    (the data page's thumbnails and sample statistics) passes ``size`` itself, the DCT scaling as
    far as the preview allows. A modest saving (measured, one core: a 500x375 photo at 112 px
    1.7 ms instead of 2.2 ms; a 12 Mpx one about 16 ms either way, reading its whole entropy-coded
    data dominates): what makes a preview fast is decoding only the images it shows."""
    side = draft or imaging.decode_side("natural", size)
    image = imaging.decode(path, path, side)  # a Path: a page shows no server path
    return imaging.natural(image, size, channels)


class FolderImages(torch.utils.data.Dataset):
    """Lazily decoded images of a folder dataset, as ``(uint8 CHW, label)``."""

    def __init__(
        self, files: list[Path], targets: torch.Tensor, size: int, channels: int, draft: int | None = None
    ) -> None:
        self.files, self.targets, self.size, self.channels = files, targets, size, channels
        self.draft = draft  # see load_image

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        # A file that broke after the scan stops training with its name: a black image in its
        # place would quietly teach the network that black is this class.
        try:
            image = load_image(self.files[i], self.size, self.channels, self.draft)
        except imaging.ImageError as err:
            raise imaging.ImageError("folder.unreadable_image", path=Path(self.files[i]), error=err) from err
        return image, int(self.targets[i])


# ---------------------------------------------------------------------------------------------
# The decoded cache: a split that fits in memory is decoded once, not on every batch of every epoch

# Bump when load_image's pixels change (another resize, crop or colour handling): old caches miss.
CACHE_VERSION = 1
DECODE_CHUNK = 64  # images per task: a few ms of work each, and no million futures for a big split


def cache_dir(root: Path, name: str) -> Path:
    """Beside ``index.json``: the cache goes with the dataset, and a user's own directory is never written."""
    return folders_dir(root) / name / "cache"


def cache_key(files: list[Path], size: int, channels: int) -> str | None:
    """A hash of everything the decoded pixels depend on, or None when a file cannot be stat'ed.

    The files in split order with their size and modification time (a directory read in place
    may be edited after it was added), the side, the channels, and the decoders' versions.
    Labels are not in it: targets are read from the index on every load, never from the cache.
    """
    h = hashlib.sha256(json.dumps([CACHE_VERSION, size, channels, PIL.__version__, _version("torchvision")]).encode())
    try:
        for f in files:
            st = f.stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    except OSError:
        return None
    return h.hexdigest()[:24]


def cache_path(root: Path, name: str, split: str, size: int, channels: int, key: str) -> Path:
    return cache_dir(root, name) / f"{split}-{size}px-{channels}ch-{key}.npy"


def read_cache(path: Path, shape: tuple[int, ...]) -> torch.Tensor | None:
    """The cached uint8 images, memory-mapped, or None for a missing, truncated or foreign file.

    A ``.npy`` opened copy-on-write: it opens in milliseconds, pages are read when a batch
    touches them, and every process on the server (the app, each trainer) shares one copy in
    the page cache, which the kernel can drop and re-read under memory pressure. No pickle.
    """
    try:
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except Exception:  # missing, empty, truncated (mmap longer than the file), not a .npy
        return None
    if not isinstance(array, np.memmap):  # an .npz or a 0-byte payload: not ours
        getattr(array, "close", lambda: None)()
        return None
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if array.dtype != np.uint8 or array.shape != shape or not array.flags.c_contiguous:
        return None
    if array.offset + array.nbytes != size:  # trailing bytes: not the file we wrote
        return None
    return torch.from_numpy(array)


def usable_cpus() -> int:
    """The cores this process may run on (a container or ``taskset`` may allow fewer than exist)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def decode_threads() -> int:
    """Threads, not processes: Pillow's decoders and torch's resize release the GIL, and threads
    need no fork of the threaded app server, no pickling and no worker start-up. On the 2-core
    test box, busy with other work, 2 threads took 0.6-1.1 times as long as one for 320 photos:
    little to gain there without an idle core; a server's spare cores are what this is for."""
    return max(1, min(8, usable_cpus()))


def decode_all(files: list[Path], size: int, channels: int, draft: int | None = None) -> torch.Tensor:
    """uint8 ``(N, C, size, size)``: every file through :class:`FolderImages`, in parallel threads.

    A file that does not decode raises as in training, with its name, and the rest are cancelled.
    ``draft``: see :func:`load_image` (previews only; the decoded cache keeps training's pixels).
    """
    ds = FolderImages(files, torch.zeros(len(files), dtype=torch.int64), size, channels, draft)
    out = torch.empty((len(ds), channels, size, size), dtype=torch.uint8)

    def chunk(start: int) -> None:
        for i in range(start, min(start + DECODE_CHUNK, len(ds))):
            out[i] = ds[i][0]

    # One torch thread per decoding thread: each resize is too small to share, and OpenMP teams
    # on busy cores wait for each other. Measured on 2 busy cores, 160 photos in 2 threads: 5.6 s
    # with one torch thread each, 9.4 s with torch's default 2. DataLoader workers do the same.
    # The setting also reaches threads started meanwhile; it is put back when the pool is done.
    threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(
        decode_threads(), thread_name_prefix="decode", initializer=torch.set_num_threads, initargs=(1,)
    )
    try:
        for _ in pool.map(chunk, range(0, len(ds), DECODE_CHUNK)):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)
    return out


def cached_images(
    root: Path, name: str, split: str, files: list[Path], size: int, channels: int, budget: int
) -> torch.Tensor | None:
    """A split's uint8 images decoded once, or None when they exceed ``budget`` bytes (stream them).

    Read from ``cache/`` when a file with the split's current key is there and whole; otherwise
    decoded in parallel and written atomically (temp file, fsync, rename: two trainers building
    it at once each write a whole file and the last rename wins), and stale keys removed. A
    cache that cannot be written (full disk, read-only folder) costs speed, never the run.
    """
    shape = (len(files), channels, size, size)
    if len(files) * channels * size * size > budget:
        return None
    if not files:
        return torch.empty(shape, dtype=torch.uint8)
    key = cache_key(files, size, channels)
    if key is None:  # a file has gone: decoding says which, as training would
        return decode_all(files, size, channels)
    path = cache_path(root, name, split, size, channels, key)
    images = read_cache(path, shape)
    if images is not None:
        return images
    images = decode_all(files, size, channels)
    try:
        _atomic(path, lambda f: np.save(f, images.numpy(), allow_pickle=False))
    except (CheckpointError, OSError):
        return images
    for old in path.parent.glob(f"{split}-{size}px-{channels}ch-*.npy"):
        if old != path:
            with contextlib.suppress(OSError):  # a process that has it mapped keeps reading it
                old.unlink()
    mapped = read_cache(path, shape)  # file-backed pages, shared, instead of a private copy
    return images if mapped is None else mapped
