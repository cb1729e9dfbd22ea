"""ResNet Lab: the entry point. ``ui.common.frame`` draws the frame (page config, navigation over
pages/, the shared sidebar); then the page the visitor asked for runs inside it."""

import streamlit as st

from resnet_core import runs
from ui.common import frame, real_server


@st.cache_resource(show_spinner=False)
def start_watchdog() -> runs.Watchdog | None:
    """Once per server process: the thread that starts queued runs when a trainer was killed,
    with or without a browser on the Train page (``runs.watch``; scripts/serve.py starts it at
    boot, and this returns the same one). Not under AppTest, whose script runs inside the test
    process, where a thread left behind would start the runs of later tests."""
    return runs.watch() if real_server() else None


start_watchdog()
frame().run()
