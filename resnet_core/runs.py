"""A run is a directory; the truth about it is on disk, so any browser or process can read it.

    <lab>/runs/20261122-210455-mnist-sample-resnet20/
        config.json    the TrainConfig, written before the process starts
        status.json    state (queued/running/stopped/finished/failed), pid, GPUs, progress; replaced atomically
        metrics.jsonl  one JSON event per line: start, batch, epoch, end
        best.pt        weights of the best test accuracy so far
        last.pt        everything needed to resume, after every epoch and on stop
        train.log      the process's own output
        STOP           present when a stop was requested
        failure.json   4 KiB reserved when training starts: why it failed, when status.json could not say

``launch`` starts ``python -m resnet_core train --run-dir DIR`` as its own process group
(``torchrun`` when asked for several processes), so a closed browser or a restarted app
does not end it; ``stop`` writes STOP and sends SIGTERM, and the engine stops after the
current batch, saving ``last.pt``. A trainer hands its slot to the next queued run as it
ends; one killed outright (SIGKILL, the OOM killer) cannot, so the page server runs
``watch``, which notices the dead trainer within seconds and starts the next run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from resnet_core import classroom, engine, stopping
from resnet_core.checkpoints import CheckpointError, atomic_write_text
from resnet_core.config import TrainConfig
from resnet_core.data import lab_home
from resnet_core.messages import LabError, Message, message

ACTIVE = ("queued", "starting", "resuming", "running")  # not yet ended
PAIR = "pair"  # the group kind of a plain net and its residual twin trained side by side
STARTED = ("starting", "resuming", "running")  # holding a training slot
ORPHAN_AFTER_S = 300  # a "starting" run with no pid this long after its last write was never spawned
RESUMABLE = ("stopped", "failed", "interrupted")  # with a last.pt, these can continue
ENDED = ("finished", *RESUMABLE)  # a trainer ran and stopped: its events are all there are
STATES = (*ACTIVE, *RESUMABLE, "finished", "unknown")
_HELD = threading.local()  # how deep this thread is inside transitions()
# What torchrun sets in each rank; a run that rank 0 dispatches as it ends must not inherit it,
# or its trainer would call init_process_group and wait for ranks that never come.
TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE")
TORCHRUN_ENV += ("ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")
STATUS_EVERY_S = 1.0  # how often batch events refresh status.json; the UI polls about this fast
WATCH_EVERY_S = 5.0  # how soon the watchdog notices a killed trainer; idle, a tick costs ~5 µs per run folder
NOTE = "failure.json"
NOTE_BYTES = 4096  # one file-system block, written when training starts and overwritten in place
LOW_DISK_BYTES = 64 * 2**20  # below this a trainer cannot save a checkpoint (a ResNet-18 last.pt is ~90 MB)
KILLED = Message("run.killed")
log = logging.getLogger(__name__)


class RunError(LabError, RuntimeError):
    """A run that cannot be resumed, deleted or trained now; the message says why and what to do."""


def _failure(error: str, cause: BaseException | None = None) -> dict[str, Any]:
    """Status fields for why a run ended: the English sentence, and the key and values of it (or of
    the core's refusal that caused it), so a page says it in the visitor's language, quoting no
    folder of the lab's (``ui.common.error_text``)."""
    keyed = message(error) or (message(cause) if cause is not None else None)
    return {"error": str(error), "error_message": keyed.to_json() if keyed else None}


def failure(status: dict[str, Any]) -> str:
    """Why a run ended, as recorded: its keyed :class:`Message` where there is one, else the English."""
    with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError, IndexError):
        if status.get("error_message"):  # written by this version; a key since renamed reads as English
            return Message.from_json(status["error_message"])
    return status.get("error") or ""


def runs_dir() -> Path:
    return lab_home() / "runs"


def max_concurrent() -> int:
    """Training processes allowed at once: ``$RESNET_LAB_MAX_RUNS``, else one per GPU, else 1.

    A classroom of 30 browsers on a 2-core server must not start 30 trainings: the rest queue.
    """
    configured = os.environ.get("RESNET_LAB_MAX_RUNS")
    if configured:
        return max(1, int(configured))
    return max(1, len(server_gpus()))


def server_gpus() -> list[str]:
    """The GPUs runs are placed on, named as a child's ``CUDA_VISIBLE_DEVICES`` names them; [] without CUDA.

    The server's own ``CUDA_VISIBLE_DEVICES`` is mapped through ("2,3": runs get "2" and "3"),
    since a child's list is read against the machine's, not its parent's. A trainer sees only
    its own GPU, yet hands the next queued run a GPU as it ends (``train_run``): ``spawn`` gives
    it the server's list in ``RESNET_LAB_GPUS``, or it would place runs (and count slots) as if
    the server had one GPU.
    """
    if not torch.cuda.is_available():
        return []
    shared = os.environ.get("RESNET_LAB_GPUS")
    if shared:
        return shared.split(",")
    count = torch.cuda.device_count()
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    # CUDA stops at the first entry it cannot use, so the first ``count`` are the ones it shows.
    names = [d.strip() for d in inherited.split(",")] if inherited is not None else [str(i) for i in range(count)]
    return names[:count]


def gpu_load() -> dict[str, int]:
    """How many training runs hold each of ``server_gpus()``; call under ``transitions()``.

    A run holds the GPUs ``spawn`` recorded in its status (``gpus``) while it is starting or
    running; one that ended, or whose trainer died (``read_status`` says interrupted), holds none.
    """
    load = dict.fromkeys(server_gpus(), 0)
    if load:
        for row in list_runs():
            if row["state"] in STARTED:
                for gpu in read_status(Path(row["path"])).get("gpus") or []:
                    if gpu in load:
                        load[gpu] += 1
    return load


@contextlib.contextmanager
def transitions():
    """The one lock every status transition takes: launch, dispatch, stop, resume, finish, fail.

    A file lock (``flock``), so it holds across the page server's threads, the trainers and the
    CLI. Re-entrant within a thread (``dispatch`` inside ``launch``), since a second ``flock`` on
    a new descriptor in the same thread would wait for itself. Readers take no lock: status.json
    is replaced atomically, so a reader sees the old state or the new one.
    """
    if getattr(_HELD, "depth", 0):
        _HELD.depth += 1
        try:
            yield
        finally:
            _HELD.depth -= 1
        return
    base = runs_dir()
    base.mkdir(parents=True, exist_ok=True)
    with open(base / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _HELD.depth = 1
        try:
            yield
        finally:
            _HELD.depth = 0


def foreground_status() -> dict[str, Any]:
    """The status of a run this process trains itself (the command line, in the foreground):
    already started, with this pid, so no dispatcher (a page, the watchdog) starts it as well."""
    return {"state": "starting", "created": time.time(), "pid": os.getpid(), "pid_start": _start_time(os.getpid())}


def create(config: TrainConfig, owner: str | None = None, nproc: int = 1, here: bool = False) -> Path:
    """Make a new run directory holding ``config.json`` and a queued status (``here``: trained
    by this process, see :func:`foreground_status`)."""
    config.validate()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = runs_dir() / f"{stamp}-{config.dataset}-{config.model}"
    run_dir, n = base, 1
    while True:
        try:
            run_dir.mkdir(parents=True)
            break
        except FileExistsError:
            n += 1
            run_dir = base.with_name(f"{base.name}-{n}")
    config.run_dir = str(run_dir)
    config.save(run_dir / "config.json")
    status = foreground_status() if here else {"state": "queued", "created": time.time()}
    write_status(run_dir, {**status, "owner": owner, "nproc": nproc})
    return run_dir


def launch(config: TrainConfig, nproc: int = 1, actor: classroom.Actor | None = None) -> Path:
    """Create a run and queue it; it starts at once when a training slot is free.

    ``actor`` is the browser session asking (None: the server's shell); in classroom mode its
    limits are checked, and the run records it as the owner.
    """
    config.validate()
    owner = actor.owner if actor else None
    with transitions():
        rows = list_runs()
        classroom.check_launch(config, actor, *_active_runs(owner, rows))
        run_dir = create(config, owner=owner, nproc=nproc)
        # With every slot taken (a class pressing Start together) the new run only queues: no second
        # listing under the lock. A finishing run dispatches the queue.
        if slots_taken(rows) < max_concurrent():
            dispatch()
    return run_dir


def queue_position(run_dir: Path) -> int | None:
    """1 for the next run to start, None when the run is not waiting."""
    waiting = [Path(r["path"]) for r in reversed(list_runs()) if r["state"] == "queued"]
    return waiting.index(Path(run_dir)) + 1 if Path(run_dir) in waiting else None


def dispatch() -> list[Path]:
    """Start queued runs, oldest first, while fewer than ``max_concurrent()`` are training.

    Called after every launch, resume and finished run, and by the dashboard as it polls; a
    lock file makes concurrent callers (many browsers, a finishing run) start each run once.
    """
    started = []
    with transitions():
        rows = list_runs()
        free = max_concurrent() - slots_taken(rows)
        pairs = {r["group"] for r in rows if r.get("kind") == PAIR and r["state"] in STARTED}
        waiting = False  # the queue's head waits for a slot or GPUs: nothing overtakes it...
        for row in reversed(rows):  # list_runs is newest first
            if row["state"] != "queued":
                continue
            joins = row.get("kind") == PAIR and row["group"] in pairs  # ...but a twin joins its pair's slot
            if not joins and (waiting or free <= 0):
                waiting = True
                continue  # not break: a twin queued behind another student's pair still joins its own
            status = _raw_status(row["path"])
            nproc = status.get("nproc", 1)
            if not joins and _waits_for_gpus(nproc):
                waiting = True
                continue
            halves = row.get("kind") == PAIR and _twin_active(row, rows)  # alone (its twin ended): every core
            twin_gpus = _twin_gpus(row, rows) if joins else None
            try:
                spawn(Path(row["path"]), resume=bool(status.get("resume")), nproc=nproc, pair=halves, gpus=twin_gpus)
            except OSError:
                continue  # spawn marked it failed: its slot goes to the next run
            started.append(Path(row["path"]))
            if row.get("kind") == PAIR:
                pairs.add(row["group"])
            if not joins:
                free -= 1
    return started


def _twin_gpus(row: dict[str, Any], rows: list[dict[str, Any]]) -> list | None:
    """The GPUs a started twin of ``row``'s pair holds (None: on the CPU, or not known yet)."""
    for r in rows:
        if r["group"] == row["group"] and r["path"] != row["path"]:
            gpus = _raw_status(r["path"]).get("gpus")
            if gpus:
                return gpus
    return None


def _twin_active(row: dict[str, Any], rows: list[dict[str, Any]]) -> bool:
    """Whether another run of ``row``'s pair is queued or training (its twin starts with it)."""
    return any(r["group"] == row["group"] and r["path"] != row["path"] and r["state"] in ACTIVE for r in rows)


def slots_taken(rows: list[dict[str, Any]]) -> int:
    """Training slots the started runs of ``rows`` hold: one each, and one per side-by-side pair
    (its two trainers share the slot, and on a CPU its cores: ``spawn``)."""
    started = [r for r in rows if r["state"] in STARTED]
    pairs = {r["group"] for r in started if r.get("kind") == PAIR}
    return sum(r.get("kind") != PAIR for r in started) + len(pairs)


def reconcile() -> list[Path]:
    """Write down the end of runs whose trainer died without saying so (``read_status``'s verdict).

    Until then status.json still says "running", so every reader works the death out again and
    the watchdog could never tell an idle server from a busy one. On a full disk the verdict
    cannot be written; readers still work it out.
    """
    ended = []
    with transitions():
        for run_dir in _unended():
            status = read_status(run_dir)
            if status["state"] in ACTIVE:
                continue
            with contextlib.suppress(OSError, CheckpointError):
                said = {k: status.get(k) for k in ("error", "error_message")} if "error" in status else _failure(KILLED)
                update_status(run_dir, state=status["state"], ended=time.time(), **said)
                ended.append(run_dir)
    return ended


def sweep() -> list[Path]:
    """One watchdog tick: when any run has not ended, reconcile dead trainers and dispatch.

    Idle (every run ended), it only stats each status.json (``_state``): no lock, no /proc,
    no config.json.
    """
    if not _unended():
        return []
    with transitions():
        reconcile()
        return dispatch()


_STATES: dict[str, tuple[tuple[int, int, int], str | None]] = {}  # status.json -> (its stat, its state)
SETTLED_NS = 2 * 10**9  # a status.json older than this is cached by its stat (see ``_state``)


def _unended() -> list[Path]:
    """Run folders whose status.json says queued, starting or running (their trainer may be dead).

    A status.json is parsed again only when its stat changed: a tick over 200 ended runs is 200
    ``stat`` calls, ~1 ms (measured: 8 ms when each was read and parsed).
    """
    try:
        entries = list(os.scandir(runs_dir()))
    except OSError:  # no runs folder yet
        return []
    unended = []
    for entry in entries:
        if not entry.name.startswith(".") and _state(os.path.join(entry.path, "status.json")) in ACTIVE:
            unended.append(Path(entry.path))
    return unended


def _state(path: str) -> str | None:
    """The state in a status.json, parsed only when its (inode, size, mtime) is new.

    A replaced file can get the inode just freed, and mtime ticks in milliseconds, so two
    writes in one tick can share all three; as git does with its index ("racy git"), only a file
    older than SETTLED_NS is cached, since any later write has a later mtime.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _STATES.get(path)
    if cached is not None and cached[0] == key:
        return cached[1]
    state = _raw_status(Path(path).parent).get("state")
    if time.time_ns() - st.st_mtime_ns > SETTLED_NS:
        if len(_STATES) > 4096:
            _STATES.clear()
        _STATES[path] = (key, state)
    return state


class Watchdog(threading.Thread):
    """A daemon thread that runs ``sweep`` every ``interval_s`` seconds until ``stop``."""

    def __init__(self, interval_s: float) -> None:
        super().__init__(name="resnet-lab-watchdog", daemon=True)
        self.interval_s = interval_s
        self._stopped = threading.Event()
        self._last_error = ""

    def run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                sweep()
            except Exception as err:  # a dead watchdog would stall the queue again: report and go on
                if str(err) != self._last_error:  # once, not every tick of a lasting problem (a full disk)
                    log.warning("run watchdog: %s", err, exc_info=True)
                self._last_error = str(err)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


_WATCHDOG: Watchdog | None = None
_WATCHDOG_LOCK = threading.Lock()


def watch(interval_s: float = WATCH_EVERY_S) -> Watchdog:
    """Start this process's watchdog, once: later calls (every browser session) return the same one.

    A trainer killed outright (SIGKILL, the OOM killer) never reaches its own ``dispatch``; so
    that the queue still moves when no browser has the train page open, the page server calls
    this as it starts.
    """
    global _WATCHDOG
    with _WATCHDOG_LOCK:
        if _WATCHDOG is None or not _WATCHDOG.is_alive():
            _WATCHDOG = Watchdog(interval_s)
            _WATCHDOG.start()
        return _WATCHDOG


def spawn(run_dir: Path, resume: bool = False, nproc: int = 1, pair: bool = False, gpus: list | None = None) -> int:
    """Start the training process of ``run_dir`` now (``dispatch`` decides when). A run of a
    side-by-side ``pair`` on a CPU takes half the cores: its twin runs at the same time; on GPUs
    the twin that joins passes ``gpus``, its twin's, so it never lands on another student's."""
    cmd = [sys.executable, "-m", "resnet_core", "train", "--run-dir", str(run_dir)]
    if resume:
        cmd.append("--resume")
    if nproc > 1:  # torchrun starts nproc copies and wires their process group
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *cmd[1:]]
    package_parent = str(Path(__file__).resolve().parent.parent)  # importable from any cwd
    pythonpath = os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV and not k.startswith("TORCHELASTIC_")}
    env.update(RESNET_LAB_HOME=str(lab_home()), PYTHONUNBUFFERED="1", PYTHONPATH=pythonpath)
    for stale in run_dir.glob(".*.tmp"):  # a save cut short by SIGKILL; no trainer is alive here
        stale.unlink(missing_ok=True)
    with transitions():  # two dispatchers never pick the same GPU: the choice and its record are one step
        gpus = gpus if gpus is not None else _pick_gpus(nproc)
        update_status(run_dir, state="resuming" if resume else "starting", gpus=gpus or None)
    if gpus:  # each rank takes cuda:LOCAL_RANK of what it sees (engine.resolve_device)
        env.update(CUDA_VISIBLE_DEVICES=",".join(gpus), RESNET_LAB_GPUS=",".join(server_gpus()))
    elif pair:  # torch sizes its thread pool from OMP_NUM_THREADS: two pools of all cores would fight
        from resnet_core.folders import usable_cpus  # the cores this process may use (taskset, cgroups)

        env["OMP_NUM_THREADS"] = str(max(1, usable_cpus() // 2))
    # The child starts with SIGTERM/SIGINT blocked (a signal mask survives exec) and unblocks
    # them once its handler is in (``stopping.install``): a stop that arrives while the
    # interpreter starts waits for the handler instead of killing the run. Not for torchrun's
    # agent, which never unblocks them.
    mask = {signal.SIGTERM, signal.SIGINT} if nproc == 1 else set()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, mask)
    try:
        with open(run_dir / "train.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own session: a closed terminal or app does not end it
                env=env,
                cwd=os.getcwd(),
            )
    except OSError as err:  # no memory to fork, no cwd, no file descriptors: never "starting" for ever
        update_status(run_dir, state="failed", ended=time.time(), **_failure(Message("run.no_start", why=str(err))))
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    # The child needs seconds to import torch before its first status write; this is first.
    update_status(run_dir, pid=proc.pid, pid_start=_start_time(proc.pid))
    return proc.pid


def _pick_gpus(nproc: int) -> list[str]:
    """The ``nproc`` GPUs a run starting now takes: those no live run holds, in order; [] without CUDA.

    When fewer are free (``$RESNET_LAB_MAX_RUNS`` above the GPU count: small runs share on
    purpose), the least held ones are shared rather than the start refused.
    """
    load = gpu_load()
    return sorted(load, key=load.__getitem__)[:nproc]  # a stable sort: free ones in order first


def _waits_for_gpus(nproc: int) -> bool:
    """Whether a queued run of ``nproc`` processes must wait for GPUs although a slot is free.

    ``max_concurrent`` counts runs, and a torchrun run takes one GPU per process: without a
    ``$RESNET_LAB_MAX_RUNS`` (the teacher's choice to share), one run per GPU means waiting.
    A run asking for more GPUs than the server has starts once all are free, not never.
    """
    if os.environ.get("RESNET_LAB_MAX_RUNS"):
        return False
    load = gpu_load()
    idle = sum(n == 0 for n in load.values())
    return idle < min(nproc, len(load))


def _active_runs(owner: str | None, rows: list[dict[str, Any]] | None = None) -> tuple[int, int]:
    """(this owner's, everyone's) runs queued or training, of ``rows`` (default: all runs now);
    call under ``transitions()``. A group launched together (a strategy comparison) counts once
    against its owner's cap."""
    active = [r for r in (list_runs() if rows is None else rows) if r["state"] in ACTIVE]
    mine = [r for r in active if owner and r.get("owner") == owner]
    return sum(1 for r in mine if not r.get("group")) + len({r["group"] for r in mine if r.get("group")}), len(active)


def launch_group(configs: list[TrainConfig], actor: classroom.Actor | None = None) -> list[Path]:
    """Queue several runs as one job (they share ``extra["group"]``): each is checked against the
    class's limits, and together they count once against the session's cap."""
    owner = actor.owner if actor else None
    with transitions():
        mine, total = _active_runs(owner)
        for i, config in enumerate(configs):
            classroom.check_launch(config.validate(), actor, mine, total + i)
        run_dirs = [create(config, owner=owner) for config in configs]
        dispatch()
    return run_dirs


def resume(run_dir: Path, actor: classroom.Actor | None = None) -> None:
    """Queue a stopped, failed or interrupted run to continue from its ``last.pt``."""
    run_dir = Path(run_dir)
    with transitions():
        status = read_status(run_dir)
        classroom.check_may_act(actor, status.get("owner"), run_dir.name)
        if not (run_dir / "last.pt").is_file():
            raise RunError("run.nothing_to_resume", run=run_dir.name)
        if status["state"] in ACTIVE:
            raise RunError("run.running_resume", run=run_dir.name)
        extra = _config(run_dir).get("extra") or {}
        group = extra.get("group") if group_kind(extra) == PAIR else None
        rows = list_runs()
        if not (group and any(r.get("group") == group and r["state"] in ACTIVE for r in rows)):
            # Queued as a launch is; a twin whose pair still trains is part of a job already counted.
            classroom.check_queue(actor, *_active_runs(actor.owner if actor else None, rows))
        if status["state"] not in RESUMABLE:  # finished: a second click from another browser lands here
            raise RunError("run.finished", run=run_dir.name)
        (run_dir / "STOP").unlink(missing_ok=True)
        update_status(run_dir, state="queued", resume=True, pid=None, pid_start=None, error=None, error_message=None)
        dispatch()


def stop(run_dir: Path, actor: classroom.Actor | None = None) -> None:
    """Ask a run to stop after its current batch: a STOP file, then SIGTERM to its process.

    The trainer catches SIGTERM from its first line (``stopping``) and only raises a flag, so a
    stop during start-up or mid-batch ends as "stopped" with ``last.pt`` kept. Only the trainer
    itself is signalled: its DataLoader workers end with it, and under torchrun the STOP file
    reaches every rank at the same batch.
    """
    run_dir = Path(run_dir)
    with transitions():
        status = read_status(run_dir)
        classroom.check_may_act(actor, status.get("owner"), run_dir.name)
        if status["state"] not in ACTIVE:
            return
        (run_dir / "STOP").touch()
        if status["state"] == "queued":  # never started: nothing to signal
            update_status(run_dir, state="stopped", ended=time.time())
            return
        pid = status.get("pid")
        single = status.get("nproc", 1) == 1 or status["state"] == "running"  # else pid is torchrun's agent
        if pid and single and _alive(pid, status.get("pid_start")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)


def delete(run_dir: Path, actor: classroom.Actor | None = None) -> None:
    run_dir = Path(run_dir)
    with transitions():
        status = read_status(run_dir)
        classroom.check_may_act(actor, status.get("owner"), run_dir.name)
        if status["state"] in ACTIVE:
            raise RunError("run.running_delete", run=run_dir.name)
        # Renamed first, so a listing never sees a half-deleted run; then removed at leisure.
        doomed = run_dir.with_name(f".deleted-{run_dir.name}-{time.time_ns()}")  # unique: an old one may linger
        run_dir.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Status and metrics on disk


def write_status(run_dir: Path, status: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / "status.json", json.dumps(status, indent=1))


def update_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Read, change and write status.json under the transition lock, so no change is lost."""
    with transitions():
        status = _raw_status(run_dir)
        status.update(fields, updated=time.time())
        write_status(run_dir, status)
    return status


def _raw_status(run_dir: Path) -> dict[str, Any]:
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text())
    except (OSError, ValueError):
        return {"state": "unknown"}
    if not isinstance(status, dict):
        return {"state": "unknown"}  # someone else's JSON
    if status.get("state") not in STATES:
        status["state"] = "unknown"  # every page names a run's state from a fixed list
    return status


def _start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); None off Linux."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` is still the process recorded: a pid reused since is not (``start``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) still answers kill(0).
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return True
    return fields[0] != "Z" and (start is None or fields[19] == start)


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json, with a run whose process died without saying so reported as ``interrupted``.

    Killed (SIGKILL, the OOM killer, a reboot) between two atomic saves: its checkpoints are
    whole, and it resumes from ``last.pt``.
    """
    status = _raw_status(run_dir)
    on_this_host = status.get("host") in (None, socket.gethostname())
    active = status.get("state") in ACTIVE and status.get("pid") and on_this_host
    if active and not _alive(status["pid"], status.get("pid_start")):
        status.update(_cause_of_death(Path(run_dir), status))
    # ``spawn`` writes "starting" and, milliseconds later, the child's pid: a server killed in
    # between leaves a run with no pid. If the child was started it records its own pid when it
    # claims the run (``_claim``, seconds later, after importing torch); if it never was, the run
    # would hold a slot for good. ORPHAN_AFTER_S is far longer than any start-up.
    orphan = status.get("state") in ("starting", "resuming") and not status.get("pid") and on_this_host
    if orphan and time.time() - status.get("updated", time.time()) > ORPHAN_AFTER_S:
        status["state"] = "interrupted"
        status.update(_failure(Message("run.never_started")))
    return status


def _cause_of_death(run_dir: Path, status: dict[str, Any]) -> dict[str, str]:
    """The state and sentence of a run whose trainer ended without writing its status.

    On a full disk the trainer cannot replace status.json (a new file needs new blocks), so it
    overwrites its reserved ``failure.json`` instead (``_leave_note``); a note from another
    trainer of the run (an earlier attempt) does not count. With no note, a nearly full disk is
    still the likely cause, and freeing space is what the user must do before resuming.
    """
    note = _read_note(run_dir)
    if note.get("error") and (note.get("pid"), note.get("pid_start")) == (status["pid"], status.get("pid_start")):
        return {"state": "failed", "error": note["error"], "error_message": note.get("message")}
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(run_dir).free
        if free < LOW_DISK_BYTES:
            return {"state": "interrupted", **_failure(_disk_full(run_dir, f"{free // 2**20} MB free"))}
    return {"state": "interrupted", **_failure(KILLED)}


def _reserve_note(run_dir: Path) -> None:
    """Write ``failure.json`` as blank bytes now, so a failure can later be told with no new disk blocks."""
    with contextlib.suppress(OSError):  # a disk full already: the free-space check in read_status remains
        _write_note(run_dir, b"")


def _leave_note(run_dir: Path, error: str, cause: BaseException | None = None) -> None:
    """Say why this trainer failed in its reserved note, when status.json could not be replaced."""
    said = _failure(error, cause)
    note = {"pid": os.getpid(), "pid_start": _start_time(os.getpid()), "error": said["error"]}
    note["message"] = said["error_message"]
    data = json.dumps(note, ensure_ascii=False).encode("utf-8")
    if len(data) > NOTE_BYTES:  # the English alone, shortened below if need be
        note["message"] = None
        data = json.dumps(note, ensure_ascii=False).encode("utf-8")
    while len(data) > NOTE_BYTES:  # a long path in another script: shorter, never past the reserved bytes
        note["error"] = note["error"][: len(note["error"]) // 2]
        data = json.dumps(note, ensure_ascii=False).encode("utf-8")
    with contextlib.suppress(OSError):
        _write_note(run_dir, data)


def _write_note(run_dir: Path, data: bytes) -> None:
    # In place, padded to the reserved size: a file never grows past the blocks it already has.
    fd = os.open(Path(run_dir) / NOTE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data.ljust(NOTE_BYTES), 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_note(run_dir: Path) -> dict[str, Any]:
    try:
        text = (Path(run_dir) / NOTE).read_bytes().strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):  # none, or caught mid-write
        return {}


def _disk_full(run_dir: Path, why: str) -> Message:
    return Message("run.disk_full", folder=Path(run_dir), why=why)


def failure_message(err: BaseException, run_dir: Path) -> str:
    """The sentence a failed run shows: a full disk says so and what to do; anything else as raised."""
    cause: BaseException | None = err
    seen: set[int] = set()  # a chain can loop (an exception raised from itself, re-raised in its handler)
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return _disk_full(run_dir, os.strerror(cause.errno))
        cause = cause.__cause__ or cause.__context__
    return f"{err.__class__.__name__}: {err}"


def read_metrics(run_dir: Path, types: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The events of metrics.jsonl; a half-written last line (mid-append) is ignored."""
    try:
        lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    except (OSError, UnicodeDecodeError):  # none yet, or the run was deleted while a page read it
        return []
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if types is None or event.get("type") in types:
            events.append(event)
    return events


_CONFIGS: dict[tuple[str, int], dict[str, Any]] = {}  # (config.json, mtime_ns) -> parsed


def _config(run_dir: Path) -> dict[str, Any]:
    """config.json, parsed once per version: a classroom lists dozens of runs every second."""
    path = run_dir / "config.json"
    key = (str(path), path.stat().st_mtime_ns)
    parsed = _CONFIGS.get(key)  # one lookup: another thread may clear the dict in between
    if parsed is None:
        if len(_CONFIGS) > 4096:
            _CONFIGS.clear()
        parsed = _CONFIGS[key] = json.loads(path.read_text())
    return parsed


# run folder -> (the stats its row was read at, its status.json bytes, the row). A classroom lists
# every run several times a second (each launch under the transitions lock, each page's table and
# queue position): 30 students pressing Start together made 60 runs, and re-reading 60 status.json
# and config.json files per listing held the lock for 17-30 ms a launch. A row is read again when
# its files change; a row whose trainer may have died since (starting, resuming, running) is read
# every time. A status.json younger than SETTLED_NS could have been replaced within one tick of the
# file system's clock by one of the same size: its bytes are compared (no parsing) before the row
# is reused.
_ROWS: dict[str, tuple[tuple, bytes, dict[str, Any] | None]] = {}  # None: a folder that is not a run


def _stats(run_dir: str) -> tuple | None:
    """What a run's row depends on: status.json, config.json and best.pt as stat sees them."""
    out = []
    for name in ("status.json", "config.json", "best.pt"):
        try:
            st = os.stat(os.path.join(run_dir, name))
        except FileNotFoundError:
            if name == "config.json":
                return None  # a run being created or deleted
            out.append(None)
            continue
        out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _newest_first(name: str) -> tuple:
    """Sort key: runs are named STAMP-DATASET-MODEL, with -2, -3, ... for more in the same second
    (``create``), so "-10" is newer than "-9" although it sorts before it as text."""
    stem, _, n = name.rpartition("-")
    if not (stem and n.isdigit() and stem.count("-") >= 3):
        stem, n = name, "1"
    return tuple(-ord(c) for c in stem), -int(n)


def list_runs() -> list[dict[str, Any]]:
    """One summary per run directory, newest first."""
    rows = []
    base = runs_dir()
    try:
        names = sorted((e.name for e in os.scandir(base) if e.is_dir()), key=_newest_first)
    except (FileNotFoundError, NotADirectoryError):
        names = []
    for name in names:
        if name.startswith("."):
            continue
        path = str(base / name)
        key = _stats(path)
        if key is None:
            continue  # no config.json: a run being created or deleted
        cached = _ROWS.get(path)
        if cached and cached[0] == key and cached[2] is not None and cached[2]["state"] not in STARTED:
            settled = key[0] is None or time.time_ns() - key[0][1] > SETTLED_NS
            if settled or _status_bytes(path) == cached[1]:
                rows.append(dict(cached[2]))  # a copy: a caller may change its rows
                continue
        if cached and cached[0] == key and cached[2] is None:
            continue  # not a run, and unchanged since it was found out (warned once)
        raw = _status_bytes(path)
        row = _row(Path(path))
        if len(_ROWS) > 4096:
            _ROWS.clear()
        _ROWS[path] = (key, raw, row)
        if row is not None:
            rows.append(dict(row))
    return rows


def _status_bytes(run_dir: str) -> bytes:
    try:
        with open(os.path.join(run_dir, "status.json"), "rb") as f:
            return f.read()
    except OSError:
        return b""


def group_kind(extra: dict[str, Any]) -> str | None:
    """What a group of runs is for ("compare", "degradation", "pair"): a page reads only its own
    kind (a Theory re-run's four runs once broke the Transfer page's comparison table). Runs made
    before groups carried a kind have it as their group name's prefix."""
    group = extra.get("group")
    if not group:
        return None
    return extra.get("kind") or str(group).split("-")[0]


def _row(run_dir: Path) -> dict[str, Any] | None:
    """One run's summary for :func:`list_runs`, read from its files; None for a folder that is
    not a run (a config.json someone else wrote, or half-written by hand)."""
    try:
        config = _config(run_dir)
        extra = config.get("extra") or {}
        if not isinstance(extra, dict):
            raise TypeError("extra is not a mapping")
    except (OSError, ValueError, TypeError, AttributeError) as err:
        log.warning("%s is not a run (%s); skipped", run_dir.name, err)
        return None
    status = read_status(run_dir)
    started, ended = status.get("started"), status.get("ended") or status.get("updated")
    return {
        "run": run_dir.name,
        "path": str(run_dir),
        "dataset": config.get("dataset"),
        "model": config.get("model"),
        "epochs": config.get("epochs"),
        "state": status.get("state"),
        "epoch": status.get("epoch"),
        "best_acc": status.get("best_acc"),
        "seconds": round(ended - started, 1) if started and ended else None,
        "has_best": (run_dir / "best.pt").is_file(),
        "checkpoint": str(run_dir / "best.pt"),
        "owner": status.get("owner"),
        "group": extra.get("group"),
        "kind": group_kind(extra),
        "title": _teach_title(extra),  # a student's own classes (teach.save_run)
    }


def _teach_title(extra: dict[str, Any]) -> str | None:
    """The name a student gave their own classes' run; None elsewhere, or where a hand-written
    config.json holds something else there (one run's file must not break every page's list)."""
    teach = extra.get("teach")
    title = teach.get("title") if isinstance(teach, dict) else None
    return title if isinstance(title, str) and title else None


class RunRecorder:
    """The engine's callback for a run directory: metrics.jsonl, status.json, train.log lines."""

    def __init__(self, run_dir: Path, echo=None) -> None:
        self.run_dir, self.echo = Path(run_dir), echo
        self.metrics = open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.last_status = 0.0
        self.started = time.time()

    def __call__(self, event: dict[str, Any]) -> None:
        event = {**event, "time": round(time.time(), 3)}
        self.metrics.write(json.dumps(event) + "\n")
        self.metrics.flush()
        kind = event["type"]
        if kind == "start":
            self.total = event["epochs"] * event["steps"]
            self.anchor = None  # (time, batches done) at the first batch event: see below
            update_status(
                self.run_dir,
                state="running",
                pid=os.getpid(),
                pid_start=_start_time(os.getpid()),
                host=socket.gethostname(),
                started=_raw_status(self.run_dir).get("started") or self.started,
                device=event["device"],
                precision=event.get("precision", "fp32"),
                epochs=event["epochs"],
                steps=event["steps"],
                eta_s=None,  # a resumed run's old estimate is not this trainer's
            )
        elif kind == "batch" and self.anchor is None:
            # The rate is measured from the first batch on: counting the start-up (imports, data,
            # the first batch's kernel selection) said 980 s left for a 10 s run (issue 17).
            self.anchor = (time.time(), event["epoch"] * event["steps"] + event["step"])
            update_status(self.run_dir, epoch=event["epoch"], step=event["step"], eta_s=None)
        elif kind == "batch" and time.time() - self.last_status >= STATUS_EVERY_S:
            self.last_status = time.time()
            done = event["epoch"] * event["steps"] + event["step"]
            rate = (done - self.anchor[1]) / max(time.time() - self.anchor[0], 1e-9)
            update_status(
                self.run_dir,
                epoch=event["epoch"],
                step=event["step"],
                loss=event["loss"],
                images_per_s=event["images_per_s"],
                eta_s=round((self.total - done) / rate, 1) if rate > 0 else None,
            )
        elif kind == "epoch":
            update_status(self.run_dir, epoch=event["epoch"], best_acc=event["best_acc"], test_acc=event["test_acc"])
        elif kind == "end":
            update_status(
                self.run_dir,
                state=event["status"],
                ended=time.time(),
                best_acc=event["best_acc"],
                eta_s=0 if event["status"] == "finished" else None,
            )
        if self.echo:
            self.echo(event)

    def close(self) -> None:
        # A line that a full disk refused stays buffered and fails again here; the run has
        # already failed with the reason, which this must not replace.
        with contextlib.suppress(OSError):
            self.metrics.close()


def stop_checker(run_dir: Path):
    """A ``should_stop`` for the engine: true after SIGTERM/SIGINT or once STOP exists."""
    stopping.install()  # already done by ``python -m resnet_core``; here for library callers
    stop_file = Path(run_dir) / "STOP"
    return lambda: stopping.requested() or stop_file.exists()


def _claim(run_dir: Path) -> bool:
    """Whether this process may train ``run_dir``: no other live trainer has it.

    ``dispatch`` records the pid it spawned (under the lock, before this can read it); under
    torchrun that is the agent, our parent. A second trainer for the same run, however it was
    started, finds a live pid that is not its own and leaves.
    """
    if engine.world()[0] != 0:
        return True
    with transitions():
        status = _raw_status(run_dir)
        pid = status.get("pid")
        alive = bool(pid) and _alive(pid, status.get("pid_start"))
        if status.get("state") == "running" and pid not in (os.getpid(), os.getppid()) and alive:
            return False
        if status.get("state") in ("starting", "resuming") and pid not in (None, os.getpid(), os.getppid()):
            return not alive
        if not pid:  # the server died before recording us: record ourselves, or we would read as an orphan
            status.update(pid=os.getpid(), pid_start=_start_time(os.getpid()), updated=time.time())
            write_status(run_dir, status)
        return True


def train_run(run_dir: Path, resume: bool = False, echo=None) -> dict[str, Any]:
    """Train the run in ``run_dir`` in this process (what ``launch`` starts)."""
    run_dir = Path(run_dir)
    if not _claim(run_dir):
        raise RunError("run.claimed", run=run_dir.name)
    config = TrainConfig.load(run_dir / "config.json")
    config.run_dir = str(run_dir)
    if engine.world()[0] == 0:
        _reserve_note(run_dir)
    recorder = RunRecorder(run_dir, echo)
    try:
        return engine.fit(config, callback=recorder, should_stop=stop_checker(run_dir), resume=resume)
    except BaseException as err:
        if engine.world()[0] == 0:
            _record_failure(run_dir, err)
        raise
    finally:
        recorder.close()
        if engine.world()[0] == 0:
            # Hand the freed slot to the next queued run, browser or not. On a full disk the next
            # run cannot be marked started either; the watchdog starts it once there is space.
            with contextlib.suppress(OSError, CheckpointError):
                dispatch()


def _record_failure(run_dir: Path, err: BaseException) -> None:
    """Mark the run failed with a sentence; on a full disk, where status.json cannot be
    replaced, leave the sentence in the reserved note for ``read_status`` to find."""
    error = failure_message(err, run_dir)
    try:
        update_status(run_dir, state="failed", ended=time.time(), **_failure(error, err))
    except (OSError, CheckpointError):
        _leave_note(run_dir, error, err)


def progress(run_dir: Path) -> dict[str, Any]:
    """Everything the train page draws for one run, read from disk in one pass."""
    run_dir = Path(run_dir)
    events = read_metrics(run_dir)
    batches = [e for e in events if e["type"] == "batch"]
    steps = batches[-1]["steps"] if batches else None
    points = [xy for e in batches for xy in batch_points(e)]
    return {
        "run": run_dir.name,
        "status": read_status(run_dir),
        "config": json.loads((run_dir / "config.json").read_text()),
        "epochs": [e for e in events if e["type"] == "epoch"],
        "batch_step": [x for x, _ in points],
        "batch_loss": [y for _, y in points],
        "last_batch": batches[-1] if batches else None,
        "steps": steps,
        "queue_position": queue_position(run_dir),
    }


def batch_points(event: dict[str, Any]) -> list[tuple[int, float]]:
    """(global step, loss) of each batch a "batch" event covers; runs from before issue 17 logged
    only the mean since the previous event."""
    last = event["epoch"] * event["steps"] + event["step"]
    losses = event.get("losses") or [event["loss"]]
    return [(last - len(losses) + 1 + i, loss) for i, loss in enumerate(losses)]


def ema(values: list[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(last / norm if norm else v)
    return out
