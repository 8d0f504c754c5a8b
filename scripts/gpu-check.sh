#!/usr/bin/env bash
# GPU checks in one short run (about 5 minutes on one GPU): the tests marked `gpu`, then a short
# `deeplab train` and `deeplab evaluate` on --device cuda; prints a table of what passed and the
# times. Usage: scripts/gpu-check.sh [OUT]   (run from the repository root; sets up .venv first)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
make -s install >/dev/null
PY=.venv/bin/python
DL=.venv/bin/deeplab
rows=()
run() {  # run NAME COMMAND...: time a step, keep its log, add a table row
    local name=$1; shift
    local start=$EPOCHREALTIME
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    local secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
    rows+=("$(printf '%-28s %-6s %8.1f s' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL)" "$secs")")
}
$PY - <<'PY' | tee "$OUT/device.txt"
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY
run gpu-tests "$PY" -m pytest -q -m gpu -p no:cacheprovider
run train-cuda "$DL" train --config configs/shapes.yaml --device cuda --quiet --output "$OUT/run" \
    train.iterations=200 train.val_every=100 train.checkpoint_every=100 data.num_workers=4 train.precision=bf16
run resume-cuda "$DL" train --config configs/shapes.yaml --device cuda --quiet --output "$OUT/run" --resume \
    train.iterations=200
run evaluate-cuda "$DL" evaluate --weights src/deeplab/assets/shapes-mobilenetv2.pt --dataset shapes \
    --device cuda --scales 0.75,1,1.25,1.5 --flip -o "$OUT/eval-cuda"
run evaluate-cpu "$DL" evaluate --weights src/deeplab/assets/shapes-mobilenetv2.pt --dataset shapes \
    --device cpu --max-images 50 -o "$OUT/eval-cpu"
printf '%-28s %-6s %10s\n' check result time
for row in "${rows[@]}"; do echo "$row"; done | tee "$OUT/table.txt"
grep -h "^miou" "$OUT"/eval-*.log 2>/dev/null
