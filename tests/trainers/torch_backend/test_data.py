"""Datasets through torchvision: real MNIST / Fashion-MNIST, CIFAR-10 on self-written official-format files."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from hashlab import Architecture, HashSpec, build_map, save_index_file
from trainers.torch_backend.config import TrainConfig
from trainers.torch_backend.data import (
    DatasetError,
    load_device_data,
    load_split,
    resolve_data_root,
    split_validation,
    validation_indices,
)
from trainers.torch_backend.training import train

CPU = torch.device("cpu")


# --- CIFAR-10 in the official format: Python 2 cPickle dicts (byte-string keys) --------------------------------------


def _py2_pickle(obj) -> bytes:
    """Pickle ``obj`` as Python 2 did for CIFAR-10: str as byte strings (``pickle.load(f, encoding="bytes")``
    gives ``b'data'`` keys, ``encoding="latin1"`` gives ``'data'``), ints, lists and numpy arrays."""
    if isinstance(obj, str):
        raw = obj.encode("latin1")
        return b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<i", len(raw)) + raw
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_pickle(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2_pickle(k) + _py2_pickle(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):  # numpy's own protocol-2 stream, without its PROTO and STOP
        return pickle.dumps(obj, protocol=2)[2:-1]
    raise TypeError(type(obj))


def write_cifar10(root: Path, n_train_per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Write cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} under ``root``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    out: dict[str, list] = {"train_x": [], "train_y": []}
    batches = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for name in batches:
        n = n_test if name == "test_batch" else n_train_per_batch
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        entry = {
            "batch_label": f"{name} of 6",
            "labels": labels,
            "data": data,
            "filenames": [f"img_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(b"\x80\x02" + _py2_pickle(entry) + b".")
        key = "test" if name == "test_batch" else "train"
        out.setdefault(f"{key}_x", []).append(data)
        out.setdefault(f"{key}_y", []).extend(labels)
    meta = {
        "num_cases_per_batch": n_train_per_batch,
        "num_vis": 3072,
        "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    }
    (folder / "batches.meta").write_bytes(b"\x80\x02" + _py2_pickle(meta) + b".")
    return {
        "train_x": np.concatenate(out["train_x"]),
        "train_y": np.array(out["train_y"]),
        "test_x": np.concatenate(out["test_x"]),
        "test_y": np.array(out["test_y"]),
    }


def test_written_cifar10_files_are_python2_style(tmp_path):
    write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert set(entry) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (4, 3072)


def test_cifar10_loader_reads_official_format_without_md5(tmp_path):
    want = write_cifar10(tmp_path)
    for split, train_flag in (("train", True), ("test", False)):
        x, y = load_split("cifar10", tmp_path, train=train_flag, verify_md5=False)
        assert x.dtype == torch.uint8 and x.shape == (len(want[f"{split}_y"]), 3, 32, 32)
        # the 3072 bytes of a row are the red, green, blue 32x32 planes, row-major
        np.testing.assert_array_equal(x.numpy().reshape(len(x), -1), want[f"{split}_x"])
        np.testing.assert_array_equal(y.numpy(), want[f"{split}_y"])


def test_cifar10_md5_check_is_on_by_default(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(DatasetError, match="do not match the official md5s.*--no-verify-md5"):
        load_split("cifar10", tmp_path, train=True)


def test_missing_cifar10_names_the_path_and_the_archive(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_split("cifar10", tmp_path, train=True)
    msg = str(err.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "lacks data_batch_1" in msg
    assert "cifar-10-python.tar.gz" in msg and "--download" in msg


def test_train_on_cifar10_files(tmp_path):
    want = write_cifar10(tmp_path / "data")
    path = save_index_file(
        build_map(HashSpec(kind="uniform", table_size=64), Architecture((3072, 16, 10))), tmp_path / "cifar.safetensors"
    )
    cfg = TrainConfig(
        dataset="cifar10", data_root=str(tmp_path / "data"), verify_md5=False, epochs=2, batch_size=5, device="cpu"
    )
    res = train(path, cfg, progress=False)
    assert res.data.train_size == 20 and res.data.test_size == 6
    channels = want["train_x"].reshape(20, 3, 1024).transpose(1, 0, 2).reshape(3, -1) / 255.0
    np.testing.assert_allclose(res.data.mean, channels.mean(1), rtol=1e-12)
    np.testing.assert_allclose(res.data.std, channels.std(1), rtol=1e-12)
    assert len(res.epochs) == 2 and 0.0 <= res.test_accuracy <= 1.0
    with pytest.raises(ValueError, match="mnist has 784 features .* --arch mnist-mlp"):
        train(path, TrainConfig(dataset="mnist", data_root=str(tmp_path / "data")), progress=False)


# --- MNIST / Fashion-MNIST -------------------------------------------------------------------------------------------


def test_missing_mnist_names_the_path_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_split("mnist", tmp_path, train=True)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "lacks train-images-idx3-ubyte" in msg
    assert "--download" in msg and "shared/data" in msg
    assert isinstance(err.value, FileNotFoundError)  # the CLI reports it as bad input (exit 2)


def test_truncated_mnist_is_reported_as_corrupt(tmp_path, data_root):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (data_root / "MNIST" / "raw").iterdir():
        if not f.name.endswith(".gz"):
            (raw / f.name).write_bytes(f.read_bytes()[:1000])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_split("mnist", tmp_path, train=False)


def test_data_root_from_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("HASHLAB_DATA_ROOT", raising=False)
    with pytest.raises(DatasetError, match="pass --data-root DIR .* or set HASHLAB_DATA_ROOT"):
        resolve_data_root(None)
    monkeypatch.setenv("HASHLAB_DATA_ROOT", str(tmp_path))
    assert resolve_data_root(None) == tmp_path.resolve()
    assert resolve_data_root(tmp_path / ".") == tmp_path.resolve()
    with pytest.raises(DatasetError, match="is not a directory"):
        resolve_data_root(tmp_path / "absent")


def test_real_mnist_tensors_and_normalisation(data_root):
    train_data, test_data, info = load_device_data("mnist", data_root, CPU, limit_train=1000)
    assert (info["train_size"], info["test_size"], len(train_data), len(test_data)) == (1000, 10000, 1000, 10000)
    assert train_data.images.dtype == torch.uint8 and train_data.images.shape == (1000, 784)
    assert train_data.labels[:5].tolist() == [5, 0, 4, 1, 9]
    # the well-known MNIST statistics, computed here over all 60000 training images
    assert info["mean"][0] == pytest.approx(0.1307, abs=1e-4) and info["std"][0] == pytest.approx(0.3081, abs=1e-4)
    x, y = test_data.batch(slice(0, 10000))
    assert x.dtype == torch.float32 and x.shape == (10000, 784) and y.dtype == torch.int64
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02


def test_real_fashion_mnist_split(data_root):
    x, y = load_split("fashion-mnist", data_root, train=False)
    assert x.shape == (10000, 1, 28, 28) and torch.bincount(y).tolist() == [1000] * 10


# --- no code runs from a CIFAR-10 pickle; data far from the official statistics warns ---------------------------------


class _Evil:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path(__import__('os').environ['EVIL_MARK']).touch()",))


def test_malicious_cifar_pickle_is_refused_without_running_code(tmp_path, monkeypatch):
    write_cifar10(tmp_path)
    mark = tmp_path / "pwned"
    monkeypatch.setenv("EVIL_MARK", str(mark))
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(pickle.dumps({"data": _Evil(), "labels": []}))
    with pytest.raises(DatasetError, match="refusing global builtins.eval"):
        load_split("cifar10", tmp_path, train=True, verify_md5=False)  # --no-verify-md5 reads any files
    assert not mark.exists()
    pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_3").read_bytes())  # the file really is armed
    assert mark.exists()


def test_restricted_unpickler_reads_official_format_and_refuses_object_arrays(tmp_path):
    from trainers.torch_backend.data import load_cifar_pickle

    expected = write_cifar10(tmp_path)
    entry = load_cifar_pickle(tmp_path / "cifar-10-batches-py" / "data_batch_1")
    np.testing.assert_array_equal(entry["data"], expected["train_x"][:4])
    assert entry["labels"] == list(expected["train_y"][:4]) and entry["batch_label"] == "data_batch_1 of 6"
    bad = tmp_path / "obj"
    bad.write_bytes(pickle.dumps({"data": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(pickle.UnpicklingError):
        load_cifar_pickle(bad)


def _write_mnist(root: Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    n = len(images)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.tobytes())


def test_random_pixels_in_well_formed_mnist_warn(tmp_path, data_root):
    from trainers.torch_backend.data import DataWarning, check_pixel_stats

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 500), ("t10k", 100)):
        _write_mnist(
            tmp_path, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8), prefix
        )
    with pytest.warns(DataWarning, match="far from the official"):
        _, _, info = load_device_data("mnist", tmp_path, CPU)
    assert "far from the official" in info["warning"]
    x, _ = load_split("mnist", data_root, train=True)  # the real files are within the tolerance
    mean, std = (x.double() / 255).mean().item(), (x.double() / 255).std().item()
    assert check_pixel_stats("mnist", [mean], [std], "real") is None


@given(
    n=st.integers(3, 5000),
    fraction=st.floats(0.0, 0.9),
    how=st.sampled_from(["last", "random"]),
    seed=st.integers(0, 2**63 - 1),
)
def test_validation_split_is_deterministic_and_disjoint(n, fraction, how, seed):
    n_val = round(fraction * n)
    if fraction > 0 and not (n_val >= 1 and n - n_val >= 2):
        with pytest.raises(ValueError, match="need at least 1 validation and 2 training samples"):
            validation_indices(n, fraction, how, seed)
        return
    tr, va = validation_indices(n, fraction, how, seed)
    assert len(va) == n_val and len(tr) == n - n_val
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(n))  # disjoint, covering
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)  # sorted: file order kept
    tr2, va2 = validation_indices(n, fraction, how, seed)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    if how == "last":
        assert np.array_equal(va, np.arange(n - n_val, n))


def test_random_validation_split_depends_on_the_seed_only():
    a = validation_indices(1000, 0.1, "random", 0)[1]
    assert np.array_equal(a, validation_indices(1000, 0.1, "random", 0)[1])
    assert not np.array_equal(a, validation_indices(1000, 0.1, "random", 1)[1])
    assert np.array_equal(a, np.sort(np.random.default_rng(0).permutation(1000)[900:]))
    with pytest.raises(ValueError, match="unknown validation split 'first'"):
        validation_indices(10, 0.1, "first", 0)


def test_split_validation_of_real_mnist(data_root):
    train, _, _ = load_device_data("mnist", data_root, torch.device("cpu"), limit_train=1000)
    assert split_validation(train, 0.0, "last", 0) == (train, None)
    tr, va = split_validation(train, 0.1, "last", 0)
    assert (len(tr), len(va)) == (900, 100)
    assert torch.equal(va.images, train.images[900:]) and torch.equal(tr.labels, train.labels[:900])
    assert va.mean is train.mean and va.std is train.std  # the whole training split's normalisation
