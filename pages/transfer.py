"""Transfer: a backbone from a run, ImageNet or a .pth file, a new head, a choice of what trains;
and the strategies compared side by side when labels are few (``ui/compare.py``)."""

import streamlit as st

from resnet_core import classroom, data, models, runs, transfer, weights
from resnet_core import config as cfg
from resnet_core.checkpoints import CheckpointError, load_checkpoint
from ui import compare
from ui import pretrained as weights_ui
from ui.common import (
    actor,
    checkpoint_index,
    checkpoint_label,
    checkpoints,
    dataset_label,
    error_text,
    network_reachable,
    plain,
    require_frame,
)
from ui.i18n import t

require_frame("pages/transfer.py")
SIZES = [32, 64, 96, 128, 160, 192, 224, 256]  # input sides offered for ImageNet backbones
SCALES = [1.0, 0.3, 0.1, 0.03]  # the backbone's learning rate, as a share of the head's


def choose_source(spec) -> tuple[str | None, str | None, str | None]:
    """(pretrained, arch, why launching is blocked) from the source the user picks."""
    source = st.radio(
        t("transfer.source"),
        ["run", "imagenet", "upload"],
        format_func=lambda s: t(f"transfer.src.{s}"),
        horizontal=True,
    )
    if source == "run":
        rows = checkpoints()  # the shipped ones at least
        row = st.selectbox(t("transfer.run"), rows, index=checkpoint_index(rows), format_func=checkpoint_label)
        pretrained = row["checkpoint"]
        try:
            return pretrained, load_checkpoint(pretrained)["arch"], None
        except CheckpointError as err:  # the run list is up to a second old: deleted meanwhile
            st.error(error_text(err))
            return None, None, "none"
    if source == "imagenet":
        archs = models.with_imagenet_weights()
        arch = st.selectbox(t("transfer.arch"), archs, index=default_arch(archs))
        got = weights_ui.box(weights.default_for(arch).name, key="transfer_get_weights")
        return "imagenet", arch, None if got else t("transfer.get_first")
    limit_mb = classroom.limit("weights_mb")
    upload = st.file_uploader(t("transfer.upload"), type=["pth", "pt"], max_upload_size=limit_mb)
    arch = st.selectbox(t("transfer.arch"), models.list_models())
    if upload is None:
        return None, arch, "none"
    try:
        return str(transfer.keep_upload(upload.getvalue(), upload.name, data.lab_home() / "uploads")), arch, None
    except (ValueError, classroom.ClassroomError) as err:
        st.error(error_text(err))  # it names the uploaded file: the uploader's text
        return None, arch, "none"


def default_arch(archs: list[str]) -> int:
    """The first model whose ImageNet weights are on this server; else, offline, the ResNet-50
    that npm's registry can bring (resnet50_v1); else the first."""
    for i, arch in enumerate(archs):
        if transfer.imagenet_cached(arch):
            return i
    if not network_reachable() and "resnet50_v1" in archs:
        return archs.index("resnet50_v1")
    return 0


def percent(share: float) -> str:
    """A share as few digits as it needs: "100", "23", "0.57" (a head is under 1 % of a ResNet)."""
    return f"{100 * share:.0f}" if share >= 0.1 else f"{100 * share:.2g}"


def show_plan(view: dict, spec, arch: str) -> None:
    """What the backbone is fed and what became of each of its tensors."""
    plan, report = view["plan"], view["report"]
    rounded = {k: [round(v, 4) for v in getattr(plan, k)] for k in ("mean", "std")} if plan.mean is not None else {}
    stats = t("transfer.stats", **rounded) if rounded else t("transfer.stats_own")
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
    image_size = None
    if pretrained == "imagenet":
        native = models.imagenet_preprocessing(arch).image_size
        image_size = st.select_slider(t("transfer.size"), SIZES, value=native, help=t("transfer.size_help", n=native))
    draft = transfer.draft_config(target, spec.preset, arch, pretrained, image_size)
    try:
        view = transfer.preview(draft, len(spec.classes), spec.channels, spec.size)
    except (CheckpointError, ValueError) as err:
        st.error(error_text(err))
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
            "transfer.mode", mode=t(f"transfer.mode.{m}"), n=counts[m][0], share=percent(counts[m][0] / counts[m][1])
        ),
    )
    a, b, c = st.columns(3)
    epochs = a.number_input(t("train.epochs"), 1, 200, min(draft.epochs, 5))
    lr = b.number_input(t("train.lr"), 1e-6, 1.0, 0.01 if mode != "all" else draft.lr, format="%.4f")
    scale = c.select_slider(
        t("transfer.scale"), SCALES, value=0.1, disabled=mode != "all", help=t("transfer.scale_help")
    )
    if st.button(t("transfer.launch"), type="primary", disabled=bool(blocked)):
        try:
            config = transfer.fine_tune_config(draft, mode, epochs, lr, scale)
            run_dir = runs.launch(config, actor=actor())
            st.session_state["watch"] = str(run_dir)
        except (cfg.ConfigError, classroom.ClassroomError, CheckpointError) as err:
            st.error(error_text(err))
            return
        # What was launched, said exactly: the backbone, what trains, the data and the run's name.
        what = t(f"transfer.mode.{mode}")
        st.success(t("transfer.launched", arch=arch, mode=what, dataset=dataset_label(target), run=run_dir.name))
        st.page_link("pages/train.py", label=t("transfer.follow"), icon=":material/arrow_forward:")


st.title(t("transfer.title"))
st.write(t("transfer.intro"))
tab_tune, tab_compare = st.tabs([t("transfer.tab.tune"), t("transfer.tab.compare")])
with tab_tune:
    fine_tune()
with tab_compare:
    compare.tab()
