"""bf16 where the CPU computes it natively: the choice, the training path, prediction, and the pages.

Most CPUs running this suite have no bf16 units; ``RESNET_LAB_CPU_BF16=on`` forces the path on,
emulated (slowly), so every processor tests it. The choice itself is tested with torch's answers
replaced, as an AMX Xeon, an AVX512-BF16 Zen 4 or a capped kernel set would give them.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnet_core import data, engine, precision, predict, runs
from resnet_core.config import TrainConfig
from tests.conftest import CHECKPOINTS, shown, tiny_config
from tests.test_pages import app, finished_run
from ui.i18n import catalogue


def cpu(monkeypatch, capability="AVX512", amx=False, avx512_bf16=False, choice="auto", isa=None):
    """This process's CPU as torch would describe another one."""
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setenv(precision.ENV, choice)
    if isa is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)


@pytest.mark.parametrize(
    ("machine", "label"),
    [
        (dict(amx=True, avx512_bf16=True), "bf16 (AMX)"),  # Sapphire Rapids and newer
        (dict(avx512_bf16=True), "bf16 (AVX512-BF16)"),  # Cooper Lake, Zen 4
        (dict(), "fp32"),  # Skylake-SP: AVX-512 without bf16
        (dict(capability="AVX2"), "fp32"),  # the AVX2-only EPYC of these machines
        (dict(capability="AVX2", amx=True), "fp32"),  # ATEN_CPU_CAPABILITY=avx2 on an AMX Xeon
        (dict(amx=True, isa="AVX2"), "fp32"),  # ONEDNN_MAX_CPU_ISA=AVX2 on an AMX Xeon
        (dict(amx=True, isa="avx512_core_amx"), "bf16 (AMX)"),  # a cap that keeps AMX
        (dict(amx=True, avx512_bf16=True, isa="AVX512_CORE_BF16"), "bf16 (AVX512-BF16)"),  # AMX capped off
        (dict(choice="off", amx=True), "fp32"),
        (dict(choice="on", capability="AVX2"), "bf16 (emulated)"),
        (dict(choice="on", amx=True), "bf16 (AMX)"),
    ],
)
def test_the_cpu_computes_in_bf16_only_where_torch_reports_bf16_units(monkeypatch, machine, label):
    cpu(monkeypatch, **machine)
    assert precision.resolve("cpu").label == label
    assert precision.resolve("cpu", amp=False) is precision.FP32  # --no-amp: fp32 whatever the CPU


def test_a_mistyped_setting_is_ignored_with_a_sentence_naming_the_valid_ones(monkeypatch):
    cpu(monkeypatch, capability="AVX2", choice="yes")
    expected = "RESNET_LAB_CPU_BF16='yes' is not one of: auto, on, off; it is ignored (auto)."
    assert precision.setting_problem() == expected
    with pytest.warns(UserWarning, match="is not one of: auto, on, off"):
        assert precision.resolve("cpu") is precision.FP32  # auto on this CPU: the server keeps serving


def test_other_devices_without_native_bf16_stay_fp32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert precision.resolve("cuda") is precision.FP32
    assert precision.resolve("mps") is precision.FP32


def conv_dtypes_during(fn) -> set[torch.dtype]:
    """The dtypes every convolution's output had while ``fn`` ran (a process-wide forward hook)."""
    seen = set()
    handle = nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.add(out.dtype) if isinstance(module, nn.Conv2d) else None
    )
    try:
        fn()
    finally:
        handle.remove()
    return seen


@pytest.mark.parametrize(("choice", "amp", "label", "dtypes"), [
    ("on", True, "bf16 (emulated)", {torch.bfloat16}),
    ("on", False, "fp32", {torch.float32}),  # --no-amp
    ("off", True, "fp32", {torch.float32}),
])  # fmt: skip
def test_a_run_trains_and_evaluates_in_its_precision_and_says_which(
    lab, tmp_path, monkeypatch, choice, amp, label, dtypes
):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: None)  # emulated on any CPU
    monkeypatch.setenv(precision.ENV, choice)
    run_dir = runs.create(tiny_config(amp=amp, max_train_batches=3, max_test_images=40))
    recorder = runs.RunRecorder(run_dir)
    out = {}
    seen = conv_dtypes_during(
        lambda: out.update(engine.fit(TrainConfig.load(run_dir / "config.json"), callback=recorder))
    )
    recorder.close()
    assert seen == dtypes  # every convolution, training and evaluation alike
    (start,) = runs.read_metrics(run_dir, ("start",))
    assert start["precision"] == label and runs.read_status(run_dir)["precision"] == label
    best = torch.load(run_dir / "best.pt", weights_only=True)
    assert best["precision"] == label
    # The weights, the optimizer's state and the loss stay fp32: autocast computes in bf16, keeps fp32.
    assert {t.dtype for t in best["model"].values() if t.is_floating_point()} == {torch.float32}
    assert out["status"] == "finished" and torch.isfinite(torch.tensor(out["history"][0]["train_loss"]))


def test_prediction_in_bf16_gives_fp32s_answers_and_grad_cam_stays_fp32(monkeypatch):
    """The shipped ResNet-20 on 500 test digits: bf16 (emulated here, the same format AMX computes
    in) changes a top-1 answer only where fp32's is a near tie. Measured: 0 of 2,000 changed."""
    predictor = predict.Predictor.from_checkpoint(CHECKPOINTS / "mnist-resnet20.pt")
    predictor.amp = True  # as a run trained with the default (the shipped one chose fp32)
    images = data.load_dataset("mnist-sample", "test").images[:500]
    monkeypatch.setenv(precision.ENV, "off")
    fp32, cam32 = predictor.logits(images), predictor.explain(images[0])
    monkeypatch.setenv(precision.ENV, "on")
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: None)
    bf16, cam16 = predictor.logits(images), predictor.explain(images[0])
    assert fp32.dtype == bf16.dtype == torch.float32
    assert (fp32 - bf16).abs().max() > 0  # it did compute in bf16
    assert (fp32.argmax(1) != bf16.argmax(1)).sum() <= 2  # 0.4 %, far above any CPU's rounding
    assert torch.equal(cam32[0], cam16[0]) and cam32[1] == cam16[1]


@pytest.fixture
def fresh_environment():
    """The home page's facts are cached for ten minutes per server: read them again here, and
    forget this test's made-up CPU after it."""
    from ui.common import environment

    environment.clear()
    yield
    environment.clear()


def test_the_home_and_train_pages_say_which_precision_runs(lab, trained_run, monkeypatch, fresh_environment):
    cpu(monkeypatch, amx=True)  # as on an AMX Xeon
    # The run first: the pages share one listing of the runs, up to a second old.
    run_dir = finished_run(lab, trained_run)
    runs.update_status(run_dir, device="cpu", precision="bf16 (AMX)")
    for lang in ("en", "zh"):
        home = app("home", lang)
        assert any("bf16 (AMX)" in m.value for m in home.markdown), [m.value for m in home.markdown]
        assert not home.warning
    train = app("train")
    expected = catalogue("en")["train.precision"].format(device="cpu", precision="bf16 (AMX)")
    assert expected in [c.value for c in train.caption]


def test_the_home_page_names_a_mistyped_setting(lab, monkeypatch, fresh_environment):
    monkeypatch.setenv(precision.ENV, "yes")
    home = app("home")
    assert [shown(w.value) for w in home.warning] == [precision.setting_problem()]  # plain() escapes its marks


def test_a_run_trained_with_no_amp_predicts_in_fp32_on_a_bf16_server(monkeypatch, tmp_path):
    ckpt = torch.load(CHECKPOINTS / "mnist-resnet20.pt", weights_only=True)
    images = data.load_dataset("mnist-sample", "test").images[:50]
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: None)
    answers = {}
    for amp in (True, False):
        ckpt["config"]["amp"] = amp
        torch.save(ckpt, tmp_path / f"{amp}.pt")
        predictor = predict.Predictor.from_checkpoint(tmp_path / f"{amp}.pt")
        monkeypatch.setenv(precision.ENV, "off")
        fp32 = predictor.logits(images)
        monkeypatch.setenv(precision.ENV, "on")
        answers[amp] = torch.equal(predictor.logits(images), fp32)
    assert answers == {True: False, False: True}  # --no-amp: fp32 even where the server runs bf16
