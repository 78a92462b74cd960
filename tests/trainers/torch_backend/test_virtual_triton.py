"""The Triton kernels of VirtualLinear: in Triton's interpreter on the CPU, and on a GPU when there is one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hashlab import HashSpec
from tests.conftest import REPO
from trainers.torch_backend.virtual import VirtualLinear

pytest.importorskip("triton", reason="Triton is not installed (it comes with torch's Linux CUDA wheels)")
CHECK = Path(__file__).with_name("triton_interpreted_check.py")


def test_the_triton_kernels_agree_with_the_cpu_kernels_in_the_interpreter():
    """Forward, input gradient and table gradient (atomic adds) of six kinds, float32 tolerance."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 6
    for r in rows:
        for k, d in r["diff"].items():
            assert d <= 1e-5 * max(r["scale"][k], 1.0), (r["case"], k, d)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("sparsity", [0.0, 0.5])
def test_on_a_gpu_the_layer_matches_its_cpu_twin(sparsity):
    spec = HashSpec(kind="dirichlet", alpha=0.1, table_size=1000, seed=3, sign=True, sparsity=sparsity)
    cpu = VirtualLinear.from_spec(spec, 300, 200)
    gpu = VirtualLinear.from_spec(spec, 300, 200).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(64, 300)
    results = []
    for layer, xi in ((cpu, x), (gpu, x.cuda())):
        xi = xi.clone().requires_grad_(True)
        y = layer(xi)
        y.square().sum().backward()
        results.append([t.detach().cpu() for t in (y, xi.grad, layer.table.grad, layer.bias.grad)])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
