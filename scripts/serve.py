"""Start the dashboard with its heavy libraries already imported: `streamlit run streamlit_app.py`, faster.

    python scripts/serve.py [streamlit run options, e.g. --server.port 8501]

Streamlit imports an app's modules only when the first browser opens a page, so on a fresh
server the first visitor waits for torch, torchvision, plotly and pandas to import (about 6 s of
a 2-core machine). Importing them here, before the server listens, moves that wait to start-up:
`make app` and the classroom benchmark start the server this way.

It also starts the run watchdog (``runs.watch``) before the server listens, so a queue whose
trainer was killed moves on even if no browser opens after a restart; streamlit_app.py's own
call then finds it running.
"""

import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas  # noqa: E402, F401
import plotly.graph_objects  # noqa: E402, F401
import torch  # noqa: E402, F401
import torchvision  # noqa: E402, F401

import resnet_core.predict  # noqa: E402, F401
import resnet_core.runs  # noqa: E402
import resnet_core.theory  # noqa: E402, F401

resnet_core.runs.watch()
sys.argv = ["streamlit", "run", str(ROOT / "streamlit_app.py"), *sys.argv[1:]]
runpy.run_module("streamlit", run_name="__main__", alter_sys=True)
