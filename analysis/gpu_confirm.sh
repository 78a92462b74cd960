#!/usr/bin/env bash
# The pre-registered confirmatory design (profile `confirm`, docs/REPRODUCTION.md) on a lent GPU, in one call.
#
# Run from the repository root with the official .gz files of each dataset under .data/MNIST/raw/ and
# .data/FashionMNIST/raw/ (carried: ../shared/data does not travel). Each dataset's records, results.csv and logs
# are packed with their provenance (GPU, driver, torch, this script's SHA-256, command, wall time) into
# $OUT/<dataset>-confirm.tar.xz.partNN (at most 16 MiB each, at most 8 files in all), and merged here with
#   python -m analysis.gpu_bundle merge FILES_AT/mnist-confirm.tar.xz.part* \
#       --into analysis/results/mnist/confirmatory-gpu --script analysis/gpu_confirm.sh
# then rebuild the report with --report-only. Runs of one train seed train as one batched model (--group-size); a
# killed call resumes from the records in $WORK when rerun on the same warm machine. GPU records have their own
# keys (device and data root are part of a run's key): never mix them with the CPU records of the same design.
#   OUT=/tmp/c BUDGET=480 bash analysis/gpu_confirm.sh mnist [fashion-mnist]
set -u
OUT=${OUT:-/tmp/gpu_confirm_out}; WORK=${WORK:-/tmp/gpu_confirm}; mkdir -p "$OUT" "$WORK"
SCRIPT=analysis/gpu_confirm.sh
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
PY=${PY:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$WORK/gpu.txt"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
TORCH=$($PY -c "import torch; print(torch.__version__, 'cuda', torch.version.cuda)")
echo "torch $TORCH" | tee -a "$WORK/gpu.txt"

for d in MNIST FashionMNIST; do
    mkdir -p "/tmp/hl_data/$d/raw"
    for f in .data/$d/raw/*.gz; do
        [ -e "$f" ] && gunzip -c "$f" > "/tmp/hl_data/$d/raw/$(basename "$f" .gz)"
    done
done

for ds in "${@:-mnist}"; do
    echo "== confirm, $ds"; mkdir -p "$WORK/$ds"
    CMD="$PY -m analysis.reproduce --profile confirm --dataset $ds --out $WORK/$ds --data-root /tmp/hl_data \
--device cuda --group-size ${GROUP:-32} --workers ${WORKERS:-2} --no-progress"
    start=$(date +%s)
    timeout "${BUDGET:-480}" $CMD 2>&1 | tee "$WORK/$ds/reproduce.log" | tail -20
    wall=$(( $(date +%s) - start ))
    echo "$ds: $wall s wall on $GPU" | tee -a "$WORK/$ds/reproduce.log"
    $PY -m analysis.gpu_bundle pack --work "$WORK/$ds" --out "$OUT" --name "$ds-confirm" --gpu-name "$GPU" \
        --torch-version "$TORCH" --script "$SCRIPT" \
        --extra "{\"command\": \"$CMD\", \"wall_s\": $wall, \"budget_s\": ${BUDGET:-480}}"
done
