"""torch.onnx.export of an ArbNet as it is and of its stripped twin, both run in onnxruntime and compared with torch.

As it is, the graph reads each table with a Gather by the map's keys, then runs the dense op (Conv, Gemm); the
exporter's default optimizer folds those constant Gathers into dense weights, ``optimize=False`` keeps them.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from hashlab import HashSpec, build_model_map
from trainers.torch_backend import arbify, strip
from trainers.torch_backend.functional import RowListPlan

onnx = pytest.importorskip("onnx", reason="ONNX export tests need onnx (pip install -e '.[dev]')")
ort = pytest.importorskip("onnxruntime", reason="ONNX export tests need onnxruntime (pip install -e '.[dev]')")
pytest.importorskip("onnxscript", reason="torch's ONNX exporter needs onnxscript (pip install -e '.[dev]')")


class Net(nn.Module):
    """Embedding -> grouped, strided, dilated convolution -> BatchNorm -> Linear -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(30, 4, padding_idx=1, max_norm=2.0)
        self.conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2)
        self.bn = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 3 * 3, 40)
        self.head = nn.Linear(40, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb(tokens).permute(0, 3, 1, 2)  # (B, 4, 8, 8)
        x = torch.relu(self.bn(self.conv(x))).flatten(1)  # (B, 54)
        return self.head(torch.relu(self.fc(x)))


SPECS = [  # (id, HashSpec, per-layer budgets)
    ("xxhash-sign", HashSpec(kind="xxhash", sign=True, compression="1/4"), None),
    ("block-global", HashSpec(kind="block", table_size=97, sign=True, scope="global"), None),
    ("sparse-row-list", HashSpec(kind="uniform", table_size=64, sparsity=0.8, seed=2), None),  # CPU row lists
]
TOKENS = torch.randint(0, 30, (5, 8, 8), generator=torch.Generator().manual_seed(0))
TOKENS[0, 0] = 1  # padding


def arbnet(spec: HashSpec, budgets) -> nn.Module:
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.3, 0.3)
        model.bn.running_var.uniform_(0.5, 1.5)
    model, _ = arbify(model, lambda shapes: build_model_map(spec, shapes, budgets=budgets))
    return model.eval()


def run_onnx(model: nn.Module, optimize: bool = True) -> tuple[np.ndarray, onnx.ModelProto]:
    """Export ``model`` with torch's default exporter, run the graph in onnxruntime on TOKENS."""
    program = torch.onnx.export(model, (TOKENS,), dynamo=True, verbose=False, optimize=optimize)
    proto = program.model_proto
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: TOKENS.numpy()})
    return out, proto


def float_initializer_values(proto: onnx.ModelProto) -> int:
    """Float values stored in the graph (its weights)."""
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)
    return sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type in floats)


@pytest.mark.parametrize("optimize", [True, False], ids=["folded", "gather"])
@pytest.mark.parametrize("spec,budgets", [c[1:] for c in SPECS], ids=[c[0] for c in SPECS])
def test_an_arbnet_exports_as_it_is_and_runs_in_onnxruntime(spec, budgets, optimize):
    model = arbnet(spec, budgets)
    if spec.sparsity:
        assert isinstance(model.fc.weight_plan.layout, RowListPlan)  # the row-list read is exported too
    with torch.no_grad():
        want = model(TOKENS).numpy()
    got, proto = run_onnx(model, optimize)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if optimize:
        return  # the optimizer folded the constant gathers (the embedding's stays: it reads the input)
    stored = {t.name: int(np.prod(t.dims)) for t in proto.graph.initializer}
    tables = {id(m.table): m.table.numel() for m in model.modules() if hasattr(m, "weight_plan")}  # one per Parameter
    assert sorted(v for k, v in stored.items() if k.endswith(".table")) == sorted(tables.values())
    assert not {f"{layer}.weight" for layer in ("emb", "conv", "fc", "head")} & set(stored)  # no dense weights
    assert [n.op_type for n in proto.graph.node].count("Gather") == 4  # one read per layer
    assert float_initializer_values(proto) < sum(p.numel() for p in Net().parameters())


@pytest.mark.parametrize("spec,budgets", [c[1:] for c in SPECS], ids=[c[0] for c in SPECS])
def test_a_stripped_arbnet_exports_and_runs_in_onnxruntime(spec, budgets):
    model = arbnet(spec, budgets)
    plain = strip(copy.deepcopy(model))
    with torch.no_grad():
        want = model(TOKENS).numpy()
        assert np.array_equal(plain(TOKENS).numpy(), want)
    got, proto = run_onnx(plain)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    dense = Net()
    assert float_initializer_values(proto) >= sum(
        m.weight.numel() for m in (dense.emb, dense.conv, dense.fc, dense.head)
    )


def test_exporting_leaves_training_on_the_fast_path():
    """Export reads the tables with plain torch ops only while tracing; afterwards gradients flow as before."""
    model = arbnet(*SPECS[0][1:])
    run_onnx(model)
    model.train()
    model(TOKENS).square().sum().backward()
    assert all(p.grad is not None for p in (model.emb.table, model.conv.table, model.fc.table))
