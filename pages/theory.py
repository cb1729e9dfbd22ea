"""Theory: the place of the residual-learning measurements in the navigation."""

import streamlit as st

from ui.common import require_frame
from ui.i18n import t

require_frame("pages/theory.py")

st.title(t("theory.title"))
st.markdown(t("theory.intro"))
st.latex(r"y = \mathcal{F}(x, \{W_i\}) + x")
st.info(t("theory.coming"))
