#!/usr/bin/env bash
# Issue 4, session 5, on nvidia-h200-x2 (carry [".carry"]):  bash benchmarks/gpu_session_s5.sh PART
#   scale1 : 2 GPUs vs 1 (item 8b) at the defaults now (a process kept across groups, 16-token
#            warmups, work stealing): --groups4 (4 models × 6 trials) and --workload one (one model,
#            24 trials: a single group, which only work stealing spreads), 128 new tokens
#   scale2 : --groups4 at 256 new tokens, 1 GPU and 2; the 24-trial, 3-model sweep on 2 GPUs
#            with work stealing and without
set -uo pipefail
source .carry/bootstrap.sh
export ENERGYRAY_CACHE=/tmp/erc HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 COLUMNS=220
busy() {  # NAME ARGS...: one busy.py energyray run, its summary lines
  local name=$1; shift
  timeout 280 python benchmarks/busy.py energyray --idle-s 0 "$@" --json-out "$OUT/$name.json" > "$OUT/$name.log" 2>&1
  echo "== $name: $*"; grep -E '^RESULT|protocol fraction|first worker' "$OUT/$name.log" | cut -c1-400
}
case "${1:-scale1}" in
scale1)
  nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"
  busy groups4_1gpu --groups4 --gpus 1
  busy groups4_2gpu --groups4 --gpus 2
  busy one_1gpu --workload one --gpus 1
  busy one_2gpu --workload one --gpus 2
  ;;
scale2)
  busy groups4_256_1gpu --groups4 --gpus 1 --new-tokens 256
  busy groups4_256_2gpu --groups4 --gpus 2 --new-tokens 256
  busy small_2gpu --gpus 2
  busy small_2gpu_nosteal --gpus 2 --no-steal
  ;;
esac
