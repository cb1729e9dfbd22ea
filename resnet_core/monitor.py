"""Watching runs cheaply, for a page server with a classroom on the train page.

Measured before this module (2 CPU cores, one run training): each browser's live panel reread
the whole ``metrics.jsonl`` of its run every second, listed every run twice and took the
dispatch lock, about 0.7 CPU-s per poll, so ten browsers saturated the server. Here:

- ``MetricsTail`` reads ``metrics.jsonl`` from the byte offset it reached last time, so a poll
  parses only the lines appended since (a half-written last line waits for the next poll);
- ``RunSummary`` keeps what the page draws (epochs, the last batch, a downsampled loss curve,
  how many trainers started) instead of the events themselves;
- ``Monitor`` holds one summary per run for the whole process and refreshes a run, and the
  list of runs, at most once per ``max_age`` seconds however many browsers ask.

Nothing here imports streamlit: the page server keeps one ``Monitor`` in ``st.cache_resource``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from resnet_core import runs


class Curve:
    """A streaming (x, y) series kept under ``max_points`` by averaging neighbours.

    When the series outgrows ``max_points`` every two neighbouring points become their mean,
    and the points still to come are averaged in groups twice as large. A plot of 300 points
    shows the shape of 100,000 batches; a browser drawing them all would not.
    """

    def __init__(self, max_points: int = 300) -> None:
        self.max_points = max_points
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.width = 1  # raw points per kept point, for the points still to come
        self._pending: list[tuple[float, float]] = []

    def add(self, x: float, y: float) -> None:
        self._pending.append((x, y))
        if len(self._pending) < self.width:
            return
        self.xs.append(self._pending[-1][0])
        self.ys.append(sum(p[1] for p in self._pending) / len(self._pending))
        self._pending = []
        if len(self.xs) > self.max_points:
            pairs = range(0, len(self.xs) - 1, 2)
            ys = [(self.ys[i] + self.ys[i + 1]) / 2 for i in pairs]
            xs = [self.xs[i + 1] for i in pairs]
            if len(self.xs) % 2:  # an odd point out stays as it is
                xs.append(self.xs[-1])
                ys.append(self.ys[-1])
            self.xs, self.ys, self.width = xs, ys, self.width * 2

    def points(self) -> tuple[list[float], list[float]]:
        """The kept points, and a partial group averaged on the fly so the newest batch shows."""
        if not self._pending:
            return list(self.xs), list(self.ys)
        tail_y = sum(p[1] for p in self._pending) / len(self._pending)
        return [*self.xs, self._pending[-1][0]], [*self.ys, tail_y]


class MetricsTail:
    """``metrics.jsonl`` read by offset. A file replaced or cut shorter is read again from 0."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.inode: int | None = None

    def read_new(self) -> tuple[list[dict[str, Any]], bool]:
        """(events appended since the last call, whether the file restarted from scratch)."""
        try:
            stat = self.path.stat()
        except OSError:
            return [], False
        restarted = self.inode is not None and (stat.st_ino != self.inode or stat.st_size < self.offset)
        if restarted or self.inode is None:
            self.offset, self.inode = 0, stat.st_ino
        if stat.st_size == self.offset:
            return [], restarted
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(stat.st_size - self.offset)
        end = chunk.rfind(b"\n") + 1  # complete lines only; the rest is still being written
        self.offset += end
        events = []
        for line in chunk[:end].splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events, restarted


class RunSummary:
    """What the train page draws for one run, updated from new events only."""

    def __init__(self, run_dir: Path, max_points: int = 300) -> None:
        self.run_dir = Path(run_dir)
        self.max_points = max_points
        self.config = json.loads((self.run_dir / "config.json").read_text())
        self.tail = MetricsTail(self.run_dir / "metrics.jsonl")
        self._reset()

    def _reset(self) -> None:
        self.epochs: list[dict[str, Any]] = []
        self.curve = Curve(self.max_points)
        self.last_batch: dict[str, Any] | None = None
        self.starts = 0  # "start" events: one per trainer that began (or resumed) this run
        self.ended: dict[str, Any] | None = None
        self.features: dict[str, Any] | None = None  # a linear probe's last "features" event (resnet_core.features)

    def update(self) -> bool:
        """Fold in the events appended since the last update; whether anything was new."""
        events, restarted = self.tail.read_new()
        if restarted:
            self._reset()
        for e in events:
            kind = e.get("type")
            if kind == "batch":
                self.last_batch = e
                for x, loss in runs.batch_points(e):
                    self.curve.add(x, loss)
            elif kind == "epoch":
                self.epochs.append(e)
            elif kind == "start":
                self.starts += 1
                self.ended = None
            elif kind == "features":
                self.features = e
            elif kind == "end":
                self.ended = e
        return bool(events) or restarted


class Monitor:
    """One per page-server process: shared, throttled views of every run and of the list of runs.

    Thread-safe: Streamlit runs each browser's script in its own thread.
    """

    def __init__(self, max_age: float = 1.0, max_points: int = 300, dispatch_every: float = 5.0) -> None:
        self.max_age, self.max_points, self.dispatch_every = max_age, max_points, dispatch_every
        self._lock = threading.Lock()
        self._summaries: dict[str, RunSummary] = {}
        self._views: dict[str, tuple[float, dict[str, Any]]] = {}  # path -> (when, view)
        self._rows: tuple[float, str, list[dict[str, Any]]] = (0.0, "", [])  # (when, runs folder, rows)
        self._dispatched = 0.0

    def runs(self, include: str | Path | None = None) -> list[dict[str, Any]]:
        """``runs.list_runs()``, at most ``max_age`` old; read again if ``include`` is missing from it."""
        base = str(runs.runs_dir())  # keyed by folder: RESNET_LAB_HOME can change (tests do)
        with self._lock:
            when, where, rows = self._rows
            stale = time.monotonic() - when > self.max_age or where != base
            if stale or (include is not None and str(include) not in {r["path"] for r in rows}):
                rows = runs.list_runs()
                self._rows = (time.monotonic(), base, rows)
            return rows

    def progress(self, run_dir: str | Path) -> dict[str, Any]:
        """What ``runs.progress`` returns, with the loss curve downsampled; at most ``max_age`` old.

        Also ``starts`` (trainers that began this run) and ``version``, which changes whenever
        anything the page shows has changed.
        """
        key = str(run_dir)
        with self._lock:
            cached = self._views.get(key)
            if cached and time.monotonic() - cached[0] <= self.max_age:
                return cached[1]
            summary = self._summaries.get(key)
            if summary is None:
                summary = self._summaries[key] = RunSummary(Path(key), self.max_points)
            summary.update()
        status = runs.read_status(Path(key))
        position = None
        if status.get("state") == "queued":
            waiting = [r["path"] for r in reversed(self.runs(include=key)) if r["state"] == "queued"]
            position = waiting.index(key) + 1 if key in waiting else None
        xs, ys = summary.curve.points()
        view = {
            "run": Path(key).name,
            "status": status,
            "config": summary.config,
            "epochs": list(summary.epochs),
            "batch_step": xs,
            "batch_loss": ys,
            "last_batch": summary.last_batch,
            "steps": summary.last_batch["steps"] if summary.last_batch else None,
            "queue_position": position,
            "starts": summary.starts,
            "features": summary.features,
            "version": (status.get("updated"), status.get("state"), summary.tail.offset, position),
        }
        with self._lock:
            self._views[key] = (time.monotonic(), view)
        return view

    def dispatch_if_due(self) -> None:
        """Start queued runs whose slot was freed without a dispatch (a trainer that was killed).

        Launches and finishing trainers dispatch by themselves; this safety net runs at most
        once per ``dispatch_every`` seconds for the whole server, not once per browser poll.
        """
        with self._lock:
            if time.monotonic() - self._dispatched < self.dispatch_every:
                return
            self._dispatched = time.monotonic()
        if any(r["state"] == "queued" for r in self.runs()):
            runs.dispatch()

    def forget(self, run_dir: str | Path) -> None:
        """Drop a deleted run's summary."""
        with self._lock:
            self._summaries.pop(str(run_dir), None)
            self._views.pop(str(run_dir), None)
            self._rows = (0.0, "", [])
