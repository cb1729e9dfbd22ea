"""Your own classes: a student names a few classes, adds photos to each (camera shots or uploads),
and the head of the ImageNet ResNet-50 learns them from the frozen backbone's features in a
second or two; then a shot gets per-class probabilities, its nearest examples in feature space,
Grad-CAM, and the whole can be saved as a run that Predict and Train list like any other.

Why features and not images: with the backbone frozen (as Teachable Machine freezes MobileNet),
an example's features never change, so each is computed once, when it arrives (about 0.1 s for
a ResNet-50 on 2 cores), and training is a logistic regression on a few hundred 2,048-number
rows. The same exactness argument as :mod:`resnet_core.features`.

Each owner (a browser, :func:`ui.common.actor`) has a folder of its own,
``$RESNET_LAB_HOME/classes/<owner>/``:

- ``state.json``: the classes in order, each with its examples' ids;
- ``examples/<id>.jpg``: the 224 px centre crop the network saw (what the thumbnails show, and
  what the features are computed again from if the backbone changes);
- ``features.pt``: one row per example, with the key of the backbone that computed them;
- ``head.pt``: the last trained head, its classes, examples and held-out results.

Writes are atomic and an owner's changes are serialised by a lock file, so two tabs of one
browser adding shots at once lose none. The command line has no owner: ``LOCAL`` stands for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import re
import shutil
import threading
import time
import unicodedata
import uuid
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from resnet_core import classroom, features, precision, predict
from resnet_core import data as data_mod
from resnet_core.checkpoints import _atomic, _unsaved, atomic_write_text, save_checkpoint
from resnet_core.messages import LabError

NETWORK = "resnet50"  # the weights entry a student's classes stand on (resnet_core.weights)
LOCAL = "local"  # the owner folder of the command line and of library callers without one
MIN_CLASSES, MIN_EXAMPLES = 2, 2  # to train: two classes, each with two examples (one to hold out)
MAX_NAME = 40  # characters in a class name
FOLDS = 5  # stratified cross-validation; fewer where a class has fewer examples (then leave-one-out)
L2 = 1e-3  # weight decay of the logistic regression, per weight (the features are ReLU outputs ~0.5)
JPEG_QUALITY = 90  # an example as stored: ~15 KB for a 224 px crop
NEAREST = 3
DATASET = "your-classes"  # the dataset a saved run names: the examples, which are no test split
_OWNER = re.compile(r"[0-9a-f]{8,64}|local")
_EXAMPLE_ID = re.compile(r"[0-9a-f]{12}")


class TeachError(LabError, ValueError):
    """Something about a student's classes the page says in one sentence."""


# ---------------------------------------------------------------------------------------------
# where things are


def root() -> Path:
    return data_mod.lab_home() / "classes"


def folder(owner: str | None) -> Path:
    """An owner's folder; an owner is a hash (``classroom.owner_id``), never a path."""
    owner = owner or LOCAL
    if not _OWNER.fullmatch(owner):
        raise ValueError(f"not an owner id: {owner!r}")
    return root() / owner


def example_path(owner: str | None, example_id: str) -> Path:
    if not (isinstance(example_id, str) and _EXAMPLE_ID.fullmatch(example_id)):
        raise ValueError(f"not an example id: {example_id!r}")
    return folder(owner) / "examples" / f"{example_id}.jpg"


@contextlib.contextmanager
def _locked(owner: str | None):
    """One writer at a time per owner (two tabs of one browser), across server processes."""
    path = folder(owner)
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# classes and examples


def read_state(owner: str | None) -> dict[str, Any]:
    """``{"classes": [{"name", "examples": [{"id", "added"}]}]}``; empty when there is none yet
    (or it is damaged: the examples' files stay, the list starts again). What does not have that
    shape (a hand edit, another version's file) is left out, so no page or prune trips on it."""
    try:
        state = json.loads((folder(owner) / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {"classes": []}
    if not (isinstance(state, dict) and isinstance(state.get("classes"), list)):
        return {"classes": []}
    classes, seen = [], set()
    for c in state["classes"]:
        if not (isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("examples"), list)):
            continue
        if not c["name"] or c["name"].casefold() in seen:
            continue
        seen.add(c["name"].casefold())
        examples = [
            {**e, "added": float(e["added"]) if isinstance(e.get("added"), (int, float)) else 0.0}
            for e in c["examples"]
            if isinstance(e, dict) and isinstance(e.get("id"), str) and _EXAMPLE_ID.fullmatch(e["id"])
        ]
        classes.append({**c, "examples": examples})
    return {**state, "classes": classes}


def _write_state(owner: str | None, state: dict[str, Any]) -> None:
    state["updated"] = time.time()
    atomic_write_text(folder(owner) / "state.json", json.dumps(state, ensure_ascii=False))


def clean_name(name: str) -> str:
    """A class name as kept: any language, outer spaces and control characters gone, NFC."""
    name = unicodedata.normalize("NFC", str(name))
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip()
    if not name:
        raise TeachError("teach.name_empty")
    if len(name) > MAX_NAME:
        raise TeachError("teach.name_long", most=MAX_NAME)
    return name


def _find(state: dict[str, Any], name: str) -> dict[str, Any]:
    for c in state["classes"]:
        if c["name"] == name:
            return c
    raise TeachError("teach.no_class", name=name, valid=", ".join(c["name"] for c in state["classes"]) or "-")


def add_class(owner: str | None, name: str) -> dict[str, Any]:
    name = clean_name(name)
    with _locked(owner):
        state = read_state(owner)
        if any(c["name"].casefold() == name.casefold() for c in state["classes"]):
            raise TeachError("teach.name_taken", name=name)
        most = classroom.limit("classes_per_student")
        if len(state["classes"]) >= most:
            raise TeachError("teach.too_many_classes", most=most)
        state["classes"].append({"name": name, "examples": []})
        _write_state(owner, state)
    return state


def rename_class(owner: str | None, old: str, new: str) -> dict[str, Any]:
    new = clean_name(new)
    with _locked(owner):
        state = read_state(owner)
        c = _find(state, old)
        if any(o is not c and o["name"].casefold() == new.casefold() for o in state["classes"]):
            raise TeachError("teach.name_taken", name=new)
        c["name"] = new
        _write_state(owner, state)
    return state


def remove_class(owner: str | None, name: str) -> dict[str, Any]:
    with _locked(owner):
        state = read_state(owner)
        c = _find(state, name)
        state["classes"].remove(c)
        _write_state(owner, state)
        for e in c["examples"]:
            example_path(owner, e["id"]).unlink(missing_ok=True)
    return state


def remove_example(owner: str | None, example_id: str) -> dict[str, Any]:
    with _locked(owner):
        state = read_state(owner)
        for c in state["classes"]:
            c["examples"] = [e for e in c["examples"] if e["id"] != example_id]
        _write_state(owner, state)
        example_path(owner, example_id).unlink(missing_ok=True)
    return state


def used_bytes() -> int:
    """Disk every owner's examples take (the teacher's ``examples_mb`` limit)."""
    return sum(p.stat().st_size for p in root().glob("*/examples/*.jpg") if p.is_file())


def _check_room(state: dict[str, Any], c: dict[str, Any], adding: int) -> None:
    most = classroom.limit("examples_per_class")
    if len(c["examples"]) >= most:
        raise TeachError("teach.class_full", name=c["name"], most=most)
    cap = classroom.limit("examples_mb")
    if used_bytes() + adding > cap * 1024**2:
        raise TeachError("teach.disk_full", most=cap)


# ---------------------------------------------------------------------------------------------
# the backbone and its features

_BACKBONES: dict[tuple[str, float], predict.Predictor] = {}
_BACKBONES_LOCK = threading.Lock()
_KEYS: dict[int, tuple[weakref.ref, str]] = {}  # by id, with the predictor itself: a freed one's id is reused


def backbone_cfg():
    """The cached ImageNet ResNet-50 entry; refuses with what to do when none is on this server."""
    from resnet_core import weights

    cfg = weights.cached(NETWORK)
    if cfg is None:
        raise TeachError("teach.no_backbone", network=NETWORK)
    return cfg


def backbone() -> predict.Predictor:
    """One shared ImageNet ResNet-50 per server process (pages pass Predict's own instead)."""
    from resnet_core import weights

    cfg = backbone_cfg()
    key = (cfg.name, weights.path_of(cfg).stat().st_mtime)
    with _BACKBONES_LOCK:
        if key not in _BACKBONES:
            _BACKBONES.clear()
            _BACKBONES[key] = predict.Predictor.from_weights(cfg.name, fetch=False)
        return _BACKBONES[key]


def backbone_key(net: predict.Predictor) -> str:
    """What an example's features depend on besides its pixels: the weights (their first and last
    tensors stand for the file, 1 ms instead of hashing 100 MB), the input, the precision."""
    kept = _KEYS.get(id(net))
    if kept is not None and kept[0]() is net:
        return kept[1]
    state = net.model.state_dict()
    names = list(state)
    h = hashlib.blake2b(digest_size=12)
    for name in (names[0], names[-2], names[-1]):
        h.update(state[name].detach().float().contiguous().numpy().tobytes())
    label = precision.resolve("cpu", net.amp).label
    h.update(json.dumps([net.size, net.resize, net.mean, net.std, label, torch.__version__]).encode())
    key = h.hexdigest()
    _KEYS[id(net)] = (weakref.ref(net), key)
    return key


def features_of(net: predict.Predictor, batch: torch.Tensor) -> torch.Tensor:
    """The head's input (N, 2048) for uint8 (N, 3, 224, 224) crops, in the server's precision."""
    with torch.inference_mode(), precision.resolve("cpu", net.amp).autocast("cpu"):
        x = net.normalized(batch).contiguous(memory_format=torch.channels_last)
        out = features.head_input(net.inference_model(), x)
    return out.clone()  # a normal tensor: a head trains on it with autograd


def _read_features(path: Path, key: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        ids, feats = obj["ids"], obj["features"]
        if (
            obj["key"] == key
            and isinstance(ids, list)
            and all(isinstance(i, str) for i in ids)
            and isinstance(feats, torch.Tensor)
            and feats.dtype == torch.float32
            and feats.ndim == 2
            and len(feats) == len(ids)
        ):
            return dict(zip(ids, feats.unbind(0)))
    except Exception:  # missing, torn, or another backbone's: computed again from the examples
        pass
    return {}


def _write_features(path: Path, key: str, rows: dict[str, torch.Tensor]) -> None:
    feats = torch.stack(list(rows.values())) if rows else torch.zeros(0, 0)
    save_checkpoint({"key": key, "ids": list(rows), "features": feats}, path)


def _crop_tensor(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)


def all_features(
    owner: str | None, net: predict.Predictor
) -> tuple[dict[str, Any], list[str], torch.Tensor, torch.Tensor]:
    """The state, and every example's id, class index and features in class order; features of a
    backbone other than ``net``'s (another precision, other weights) are computed again. An example
    whose file is gone or unreadable leaves the state too: kept, it would leave every training stale
    (the head's examples would never again be the state's)."""
    key = backbone_key(net)
    with _locked(owner) as where:
        state = read_state(owner)
        kept = _read_features(where / "features.pt", key)
        crops, lost = {}, set()
        for c in state["classes"]:
            for e in c["examples"]:
                if not example_path(owner, e["id"]).is_file():
                    lost.add(e["id"])
                    continue
                if e["id"] in kept:
                    continue
                try:
                    crops[e["id"]] = _crop_tensor(example_path(owner, e["id"]))
                except (OSError, ValueError, SyntaxError):  # gone, or damaged on disk
                    lost.add(e["id"])
        if lost:
            for c in state["classes"]:
                c["examples"] = [e for e in c["examples"] if e["id"] not in lost]
            _write_state(owner, state)
            for example_id in lost:
                example_path(owner, example_id).unlink(missing_ok=True)
        ids = [e["id"] for c in state["classes"] for e in c["examples"]]
        labels = [i for i, c in enumerate(state["classes"]) for _ in c["examples"]]
        missing = list(crops)
        for start in range(0, len(missing), features.BATCH):
            chunk = missing[start : start + features.BATCH]
            batch = torch.stack([crops[i] for i in chunk])
            kept.update(zip(chunk, features_of(net, batch).unbind(0)))
        if missing or set(kept) - set(ids):
            _write_features(where / "features.pt", key, {i: kept[i] for i in ids})
    feats = torch.stack([kept[i] for i in ids]) if ids else torch.zeros(0, 2048)
    return state, ids, torch.tensor(labels, dtype=torch.long), feats


def add_example(owner: str | None, name: str, source: bytes, filename: str = "shot.jpg", net=None) -> dict[str, Any]:
    """A photo (camera shot or upload, untrusted bytes) into class ``name``: checked and decoded
    as every upload is, cut as the network sees it, its features computed now. Returns
    ``{"id", "seconds"}``; raises ImageError or TeachError with a sentence."""
    t0 = time.perf_counter()
    classroom.check_upload("photo", len(source), filename)
    net = net or backbone()
    state = read_state(owner)
    _check_room(state, _find(state, name), 0)
    crop = net.read(source, filename).tensor  # imaging's checks; ImageNet's resize 256, centre 224
    row = features_of(net, crop[None])[0]
    buf = io.BytesIO()
    Image.fromarray(crop.permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=JPEG_QUALITY)
    example_id = uuid.uuid4().hex[:12]
    key = backbone_key(net)
    with _locked(owner) as where:
        state = read_state(owner)
        c = _find(state, name)  # it may have gone meanwhile (another tab)
        _check_room(state, c, len(buf.getvalue()))
        _atomic(example_path(owner, example_id), lambda f: f.write(buf.getvalue()))
        c["examples"].append({"id": example_id, "added": time.time()})
        kept = _read_features(where / "features.pt", key)
        kept[example_id] = row
        _write_state(owner, state)
        _write_features(where / "features.pt", key, kept)
    return {"id": example_id, "seconds": round(time.perf_counter() - t0, 3)}


def prune(now: float | None = None) -> int:
    """Examples older than the uploads' limit in days go, as every upload does; returns how many.
    So do photos no state lists any more (a state.json that was damaged and started again, a
    write cut short): older than the limit too, they would otherwise stay on the disk for good,
    counted against everyone's ``examples_mb``."""
    cutoff = (now or time.time()) - classroom.limit("upload_days") * 86400
    gone = 0
    for where in sorted(root().glob("*")):
        if not (where.is_dir() and not where.is_symlink() and _OWNER.fullmatch(where.name)):
            continue
        owner = where.name
        with _locked(owner):
            state = read_state(owner)
            old = {e["id"] for c in state["classes"] for e in c["examples"] if e["added"] < cutoff}
            if old:
                for c in state["classes"]:
                    c["examples"] = [e for e in c["examples"] if e["id"] not in old]
                _write_state(owner, state)
                gone += len(old)
            listed = {e["id"] for c in state["classes"] for e in c["examples"]}
            for path in (where / "examples").glob("*"):
                try:
                    if path.stem in old:
                        path.unlink()
                    elif path.stem not in listed and path.lstat().st_mtime < cutoff:
                        path.unlink()
                        gone += 1
                except OSError:  # a folder there, or gone meanwhile
                    continue
    return gone


PRUNE_EVERY_S = 3600
_PRUNED = {"at": 0.0}
_PRUNE_LOCK = threading.Lock()


def prune_if_due(now: float | None = None) -> int:
    """:func:`prune`, at most once an hour per server process (every page load asks); a full disk
    or a damaged folder never stops the page that asked. Returns how many photos went."""
    now = now or time.time()
    with _PRUNE_LOCK:
        if now - _PRUNED["at"] < PRUNE_EVERY_S:
            return 0
        _PRUNED["at"] = now
    with contextlib.suppress(LabError, OSError):
        return prune(now)
    return 0


def mistakes(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The held-out predictions :func:`train` got wrong: ``{"id", "true", "pred", "prob"}``."""
    return [r for r in result["held_out"] if r["true"] != r["pred"]]


def owners() -> list[dict[str, Any]]:
    """Every owner's classes in one line each, for the teacher."""
    rows = []
    for where in sorted(root().glob("*")):
        if where.is_dir() and _OWNER.fullmatch(where.name):
            state = read_state(where.name)
            n = sum(len(c["examples"]) for c in state["classes"])
            rows.append({"owner": where.name, "classes": [c["name"] for c in state["classes"]], "examples": n})
    return [r for r in rows if r["classes"]]


def delete_all(owner: str | None) -> None:
    shutil.rmtree(folder(owner), ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# training the head


def fit_head(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> nn.Linear:
    """Multinomial logistic regression on features (L-BFGS, full batch, L2): on a few hundred
    rows it converges in tens of milliseconds, with no learning rate to choose."""
    head = nn.Linear(x.shape[1], n_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=100, history_size=10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + L2 * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return head.requires_grad_(False)


def folds_of(labels: torch.Tensor) -> tuple[int, torch.Tensor]:
    """Stratified folds: each class's examples dealt round-robin, in the order they were added,
    so every fold holds every class; k is at most FOLDS and at most the smallest class's size
    (then each fold leaves one example of it out)."""
    counts = torch.bincount(labels)
    k = int(min(FOLDS, counts[counts > 0].min()))
    fold = torch.zeros_like(labels)
    for c in labels.unique():
        where = (labels == c).nonzero().flatten()
        fold[where] = torch.arange(len(where)) % k
    return k, fold


def train(owner: str | None, net=None) -> dict[str, Any]:
    """The head on every example, and how well it does on examples it did not see: each is
    predicted by a head trained on the other folds (k-fold cross-validation). Kept in ``head.pt``."""
    t0 = time.perf_counter()
    net = net or backbone()
    state, ids, y, x = all_features(owner, net)
    classes = [c["name"] for c in state["classes"]]
    counts = torch.bincount(y, minlength=len(classes)) if len(y) else torch.zeros(len(classes), dtype=torch.long)
    if len(classes) < MIN_CLASSES or int(counts.min()) < MIN_EXAMPLES:
        raise TeachError("teach.too_few", classes=MIN_CLASSES, examples=MIN_EXAMPLES)
    k, fold = folds_of(y)
    held = torch.zeros(len(y), len(classes))
    for f in range(k):
        test = fold == f
        held[test] = torch.softmax(fit_head(x[~test], y[~test], len(classes))(x[test]), 1)
    head = fit_head(x, y, len(classes))
    pred = held.argmax(1)
    confusion = torch.zeros(len(classes), len(classes), dtype=torch.long)
    confusion.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    result = {
        "classes": classes,
        "ids": ids,
        "examples": len(ids),
        "folds": k,
        "method": "leave-one-out" if k == int(counts.min()) and k < FOLDS else "k-fold",
        "accuracy": float((pred == y).float().mean()),
        "confusion": confusion.tolist(),
        "held_out": [
            {"id": i, "true": int(t), "pred": int(p), "prob": round(float(held[n, p]), 4)}
            for n, (i, t, p) in enumerate(zip(ids, y.tolist(), pred.tolist()))
        ],
        "train_accuracy": float((head(x).argmax(1) == y).float().mean()),
        "seconds": round(time.perf_counter() - t0, 3),
        "key": backbone_key(net),
        "trained": time.time(),
    }
    blob = {"weight": head.weight.detach().clone(), "bias": head.bias.detach().clone(), "result": result}
    with _locked(owner) as where:
        save_checkpoint(blob, where / "head.pt")
    return result


def _usable(blob: Any) -> bool:
    """A head.pt as :func:`train` writes it: a head.pt of another shape (torn into another valid
    file, a hand edit, another version's) counts as no training, never as a page's traceback."""
    try:
        weight, bias, result = blob["weight"], blob["bias"], blob["result"]
        n = len(result["classes"])
        numbers = ("accuracy", "train_accuracy", "seconds", "trained")
        return (
            isinstance(weight, torch.Tensor)
            and weight.dtype == torch.float32
            and weight.ndim == 2
            and weight.shape[0] == n >= MIN_CLASSES
            and isinstance(bias, torch.Tensor)
            and bias.dtype == torch.float32
            and tuple(bias.shape) == (n,)
            and all(isinstance(c, str) for c in result["classes"])
            and all(isinstance(i, str) for i in result["ids"])
            and all(isinstance(result[k], (int, float)) for k in numbers)
            and all(isinstance(result[k], int) for k in ("examples", "folds"))
            and isinstance(result["method"], str)
            and isinstance(result["key"], str)
            and [len(row) for row in result["confusion"]] == [n] * n
            and all(isinstance(v, int) for row in result["confusion"] for v in row)
            and all(
                isinstance(r["id"], str) and 0 <= r["true"] < n and 0 <= r["pred"] < n and isinstance(r["prob"], float)
                for r in result["held_out"]
            )
        )
    except (KeyError, TypeError, IndexError, AttributeError):
        return False


def trained(owner: str | None, net: predict.Predictor | None = None) -> dict[str, Any] | None:
    """The last head: ``{"head", "result", "stale"}``; stale once the classes or examples changed
    (the page says to train again), or where ``net`` is given and computes other features than the
    head learnt from (other weights, precision or torch); None before any training."""
    try:
        blob = torch.load(folder(owner) / "head.pt", map_location="cpu", weights_only=True)
    except Exception:  # missing, torn, or a pickle weights_only refuses
        return None
    if not _usable(blob):
        return None
    result = blob["result"]
    head = nn.Linear(blob["weight"].shape[1], blob["weight"].shape[0]).requires_grad_(False)
    head.weight.copy_(blob["weight"])
    head.bias.copy_(blob["bias"])
    state = read_state(owner)
    now = ([c["name"] for c in state["classes"]], sorted(e["id"] for c in state["classes"] for e in c["examples"]))
    stale = now != (result["classes"], sorted(result["ids"]))
    if net is not None and result["key"] != backbone_key(net):
        stale = True
    return {"head": head, "result": result, "stale": stale}


def _trained_for(owner: str | None, net: predict.Predictor) -> dict[str, Any]:
    """The last head, for a shot: refused where there is none, or it learnt another backbone's
    features (its numbers would not fit this one's)."""
    done = trained(owner)
    if done is None or done["result"]["key"] != backbone_key(net):
        raise TeachError("teach.not_trained")
    return done


# ---------------------------------------------------------------------------------------------
# a shot, answered


def ask(owner: str | None, source: bytes, filename: str = "shot.jpg", net=None) -> dict[str, Any]:
    """A shot against the trained head: ``prepared`` (the crop), ``probs`` per class in the
    classes' order, ``nearest`` examples by cosine similarity of features ("what the ResNet
    thinks it looks like"), ``seconds`` from bytes to bars. Grad-CAM is :func:`explain`."""
    t0 = time.perf_counter()
    classroom.check_upload("photo", len(source), filename)
    net = net or backbone()
    done = _trained_for(owner, net)
    prepared = net.read(source, filename)
    row = features_of(net, prepared.tensor[None])
    probs = torch.softmax(done["head"](row), 1)[0]
    seconds = round(time.perf_counter() - t0, 3)
    return {
        "prepared": prepared,
        "classes": done["result"]["classes"],
        "probs": [round(float(p), 4) for p in probs],
        "top": int(probs.argmax()),
        "nearest": nearest(owner, row[0], net),
        "stale": done["stale"],
        "seconds": seconds,
    }


def nearest(owner: str | None, row: torch.Tensor, net, k: int = NEAREST) -> list[dict[str, Any]]:
    """The ``k`` examples whose features point the same way as ``row``'s (cosine similarity)."""
    state, ids, labels, feats = all_features(owner, net)
    if not ids:
        return []
    sims = F.cosine_similarity(feats, row[None], dim=1)
    best = sims.topk(min(k, len(ids)))
    names = [c["name"] for c in state["classes"]]
    return [
        {"id": ids[i], "class": names[int(labels[i])], "similarity": round(float(s), 4)}
        for s, i in zip(best.values.tolist(), best.indices.tolist())
    ]


def as_model(net: predict.Predictor, head: nn.Linear) -> nn.Module:
    """The ResNet-50 with ``head`` for its ``fc``, sharing every other module with ``net`` (no
    100 MB copy per student): Grad-CAM's hooks then go through ``net``'s lock."""
    model = nn.Module.__new__(type(net.model))
    model.__dict__ = {**net.model.__dict__, "_modules": {**net.model._modules, "fc": head}}
    return model


def explain(owner: str | None, prepared: torch.Tensor, target: int, net=None, layer: str | None = None) -> np.ndarray:
    """Grad-CAM of class ``target`` over a shot's crop, as an RGB overlay (fp32, as on Predict)."""
    net = net or backbone()
    done = _trained_for(owner, net)
    classes = done["result"]["classes"]
    if not 0 <= target < len(classes):  # trained again meanwhile (another tab), on fewer classes
        raise TeachError("teach.not_trained")
    model = as_model(net, done["head"])
    view = predict.Predictor(
        model,
        classes,
        net.mean,
        net.std,
        net.size,
        3,
        "natural",
        "yours",
        amp=net.amp,
        resize=net.resize,
        _lock=net._lock,
    )
    why = view.explanation(prepared, target, "gradcam", layer)
    return predict.overlay(prepared, why.heat)


# ---------------------------------------------------------------------------------------------
# a run like any other


def save_run(owner: str | None, title: str = "", net=None) -> Path:
    """The trained head on the ImageNet ResNet-50 as a finished run of this owner: ``best.pt``
    with the classes and the backbone's metadata (Predict, export and Transfer read it as they
    read any run's), ``metrics.jsonl`` and ``status.json`` (Train lists it, its held-out accuracy
    as its test accuracy). The same training saved again under the same name is the run already
    saved (a second press of Save: not another 100 MB copy)."""
    from resnet_core import runs

    net = net or backbone()
    done = trained(owner, net)
    if done is None or done["stale"]:
        raise TeachError("teach.not_trained")
    result = done["result"]
    title = clean_name(title) if title and title.strip() else " / ".join(result["classes"])[:MAX_NAME]
    run_owner = None if owner in (None, LOCAL) else owner
    with _locked(owner):  # two presses, two tabs: one run
        for row in runs.list_runs():
            if row["dataset"] == DATASET and row["owner"] == run_owner and row["title"] == title and row["has_best"]:
                with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                    if runs._config(Path(row["path"]))["extra"]["teach"].get("trained") == result["trained"]:
                        return Path(row["path"])
        config = _run_config(result, title, net)
        try:
            run_dir = runs.create(config, owner=run_owner, here=True)
        except OSError as err:
            raise _unsaved(runs.runs_dir(), err) from err
        try:
            _write_run(run_dir, config, done, net)
        except BaseException:  # a full disk: no half run left "running" on Train
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
    return run_dir


def _run_config(result: dict[str, Any], title: str, net: predict.Predictor):
    from resnet_core.config import TrainConfig

    cfg = backbone_cfg()
    teach = {"title": title, "examples": result["examples"], "folds": result["folds"], "fit": "L-BFGS"}
    return TrainConfig(
        dataset=DATASET,
        model=cfg.arch,
        epochs=1,
        pretrained=f"imagenet:{cfg.name}",
        trainable="head",
        augment="none",
        image_size=cfg.input_size,
        amp=net.amp,
        extra={"teach": {**teach, "trained": result["trained"]}},
    )


def _write_run(run_dir: Path, config, done: dict[str, Any], net: predict.Predictor) -> None:
    """best.pt, metrics.jsonl and a finished status.json in ``run_dir`` (:func:`save_run`)."""
    from resnet_core import engine, runs, transfer

    result, head = done["result"], done["head"]
    cfg = backbone_cfg()
    source = transfer.source_weights(config)
    plan = transfer.plan_input(config, 3, cfg.input_size, None, source)
    model, report = transfer.prepare_model(config, len(result["classes"]), plan, source)
    fc = transfer.find_head(model)[1]
    fc.weight.data.copy_(head.weight)
    fc.bias.data.copy_(head.bias)
    labels = torch.tensor([r["true"] for r in result["held_out"]])
    info = data_mod.LabData(config.dataset, "train", result["classes"], 3, cfg.input_size, labels)
    meta = {**engine.checkpoint_meta(config, info, plan, report), "resize": cfg.resize}
    meta["precision"] = precision.resolve("cpu", net.amp).label
    row = {
        "epoch": 1,
        "train_loss": None,
        "train_acc": result["train_accuracy"],
        "test_loss": None,
        "test_acc": result["accuracy"],  # held out by cross-validation: the examples are the only data
        "seconds": result["seconds"],
        "lr": None,
    }
    ckpt = {**meta, "model": model.state_dict(), "optimizer": None, "lr_scheduler": None, "epoch": 0}
    ckpt.update(next_step=1, partial=None, history=[row], metrics={"best_acc": result["accuracy"], **row})
    save_checkpoint(ckpt, run_dir / "best.pt")
    recorder = runs.RunRecorder(run_dir)
    try:
        recorder(
            {
                "type": "start",
                "epochs": 1,
                "steps": 1,
                "device": "cpu",
                "precision": meta["precision"],
                "world_size": 1,
                "start_epoch": 0,
                "start_step": 0,
                "train_images": result["examples"],
                "test_images": result["examples"],
                "image_size": cfg.input_size,
                "transfer": transfer.summary(report),
                "trainable": report["trainable"],
                "parameters": report["total"],
            }
        )
        recorder({"type": "epoch", **row, "best_acc": result["accuracy"], "improved": True})
        end = {"type": "end", "status": "finished", "best_acc": result["accuracy"], "epochs_done": 1}
        recorder({**end, "seconds": result["seconds"], "best_path": str(run_dir / "best.pt")})
    finally:
        recorder.close()
