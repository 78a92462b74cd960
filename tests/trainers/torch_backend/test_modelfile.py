"""Model files (save_arbnet / load_arbnet): a trained ArbMLP, or an arbified module of Embedding, Conv2d and Linear
layers, comes back bitwise, in a file a fraction of the dense network's size; corrupt, foreign and newer files are
refused with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch as st
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st_h
from torch import nn

from hashlab import (
    Architecture,
    FormatError,
    HashSpec,
    IndexMap,
    build_map,
    build_model_map,
    cluster_weights,
    save_index_file,
)
from hashlab.io import load_index_bytes
from hashlab.io.container import read_container_bytes
from tests.hashlab.io.test_format import assert_maps_equal
from trainers.torch_backend import ArbConv2d, ArbEmbedding, ArbLinear, ArbMLP, arbify, load_arbnet, save_arbnet
from trainers.torch_backend.modelfile import ARBNET_FORMAT, ModelFileError, _checksum

SIZES = (20, 12, 8, 5)
HASHEDNETS = {"activation": "relu", "batch_norm": False, "dropout": 0.25, "input_dropout": 0.25}
HASHEDNETS |= {"output_activation": False}


def _clustered() -> IndexMap:
    rng = np.random.default_rng(3)
    mats = [rng.normal(0, 0.3, (o, i)).astype(np.float32) for i, o in zip(SIZES[:-1], SIZES[1:])]
    return cluster_weights(mats, 6, iters=3)


CASES = [
    ("paper-uniform", lambda: build_map(HashSpec(kind="uniform", table_size=30, seed=1), Architecture(SIZES)), {}),
    (
        "hashednets",
        lambda: build_map(HashSpec(kind="xxhash", sign=True, compression="1/8", hash_bias=True), Architecture(SIZES)),
        HASHEDNETS,
    ),
    (
        "global-sparse",
        lambda: build_map(
            HashSpec(kind="dirichlet", alpha=0.5, table_size=50, scope="global", sparsity=0.3, sign=True),
            Architecture(SIZES),
        ),
        {"activation": "tanh", "bias": False},
    ),
    ("clustered", _clustered, {"activation": "gelu", "dropout": 0.1}),
]


def _trained(imap: IndexMap, options: dict, dtype=torch.float32, steps: int = 3) -> ArbMLP:
    """A model whose tables, biases and BatchNorm statistics are no longer their initial values."""
    torch.manual_seed(0)
    model = ArbMLP(imap, dtype=dtype, **options)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        x, y = torch.randn(16, SIZES[0], dtype=dtype), torch.randint(0, SIZES[-1], (16,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _assert_same_model(a: ArbMLP, b: ArbMLP) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key
    x = torch.randn(64, SIZES[0], dtype=a.linears[0].table.dtype, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a(x), b(x))  # bitwise, not allclose


@pytest.mark.parametrize("make,options", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_reloaded_model_computes_bitwise_the_same(tmp_path, make, options):
    model = _trained(make(), options)
    path = save_arbnet(model, tmp_path / "m.safetensors")
    back = load_arbnet(path)
    assert not back.training and back.options == model.options == {**back.options, **options}
    _assert_same_model(model, back)
    assert_maps_equal(back.to_index_map(), model.to_index_map())


def test_float64_models_keep_their_dtype(tmp_path):
    model = _trained(CASES[0][1](), {}, dtype=torch.float64)
    back = load_arbnet(save_arbnet(model, tmp_path / "m.safetensors"))
    assert back.linears[0].table.dtype == torch.float64
    _assert_same_model(model, back)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=12, deadline=None)
@given(
    st_h.sampled_from(["identity", "modulus", "uniform", "dirichlet", "neighborhood", "xxhash"]),
    st_h.sampled_from(["layer", "global"]),
    st_h.booleans(),
    st_h.booleans(),
    st_h.sampled_from([0.0, 0.5]),
    st_h.booleans(),
)
def test_every_kind_of_map_round_trips(tmp_path, kind, scope, sign, hash_bias, sparsity, batch_norm):
    extra = {"alpha": 1.0} if kind == "dirichlet" else {"radius": 2} if kind == "neighborhood" else {}
    budget = {} if kind == "identity" else {"compression": "1/4"}
    spec = HashSpec(kind=kind, scope=scope, sign=sign, hash_bias=hash_bias, sparsity=sparsity, **budget, **extra)
    model = _trained(build_map(spec, Architecture(SIZES)), {"batch_norm": batch_norm}, steps=1)
    path = save_arbnet(model, tmp_path / "m.safetensors")
    _assert_same_model(model, load_arbnet(path))


def test_the_random_state_of_the_caller_is_left_alone(tmp_path):
    path = save_arbnet(_trained(CASES[0][1](), {}), tmp_path / "m.safetensors")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    load_arbnet(path)
    assert torch.equal(torch.get_rng_state(), before)


def _tensors_and_meta(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def test_the_file_holds_tables_dense_state_and_the_map(tmp_path):
    model = _trained(CASES[1][1](), HASHEDNETS)
    tensors, meta = _tensors_and_meta(save_arbnet(model, tmp_path / "m.safetensors"))
    assert sorted(tensors) == ["blocks.2.linear.bias", "map", "table.0", "table.1", "table.2"]  # the output bias
    assert meta["format"] == ARBNET_FORMAT and json.loads(meta["model"]) == {
        "class": "ArbMLP",
        "options": model.options,
    }
    embedded = tensors["map"].numpy().tobytes()
    assert read_header_bytes(embedded)["storage"] == "spec"  # a built map: its spec alone
    assert_maps_equal(load_index_bytes(embedded), model.to_index_map())
    clustered = _trained(_clustered(), {})
    tensors, _ = _tensors_and_meta(save_arbnet(clustered, tmp_path / "c.safetensors"))
    assert read_header_bytes(tensors["map"].numpy().tobytes())["storage"] == "packed"
    assert "blocks.0.bn.running_mean" in tensors and "blocks.0.bn.num_batches_tracked" in tensors


def read_header_bytes(data: bytes) -> dict:
    return read_container_bytes(data, "map").metadata


def test_the_hashednets_model_file_is_at_most_a_fiftieth_of_the_dense_one(tmp_path):
    # HashedNets 1/64 on 784-1000-10 (Chen et al. 2015): hashlab build --arch 784-1000-10 --kind xxhash --sign
    # --compression 1/64 --hash-bias; the dense fp32 network has 795,010 parameters, 3,180,040 bytes
    imap = build_map(
        HashSpec(kind="xxhash", sign=True, compression="1/64", hash_bias=True), Architecture((784, 1000, 10))
    )
    torch.manual_seed(0)
    model = ArbMLP(imap, **HASHEDNETS).eval()
    path = save_arbnet(model, tmp_path / "hn.safetensors")
    dense = nn.Sequential(nn.Linear(784, 1000), nn.ReLU(), nn.Linear(1000, 10))
    st.save_file(dense.state_dict(), tmp_path / "dense.safetensors")
    dense_bytes = (tmp_path / "dense.safetensors").stat().st_size
    assert sum(p.numel() for p in dense.parameters()) * 4 == 3_180_040 <= dense_bytes
    assert 50 * path.stat().st_size <= 3_180_040
    assert 12_423 * 4 < path.stat().st_size < 12_423 * 4 + 4096  # the tables, the output bias and ~1.6 KB
    x = torch.randn(8, 784)
    assert torch.equal(load_arbnet(path)(x), model(x))


# -- refusals ---------------------------------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, edit, fix_checksum: bool = True) -> Path:
    tensors, meta = _tensors_and_meta(src)
    edit(tensors, meta)
    if fix_checksum:
        meta["checksum"] = _checksum(tensors)
    st.save_file(tensors, dst, metadata=meta)
    return dst


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_arbnet(_trained(CASES[0][1](), {}), tmp_path / "m.safetensors")


def _flip_table(tensors, meta):
    tensors["table.1"] = tensors["table.1"].clone()
    tensors["table.1"][3] += 1


BAD = [
    ("corrupt", lambda t, m: _flip_table(t, m), False, "do not match the file's SHA-256 checksum; the file is corrupt"),
    ("newer", lambda t, m: m.update(format_version="3"), True, "version 3 is newer than this hashlab reads"),
    (
        "module-in-v1",
        lambda t, m: m.update(model='{"class":"module","options":{}}'),
        True,
        "metadata model must be .* in format version 1",
    ),
    ("not-a-model", lambda t, m: m.update(format="other"), True, "not a hashlab model file"),
    ("bad-version", lambda t, m: m.update(format_version="01"), True, "not a positive decimal integer"),
    ("extra-meta", lambda t, m: m.update(colour="red"), True, r"unknown \['colour'\]"),
    ("bad-model", lambda t, m: m.update(model='{"class":"Net","options":{}}'), True, "metadata model must be"),
    ("bad-json", lambda t, m: m.update(model="{"), True, "metadata model: not valid JSON"),
    (
        "bad-option",
        lambda t, m: m.update(model=m["model"].replace('"elu"', '"swish"')),
        True,
        "cannot build its ArbMLP: unknown activation 'swish'",
    ),
    ("missing", lambda t, m: t.pop("blocks.0.bn.running_var"), True, r"missing \['blocks.0.bn.running_var'\]"),
    ("unknown", lambda t, m: t.update(extra=torch.zeros(2)), True, r"unknown \['extra'\]"),
    ("no-map", lambda t, m: t.pop("map"), True, "no uint8 tensor 'map'"),
    (
        "shape",
        lambda t, m: t.update({"blocks.0.bn.weight": torch.ones(13)}),
        True,
        r"'blocks.0.bn.weight' is torch.float32 \(13,\); its ArbMLP has torch.float32 \(12,\)",
    ),
    (
        "dtype",
        lambda t, m: t.update({"blocks.0.bn.weight": t["blocks.0.bn.weight"].double()}),
        True,
        "'blocks.0.bn.weight' is torch.float64",
    ),
]


@pytest.mark.parametrize("edit,fix,match", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_model_files_are_refused_with_the_file_and_the_problem(tmp_path, saved, edit, fix, match):
    bad = _rewrite(saved, tmp_path / "bad.safetensors", edit, fix_checksum=fix)
    with pytest.raises(ModelFileError, match=match) as e:
        load_arbnet(bad)
    assert str(bad) in str(e.value) and isinstance(e.value, ValueError)


def test_verify_false_trusts_the_tensors(tmp_path, saved):
    bad = _rewrite(saved, tmp_path / "bad.safetensors", _flip_table, fix_checksum=False)
    model = load_arbnet(bad, verify=False)
    assert not torch.equal(model.linears[1].table, load_arbnet(saved).linears[1].table)


def test_a_broken_embedded_map_names_it(tmp_path, saved):
    def edit(tensors, meta):
        data = bytearray(tensors["map"].numpy().tobytes())
        data[20] = ord("X")  # inside the index file's JSON header: the map's own checks catch it
        tensors["map"] = torch.frombuffer(data, dtype=torch.uint8).clone()

    with pytest.raises(FormatError, match=r"m2.safetensors:map: "):
        load_arbnet(_rewrite(saved, tmp_path / "m2.safetensors", edit))


def test_foreign_files_are_refused(tmp_path, saved):
    index = save_index_file(CASES[0][1](), tmp_path / "map.safetensors")
    with pytest.raises(ModelFileError, match="it is an index file .* ArbMLP.from_index_file"):
        load_arbnet(index)
    (tmp_path / "junk").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFileError, match="not a readable safetensors file"):
        load_arbnet(tmp_path / "junk")
    with pytest.raises(FileNotFoundError, match="save_arbnet"):
        load_arbnet(tmp_path / "missing.safetensors")


def test_only_arbnets_are_saved(tmp_path):
    with pytest.raises(TypeError, match="save_arbnet saves an ArbMLP or a module holding ArbNet layers"):
        save_arbnet(nn.Sequential(nn.Linear(2, 2)), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(TypeError, match="an ArbMLP saves the map it was built from; drop index_map"):
        save_arbnet(_trained(CASES[0][1](), {}), tmp_path / "x.safetensors", index_map=CASES[0][1]())


def test_an_impossible_storage_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="storage='spec' needs a map that its spec rebuilds"):
        save_arbnet(_trained(_clustered(), {}), tmp_path / "c.safetensors", storage="spec")
    assert not (tmp_path / "c.safetensors").exists()
    model = _trained(CASES[0][1](), {})
    _assert_same_model(model, load_arbnet(save_arbnet(model, tmp_path / "p.safetensors", storage="packed")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_model_saved_on_cuda_loads_on_cuda_and_computes_the_same():
    import tempfile

    model = _trained(CASES[1][1](), HASHEDNETS).cuda()
    with tempfile.TemporaryDirectory() as d:
        back = load_arbnet(save_arbnet(model, Path(d) / "m.safetensors"), device="cuda")
    assert back.linears[0].table.is_cuda
    x = torch.randn(32, SIZES[0], device="cuda")
    assert torch.equal(model(x), back(x))


# -- arbified modules (format version 2) ---------------------------------------------------------------------


class Net(nn.Module):
    """Embedding -> grouped, strided convolution -> BatchNorm -> Linear head (dense until arbified)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(40, 6, padding_idx=0)
        self.conv = nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 5)

    def forward(self, tokens):
        x = torch.relu(self.bn(self.conv(self.emb(tokens).permute(0, 3, 1, 2))))
        return self.head(x.mean((2, 3)))


TOKENS = torch.randint(0, 40, (6, 5, 5), generator=torch.Generator().manual_seed(2))


def _trained_net(spec: HashSpec, skip=(), seed: int = 0) -> tuple[Net, IndexMap]:
    torch.manual_seed(seed)
    net, imap = arbify(Net(), lambda shapes: build_model_map(spec, shapes), skip=skip)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(net(TOKENS), torch.randint(0, 5, (6,))).backward()
        opt.step()
    return net.eval(), imap


NETS = [  # (id, HashSpec, skip)
    ("layer-tables", HashSpec(kind="xxhash", sign=True, compression="1/4"), ()),
    ("global-block", HashSpec(kind="block", table_size=64, sign=True, scope="global"), ()),
    ("head-dense", HashSpec(kind="uniform", table_size=32, sparsity=0.2), ("head",)),
]


@pytest.mark.parametrize("with_map", [True, False], ids=["spec", "packed"])
@pytest.mark.parametrize("spec,skip", [c[1:] for c in NETS], ids=[c[0] for c in NETS])
def test_an_arbified_module_comes_back_bitwise_into_a_fresh_instance(tmp_path, spec, skip, with_map):
    net, imap = _trained_net(spec, skip)
    path = save_arbnet(net, tmp_path / "net.safetensors", index_map=imap if with_map else None)
    tensors, meta = _tensors_and_meta(path)
    assert meta["format_version"] == "2" and json.loads(meta["model"]) == {"class": "module", "options": {}}
    storage = read_container_bytes(tensors["map"].numpy().tobytes(), "map").metadata["storage"]
    assert storage == ("spec" if with_map else "packed")
    torch.manual_seed(7)
    again = load_arbnet(path, model=Net())
    assert not again.training
    assert [type(m) for m in (again.emb, again.conv, again.head)] == [
        ArbEmbedding,
        ArbConv2d,
        nn.Linear if skip else ArbLinear,
    ]
    sa, sb = net.state_dict(), again.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(again(TOKENS), net(TOKENS))


def test_a_module_file_is_its_tables_and_dense_state(tmp_path):
    spec = HashSpec(kind="xxhash", sign=True, compression="1/4")
    net, imap = _trained_net(spec)
    path = save_arbnet(net, tmp_path / "net.safetensors", index_map=imap)
    tensors, _ = _tensors_and_meta(path)
    dense = {"conv.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"}
    assert set(tensors) == {"map", "table.0", "table.1", "table.2", "head.bias"} | dense
    assert [tensors[f"table.{t}"].numel() for t in range(3)] == list(imap.table_sizes)


def test_module_files_refuse_a_missing_or_wrong_model(tmp_path):
    net, imap = _trained_net(NETS[0][1])
    path = save_arbnet(net, tmp_path / "net.safetensors", index_map=imap)
    with pytest.raises(ModelFileError, match="holds an arbified module, whose code a file cannot hold; pass model="):
        load_arbnet(path)
    with pytest.raises(ModelFileError, match=r"the map names layers \['emb', 'conv', 'head'\]"):
        load_arbnet(path, model=nn.Sequential(nn.Linear(8, 5)))
    with pytest.raises(ModelFileError, match="tensor 'table.0' is torch.float32"):
        load_arbnet(path, model=Net().double())
    mlp_file = save_arbnet(_trained(CASES[0][1](), {}), tmp_path / "mlp.safetensors")
    with pytest.raises(ModelFileError, match="holds an ArbMLP, which the file builds by itself; drop model="):
        load_arbnet(mlp_file, model=Net())
    assert _tensors_and_meta(mlp_file)[1]["format_version"] == "1"  # ArbMLP files stay readable by older hashlab


def test_a_map_of_another_model_is_refused(tmp_path):
    net, _ = _trained_net(NETS[0][1])
    _, other = _trained_net(HashSpec(kind="xxhash", sign=True, compression="1/4", seed=5))
    with pytest.raises(ValueError, match="layer 'emb' does not read the table the way index_map's layer says"):
        save_arbnet(net, tmp_path / "x.safetensors", index_map=other)
    _, skipped = _trained_net(NETS[0][1], skip=("head",))
    with pytest.raises(ValueError, match=r"are not the model's ArbNet layers \['emb', 'conv', 'head'\]"):
        save_arbnet(net, tmp_path / "x.safetensors", index_map=skipped)
    assert not (tmp_path / "x.safetensors").exists()
