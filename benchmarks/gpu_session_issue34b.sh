#!/usr/bin/env bash
# Issues 3 and 4, session 3, on the device machine (carry [".carry"]):  bash benchmarks/gpu_session_issue34b.sh PART
# busy.py calls carry --full-warmup: they ran when warmups defaulted to the trial's length (16 tokens since session 4)
#   anchor  : tests/gpu, then a CLI sweep on random-init Gemma 3 1B with short (8-token) and long
#             (128-token) trials, two groups on one GPU: short trial windows counter-anchored,
#             the idle baseline measured once per GPU (idle_scope=slot), the worker process kept
#             for the second group (ray.reuse_workers=auto) and the memory left after unload
#   busy    : busy.py energyray, the small workload (as in session 2; now ray.reuse_workers=auto)
#   busy7b  : busy.py energyray, the 7B workload
#   cudnn   : (after transformers.cudnn_attention=false became the default) tests/gpu, busy.py
#             small with full-length warmups, small and 7B with 16-token warmups
#   perproc : busy.py per-process on the 7B workload (first trials only), and overhead.py
set -uo pipefail
source .carry/bootstrap.sh
export ENERGYRAY_CACHE=/tmp/erc HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 COLUMNS=220
case "${1:-anchor}" in
anchor)
  nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"
  python -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tail -8 | tee "$OUT/tests.log"
  python -m energyray sweep=smoke 'sweep.grid.model=[gemma3-1b]' weights=dummy 'sweep.grid.precision=[bf16,fp16]' \
    'sweep.grid.batch_size=[1]' '+sweep.grid.max_new_tokens=[8,128]' sweep.repeats=3 store.path=/tmp/anchor \
    ray.trial_timeout_s=240 > "$OUT/anchor.log" 2>&1; tail -4 "$OUT/anchor.log"
  python - <<'PY' | tee "$OUT/anchor_rows.txt"
from energyray.store import Store
t = Store("/tmp/anchor").read("trials").sort_values("started_at")
cols = ["precision", "max_new_tokens", "repeat", "status", "window_s", "short_window", "energy_source", "energy_j",
        "energy_polled_j", "energy_anchor_scale", "energy_anchor_span_s", "prefill_source", "idle_reused", "idle_power_w",
        "worker_pid", "worker_group_index", "unload_memory_left_mb", "process_reusable", "load_s", "error"]
print(t[[c for c in cols if c in t]].to_string(max_colwidth=50))
PY
  tar czf "$OUT/anchor_store.tgz" -C /tmp anchor
  ;;
busy)
  python benchmarks/busy.py energyray --idle-s 0 --full-warmup --json-out "$OUT/busy_small.json" > "$OUT/busy_small.log" 2>&1; tail -8 "$OUT/busy_small.log"
  ;;
busy7b)
  python benchmarks/busy.py energyray --idle-s 0 --full-warmup --workload 7b --json-out "$OUT/busy_7b.json" > "$OUT/busy_7b.log" 2>&1; tail -8 "$OUT/busy_7b.log"
  ;;
cudnn)
  python -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tail -4 | tee "$OUT/tests_cudnn.log"
  python benchmarks/busy.py energyray --idle-s 0 --full-warmup --json-out "$OUT/busy_small_nocudnn.json" > "$OUT/busy_small_nocudnn.log" 2>&1; tail -5 "$OUT/busy_small_nocudnn.log"
  python benchmarks/busy.py energyray --idle-s 0 --warmup-new-tokens 16 --json-out "$OUT/busy_small_w16.json" > "$OUT/busy_small_w16.log" 2>&1; tail -5 "$OUT/busy_small_w16.log"
  python benchmarks/busy.py energyray --idle-s 0 --warmup-new-tokens 16 --workload 7b --json-out "$OUT/busy_7b_w16.json" > "$OUT/busy_7b_w16.log" 2>&1; tail -5 "$OUT/busy_7b_w16.log"
  ;;
perproc)
  python benchmarks/busy.py per-process --idle-s 0 --full-warmup --workload 7b --limit "${LIMIT:-6}" --progress-out "$OUT/perproc_7b.jsonl" \
    --json-out "$OUT/perproc_7b.json" > "$OUT/perproc_7b.log" 2>&1; tail -6 "$OUT/perproc_7b.log"
  ;;
esac
