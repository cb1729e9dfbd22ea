"""The core's sentences by key (resnet_core.messages): every key in both catalogues, every raise site
keyed, a refusal shown in Chinese, and no server path on a page."""

from __future__ import annotations

import ast
import re
import socket
import string
import zipfile
from pathlib import Path

import pytest
import torch

import ui.i18n
from resnet_core import data, folders, imaging, messages, models, precision, runs, system
from resnet_core.checkpoints import CheckpointError
from resnet_core.messages import ENGLISH, LabError, Message
from tests.conftest import shown, tiny_config
from tests.test_chinese_walk import english
from ui.common import error_text
from ui.i18n import catalogue

CORE = Path(__file__).parent.parent / "resnet_core"
CHINESE = re.compile(r"[\u4e00-\u9fff]")
FORMATS = {"BMP", "GIF", "TIFF", "WebP", "SVG"}  # image formats: names, as PNG and JPEG are
# Raise sites with a sentence instead of a key, in files owned elsewhere: English on every page
# until they are given one (its key and translations are in place).
NOT_YET: set = set()  # raise sites still passing a sentence: none


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.fixture
def zh(monkeypatch):
    monkeypatch.setattr(ui.i18n, "language", lambda: "zh")


def test_every_key_is_in_both_catalogues_with_fields_the_core_fills():
    en, zh = catalogue("en"), catalogue("zh")
    for key, english_text in ENGLISH.items():
        assert f"error.{key}" in en and f"error.{key}" in zh, key
        assert fields(en[f"error.{key}"]) == fields(zh[f"error.{key}"]) <= fields(english_text), key
        for text in (en[f"error.{key}"], zh[f"error.{key}"]):  # the page's values are text: no format specs
            assert all(not spec and not conv for _, name, spec, conv in string.Formatter().parse(text) if name), key
    assert {k.removeprefix("error.") for k in en if k.startswith("error.")} == set(ENGLISH)


def test_the_chinese_sentences_need_no_english():
    zh = catalogue("zh")
    for key in ENGLISH:
        text = zh[f"error.{key}"]
        said = text.format(**{name: "值" for name in fields(text)})
        assert CHINESE.search(said) and set(english(said)) <= FORMATS, (key, english(said))


def raise_sites() -> list[tuple[str, int, ast.expr]]:
    """The first argument of every construction of a keyed error class or a Message in the core."""
    keyed = {c.__name__ for c in _subclasses(LabError)} | {"Message", "_problem"}  # imaging's helper
    found = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and node.args:
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in keyed:
                    found.append((path.name, node.lineno, node.args[0]))
    return found


def _subclasses(cls: type) -> set[type]:
    return {cls} | {s for c in cls.__subclasses__() for s in _subclasses(c)}


def test_every_raise_site_names_a_key():
    sites = raise_sites()
    assert len(sites) > 70  # every module's error class is imported above (runs imports the rest)
    for file, line, first in sites:
        where = f"{file}:{line}"
        if isinstance(first, ast.Constant):
            assert first.value in ENGLISH or (file, first.value) in NOT_YET, where
        elif isinstance(first, ast.JoinedStr):  # f"classroom.upload.{kind}": some key has that stem
            stem = first.values[0].value
            assert isinstance(stem, str) and any(k.startswith(stem) for k in ENGLISH), where
        else:  # a key passed on: inside messages.py, and imaging's _problem (whose callers are scanned)
            assert file == "messages.py" or (file, getattr(first, "id", None)) == ("imaging.py", "key"), where
    assert {sentence for _, sentence in NOT_YET} <= set(ENGLISH.values())


def test_a_keyed_error_keeps_its_english_and_its_old_base_class():
    err = folders.FolderError("folder.bad_name", name="形状!")
    assert isinstance(err, ValueError) and err.key == "folder.bad_name" and err.values == {"name": "形状!"}
    assert str(err).startswith("Dataset name '形状!' must be 1-40 letters (any language; Latin ones lower case)")
    assert str(folders.FolderError("A sentence of its own.")) == "A sentence of its own."
    assert messages.message(folders.FolderError("A sentence of its own.")) is None
    problem = Message("run.no_start", why="no memory")
    assert problem == "Could not start the trainer: no memory" and Message.from_json(problem.to_json()) == problem


def zip_of_two_classes(path: Path) -> Path:
    from tests.test_folders import png

    with zipfile.ZipFile(path, "w") as zf:
        for cls in ("圆", "方"):
            for i in range(3):
                zf.writestr(f"{cls}/{i}.png", png(i))
    return path


def test_a_bad_dataset_name_is_refused_in_chinese(lab, tmp_path, zh):
    archive = zip_of_two_classes(tmp_path / "形状.zip")
    with pytest.raises(folders.FolderError, match="any language; Latin ones lower case") as info:
        data.add_folder("形状 Bad!", archive)  # a space, upper-case Latin and a mark
    said = shown(error_text(info.value))
    assert said.startswith("数据集名称“形状 Bad!”无效") and "'-' 或 '_'" in said
    assert data.add_folder("形状", archive).classes == ["圆", "方"]  # a name in Chinese itself is fine
    with pytest.raises(folders.FolderError) as info:
        data.add_folder("形状", archive)
    assert shown(error_text(info.value)) == "已经有名为“形状”的文件夹数据集；请换一个名字。"


def test_the_users_text_in_a_refusal_stays_inert(zh):
    err = folders.FolderError("folder.zip_escape", zip="**x**.zip", entry="../[a](http://x)")
    said = error_text(err)
    assert "**x**" not in said and "[a](" not in said
    assert (
        shown(said)
        == "**x**.zip 中有一项指向其文件夹之外（“../[a](http://x)”）；请直接压缩各个类别文件夹，并使用相对路径。"
    )


def test_weights_offline_show_no_server_path_on_a_page(lab, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    hub = tmp_path / "server" / "cache" / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    with pytest.raises(models.WeightsUnavailable) as info:
        models.imagenet_weights("resnet18")
    assert f"{hub}/checkpoints by hand" in str(info.value)  # the shell gets the folder
    for lang, cache in (("en", "the lab's weights cache"), ("zh", "实验室的权重缓存")):
        monkeypatch.setattr(ui.i18n, "language", lambda lang=lang: lang)
        said = shown(error_text(info.value))
        assert "/" not in said and str(tmp_path) not in said, said
        assert re.search(r"resnet18-\w+\.pth", said) and cache in said, said  # what to put where, by name


def test_a_path_in_the_lab_is_named_by_its_place_in_it(lab, zh):
    gone = lab / "runs" / "20250101-000000-gone" / "best.pt"
    said = shown(error_text(CheckpointError("checkpoint.missing", path=gone)))
    assert said == "runs/20250101-000000-gone/best.pt 处没有检查点；请选择一个有 best.pt 或 last.pt 的训练。"
    assert str(lab) not in said


def test_a_path_inside_a_librarys_sentence_is_cut_to_its_name(zh):
    """An OS error quoted inside a keyed sentence (an upload pruned before its queued run started)."""
    why = "[Errno 2] No such file or directory: '/srv/lab/uploads/pruned.pth'"
    said = shown(error_text(CheckpointError("checkpoint.unreadable_weights", name="pruned.pth", why=why)))
    assert "'pruned.pth'" in said and "/srv" not in said and "uploads" not in said


def test_a_failed_runs_sentence_is_kept_with_its_key(lab, tmp_path, monkeypatch, zh):
    run_dir = runs.create(tiny_config())
    cause = models.WeightsUnavailable(
        "models.weights_offline", arch="resnet18", kind="URLError", file="w.pth", folder=tmp_path / "hub"
    )
    runs._record_failure(run_dir, cause)
    status = runs.read_status(run_dir)
    assert status["error"] == f"WeightsUnavailable: {cause}"  # the log's English, with the folder
    said = shown(error_text(runs.failure(status)))
    assert said.startswith("无法下载 resnet18 的 ImageNet 权重") and str(tmp_path) not in said
    runs.update_status(run_dir, error="Plain words", error_message={"key": "no.such.key", "values": {}})
    assert runs.failure(runs.read_status(run_dir)) == "Plain words"  # a key since renamed: the English


def test_a_photo_with_nothing_on_it_says_so_in_chinese(zh):
    from PIL import Image

    out = imaging.prepare(Image.new("RGB", (200, 200), "white"), "digit", 28, 1, "digit")
    assert isinstance(out.problem, str) and out.problem.startswith("No digit found")
    assert shown(error_text(out.problem)) == (
        "没有找到数字：图片看起来是空的；请在白纸上用深色笔写一个数字，拍照时让它大约占画面的一半。"
    )


def test_a_mistyped_precision_setting_is_the_same_sentence_with_a_key(monkeypatch, zh):
    monkeypatch.setenv(precision.ENV, "Yes")
    assert system.precision_problem() == precision.setting_problem()
    assert shown(error_text(system.precision_problem())).startswith("RESNET_LAB_CPU_BF16=“yes”不是有效值")
    monkeypatch.setenv(precision.ENV, "off")
    assert system.precision_problem() is None


def test_the_transfer_page_says_a_vanished_checkpoint_in_chinese(lab, monkeypatch):
    from resnet_core import catalog
    from tests.test_pages import app

    gone = {"path": str(lab / "runs" / "gone"), "run": "gone", "model": "resnet20", "best_acc": 0.9}
    gone["checkpoint"] = f"{gone['path']}/best.pt"
    # Patched in the core, where every page's list comes from at call time: a name imported from
    # ui.common by a module (ui.compare) would keep the patch for the tests after this one.
    row = {**gone, "dataset": "mnist-sample", "has_best": True}
    monkeypatch.setattr(catalog, "checkpoints", lambda rows=None: [row])
    at = app("transfer", "zh")
    said = [shown(e.value) for e in at.error]
    assert said == ["runs/gone/best.pt 处没有检查点；请选择一个有 best.pt 或 last.pt 的训练。"]


def test_the_train_page_says_a_limit_in_chinese(lab, monkeypatch, zh):
    # zh here too: AppTest formats a widget's options in the test's thread (the dataset titles)
    from tests.test_pages import app

    monkeypatch.setenv("RESNET_LAB_TEACHER_TOKEN", "secret")
    monkeypatch.setattr(runs, "dispatch", lambda: [])
    at = app("train", "zh")
    labels = catalogue("zh")
    next(w for w in at.selectbox if w.label == labels["train.model"]).set_value("resnet152")
    next(b for b in at.button if b.label == labels["train.start"]).click().run()
    assert not at.exception
    said = [shown(e.value) for e in at.error]
    assert len(said) == 1 and re.match(
        r"resnet152 训练 \d+ 轮的规模是 [\d,]+ 百万参数 × 轮数，超过了本课堂的上限 300", said[0]
    )
    assert runs.list_runs() == []
