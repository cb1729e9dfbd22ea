"""Data: explore any registered dataset, and add a folder of your own images."""

import tempfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from resnet_core import classroom, data, explore
from resnet_core.folders import FolderError
from ui.common import actor, chart_text, dataset_label, error_text, monitor, plain, require_frame, tight
from ui.i18n import class_name, t, t_or

require_frame("pages/data.py")

# Each view is cached by the dataset's name and version: a folder deleted and added again under
# the same name is other images.
cached = st.cache_data(show_spinner=False, max_entries=32)


@cached
def describe(name: str, version: int) -> data.DatasetInfo:
    return data.describe(name)


@cached
def grid(name: str, version: int, per_class: int) -> dict:
    return explore.sample_grid(name, per_class)


@cached
def means(name: str, version: int) -> dict:
    return explore.class_means(name)


@cached
def histogram(name: str, version: int) -> dict:
    return explore.intensity_histogram(name)


@cached
def pca(name: str, version: int) -> dict:
    return explore.pca_map(name)


def skip_reason(reason: str) -> str:
    """Why folders.scan skipped files (its counter's keys), in the visitor's language."""
    return t_or(f"skip.{reason}", reason)


def source_line(name: str, source: str) -> str:
    """Where a dataset came from: the bundled sets' own sentence; a zip by the name it was uploaded
    under; a server folder by its last part only (the server's folders are not a student's business)."""
    if name in data.BUILTIN:
        return t_or(f"source.{name}", plain(source))
    if source.startswith("zip: "):
        return plain(source)
    return t("data.source_folder", folder=plain(Path(source).name))


def delete_box(name: str) -> None:
    """A folder dataset's delete button, for whoever added it and the teacher; the runs trained on
    it keep their weights (their gallery says the data has gone)."""
    if not classroom.may_act(actor(), data.folder_owner(name)):
        return
    with st.popover(t("data.delete"), icon=":material/delete:"):
        used = sum(r["dataset"] == name for r in monitor().runs())
        st.write(t("data.delete.confirm", name=plain(name), runs=used))
        if st.button(t("data.delete.button"), type="primary", key="data_delete"):
            try:
                data.remove_folder(name, actor=actor())
            except (ValueError, OSError, classroom.ClassroomError) as err:
                st.error(error_text(err))
                return
            st.session_state["data_deleted"] = name  # the next run finds it gone and shows the first
            st.rerun()


st.title(t("data.title"))
just_added = st.session_state.pop("data_added", None)  # by the form below, on the page's last run
if just_added:
    st.session_state["data_name"] = just_added["name"]
    counts = {k: just_added[k] for k in ("classes", "train", "test")}
    st.success(t("data.add.done", name=plain(just_added["name"]), **counts))
    for reason, n in just_added["skipped"].items():
        st.write(t("data.add.skip_line", n=n, reason=skip_reason(reason)))
if deleted := st.session_state.pop("data_deleted", None):
    st.success(t("data.delete.done", name=plain(deleted)))
names = data.list_datasets()
if st.session_state.get("data_name") not in names:  # deleted since: by its owner, the teacher, the shell
    # Set, not dropped: a dropped key lets the browser keep showing the old name over the first
    # dataset's numbers (Streamlit 1.67).
    st.session_state["data_name"] = names[0]
name = st.selectbox(t("data.dataset"), names, format_func=dataset_label, key="data_name")
version = data.version(name)
if data.is_present(name):
    try:
        info = describe(name, version)
    except (FolderError, data.DatasetUnavailable) as err:  # a registered folder whose files have gone
        st.error(t("data.gone", error=error_text(err)))
        st.stop()
else:
    st.info(t("data.absent", name=name))
    if not st.button(t("data.download"), type="primary"):
        st.stop()
    try:
        with st.spinner(t("data.downloading")):
            info = data.describe(name, download=True)
    except data.DatasetUnavailable as err:
        st.error(error_text(err))
        st.stop()

cols = st.columns(4)
cols[0].metric(t("data.classes"), len(info.classes))
cols[1].metric(t("data.train"), f"{sum(info.counts['train']):,}")
cols[2].metric(t("data.test"), f"{sum(info.counts['test']):,}")
cols[3].metric(t("data.size"), f"{info.channels}×{info.size}×{info.size}")
st.caption(t("data.norm", mean=", ".join(f"{m:.4f}" for m in info.mean), std=", ".join(f"{v:.4f}" for v in info.std)))
st.caption(t("data.source", source=source_line(name, info.source)))
if info.skipped:
    detail = ", ".join(f"{n} {skip_reason(reason)}" for reason, n in info.skipped.items())
    st.warning(t("data.skipped", detail=detail))
if data.get_spec(name).kind == "folder":
    delete_box(name)


def explore_tabs() -> None:
    """The five views; each reads image files, which a folder may have lost since it was added."""
    tabs = st.tabs(
        [t("data.tab.counts"), t("data.tab.samples"), t("data.tab.means"), t("data.tab.hist"), t("data.tab.pca")]
    )
    with tabs[0]:
        col = {k: t(f"data.col.{k}") for k in ("class", "split", "images", "intensity", "channel", "pixels", "label")}
        counts = pd.DataFrame(
            {
                col["class"]: [chart_text(class_name(c)) for c in info.classes] * 2,  # Plotly renders HTML tags
                col["split"]: [t("data.train")] * len(info.classes) + [t("data.test")] * len(info.classes),
                col["images"]: info.counts["train"] + info.counts["test"],
            }
        )
        bars = px.bar(counts, x=col["class"], y=col["images"], color=col["split"], barmode="group")
        st.plotly_chart(tight(bars), key="counts")
    with tabs[1]:
        for label, images in grid(name, version, 10).items():
            st.image(list(images), caption=None, width=56)
            st.caption(plain(class_name(label)))  # a folder's name is the user's text, never Markdown
    with tabs[2]:
        mean_imgs = means(name, version)
        # How many images each average is of: a folder's are a sample, not the whole split.
        counts = mean_imgs["counts"].values()
        st.caption(t("data.means_caption", n=sum(counts), per=max(counts, default=0), of=mean_imgs["of"]))
        averages = mean_imgs["means"]
        st.image(list(averages.values()), caption=[plain(class_name(c)) for c in averages], width=84)
    with tabs[3]:
        hist = histogram(name, version)
        st.caption(t("data.hist_caption", n=hist["images"], of=hist["of"]))
        centres = [(a + b) / 2 for a, b in zip(hist["edges"][:-1], hist["edges"][1:])]
        frame = pd.DataFrame(
            [
                {col["intensity"]: c, col["channel"]: t(f"data.channel.{ch}"), col["pixels"]: n}
                for ch, ns in hist["counts"].items()
                for c, n in zip(centres, ns)
            ]
        )
        lines = px.line(frame, x=col["intensity"], y=col["pixels"], color=col["channel"], log_y=True)
        st.plotly_chart(tight(lines), key="hist")
    with tabs[4]:
        emb = pca(name, version)
        pc1, pc2, label = t("data.col.pc1"), t("data.col.pc2"), col["label"]
        frame = pd.DataFrame({pc1: emb["x"], pc2: emb["y"], label: [chart_text(class_name(c)) for c in emb["label"]]})
        st.caption(t("data.pca_caption", n=len(frame), a=emb["explained"][0], b=emb["explained"][1]))
        st.plotly_chart(tight(px.scatter(frame, x=pc1, y=pc2, color=label, hover_data=[label])), key="pca")


try:
    explore_tabs()
except (FolderError, ValueError, OSError) as err:  # imaging.ImageError is a ValueError
    st.error(t("data.gone", error=error_text(err)))  # file names are the uploader's text


with st.expander(t("data.add.title")):
    st.write(t("data.add.help"))
    new_name = st.text_input(t("data.add.name"), placeholder="flowers")
    upload = st.file_uploader(t("data.add.zip"), type=["zip"], max_upload_size=classroom.limit("zip_mb"))
    root = classroom.folders_root()  # unset: no student can read the server's directories
    server_dir = st.text_input(t("data.add.dir_root", root=root), placeholder="flowers") if root else ""
    if st.button(t("data.add.button"), disabled=not new_name or not (upload or server_dir)):
        try:
            with st.spinner(t("data.add.working")), tempfile.TemporaryDirectory() as tmp:
                source = classroom.check_server_folder(server_dir) if server_dir else Path(tmp) / "upload.zip"
                if not server_dir:
                    classroom.check_upload("zip", upload.size, upload.name)
                    source.write_bytes(upload.getvalue())
                    classroom.check_dataset_room(data.folders_bytes(), data.unpacked_bytes(source), upload.name)
                added = data.add_folder(  # a browser: nothing beyond its folder
                    new_name, source, confine=True, owner=actor().owner, label=upload.name if upload else ""
                )
            # The list above was drawn before the dataset existed: run the page again with it chosen,
            # and say what was added there.
            st.session_state["data_added"] = {
                "name": added.name,
                "classes": len(added.classes),
                "train": sum(added.counts["train"]),
                "test": sum(added.counts["test"]),
                "skipped": dict(added.skipped or {}),
            }
            st.rerun()
        except (FolderError, ValueError, data.DatasetUnavailable, classroom.ClassroomError) as err:
            st.error(error_text(err))  # it may quote a zip member's name: the uploader's text
