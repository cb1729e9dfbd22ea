"""The class: each browser's nickname, and what the teacher reads from the runs.

A run records its owner as a hash of the browser's token (``classroom.owner_id``), which tells a
teacher nothing. A student picks a nickname once; it is kept here, by owner, so it follows the
browser (its cookie) and every run it made, also runs made before the name was chosen. Names are
the students' text: pages show them inert, never as Markdown or HTML.

``overview`` (who trained what) and ``leaderboard`` (the best finished run per student on one
dataset, for a class challenge) are plain functions of ``runs.list_runs()`` rows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
import unicodedata
from pathlib import Path
from typing import Any

from resnet_core import classroom
from resnet_core.checkpoints import atomic_write_text
from resnet_core.data import lab_home
from resnet_core.runs import ACTIVE

NAMES_FILE = "nicknames.json"
MAX_LEN = 20


class NicknameError(ValueError):
    """A nickname refused; ``reason`` is "length", "characters", "reserved" or "taken"."""

    def __init__(self, reason: str, name: str) -> None:
        self.reason, self.name = reason, name
        super().__init__(
            {
                "length": f"A nickname has 1 to {MAX_LEN} characters.",
                "characters": "A nickname holds letters (any language), digits, spaces, '-', '_' and '.' only.",
                "taken": f"{name!r} is another student's nickname; choose another.",
                "reserved": f"{name!r} is a word the class's tables use; choose another nickname.",
            }[reason]
        )


def names_path() -> Path:
    return lab_home() / NAMES_FILE


def nicknames() -> dict[str, str]:
    """Owner id → nickname. A missing or damaged file is an empty class, never an error page."""
    try:
        names = json.loads(names_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(names, dict):
        return {}
    return {k: v for k, v in names.items() if isinstance(k, str) and isinstance(v, str)}


# Letters that draw nothing (Hangul fillers, the Hangul half-width filler): a name of them looks blank.
INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0"}
# Names a table already uses for someone else: a student called "no nickname" or "teacher" would
# pass for the anonymous or the teacher.
RESERVED = {"no nickname", "未起昵称", "anonymous", "匿名", "teacher", "老师", "教师", "you", "你", "server", "服务器"}


def _allowed(c: str, previous: str) -> bool:
    """Letters and digits of any script, and a few marks: nothing a page or a chart could render as
    markup, no control or format character. A combining mark only after a letter (Hindi's and
    Thai's vowel signs are parts of their words)."""
    if c in INVISIBLE:
        return False
    if unicodedata.category(c) in ("Mn", "Mc"):
        return previous.isalpha()
    return c.isalnum() or c in " -_."


def same(a: str, b: str) -> bool:
    """One name to a class: case and width aside ("Ana", "ana", "ＡＮＡ")."""
    return unicodedata.normalize("NFKC", a).casefold() == unicodedata.normalize("NFKC", b).casefold()


def clean(name: str) -> str:
    """The nickname as it will be kept: NFC, spaces collapsed; refused with a reason."""
    name = " ".join(unicodedata.normalize("NFC", str(name)).split())
    if not 1 <= len(name) <= MAX_LEN:
        raise NicknameError("length", name)
    if not all(_allowed(c, p) for p, c in zip(" " + name, name)) or not any(c.isalnum() for c in name):
        raise NicknameError("characters", name)
    if any(same(name, r) for r in RESERVED):
        raise NicknameError("reserved", name)
    return name


@contextlib.contextmanager
def _locked():
    """One writer at a time across the server's threads and processes (two students taking the
    same name at once: one gets it, the other is told)."""
    lab_home().mkdir(parents=True, exist_ok=True)
    with open(lab_home() / ".nicknames.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _keep_damaged() -> None:
    """A nicknames file that cannot be read (edited by hand, a disk error) is set aside, not written
    over: every other student's name is in it."""
    path = names_path()
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(names, dict):
            return
    except FileNotFoundError:
        return
    except (OSError, ValueError):
        pass
    path.replace(path.with_name(f"{NAMES_FILE}.damaged-{int(time.time())}"))


def set_nickname(owner: str, name: str) -> str:
    """Give ``owner`` the nickname ``name`` (kept, cleaned); refuse one another owner holds
    (:func:`same`: "Ana" and "ana" on one leaderboard are one student to a class)."""
    name = clean(name)
    with _locked():
        names = nicknames()
        _keep_damaged()
        if any(o != owner and same(n, name) for o, n in names.items()):
            raise NicknameError("taken", name)
        names[owner] = name
        atomic_write_text(names_path(), json.dumps(names, ensure_ascii=False, indent=0))
    return name


def who(owner: str | None, names: dict[str, str]) -> str | None:
    """A run's student as a page shows them: the nickname, else None (the page says "anonymous";
    a run without an owner is the server's shell: the teacher's or the practitioner's)."""
    return names.get(owner) if owner else None


def overview(rows: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """One row per student (owner), most runs first: runs, finished, active (queued or
    training), failed, and their best finished single run (accuracy, dataset, run)."""
    by_owner: dict[str | None, dict[str, Any]] = {}
    for r in rows:
        o = by_owner.setdefault(
            r.get("owner"),
            {
                "owner": r.get("owner"),
                "nickname": who(r.get("owner"), names),
                "runs": 0,
                "finished": 0,
                "active": 0,
                "failed": 0,
                "best_acc": None,
                "best_dataset": None,
                "best_run": None,
            },
        )
        o["runs"] += 1
        state = r.get("state")
        o["finished"] += state == "finished"
        o["active"] += state in ACTIVE
        o["failed"] += state in ("failed", "interrupted")
        acc = r.get("best_acc")
        if state == "finished" and isinstance(acc, (int, float)) and (o["best_acc"] is None or acc > o["best_acc"]):
            o["best_acc"], o["best_dataset"], o["best_run"] = acc, r.get("dataset"), r.get("run")
    return sorted(by_owner.values(), key=lambda o: (-o["runs"], o["nickname"] or "~"))


def leaderboard(rows: list[dict[str, Any]], names: dict[str, str], dataset: str) -> list[dict[str, Any]]:
    """The class challenge on ``dataset``: each student's best finished run (their own: runs
    from the server's shell are not a student's), best accuracy first, ties to the faster run."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        owner, acc = r.get("owner"), r.get("best_acc")
        if not owner or r.get("dataset") != dataset or r.get("state") != "finished":
            continue
        if not isinstance(acc, (int, float)):
            continue
        key = (acc, -(r.get("seconds") or float("inf")))
        if owner not in best or key > best[owner]["_key"]:
            best[owner] = {**r, "_key": key}
    ranked = sorted(best.values(), key=lambda r: r["_key"], reverse=True)
    return [
        {
            "rank": i + 1,
            "owner": r["owner"],
            "nickname": who(r["owner"], names),
            "best_acc": r["best_acc"],
            "model": r.get("model"),
            "run": r.get("run"),
            "epochs": r.get("epochs"),
            "seconds": r.get("seconds"),
        }
        for i, r in enumerate(ranked)
    ]


def challenge_datasets(rows: list[dict[str, Any]]) -> list[str]:
    """Datasets with at least one student's finished run, the most trained first."""
    counts: dict[str, int] = {}
    for r in rows:
        if r.get("owner") and r.get("state") == "finished" and r.get("dataset"):
            counts[r["dataset"]] = counts.get(r["dataset"], 0) + 1
    return sorted(counts, key=lambda d: (-counts[d], d))


def may_see_overview(actor: classroom.Actor | None) -> bool:
    """Who trained what is the teacher's view (or anyone's on a single-user server)."""
    return actor is None or actor.teacher or not classroom.enabled()
