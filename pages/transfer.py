"""Transfer: a backbone from a run, ImageNet or a .pth file, a new head, a choice of what trains;
and the strategies compared side by side when labels are few."""

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from resnet_core import classroom, data, models, runs, strategies, transfer
from resnet_core import config as cfg
from resnet_core.checkpoints import CheckpointError, load_checkpoint
from ui.common import actor, checkpoint_label, checkpoints, dataset_label, network_reachable, plain, require_frame
from ui.i18n import t

require_frame("pages/transfer.py")
SIZES = [32, 64, 96, 128, 160, 192, 224, 256]  # input sides offered for ImageNet backbones
SCALES = [1.0, 0.3, 0.1, 0.03]  # the backbone's learning rate, as a share of the head's
POLL_S = 2.0  # a comparison's table refreshes this often while a run of it is queued or training


def choose_source(spec) -> tuple[str | None, str | None, str | None]:
    """(pretrained, arch, why launching is blocked) from the source the user picks."""
    source = st.radio(
        t("transfer.source"),
        ["run", "imagenet", "upload"],
        format_func=lambda s: t(f"transfer.src.{s}"),
        horizontal=True,
    )
    if source == "run":
        rows = checkpoints()
        if not rows:
            st.info(t("transfer.no_runs"))
            return None, None, "none"
        row = st.selectbox(t("transfer.run"), rows, format_func=checkpoint_label)
        pretrained = str(Path(row["path"]) / "best.pt")
        try:
            return pretrained, load_checkpoint(pretrained)["arch"], None
        except CheckpointError as err:  # the run list is up to a second old: deleted meanwhile
            st.error(plain(err))
            return None, None, "none"
    if source == "imagenet":
        arch = st.selectbox(t("transfer.arch"), models.with_imagenet_weights())
        cached = transfer.imagenet_cached(arch)
        return "imagenet", arch, None if cached or network_reachable() else t("transfer.offline", arch=arch)
    limit_mb = classroom.limit("weights_mb")
    upload = st.file_uploader(t("transfer.upload"), type=["pth", "pt"], max_upload_size=limit_mb)
    arch = st.selectbox(t("transfer.arch"), models.list_models())
    if upload is None:
        return None, arch, "none"
    try:
        classroom.check_upload("weights", upload.size, upload.name)
        classroom.prune_uploads(data.lab_home() / "uploads")
        return str(transfer.save_uploaded_weights(upload.getvalue(), data.lab_home() / "uploads")), arch, None
    except (ValueError, classroom.ClassroomError) as err:
        st.error(plain(err))  # it names the uploaded file: the uploader's text
        return None, arch, "none"


def show_plan(view: dict, spec, arch: str) -> None:
    """What the backbone is fed and what became of each of its tensors."""
    plan, report = view["plan"], view["report"]
    stats = t("transfer.stats_own") if plan.mean is None else t("transfer.stats", mean=plan.mean, std=plan.std)
    st.caption(t("transfer.plan", size=plan.size, channels=plan.channels, stats=stats))
    if spec.channels == 1 and plan.channels == 3:
        st.caption(t("transfer.gray_to_rgb"))
    if report is None:
        return
    st.caption(
        t(
            "transfer.report",
            loaded=len(report["loaded"]),
            skipped=len(report["skipped"]),
            missing=len(report["missing"]),
        )
    )
    if report.get("mismatch"):
        (st.error if not report["loaded"] else st.warning)(
            t("transfer.mismatch", arch=arch, detail=plain(report["mismatch"]))
        )
    if report["fresh"]:
        st.info(t("transfer.fresh", modules=", ".join(report["fresh"])))


def fine_tune() -> None:
    target = st.selectbox(t("transfer.target"), data.list_datasets(), format_func=dataset_label, key="transfer_target")
    spec = data.get_spec(target)
    pretrained, arch, blocked = choose_source(spec)
    if blocked == "none":
        return
    preset = cfg.TrainConfig(**{**spec.preset, "dataset": target})
    image_size = None
    if pretrained == "imagenet":
        native = models.imagenet_preprocessing(arch).image_size
        image_size = st.select_slider(t("transfer.size"), SIZES, value=native, help=t("transfer.size_help", n=native))
    draft = cfg.TrainConfig(**{**preset.to_dict(), "model": arch, "pretrained": pretrained, "image_size": image_size})
    try:
        view = transfer.preview(draft, len(spec.classes), spec.channels, spec.size)
    except (CheckpointError, ValueError) as err:
        st.error(plain(err))
        return
    left, right = st.columns(2)
    left.markdown(t("transfer.before"))
    left.code(view["before"], language=None)
    right.markdown(t("transfer.after"))
    right.code(view["after"], language=None)
    show_plan(view, spec, arch)
    if view["report"] is not None and not view["report"]["loaded"]:
        blocked = t("transfer.nothing_loaded", arch=arch)
    if blocked:
        st.warning(blocked)
    counts = view["trainable"]
    mode = st.radio(
        t("transfer.trainable"),
        list(counts),
        horizontal=True,
        format_func=lambda m: t(
            "transfer.mode", mode=t(f"transfer.mode.{m}"), n=counts[m][0], share=counts[m][0] / counts[m][1]
        ),
    )
    a, b, c = st.columns(3)
    epochs = a.number_input(t("train.epochs"), 1, 200, min(preset.epochs, 5))
    lr = b.number_input(t("train.lr"), 1e-6, 1.0, 0.01 if mode != "all" else preset.lr, format="%.4f")
    scale = c.select_slider(
        t("transfer.scale"), SCALES, value=0.1, disabled=mode != "all", help=t("transfer.scale_help")
    )
    if st.button(t("transfer.launch"), type="primary", disabled=bool(blocked)):
        change = {
            "trainable": mode,
            "epochs": int(epochs),
            "lr": lr,
            "backbone_lr_scale": scale if mode == "all" else 1.0,
        }
        config = cfg.TrainConfig(**{**draft.to_dict(), **change})
        try:
            st.session_state["watch"] = str(runs.launch(config.validate(), actor=actor()))
        except (cfg.ConfigError, classroom.ClassroomError, CheckpointError) as err:
            st.error(plain(err))
            return
        st.success(t("transfer.launched"))
        st.page_link("pages/train.py", label=t("transfer.follow"), icon=":material/arrow_forward:")


def compare() -> None:
    st.write(t("compare.intro"))
    rows = checkpoints()
    if not rows:
        st.info(t("compare.no_backbone"))
        if st.button(t("compare.train_backbone")):
            preset = data.get_spec("mnist-sample").preset
            try:
                st.session_state["watch"] = str(runs.launch(cfg.TrainConfig(**preset), actor=actor()))
                st.success(t("transfer.launched"))
            except (cfg.ConfigError, classroom.ClassroomError) as err:
                st.error(plain(err))
    else:
        with st.form("compare_form"):
            first = next((i for i, r in enumerate(rows) if r["dataset"] == "mnist-sample"), 0)
            row = st.selectbox(t("compare.backbone"), rows, index=first, format_func=checkpoint_label)
            names = data.list_datasets()
            target = st.selectbox(
                t("transfer.target"), names, index=names.index("fashion-sample"), format_func=dataset_label
            )
            a, b = st.columns(2)
            k = a.number_input(t("compare.k"), 1, 5000, 50, help=t("compare.k_help"))
            epochs = b.number_input(t("train.epochs"), 1, 100, strategies.RECIPE["epochs"])
            go = st.form_submit_button(t("compare.launch"), type="primary")
        if go:
            try:
                backbone = Path(row["path"]) / "best.pt"
                group = strategies.launch(backbone, target, int(k), actor=actor(), epochs=int(epochs))
                st.session_state["compare_group"] = group
            except (
                cfg.ConfigError,
                classroom.ClassroomError,
                CheckpointError,
                ValueError,
                data.DatasetUnavailable,
            ) as err:
                st.error(plain(err))
    groups = strategies.groups()
    if groups:
        mine = st.session_state.get("compare_group")
        group = st.selectbox(
            t("compare.group"), groups, index=groups.index(mine) if mine in groups else 0, format_func=strategies.label
        )
        active = any(r["state"] in runs.ACTIVE for r in strategies.table(group))
        st.fragment(run_every=POLL_S if active else None)(results)(group, active)


def results(group: str, was_active: bool) -> None:
    """The comparison's table and chart, refreshed while its runs train."""
    rows = strategies.table(group)
    if was_active and not any(r["state"] in runs.ACTIVE for r in rows):
        st.rerun()  # all done: stop polling
    frame = pd.DataFrame(
        {
            t("compare.col.strategy"): [t(f"compare.strategy.{r['strategy']}") for r in rows],
            "K": [r["k"] for r in rows],
            t("compare.col.state"): [t(f"state.{r['state']}") for r in rows],
            t("compare.col.epochs"): [f"{r['epochs_done']}/{r['epochs']}" for r in rows],
            t("compare.col.acc"): [r["test_acc"] for r in rows],
            t("compare.col.best"): [r["best_acc"] for r in rows],
            t("compare.col.trainable"): [r["trainable"] for r in rows],
            t("compare.col.seconds"): [r["seconds"] for r in rows],
        }
    )
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            t("compare.col.acc"): st.column_config.NumberColumn(format="percent"),
            t("compare.col.best"): st.column_config.NumberColumn(format="percent"),
            t("compare.col.trainable"): st.column_config.NumberColumn(format="localized"),
        },
    )
    done = frame.dropna(subset=[t("compare.col.acc")])
    if len(done):
        fig = px.bar(
            done,
            x=t("compare.col.strategy"),
            y=t("compare.col.acc"),
            text_auto=".1%",
            hover_data=[t("compare.col.trainable"), t("compare.col.seconds")],
            range_y=[0, 1],
            height=320,
        )
        st.plotly_chart(fig, key=f"compare-{group}")


st.title(t("transfer.title"))
st.write(t("transfer.intro"))
tab_tune, tab_compare = st.tabs([t("transfer.tab.tune"), t("transfer.tab.compare")])
with tab_tune:
    fine_tune()
with tab_compare:
    compare()
