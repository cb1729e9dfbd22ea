"""The Predict page meets what users send (classroom issue): a photo over the class's limit, class
names that look like Markdown or HTML (a folder's name is the user's text), a corrupt best.pt.
Each gets one sentence or the literal text, never a traceback."""

import io
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_core import catalog, classroom, imaging, runs
from tests.conftest import digit_png, shown, tiny_config
from tests.test_pages import app, finished_run
from tests.test_pages_hostile import Pwn, pth
from ui.common import chart_text, plain
from ui.i18n import catalogue

# Ten class names that Markdown or Plotly would render as something else, one per digit; eight
# hold HTML, so any five of them (a top-5 chart) hold some.
HOSTILE = [
    "**bold**",
    "<b>x</b>",
    "$x$ & <i>y</i>",
    "[link](http://e)",
    "# <u>heading</u>",
    "_it_ <br>",
    "`code` &amp;",
    "~~gone~~ <s>x</s>",
    "a<br>b",
    ":red[red] <sup>2</sup>",
]


def noise_png(side: int) -> bytes:
    """Random pixels compress to nothing: a valid PNG of about 3 * side**2 bytes."""
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def test_imaging_refuses_bytes_over_the_configured_photo_limit(monkeypatch, tmp_path):
    monkeypatch.setenv("RESNET_LAB_MAX_PHOTO_MB", "1")
    assert imaging.max_bytes() == 1024**2
    big = b"x" * (1024**2 + 1)
    with pytest.raises(imaging.ImageError, match=r"^big\.png is larger than 1 MB") as info:
        imaging.decode(big, "big.png")
    assert "\n" not in str(info.value) and str(info.value).count(". ") == 0
    path = tmp_path / "big.png"
    path.write_bytes(big)
    with pytest.raises(imaging.ImageError, match="not a readable image"):
        imaging.decode(path)  # a file on the server's disk (a folder dataset) is no upload: its content fails
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 1024**2)
    with pytest.raises(imaging.ImageError, match="larger than 1 MB; resize it"):
        imaging.decode(path)  # the file cap: refused from the file's size, before it is read
    with pytest.raises(imaging.ImageError, match="not a readable image"):
        imaging.decode(big[:-1], "big.png")  # at the limit: the size passes, the content does not


def test_predict_page_refuses_a_photo_over_the_class_limit_in_one_sentence(lab, trained_run, monkeypatch):
    monkeypatch.setenv("RESNET_LAB_MAX_PHOTO_MB", "1")
    finished_run(lab, trained_run)
    at = app("predict")
    assert at.file_uploader[0].proto.max_upload_size_mb == classroom.limit("photo_mb") == 1  # the browser refuses
    photo = noise_png(700)
    assert 1.3 * 1024**2 < len(photo) < 1.7 * 1024**2
    # A client that skips the browser's check still meets the server's.
    at.file_uploader[0].set_value(("noise.png", photo, "image/png")).run()
    assert not at.exception, at.exception
    assert [shown(e.value) for e in at.error] == [
        "noise.png is larger than 1 MB, this server's limit for a photo; use a smaller photo."
    ]
    assert not [m for m in at.markdown if m.value.startswith("**")]  # no answer drawn from it


def hostile_run(lab, trained_run, swap: tuple[int, int] = (1, 2)) -> list[str]:
    """The shipped digits model as a finished run whose classes have hostile names, and whose head
    swaps the rows of two digits: every ``swap[0]`` reads as ``swap[1]`` and back. Those are mistakes
    by construction, on every processor; the model's own 25 mistakes in 2,000 may miss the 40
    images the gallery's grid shows first."""
    run_dir = finished_run(lab, trained_run)
    ckpt = torch.load(f"{run_dir}/best.pt", weights_only=True)
    ckpt["classes"] = HOSTILE
    order = list(range(len(HOSTILE)))
    order[swap[0]], order[swap[1]] = swap[1], swap[0]
    for name in ("fc.weight", "fc.bias"):
        ckpt["model"][name] = ckpt["model"][name][order]
    torch.save(ckpt, f"{run_dir}/best.pt")
    return HOSTILE


def test_predict_page_shows_markdown_and_html_class_names_as_typed(lab, trained_run, tmp_path):
    classes = hostile_run(lab, trained_run, swap=(1, 2))
    at = app("predict")
    path, label = digit_png(tmp_path, 0)
    assert label not in (1, 2)  # the uploaded digit keeps its row
    bad_name = "[click](http://e) <b>x</b>.png"
    at.file_uploader[0].set_value(
        [(path.name, path.read_bytes(), "image/png"), (bad_name, b"not an image", "image/png")]
    ).run()
    at.session_state["predict_tab"] = catalogue("en")["predict.tab.gallery"]  # the gallery too
    at.run()
    assert not at.exception, at.exception

    # The answer: bold around the escaped name, which the reader sees as typed.
    answers = [m.value for m in at.markdown if m.value.startswith("**")]
    assert len(answers) == 1 and answers[0].startswith(f"**{plain(classes[label])}**")
    assert shown(answers[0]).startswith(f"**{classes[label]}**")  # what the reader sees
    # A file name quoted in an error is escaped too.
    assert len(at.error) == 1 and at.error[0].value.startswith(plain(bad_name))
    assert shown(at.error[0].value).startswith(bad_name)

    # Plotly renders <b> and <br> in labels: the top-5 and the gallery's charts get the escaped text.
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    escaped = {chart_text(c) for c in classes}
    # Numbers may come as Plotly's typed arrays (a dict): only the lists of labels are read.
    axes = [trace.get(axis) for spec in specs for trace in spec["data"] for axis in ("x", "y")]
    named = [v for values in axes if isinstance(values, list) for v in values if isinstance(v, str)]
    assert named and set(named) <= escaped  # every class label in every chart is escaped
    assert "&lt;b&gt;x&lt;/b&gt;" in named and "<b>x</b>" not in named
    (top,) = [trace["y"] for spec in specs for trace in spec["data"] if trace.get("orientation") == "h"]
    assert len(top) == 5 and set(top) <= escaped and set(top) - set(classes)  # the answer's chart too

    # Gallery captions (right answers, mistakes, the highest losses): Markdown-safe, and the reader
    # sees the literal name.
    captions = [img.caption for el in at.get("image") for img in el.proto.imgs if img.caption]
    assert {plain(name) for name in classes} & set(captions)  # a right answer's caption: its name alone
    assert any(c.startswith("wrong: ") for c in captions) and any(": p = " in c for c in captions)
    for name in sorted(classes, key=lambda n: -len(plain(n))):
        captions = [c.replace(plain(name), "") for c in captions]
    assert not [c for c in captions if any(name in c for name in classes)]  # no name left unescaped


def test_predict_page_says_one_sentence_for_a_corrupt_checkpoint(lab, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "dispatch", lambda: [])  # the runs stay as written: no processes
    marker = tmp_path / "pwned"
    real = io.BytesIO()
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "classes": ["a", "b"]}, real)
    files = {
        "truncated": real.getvalue()[: len(real.getvalue()) // 2],
        "torch-saved pickle": pth({"model": Pwn(marker), "classes": ["a"]}),
        "plain pickle": pickle.dumps({"model": Pwn(marker)}, protocol=2),  # torch.load's own protocol
    }
    paths = []
    for raw in files.values():
        run_dir = runs.create(tiny_config())
        (run_dir / "best.pt").write_bytes(raw)
        runs.update_status(run_dir, state="finished", best_acc=0.5, started=1, ended=2)
        paths.append(f"{run_dir}/best.pt")
    at = app("predict")
    label = catalogue("en")["predict.checkpoint"]
    # Every run and shipped checkpoint, and the ImageNet ResNet-50.
    assert len(next(s for s in at.selectbox if s.label == label).options) == len(files) + len(catalog.shipped()) + 1
    for path in paths:
        next(s for s in at.selectbox if s.label == label).set_value(path).run()
        assert not at.exception, at.exception
        assert len(at.error) == 1, [e.value for e in at.error]
        message = at.error[0].value
        # Escaped like every sentence that may quote a path (the lab's home is the server's choice).
        assert "\n" not in message and message.startswith("best\\.pt is not a readable PyTorch checkpoint")
        assert shown(message).startswith("best.pt is not a readable PyTorch checkpoint")
        assert not marker.exists()  # the pickle was refused, never run
        assert not at.file_uploader and not at.get("plotly_chart")  # the page stopped after its sentence
