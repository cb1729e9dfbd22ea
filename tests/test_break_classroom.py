"""Breaking the classroom change (issue 7) the way the world would; each test failed before its fix."""

import json
import os
import signal
import subprocess
import time
import zipfile

import pytest
import streamlit as st
import torch

from resnet_core import data, runs
from tests.conftest import tiny_config
from tests.test_folders import make_zip, png
from tests.test_pages import app
from tests.test_pages_hostile import add_folder_via_page, pth, upload_weights

# fake_popen patches the subprocess module itself; a test that needs a real process of its own
# (the stranger holding a recycled pid) takes this one, not a one-second fake.
REAL_POPEN = subprocess.Popen

TORCHRUN_ENV = {
    "RANK": "0",
    "LOCAL_RANK": "0",
    "WORLD_SIZE": "2",
    "LOCAL_WORLD_SIZE": "2",
    "GROUP_RANK": "0",
    "MASTER_ADDR": "127.0.0.1",
    "MASTER_PORT": "29500",
    "TORCHELASTIC_RUN_ID": "none",
}


@pytest.fixture
def fake_popen(monkeypatch):
    """Popen that records what a trainer would be started with, and starts a short sleep instead."""
    real, calls = REAL_POPEN, []

    def popen(cmd, **kwargs):
        calls.append({"cmd": cmd, **kwargs})
        return real(["sleep", "1"], stdout=kwargs.get("stdout"), start_new_session=True)

    monkeypatch.setattr(runs.subprocess, "Popen", popen)
    return calls


def test_a_run_started_by_a_finishing_torchrun_rank_does_not_join_its_world(lab, monkeypatch, fake_popen):
    # Rank 0 of a multi-process run dispatches the next queued run when it ends (train_run's
    # finally). It runs under torchrun: the child inherited WORLD_SIZE=2 and MASTER_PORT, and
    # engine.fit called init_process_group, waiting for a rank 1 that never comes: a hung run
    # holding the class's only slot.
    for name, value in TORCHRUN_ENV.items():
        monkeypatch.setenv(name, value)
    runs.launch(tiny_config())
    (call,) = fake_popen
    assert not set(TORCHRUN_ENV) & set(call["env"]), call["env"]
    assert call["env"]["RESNET_LAB_HOME"] == str(lab)


def test_stop_never_signals_a_process_that_reused_a_dead_trainers_pid(lab, fake_popen):
    # A trainer killed by SIGKILL, the OOM killer or a reboot leaves status.json saying "running"
    # with its pid. Days later that pid belongs to another process of the same user (the page
    # server itself, another student's trainer): Stop sent it SIGTERM, and the run showed as
    # running forever (its fake "trainer" alive), so it could be neither resumed nor deleted.
    run_dir = runs.launch(tiny_config())
    first = runs._raw_status(run_dir)["pid"]
    subprocess.run(["kill", "-9", str(first)], check=False)
    time.sleep(0.1)
    stranger = REAL_POPEN(["sleep", "30"])  # same user, later: the recycled pid
    try:
        status = runs._raw_status(run_dir)
        runs.write_status(run_dir, {**status, "state": "running", "pid": stranger.pid})
        assert runs.read_status(run_dir)["state"] == "interrupted"
        runs.stop(run_dir)
        time.sleep(0.2)
        assert stranger.poll() is None, "stop signalled a process that is not the run's trainer"
        runs.delete(run_dir)  # interrupted, not active: a student can clean it up
        assert not run_dir.exists()
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait()


def test_a_trainer_that_cannot_start_fails_its_run_and_frees_the_slot(lab, monkeypatch):
    # Popen raising (no memory to fork, the server's working directory deleted, too many open
    # files) left the run "starting" with no pid for ever: it held the slot, so every later
    # run of the class stayed queued, and it could be neither stopped nor deleted.
    def no_fork(cmd, **kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(runs.subprocess, "Popen", no_fork)
    run_dir = runs.launch(tiny_config())
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and "Cannot allocate memory" in status["error"]
    assert not any(r["state"] in runs.STARTED for r in runs.list_runs())
    runs.delete(run_dir)


def test_a_server_killed_between_starting_and_spawning_leaves_a_resumable_run(lab, monkeypatch):
    # spawn writes "starting", then Popen, then the pid: a server killed between the first two
    # leaves a run with no process and no pid, which held its slot for good.
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    run_dir = runs.launch(tiny_config())
    runs.update_status(run_dir, state="starting", pid=None)  # what the killed server left
    assert runs.read_status(run_dir)["state"] == "starting"  # fresh: the spawn may still be under way
    status = json.loads((run_dir / "status.json").read_text())
    status["updated"] -= runs.ORPHAN_AFTER_S + 1
    (run_dir / "status.json").write_text(json.dumps(status))
    status = runs.read_status(run_dir)
    assert status["state"] == "interrupted" and "resume" in status["error"]
    assert not any(r["state"] in runs.ACTIVE for r in runs.list_runs())  # the slot is free again


def test_a_trainer_whose_spawner_died_records_its_own_pid_when_it_claims_the_run(lab, monkeypatch):
    # The server died after Popen but before writing the pid: the child lives on, and must not
    # read as an orphan (its slot handed out, a second trainer spawned by a resume).
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    run_dir = runs.launch(tiny_config())
    runs.update_status(run_dir, state="starting", pid=None)
    assert runs._claim(run_dir)  # this test process plays the orphaned trainer
    status = runs.read_status(run_dir)
    assert status["pid"] == os.getpid() and status["pid_start"] and status["state"] == "starting"


LINK = "[Sign in again](https://evil.example)"


def test_data_page_errors_show_a_zip_members_name_as_text(lab, tmp_path):
    # The refusal quotes the member's name; st.error renders Markdown, so a hostile zip put a
    # working phishing link (or an image from any server) into the page.
    archive = make_zip(tmp_path / "x.zip", [(f"/{LINK}", b"x")])
    at = add_folder_via_page(app("data"), "pets", archive.read_bytes())
    message = at.error[0].value
    assert "outside its folder" in message and LINK not in message and "\\[Sign in again\\]" in message


def test_transfer_page_names_foreign_keys_as_text(lab):
    # A state_dict's keys are the uploader's text; the mismatch sentence named them as Markdown.
    at = upload_weights(app("transfer"), pth({LINK: torch.zeros(3)}))
    message = at.error[0].value
    assert "unexpected" in message and LINK not in message and "\\[Sign in again\\]" in message


def test_data_page_charts_and_captions_show_class_names_as_text(lab, tmp_path):
    # Plotly renders <b>, <i>, <br>, <span style> and <a href> in axis labels, legends and hover
    # text, and st.image captions are Markdown: class folder names reached both unescaped.
    src = tmp_path / "src"
    for c in ("<b>big", "<a href=evil>here", "*mean*"):
        (src / c).mkdir(parents=True)
        for i in range(5):
            (src / c / f"{i}.png").write_bytes(png(i))
    data.add_folder("tags", src)
    st.cache_data.clear()  # the page caches views by dataset name, across labs in this process
    at = app("data")
    at.selectbox(key="data_name").set_value("tags").run()
    st.cache_data.clear()
    assert not at.exception, at.exception
    specs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    assert specs
    text = json.dumps(specs)
    assert "<b>big" not in text and "<a href=evil>" not in text and "&lt;b&gt;big" in text
    captions = [c for el in at.get("image") for img in el.proto.imgs for c in [img.caption] if c]
    assert captions and "*mean*" not in captions and "\\*mean\\*" in captions


def test_a_windows_zip_of_chinese_class_folders_is_read_in_one_encoding(lab, tmp_path):
    # 猫 in GBK is C3 A8, which is also valid UTF-8 (è): each member was decoded on its own, so
    # "猫/0.png" came out as "è/0.png" beside a correctly decoded "狗" (B9 B7 is not UTF-8).
    from tests.test_folders import RawNameInfo

    archive = tmp_path / "zh.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for c in ("猫", "狗"):
            for i in range(5):
                zf.writestr(RawNameInfo(f"{c}/{i}.png".encode("gbk")), png(i))
    assert data.add_folder("zh", archive).classes == ["狗", "猫"]
