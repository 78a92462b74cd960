#!/usr/bin/env bash
# Issue #22 on a lent GPU, in one call: the CUDA tests of the hash-on-the-fly layer, its speed against nn.Linear and
# the materialised ArbLinear, one training step of a layer whose index array would not fit on the GPU, and groups
# of up to 256 MNIST MLPs. Needs no data. Logs and JSON go to $OUT (default /tmp/gpu_virtual); copy them to
# benchmarks/results/<gpu>-<date>/ and commit them with the device named.
#   OUT=/tmp/v bash benchmarks/gpu_virtual.sh            # about 6-8 minutes on an H100 (estimate, not measured)
set -u
OUT=${OUT:-/tmp/gpu_virtual}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" \
    | tee -a "$OUT/gpu.txt"

echo "== CUDA tests of VirtualLinear (and the interpreter check)"
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/trainers/torch_backend/test_virtual_triton.py 2>&1 | tail -15 \
    | tee "$OUT/tests.txt"

echo "== VirtualLinear vs nn.Linear and ArbLinear (cuda): targets 1.5x nn.Linear at 8192x8192, batch 4096"
timeout 150 $PY benchmarks/bench_arblinear.py --device cuda --virtual --sign --min-run-time 0.2 \
    --maps uniform dirichlet-1e-3 sparse-0.9 --shapes 3072x2000 8192x8192 --batch-sizes 200 4096 \
    --json "$OUT/arblinear_virtual_cuda.json" 2>&1 | tee "$OUT/arblinear_virtual_cuda.txt"
echo "== RzLinear's shape: 10240x10240, batch 512"
timeout 90 $PY benchmarks/bench_arblinear.py --device cuda --virtual --sign --min-run-time 0.2 --maps uniform \
    --shapes 10240x10240 --batch-sizes 512 --json "$OUT/arblinear_virtual_rz.json" 2>&1 | tee "$OUT/arblinear_virtual_rz.txt"

echo "== a 100,000 x 100,000 layer (1e10 weights, table 1e6): one step on one GPU"
timeout 120 $PY benchmarks/bench_virtual_huge.py --device cuda --shape 100000x100000 --table-size 1000000 --batch 64 \
    --steps 2 --json "$OUT/virtual_huge.json" 2>&1 | tee "$OUT/virtual_huge.txt"

echo "== groups of MNIST MLPs: per-model throughput against one after another"
timeout 120 $PY benchmarks/bench_group.py --device cuda --ks 1 32 128 256 --json "$OUT/group_cuda.json" 2>&1 \
    | tee "$OUT/group_cuda.txt"
