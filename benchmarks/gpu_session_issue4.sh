#!/usr/bin/env bash
# Issues 3-5 on the device machine (carry [".carry"]):  bash benchmarks/gpu_session_issue4.sh PART
# busy.py calls carry --full-warmup: they ran when warmups defaulted to the trial's length (16 tokens since session 4)
#   measure : tests/gpu, fidelity part c (counter-anchored short windows), overhead (ops loop)
#   sweeps  : every transformers precision on random-init Gemma 3 1B
#   rest    : a real CUDA OOM, backend=server on the GPU (wheels for openai/fastapi/uvicorn
#             carried in .carry/whl_api), busy.py energyray
#   busy    : benchmarks/busy.py, energyray vs a process per trial (one GPU)
#   gpus2   : (two-GPU kind) busy.py --groups4 on 1 GPU and on 2 GPUs, the per-process baseline,
#             and a sweep targeted at hw_h200 on a `ray start` cluster joined with ray.address=auto
set -uo pipefail
source .carry/bootstrap.sh
export ENERGYRAY_CACHE=/tmp/erc HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 COLUMNS=200
show() {  # show STORE: one line per trial
  python - "$1" <<'PY'
import sys, json
from energyray.store import Store
t = Store(sys.argv[1]).read("trials")
cols = [c for c in ("model", "precision_requested", "precision", "batch_size", "status", "j_per_token", "tokens_per_s",
                    "energy_source", "load_s", "load_j", "peak_memory_mb", "double_quant", "error") if c in t]
print(t.sort_values(["precision_requested", "batch_size"])[cols].to_string(max_colwidth=60))
if "env_json" in t:
    print("ray resources:", {json.dumps(json.loads(e).get("ray_assigned_resources")) for e in t["env_json"]})
PY
}
case "${1:-measure}" in
measure)
  nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"
  python -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tail -8 | tee "$OUT/tests.log"
  python benchmarks/fidelity.py --parts c --json-out "$OUT/fidelity_c.json" > "$OUT/fidelity_c.log" 2>&1; tail -30 "$OUT/fidelity_c.log"
  python benchmarks/overhead.py --workload ops --variants out --pairs 15 --run-s 3 --json-out "$OUT/overhead.json" > "$OUT/overhead.log" 2>&1; tail -14 "$OUT/overhead.log"
  ;;
sweeps)
  python -m energyray sweep=quantization model=gemma3-1b weights=dummy store.path=/tmp/prec sweep.repeats=1 \
    'sweep.grid.precision=[fp32,fp16,bf16,int8,nf4,fp4,nf4-dq,fp4-dq]' 'sweep.grid.batch_size=[1,8]' \
    'sweep.grid.task=[longform]' ray.trial_timeout_s=240 > "$OUT/prec.log" 2>&1; tail -5 "$OUT/prec.log"; show /tmp/prec
  tar czf "$OUT/stores.tgz" -C /tmp prec
  ;;
rest)
  python -m energyray sweep=batching model=mistral-7b store.path=/tmp/oom sweep.repeats=1 \
    'sweep.grid.batch_size=[65536,1]' ray.trial_timeout_s=240 > "$OUT/oom.log" 2>&1; tail -3 "$OUT/oom.log"; show /tmp/oom
  mkdir -p /tmp/site_api && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site_api .carry/whl_api/*.whl
  PYTHONPATH=/tmp/site_api:$PYTHONPATH python -m energyray sweep=smoke backend=server model=tiny-llama store.path=/tmp/srv \
    'sweep.grid.precision=[baseline]' 'sweep.grid.batch_size=[1,4]' sweep.repeats=2 > "$OUT/server.log" 2>&1; tail -3 "$OUT/server.log"
  python - <<'PY'
from energyray.store import Store
t = Store("/tmp/srv").read("trials")
cols = [c for c in ("batch_size", "status", "device", "load_label", "load_s", "load_j", "unload_label", "unload_s", "unload_j",
                    "energy_j", "energy_source", "ttft_s", "tokens_per_s", "output_tokens", "server_exit_code", "error") if c in t]
print(t[cols].to_string(max_colwidth=80))
PY
  python benchmarks/busy.py energyray --idle-s 0 --full-warmup --json-out "$OUT/busy_energyray_idle0.json" 2>&1 | grep -E "RESULT|^  " | tail
  tar czf "$OUT/stores.tgz" -C /tmp oom srv
  ;;
busy)
  python benchmarks/busy.py energyray --idle-s 0 --warmup-new-tokens 16 --json-out "$OUT/busy_energyray_w16.json" 2>&1 | grep -E "RESULT|^  " | tail
  timeout 400 python benchmarks/busy.py per-process --idle-s 0 --warmup-new-tokens 16 --json-out "$OUT/busy_per_process.json" 2>&1 | grep -E "RESULT|^  " | tail
  ;;
gpus2)  # on the two-GPU kind: (a)'s per-process baseline on GPU 1 while (b)'s 1-GPU run uses GPU 0
  nvidia-smi -L
  CUDA_VISIBLE_DEVICES=1 timeout 330 python benchmarks/busy.py per-process --idle-s 0 --full-warmup \
    --progress-out "$OUT/per_process_rows.jsonl" --json-out "$OUT/busy_per_process.json" > "$OUT/per_process.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=0 python benchmarks/busy.py energyray --idle-s 0 --full-warmup --groups4 --gpus 1 --json-out "$OUT/gpus1.json" 2>&1 | grep -E "RESULT|^  " | tail
  wait
  grep -E "RESULT|^  " "$OUT/per_process.log"; wc -l "$OUT/per_process_rows.jsonl"; tail -1 "$OUT/per_process_rows.jsonl" | cut -c1-300
  python benchmarks/busy.py energyray --idle-s 0 --full-warmup --groups4 --gpus 2 --json-out "$OUT/gpus2.json" 2>&1 | grep -E "RESULT|^  " | tail
  python -m ray.scripts.scripts start --head --port=6390 --num-gpus=2 --resources='{"hw_h200": 2}' --include-dashboard=false --disable-usage-stats > "$OUT/raystart.log" 2>&1 || tail -20 "$OUT/raystart.log"
  python -m energyray sweep=smoke hardware=h200 ray.address=auto store.path=/tmp/hw sweep.repeats=2 \
    'sweep.grid.precision=[baseline,nf4]' > "$OUT/hw.log" 2>&1; tail -3 "$OUT/hw.log"; show /tmp/hw
  python -m ray.scripts.scripts stop --force > /dev/null 2>&1
  ;;
esac
