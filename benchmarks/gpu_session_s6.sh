#!/usr/bin/env bash
# Issue 4, session 6, on nvidia-h200-x2 (carry [".carry"]):  bash benchmarks/gpu_session_s6.sh PART...
#   probe  : where a worker's import time goes on the GPU VM: is the bytecode cache of torch and
#            transformers writable, and what `import transformers` + AutoModelForCausalLM costs the
#            first and second time, with and without PYTHONPYCACHEPREFIX
#   pyc    : the same imports with bytecode written and read (PYTHONDONTWRITEBYTECODE unset, a
#            PYTHONPYCACHEPREFIX): what the VM's no-bytecode setting costs every process
#   fair_a : item 8a side by side in one VM after a discarded warm-up sweep: the issue's 3-model
#            sweep at 256 tokens, then a process per trial for LIMIT (default 8) of its trials,
#            spread over the sweep (~6 min); BASELINE_BYTECODE=1: then the same trials again, each
#            process keeping bytecode as energyray's workers do (ray.bytecode_cache)
#   fair_b : item 8b after a warm-up: --groups4, TOKENS new tokens (default 256), GPU counts in ORDER
#            (default 1,2,2,1)
set -uo pipefail
source "${CARRY:-.carry}/bootstrap.sh"
export ENERGYRAY_CACHE=/tmp/erc HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 COLUMNS=220
IMP='import time; t=time.perf_counter(); import torch; a=time.perf_counter(); from transformers import AutoModelForCausalLM; b=time.perf_counter(); print(f"torch {a-t:.2f} s, transformers+auto {b-a:.2f} s")'
for part in "$@"; do
case "$part" in
probe)
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  python - <<'PY' | tee "$OUT/probe.txt"
import importlib.util, os, sys
for m in ("torch", "transformers", "ray"):
    d = os.path.dirname(importlib.util.find_spec(m).origin)
    pc = os.path.join(d, "__pycache__")
    n = len(os.listdir(pc)) if os.path.isdir(pc) else 0
    print(m, d, "writable" if os.access(d, os.W_OK) else "READ-ONLY", f"__pycache__ entries {n}",
          "dont_write_bytecode", sys.dont_write_bytecode, "prefix", sys.pycache_prefix)
print("PYTHONDONTWRITEBYTECODE", os.environ.get("PYTHONDONTWRITEBYTECODE"), "nproc", os.cpu_count())
PY
  df -h "$(python -c 'import torch, os; print(os.path.dirname(torch.__file__))')" | tail -1 | tee -a "$OUT/probe.txt"
  for i in 1 2 3; do python -c "$IMP"; done 2>&1 | sed 's/^/plain: /' | tee -a "$OUT/probe.txt"
  for i in 1 2 3; do PYTHONPYCACHEPREFIX=/tmp/pyc python -c "$IMP"; done 2>&1 | sed 's/^/prefix: /' | tee -a "$OUT/probe.txt"
  python -X importtime -c "from transformers import AutoModelForCausalLM" 2> "$OUT/importtime.txt"
  sort -t'|' -k2 -n -r "$OUT/importtime.txt" | head -25 | tee -a "$OUT/probe.txt"
  ;;
pyc)
  for i in 1 2 3; do env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=/tmp/pyc python -c "$IMP"; done 2>&1 \
    | sed 's/^/bytecode cached: /' | tee "$OUT/pyc.txt"
  ;;
fair_a)
  timeout 560 python benchmarks/busy.py both --idle-s 0 --new-tokens 256 --limit "${LIMIT:-8}" --json-out "$OUT/fair_a.json" \
    > "$OUT/fair_a.log" 2>&1; grep -E '^RESULT|warm-up|steal|protocol|first worker' "$OUT/fair_a.log" | cut -c1-400
  [ -n "${BASELINE_BYTECODE:-}" ] && timeout 300 python benchmarks/busy.py per-process --idle-s 0 --new-tokens 256 \
    --limit "${LIMIT:-8}" --per-process-bytecode --json-out "$OUT/fair_a_pp_bytecode.json" > "$OUT/fair_a_pp_bytecode.log" 2>&1
  grep -E '^RESULT' "$OUT/fair_a_pp_bytecode.log" 2>/dev/null | cut -c1-400
  ;;
fair_b)
  timeout 580 python benchmarks/busy.py scaling --groups4 --idle-s 0 --new-tokens "${TOKENS:-256}" --order "${ORDER:-1,2,2,1}" \
    --json-out "$OUT/fair_b_${TOKENS:-256}.json" > "$OUT/fair_b_${TOKENS:-256}.log" 2>&1
  grep -E '^RESULT|warm-up|steal' "$OUT/fair_b_${TOKENS:-256}.log" | cut -c1-400
  ;;
esac
done
