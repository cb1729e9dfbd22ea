"""Home: what ResNet Lab is, the three-step lesson path, the class (leaderboard, the teacher's
overview), and this server's environment."""

import pandas as pd
import streamlit as st

from resnet_core import classroom, runs, system
from ui import classmates
from ui.common import dataset_label, environment, error_text, require_frame
from ui.i18n import t, t_or

require_frame("pages/home.py")

st.title("ResNet Lab")
st.write(t("home.intro"))

st.subheader(t("home.path"))
steps = st.columns(3)
for col, (page, key) in zip(
    steps, [("pages/theory.py", "theory"), ("pages/train.py", "train"), ("pages/predict.py", "predict")]
):
    with col, st.container(border=True):
        st.markdown(f"**{t(f'home.step.{key}')}**")
        st.caption(t(f"home.step.{key}.what"))
        st.page_link(page, label=t(f"home.step.{key}.go"), icon=":material/arrow_forward:")
with st.container(border=True):  # the step a class remembers: its own classes, taught with the camera
    st.markdown(f"**{t('home.step.teach')}**")
    st.caption(t("home.step.teach.what"))
    st.page_link("pages/teach.py", label=t("home.step.teach.go"), icon=":material/photo_camera:")

classmates.section()

st.subheader(t("home.environment"))
env = environment()
left, right = st.columns(2)
with left:
    for device in env["devices"]:
        extra = f", {device['memory_gb']} GB" if "memory_gb" in device else t("home.cores", n=device.get("cores"))
        st.write(f"**{device['kind'].upper()}**: {device['name']}{extra}")
    st.write(f"torch {env['torch']} · torchvision {env['torchvision']} · Python {env['python']}")
    st.write(t("home.precision", cpu=env["precision"]["cpu"], capability=env["cpu_capability"]))
    if env["precision_problem"]:  # the server's setting, in the visitor's language
        st.warning(error_text(env["precision_problem"]))
    st.write(t("home.network.yes") if env["network"] else t("home.network.no"))
with right:
    st.write(t("home.datasets_on_disk"))
    for name in system.datasets_on_disk():  # not from the cached environment: a zip added a minute ago is here
        st.write(f"- {dataset_label(name)}")
    if not classroom.enabled() or st.session_state.get("teacher"):  # a server path is the teacher's business
        st.caption(t("home.lab_home", path=env["lab_home"]))

st.subheader(t("home.classroom"))
st.caption(t("home.classroom.on") if classroom.enabled() else t("home.classroom.off"))
rows = [{"limit": "max_runs", "variable": "RESNET_LAB_MAX_RUNS", "value": runs.max_concurrent(), "unit": ""}]
# A static table: it wraps its cells to the page's width, where a data grid cut the long variable
# names or the unit off at the right edge.
st.table(
    pd.DataFrame(
        [
            {
                t("home.classroom.limit"): t(f"limit.{r['limit']}"),
                t("home.classroom.variable"): r["variable"],
                t("home.classroom.value"): r["value"],
                t("home.classroom.unit"): t_or(f"unit.{r['unit']}", r["unit"]),
            }
            for r in rows + classroom.limits()
        ]
    ).set_index(t("home.classroom.limit")),
)
