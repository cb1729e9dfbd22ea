"""Cached loaders and small renderers the pages share; the work itself is in resnet_core."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import streamlit as st

from resnet_core import classroom, data, predict, runs, system
from ui.i18n import t

FRAME_KEY = "_resnet_lab_frame"


def require_frame(page_path: str) -> None:
    """Send a visit that bypassed the frame through it, keeping the page it asked for.

    Until some session has run ``st.navigation``, Streamlit serves the files in pages/ on their
    own (its older multipage mode), so the first visitor after a restart who follows a deep
    link (``/predict``) would get a page with no sidebar or language. Seen with Streamlit 1.67.
    """
    if not st.session_state.get(FRAME_KEY):
        from ui.i18n import language

        st.session_state["_goto"] = page_path
        st.session_state.setdefault("lang", language())  # switch_page drops ?lang=zh
        st.switch_page("streamlit_app.py")


@st.cache_resource(max_entries=8, show_spinner=False)
def _predictor(path: str, mtime: float) -> predict.Predictor:
    # Keyed by modification time: a best.pt rewritten by a running training reloads.
    return predict.Predictor.from_checkpoint(path)


def load_predictor(path: str | Path) -> predict.Predictor:
    """A shared, read-only model for ``path``: never mutate what this returns."""
    return _predictor(str(path), os.path.getmtime(path))


@st.cache_data(ttl=600, show_spinner=False)
def environment() -> dict:
    return system.environment()


def checkpoints() -> list[dict]:
    """Runs that have a best.pt, newest first."""
    return [r for r in runs.list_runs() if r["has_best"]]


def checkpoint_label(row: dict) -> str:
    acc = f"{row['best_acc']:.1%}" if row.get("best_acc") is not None else "-"
    return f"{row['run']} ({row['model']}, {acc})"


def dataset_label(name: str) -> str:
    """Built-in datasets have titles in the catalogues; a user's folder keeps its own name."""
    return t(f"dataset.{name}") if name in data.BUILTIN else data.get_spec(name).title


def current_checkpoint() -> str | None:
    """The checkpoint chosen in the sidebar, if it still exists."""
    path = st.session_state.get("checkpoint")
    return path if path and Path(path).is_file() else None


def sidebar() -> None:
    """Language, device in use, and the "current" checkpoint, on every page."""
    from ui.i18n import LANGUAGES, language

    with st.sidebar:
        st.session_state.setdefault("lang", language())
        st.selectbox(t("sidebar.language"), list(LANGUAGES), format_func=LANGUAGES.get, key="lang")
        st.query_params["lang"] = st.session_state["lang"]  # a copied link keeps the language
        env = environment()
        gpu = [d for d in env["devices"] if d["kind"] != "cpu"]
        device = (
            f"{gpu[0]['kind'].upper()}: {gpu[0]['name']}" if gpu else t("sidebar.cpu", n=env["devices"][0]["cores"])
        )
        st.caption(t("sidebar.device", device=device))
        ckpts = checkpoints()
        if ckpts:
            paths = [str(Path(r["path"]) / "best.pt") for r in ckpts]
            labels = dict(zip(paths, [checkpoint_label(r) for r in ckpts]))
            current = current_checkpoint()
            st.selectbox(
                t("sidebar.checkpoint"),
                paths,
                index=paths.index(current) if current in paths else 0,
                format_func=labels.get,
                key="checkpoint",
            )
        else:
            st.caption(t("sidebar.no_checkpoint"))
        teacher_sign_in()


def actor() -> classroom.Actor:
    """This browser, as the owner of the runs it starts, and whether the teacher signed in here.

    Streamlit's XSRF cookie is random per browser and outlives a reload, so a student who
    refreshes keeps their runs without any token in the address bar (a projected or shared
    link would hand it out); where there is no cookie (tests, XSRF off) the session keeps one.
    """
    token = st.context.cookies.get("_streamlit_xsrf") or st.session_state.setdefault(
        "_owner_token", secrets.token_hex(16)
    )
    return classroom.Actor(owner=classroom.owner_id(token), teacher=bool(st.session_state.get("teacher")))


def teacher_sign_in() -> None:
    """In classroom mode, a password field for the teacher token; once right, kept for the session."""
    if not classroom.enabled():
        return
    if st.session_state.get("teacher"):
        st.caption(t("sidebar.teacher_on"))
        return
    token = st.text_input(t("sidebar.teacher"), type="password", key="teacher_token")
    if token and classroom.is_teacher_token(token):
        st.session_state["teacher"] = True
        st.rerun()
    elif token:
        st.caption(t("sidebar.teacher_wrong"))


MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def plain(text: str) -> str:
    """A user's text (a class folder's name) made inert inside Markdown: every mark escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


@st.cache_data(ttl=600, show_spinner=False)
def network_reachable() -> bool:
    return system.network_reachable()
