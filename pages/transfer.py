"""Transfer: a backbone from a run, ImageNet or a .pth file, a new head, a choice of what trains."""

from pathlib import Path

import streamlit as st

from resnet_core import classroom, data, models, runs, transfer
from resnet_core import config as cfg
from resnet_core.checkpoints import CheckpointError, describe_mismatch, load_checkpoint, load_state_dict_file
from ui.common import actor, checkpoint_label, checkpoints, dataset_label, network_reachable, plain, require_frame
from ui.i18n import t

require_frame("pages/transfer.py")

st.title(t("transfer.title"))
st.write(t("transfer.intro"))

target = st.selectbox(t("transfer.target"), data.list_datasets(), format_func=dataset_label, key="transfer_target")
spec = data.get_spec(target)
source = st.radio(
    t("transfer.source"), ["run", "imagenet", "upload"], format_func=lambda s: t(f"transfer.src.{s}"), horizontal=True
)

pretrained, arch, blocked, source_classes = None, None, None, 1000
if source == "run":
    rows = checkpoints()
    if not rows:
        st.info(t("transfer.no_runs"))
        st.stop()
    row = st.selectbox(t("transfer.run"), rows, format_func=checkpoint_label)
    pretrained = str(Path(row["path"]) / "best.pt")
    ckpt = load_checkpoint(pretrained)
    arch, source_classes = ckpt["arch"], len(ckpt["classes"])
elif source == "imagenet":
    arch = st.selectbox(t("transfer.arch"), models.list_models("torchvision"))
    pretrained = "imagenet"
    if not transfer.imagenet_cached(arch) and not network_reachable():
        blocked = t("transfer.offline", arch=arch)
else:
    limit_mb = classroom.limit("weights_mb")
    upload = st.file_uploader(t("transfer.upload"), type=["pth", "pt"], max_upload_size=limit_mb)
    arch = st.selectbox(t("transfer.arch"), models.list_models())
    if upload is None:
        st.stop()
    try:
        classroom.check_upload("weights", upload.size, upload.name)
        classroom.prune_uploads(data.lab_home() / "uploads")
        pretrained = str(transfer.save_uploaded_weights(upload.getvalue(), data.lab_home() / "uploads"))
    except (ValueError, classroom.ClassroomError) as err:
        st.error(plain(err))  # it names the uploaded file: the uploader's text
        st.stop()

size = spec.size
if blocked:
    st.warning(blocked)
if source == "upload":
    state = load_state_dict_file(pretrained)
    source_classes = transfer.head_classes(state)
view = transfer.preview(arch, source_classes, len(spec.classes), spec.channels, size)
left, right = st.columns(2)
left.markdown(t("transfer.before"))
left.code(view["before"], language=None)
right.markdown(t("transfer.after"))
right.code(view["after"], language=None)
if source == "upload":
    model = models.get_model(arch, num_classes=len(spec.classes), in_channels=spec.channels, image_size=size)
    report = transfer.load_backbone(model, state)
    st.caption(
        t(
            "transfer.report",
            loaded=len(report["loaded"]),
            skipped=len(report["skipped"]),
            missing=len(report["missing"]),
        )
    )
    head = transfer.find_head(model)[0] + "."
    # The old head is always dropped (it is replaced); any other tensor left out means another
    # architecture: name what differs.
    if any(not k.startswith(head) for k in report["skipped"]) or not report["loaded"]:
        body = {k: v for k, v in model.state_dict().items() if not k.startswith(head)}
        detail = describe_mismatch(body, {k: v for k, v in state.items() if not k.startswith(head)})
        (st.error if not report["loaded"] else st.warning)(t("transfer.mismatch", arch=arch, detail=plain(detail)))
        blocked = blocked or (t("transfer.nothing_loaded", arch=arch) if not report["loaded"] else None)

modes = list(view["trainable"])
mode = st.radio(
    t("transfer.trainable"),
    modes,
    index=0,
    horizontal=True,
    format_func=lambda m: t(
        "transfer.mode",
        mode=t(f"transfer.mode.{m}"),
        n=view["trainable"][m][0],
        share=view["trainable"][m][0] / view["trainable"][m][1],
    ),
)
preset = cfg.TrainConfig(**{**spec.preset, "dataset": target})
a, b = st.columns(2)
epochs = a.number_input(t("train.epochs"), 1, 200, min(preset.epochs, 5))
lr = b.number_input(t("train.lr"), 1e-6, 1.0, 0.01 if mode != "all" else preset.lr, format="%.4f")
if st.button(t("transfer.launch"), type="primary", disabled=bool(blocked)):
    config = cfg.TrainConfig(
        **{
            **preset.to_dict(),
            "model": arch,
            "pretrained": pretrained,
            "trainable": mode,
            "epochs": int(epochs),
            "lr": lr,
        }
    )
    try:
        st.session_state["watch"] = str(runs.launch(config.validate(), actor=actor()))
    except (cfg.ConfigError, classroom.ClassroomError, CheckpointError) as err:
        st.error(plain(err))
        st.stop()
    st.success(t("transfer.launched"))
    st.page_link("pages/train.py", label=t("transfer.follow"), icon=":material/arrow_forward:")
