"""The checkpoints a browser can open, and the one it opens first.

A class shares one server, so the newest checkpoint on it is usually another student's, often a
half-trained experiment: a page that defaulted to it opened a 42 % model for everyone after one
student's failed run (issue 17). Each browser therefore opens, in this order:

1. its own newest finished run (a single training: a comparison's or the Theory page's runs are
   experiments, kept out of the default). Also without classroom mode: a class may meet on a
   server without a teacher token, and a browser is all that tells one student from another; a
   practitioner's other browser opens what they trained from the command line (3.), and any run
   is one choice away in the list;
2. the checkpoint the teacher pinned for the class (``pin``);
3. the newest finished run started from the server's shell (the command line: the teacher's or,
   on a single-user server, the practitioner's own);
4. the shipped preset (``resnet_core/shipped/``), so a fresh server answers photos at once.

The shipped checkpoints were trained by ``scripts/build_photo_fixtures.py``: each bundled
sample's default preset, and a ResNet-20 on digits (5 epochs) for what needs a network with
stages; their rows look like runs' rows (``kind`` is "shipped").
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from resnet_core import classroom, runs
from resnet_core.checkpoints import atomic_write_text, load_checkpoint
from resnet_core.data import lab_home

SHIPPED = Path(__file__).parent / "shipped"
PRESET = "mnist-sample"  # the shipped checkpoint a browser with nothing else opens
PIN_FILE = "pinned.json"


@functools.lru_cache(maxsize=16)
def _shipped_row(path: str, mtime_ns: int) -> dict[str, Any]:
    ckpt = load_checkpoint(path)  # about 1 MB each: read once per file version, not per page run
    return {
        "run": Path(path).stem,
        "path": str(Path(path).parent),
        "checkpoint": path,
        "dataset": ckpt["dataset"],
        "model": ckpt["arch"],
        "epochs": ckpt["config"].get("epochs"),
        "epoch": ckpt.get("epoch"),
        "state": "finished",
        "best_acc": ckpt["metrics"]["best_acc"],
        "seconds": None,
        "has_best": True,
        "owner": None,
        "group": None,
        "kind": "shipped",
    }


def shipped() -> list[dict[str, Any]]:
    """The checkpoints shipped with the package, the preset first."""
    paths = sorted(SHIPPED.glob("*.pt"), key=lambda p: (p.stem != PRESET, p.stem))
    return [dict(_shipped_row(str(p), p.stat().st_mtime_ns)) for p in paths]


def checkpoints(rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every checkpoint a page can open: runs with a best.pt (``rows``, default: all runs now),
    newest first, then the shipped ones. Each row's ``checkpoint`` is the file's path."""
    rows = runs.list_runs() if rows is None else rows
    return [r for r in rows if r.get("has_best")] + shipped()


def pinned() -> str | None:
    """The checkpoint the teacher pinned for the class, while its file exists."""
    try:
        path = json.loads((lab_home() / PIN_FILE).read_text(encoding="utf-8")).get("checkpoint")
    except (OSError, ValueError, AttributeError):
        return None
    return path if isinstance(path, str) and Path(path).is_file() else None


def pin(checkpoint: str | Path | None, actor: classroom.Actor | None = None) -> None:
    """Make ``checkpoint`` the class's default (None unpins). In classroom mode only the teacher may."""
    if classroom.enabled() and actor is not None and not actor.teacher:
        raise classroom.ClassroomError("classroom.teacher_only")
    value = None if checkpoint is None else str(checkpoint)
    if value is not None and not Path(value).is_file():
        raise FileNotFoundError(f"{Path(value).parent.name} has no checkpoint to pin.")
    lab_home().mkdir(parents=True, exist_ok=True)
    atomic_write_text(lab_home() / PIN_FILE, json.dumps({"checkpoint": value}))


def default(rows: list[dict[str, Any]], owner: str | None, pinned_path: str | None = None) -> int:
    """Index in ``rows`` (:func:`checkpoints`) of the checkpoint a browser of ``owner`` opens
    first (see the module's docstring); never another student's run."""

    def first(test) -> int | None:
        return next((i for i, r in enumerate(rows) if test(r)), None)

    def finished(r: dict) -> bool:
        return r.get("kind") is None and r.get("state") == "finished"

    choices = (
        lambda r: owner is not None and r.get("owner") == owner and finished(r),
        lambda r: pinned_path is not None and r.get("checkpoint") == pinned_path,
        lambda r: r.get("owner") is None and finished(r),
        lambda r: r.get("kind") == "shipped" and r.get("run") == PRESET,
        lambda r: r.get("kind") == "shipped",
    )
    for test in choices:
        index = first(test)
        if index is not None:
            return index
    return 0
