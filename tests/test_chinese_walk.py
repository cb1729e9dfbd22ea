"""Every page in Chinese shows no English a reader must understand (issue 17): each visible text
(titles, sentences, labels, options, table headers and cells, chart titles, axes and legends) is
searched for Latin words, and any that is not a proper noun, a unit symbol, a code the user typed
or chose (a model or run name, a variable, a command) fails the walk."""

from __future__ import annotations

import json
import re

import pytest
from streamlit.testing.v1 import AppTest

from resnet_core import models
from tests import zoo
from tests.test_pages import PAGES

# Names a Chinese page keeps in Latin letters, as Chinese textbooks and papers do.
PROPER = {
    # torch's names for the CPU kernels it runs (torch.backends.cpu.get_cpu_capability), as it prints them
    "DEFAULT", "AVX512", "VSX", "ZVECTOR", "SVE256",
    "ResNet", "ResNeXt", "ResNets", "Lab", "MNIST", "Fashion", "KMNIST", "CIFAR", "ImageNet", "PyTorch", "torch",
    "torchvision", "Python", "Streamlit", "Grad", "CAM", "CPU", "GPU", "GPUs", "CUDA", "AMX", "AVX", "bf16", "fp32",
    "He", "et", "al", "Veit", "Balduzzi", "Fixup", "Zhang", "Xie", "LeCun", "Cortes", "Burges", "Zalando",
    "Research", "SGD", "Adam", "AdamW", "ONNX", "Kuzushiji", "SVHN", "STL", "MPS", "Apple", "BN", "VGG", "x86_64",
    "KVM", "EPYC", "AMD", "Intel", "Xeon", "npm", "PyPI", "MIT", "CC", "BY", "SA", "HTTPS", "LAN", "URL", "zip",
    "pth", "pt", "png", "jpg", "jpeg", "JPEG", "PNG", "one-cycle", "avx2", "sse41", "PCA", "RGB", "BGR", "Glorot",
    "Kaiming", "Sutskever", "Nesterov", "conv", "fc", "relu", "ReLU", "ms", "px", "MB", "GB", "KB", "MACs", "M",
    "k", "r", "x", "y", "F", "W", "i", "T", "GitHub",
    "English", "MACOSX", "torch.compile",
}  # fmt: skip
CODE = re.compile(
    r"^(?:RESNET_LAB_\w+|\d{8}-\d{6}-[\w.-]+|[\w.-]+\.(?:py|pt|pth|json|csv|zip|log)|resnet_core[\w.]*|"
    r"mini_residual|layer\d[\w.]*|rblock\d+|cu\d+|[a-z]+-sample|stem|"
    r"python|streamlit)$"
)
WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*[A-Za-z0-9]|[A-Za-z]")
MODEL_NAMES = set(models.list_models())


def english(text: str) -> list[str]:
    """The Latin words of ``text`` that a Chinese reader would have to read as English."""
    text = re.sub(r"https?://\S+|`[^`]*`|\$[^$]*\$|\\[a-z]+", " ", text)  # links, code, formulas
    text = re.sub(r"\d{8}-\d{6}-[\w.-]+", " ", text)  # run names: the server's stamps and ids
    text = re.sub(r"(?<![\w/])(?:/[\w.@+-]+){2,}/?", " ", text)  # absolute paths: the server's or the user's
    found = []
    for word in WORD.findall(text):
        bare = word.strip(".-_")
        if not bare or len(bare) == 1 or CODE.match(bare) or bare in MODEL_NAMES or bare in PROPER:
            continue  # a single letter is a symbol (x, F, H, option A)
        parts = [p for p in re.split(r"[-_]", bare) if p]  # Fashion-MNIST, ResNet-20, AVX512-BF16
        if all(p in PROPER or re.fullmatch(r"[\d.e+]+|[A-Z]*\d+[A-Z\d]*", p) for p in parts):
            continue
        found.append(bare)
    return found


def chart_texts(spec: str) -> list[str]:
    """A Plotly figure's visible words: its title, axis titles, trace names and tick labels given as text."""
    fig = json.loads(spec)
    layout, out = fig.get("layout", {}), []
    for key, value in layout.items():
        if key.startswith(("xaxis", "yaxis", "title")) and isinstance(value, dict):
            title = value.get("title") if key != "title" else value
            out.append(title.get("text", "") if isinstance(title, dict) else str(title or ""))
    for trace in fig.get("data", []):
        if trace.get("showlegend", True) is not False:
            out.append(str(trace.get("name") or ""))
        for axis in ("x", "y"):  # categorical axes show their values as text
            values = trace.get(axis)
            if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
                out.extend(values)
    return out


def visible(at: AppTest) -> list[str]:
    """Every text an AppTest run shows, main area and sidebar."""
    out = []
    for root in (at.main, at.sidebar):
        for kind in ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success"):
            out += [e.value for e in getattr(root, kind)]
        for kind in ("button", "selectbox", "multiselect", "radio", "number_input", "slider", "select_slider"):
            for e in getattr(root, kind):
                out += [e.label, getattr(e, "help", None) or "", getattr(e.proto, "placeholder", "") or ""]
                out += [str(o) for o in getattr(e, "options", [])]
        for kind in ("toggle", "checkbox", "text_input"):
            out += [x for e in getattr(root, kind) for x in (e.label, getattr(e, "help", None) or "")]
        for kind in ("tabs", "expander"):
            out += [e.label for e in getattr(root, kind)]
        out += [e.proto.text for e in root.get("progress")]
        for m in root.metric:
            out += [m.label, m.value]
        for frame in [*root.dataframe, *root.table]:  # interactive and static tables alike
            df = frame.value
            out += [str(c) for c in [*df.columns, df.index.name] if c is not None]
            out += [v for v in df.index.tolist() if isinstance(v, str)]
            out += [v for col in df.columns for v in df[col].tolist() if isinstance(v, str)]
        for chart in root.get("plotly_chart"):
            out += chart_texts(chart.proto.spec)
    return out


@pytest.fixture
def zoo_lab(lab, monkeypatch):
    from resnet_core import runs

    built = zoo.build()
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    return built


@pytest.mark.parametrize("page", PAGES)
def test_the_chinese_page_shows_no_english_a_reader_must_understand(zoo_lab, page):
    at = AppTest.from_file("../streamlit_app.py", default_timeout=120)
    at.query_params["lang"] = "zh"
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    offenders = {}
    for text in visible(at):
        words = english(str(text))
        if words:
            offenders[str(text)[:120]] = words
    assert not offenders, json.dumps(offenders, ensure_ascii=False, indent=1)
