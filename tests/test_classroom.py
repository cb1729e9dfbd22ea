"""A classroom: students act only on their own runs, a teacher on all; limits refuse with a sentence."""

import os
import time

import pytest

from resnet_core import classroom, runs
from resnet_core.classroom import Actor, ClassroomError
from resnet_core.config import TrainConfig

ALICE, BOB = Actor(owner=classroom.owner_id("alice")), Actor(owner=classroom.owner_id("bob"))


@pytest.fixture
def class_mode(lab, monkeypatch):
    monkeypatch.setenv(classroom.TEACHER_ENV, "s3cret")
    monkeypatch.setenv("RESNET_LAB_MAX_RUNS", "1")
    return lab


def queued(actor, **overrides) -> os.PathLike:
    """A run owned by ``actor``, left queued (no process): ownership is about status, not training."""
    return runs.create(TrainConfig(**overrides), owner=actor.owner)


def test_students_act_on_their_own_runs_and_the_teacher_on_all(class_mode):
    run = queued(ALICE)
    for action in (runs.stop, runs.delete, runs.resume):
        with pytest.raises(ClassroomError, match="belongs to another student"):
            action(run, actor=BOB)
    assert runs.read_status(run)["state"] == "queued"
    runs.stop(run, actor=ALICE)
    assert runs.read_status(run)["state"] == "stopped"
    runs.delete(run, actor=Actor(teacher=True))
    assert not run.exists() and runs.list_runs() == []


def test_without_a_teacher_token_anyone_acts_as_before(lab):
    run = queued(ALICE)
    runs.stop(run, actor=BOB)
    assert runs.read_status(run)["state"] == "stopped"


def test_the_teacher_token_is_checked_exactly(class_mode):
    assert classroom.is_teacher_token("s3cret")
    assert (
        not classroom.is_teacher_token("s3cret ")
        and not classroom.is_teacher_token("")
        and not classroom.is_teacher_token(None)
    )


def test_queued_runs_per_session_are_limited(class_mode, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_QUEUED_PER_SESSION", "2")
    monkeypatch.setattr(runs, "dispatch", lambda: [])  # keep them queued: no processes here
    runs.launch(TrainConfig(), actor=ALICE)
    runs.launch(TrainConfig(), actor=ALICE)
    with pytest.raises(ClassroomError, match=r"already have 2 run\(s\).*limit 2"):
        runs.launch(TrainConfig(), actor=ALICE)
    runs.launch(TrainConfig(), actor=BOB)  # another student is not affected
    runs.launch(TrainConfig(), actor=Actor(teacher=True))
    runs.launch(TrainConfig())  # the server's shell
    assert len(runs.list_runs()) == 5
    assert sum(r["owner"] == ALICE.owner for r in runs.list_runs()) == 2


def test_a_run_too_big_for_the_class_names_what_would_fit(class_mode, monkeypatch):
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    with pytest.raises(ClassroomError, match=r"resnet152 for 10 epochs is [\d,]+ M.*at most 5 epochs"):
        runs.launch(TrainConfig(model="resnet152", epochs=10), actor=ALICE)
    runs.launch(TrainConfig(model="resnet20", epochs=200), actor=ALICE)  # 0.27 M parameters: fine
    assert classroom.run_cost(TrainConfig(model="resnet20", epochs=1)) == pytest.approx(0.27, abs=0.01)


def test_upload_limits_and_a_typo_in_the_environment(monkeypatch):
    classroom.check_upload("photo", 25 * 1024**2)
    with pytest.raises(ClassroomError, match="limited to 25 MB"):
        classroom.check_upload("photo", 25 * 1024**2 + 1, "IMG_0001.HEIC")
    monkeypatch.setenv("RESNET_LAB_MAX_ZIP_MB", "lots")
    assert classroom.limit("zip_mb") == 500
    assert {row["variable"] for row in classroom.limits()} >= {"RESNET_LAB_MAX_PHOTO_MB", "RESNET_LAB_MAX_RUN_COST"}


def test_old_uploads_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_UPLOAD_DAYS", "7")
    old, new = tmp_path / "old.pth", tmp_path / "new.pth"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    eight_days = time.time() - 8 * 86400
    os.utime(old, (eight_days, eight_days))
    assert classroom.prune_uploads(tmp_path) == 1
    assert not old.exists() and new.exists()


def test_server_folders_stay_under_their_root(tmp_path, monkeypatch):
    with pytest.raises(ClassroomError, match="RESNET_LAB_FOLDERS_ROOT"):
        classroom.check_server_folder("/etc")
    root = tmp_path / "shared"
    (root / "flowers").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    monkeypatch.setenv(classroom.FOLDERS_ROOT_ENV, str(root))
    assert classroom.check_server_folder("flowers") == (root / "flowers").resolve()
    for hostile in ("/etc", "../../etc", "escape", "flowers/../../.."):
        with pytest.raises(ClassroomError, match="Only folders under"):
            classroom.check_server_folder(hostile)


def test_ownership_survives_the_xsrf_cookie_being_sent_again_with_a_new_mask():
    # Streamlit's own encoder is the oracle: every page load re-sends the cookie with a new mask.
    from streamlit.web.server.starlette.starlette_app_utils import generate_xsrf_token_string

    from ui.common import xsrf_secret

    token = bytes(range(16))
    first, reload = generate_xsrf_token_string(token, 1), generate_xsrf_token_string(token, 1)
    other = generate_xsrf_token_string(bytes(range(1, 17)), 1)
    assert first != reload  # the text changes on each reload...
    assert xsrf_secret(first) == xsrf_secret(reload) == token.hex()  # ...the owner does not
    assert xsrf_secret(other) != xsrf_secret(first)
    assert xsrf_secret("2|zz|00|1") == "2|zz|00|1" and xsrf_secret("") == ""  # odd text: used as it is


def test_a_student_who_clears_cookies_still_meets_the_servers_cap(class_mode, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_QUEUED", "3")
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    for i in range(3):  # each cleared cookie is a new owner, so the per-session limit never bites
        runs.launch(TrainConfig(), actor=Actor(owner=classroom.owner_id(f"cookie{i}")))
    with pytest.raises(ClassroomError, match=r"server already has 3 runs.*limit 3"):
        runs.launch(TrainConfig(), actor=Actor(owner=classroom.owner_id("cookie3")))
    runs.launch(TrainConfig(), actor=Actor(teacher=True))  # the teacher is not capped
    assert len(runs.list_runs()) == 4


def test_resume_counts_against_the_queue_caps_as_a_launch_does(class_mode, monkeypatch):
    # Start two, stop them, start two more, then resume the first two: four queued at once.
    monkeypatch.setenv("RESNET_LAB_MAX_QUEUED_PER_SESSION", "2")
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    first = [runs.launch(TrainConfig(), actor=ALICE) for _ in range(2)]
    for run_dir in first:
        runs.update_status(run_dir, state="stopped")
        (run_dir / "last.pt").write_bytes(b"")
    [runs.launch(TrainConfig(), actor=ALICE) for _ in range(2)]
    with pytest.raises(ClassroomError, match=r"already have 2 run\(s\)"):
        runs.resume(first[0], actor=ALICE)
    runs.resume(first[0], actor=Actor(owner=ALICE.owner, teacher=True))  # the teacher is not capped
    monkeypatch.setenv("RESNET_LAB_MAX_QUEUED_PER_SESSION", "10")
    monkeypatch.setenv("RESNET_LAB_MAX_QUEUED", "3")  # three are queued now: the server is full
    with pytest.raises(ClassroomError, match=r"server already has 3 runs"):
        runs.resume(first[1], actor=ALICE)
