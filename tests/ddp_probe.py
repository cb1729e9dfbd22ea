"""A few DDP steps through the engine's own code path; run by tests/test_distributed.py.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_probe.py OUT MODEL...

Each rank writes ``OUT/rank<r>-<MODEL>.pt``: the sample indices of the batches it trained on,
its weights after the steps (``trained``), and after one forward under ``no_grad`` as
``engine.evaluate``'s first batch makes (``evaluated``). ``train_steps`` is also what the test
calls in its own process for the single-process runs it compares against.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from resnet_core import data as data_mod
from resnet_core import engine
from resnet_core.config import TrainConfig

STEPS = 4


def probe_config(model: str, batch_size: int = 32) -> TrainConfig:
    """No augmentation: its generator is seeded by (seed, epoch, step), the same on every rank,
    and a batch of 64 draws other shifts than two of 32 would."""
    return TrainConfig(
        dataset="mnist-sample",
        model=model,
        batch_size=batch_size,
        max_train_batches=STEPS,
        augment="none",
        seed=0,
        device="cpu",
        lr=0.05,
    )


def train_steps(config: TrainConfig, batches_from: list[torch.Tensor] | None = None):
    """Build as ``engine.fit`` does and train ``config.max_train_batches`` steps of epoch 0 with
    ``engine.train_one_epoch``, under DDP when in a torchrun world. ``batches_from`` replaces the
    batches ``engine.batch_indices`` would give. Returns (the model it trained, the DDP wrapper
    or the model, the index lists it trained on)."""
    torch.manual_seed(config.seed)
    train = data_mod.load_dataset(config.dataset, "train").per_class(config.labels_per_class, config.seed)
    device = engine.resolve_device(config.device)
    model, plan, report = engine.build_model(config, train, data_mod.normalization(config.dataset))
    stats = torch.tensor([plan.mean, plan.std], device=device).view(2, 1, -1, 1, 1)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = engine.build_optimizer(config, model, set(report["loaded"]))
    scheduler = engine.build_scheduler(config, optimizer, config.max_train_batches)
    wrapped = model
    if engine.world()[1] > 1:
        wrapped = nn.parallel.DistributedDataParallel(model)
    trained_on = []
    real = engine.batch_indices

    def recording(*args, **kwargs):
        lists = batches_from if batches_from is not None else real(*args, **kwargs)
        trained_on[:] = lists[: config.max_train_batches]  # train_one_epoch's own cap
        return lists

    engine.batch_indices = recording
    try:
        out = engine.train_one_epoch(wrapped, optimizer, scheduler, train, config, device, stats, 0, side=plan.size)
    finally:
        engine.batch_indices = real
    # What was recorded is what was fed: as many images as train_one_epoch counted.
    assert out["seen"] == sum(len(idx) for idx in trained_on) and out["steps"] == len(trained_on), out
    return model, wrapped, trained_on


def main(out_dir: Path, model_names: list[str]) -> None:
    engine.setup_distributed()
    rank, size = engine.world()
    assert size == 2, "run under torchrun with --nproc_per_node=2"
    for name in model_names:
        model, wrapped, trained_on = train_steps(probe_config(name))
        trained = {k: v.detach().clone() for k, v in model.state_dict().items()}
        wrapped.eval()
        with torch.no_grad():  # as engine.evaluate's first batch
            wrapped(torch.zeros(2, 1, 28, 28).contiguous(memory_format=torch.channels_last))
        result = {
            "indices": [idx.tolist() for idx in trained_on],
            "parameters": [n for n, _ in model.named_parameters()],  # the rest of the state are buffers
            "trained": trained,
            "evaluated": model.state_dict(),
        }
        torch.save(result, out_dir / f"rank{rank}-{name}.pt")
    engine.teardown_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
