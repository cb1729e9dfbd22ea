"""The engine's fast path: no host sync per batch, inference mode for evaluation, same numbers.

A CPU has no device queue to drain, so "host sync" is observed where it would happen on a GPU:
every read of a tensor's value into Python (``item``, ``float``, ``int``, ``bool``, ``tolist``).
"""

import pytest
import torch

from resnet_core import data, engine, models
from resnet_core.config import TrainConfig

READS = ("item", "__float__", "__int__", "__bool__", "__index__", "tolist")


def count_reads(monkeypatch) -> list[str]:
    calls: list[str] = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def one_epoch(batches: int, callback=None) -> tuple[dict, list[str]]:
    config = TrainConfig(model="mini_residual", batch_size=32, max_train_batches=batches, augment="crop", pad=2)
    train = data.load_dataset("mnist-sample", "train")
    model = models.get_model("mini_residual", num_classes=10, in_channels=1, image_size=28)
    model = model.to(memory_format=torch.channels_last)
    optimizer = engine.build_optimizer(config, model)
    scheduler = engine.build_scheduler(config, optimizer, batches)
    stats = torch.tensor([[0.1307], [0.3081]]).view(2, 1, -1, 1, 1)
    with pytest.MonkeyPatch.context() as patch:  # undone on leaving; the lab's own patches stay
        calls = count_reads(patch)
        out = engine.train_one_epoch(
            model, optimizer, scheduler, train, config, torch.device("cpu"), stats, 0, callback=callback
        )
    return out, list(calls)


def test_reads_back_per_logging_interval_not_per_batch(lab, monkeypatch):
    monkeypatch.setattr(engine, "LOG_EVERY_S", 1e9)  # events only at the first and last batch
    events: list[dict] = []
    short, short_reads = one_epoch(4, events.append)
    long, long_reads = one_epoch(16, events.append)
    assert long["seen"] == 16 * 32 and short["seen"] == 4 * 32
    # Four times the batches, the same reads: none of them happens per batch.
    assert len(long_reads) == len(short_reads), (short_reads, long_reads)
    assert [e["step"] for e in events] == [1, 4, 1, 16]
    assert 0 < long["correct"] <= long["seen"] and long["loss"] > 0


def test_the_logged_loss_is_the_mean_since_the_last_event(lab, monkeypatch):
    monkeypatch.setattr(engine, "LOG_EVERY_S", 1e9)
    events: list[dict] = []
    out, _ = one_epoch(6, events.append)
    first, last = events
    # first: batch 1 alone; last: batches 2-6. Together they are the epoch's summed loss.
    total = first["loss"] * 32 + last["loss"] * 5 * 32
    assert abs(total - out["loss"]) < 1e-3 * out["loss"]


def test_evaluation_runs_in_inference_mode(lab):
    test = data.load_dataset("mnist-sample", "test").subset(50)
    model = models.get_model("mini_residual", num_classes=10, in_channels=1, image_size=28)
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(torch.is_inference_mode_enabled()))
    stats = torch.tensor([[0.1307], [0.3081]]).view(2, 1, -1, 1, 1)
    result = engine.evaluate(model, test, torch.device("cpu"), stats)
    assert seen and all(seen) and result["n"] == 50
    # The weights still train afterwards: inference tensors never leaked into the model.
    loss = model(torch.zeros(2, 1, 28, 28)).sum()
    loss.backward()
    assert model.fc.weight.grad is not None
