#!/usr/bin/env bash
# The pre-registered confirmatory design (profile `confirm`, docs/REPRODUCTION.md) on a lent GPU, in one call.
#
# Run from the repository root with the official .gz files of each dataset under .data/MNIST/raw/ and
# .data/FashionMNIST/raw/ (carried: ../shared/data does not travel). Records, results.csv and the reports go to
# $OUT/<dataset>/ (default /tmp/gpu_confirm); copy them to analysis/results/<dataset>/confirmatory-gpu/ and commit
# them with the device named. Runs of one train seed train as one batched model (--group-size); a killed call
# resumes from its records when rerun with the same $OUT. GPU records have their own keys (device and data root
# are part of a run's key): never mix them with the CPU records of the same design.
#   OUT=/tmp/c BUDGET=480 bash analysis/gpu_confirm.sh mnist [fashion-mnist]
set -u
OUT=${OUT:-/tmp/gpu_confirm}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"

for d in MNIST FashionMNIST; do
    mkdir -p "/tmp/hl_data/$d/raw"
    for f in .data/$d/raw/*.gz; do
        [ -e "$f" ] && gunzip -c "$f" > "/tmp/hl_data/$d/raw/$(basename "$f" .gz)"
    done
done

for ds in "${@:-mnist}"; do
    echo "== confirm, $ds"
    start=$(date +%s)
    timeout "${BUDGET:-480}" $PY -m analysis.reproduce --profile confirm --dataset "$ds" --out "$OUT/$ds" \
        --data-root /tmp/hl_data --device cuda --group-size "${GROUP:-32}" --workers "${WORKERS:-2}" --no-progress \
        2>&1 | tail -20 | tee "$OUT/$ds.log"
    echo "$ds: $(( $(date +%s) - start )) s wall on $(head -2 "$OUT/gpu.txt" | tail -1)" | tee -a "$OUT/wall.txt"
done
