"""The class: nicknames kept per browser, who trained what, the leaderboard; and on the pages."""

import threading

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core import classroom, roster, runs
from tests.conftest import tiny_config
from tests.test_pages import app
from ui import classmates
from ui.common import monitor
from ui.i18n import catalogue

EN, ZH = catalogue("en"), catalogue("zh")


def test_a_nickname_is_kept_cleaned_and_never_shared(lab):
    assert roster.nicknames() == {}  # no file yet: an empty class
    assert roster.set_nickname("a", "  Lin   Wei ") == "Lin Wei"
    assert roster.set_nickname("b", "小明") == "小明"  # any script
    with pytest.raises(roster.NicknameError) as taken:
        roster.set_nickname("c", "lin wei")  # the same name to a class, whatever the case
    assert taken.value.reason == "taken"
    assert roster.set_nickname("a", "LIN WEI") == "LIN WEI"  # one's own name, recased: fine
    assert roster.set_nickname("e", "नमस्ते") == "नमस्ते" and roster.set_nickname("f", "สวัสดี") == "สวัสดี"  # vowel marks
    bad_names = [("", "length"), ("x" * 21, "length"), ("<b>hi</b>", "characters"), ("a\u200bb", "characters")]
    bad_names += [
        ("\u1160\u1160", "characters"),
        ("...", "characters"),
        ("No Nickname", "reserved"),
        ("老师", "reserved"),
    ]
    bad_names += [("ＬＩＮ ＷＥＩ", "taken")]  # full-width: the same name to a class
    for bad, reason in bad_names:
        with pytest.raises(roster.NicknameError) as err:
            roster.set_nickname("d", bad)
        assert err.value.reason == reason
    assert roster.nicknames() == {"a": "LIN WEI", "b": "小明", "e": "नमस्ते", "f": "สวัสดี"}


def test_a_damaged_nicknames_file_is_an_empty_class_and_kept_aside(lab):
    lab.mkdir(parents=True)
    for text in ["{not json", "[1, 2]", '{"a": 3, "b": "ok"}']:
        (lab / roster.NAMES_FILE).write_text(text)
        assert roster.nicknames() in ({}, {"b": "ok"})
    (lab / roster.NAMES_FILE).write_text('{"a": "Ana", "b": "Bo"')  # torn: the class's names are in it
    roster.set_nickname("c", "Cy")
    assert roster.nicknames() == {"c": "Cy"}
    assert [p.read_text() for p in lab.glob(f"{roster.NAMES_FILE}.damaged-*")] == ['{"a": "Ana", "b": "Bo"']


def test_two_students_taking_one_name_at_once_one_gets_it(lab):
    results = []

    def take(owner):
        try:
            results.append(roster.set_nickname(owner, "Ana"))
        except roster.NicknameError as err:
            results.append(err.reason)

    threads = [threading.Thread(target=take, args=(f"owner{i}",)) for i in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == ["Ana"] + ["taken"] * 7 and list(roster.nicknames().values()) == ["Ana"]


def rows():
    def row(owner, dataset, state, acc, seconds=10.0, run="r"):
        return {
            "owner": owner,
            "dataset": dataset,
            "state": state,
            "best_acc": acc,
            "seconds": seconds,
            "model": "resnet20",
            "run": run,
            "epochs": 3,
        }

    return [
        row("a", "mnist-sample", "finished", 0.95, run="a1"),
        row("a", "mnist-sample", "finished", 0.97, run="a2"),
        row("a", "fashion-sample", "failed", None, run="a3"),
        row("b", "mnist-sample", "finished", 0.97, seconds=5.0, run="b1"),  # a tie, but faster
        row("b", "mnist-sample", "running", 0.99, run="b2"),  # not finished: not on the board
        row("c", "fashion-sample", "finished", 0.80, run="c1"),
        row(None, "mnist-sample", "finished", 0.99, run="shell"),  # the teacher's shell: not a student
    ]


def test_the_leaderboard_ranks_each_students_best_finished_run():
    board = roster.leaderboard(rows(), {"a": "Ana"}, "mnist-sample")
    assert [(b["rank"], b["owner"], b["run"], b["nickname"]) for b in board] == [
        (1, "b", "b1", None),
        (2, "a", "a2", "Ana"),
    ]
    assert roster.challenge_datasets(rows()) == ["mnist-sample", "fashion-sample"]


def test_the_overview_counts_each_students_runs():
    people = {p["owner"]: p for p in roster.overview(rows(), {"c": "Chen"})}
    assert (people["a"]["runs"], people["a"]["finished"], people["a"]["failed"], people["a"]["best_run"]) == (
        3,
        2,
        1,
        "a2",
    )
    assert (people["b"]["active"], people["b"]["best_acc"]) == (1, 0.97)
    assert people["c"]["nickname"] == "Chen" and people[None]["runs"] == 1


def class_app(monkeypatch, lang="en"):
    monkeypatch.setenv(classroom.TEACHER_ENV, "s3cret")
    monkeypatch.setattr(runs, "dispatch", lambda: [])  # runs stay queued: no processes
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120)
    at.query_params["lang"] = lang
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_student_names_themselves_once_and_their_runs_say_so(lab, monkeypatch, lang):
    at = class_app(monkeypatch, lang)
    cat = catalogue(lang)
    # AppTest keeps the frame's sidebar for the first run only: later runs are read from the
    # session's state (tests/browser checks the sidebar itself).
    field = next(w for w in at.sidebar.text_input if w.label == cat["roster.nickname"])
    field.set_value("<b>x</b>").run()  # refused, in the visitor's language
    assert at.session_state["nickname_problem"] == "characters" and not roster.nicknames()
    at = class_app(monkeypatch, lang)  # (a second run loses the sidebar: a fresh browser types a good one)
    next(w for w in at.sidebar.text_input if w.label == cat["roster.nickname"]).set_value("林 Lin").run()
    assert not at.exception and "nickname_problem" not in at.session_state
    assert list(roster.nicknames().values()) == ["林 Lin"]
    owner = next(iter(roster.nicknames()))
    runs.create(tiny_config(), owner=owner)
    theirs = runs.create(tiny_config(), owner=classroom.owner_id("another browser"))
    monitor().forget(theirs)  # the server's list of runs, read again now, not within its second
    at.switch_page("pages/train.py").run()
    table = next(d.value for d in at.dataframe if cat["roster.col.student"] in d.value.columns)
    students = sorted(table[cat["roster.col.student"]])
    other = classmates.short_id(classroom.owner_id("another browser"))  # an unnamed student, told apart
    assert students == sorted([cat["roster.you"].format(name="林 Lin"), cat["roster.anonymous_id"].format(id=other)])
    if lang == "zh":  # AppTest formats a Chinese page's select boxes outside its run: click in English
        return
    next(w for w in at.toggle if w.label == cat["train.only_mine"]).set_value(True).run()
    table = next(d.value for d in at.dataframe if cat["roster.col.student"] in d.value.columns)
    assert list(table[cat["roster.col.student"]]) == [cat["roster.you"].format(name="林 Lin")]


def test_the_leaderboard_is_everyones_and_the_overview_the_teachers(lab, monkeypatch):
    student = classroom.owner_id("a student's browser")
    roster.set_nickname(student, "Ana")
    run = runs.create(tiny_config(), owner=student)
    runs.update_status(run, state="finished", best_acc=0.9, started=1, ended=31)
    monitor().forget(run)
    at = class_app(monkeypatch)
    board = next(d.value for d in at.dataframe if EN["roster.col.rank"] in d.value.columns)
    assert list(board[EN["roster.col.student"]]) == ["Ana"] and list(board[EN["roster.col.best_acc"]]) == [0.9]
    assert EN["roster.overview.teacher_only"] in [c.value for c in at.caption]
    at.session_state["teacher"] = True
    at.run()
    overview = next(d.value for d in at.dataframe if EN["roster.col.runs"] in d.value.columns)
    assert list(overview[EN["roster.col.student"]]) == ["Ana"] and list(overview[EN["roster.col.runs"]]) == [1]


def test_a_single_user_server_has_no_class_section(lab):
    at = app("home")
    assert EN["roster.title"] not in [s.value for s in at.subheader] and not at.sidebar.text_input
