"""A classroom on one server: who may act on a run, and the limits a teacher sets.

Every browser session owns the runs it starts. With ``RESNET_LAB_TEACHER_TOKEN`` set on the
server, a student sees everyone's runs but may stop, resume or delete only their own, and the
session limits below apply; a session that enters the token in the sidebar acts on all runs
and is exempt. Without the variable the server is a single-user app: anyone may act on any run.
Upload limits apply in both modes. The command line is the server's own shell: never limited.

Limits are environment variables with safe defaults, read on every call so a teacher can see
them on the home page; ``limits()`` lists them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path

from resnet_core.messages import LabError

TEACHER_ENV = "RESNET_LAB_TEACHER_TOKEN"
FOLDERS_ROOT_ENV = "RESNET_LAB_FOLDERS_ROOT"

# name -> (environment variable, default, unit). Defaults: a phone photo is 2-8 MB, resnet50's
# weights are 98 MB, and 300 M-parameter-epochs lets resnet20 train for hundreds of epochs but
# resnet152 (60 M parameters) for 5, so one student cannot hold a 2-core server for hours.
LIMITS = {
    "queued_per_session": ("RESNET_LAB_MAX_QUEUED_PER_SESSION", 2, "runs"),
    # A browser that clears its cookies is a new session; this cap holds whatever the sessions.
    "queued_total": ("RESNET_LAB_MAX_QUEUED", 40, "runs"),
    "run_cost": ("RESNET_LAB_MAX_RUN_COST", 300, "M parameters × epochs"),
    "photo_mb": ("RESNET_LAB_MAX_PHOTO_MB", 25, "MB"),
    "weights_mb": ("RESNET_LAB_MAX_WEIGHTS_MB", 200, "MB"),
    "zip_mb": ("RESNET_LAB_MAX_ZIP_MB", 500, "MB"),
    # A student's zip dataset stays until the teacher deletes it (never pruned behind their back),
    # so the disk all folder datasets take in the lab is capped instead: 20 of the largest zips.
    "datasets_mb": ("RESNET_LAB_MAX_DATASETS_MB", 10_000, "MB"),
    "upload_days": ("RESNET_LAB_UPLOAD_DAYS", 7, "days"),
    # "Your classes" (resnet_core.teach): a student's own classes and photos. An example is a
    # 224 px JPEG of ~15 KB, so 30 students x 10 classes x 50 examples stay near 225 MB.
    "classes_per_student": ("RESNET_LAB_MAX_CLASSES", 10, "classes"),
    "examples_per_class": ("RESNET_LAB_MAX_EXAMPLES", 50, "photos"),
    "examples_mb": ("RESNET_LAB_MAX_EXAMPLES_MB", 1_000, "MB"),
}


class ClassroomError(LabError, PermissionError):
    """An action a classroom's rules refuse; the message says why and what is allowed."""


class NotYours(ClassroomError):
    """A run that belongs to another student (as opposed to a limit reached)."""


@dataclass(frozen=True)
class Actor:
    """Who asks: a browser session (``owner`` is a hash of its token) or the teacher.

    ``None`` in place of an Actor means the server's own shell (CLI), which may do anything.
    """

    owner: str | None = None
    teacher: bool = False


def enabled() -> bool:
    """Classroom mode: a teacher token is set on the server."""
    return bool(os.environ.get(TEACHER_ENV))


def limit(name: str) -> int:
    env, default, _ = LIMITS[name]
    try:
        return max(1, int(float(os.environ.get(env, default))))
    except (ValueError, OverflowError):
        return default  # a typo in the server's environment must not take the class down


def limits() -> list[dict]:
    """Every limit with its variable, value and unit, for the home page."""
    return [
        {"limit": name, "variable": env, "value": limit(name), "unit": unit}
        for name, (env, _default, unit) in LIMITS.items()
    ]


def owner_id(session_token: str) -> str:
    """What a run records as its owner: a hash, so a listing never reveals a session's token."""
    return hashlib.sha256(session_token.encode()).hexdigest()[:16]


def is_teacher_token(token: str | None) -> bool:
    expected = os.environ.get(TEACHER_ENV)
    return bool(expected and token) and hmac.compare_digest(token.encode(), expected.encode())


def may_act(actor: Actor | None, owner: str | None) -> bool:
    """Stop, resume or delete a run owned by ``owner``."""
    if actor is None or actor.teacher or not enabled():
        return True
    return owner is not None and owner == actor.owner


def check_may_act(actor: Actor | None, owner: str | None, run_name: str) -> None:
    if not may_act(actor, owner):
        raise NotYours("classroom.not_yours", run=run_name)


def run_cost(config) -> float:
    """Million parameters times epochs: the size of a run, the way a teacher thinks of it."""
    # Imported here: imaging, the leaf every photo passes through, reads its byte limit from this
    # module, and a leaf must not load the model registry to learn a number.
    import torch

    from resnet_core import models

    with torch.device("meta"):  # shapes only: resnet152 "builds" in milliseconds, with no memory
        model = models.get_model(config.model, num_classes=10, in_channels=3, image_size=32)
    return models.count_parameters(model) / 1e6 * config.epochs


def check_launch(config, actor: Actor | None, active_runs_of_actor: int, active_runs: int = 0) -> None:
    """Refuse a run that breaks a session or server limit (classroom mode, students only)."""
    if actor is None or actor.teacher or not enabled():
        return
    check_queue(actor, active_runs_of_actor, active_runs)
    cost, most = run_cost(config), limit("run_cost")
    if cost > most:
        fit = max(1, int(most // (cost / config.epochs)))
        sizes = {"cost": f"{cost:,.0f}", "most": f"{most:,}", "fit": fit}
        raise ClassroomError("classroom.run_cost", model=config.model, epochs=config.epochs, **sizes)


def check_queue(actor: Actor | None, active_runs_of_actor: int, active_runs: int) -> None:
    """Refuse one more queued run past the session's or the server's cap (a launch or a resume)."""
    if actor is None or actor.teacher or not enabled():
        return
    if active_runs >= limit("queued_total"):
        raise ClassroomError("classroom.server_queue", active=active_runs, most=limit("queued_total"))
    queued = limit("queued_per_session")
    if active_runs_of_actor >= queued:
        raise ClassroomError("classroom.session_queue", active=active_runs_of_actor, most=queued)


def check_upload(kind: str, size_bytes: int, name: str = "The file") -> None:
    """``kind``: "photo", "weights" or "zip"."""
    most = limit(f"{kind}_mb")
    if size_bytes > most * 1024**2:
        raise ClassroomError(f"classroom.upload.{kind}", name=name, size=f"{size_bytes / 1024**2:,.1f}", most=most)


def check_dataset_room(used_bytes: int, adding_bytes: int, name: str = "The zip") -> None:
    """Refuse a zip whose images would take the lab's folder datasets past ``datasets_mb``."""
    most = limit("datasets_mb")
    if used_bytes + adding_bytes > most * 1024**2:
        total = f"{(used_bytes + adding_bytes) / 1024**2:,.0f}"
        raise ClassroomError("classroom.datasets_full", name=name, total=total, most=f"{most:,}")


def prune_uploads(folder: Path, now: float | None = None) -> int:
    """Delete uploads older than the limit in days; return how many went."""
    if not folder.is_dir():
        return 0
    cutoff = (now or time.time()) - limit("upload_days") * 86400
    gone = 0
    for path in folder.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                gone += 1
        except OSError:  # another session pruned it first
            continue
    return gone


def folders_root() -> Path | None:
    """The only tree a browser may register folders from; None hides the field."""
    root = os.environ.get(FOLDERS_ROOT_ENV)
    return Path(root).resolve() if root else None


def check_server_folder(path: str) -> Path:
    """A directory under ``RESNET_LAB_FOLDERS_ROOT``, resolved (links and ``..`` cannot leave it)."""
    root = folders_root()
    if root is None:
        raise ClassroomError("classroom.folders_off", env=FOLDERS_ROOT_ENV)
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise ClassroomError("classroom.outside_root", root=str(root))  # the page shows the root: a str
    return target
