"""Image datasets as whole tensors on the training device (MNIST, Fashion-MNIST, CIFAR-10).

Files are read with torchvision's dataset classes from a local root (``download=False``
unless asked). The images stay uint8 on the device; each batch is normalised when it is
sliced: ``x = (pixel / 255 - mean[c]) / std[c]`` with the per-channel mean and standard
deviation of the whole training split (computed once, recorded in the results). No
per-sample PIL transforms, no DataLoader.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import Tensor

__all__ = ["DatasetError", "DatasetInfo", "DATASETS", "DeviceData", "CIFAR10Files", "resolve_data_root",
           "load_split", "load_device_data"]

ENV_DATA_ROOT = "HASHLAB_DATA_ROOT"


class DatasetError(FileNotFoundError):
    """A dataset is missing, incomplete or unreadable under the data root; the message says how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a supported dataset."""

    name: str
    folder: str  # where torchvision looks under the root
    shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int
    how_to_get: str
    arch_preset: str  # hashlab.maps.spec.ARCHITECTURES key of the paper's MLP for it

    @property
    def num_features(self) -> int:
        c, h, w = self.shape
        return c * h * w


class CIFAR10Files(torchvision.datasets.CIFAR10):
    """torchvision's :class:`~torchvision.datasets.CIFAR10` with an explicit opt-out of its md5 check.

    With ``verify_md5=True`` (default) this is torchvision's class unchanged: the five
    ``data_batch_*``, ``test_batch`` and ``batches.meta`` must be the official files.
    With ``verify_md5=False`` the same files are only required to exist, and are parsed by
    torchvision's own code (python pickles with ``data``: uint8 ``(N, 3072)`` in CHW
    order, and ``labels``), so data in the official format that is not the official
    release (a subset, your own images, a test fixture) can be read. Nothing else changes.
    """

    def __init__(self, root: str | os.PathLike, train: bool = True, download: bool = False,
                 verify_md5: bool = True) -> None:
        if not verify_md5:  # torchvision's check_integrity(path, md5=None) only checks existence
            self.train_list = [[name, None] for name, _ in type(self).train_list]
            self.test_list = [[name, None] for name, _ in type(self).test_list]
            self.meta = dict(type(self).meta, md5=None)
        super().__init__(root, train=train, download=download)


_MNIST_GET = ("copy the four official IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
              "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gunzipped, as torchvision expects) into {dir}, "
              "or rerun with --download to let torchvision fetch them "
              "(the repository's ../shared/data is such a root: --data-root ../shared/data)")

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST/raw", (1, 28, 28), 10, _MNIST_GET, "mnist-mlp"),
    "fashion-mnist": DatasetInfo("fashion-mnist", "FashionMNIST/raw", (1, 28, 28), 10, _MNIST_GET,
                                 "mnist-mlp"),
    "cifar10": DatasetInfo(
        "cifar10", "cifar-10-batches-py", (3, 32, 32), 10,
        "extract the official cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html, md5 "
        "c58f30108f718f92721af3b95e74349a) into the data root so that {dir} holds data_batch_1..5, test_batch "
        "and batches.meta, or rerun with --download", "cifar10-mlp"),
}


_MNIST_CLASSES = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}


def _expected_files(name: str) -> list[str]:
    """Files torchvision needs under ``DATASETS[name].folder`` (either split)."""
    if name == "cifar10":
        cls = torchvision.datasets.CIFAR10
        return [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [os.path.splitext(os.path.basename(url))[0] for url, _ in _MNIST_CLASSES[name].resources]


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """``data_root`` if given, else ``$HASHLAB_DATA_ROOT``.

    Raises:
        DatasetError: if neither is set, or the directory does not exist.
    """
    if data_root is None:
        data_root = os.environ.get(ENV_DATA_ROOT) or None
        if data_root is None:
            raise DatasetError(f"no data root: pass --data-root DIR (TrainConfig.data_root) or set {ENV_DATA_ROOT}; "
                               "DIR is a torchvision root holding MNIST/raw, FashionMNIST/raw or cifar-10-batches-py")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"data root {root} is not a directory; pass --data-root DIR or set {ENV_DATA_ROOT} "
                           "to a torchvision data root")
    return root.resolve()


def load_split(name: str, root: str | os.PathLike, train: bool, download: bool = False,
               verify_md5: bool = True) -> tuple[Tensor, Tensor]:
    """Read one split with torchvision.

    Args:
        name: a key of :data:`DATASETS`.
        root: torchvision data root.
        train: training split if True, else test split.
        download: let torchvision download missing files.
        verify_md5: CIFAR-10 only, see :class:`CIFAR10Files`.

    Returns:
        ``(images, labels)``: uint8 ``(N, C, H, W)`` and int64 ``(N,)`` CPU tensors.

    Raises:
        DatasetError: naming the directory and how to obtain the data, if files are missing,
            fail the md5 check, or cannot be parsed.
    """
    info = DATASETS[name]
    root = Path(root)
    where = root / info.folder
    how = info.how_to_get.format(dir=where)
    split_name = "train" if train else "test"
    try:
        if name == "cifar10":
            ds = CIFAR10Files(root, train=train, download=download, verify_md5=verify_md5)
            x = torch.from_numpy(ds.data).permute(0, 3, 1, 2)  # torchvision keeps HWC
        else:
            ds = _MNIST_CLASSES[name](root, train=train, download=download)
            x = ds.data.unsqueeze(1)
        y = torch.as_tensor(ds.targets, dtype=torch.int64)
    except Exception as e:  # torchvision raises RuntimeError, pickle/numpy/torch parsers many kinds
        missing = [f for f in _expected_files(name) if not (where / f).is_file()]
        if missing:
            msg = f"{info.name} {split_name} split not found: {where} lacks {', '.join(missing)}"
        elif name == "cifar10" and verify_md5 and isinstance(e, RuntimeError) and "corrupted" in str(e):
            msg = (f"{info.name} files under {where} do not match the official md5s (corrupt, or not the "
                   "official release; to read your own files in the official pickle format pass --no-verify-md5)")
        else:
            msg = (f"{info.name} files under {where} cannot be read ({type(e).__name__}: {e}); "
                   "they are truncated or corrupt")
        raise DatasetError(f"{msg}. To fix: {how}") from None
    x = x.contiguous()
    if x.dtype != torch.uint8 or tuple(x.shape[1:]) != info.shape or y.shape != (x.shape[0],):
        raise DatasetError(f"{info.name} files under {where} hold images {tuple(x.shape)} {x.dtype} and labels "
                           f"{tuple(y.shape)}; expected uint8 (N, {', '.join(map(str, info.shape))}) and (N,): {how}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= info.num_classes):
        raise DatasetError(f"{info.name} labels under {where} must lie in [0, {info.num_classes}), got "
                           f"[{int(y.min())}, {int(y.max())}]: the files are corrupt: {how}")
    return x, y


@dataclass
class DeviceData:
    """A split kept as one uint8 tensor on the training device; batches are normalised when sliced.

    Attributes:
        images: uint8 ``(N, C*H*W)`` on the device.
        labels: int64 ``(N,)`` on the device.
        mean, std: float32 ``(C*H*W,)`` per-pixel copies of the per-channel statistics.
    """

    images: Tensor
    labels: Tensor
    mean: Tensor
    std: Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, index: Tensor | slice) -> tuple[Tensor, Tensor]:
        """``(x, y)``: float32 ``(B, C*H*W)`` normalised pixels and int64 labels of ``index``."""
        x = self.images[index].to(torch.float32).div_(255.0).sub_(self.mean).div_(self.std)
        return x, self.labels[index]


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and (population) standard deviation of ``images / 255``, uint8 ``(N, C, H, W)``."""
    x = images.to(torch.float64).div_(255.0).transpose(0, 1).reshape(images.shape[1], -1)
    return x.mean(1).tolist(), x.std(1, correction=0).tolist()


def load_device_data(name: str, root: str | os.PathLike, device: torch.device, download: bool = False,
                     verify_md5: bool = True, limit_train: int | None = None,
                     ) -> tuple[DeviceData, DeviceData, dict]:
    """Both splits of ``name`` on ``device``, normalised with the training split's statistics.

    Args:
        limit_train: keep only the first ``limit_train`` training samples (the statistics
            are still those of the whole training split).

    Returns:
        ``(train, test, info)`` where ``info`` is a JSON-ready dict (dataset, root, sizes,
        shape, mean, std) for the results file.

    Raises:
        DatasetError: see :func:`load_split`.
    """
    spec = DATASETS[name]
    x_tr, y_tr = load_split(name, root, True, download, verify_md5)
    x_te, y_te = load_split(name, root, False, download, verify_md5)
    mean, std = channel_stats(x_tr)
    if limit_train is not None:
        x_tr, y_tr = x_tr[:limit_train], y_tr[:limit_train]
    pixels = spec.shape[1] * spec.shape[2]

    def per_pixel(v: list[float]) -> Tensor:
        return torch.tensor(v, dtype=torch.float32, device=device).repeat_interleave(pixels)

    def put(x: Tensor, y: Tensor) -> DeviceData:
        return DeviceData(x.reshape(len(x), -1).to(device), y.to(device), per_pixel(mean), per_pixel(std))

    info = {"dataset": name, "root": str(root), "shape": list(spec.shape), "num_classes": spec.num_classes,
            "train_size": len(y_tr), "test_size": len(y_te), "mean": mean, "std": std,
            "normalisation": "(pixel / 255 - mean[channel]) / std[channel], training-split statistics"}
    return put(x_tr, y_tr), put(x_te, y_te), info
