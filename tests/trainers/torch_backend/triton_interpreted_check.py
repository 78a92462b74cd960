"""Run under TRITON_INTERPRET=1 (by test_virtual_triton.py): the Triton kernels on CPU tensors against the CPU path.

Prints one JSON line per case: the largest absolute differences of output, input gradient and table gradient.
"""

from __future__ import annotations

import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1 set before Triton is imported"

import torch  # noqa: E402

from hashlab import HashSpec  # noqa: E402
from trainers.torch_backend.virtual import VirtualLinear, virtual_linear  # noqa: E402
from trainers.torch_backend.virtual_triton import triton_virtual_linear  # noqa: E402

CASES = {
    "uniform": HashSpec(kind="uniform", table_size=37, seed=5),
    "xxhash-sign-sparse": HashSpec(kind="xxhash", table_size=97, seed=4, sparsity=0.3, sign=True),
    "dirichlet": HashSpec(kind="dirichlet", alpha=0.05, table_size=50, seed=1, sign=True),
    "neighborhood": HashSpec(kind="neighborhood", radius=3, table_size=40, seed=2, sparsity=0.5),
    "block": HashSpec(kind="block", block_size=5, table_size=64, seed=3),
    "modulus-global": HashSpec(kind="modulus", table_size=31, scope="global"),
}
BLOCKS = {"BM": 16, "BN": 16, "BK": 16}


def main() -> None:
    names = sys.argv[1:] or list(CASES)
    for name in names:
        spec = CASES[name]
        shapes = [(21, 9), (37, 29)]  # layer 1: 37 x 29, neither a multiple of 16
        torch.manual_seed(0)
        layer = VirtualLinear.from_spec(spec, 29, 37, 1, shapes=shapes, bias=False)
        x = torch.randn(19, 29)
        grads = []
        for on_triton in (False, True):
            xi = x.clone().requires_grad_(True)
            ti = layer.table.detach().clone().requires_grad_(True)
            y = triton_virtual_linear(xi, ti, layer.hash, BLOCKS) if on_triton else virtual_linear(xi, ti, layer.hash)
            (y.square().sum() + y.sum()).backward()
            grads.append((y.detach(), xi.grad, ti.grad))
        diff = {k: float((a - b).abs().max()) for k, a, b in zip(("y", "grad_x", "grad_table"), *grads)}
        scale = {k: float(a.abs().max()) for k, a in zip(("y", "grad_x", "grad_table"), grads[0])}
        print(json.dumps({"case": name, "diff": diff, "scale": scale}), flush=True)


if __name__ == "__main__":
    main()
