"""The Train page's past runs: a table of every run on the server, and watch, download, delete."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from resnet_core import classroom, export, runs
from ui import classmates
from ui.common import actor, error_text, monitor
from ui.i18n import t


def show(rows: list[dict]) -> None:
    st.subheader(t("train.runs"))
    me = actor().owner
    if st.toggle(t("train.only_mine"), key="only_mine", help=t("train.only_mine_help")):
        rows = [r for r in rows if r.get("owner") == me]
    if not rows:
        st.caption(t("train.no_runs"))
        return
    table(rows)
    actions(rows)


def table(rows: list[dict]) -> None:
    # From columns, not from the rows' dicts: pandas takes a third of the time (every student's
    # Start press draws this table again).
    known = classmates.names()
    columns = {t("train.col.run"): [r["run"] for r in rows]}
    columns[t("roster.col.student")] = [classmates.student(r.get("owner"), known) for r in rows]
    columns[t("train.col.dataset")] = [r["dataset"] for r in rows]
    columns[t("train.col.model")] = [r["model"] for r in rows]
    columns[t("train.col.state")] = [t(f"state.{r['state']}") for r in rows]
    # Epochs done, as the live panel counts them (status.json's "epoch" is the number finished).
    columns[t("train.col.epochs")] = [f"{r['epoch'] or 0}/{r['epochs']}" for r in rows]
    columns[t("train.col.best_acc")] = [r["best_acc"] for r in rows]
    columns[t("train.col.seconds")] = [r["seconds"] for r in rows]
    st.dataframe(
        pd.DataFrame(columns),
        hide_index=True,
        key="runs_table",
        column_config={t("train.col.best_acc"): st.column_config.NumberColumn(format="percent")},
    )


def actions(rows: list[dict]) -> None:
    pick = st.selectbox(t("train.pick"), [r["path"] for r in rows], format_func=lambda p: Path(p).name)
    a, b, c = st.columns(3)
    if a.button(t("train.watch")):
        st.session_state["watch"] = pick
        st.rerun()
    best = Path(pick) / "best.pt"
    if best.is_file():  # the weights are read when the button is pressed, not on every rerun
        b.download_button(
            t("train.download"),
            partial(export.state_dict_bytes, str(best)),
            file_name=f"{Path(pick).name}.pth",
            on_click="ignore",
        )
    if c.button(t("train.delete")):
        try:
            runs.delete(Path(pick), actor=actor())
            monitor().forget(pick)
            st.session_state.pop("watch", None)
            st.rerun()
        except (RuntimeError, classroom.ClassroomError) as err:
            st.error(error_text(err))
