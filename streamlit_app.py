"""ResNet Lab: the frame. Page config, the shared sidebar, and navigation over pages/."""

import streamlit as st

from ui.common import FRAME_KEY, sidebar
from ui.i18n import t

st.set_page_config(page_title="ResNet Lab", page_icon="🧱", layout="wide")

PAGES = [
    st.Page("pages/home.py", title=t("nav.home"), icon=":material/home:", default=True),
    st.Page("pages/theory.py", title=t("nav.theory"), icon=":material/school:"),
    st.Page("pages/data.py", title=t("nav.data"), icon=":material/dataset:"),
    st.Page("pages/train.py", title=t("nav.train"), icon=":material/model_training:"),
    st.Page("pages/transfer.py", title=t("nav.transfer"), icon=":material/swap_horiz:"),
    st.Page("pages/predict.py", title=t("nav.predict"), icon=":material/image_search:"),
]
page = st.navigation(PAGES)
goto = st.session_state.pop("_goto", None)  # a deep link that arrived before the frame (require_frame)
if goto:
    st.switch_page(goto)
st.session_state[FRAME_KEY] = True
sidebar()
page.run()
