"""Image datasets as whole tensors on the training device (MNIST, Fashion-MNIST, CIFAR-10).

Files are read with torchvision's dataset classes from a local root (``download=False``
unless asked). The images stay uint8 on the device; each batch is normalised when it is
sliced: ``x = (pixel / 255 - mean[c]) / std[c]`` with the per-channel mean and standard
deviation of the whole training split (computed once, recorded in the results). No
per-sample PIL transforms, no DataLoader.
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor

from .config import TrainConfig

__all__ = [
    "DatasetError",
    "DataWarning",
    "DatasetInfo",
    "DATASETS",
    "DeviceData",
    "CIFAR10Files",
    "load_cifar_pickle",
    "resolve_data_root",
    "load_split",
    "load_device_data",
    "load_config_data",
    "check_pixel_stats",
    "KNOWN_STATS",
    "validation_indices",
    "split_validation",
]

ENV_DATA_ROOT = "HASHLAB_DATA_ROOT"


class DatasetError(FileNotFoundError):
    """A dataset is missing, incomplete or unreadable under the data root; the message says how to get it."""


class DataWarning(UserWarning):
    """A dataset loads but looks wrong (its pixel statistics are far from the official release's)."""


# Only what the official CIFAR-10 python pickles need: numpy arrays (and, in Python-3 protocol-2
# pickles of them, bytes spelled as _codecs.encode); dicts, lists, str, bytes and ints need no global.
_CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing global {module}.{name}: a CIFAR-10 batch holds only numpy arrays, "
            "lists, dicts, strings and numbers"
        )


def _check_plain(obj: Any, where: str) -> None:
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise pickle.UnpicklingError(f"{where}: numpy array of Python objects")
        elif not isinstance(x, (str, bytes, int, float)):
            raise pickle.UnpicklingError(f"{where}: unexpected {type(x).__name__} in a CIFAR-10 pickle")


def load_cifar_pickle(path: str | os.PathLike) -> dict:
    """Unpickle one CIFAR-10 python file with a restricted unpickler (no code runs).

    Only the globals numpy arrays need are resolved; every other global (``os.system``,
    ``builtins.eval``, any class) is refused, and the result must be a dict of dicts, lists,
    str, bytes, numbers and non-object numpy arrays.

    Returns:
        The dict, keys decoded as latin-1 (``"data"``, ``"labels"``, ``"label_names"``...).

    Raises:
        pickle.UnpicklingError: if the file asks for anything else.
    """
    with open(path, "rb") as f:
        obj = _CifarUnpickler(f, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise pickle.UnpicklingError(f"{path}: a CIFAR-10 pickle is a dict, got {type(obj).__name__}")
    _check_plain(obj, str(path))
    return obj


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
    With ``verify_md5=False`` the same files are only required to exist, so data in the
    official format that is not the official release (a subset, your own images, a test
    fixture) can be read. Either way the pickles (``data``: uint8 ``(N, 3072)`` in CHW order,
    and ``labels``) are read with :func:`load_cifar_pickle`, a restricted unpickler that runs
    no code, instead of torchvision's ``pickle.load``.
    """

    def __init__(
        self, root: str | os.PathLike, train: bool = True, download: bool = False, verify_md5: bool = True
    ) -> None:
        if not verify_md5:  # torchvision's check_integrity(path, md5=None) only checks existence
            official = torchvision.datasets.CIFAR10  # its class attributes: the file names with their md5s
            self.train_list = [[name, None] for name, _ in official.train_list]
            self.test_list = [[name, None] for name, _ in official.test_list]
            self.meta = dict(official.meta, md5=None)
        # torchvision's CIFAR10.__init__, with load_cifar_pickle instead of pickle.load
        torchvision.datasets.VisionDataset.__init__(self, root)
        self.train = train
        if download:
            self.download()
        if not self._check_integrity():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        data, targets = [], []
        for name, _ in self.train_list if train else self.test_list:
            entry = load_cifar_pickle(os.path.join(self.root, self.base_folder, name))
            x, y = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
            if (
                not isinstance(x, np.ndarray)
                or x.dtype != np.uint8
                or x.ndim != 2
                or x.shape[1] != 3072
                or not isinstance(y, list)
                or len(y) != len(x)
                or not all(isinstance(v, int) for v in y)
            ):
                raise ValueError(f"{name}: expected 'data' uint8 (N, 3072) and N integer 'labels'")
            data.append(x)
            targets.extend(y)
        self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC, as torchvision
        self.targets = targets
        meta_path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        if not torchvision.datasets.utils.check_integrity(meta_path, self.meta["md5"]):
            raise RuntimeError("Dataset metadata file not found or corrupted.")
        self.classes = list(load_cifar_pickle(meta_path).get(self.meta["key"], []))
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


_MNIST_GET = (
    "copy the four official IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; gunzipped, as torchvision expects) into {dir}, "
    "or rerun with --download to let torchvision fetch them "
    "(the repository's ../shared/data is such a root: --data-root ../shared/data)"
)

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST/raw", (1, 28, 28), 10, _MNIST_GET, "mnist-mlp"),
    "fashion-mnist": DatasetInfo("fashion-mnist", "FashionMNIST/raw", (1, 28, 28), 10, _MNIST_GET, "mnist-mlp"),
    "cifar10": DatasetInfo(
        "cifar10",
        "cifar-10-batches-py",
        (3, 32, 32),
        10,
        "extract the official cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html, md5 "
        "c58f30108f718f92721af3b95e74349a) into the data root so that {dir} holds data_batch_1..5, test_batch "
        "and batches.meta, or rerun with --download",
        "cifar10-mlp",
    ),
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
            raise DatasetError(
                f"no data root: pass --data-root DIR (TrainConfig.data_root) or set {ENV_DATA_ROOT}; "
                "DIR is a torchvision root holding MNIST/raw, FashionMNIST/raw or cifar-10-batches-py"
            )
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"data root {root} is not a directory; pass --data-root DIR or set {ENV_DATA_ROOT} "
            "to a torchvision data root"
        )
    return root.resolve()


def load_split(
    name: str, root: str | os.PathLike, train: bool, download: bool = False, verify_md5: bool = True
) -> tuple[Tensor, Tensor]:
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
            msg = (
                f"{info.name} files under {where} do not match the official md5s: they are corrupt, or not "
                "the official release (a rebuilt copy such as ../shared/data's, or your own files). To read "
                "files in the official pickle format anyway pass --no-verify-md5 (hashlab train, hashlab "
                "reproduce, python -m analysis.reproduce) or TrainConfig(verify_md5=False)"
            )
        else:
            msg = (
                f"{info.name} files under {where} cannot be read ({type(e).__name__}: {e}); "
                "they are truncated or corrupt"
            )
        raise DatasetError(f"{msg}. To fix: {how}") from None
    x = x.contiguous()
    if x.dtype != torch.uint8 or tuple(x.shape[1:]) != info.shape or y.shape != (x.shape[0],):
        raise DatasetError(
            f"{info.name} files under {where} hold images {tuple(x.shape)} {x.dtype} and labels "
            f"{tuple(y.shape)}; expected uint8 (N, {', '.join(map(str, info.shape))}) and (N,): {how}"
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= info.num_classes):
        raise DatasetError(
            f"{info.name} labels under {where} must lie in [0, {info.num_classes}), got "
            f"[{int(y.min())}, {int(y.max())}]: the files are corrupt: {how}"
        )
    return x, y


KNOWN_STATS: dict[str, tuple[list[float], list[float]]] = {
    "mnist": ([0.1307], [0.3081]),
    "fashion-mnist": ([0.2860], [0.3530]),
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
}
"""Per-channel mean and std of ``pixel / 255`` over each official training split."""
MEAN_TOLERANCE, STD_TOLERANCE = 0.1, 0.05


def check_pixel_stats(name: str, mean: list[float], std: list[float], where: str) -> str | None:
    """Warn (:class:`DataWarning`) and return the message if the statistics are far from :data:`KNOWN_STATS`.

    Far: some channel's mean differs by more than :data:`MEAN_TOLERANCE` or its std by more
    than :data:`STD_TOLERANCE` (random bytes: mean 0.5, std 0.289; MNIST: 0.131, 0.308).
    """
    km, ks = KNOWN_STATS[name]
    if all(abs(a - b) <= MEAN_TOLERANCE for a, b in zip(mean, km)) and all(
        abs(a - b) <= STD_TOLERANCE for a, b in zip(std, ks)
    ):
        return None
    msg = (
        f"{name} training images under {where} have pixel mean {[round(v, 4) for v in mean]} and std "
        f"{[round(v, 4) for v in std]}, far from the official {km} / {ks}: the files may be corrupt or not "
        f"{name}; training will run but its results are not comparable"
    )
    warnings.warn(msg, DataWarning, stacklevel=3)
    return msg


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


def load_device_data(
    name: str,
    root: str | os.PathLike,
    device: torch.device,
    download: bool = False,
    verify_md5: bool = True,
    limit_train: int | None = None,
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
    stats_warning = check_pixel_stats(name, mean, std, str(Path(root) / spec.folder))
    if limit_train is not None:
        x_tr, y_tr = x_tr[:limit_train], y_tr[:limit_train]
    pixels = spec.shape[1] * spec.shape[2]

    def per_pixel(v: list[float]) -> Tensor:
        return torch.tensor(v, dtype=torch.float32, device=device).repeat_interleave(pixels)

    def put(x: Tensor, y: Tensor) -> DeviceData:
        return DeviceData(x.reshape(len(x), -1).to(device), y.to(device), per_pixel(mean), per_pixel(std))

    info = {
        "dataset": name,
        "root": str(root),
        "shape": list(spec.shape),
        "num_classes": spec.num_classes,
        "train_size": len(y_tr),
        "test_size": len(y_te),
        "mean": mean,
        "std": std,
        "normalisation": "(pixel / 255 - mean[channel]) / std[channel], training-split statistics",
        "warning": stats_warning,
    }
    return put(x_tr, y_tr), put(x_te, y_te), info


def load_config_data(
    config: TrainConfig, root: str | os.PathLike, device: torch.device
) -> tuple[DeviceData, DeviceData, dict]:
    """:func:`load_device_data` with the dataset options of ``config`` (dataset, download,
    verify_md5, limit_train): both splits on ``device`` and the data info."""
    return load_device_data(
        config.dataset,
        root,
        device,
        download=config.download,
        verify_md5=config.verify_md5,
        limit_train=config.limit_train,
    )


def validation_indices(n: int, fraction: float, how: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which of ``n`` training samples are held out for validation.

    ``round(fraction * n)`` samples are held out: the last ones (``how="last"``) or a random
    subset (``how="random"``: the first ones of ``numpy.random.default_rng(seed).permutation(n)``).

    Args:
        n: number of training samples.
        fraction: in [0, 1).
        how: ``"last"`` or ``"random"``.
        seed: seed of the random subset, in [0, 2**63).

    Returns:
        ``(train, val)``: two sorted, disjoint int64 index arrays whose union is ``range(n)``
        (``val`` empty for ``fraction == 0``). Sorted: the training part keeps the file order,
        so the shuffle is the only source of order.

    Raises:
        ValueError: on an unknown ``how``, or if ``fraction > 0`` leaves fewer than one
            validation or two training samples.
    """
    if how not in ("last", "random"):
        raise ValueError(f"unknown validation split {how!r}; choose 'last' or 'random'")
    n_val = int(round(fraction * n))
    if fraction > 0 and not (n_val >= 1 and n - n_val >= 2):
        raise ValueError(
            f"val_fraction={fraction} of {n} training samples holds out {n_val}, leaving {n - n_val}; "
            "need at least 1 validation and 2 training samples: raise limit_train or val_fraction"
        )
    if how == "last":
        order = np.arange(n, dtype=np.int64)
    else:
        order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return np.sort(order[: n - n_val]), np.sort(order[n - n_val :])


def split_validation(data: DeviceData, fraction: float, how: str, seed: int) -> tuple[DeviceData, DeviceData | None]:
    """Hold out part of a training split (:func:`validation_indices`); ``(data, None)`` if ``fraction == 0``.

    Both parts keep ``data``'s normalisation (the statistics of the whole training split).

    Raises:
        ValueError: see :func:`validation_indices`.
    """
    if fraction == 0:
        return data, None
    tr, va = validation_indices(len(data), fraction, how, seed)

    def part(idx: np.ndarray) -> DeviceData:
        i = torch.from_numpy(idx).to(data.labels.device)
        return DeviceData(data.images[i], data.labels[i], data.mean, data.std)

    return part(tr), part(va)
