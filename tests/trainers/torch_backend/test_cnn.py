"""LeNet5 (the compression study's CNN) and fit(), which trains any module with a TrainConfig recipe."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hashlab
from trainers.torch_backend import LeNet5, TrainConfig, arbify, fit
from trainers.torch_backend.conv2d import ArbConv2d
from trainers.torch_backend.data import DeviceData, load_device_data
from trainers.torch_backend.layers import ArbLinear
from trainers.torch_backend.training import evaluate


def test_lenet5_has_the_papers_parameter_count_and_takes_flat_or_4d_images():
    net = LeNet5()
    assert sum(p.numel() for p in net.parameters()) == 61706
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(net(x), net(x.flatten(1)), rtol=0, atol=0)
    assert net(x).shape == (3, 10)
    assert LeNet5((2, 3, 7, 5), in_shape=(3, 32, 32), num_classes=4)(torch.randn(2, 3 * 32 * 32)).shape == (2, 4)


@pytest.mark.parametrize(
    "args", [((6, 16, 120, 84), (1, 28, 28), 10), ((1, 1, 1, 1), (1, 28, 28), 10), ((2, 3, 7, 5), (3, 32, 40), 4)]
)
def test_parameter_count_is_the_built_models(args):
    assert LeNet5.parameter_count(*args) == sum(p.numel() for p in LeNet5(*args).parameters())


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(widths=(6, 16, 120)), "4 ints"),
        (dict(widths=(6, 0, 120, 84)), "4 ints"),
        (dict(num_classes=0), "num_classes"),
        (dict(in_shape=(1, 11, 28)), "too small"),
    ],
)
def test_lenet5_bad_sizes_raise_a_clear_error(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        LeNet5(**kwargs)


def test_arbify_turns_lenet5_convolutions_and_linears_into_arbnet_layers():
    net, imap = arbify(
        LeNet5(), lambda s: hashlab.build_model_map(hashlab.HashSpec(kind="xxhash", sign=True, compression="1/16"), s)
    )
    assert [lay.name for lay in imap.layers] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert isinstance(net.conv1, ArbConv2d) and isinstance(net.fc1, ArbLinear)
    assert net(torch.randn(2, 784)).shape == (2, 10)


def _blobs(n: int, seed: int) -> DeviceData:
    """Two separable classes of flat 1x12x12 'images' (uint8), normalised to about zero mean and unit scale."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = (torch.rand(n, 144, generator=g) * 100 + 120 * y[:, None]).to(torch.uint8)
    return DeviceData(x, y, torch.full((144,), 0.4), torch.full((144,), 0.3))


def test_fit_trains_any_module_deterministically_and_follows_the_stopping_rule():
    data = _blobs(400, 0)
    config = TrainConfig(epochs=30, batch_size=50, lr=0.05, lr_patience=1, stop_after_drops=1, stop_patience=1)

    def run():
        torch.manual_seed(0)
        net = LeNet5((2, 2, 8, 8), in_shape=(1, 12, 12), num_classes=2)
        return net, fit(net, data, config)

    (a, ea), (b, eb) = run(), run()
    assert [e.train_loss for e in ea] == [e.train_loss for e in eb]
    torch.testing.assert_close(a.fc3.weight, b.fc3.weight, rtol=0, atol=0)
    assert evaluate(a, data, 100)[0] > 0.95
    lrs = [e.lr for e in ea]
    assert len(ea) < 30 and lrs[-1] < lrs[0]  # stopped by the rule, one epoch after its drop


def test_fit_records_a_validation_split_and_refuses_a_validation_schedule_without_one():
    data, val = _blobs(200, 1), _blobs(100, 2)
    config = TrainConfig(epochs=2, batch_size=50, lr_metric="val_loss", val_fraction=0.1)
    with pytest.raises(ValueError, match="val_data"):
        fit(nn.Sequential(nn.Linear(144, 2)), data, config)
    with pytest.raises(ValueError, match="table_grad_scale"):
        fit(nn.Sequential(nn.Linear(144, 2)), data, TrainConfig(table_grad_scale="load"), val_data=val)
    epochs = fit(nn.Sequential(nn.Linear(144, 2)), data, config, val_data=val)
    assert len(epochs) == 2 and all(e.val_loss is not None for e in epochs)


def test_fit_a_hashed_lenet5_on_real_fashion_mnist_learns(data_root):
    train, test, _ = load_device_data("fashion-mnist", data_root, torch.device("cpu"), limit_train=2000)
    torch.manual_seed(0)
    net, _ = arbify(
        LeNet5(),
        lambda s: hashlab.build_model_map(hashlab.HashSpec(kind="xxhash", sign=True, compression="1/4"), s),
        init="map",
    )
    fit(net, train, TrainConfig(epochs=2, batch_size=100, lr=0.05))
    assert evaluate(net, test, 1000)[0] > 0.3  # chance is 0.1
