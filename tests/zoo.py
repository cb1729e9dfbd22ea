"""A lab holding every kind of run the app and the command line make, in every state, and the
folders a lab collects that are not runs: the ground a page test walks to prove that no run one
student makes can break a page for everyone (issue 17: a Theory re-run's four runs once broke
the Transfer page for all visitors, in both languages, until someone deleted them).

Built from one real tiny training (its metrics, best.pt and last.pt are copied into the others),
so the files have the shapes the trainer writes; states are set in status.json as the trainer
and the server set them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from resnet_core import runs, strategies, theory
from resnet_core.config import TrainConfig
from tests.conftest import CHECKPOINTS, tiny_config

OTHER = "another-student"  # an owner id that is not the test's browser
RUN_FILES = ("metrics.jsonl", "best.pt", "last.pt")


def _dead_pid() -> int:
    """The pid of a process that has ended: a trainer killed without a word."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _clone(source: Path, config: TrainConfig, state: str, owner: str | None = None, files=RUN_FILES, **status):
    """A run of ``config`` holding ``source``'s files, in ``state``."""
    run_dir = runs.create(config, owner=owner)
    for name in files:
        if (source / name).is_file():
            shutil.copy(source / name, run_dir / name)
    base = {"state": state, "owner": owner, "started": 1.0, "updated": 2.0, "epoch": 1}
    if state in ("finished", "stopped"):
        base |= {"ended": 3.0, "best_acc": 0.42}
    runs.write_status(run_dir, {**base, **status})
    return run_dir


def _edit_config(run_dir: Path, **fields) -> None:
    path = run_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def build() -> dict[str, Path]:
    """Fill ``$RESNET_LAB_HOME`` (the test's lab) with the zoo; returns its runs by role."""
    trained = runs.create(tiny_config(max_train_batches=2, max_test_images=50))
    runs.train_run(trained)  # a real run, finished by the trainer itself (owner: the shell)
    zoo = {"finished-cli": trained}
    alive = {"pid": os.getpid(), "pid_start": runs._start_time(os.getpid())}
    tiny = tiny_config()
    zoo["queued"] = _clone(trained, tiny, "queued", OTHER, files=())
    zoo["running"] = _clone(trained, tiny, "running", OTHER, **alive)
    zoo["stopped"] = _clone(trained, tiny, "stopped", OTHER, error=None)
    zoo["failed"] = _clone(trained, tiny, "failed", OTHER, files=("metrics.jsonl",), error="CUDA out of memory.")
    zoo["interrupted"] = _clone(trained, tiny, "running", OTHER, pid=_dead_pid(), pid_start="1")
    zoo["torn-best"] = _clone(trained, tiny, "finished", OTHER, files=("metrics.jsonl",))
    (zoo["torn-best"] / "best.pt").write_bytes(b"PK\x03\x04 half a zip")  # cut short by a full disk
    zoo["folder"] = _clone(trained, tiny, "finished", OTHER)
    _edit_config(zoo["folder"], dataset="我的照片")  # a folder since deleted, named in Chinese
    # The Theory page's re-run: four runs of one group of kind "degradation".
    for config, state in zip(theory.degradation_configs(epochs=1), ("finished", "running", "queued", "failed")):
        zoo[f"theory-{config.model}"] = _clone(trained, config, state, OTHER, **alive)
    # A transfer comparison: four runs of kind "compare", one of each state.
    chosen = strategies.configs(CHECKPOINTS / "mnist-resnet20.pt", "fashion-sample", k=5)
    for (name, config), state in zip(chosen.items(), ("finished", "running", "queued", "stopped")):
        zoo[f"compare-{name}"] = _clone(trained, config, state, OTHER, **alive)
    # Groups made before groups had a kind (the prefix says it), and one of a kind no page knows.
    legacy = next(iter(chosen.values()))
    zoo["legacy-compare"] = _clone(trained, legacy, "finished", OTHER)
    _edit_config(zoo["legacy-compare"], extra={"group": "compare-0ld", "strategy": "head", "k": 5})
    zoo["legacy-theory"] = _clone(trained, tiny, "finished", OTHER)
    _edit_config(zoo["legacy-theory"], extra={"group": "degradation-0ld"})
    zoo["odd-state"] = _clone(trained, tiny, "paused-by-a-newer-version", OTHER)
    zoo["future-kind"] = _clone(trained, tiny, "finished", OTHER)
    _edit_config(zoo["future-kind"], extra={"group": "x-1", "kind": "something-new", "strategy": 7})
    # The newest run on the server: another student's failed experiment at 42 %. No browser but
    # theirs may open it by default.
    zoo["newest-other"] = _clone(trained, tiny, "finished", OTHER)
    # Folders a lab collects that are not runs.
    base = runs.runs_dir()
    (base / "notes").mkdir()
    (base / "notes" / "README.txt").write_text("the teacher's notes")
    (base / "bad-json").mkdir()
    (base / "bad-json" / "config.json").write_text("{")
    (base / "list-json").mkdir()
    (base / "list-json" / "config.json").write_text("[1, 2]")
    (base / "list-json" / "status.json").write_text("[]")
    (base / ".deleted-20260101-000000-x-1").mkdir()
    (base / "a-file.txt").write_text("not a folder")
    return zoo


def vanished_row(lab: Path) -> dict:
    """A listing's row for a run deleted while a page reads it (the listing is up to a second old)."""
    path = lab / "runs" / "20990101-000000-deleted-meanwhile"
    return {
        "run": path.name,
        "path": str(path),
        "checkpoint": str(path / "best.pt"),
        "dataset": "mnist-sample",
        "model": "mini_residual",
        "epochs": 1,
        "state": "finished",
        "epoch": 1,
        "best_acc": 0.5,
        "seconds": 1.0,
        "has_best": True,
        "owner": OTHER,
        "group": None,
        "kind": None,
    }
