"""The Transfer page's second tab: four transfer strategies launched as one job, then their
table and chart, refreshed while the runs train (the logic is in ``resnet_core.strategies``)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from resnet_core import classroom, data, features, strategies
from resnet_core import config as cfg
from resnet_core.checkpoints import CheckpointError
from ui import pretrained
from ui.common import actor, checkpoint_label, checkpoints, dataset_label, error_text, tight
from ui.i18n import t

POLL_S = 2.0  # a comparison's table refreshes this often while a run of it is queued or training
USER_ERRORS = (cfg.ConfigError, classroom.ClassroomError, CheckpointError, ValueError, data.DatasetUnavailable)


def choose_backbone() -> str | None:
    """A finished run (this browser's own digits ResNet, else the teacher's pin, else the shipped
    one) or the ImageNet ResNet-50, got here when the server lacks it; None until it is here."""
    rows = checkpoints()  # the shipped ones at least, a ResNet-20 on digits among them
    paths = [r["checkpoint"] for r in rows]
    choice = st.selectbox(
        t("compare.backbone"),
        [*paths, strategies.IMAGENET],
        index=strategies.default_backbone(rows, actor().owner),
        format_func=lambda p: (
            t("compare.imagenet") if p == strategies.IMAGENET else checkpoint_label(rows[paths.index(p)])
        ),
        key="compare_backbone",
    )
    if choice != strategies.IMAGENET:
        return choice
    return strategies.IMAGENET if pretrained.box("resnet50", key="compare_get_weights") else None


def launch_form() -> None:
    """The backbone, then target, K and epochs: for the ImageNet ResNet-50 a folder of photos by
    default, every labelled image and the photo recipe's few epochs."""
    backbone = choose_backbone()
    if backbone is None:
        return
    photos = strategies.is_imagenet(backbone)
    names = data.list_datasets()
    recipe = strategies.PHOTO_RECIPE if photos else strategies.RECIPE
    if photos:
        # Folders of photos only: the bundled 28 px sets at 224 px through a ResNet-50 would keep the
        # server's one training slot busy for hours (14,000 images x 3 strategies x 3 epochs).
        names = [n for n in names if n not in data.BUILTIN]
        st.caption(t("compare.imagenet_hint"))
        st.caption(t("compare.features_kept", **features.kept()))
        if not names:
            st.info(t("compare.needs_folder"))
            st.page_link("pages/data.py", label=t("compare.go_data"), icon=":material/arrow_forward:")
            return
    target_default = names[0] if photos else strategies.TARGET
    with st.form(f"compare_form_{photos}"):  # other defaults for the other kind of backbone
        target = st.selectbox(t("transfer.target"), names, index=names.index(target_default), format_func=dataset_label)
        a, b = st.columns(2)
        k = a.number_input(t("compare.k"), 0, 5000, 0 if photos else 50, help=t("compare.k_help"))
        epochs = b.number_input(t("train.epochs"), 1, 100, recipe["epochs"])
        go = st.form_submit_button(t("compare.launch"), type="primary")
    if go:
        try:
            group = strategies.launch(backbone, target, int(k) or None, actor=actor(), epochs=int(epochs))
            st.session_state["compare_group"] = group
        except USER_ERRORS as err:
            st.error(error_text(err))


def results(group: str, was_active: bool) -> None:
    """The comparison's table and chart (a fragment, polled while its runs train)."""
    rows = strategies.table(group)
    if was_active and not strategies.active(rows):
        st.rerun()  # all done: stop polling
    col = {c: t(f"compare.col.{c}") for c in ("strategy", "state", "epochs", "acc", "best", "trainable", "seconds")}
    frame = pd.DataFrame(
        {
            col["strategy"]: [t(f"compare.strategy.{r['strategy']}") for r in rows],
            "K": [str(r["k"]) if r["k"] else t("compare.k_all") for r in rows],  # one type: Arrow refuses a mix
            col["state"]: [t(f"state.{r['state']}") for r in rows],
            col["epochs"]: [f"{r['epochs_done']}/{r['epochs']}" for r in rows],
            col["acc"]: [r["test_acc"] for r in rows],
            col["best"]: [r["best_acc"] for r in rows],
            col["trainable"]: [r["trainable"] for r in rows],
            col["seconds"]: [r["seconds"] for r in rows],
        }
    )
    percent = st.column_config.NumberColumn(format="percent")
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            col["acc"]: percent,
            col["best"]: percent,
            col["trainable"]: st.column_config.NumberColumn(format="localized"),
        },
    )
    done = frame.dropna(subset=[col["acc"]])
    if len(done):
        fig = px.bar(
            done,
            x=col["strategy"],
            y=col["acc"],
            text_auto=".1%",
            hover_data=[col["trainable"], col["seconds"]],
            range_y=[0, 1],
            height=320,
        )
        st.plotly_chart(tight(fig), key=f"compare-{group}")


def group_label(group: str) -> str:
    found = strategies.label(group)
    if found is None:
        return group
    backbone = t("compare.shipped_backbone") if found["shipped"] else found["backbone"]
    return t(
        "compare.group_label",
        dataset=dataset_label(found["dataset"]),
        k=found["k"] or t("compare.k_all"),
        backbone=backbone,
        when=found["when"],
    )


def tab() -> None:
    st.write(t("compare.intro"))
    launch_form()
    groups = strategies.groups()
    if not groups:
        return
    mine = st.session_state.get("compare_group")
    group = st.selectbox(
        t("compare.group"), groups, index=groups.index(mine) if mine in groups else 0, format_func=group_label
    )
    active = strategies.active(strategies.table(group))
    st.fragment(run_every=POLL_S if active else None)(results)(group, active)
