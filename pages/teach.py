"""Your classes: a student names a few classes, adds photos by camera or upload, trains the head
of the ImageNet ResNet-50 on them, points the camera to see what it learned (per-class bars,
Grad-CAM, the nearest examples), and saves the model as a run (resnet_core/teach.py)."""

import hashlib

import pandas as pd
import plotly.express as px
import streamlit as st

from resnet_core import classroom, teach
from resnet_core.messages import LabError
from ui import pretrained
from ui.common import actor, chart_text, error_text, load_weights_predictor, plain, require_frame
from ui.i18n import t

require_frame("pages/teach.py")

IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"]
THUMB = 96  # px: a thumbnail of an example
CAMERA = "teach_camera"  # where the page's one camera is: "add" (photos to a class) or "try"
# Every refusal the core words for a visitor (TeachError, ImageError, ClassroomError, a full disk's
# CheckpointError): one sentence on the page, never a traceback.
REFUSALS = (LabError,)


def camera_here(place: str, label: str, key: str):
    """The page's one camera, in ``place`` ("add" or "try"); elsewhere a button that brings it.
    Two live cameras on one page would each ask for the device: a phone gives the second none,
    and a browser's second stream can stay black."""
    if st.session_state.setdefault(CAMERA, "add") == place:
        return st.camera_input(label, key=key)
    st.button(t("teach.camera.here"), key=f"{key}_here", icon=":material/photo_camera:", on_click=_move, args=(place,))
    return None


def _move(place: str) -> None:
    st.session_state[CAMERA] = place


def refuse(err: Exception) -> None:
    st.error(error_text(err))  # it may quote a class or file name: the student's text, inert


st.title(t("teach.title"))
st.caption(t("teach.intro"))
cfg = pretrained.box(teach.NETWORK, key="teach_get")
if cfg is None:
    st.stop()
net = load_weights_predictor(cfg)
teach.prune_if_due()  # old photos go with the other uploads (classroom's upload_days)

me = actor()
owner = me.owner
if me.teacher:  # the teacher may look at and change any student's classes
    rows = teach.owners()
    others = [r["owner"] for r in rows if r["owner"] != me.owner]
    if others:
        labels = {r["owner"]: f"{r['owner'][:8]} · {', '.join(r['classes'])} ({r['examples']})" for r in rows}
        owner = st.selectbox(
            t("teach.teacher.whose"),
            [me.owner, *others],
            format_func=lambda o: t("teach.teacher.mine") if o == me.owner else labels[o],
            key="teach_owner",
        )

state = teach.read_state(owner)
names = [c["name"] for c in state["classes"]]

# --- 1. classes ------------------------------------------------------------------------------
st.subheader(t("teach.classes"))
with st.form("teach_new_class", clear_on_submit=True, border=False):
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    new_name = left.text_input(
        t("teach.class.name"), placeholder=t("teach.class.placeholder"), max_chars=teach.MAX_NAME
    )
    if right.form_submit_button(t("teach.class.add"), icon=":material/add:"):
        try:
            teach.add_class(owner, new_name)
            st.rerun()
        except REFUSALS as err:
            refuse(err)

if not names:
    st.info(t("teach.none_yet"))
    st.stop()

for c in state["classes"]:
    with st.container(border=True):
        head, remove = st.columns([5, 1], vertical_alignment="center")
        head.markdown(f"**{plain(c['name'])}** · {t('teach.count', n=len(c['examples']))}")  # the student's text
        if remove.button(t("teach.class.remove"), key=f"drop-{c['name']}", icon=":material/delete:"):
            try:
                teach.remove_class(owner, c["name"])  # another tab may have removed it first
                st.rerun()
            except REFUSALS as err:
                refuse(err)
        shown = [e for e in c["examples"] if teach.example_path(owner, e["id"]).is_file()]
        for start in range(0, len(shown), 8):
            cols = st.columns(8)
            for col, e in zip(cols, shown[start : start + 8]):
                col.image(str(teach.example_path(owner, e["id"])), width=THUMB)
                if col.button("✕", key=f"del-{e['id']}", help=t("teach.example.remove")):
                    try:
                        teach.remove_example(owner, e["id"])
                        st.rerun()
                    except REFUSALS as err:
                        refuse(err)

# --- 2. adding examples ------------------------------------------------------------------------
st.subheader(t("teach.add"))
target = st.radio(t("teach.add.to"), names, horizontal=True, key="teach_target", format_func=plain)  # Markdown
shots = st.session_state.setdefault("teach_shots", 0)  # the camera's key: fresh after every shot
cam_col, up_col = st.columns(2)
with cam_col:
    shot = camera_here("add", t("teach.add.camera"), f"teach_cam_{shots}")
    if shot is not None:
        try:
            added = teach.add_example(owner, target, shot.getvalue(), "shot.jpg", net)
            st.session_state["teach_added"] = (target, added["seconds"])
        except REFUSALS as err:
            st.session_state["teach_added"] = err
        st.session_state["teach_shots"] = shots + 1  # one press per shot: the next render is a new camera
        st.rerun()
with up_col:
    files = st.file_uploader(
        t("teach.add.upload"),
        type=IMAGE_TYPES,
        accept_multiple_files=True,
        max_upload_size=classroom.limit("photo_mb"),
        key=f"teach_up_{st.session_state.setdefault('teach_uploads', 0)}",
    )
    if files and st.button(t("teach.add.upload_button", n=len(files), name=plain(target)), icon=":material/upload:"):
        problems = []
        for f in files:
            try:
                teach.add_example(owner, target, f.getvalue(), f.name, net)
            except REFUSALS as err:
                problems.append(err)
        st.session_state["teach_uploads"] += 1  # empties the uploader: the photos are in the class now
        st.session_state["teach_added"] = problems[0] if problems else (target, None)
        st.rerun()
news = st.session_state.pop("teach_added", None)
if isinstance(news, Exception):
    refuse(news)
elif news is not None:
    where, seconds = news
    st.toast(t("teach.added", name=plain(where)) + (t("teach.added_in", s=f"{seconds:.2f}") if seconds else ""))

# --- 3. training ------------------------------------------------------------------------------
st.subheader(t("teach.train"))
st.caption(t("teach.train.what", folds=teach.FOLDS))
if st.button(t("teach.train.button"), type="primary", icon=":material/model_training:"):
    with st.spinner(t("teach.train.running")):
        try:
            teach.train(owner, net)
            st.session_state[CAMERA] = "try"  # trained: the camera goes where the model is tried
        except REFUSALS as err:
            refuse(err)
done = teach.trained(owner, net)  # stale too where this server's backbone gives other features
if done is not None:
    result = done["result"]
    if done["stale"]:
        st.warning(t("teach.stale"))
    a, b, c = st.columns(3)
    a.metric(t("teach.held_out"), f"{result['accuracy']:.0%}")
    b.metric(t("teach.examples"), result["examples"])
    c.metric(t("teach.seconds"), f"{result['seconds']:.2f} s")
    how = "teach.method.loo" if result["method"] == "leave-one-out" else "teach.method.kfold"
    st.caption(t(how, k=result["folds"]))
    classes = [chart_text(n) for n in result["classes"]]
    fig = px.imshow(
        result["confusion"],
        x=classes,
        y=classes,
        text_auto=True,
        color_continuous_scale="Blues",
        labels={"x": t("teach.predicted"), "y": t("teach.true"), "color": t("teach.count_axis")},
    )
    fig.update_layout(height=160 + 40 * len(classes), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    fig.update_xaxes(type="category")  # classes named "1" and "1.0": two columns, not one number
    fig.update_yaxes(type="category")
    st.plotly_chart(fig, key="teach_confusion")
    wrong = teach.mistakes(result)
    if wrong:
        st.caption(t("teach.wrong", n=len(wrong)))
        cols = st.columns(8)
        for i, r in enumerate(wrong[:16]):
            path = teach.example_path(owner, r["id"])
            if path.is_file():
                cols[i % 8].image(str(path), width=THUMB)
                true, pred = plain(result["classes"][r["true"]]), plain(result["classes"][r["pred"]])
                cols[i % 8].caption(f"{true} → {pred}")

# --- 4. trying it -----------------------------------------------------------------------------
if done is not None and not done["stale"]:
    st.subheader(t("teach.try"))
    cam_col, up_col = st.columns(2)
    with cam_col:
        live = camera_here("try", t("teach.try.camera"), "teach_live")
    photo = up_col.file_uploader(
        t("teach.try.upload"), type=IMAGE_TYPES, max_upload_size=classroom.limit("photo_mb"), key="teach_try_up"
    )
    source = live or photo
    if source is not None:
        # Kept for this shot and this training: a click elsewhere on the page reruns the script,
        # and thirty students' reruns would each pay a ResNet-50 forward and a Grad-CAM again.
        raw = source.getvalue()
        token = (owner, hashlib.blake2b(raw, digest_size=16).hexdigest(), done["result"]["trained"])
        kept = st.session_state.get("teach_answer")
        answer, cam = kept[1:] if kept and kept[0] == token else (None, None)
        if answer is None:
            try:
                answer = teach.ask(owner, raw, source.name or "shot.jpg", net)
                st.session_state["teach_answer"] = (token, answer, None)
            except REFUSALS as err:
                refuse(err)
        if answer is not None:
            bars = pd.DataFrame({"class": [chart_text(n) for n in answer["classes"]], "p": answer["probs"]})
            fig = px.bar(bars, x="p", y="class", orientation="h", range_x=[0, 1], text_auto=".0%")
            fig.update_layout(height=80 + 36 * len(bars), margin={"l": 10, "r": 10, "t": 10, "b": 10})
            fig.update_layout(xaxis_title=t("teach.probability"), yaxis_title=None)
            fig.update_yaxes(type="category")
            left, mid, right = st.columns([2, 1, 2])
            with left:
                st.markdown(f"**{plain(answer['classes'][answer['top']])}**")
                st.plotly_chart(fig, key="teach_bars")
                st.caption(t("teach.answer_in", s=f"{answer['seconds']:.2f}"))
            with mid:  # after the bars: they show while Grad-CAM is computed
                if cam is None:
                    try:  # trained again in another tab since the bars: nothing left to explain
                        cam = teach.explain(owner, answer["prepared"].tensor, answer["top"], net)
                        st.session_state["teach_answer"] = (token, answer, cam)
                    except REFUSALS as err:
                        refuse(err)
                if cam is not None:
                    name = plain(answer["classes"][answer["top"]])
                    st.image(cam, caption=t("teach.gradcam", name=name), width="stretch")
            with right:
                st.markdown(t("teach.nearest"))
                cols = st.columns(teach.NEAREST)
                for col, n in zip(cols, answer["nearest"]):
                    path = teach.example_path(owner, n["id"])
                    if path.is_file():
                        col.image(str(path), width=THUMB)
                        col.caption(f"{plain(n['class'])} · {n['similarity']:.2f}")

# --- 5. saving --------------------------------------------------------------------------------
if done is not None and not done["stale"]:
    st.subheader(t("teach.save"))
    with st.form("teach_save", border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        title = left.text_input(t("teach.save.title"), max_chars=teach.MAX_NAME)
        if right.form_submit_button(t("teach.save.button"), icon=":material/save:"):
            try:
                run_dir = teach.save_run(owner, title, net)
                st.session_state["teach_saved"] = run_dir.name
            except REFUSALS as err:
                refuse(err)
    if st.session_state.get("teach_saved"):
        st.success(t("teach.saved", run=st.session_state["teach_saved"]))
        st.page_link("pages/predict.py", label=t("teach.saved.predict"), icon=":material/image_search:")
