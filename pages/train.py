"""Train: a form built from TrainConfig, live progress read from the run directory, past runs."""

from pathlib import Path

import streamlit as st

from resnet_core import classroom, data, models, precision, runs
from resnet_core import config as cfg
from ui import past_runs, replay, side_by_side
from ui.common import actor, dataset_label, error_text, monitor, require_frame
from ui.curves import curves
from ui.i18n import language, option, t

require_frame("pages/train.py")
# Seconds between refreshes of the live numbers, by the watched run's state; the charts refresh
# CHARTS_EVERY times slower (serialising three plotly figures is most of a refresh's cost), and
# an ended run is not polled at all. Figures: benchmarks/README.md, "a class on one 2-core server".
POLL_S = {"queued": 2.0, "starting": 1.0, "resuming": 1.0, "running": 2.0}
CHARTS_EVERY = 3

st.title(t("train.title"))


# ---- the form: the dataset's preset fills it; every field is a TrainConfig field
with st.container(border=True):  # the lesson a teacher comes for, first
    st.subheader(t("pair.title"))
    side_by_side.pair_form()
st.subheader(t("train.one"))
dataset = st.selectbox(t("train.dataset"), data.list_datasets(), format_func=dataset_label, key="train_dataset")
preset = cfg.TrainConfig(**{**data.get_spec(dataset).preset, "dataset": dataset})
with st.form("train_form"):
    a, b, c = st.columns(3)
    model = a.selectbox(t("train.model"), models.list_models(), index=models.list_models().index(preset.model))
    epochs = b.number_input(t("train.epochs"), 1, 500, preset.epochs)
    batch = c.number_input(t("train.batch"), 1, 4096, preset.batch_size)
    optimizer = a.selectbox(
        t("train.optimizer"), cfg.OPTIMIZERS, index=cfg.OPTIMIZERS.index(preset.optimizer), format_func=option
    )
    lr = b.number_input(t("train.lr"), 1e-6, 10.0, preset.lr, format="%.4f")
    schedule = c.selectbox(
        t("train.schedule"), cfg.SCHEDULES, index=cfg.SCHEDULES.index(preset.schedule), format_func=option
    )
    decay = a.number_input(t("train.decay"), 0.0, 1.0, preset.weight_decay, format="%.5f")
    smoothing = b.number_input(t("train.smoothing"), 0.0, 0.9, preset.label_smoothing)
    augment = c.selectbox(
        t("train.augment"), cfg.AUGMENTATIONS, index=cfg.AUGMENTATIONS.index(preset.augment), format_func=option
    )
    device = a.selectbox(t("train.device"), cfg.DEVICES, format_func=option)
    seed = b.number_input(t("train.seed"), 0, 2**31 - 1, preset.seed)
    # Ticked only where some device here computes bf16 in hardware: on a CPU without bf16 units the
    # run stays in fp32 anyway, and a ticked box there promised what does not happen.
    native = any(precision.resolve(d).bf16 for d in ("cuda", "cpu"))
    amp = c.checkbox(
        t("train.amp"), preset.amp and native, help=t("train.amp_help", cpu=precision.resolve("cpu").label)
    )
    compiled = c.checkbox(t("train.compile"), preset.compile)
    start = st.form_submit_button(t("train.start"), type="primary")


def backbone(preset: cfg.TrainConfig, model: str) -> dict:
    """A folder's preset may start from ImageNet weights (a linear probe of its model, data.folder_preset).
    Another model chosen instead keeps "imagenet" where it has such weights; otherwise it starts from
    scratch, everything training (the run would fail on its first line, or train a random head only)."""
    if not preset.pretrained or model == preset.model:
        return {"pretrained": preset.pretrained, "trainable": preset.trainable}
    if preset.pretrained == "imagenet" and model in models.with_imagenet_weights():
        return {"pretrained": "imagenet", "trainable": preset.trainable}
    return {"pretrained": None, "trainable": "all"}


if start:
    config = cfg.TrainConfig(
        **{
            **preset.to_dict(),
            "model": model,
            "epochs": int(epochs),
            "batch_size": int(batch),
            "optimizer": optimizer,
            "lr": lr,
            "schedule": schedule,
            "weight_decay": decay,
            "label_smoothing": smoothing,
            "augment": augment,
            "device": device,
            "seed": int(seed),
            "amp": amp,
            "compile": compiled,
            **backbone(preset, model),
        }
    )
    try:
        st.session_state["watch"] = str(runs.launch(config.validate(), actor=actor()))
    except (cfg.ConfigError, classroom.ClassroomError, OSError) as err:
        st.error(error_text(err))


# ---- the live run: polled from disk (one shared poll per run for every browser), so a reload
# or a second browser sees the same thing
def watched() -> Path | None:
    """The run this browser follows: its own choice, else the newest active run, else the newest run.

    The choice is pinned in the session, so a run that finishes stays on screen.
    """
    chosen = st.session_state.get("watch")
    if chosen and Path(chosen).is_dir():
        return Path(chosen)
    rows = monitor().runs()
    active = [r for r in rows if r["state"] in runs.ACTIVE]
    pick = (active or rows or [None])[0]
    if pick is None:
        return None
    st.session_state["watch"] = pick["path"]
    return Path(pick["path"])


def act(action, run_dir: Path) -> None:
    """Stop or resume, with the session as the actor; a refusal is one sentence, not a traceback.

    Done, the whole page runs again with the run read afresh: the live panel's pace is set
    outside it, so a resumed run drawn by a panel that had stopped polling stayed "stopped" with
    its Resume button until a reload (issue 17)."""
    try:
        action(run_dir, actor=actor())
    except classroom.NotYours:
        st.error(t("train.not_yours"))
        return
    except classroom.ClassroomError as err:  # a limit of the class: its sentence names it
        st.error(error_text(err))
        return
    except RuntimeError as err:
        st.error(error_text(err))
        return
    monitor().forget(run_dir)  # the shared view may be up to a second old
    replay.stop()
    st.rerun()


run_dir = watched()
monitor().dispatch_if_due()
interval = POLL_S.get(monitor().progress(run_dir)["status"]["state"]) if run_dir else None


@st.fragment(run_every=interval)
def live() -> None:
    if run_dir is None:
        st.caption(t("train.none_running"))
        return
    if not run_dir.is_dir():  # deleted from another browser
        st.session_state.pop("watch", None)
        st.rerun()
    p = monitor().progress(run_dir)
    state, status = p["status"]["state"], p["status"]
    if POLL_S.get(state) != interval:
        st.rerun()  # started or ended: poll at the new pace, or stop polling
    st.subheader(t("train.live", run=p["run"]))
    if status.get("precision"):  # written when the trainer starts: what it computes in
        st.caption(t("train.precision", device=status.get("device", "-"), precision=status["precision"]))
    if state == "queued":
        st.info(t("train.queued", pos=p["queue_position"], limit=runs.max_concurrent()))
    elif state in ("failed", "interrupted"):  # the error may quote a file name: plain text
        st.error(t(f"train.{state}", error=error_text(runs.failure(status))))
    # Progress, loss and speed all come from the last batch event, so they describe the same
    # moment; the time left is the recorder's (status.json), measured from the first batch on.
    # A linear probe first runs the frozen backbone once over every image: say so, it has no batches.
    probe = p.get("features")
    if probe and probe["state"] == "computing" and state in runs.ACTIVE:
        st.info(t("train.features", images=probe["images"]))
    elif probe and probe["state"] == "done":
        st.caption(t("train.features_done", images=probe["images"], cached=probe["cached"], seconds=probe["seconds"]))
    last, done, total = p["last_batch"], len(p["epochs"]), p["config"]["epochs"]
    st.progress(min(done / total, 1.0), text=t("train.epoch_progress", done=done, total=total))
    live_batch = last if last and state in runs.ACTIVE else None
    if live_batch:
        step, steps = live_batch["step"], live_batch["steps"]
        st.progress(step / steps, text=t("train.batch_progress", epoch=live_batch["epoch"] + 1, step=step, steps=steps))
    cols = st.columns(5)
    cols[0].metric(t("train.state"), t(f"state.{state}"))
    cols[1].metric(t("train.loss"), f"{last['loss']:.4f}" if last else "-")
    cols[2].metric(t("train.speed"), f"{live_batch['images_per_s']:.0f}" if live_batch else "-")
    eta = status.get("eta_s")
    waiting = state in runs.STARTED and eta is None
    cols[3].metric(t("train.eta"), t("train.eta_wait") if waiting else f"{eta:.0f} s" if eta is not None else "-")
    cols[4].metric(t("train.best"), f"{status['best_acc']:.2%}" if status.get("best_acc") is not None else "-")
    # One button, not in columns: each refresh of each browser sends every element again, and a row
    # of columns is five more (thirty students: 15 refreshes a second).
    if state in runs.ACTIVE and st.button(t("train.stop"), key=f"stop-{p['run']}"):
        act(runs.stop, run_dir)
    if (
        state in runs.RESUMABLE
        and (run_dir / "last.pt").is_file()
        and st.button(t("train.resume"), key=f"resume-{p['run']}")
    ):
        act(runs.resume, run_dir)


replaying = replay.follow(run_dir)


@st.fragment(run_every=replay.EVERY_S if replaying else interval and interval * CHARTS_EVERY)
def charts() -> None:
    if run_dir is None or not run_dir.is_dir():
        if replay.active(run_dir):  # deleted mid-replay: stop polling
            replay.stop()
            st.rerun()
        return
    p = monitor().progress(run_dir)
    if not p["epochs"] and not p["batch_loss"]:
        return  # nothing to draw yet (a queued run): no figures built for it
    weight = st.slider(t("train.smooth"), 0.0, 0.99, 0.8, key="smooth") if p["batch_loss"] else 0.8
    if replay.active(run_dir):
        if p["status"]["state"] not in runs.ENDED:  # resumed (here or elsewhere): live again
            replay.stop()
            st.rerun()
        replay.draw(run_dir, weight)
        return
    if p["status"]["state"] in runs.ENDED:  # a class can watch an ended run learn again, slower
        replay.controls(run_dir)
    loss, acc, batch = curves(str(run_dir), p["version"], language(), weight)
    if p["epochs"]:
        left, right = st.columns(2)
        left.plotly_chart(loss, key="loss_curve")
        right.plotly_chart(acc, key="acc_curve")
    if p["batch_loss"]:
        st.plotly_chart(batch, key="batch_curve")


live()
charts()

st.subheader(t("overlay.title"))
side_by_side.overlay(monitor().runs(), str(run_dir) if run_dir else None)

# ---- past runs, from disk
past_runs.show(monitor().runs())
