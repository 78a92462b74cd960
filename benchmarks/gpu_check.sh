#!/usr/bin/env bash
# The CUDA checks of the plan-based gather and grouped training in one call on a lent GPU: the CUDA tests, then the CUDA benchmarks.
#
# Run from the repository root with MNIST's four official .gz files under .data/MNIST/raw/
# (carried, since ../shared/data does not travel). Logs and JSON go to $OUT (default /tmp/gpu_check).
#   OUT=/tmp/g bash benchmarks/gpu_check.sh [quick|skew]
# "quick" skips the 8192x8192 layer and the reference twin; "skew" runs the tests, then times the
# uniform, hot and sparse maps with and without prefix-sum segments (--skew-factor inf), and stops.
set -u
OUT=${OUT:-/tmp/gpu_check}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, numba, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numba', numba.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"

mkdir -p /tmp/hl_data/MNIST/raw
for f in .data/MNIST/raw/*.gz; do gunzip -c "$f" > "/tmp/hl_data/MNIST/raw/$(basename "$f" .gz)"; done
export HASHLAB_DATA_ROOT=/tmp/hl_data

echo "== CUDA tests"
timeout 240 $PY -m pytest -q -p no:cacheprovider -m gpu -n 4 tests/trainers 2>&1 | tail -25 | tee "$OUT/tests.txt"

if [ "${1:-}" = skew ]; then
    for f in 16 inf; do
        echo "== bench_arblinear (cuda), skew factor $f"
        timeout 150 $PY benchmarks/bench_arblinear.py --device cuda --skew-factor $f --min-run-time 0.2 \
            --maps uniform dirichlet-1e-3 sparse-0.9 --shapes 3072x2000 8192x8192 \
            --json "$OUT/arblinear_cuda_skew_$f.json" 2>&1 | tee "$OUT/arblinear_cuda_skew_$f.txt"
    done
    exit 0
fi

echo "== bench_arblinear (cuda)"
if [ "${1:-}" = quick ]; then LARGE="--skip-large"; REF=""; else LARGE=""; REF="--ref"; fi
timeout 200 $PY benchmarks/bench_arblinear.py --device cuda $LARGE $REF --min-run-time 0.2 \
    --json "$OUT/arblinear_cuda.json" 2>&1 | tee "$OUT/arblinear_cuda.txt"

echo "== profile: one ArbLinear step and one nn.Linear step, 3072x2000, batch 200, uniform map (cuda)"
timeout 90 $PY - <<'PYEOF' 2>&1 | tee "$OUT/profile.txt"
import torch
from torch.profiler import ProfilerActivity, profile
from hashlab import Architecture, HashSpec, build_map
from trainers.torch_backend.layers import ArbLinear
lay = build_map(HashSpec(kind="uniform", table_size=1000, seed=0), Architecture((3072, 2000))).layers[0]
arb = ArbLinear(3072, 2000, lay.indices, 1000, device="cuda")
lin = torch.nn.Linear(3072, 2000, device="cuda")
x = torch.randn(200, 3072, device="cuda")
for name, m in (("ArbLinear", arb), ("nn.Linear", lin)):
    def step():
        m.zero_grad(set_to_none=True)
        m(x).sum().backward()
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            step()
        torch.cuda.synchronize()
    print(f"--- {name}: 20 steps")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=40))
PYEOF

echo "== bench_group (cuda)"
timeout 120 $PY benchmarks/bench_group.py --device cuda --ks 1 8 32 --steps 20 \
    --json "$OUT/group_cuda.json" 2>&1 | tee "$OUT/group_cuda.txt"
