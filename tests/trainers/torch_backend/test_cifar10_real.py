"""The CIFAR-10 path end to end on real data: the rebuilt copy in ../shared/data, the paper's network and recipe.

The copy's pickles are lossless but rebuilt, so their md5s differ from torchvision's: it is read with
``verify_md5=False`` (``--no-verify-md5``), and the default check refuses it with a message naming that option.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hashlab import HashSpec, build_map, save_index_file
from hashlab.maps.spec import ARCHITECTURES
from trainers.torch_backend.config import TrainConfig
from trainers.torch_backend.data import KNOWN_STATS, DatasetError, load_device_data, load_split
from trainers.torch_backend.training import train

LIMIT = 300  # training images: one epoch is two mini-batches of the paper's 200 (the last one 100)


def _numpy_channel_stats(folder) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std of pixel / 255 over data_batch_1..5, from histograms (exact)."""
    counts = np.zeros((3, 256), dtype=np.int64)
    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "rb") as f:
            data = pickle.load(f, encoding="latin1")["data"]  # uint8 (10000, 3072): 1024 R, 1024 G, 1024 B
        for c in range(3):
            counts[c] += np.bincount(data[:, c * 1024 : (c + 1) * 1024].ravel(), minlength=256)
    v = np.arange(256) / 255.0
    n = counts.sum(1)
    mean = (counts * v).sum(1) / n
    std = np.sqrt((counts * v**2).sum(1) / n - mean**2)
    return mean, std


def test_the_rebuilt_copy_is_refused_by_the_md5_check_with_the_way_out(cifar10_root):
    with pytest.raises(DatasetError) as err:
        load_split("cifar10", cifar10_root, train=False)
    msg = str(err.value)
    assert "do not match the official md5s" in msg and str(cifar10_root / "cifar-10-batches-py") in msg
    assert "--no-verify-md5" in msg and "TrainConfig(verify_md5=False)" in msg


@pytest.mark.slow
def test_cifar10_trains_one_short_epoch_on_the_paper_network(cifar10_root, tmp_path):
    """A few hundred real images, the paper's 3072-2000x5-10 Linear-ELU-BN net, one 1000-entry table per layer.

    About 20 s on one core: the map (22.16M virtual weights) takes ~5 s, the epoch ~1 s, and the full
    10,000-image test pass most of the rest (there is no option to shorten it, and the test split is
    the split every reported accuracy uses).
    """
    arch = ARCHITECTURES["cifar10-mlp"]
    assert arch.features == (3072, 2000, 2000, 2000, 2000, 2000, 10)
    cfg = TrainConfig(
        dataset="cifar10", data_root=str(cifar10_root), verify_md5=False, epochs=1, limit_train=LIMIT, device="cpu"
    )
    # the data stays on the device as uint8, flattened to the 3072 inputs; normalised per batch
    tr, te, info = load_device_data("cifar10", cifar10_root, torch.device("cpu"), verify_md5=False, limit_train=LIMIT)
    assert tr.images.dtype == torch.uint8 and tuple(tr.images.shape) == (LIMIT, 3072)
    assert tuple(te.images.shape) == (10000, 3072) and te.labels.dtype == torch.int64
    assert int(te.labels.max()) == 9 and np.bincount(te.labels.numpy()).tolist() == [1000] * 10
    x, y = tr.batch(slice(0, 200))
    assert x.dtype == torch.float32 and tuple(x.shape) == (200, 3072) and tuple(y.shape) == (200,)
    assert y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # the official data_batch_1 order

    # the loader's statistics: of the whole training split (not the limited one), as numpy computes them
    mean, std = _numpy_channel_stats(cifar10_root / "cifar-10-batches-py")
    np.testing.assert_allclose(info["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(info["std"], std, rtol=1e-12)
    np.testing.assert_allclose(mean, KNOWN_STATS["cifar10"][0], atol=1e-4)  # the values quoted for CIFAR-10
    np.testing.assert_allclose(std, KNOWN_STATS["cifar10"][1], atol=1e-4)

    imap = build_map(HashSpec(kind="dirichlet", alpha=1.0, table_size=1000, seed=1000), arch)
    res = train(save_index_file(imap, tmp_path / "cifar.safetensors"), cfg, progress=False)
    assert res.data.train_size == LIMIT and res.data.test_size == 10000 and res.data.warning is None
    np.testing.assert_allclose(res.data.mean, mean, rtol=1e-12)
    assert list(res.data.shape) == [3, 32, 32] and res.data.num_classes == 10
    assert res.model.parameters < 40_000  # 6 tables of 1000 plus biases and BatchNorm: not 22M weights
    assert len(res.epochs) == 1 and 0.0 <= res.test_accuracy <= 1.0 and np.isfinite(res.test_loss)
