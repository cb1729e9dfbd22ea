"""ResNet Lab's entry point. Until the dashboard lands, one honest page: what is here and how
to train it from the command line. The engine it shows is ``resnet_core``; this file only renders."""

import pandas as pd
import streamlit as st
import torch
import torchvision

from resnet_core import data, models, runs

st.set_page_config(page_title="ResNet Lab", page_icon="🧱", layout="wide")
st.title("ResNet Lab")
st.write(
    "Learn, train and demo residual networks. The dashboard pages (data, train, transfer, predict, "
    "theory) are being built; the engine underneath already trains from the command line:"
)
st.code(
    "python -m resnet_core train --dataset mnist-sample\n"
    "python -m resnet_core predict --checkpoint lab/runs/<run>/best.pt my_digit.png",
    language="bash",
)

device = "CUDA: " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
st.caption(f"torch {torch.__version__} · torchvision {torchvision.__version__} · {device}")

left, right = st.columns(2)
with left:
    st.subheader("Datasets")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "name": n,
                    "kind": data.get_spec(n).kind,
                    "classes": len(data.get_spec(n).classes),
                    "size": f"{data.get_spec(n).channels}×{data.get_spec(n).size}",
                    "on disk": data.is_present(n),
                }
                for n in data.list_datasets()
            ]
        ),
        hide_index=True,
    )
with right:
    st.subheader("Models")
    st.dataframe(
        pd.DataFrame(
            [
                {"name": n, "family": models.get_spec(n).family, "description": models.get_spec(n).description}
                for n in models.list_models()
            ]
        ),
        hide_index=True,
    )

st.subheader("Runs")
rows = runs.list_runs()
if rows:
    st.dataframe(pd.DataFrame(rows).drop(columns=["path"]), hide_index=True)
else:
    st.info(f"No runs yet in {runs.runs_dir()}.")
