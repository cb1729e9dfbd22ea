"""Transfer learning meets the real world: old weight files, old runs, vanished backbones,
architectures without stages (each test is a bug found by trying to break issue 10)."""

import pytest
import torch
import torchvision
from torch import nn

from resnet_core import transfer
from resnet_core.config import TrainConfig
from resnet_core.transfer import TransferError

FIXTURE = "tests/fixtures/checkpoints/mnist-sample.pt"  # resnet20, saved before issue 10


@pytest.fixture
def zoo_imagenet(tmp_path, monkeypatch):
    """resnet18 'ImageNet' weights as torchvision's model zoo serves them: saved before PyTorch
    0.4.1, so without batch norm's num_batches_tracked counters (102 tensors, not 122)."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    (hub / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    state = {k: v for k, v in torchvision.models.resnet18().state_dict().items() if "num_batches" not in k}
    name = torchvision.models.get_model_weights("resnet18").DEFAULT.url.rsplit("/", 1)[-1]
    torch.save(state, hub / "checkpoints" / name)
    return state


def test_weights_without_batch_norm_counters_stay_frozen(zoo_imagenet):
    # Every batch norm was reported "fresh" (its counter missing), so in "head" mode all 20 of
    # them trained, in train mode, and the page said 20 layers start from random weights.
    config = TrainConfig(dataset="cifar10", model="resnet18", pretrained="imagenet", trainable="head")
    source = transfer.source_weights(config)
    plan = transfer.plan_input(config, 3, 32, ([0.5] * 3, [0.25] * 3), source)
    model, report = transfer.prepare_model(config, 10, plan, source)
    assert report["fresh"] == [] and report["missing"] == ["fc.bias", "fc.weight"]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    transfer.train_mode(model)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(model.layer1[0].bn1.running_var, zoo_imagenet["layer1.0.bn1.running_var"])


def test_a_wrong_architecture_sharing_only_batch_norm_counters_is_refused(tmp_path):
    # resnet20's file chosen as resnet18: the 13 batch norms with the same names loaded their
    # step counters and nothing else, which passed for a backbone and trained from scratch.
    config = TrainConfig(dataset="mnist-sample", model="resnet18", pretrained=FIXTURE)
    view = transfer.preview(config, 10, 1, 28)
    assert view["report"]["loaded"] == []
    source = transfer.source_weights(config)
    with pytest.raises(TransferError, match="No tensor of .* fits resnet18"):
        transfer.prepare_model(config, 10, transfer.plan_input(config, 1, 28, ([0.1], [0.3]), source), source)
