"""Two processes under torchrun (gloo, CPU) train as one: the gradient all-reduce, proven (issue 11).

``tests/ddp_probe.py`` trains a few steps with the engine's own functions on each rank and saves
what each saw and ended with; this test compares the ranks with each other and with single-process
runs of the same functions in this process: on rank 0's shard alone (it must differ: the equality
of the ranks is the all-reduce's, not identical data's) and, for a model without batch norm, on
both shards at once (gradient averaging is a batch of 64 split over two processes).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ddp_probe import STEPS, probe_config, train_steps

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("mini_residual", "resnet20")  # without batch norm, and with it


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """{model: (rank 0's record, rank 1's)} from one torchrun of the probe; the lab home of this
    process is the probe's while the module's tests run their single-process comparisons."""
    out = tmp_path_factory.mktemp("ddp")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RESNET_LAB_HOME": str(out / "lab"),
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",  # gloo on the CPU, even on a machine with one GPU for two ranks
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(ROOT / "tests" / "ddp_probe.py"), str(out), *MODELS]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    load = lambda rank, name: torch.load(out / f"rank{rank}-{name}.pt", weights_only=True)  # noqa: E731
    records = {name: (load(0, name), load(1, name)) for name in MODELS}
    # One thread for the single-process runs too: on 2 cores shared with other work, 2 OpenMP
    # threads took resnet20's 4 steps from 7 s to 98 s (measured with a load average of 8).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("RESNET_LAB_HOME", str(out / "lab"))
            yield records
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("name", MODELS)
def test_ranks_train_on_disjoint_shards_and_end_with_identical_weights(ranks, name):
    first, second = ranks[name]
    assert len(first["indices"]) == len(second["indices"]) == STEPS
    for a, b in zip(first["indices"], second["indices"], strict=True):
        assert len(a) == len(b) == 32 and not set(a) & set(b)
    params = first["parameters"]
    assert params and params == second["parameters"]
    for key in params:
        assert torch.equal(first["trained"][key], second["trained"][key]), key  # bit for bit
    buffers = [k for k in first["trained"] if k not in params]
    if name == "mini_residual":
        assert not buffers
        return
    # Batch norm: DDP broadcasts rank 0's buffers before each training forward, so the running
    # statistics differ after the last step by that step's own batch on each rank. The next
    # forward (engine.evaluate's first batch) broadcasts them again: every rank then evaluates,
    # and rank 0 saves, the same statistics.
    stats = [k for k in buffers if k.endswith(("running_mean", "running_var"))]
    assert stats and any(not torch.equal(first["trained"][k], second["trained"][k]) for k in stats)
    for key in buffers:
        if key.endswith("num_batches_tracked"):
            assert int(first["trained"][key]) == int(second["trained"][key]) == STEPS
        assert torch.equal(first["evaluated"][key], second["evaluated"][key]), key
        assert torch.equal(first["evaluated"][key], first["trained"][key]), key  # eval mode updates none


@pytest.mark.parametrize("name", MODELS)
def test_one_process_on_rank_0s_shard_alone_ends_elsewhere(ranks, name):
    first, _ = ranks[name]
    shard = [torch.tensor(idx) for idx in first["indices"]]
    model, _, trained_on = train_steps(probe_config(name), batches_from=shard)
    assert [idx.tolist() for idx in trained_on] == first["indices"]
    alone = model.state_dict()
    params = first["parameters"]
    # Same start, same steps, same rank 0 data: only the other rank's gradients make the difference.
    diff = max((alone[k] - first["trained"][k]).abs().max().item() for k in params)
    assert diff > 1e-3, diff


def test_the_all_reduce_is_one_batch_of_both_shards_without_batch_norm(ranks):
    # Averaging two ranks' gradients of the mean loss over 32 images each is the gradient of the
    # mean loss over their 64: a single process with batch_size 64 takes exactly the rows the two
    # ranks shared out (engine.batch_indices strides each 64 rows over the ranks). Only for a
    # model without batch norm: with it, each rank normalises by its own 32 images' statistics, a
    # different function of the data than one batch of 64, so resnet20 is not compared here
    # (measured: 3e-8 apart for mini_residual; 0.02 for resnet20, as far as rank 0's shard alone).
    first, second = ranks["mini_residual"]
    model, _, trained_on = train_steps(probe_config("mini_residual", batch_size=64))
    for both, a, b in zip(trained_on, first["indices"], second["indices"], strict=True):
        assert sorted(both.tolist()) == sorted(a + b)
    single = model.state_dict()
    for key, value in first["trained"].items():
        torch.testing.assert_close(single[key], value, rtol=1e-5, atol=1e-6, msg=key)
