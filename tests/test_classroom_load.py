"""A real server driven by protocol-level clients (benchmarks/protocol_client.py), on loopback.

The speed figures come from the benchmark itself (benchmarks/README.md, "A class on one 2-core
server"); these tests only check what must hold whatever the machine: no errors, no exception
boxes, no disconnects, one script run per deep link, one trainer per run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from classroom_load import Server, finished_run, trainer_pids  # noqa: E402
from protocol_client import Client  # noqa: E402

pytestmark = pytest.mark.slow


def test_a_deep_link_on_a_fresh_server_is_one_run_and_its_first_click_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_HOME", str(tmp_path))
    finished_run(tmp_path)
    server = Server(tmp_path)

    def new_run_shown(c: Client) -> bool:  # the finished run is fashion-sample; the form's default is not
        return any(h.body.startswith("Run ") and "mnist-sample" in h.body for h in c.find_all("heading"))

    async def visit() -> tuple[Client, float, int, float]:
        student = Client(server.url)
        await student.connect()
        opened = await student.run(page_name="train")  # the first visit this server has had
        runs_to_open = student.stats.early_runs + student.stats.full_runs
        clicked = await student.click("Start training")
        shown = await student.wait_for(new_run_shown, 60)
        await student.close()
        return student, opened, runs_to_open, min(clicked, shown)

    try:
        student, opened, runs_to_open, shown = asyncio.run(visit())
    finally:
        server.stop()
        for pids in trainer_pids(tmp_path / "runs").values():  # the run the click started
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
    assert opened > 0 and runs_to_open == 1  # the deep link ran the page script once
    assert not student.stats.exceptions and not student.stats.disconnected
    assert shown >= 0  # the click launched a run, and the page shows it
    assert [d for d in (tmp_path / "runs").iterdir() if "mnist-sample" in d.name]


def test_the_quick_classroom_benchmark_runs_clean(tmp_path):
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/classroom_load.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert {r["scenario"] for r in rows} >= {"theory, fresh server", "predict, upload", "train, idle", "train, start"}
    for r in rows:
        assert (r["errors"], r["exceptions"], r["disconnects"]) == (0, 0, 0), r
    assert rows[0]["runs_per_visit"] == 1  # a deep link on a fresh server: one script run
    assert [r["trainers_per_run"] for r in rows if "trainers_per_run" in r][-1] == [1]
    assert done.returncode == 0, done.stdout[-3000:]
