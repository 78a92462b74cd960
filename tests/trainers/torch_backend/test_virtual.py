"""VirtualLinear: the hash-on-the-fly layer equals the ArbLinear of build_map's map, forward and backward."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from hashlab import Architecture, HashSpec, SpecError, build_map, load_index_file, save_index_file
from tests.conftest import REPO
from trainers.torch_backend import ArbLinear
from trainers.torch_backend.data import load_split
from trainers.torch_backend.virtual import VirtualLinear, virtual_layers, virtual_linear

SPECS = {
    "xxhash-sign-sparse": HashSpec(kind="xxhash", table_size=97, seed=4, sparsity=0.3, sign=True),
    "dirichlet": HashSpec(kind="dirichlet", alpha=0.2, table_size=50, seed=1),
    "neighborhood": HashSpec(kind="neighborhood", radius=3, table_size=40, seed=2, sparsity=0.5),
    "block": HashSpec(kind="block", block_size=5, table_size=64, seed=3, sign=True),
    "modulus": HashSpec(kind="modulus", table_size=31),
    "uniform-compression": HashSpec(kind="uniform", compression="1/8", seed=9),
}
ARCH = Architecture((29, 23, 11))


def _pair(spec: HashSpec, k: int, dtype=torch.float64, **kw) -> tuple[VirtualLinear, ArbLinear]:
    out_f, in_f = ARCH.layer_shapes[k]
    torch.manual_seed(0)
    v = VirtualLinear.from_spec(spec, in_f, out_f, k, shapes=ARCH.layer_shapes, dtype=dtype, **kw)
    layer = build_map(spec, ARCH).layers[k]
    a = ArbLinear(in_f, out_f, layer.indices, v.table_size, sign=layer.sign, dtype=dtype)
    with torch.no_grad():
        a.table.copy_(v.table)
        a.bias.copy_(v.bias)
    return v, a


def _forward_backward(m: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = x.clone().requires_grad_(True)
    y = m(x)
    (y.square().sum() + y.sum()).backward()
    return y.detach(), x.grad, m.table.grad, m.bias.grad


@pytest.mark.parametrize("k", [0, 1])
@pytest.mark.parametrize("name", SPECS)
def test_outputs_and_gradients_equal_the_materialised_layer_in_float64(name, k):
    v, a = _pair(SPECS[name], k, tile_weights=50)  # 2 rows a tile at in_features 23 or 29: many tiles, one short
    x = torch.randn(7, ARCH.layer_shapes[k][1], dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for got, want in zip(_forward_backward(v, x), _forward_backward(a, x)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_the_global_scope_needs_every_shape_and_then_matches():
    spec = HashSpec(kind="uniform", table_size=70, scope="global", seed=5, sign=True)
    with pytest.raises(SpecError, match="shapes="):
        VirtualLinear.from_spec(spec, 23, 11, 1)
    v, a = _pair(spec, 1)
    x = torch.randn(4, 23, dtype=torch.float64)
    for got, want in zip(_forward_backward(v, x), _forward_backward(a, x)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_float32_agrees_within_float32_tolerance_and_the_tile_size_does_not_matter():
    spec = SPECS["xxhash-sign-sparse"]
    v, a = _pair(spec, 0, dtype=torch.float32)
    x = torch.randn(16, 29)
    ref = _forward_backward(a, x)
    for tile in (1, 29 * 4, 1 << 20):
        v.tile_weights = tile
        v.zero_grad()
        for got, want in zip(_forward_backward(v, x), ref):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_gradcheck_in_float64():
    spec = SPECS["neighborhood"]
    v = VirtualLinear.from_spec(spec, 9, 6, dtype=torch.float64, tile_weights=20)
    x = torch.randn(3, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, t, b: virtual_linear(x, t, v.hash, b, 20), (x, v.table, v.bias))


def test_to_arblinear_and_virtual_weight_give_build_maps_layer():
    spec = SPECS["block"]
    v = VirtualLinear.from_spec(spec, 23, 11, 1, shapes=ARCH.layer_shapes, dtype=torch.float64)
    a = v.to_arblinear()
    assert torch.equal(a.indices.long(), torch.from_numpy(build_map(spec, ARCH).layers[1].indices).long())
    torch.testing.assert_close(v.virtual_weight(), a.virtual_weight(), rtol=0, atol=0)
    x = torch.randn(5, 23, dtype=torch.float64)
    torch.testing.assert_close(v(x), a(x), rtol=1e-12, atol=1e-12)
    assert v.index_bytes == 0 < a.index_bytes


def test_a_state_dict_names_its_hash_and_refuses_another():
    v = VirtualLinear.from_spec(SPECS["dirichlet"], 23, 11)
    w = VirtualLinear.from_spec(SPECS["dirichlet"], 23, 11)
    w.load_state_dict(v.state_dict())
    assert torch.equal(w.table, v.table)
    other = VirtualLinear.from_spec(HashSpec(kind="dirichlet", alpha=0.2, table_size=50, seed=2), 23, 11)
    with pytest.raises(ValueError, match="another hash"):
        other.load_state_dict(v.state_dict())


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(SpecError, match="hash_bias"):
        VirtualLinear.from_spec(HashSpec(kind="uniform", table_size=10, hash_bias=True), 4, 3)
    with pytest.raises(SpecError, match="shapes"):
        VirtualLinear.from_spec(HashSpec(kind="uniform", table_size=10), 4, 3, 0, shapes=[(3, 5)])
    v = VirtualLinear.from_spec(HashSpec(kind="uniform", table_size=10), 4, 3)
    with pytest.raises(ValueError, match="float32 or float64"):
        v(torch.ones(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="last dimension"):
        v(torch.ones(2, 5))
    with pytest.raises(ValueError, match="one device"):
        v(torch.ones(2, 4, device="meta"))


def test_an_mlp_of_virtual_layers_trains_on_real_mnist_as_its_materialised_twin(data_root):
    """Twenty SGD steps on real MNIST, float64: the virtual MLP and the ArbLinear MLP of the same maps stay together."""
    images, labels = load_split("mnist", data_root, train=True)
    x = images[:1280].reshape(20, 64, -1).double() / 255
    y = labels[:1280].reshape(20, 64)
    spec = HashSpec(kind="xxhash", table_size=500, seed=0, sign=True, sparsity=0.2)
    shapes = Architecture((784, 64, 10)).layer_shapes
    torch.manual_seed(0)
    virt = torch.nn.ModuleList(
        VirtualLinear.from_spec(spec, i, o, k, shapes=shapes, dtype=torch.float64) for k, (o, i) in enumerate(shapes)
    )
    arb = torch.nn.ModuleList(m.to_arblinear() for m in virt)
    losses = []
    for model in (virt, arb):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        run = []
        for xb, yb in zip(x, y):
            loss = F.cross_entropy(model[1](F.relu(model[0](xb))), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses.append(run)
    assert losses[0][-1] < 0.8 * losses[0][0]  # it learns
    assert losses[0] == pytest.approx(losses[1], rel=1e-9)
    for p, q in zip(virt.parameters(), arb.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_the_huge_layer_benchmark_trains_a_step_and_reports_what_a_map_would_need(tmp_path):
    out = tmp_path / "huge.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_virtual_huge.py"), "--shape", "300x200"]
    cmd += ["--table-size", "50", "--batch", "4", "--steps", "2", "--json", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["weights"] == 60_000 and result["materialised_bytes"] == 480_000
    assert result["resident_bytes"] < 2_000 and all(s["table_change"] > 0 for s in result["steps"])
    bad = subprocess.run([*cmd[:2], "--shape", "300by200"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "IN_FEATURESxOUT_FEATURES" in bad.stderr


@pytest.mark.parametrize("storage", [None, "spec"])
def test_layers_from_an_index_files_header_hash_its_map(tmp_path, storage):
    spec = HashSpec(kind="neighborhood", radius=2, table_size=60, seed=8, sparsity=0.25, sign=True)
    path = save_index_file(build_map(spec, ARCH), tmp_path / "m.safetensors", storage=storage)
    layers = virtual_layers(path, dtype=torch.float64)
    stored = load_index_file(path)
    assert len(layers) == len(stored.layers) == 2
    for virt, lay in zip(layers, stored.layers):
        idx, sign = virt.hash.entries()
        assert (idx == lay.indices).all() and (sign == lay.sign).all()


def test_a_file_without_a_build_map_spec_is_refused(tmp_path):
    from hashlab.maps.cluster import cluster_weights

    imap = cluster_weights([torch.randn(11, 23).numpy(), torch.randn(5, 11).numpy()], table_size=8, seed=0)
    path = save_index_file(imap, tmp_path / "k.safetensors")
    with pytest.raises(SpecError, match="ArbLinear"):
        virtual_layers(path)
