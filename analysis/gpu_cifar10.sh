#!/usr/bin/env bash
# The pre-registered CIFAR-10 confirmatory design (profile confirm-cifar10, analysis/studies/confirmatory_cifar10.toml)
# on a lent GPU. A device call carries at most 64 MiB (the repository included) and the machine has no ../shared, so
# the dataset travels as the xz parts of `python -m analysis.cifar10_parts make` (git-ignored .data/cifar10-parts/,
# checksums in the committed analysis/cifar10_parts.sha256), one part per call while the machine stays warm:
#   call 1 (carry .data/cifar10-parts/cifar10.tar.xz.part00):  bash analysis/gpu_cifar10.sh stage
#   call 2 (carry .data/cifar10-parts/cifar10.tar.xz.part01):  bash analysis/gpu_cifar10.sh stage
#   call 3 (carry .data/cifar10-parts/cifar10.tar.xz.part02):  BUDGET=540 bash analysis/gpu_cifar10.sh run
# `stage` copies the parts that arrived to $STAGE (outside the checkout) and checks every part there against the
# manifest (a wrong part fails, named); `run` stages, assembles and checks the data under $DATA, trains the design
# (--device cuda --group-size 10: the 10 maps of one train seed as one batched model; --no-verify-md5: the pickles are
# the rebuilt copy) for at most $BUDGET seconds, then packs the records, results.csv, logs and provenance (GPU name,
# torch version, this script's SHA-256) into at most 8 files of at most 16 MiB in $OUT. Here:
#   python -m analysis.gpu_bundle merge FILES_AT/cifar10-records.tar.xz.part* --into analysis/results/cifar10
# A call cut short resumes from the records in $WORK when `run` is called again on the same warm machine; a fresh
# machine starts over (send the parts again). Records are keyed by device and data root: rebuild the report with
#   python -m analysis.reproduce --profile confirm-cifar10 --dataset cifar10 --out analysis/results/cifar10 \
#       --data-root /tmp/hl_data --device cuda --no-verify-md5 --report-only
set -u -o pipefail
MODE=${1:-run}
STAGE=${STAGE:-/tmp/hl_cifar10_parts}; DATA=${DATA:-/tmp/hl_data}; WORK=${WORK:-/tmp/gpu_cifar10}
OUT=${OUT:-/tmp/gpu_cifar10_out}; PY=${PY:-python3}; SCRIPT=analysis/gpu_cifar10.sh
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
mkdir -p "$STAGE" "$DATA" "$WORK" "$OUT"

for f in .data/cifar10-parts/cifar10.tar.xz.part*; do [ -e "$f" ] && cp -f "$f" "$STAGE/"; done
$PY -m analysis.cifar10_parts check --parts "$STAGE" | tee "$OUT/stage.txt"
rc=${PIPESTATUS[0]}
if [ "$MODE" = stage ] || [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 3 ] && [ "$MODE" = stage ] && exit 0  # parts still to come
    exit "$rc"
fi

if [ ! -e "$DATA/cifar-10-batches-py/.checked" ]; then
    $PY -m analysis.cifar10_parts assemble --parts "$STAGE" --data-root "$DATA" || exit 2
    touch "$DATA/cifar-10-batches-py/.checked"
fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$WORK/gpu.txt"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
TORCH=$($PY -c "import torch; print(torch.__version__, 'cuda', torch.version.cuda)")
echo "torch $TORCH" | tee -a "$WORK/gpu.txt"
CMD="$PY -m analysis.reproduce --profile confirm-cifar10 --dataset cifar10 --out $WORK --data-root $DATA --device cuda \
--group-size ${GROUP:-10} --workers ${WORKERS:-2} --no-verify-md5 --no-progress"
start=$(date +%s)
timeout "${BUDGET:-540}" $CMD 2>&1 | tee -a "$WORK/reproduce.log" | tail -20
wall=$(( $(date +%s) - start ))
echo "confirm-cifar10: $wall s wall on $GPU" | tee -a "$WORK/reproduce.log"
$PY -m analysis.gpu_bundle pack --work "$WORK" --out "$OUT" --gpu-name "$GPU" --torch-version "$TORCH" \
    --script "$SCRIPT" --extra "{\"command\": \"$CMD\", \"wall_s\": $wall, \"budget_s\": ${BUDGET:-540}}"
