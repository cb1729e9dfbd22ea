"""The command line end to end, in subprocesses, as a user runs it."""

import json
import subprocess
import sys

import onnx
import torch

from resnet_core import models
from resnet_core.config import TrainConfig
from tests.conftest import TINY_ARGS, digit_png


def cli(*args, env_home, check=True):
    env = {"RESNET_LAB_HOME": str(env_home), "PATH": "/usr/bin:/bin", "RESNET_LAB_CPU_BF16": "off"}  # conftest
    proc = subprocess.run(
        [sys.executable, "-m", "resnet_core", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_train_predict_evaluate_export_end_to_end(tmp_path):
    home = tmp_path / "lab"
    run_dir = tmp_path / "run"
    out = cli("train", *TINY_ARGS, "--max-train-batches", "40", "--run-dir", run_dir, env_home=home).stdout
    last = out.strip().splitlines()[-1]
    assert "best test accuracy" in last and str(run_dir / "best.pt") in last
    assert {"config.json", "status.json", "metrics.jsonl", "best.pt", "last.pt"} <= {p.name for p in run_dir.iterdir()}
    assert json.loads((run_dir / "status.json").read_text())["state"] == "finished"

    good = [digit_png(tmp_path, i)[0] for i in range(3)]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    proc = cli(
        "predict",
        "--checkpoint",
        run_dir / "best.pt",
        good[0],
        bad,
        good[1],
        good[2],
        "--top-k",
        "3",
        "--json",
        env_home=home,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(p) for p in (good[0], bad, good[1], good[2])]
    assert "error" in lines[1] and "not a readable image" in lines[1]["error"]
    for line in (lines[0], lines[2], lines[3]):
        assert len(line["top"]) == 3 and 0 <= line["top"][0]["prob"] <= 1
        assert line["top"][0]["prob"] >= line["top"][1]["prob"]

    ev = cli("evaluate", "--checkpoint", run_dir / "best.pt", "--limit", "300", env_home=home).stdout
    assert "accuracy" in ev and "confusion matrix" in ev and "9 - nine" in ev

    cli("export", "--checkpoint", run_dir / "best.pt", "--format", "pth", "--output", tmp_path / "w.pth", env_home=home)
    model = models.get_model("mini_residual", num_classes=10, in_channels=1, image_size=28)
    model.load_state_dict(torch.load(tmp_path / "w.pth"))  # as the tutorials do
    cli(
        "export",
        "--checkpoint",
        run_dir / "best.pt",
        "--format",
        "onnx",
        "--output",
        tmp_path / "w.onnx",
        env_home=home,
    )
    onnx.checker.check_model(onnx.load(str(tmp_path / "w.onnx")))

    listing = cli("runs", env_home=home).stdout
    assert "no runs yet" in listing  # --run-dir outside the lab home is not listed there


def test_listing_commands_and_user_errors(tmp_path):
    home = tmp_path / "lab"
    assert "resnet110" in cli("models", env_home=home).stdout
    assert "mnist-sample" in cli("datasets", env_home=home).stdout
    shown = json.loads(cli("datasets", "show", "fashion-sample", env_home=home).stdout)
    assert shown["counts"]["test"] == [200] * 10
    proc = cli("train", "--dataset", "nope", env_home=home, check=False)
    assert proc.returncode == 2 and "choose one of: mnist-sample" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("predict", "--checkpoint", tmp_path / "missing.pt", "x.png", env_home=home, check=False)
    assert proc.returncode == 2 and "No checkpoint" in proc.stderr


def test_predict_with_pretrained_weights_names_them_and_fetches_nothing(tmp_path):
    home = tmp_path / "lab"
    proc = cli("predict", "--weights", "nope", "x.png", env_home=home, check=False)
    assert proc.returncode == 2 and "Unknown weights 'nope'; choose one of: " in proc.stderr
    assert "resnet50, " in proc.stderr and "resnet18.IMAGENET1K_V1" in proc.stderr  # a model, or an entry
    proc = cli("predict", "--weights", "resnet50_v1.keras", "x.png", env_home=home, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"not in {home / 'weights'} yet; run `python -m resnet_core weights get resnet50_v1.keras`" in proc.stderr
    assert not (home / "weights").exists()


def test_hostile_files_on_the_command_line_get_a_sentence_and_run_nothing(tmp_path):
    """The reported hole through `datasets add`, and pickles through every loader the CLI reaches."""
    import zipfile

    from tests.test_pages_hostile import Pwn

    home, outside = tmp_path / "lab", tmp_path / "escaped.txt"
    archive = tmp_path / "x.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(str(outside).replace("/", "\\"), b"x")  # \tmp\...\escaped.txt, as from Windows
    proc = cli("datasets", "add", "pets", archive, env_home=home, check=False)
    assert proc.returncode == 2 and "outside its folder" in proc.stderr and "Traceback" not in proc.stderr
    assert not outside.exists() and not (home / "data" / "folders" / "pets").exists()

    marker = tmp_path / "pwned"
    pickle = tmp_path / "best.pt"
    torch.save({"model": Pwn(marker)}, pickle)
    for args in (
        ("predict", "--checkpoint", pickle, "x.png"),
        ("evaluate", "--checkpoint", pickle),
        ("export", "--checkpoint", pickle, "--output", tmp_path / "w.pth"),
        ("train", *TINY_ARGS, "--pretrained", pickle),
    ):
        proc = cli(*args, env_home=home, check=False)
        assert proc.returncode == 2 and "not a readable" in proc.stderr and "Traceback" not in proc.stderr, args
    assert not marker.exists()


def test_two_processes_under_torchrun_share_one_run(tmp_path):
    """torchrun on CPU (gloo): both ranks train, rank 0 alone writes the run directory."""
    run_dir = tmp_path / "ddp"
    env = {
        "RESNET_LAB_HOME": str(tmp_path / "lab"),
        "PATH": "/usr/bin:/bin",
        "OMP_NUM_THREADS": "1",
        "RESNET_LAB_CPU_BF16": "off",
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "resnet_core",
        "train",
        *TINY_ARGS,
        "--max-train-batches",
        "20",
        "--run-dir",
        str(run_dir),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    # The ranks' own words come first in stderr, torchrun's summary of who failed last.
    assert proc.returncode == 0, proc.stderr[:3000] + "\n[...]\n" + proc.stderr[-1500:]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["type"] == "start")
    assert start["world_size"] == 2
    steps = [e["step"] for e in events if e["type"] == "batch"]
    assert steps[0] == 1 and steps[-1] == 20 and steps == sorted(set(steps))  # rank 0 alone reports
    end = next(e for e in events if e["type"] == "end")
    # 20 steps of Adam: well above chance (10 %) on any processor; the exact figure follows its rounding.
    assert end["status"] == "finished" and end["best_acc"] > 0.2
    ckpt = torch.load(run_dir / "best.pt", weights_only=True)
    assert ckpt["history"][0]["test_acc"] == end["best_acc"]  # evaluation summed over both ranks' shares


def test_a_rank_that_fails_under_torchrun_says_why_and_exits_with_its_code(tmp_path):
    """A run whose dataset is not there: each rank prints the one sentence and exits 2, not a
    SIGABRT from gloo's threads at the interpreter's finalization, which would hide both."""
    run_dir = tmp_path / "ddp"
    run_dir.mkdir()
    TrainConfig(dataset="gone-photos", model="resnet20", epochs=1).save(run_dir / "config.json")
    env = {"RESNET_LAB_HOME": str(tmp_path / "lab"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "resnet_core", "train", "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0 and proc.stderr.count("error: ") == 2 and "gone-photos" in proc.stderr
    assert "exitcode  : 2" in proc.stderr and "SIGABRT" not in proc.stderr
