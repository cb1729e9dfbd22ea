"""Cached loaders and small renderers the pages share; the work itself is in resnet_core."""

from __future__ import annotations

import contextlib
import gc
import html
import os
import re
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePath

import numpy as np
import streamlit as st
from streamlit.runtime import Runtime

from resnet_core import catalog, classroom, data, folders, messages, predict, system
from resnet_core import monitor as runs_monitor
from ui.i18n import t

FRAME_KEY = "_resnet_lab_frame"


def frame() -> st.Page:
    """The frame every page stands in: page config, navigation over pages/, the shared sidebar.

    ``streamlit_app.py`` runs it, then the page it returns.
    """
    serve_once()
    st.set_page_config(page_title="ResNet Lab", page_icon="🧱", layout="wide")
    page = st.navigation(
        [
            st.Page("pages/home.py", title=t("nav.home"), icon=":material/home:", default=True),
            st.Page("pages/theory.py", title=t("nav.theory"), icon=":material/school:"),
            st.Page("pages/data.py", title=t("nav.data"), icon=":material/dataset:"),
            st.Page("pages/train.py", title=t("nav.train"), icon=":material/model_training:"),
            st.Page("pages/transfer.py", title=t("nav.transfer"), icon=":material/swap_horiz:"),
            st.Page("pages/predict.py", title=t("nav.predict"), icon=":material/image_search:"),
            st.Page("pages/teach.py", title=t("nav.teach"), icon=":material/photo_camera:"),
        ]
    )
    st.session_state[FRAME_KEY] = True
    sidebar()
    return page


def require_frame(page_path: str) -> None:
    """Draw the frame around ``page_path`` when Streamlit ran the page without it.

    Until some session has run ``st.navigation``, Streamlit serves the files in pages/ on their
    own (its older multipage mode), so the first visitor after a restart who follows a deep
    link (``/predict``) would get a page with no sidebar or language (Streamlit 1.67). The page
    then draws the frame and runs itself inside it, as ``streamlit_app.py`` would, in the same
    script run: a deep link costs one run (sending it through ``streamlit_app.py`` with
    ``st.switch_page`` cost three). ``page.run()`` matters: it gives the page's widgets the ids
    they get in every later run, so the first click after a deep link is not lost.
    """
    if not st.session_state.get(FRAME_KEY):
        frame().run()  # st.navigation resolves to this same page; here FRAME_KEY is set
        st.stop()  # the page ran inside the frame; the rest of this outer copy must not


# The page server yields the CPU to training processes. Under Linux's autogroup scheduling
# (on by default where a server is started from a terminal or ssh session) the nice value of
# a thread only ranks it against threads of its own session, and every trainer has its own
# session (runs.spawn), so a plain os.nice in the server changes nothing for the trainer
# (measured: two busy loops in two sessions split a core 50/50 with one at nice 10, 90/10
# when its session's autogroup is at nice 10). So the server sets its autogroup's nice value;
# without autogroups it renices its own threads instead (new threads inherit the value).
# Default 0, an equal share with each trainer: at 10 the server got about a tenth of a core a
# trainer kept busy, less than thirty students' live panels ask for (15 refreshes a second), so its
# queue of script runs grew without end: pressing Start together, nobody saw their run for 90 s
# and some pages never finished a run (issue 16). A teacher who prefers training speed to a
# responsive class can still set it.
SERVER_NICE = int(os.environ.get("RESNET_LAB_SERVER_NICE", 0))  # 0 turns it off


def _yield_to_training() -> None:
    autogroup = Path("/proc/self/autogroup")
    try:
        if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1" and autogroup.exists():
            autogroup.write_text(str(SERVER_NICE))
            return
    except OSError:
        pass
    for task in Path("/proc/self/task").glob("*") if Path("/proc/self/task").is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            os.setpriority(os.PRIO_PROCESS, int(task.name), SERVER_NICE)


def real_server() -> bool:
    """A Streamlit server runs this script, not AppTest, which runs it inside the test process:
    AppTest installs a mock Runtime, so ``st.runtime.exists()`` is true there too (Streamlit 1.67)."""
    return st.runtime.exists() and type(Runtime.instance()) is Runtime


@st.cache_resource(show_spinner=False)
def serve_once() -> bool:
    """Once per server process: one torch thread for the page server's own compute (theory
    measurements, predictions), and a lower CPU priority than the trainers. Not under AppTest,
    whose pages run inside the test process."""
    if not real_server():  # under AppTest it would renice the test's whole terminal session
        return False
    import torch

    torch.set_num_threads(1)
    if SERVER_NICE:
        _yield_to_training()
    # Everything imported so far (torch, plotly, pandas: millions of objects) lives as long as
    # the server; frozen, Python's own full collections skip it (Streamlit's after every run are
    # off: .streamlit/config.toml), so they stay cheap and come often enough to free page cycles.
    gc.collect()
    gc.freeze()
    return True


@st.cache_resource(show_spinner=False)
def monitor() -> runs_monitor.Monitor:
    """One view of the runs for every browser: a poll per run per second, not per browser."""
    return runs_monitor.Monitor(max_age=1.0, max_points=600)  # a point per batch up to 600 batches: smoothable


@st.cache_resource(show_spinner=False)
def _jobs() -> tuple[ThreadPoolExecutor, dict, threading.Lock]:
    # One worker: measurements queue behind each other on the server's one torch thread.
    return ThreadPoolExecutor(1, thread_name_prefix="resnet-lab-measure"), {}, threading.Lock()


def in_background(fn, *args):
    """``fn(*args)`` computed once per server in a worker thread: its result, or None while it runs.

    ``st.cache_data`` computes in the visitor's own script run, so the first visitor would wait
    for the whole measurement with the page half drawn; here the page is drawn at once and polls
    (see ``pages/theory.py``). A failed computation raises here and is tried again next time.
    """
    pool, jobs, lock = _jobs()
    key = (fn.__module__, fn.__qualname__, args)
    with lock:
        job = jobs.get(key)
        if job is None:
            job = jobs[key] = pool.submit(fn, *args)
        if job.done() and job.exception() is not None:
            del jobs[key]
    return job.result() if job.done() else None


@st.cache_resource(max_entries=8, show_spinner=False)
def _predictor(path: str, mtime: float) -> predict.Predictor:
    # Keyed by modification time: a best.pt rewritten by a running training reloads.
    return predict.Predictor.from_checkpoint(path)


def load_predictor(path: str | Path) -> predict.Predictor:
    """A shared, read-only model for ``path``: never mutate what this returns."""
    return _predictor(str(path), os.path.getmtime(path))


@st.cache_resource(max_entries=2, show_spinner=False)
def _weights_predictor(name: str, mtime: float) -> predict.Predictor:
    return predict.Predictor.from_weights(name, fetch=False)


def load_weights_predictor(cfg) -> predict.Predictor:
    """A shared, read-only model for pretrained weights already on disk (``cfg``: their entry)."""
    from resnet_core import weights

    return _weights_predictor(cfg.name, os.path.getmtime(weights.path_of(cfg)))


def enlarge(image: np.ndarray, side: int = 140) -> np.ndarray:
    """Nearest-neighbour upscaling, so a 28 px input is seen pixel by pixel."""
    k = max(1, side // max(image.shape[:2]))
    return image.repeat(k, 0).repeat(k, 1)


@st.cache_data(ttl=600, show_spinner=False)
def environment() -> dict:
    return system.environment()


@st.cache_resource(show_spinner=False)
def devices() -> list[dict]:
    """For the sidebar: the devices only, without environment()'s network probe (up to 2 s)."""
    return system.devices()


def checkpoints() -> list[dict]:
    """Runs that have a best.pt, newest first (the shared list, at most a second old), then the
    shipped checkpoints; each row's ``checkpoint`` is the file."""
    return catalog.checkpoints(monitor().runs())


def default_checkpoint(rows: list[dict]) -> int:
    """Index of the checkpoint this browser opens first: its own newest finished run, else the
    teacher's pin, else the newest from the command line, else the shipped preset
    (resnet_core.catalog); never another student's run."""
    return catalog.default(rows, actor().owner, catalog.pinned())


def checkpoint_index(rows: list[dict]) -> int:
    """The sidebar's choice where it is among ``rows``, else :func:`default_checkpoint`."""
    current = current_checkpoint()
    paths = [r["checkpoint"] for r in rows]
    return paths.index(current) if current in paths else default_checkpoint(rows)


def checkpoint_label(row: dict) -> str:
    acc = f"{row['best_acc']:.1%}" if row.get("best_acc") is not None else "-"
    if row.get("kind") == "shipped":
        return t("checkpoint.shipped", dataset=dataset_label(row["dataset"]), model=row["model"], acc=acc)
    if row.get("title"):  # a student's own classes, by the name they gave, and when (titles repeat)
        return f"{row['title']} ({row['run'][:15]}, {row['model']}, {acc})"
    return f"{row['run']} ({row['model']}, {acc})"


def dataset_label(name: str) -> str:
    """Built-in datasets have titles in the catalogues; a folder is its own name, said to be one in
    the visitor's language (the core's title says "(your folder)", in English, to everyone)."""
    if name in data.BUILTIN:
        return t(f"dataset.{name}")
    return t("dataset.folder", name=name) if name in folders.list_folders(data.data_root()) else name


def current_checkpoint() -> str | None:
    """The checkpoint chosen in the sidebar, if it still exists."""
    path = st.session_state.get("checkpoint")
    return path if path and Path(path).is_file() else None


def sidebar() -> None:
    """Language, device in use, and the "current" checkpoint, on every page."""
    from ui import classmates  # it draws on this module's helpers
    from ui.i18n import LANGUAGES, language

    with st.sidebar:
        st.session_state.setdefault("lang", language())
        st.selectbox(t("sidebar.language"), list(LANGUAGES), format_func=LANGUAGES.get, key="lang")
        st.query_params["lang"] = st.session_state["lang"]  # a copied link keeps the language
        found = devices()
        gpu = [d for d in found if d["kind"] != "cpu"]
        device = f"{gpu[0]['kind'].upper()}: {gpu[0]['name']}" if gpu else t("sidebar.cpu", n=found[0]["cores"])
        st.caption(t("sidebar.device", device=device))
        ckpts = checkpoints()  # never empty: the shipped checkpoints are always there
        paths = [r["checkpoint"] for r in ckpts]
        labels = dict(zip(paths, [checkpoint_label(r) for r in ckpts]))
        # Until the visitor chooses, the default follows what happens: their own run finishing, the
        # teacher pinning one. A choice sticks while its file exists.
        chosen = st.session_state.get("checkpoint")
        if chosen not in paths or chosen == st.session_state.get("checkpoint_auto"):
            st.session_state["checkpoint"] = st.session_state["checkpoint_auto"] = paths[default_checkpoint(ckpts)]
        st.selectbox(t("sidebar.checkpoint"), paths, format_func=labels.get, key="checkpoint", on_change=chose)
        pin_for_class(st.session_state["checkpoint"])
        classmates.nickname_box()
        teacher_sign_in()


def chose() -> None:
    """The visitor picked a checkpoint: it stays theirs, whatever the default becomes, and Predict
    opens it, not the ImageNet model chosen there before."""
    st.session_state["checkpoint_auto"] = None
    st.session_state.pop("predict_imagenet", None)


def pin_for_class(path: str) -> None:
    """The teacher's button: the sidebar's checkpoint becomes what every browser opens first
    (one without a finished run of its own)."""
    if not (classroom.enabled() and st.session_state.get("teacher")):
        return
    if catalog.pinned() == path:
        st.caption(t("sidebar.pinned"))
    elif st.button(t("sidebar.pin"), help=t("sidebar.pin_help")):
        try:
            catalog.pin(path, actor())
            st.toast(t("sidebar.pinned"))
        except (OSError, classroom.ClassroomError) as err:
            st.error(error_text(err))


def actor() -> classroom.Actor:
    """This browser, as the owner of the runs it starts, and whether the teacher signed in here.

    Streamlit's XSRF cookie is random per browser and outlives a reload, so a student who
    refreshes keeps their runs without any token in the address bar (a projected or shared
    link would hand it out); where there is no cookie (tests, XSRF off) the session keeps one.
    """
    token = st.context.cookies.get("_streamlit_xsrf")
    if not isinstance(token, str) or not token:  # AppTest hands out a mock here
        token = st.session_state.setdefault("_owner_token", secrets.token_hex(16))
    return classroom.Actor(owner=classroom.owner_id(xsrf_secret(token)), teacher=bool(st.session_state.get("teacher")))


def xsrf_secret(cookie: str) -> str:
    """The browser's token inside Streamlit's XSRF cookie ("2|mask|masked token|time").

    The server sends the cookie again on every page load with a fresh 4-byte mask, so its text
    changes with each reload while the token under the mask stays: ownership hangs on the token.
    Streamlit keeps its decoder private, hence these few lines.
    """
    parts = cookie.strip("\"'").split("|")
    try:
        mask, masked = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except (IndexError, ValueError):
        return cookie  # another format: the text itself is all there is
    if parts[0] != "2" or len(mask) != 4:
        return cookie
    return bytes(b ^ mask[i % 4] for i, b in enumerate(masked)).hex()


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


MARKDOWN_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation mark: all are escapable


def plain(text: str) -> str:
    """A user's text (a class folder's name, a zip member, a file's keys) made inert inside
    Markdown: every mark escaped, and line breaks (a heading or a rule on the next line) spaced."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", re.sub(r"\s", " ", str(text)))


def error_text(err: BaseException | str) -> str:
    """What the core said (a refusal raised, a sentence returned), in the visitor's language and
    inert: its ``error.<key>`` from the catalogue, every value the user's text made plain, a path
    named by its place in the lab or by its name alone (never the server's folders); anything
    without a key as written, made plain."""
    said = messages.message(err)
    if said is None:
        return plain(err)

    def shown(value) -> str:
        if isinstance(value, (messages.Message, messages.LabError)):
            return error_text(value)
        if isinstance(value, PurePath):
            with contextlib.suppress(ValueError):
                return plain(Path(value).resolve().relative_to(data.lab_home()))
            return plain(value.name)
        return plain(without_paths(str(value)))

    return t(f"error.{said.key}", **{k: shown(v) for k, v in said.values.items()})


# An absolute path inside a sentence that is not ours (an OS error's "No such file or directory:
# '/srv/lab/uploads/w.pth'", a torch message): from the first "/" not inside a word, every folder.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:/[^/\s'\"]+)+/(?=[^/\s'\"]+)")


def without_paths(text: str) -> str:
    """``text`` with every absolute path cut to its last part: a student never reads the server's
    folders, whatever sentence a library wrote."""
    return ABSOLUTE_PATH.sub("", text)


def tight(fig):
    """A figure without a title of its own, with a thin top margin. Plotly keeps 100 px above a plot
    for a title, and most charts here have none (a subheader or a tab names them), so each stood
    under a band of blank page. Set on the figure: a default template would also replace
    Streamlit's theme (its colours)."""
    fig.update_layout(margin={"t": 30, "b": 40})
    return fig


def chart_text(text: str) -> str:
    """A user's text for a Plotly label: Plotly renders <b>, <br>, <span style> and <a href> there."""
    return html.escape(str(text), quote=False)


@st.cache_data(ttl=600, show_spinner=False)
def network_reachable() -> bool:
    return system.network_reachable()
