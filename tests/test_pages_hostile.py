"""Every page meets what users send: one sentence on the page, never a traceback (classroom issue)."""

import io
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
import streamlit as st
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from resnet_core import classroom, data, models, runs
from tests.conftest import shown, tiny_config
from tests.test_folders import make_zip
from tests.test_pages import app, finished_run
from ui.i18n import catalogue


class Pwn:
    """A pickle that would run a shell command when loaded: the safe loader must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pth(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def add_folder_via_page(at, name: str, archive_bytes: bytes):
    at.text_input[0].set_value(name)
    at.file_uploader[0].set_value(("upload.zip", archive_bytes, "application/zip"))
    at.run()
    add = next(b for b in at.button if b.label == catalogue("en")["data.add.button"])
    add.click().run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("\\tmp\\escaped.txt", b"x")], "outside its folder"),
        ([("C:\\Users\\me\\cat\\0.png", b"x")], "outside its folder"),
        ([("__MACOSX/._a", b"x")], None),  # good classes plus junk: accepted
    ],
)
def test_data_page_zip_uploads(lab, tmp_path, entries, message):
    archive = make_zip(tmp_path / "x.zip", entries)
    at = add_folder_via_page(app("data"), "pets", archive.read_bytes())
    if message:
        assert message in shown(at.error[0].value) and data.list_datasets("folder") == []
    else:
        assert not at.error and data.list_datasets("folder") == ["pets"]


def test_data_page_refuses_a_file_that_is_not_a_zip(lab):
    at = add_folder_via_page(app("data"), "pets", b"PK\x03\x04 but not really")
    assert "is neither a directory nor a zip of class folders" in shown(at.error[0].value)
    assert data.list_datasets("folder") == []


def test_data_page_hides_server_folders_unless_the_root_is_set(lab, tmp_path, monkeypatch):
    assert len(app("data").text_input) == 1  # the dataset name only
    monkeypatch.setenv(classroom.FOLDERS_ROOT_ENV, str(tmp_path))
    at = app("data")
    assert len(at.text_input) == 2 and str(tmp_path) in at.text_input[1].label
    at.text_input[0].set_value("etc")
    at.text_input[1].set_value("../../etc")
    at.run()
    next(b for b in at.button if b.label == catalogue("en")["data.add.button"]).click().run()
    assert "Only folders under" in shown(at.error[0].value)


def test_data_page_a_folder_that_has_gone_and_markdown_in_class_names(lab, tmp_path):
    from tests.test_folders import png_folder

    src = png_folder(tmp_path / "src", ("**bold**", "[link](http://x)"))
    data.add_folder("marks", src)
    at = app("data")
    at.selectbox(key="data_name").set_value("marks").run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert "\\*\\*bold\\*\\*" in captions and "**bold**" not in captions  # escaped: rendered as typed
    for p in sorted(src.rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    st.cache_data.clear()  # as after a server restart: the page's caches are per process
    at = app("data")  # files gone, folders left: the views say so
    at.selectbox(key="data_name").set_value("marks").run()
    assert not at.exception and at.error
    src.rmdir()
    st.cache_data.clear()
    at = app("data")
    at.selectbox(key="data_name").set_value("marks").run()
    assert not at.exception and "gone" in shown(at.error[0].value)


def upload_weights(at, raw: bytes, arch: str = "resnet20"):
    at.radio[0].set_value("upload").run()
    at.file_uploader[0].set_value(("weights.pth", raw, "application/octet-stream")).run()
    next(s for s in at.selectbox if s.label == catalogue("en")["transfer.arch"]).set_value(arch).run()
    assert not at.exception, at.exception
    return at


def test_transfer_page_never_runs_a_pickle(lab, tmp_path):
    marker = tmp_path / "pwned"
    at = upload_weights(app("transfer"), pth({"fc.weight": Pwn(marker)}))
    assert not marker.exists()
    assert "not a readable PyTorch weights file" in shown(at.error[0].value)


def test_transfer_page_truncated_weights(lab):
    raw = pth(models.get_model("resnet20").state_dict())
    at = upload_weights(app("transfer"), raw[: len(raw) // 2])
    assert "not a readable PyTorch weights file" in shown(at.error[0].value)


def test_transfer_page_names_what_differs_for_another_architecture(lab):
    at = upload_weights(app("transfer"), pth(models.get_model("resnet18", in_channels=1, image_size=28).state_dict()))
    # Only batch norms' step counters share names and shapes, and they are no weights: refused,
    # naming what differs.
    message = shown(at.error[0].value)
    assert "resnet20" in message and "shapes differ: conv1.weight (64, 1, 3, 3) vs (16, 1, 3, 3)" in message
    assert "unexpected: layer2.0.downsample.0.weight" in message
    assert next(b for b in at.button if b.label == catalogue("en")["transfer.launch"]).disabled


def test_transfer_page_refuses_weights_of_which_nothing_fits(lab):
    foreign = {"features.0.weight": torch.zeros(8, 3, 3, 3), "features.0.bias": torch.zeros(8)}
    at = upload_weights(app("transfer"), pth(foreign))
    message = shown(at.error[0].value)
    assert "missing: conv1.weight" in message and "unexpected: features.0.weight" in message
    launch = next(b for b in at.button if b.label == catalogue("en")["transfer.launch"])
    assert launch.disabled  # training would silently start from scratch


def test_transfer_page_replaces_the_head_for_another_class_count(lab, trained_run, tmp_path):
    from tests.test_data import make_folder

    finished_run(lab, trained_run)
    data.add_folder("animals", make_folder(tmp_path / "animals"))
    at = app("transfer")
    at.selectbox(key="transfer_target").set_value("animals").run()
    assert [c.value for c in at.code] == ["fc: Linear(64, 10)", "fc: Linear(64, 3)"]  # 10 digits -> 3 animals


def test_train_page_in_class_mode(lab, monkeypatch):
    monkeypatch.setenv(classroom.TEACHER_ENV, "s3cret")
    monkeypatch.setattr(runs, "dispatch", lambda: [])  # keep runs queued: no processes
    someone = runs.create(tiny_config(), owner=classroom.owner_id("another browser"))
    at = app("train")
    at.session_state["watch"] = str(someone)
    at.run()
    stop = next(b for b in at.button if b.label == catalogue("en")["train.stop"])
    stop.click().run()
    assert not at.exception
    assert catalogue("en")["train.not_yours"] in [e.value for e in at.error]
    assert runs.read_status(someone)["state"] == "queued"
    at.session_state["teacher"] = True  # signed in from the sidebar (test_teacher_signs_in_from_the_sidebar)
    at.run()
    next(b for b in at.button if b.label == catalogue("en")["train.stop"]).click().run()
    assert runs.read_status(someone)["state"] == "stopped"


@pytest.mark.parametrize(("typed", "teacher"), [("s3cret ", False), ("S3cret", False), ("s3cret", True)])
def test_teacher_signs_in_from_the_sidebar(lab, monkeypatch, typed, teacher):
    assert not app("home").sidebar.text_input  # single-user mode: no field at all
    monkeypatch.setenv(classroom.TEACHER_ENV, "s3cret")
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120)
    at.session_state["teacher_token"] = typed  # what the password field holds
    at.run()
    assert not at.exception
    assert at.session_state["teacher"] is True if teacher else "teacher" not in at.session_state


def test_train_page_refuses_a_run_too_big_for_the_class(lab, monkeypatch):
    monkeypatch.setenv(classroom.TEACHER_ENV, "s3cret")
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    at = app("train")
    en = catalogue("en")
    next(w for w in at.selectbox if w.label == en["train.model"]).set_value("resnet152")
    next(w for w in at.number_input if w.label == en["train.epochs"]).set_value(50)
    next(b for b in at.button if b.label == en["train.start"]).click().run()
    assert not at.exception
    assert "over this class's limit" in shown(at.error[0].value) and runs.list_runs() == []


def test_unzip_bytes_are_not_trusted_for_the_zip_limit(lab, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_ZIP_MB", "1")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cat/big.bin", os.urandom(2 * 1024**2))
    at = add_folder_via_page(app("data"), "big", buf.getvalue())
    assert "limited to 1 MB" in shown(at.error[0].value)


@pytest.mark.parametrize(
    ("head", "before"),
    [
        (torch.tensor(3.0), "fc: Linear(64, 1000)"),  # a 0-dim "weight": no class count to read
        (torch.zeros(3_000_000, 1), "fc: Linear(64, 3000000)"),  # 12 MB that claims 3 M classes
    ],
)
def test_transfer_page_survives_an_odd_head_in_uploaded_weights(lab, head, before):
    state = {**models.get_model("resnet20", in_channels=1, image_size=28).state_dict(), "fc.weight": head}
    at = upload_weights(app("transfer"), pth(state))  # asserts no exception
    assert [c.value for c in at.code][0] == before  # shapes drawn on the meta device: no 768 MB head built
    assert not [w for w in at.warning if "do not fit" in w.value]  # the old head is replaced anyway


def test_theory_reruns_are_the_students_own_and_count_against_the_cap(lab, monkeypatch):
    """The degradation re-run queues 4 runs: one job owned by the session, refused past the cap."""
    monkeypatch.setenv(classroom.TEACHER_ENV, "s3cret")
    monkeypatch.setattr(runs, "dispatch", lambda: [])  # keep runs queued: no processes
    at = app("theory")
    rerun = catalogue("en")["theory.rerun"]
    for _ in range(2):  # two jobs reach the default cap of 2 per session
        next(b for b in at.button if b.label == rerun).click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
    owners = {runs.read_status(Path(r["path"])).get("owner") for r in runs.list_runs()}
    assert len(runs.list_runs()) == 8 and len(owners) == 1 and None not in owners
    next(b for b in at.button if b.label == rerun).click().run()
    assert not at.exception and "limit 2" in shown(at.error[0].value) and len(runs.list_runs()) == 8


def test_the_home_page_lists_the_limits_in_force(lab, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_WEIGHTS_MB", "7")
    monkeypatch.setenv("RESNET_LAB_MAX_QUEUED_PER_SESSION", "3")
    table = app("home").table[0].value  # a static table: limit, variable, value, unit
    values = dict(zip(table.iloc[:, 0], table.iloc[:, 1]))
    assert values["RESNET_LAB_MAX_WEIGHTS_MB"] == 7 and values["RESNET_LAB_MAX_QUEUED_PER_SESSION"] == 3
    assert {
        "RESNET_LAB_MAX_RUNS",
        "RESNET_LAB_MAX_PHOTO_MB",
        "RESNET_LAB_MAX_ZIP_MB",
        "RESNET_LAB_MAX_RUN_COST",
    } <= set(values)


def test_weights_over_the_limit_are_refused_before_they_are_kept(lab, monkeypatch, tmp_path):
    from resnet_core import transfer

    monkeypatch.setenv("RESNET_LAB_MAX_WEIGHTS_MB", "1")
    raw = pth({"fc.weight": torch.zeros(1024, 512)})  # 2 MB of real weights
    with pytest.raises(classroom.ClassroomError, match="limited to 1 MB"):
        transfer.keep_upload(raw, "big.pth", tmp_path / "uploads")
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())


def test_a_killed_run_reads_interrupted_on_the_train_page_not_failed(lab, monkeypatch):
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    run_dir = runs.create(tiny_config())
    dead = subprocess.Popen(["true"])
    dead.wait()
    runs.update_status(run_dir, state="running", pid=dead.pid)
    at = app("train")
    at.session_state["watch"] = str(run_dir)
    at.run()
    assert not at.exception
    en = catalogue("en")
    assert [shown(e.value) for e in at.error] == [en["train.interrupted"].format(error=runs.KILLED)]


def test_zips_stop_when_the_labs_datasets_reach_their_disk_limit(lab, tmp_path, monkeypatch):
    """Each zip fits alone; the second does not fit beside the first. Then the teacher deletes one."""
    from resnet_core.__main__ import main

    monkeypatch.setenv("RESNET_LAB_MAX_DATASETS_MB", "1")
    buffer = io.BytesIO()  # a real image that barely compresses: 600 kB of noise, kept as it is
    Image.frombytes("RGB", (450, 450), os.urandom(450 * 450 * 3)).save(buffer, format="PNG")
    half = [("cat/noise.png", buffer.getvalue())]
    at = add_folder_via_page(app("data"), "pets", make_zip(tmp_path / "x.zip", half).read_bytes())
    assert not at.error and data.list_datasets("folder") == ["pets"]
    at = add_folder_via_page(at, "more", make_zip(tmp_path / "y.zip", half).read_bytes())
    assert "over this server's limit of 1 MB" in shown(at.error[0].value)
    assert data.list_datasets("folder") == ["pets"]
    assert main(["datasets", "delete", "pets"]) == 0 and data.list_datasets("folder") == []
    assert data.folders_bytes() == 0
    # A fresh page: AppTest's client cannot send a select box whose chosen "pets" has left its options
    # (a browser can; the page then shows the first dataset).
    at = add_folder_via_page(app("data"), "more", make_zip(tmp_path / "y.zip", half).read_bytes())
    assert not at.error and data.list_datasets("folder") == ["more"]
