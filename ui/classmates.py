"""The class on the pages: a student's nickname (sidebar), who made a run (runs table), the
class challenge's leaderboard and the teacher's overview (Home). Logic in resnet_core.roster."""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from resnet_core import classroom, roster
from ui.common import actor, dataset_label, monitor, plain
from ui.i18n import t


@st.cache_data(max_entries=4, show_spinner=False)
def _names(path: str, mtime_ns: int) -> dict[str, str]:
    return roster.nicknames()


def names() -> dict[str, str]:
    """The nicknames, read again only when their file changes (every student's page shows them)."""
    path = roster.names_path()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return _names(str(path), mtime)


def short_id(owner: str) -> str:
    """Four digits that tell unnamed students apart in a table (digits: hex letters read as words)."""
    return f"{int(hashlib.sha256(owner.encode()).hexdigest()[:8], 16) % 10000:04d}"


def student(owner: str | None, known: dict[str, str]) -> str:
    """Who made a run, as a table cell (text, never Markdown: the cell is not rendered)."""
    if not owner:
        return t("roster.server")
    if owner == actor().owner:  # "you", and the name the others see, once there is one
        return t("roster.you", name=known[owner]) if owner in known else t("roster.you_unnamed")
    return known.get(owner) or t("roster.anonymous_id", id=short_id(owner))


def _keep() -> None:
    """The nickname field's on_change: kept for this browser's owner id, or why not."""
    typed = st.session_state.get("nickname_typed", "")
    try:
        roster.set_nickname(actor().owner, typed)
        st.session_state.pop("nickname_problem", None)
        st.session_state["nickname_edit"] = False  # kept: the sidebar shows it again
    except roster.NicknameError as err:
        st.session_state["nickname_problem"] = err.reason  # said in the language of the next run
        st.session_state["nickname_edit"] = True  # the box stays open, saying why


def nickname_box() -> None:
    """Sidebar, in class mode: this browser's nickname, chosen once and kept with it (its
    cookie), changeable. A single-user server has no class to name oneself to."""
    if not classroom.enabled():
        return
    mine = names().get(actor().owner)
    if mine and not st.session_state.get("nickname_edit"):
        st.caption(t("roster.nickname.is", name=plain(mine)))
        if st.button(t("roster.nickname.change"), key="nickname_change", type="tertiary"):
            st.session_state["nickname_edit"] = True
            st.rerun()
        return
    st.text_input(
        t("roster.nickname"),
        value=mine or "",
        max_chars=roster.MAX_LEN,
        key="nickname_typed",
        on_change=_keep,
        placeholder=t("roster.nickname.placeholder"),
        help=t("roster.nickname.help"),
    )
    if problem := st.session_state.get("nickname_problem"):
        st.error(t(f"roster.nickname.{problem}", n=roster.MAX_LEN))


def leaderboard(rows: list[dict]) -> None:
    """The class challenge: every student's best finished run on one dataset."""
    datasets = roster.challenge_datasets(rows)
    if not datasets:
        st.caption(t("roster.board.empty"))
        return
    dataset = st.selectbox(t("roster.board.dataset"), datasets, format_func=dataset_label, key="board_dataset")
    known = names()
    board = roster.leaderboard(rows, known, dataset)
    st.dataframe(
        pd.DataFrame(
            {
                t("roster.col.rank"): [b["rank"] for b in board],
                t("roster.col.student"): [student(b["owner"], known) for b in board],
                t("roster.col.best_acc"): [b["best_acc"] for b in board],
                t("roster.col.model"): [b["model"] for b in board],
                t("roster.col.epochs"): [b["epochs"] for b in board],
                t("roster.col.seconds"): [b["seconds"] for b in board],
            }
        ),
        hide_index=True,
        key="leaderboard",
        column_config={t("roster.col.best_acc"): st.column_config.NumberColumn(format="percent")},
    )


def overview(rows: list[dict]) -> None:
    """The teacher's view: every student, what they ran, how it went."""
    if not roster.may_see_overview(actor()):
        st.caption(t("roster.overview.teacher_only"))
        return
    known = names()
    people = roster.overview(rows, known)
    st.dataframe(
        pd.DataFrame(
            {
                t("roster.col.student"): [student(p["owner"], known) for p in people],
                t("roster.col.runs"): [p["runs"] for p in people],
                t("roster.col.finished"): [p["finished"] for p in people],
                t("roster.col.active"): [p["active"] for p in people],
                t("roster.col.failed"): [p["failed"] for p in people],
                t("roster.col.best_acc"): [p["best_acc"] for p in people],
                t("roster.col.run"): [p["best_run"] or "" for p in people],  # its name holds its dataset
            }
        ),
        hide_index=True,
        key="class_overview",
        column_config={t("roster.col.best_acc"): st.column_config.NumberColumn(format="percent")},
    )


def section() -> None:
    """Home's "The class" in class mode: the leaderboard for everyone, the overview for the teacher."""
    if not classroom.enabled():
        return
    rows = monitor().runs()
    st.subheader(t("roster.title"))
    board, who = st.tabs([t("roster.board"), t("roster.overview")])
    with board:
        leaderboard(rows)
    with who:
        overview(rows)
