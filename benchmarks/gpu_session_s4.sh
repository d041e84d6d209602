#!/usr/bin/env bash
# Issues 3 and 4, session 4, on the device machine (carry [".carry"]):  bash benchmarks/gpu_session_s4.sh PART
#   probe    : what a worker's start costs (imports, CUDA), overhead.py on the steady decode
#              workload (--gc off), busy.py at the defaults with the first worker's timeline,
#              warmup.py (how long a warmup must be)
#   call2    : the CPU, where `import transformers` spends its time, overhead.py steady for 240 s,
#              busy.py at the (new) defaults: 16-token warmups, no runtime_env for GPU workers
#   call3    : busy.py at the defaults with 256-token trials; a process per trial (first 5 trials)
#              at 256 and 128 tokens
#   call4    : tests/gpu; overhead.py steady, out of process for 300 s and in process for 30 s, with
#              the event-locked estimate
#   nodes    : node_samplers_gpu.py: a PDU over real SNMP (snmpd from .carry/snmpd) and node_cpu=auto
#              beside the NVML samplers, a CLI sweep on every GPU (nvidia-h200-x2: windows overlap)
#   overhead : overhead.py steady, out of process, DURATION seconds (default 480)
#   busy     : busy.py at the defaults and ARGS (e.g. "--new-tokens 256 --warmup-new-tokens 16")
set -uo pipefail
source .carry/bootstrap.sh
export ENERGYRAY_CACHE=/tmp/erc HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 COLUMNS=220
case "${1:-probe}" in
probe)
  nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"
  { for i in 1 2; do
      python - <<'PY'
import time
t = time.monotonic(); import torch; a = time.monotonic()
torch.cuda.init(); torch.empty(1, device="cuda"); torch.cuda.synchronize(); b = time.monotonic()
import transformers; from transformers import AutoModelForCausalLM; c = time.monotonic()
import energyray.backends.transformers; d = time.monotonic()
print(f"import torch {a - t:.2f} s, CUDA context {b - a:.2f} s, import transformers {c - b:.2f} s, "
      f"energyray's backend module (rest) {d - c:.2f} s")
PY
    done
    python -c "import time; t=time.monotonic(); import ray; print(f'import ray {time.monotonic()-t:.2f} s')"
  } 2>&1 | tee "$OUT/start.txt"
  timeout 220 python benchmarks/overhead.py --workload steady --variants out --gc off --duration-s 150 \
    --json-out "$OUT/overhead_steady.json" > "$OUT/overhead_steady.log" 2>&1; grep -v '^RESULT' "$OUT/overhead_steady.log" | tail -32
  timeout 160 python benchmarks/busy.py energyray --idle-s 0 --json-out "$OUT/busy_defaults.json" > "$OUT/busy_defaults.log" 2>&1
  tail -6 "$OUT/busy_defaults.log"
  timeout 200 python benchmarks/warmup.py --batches 1-10 --json-out "$OUT/warmup.json" > "$OUT/warmup.log" 2>&1
  grep -v '^RESULT' "$OUT/warmup.log" | tail -8
  ;;
call2)
  nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"
  lscpu | grep -E 'Model name|^CPU\(s\)|MHz' | tee "$OUT/cpu.txt"
  python -X importtime -c "import torch; from transformers import AutoModelForCausalLM, AutoConfig, AutoTokenizer" 2> "$OUT/importtime.txt"
  sort -t'|' -k2 -n "$OUT/importtime.txt" | tail -40 | tee "$OUT/importtime_top.txt" | tail -25
  timeout 300 python benchmarks/overhead.py --workload steady --variants out --gc off --duration-s 240 \
    --json-out "$OUT/overhead_steady.json" > "$OUT/overhead_steady.log" 2>&1; grep -v '^RESULT' "$OUT/overhead_steady.log" | tail -34
  timeout 160 python benchmarks/busy.py energyray --idle-s 0 --json-out "$OUT/busy_defaults.json" > "$OUT/busy_defaults.log" 2>&1
  tail -6 "$OUT/busy_defaults.log"
  ;;
call3)
  timeout 240 python benchmarks/busy.py energyray --idle-s 0 --new-tokens 256 --json-out "$OUT/busy_256.json" > "$OUT/busy_256.log" 2>&1
  tail -6 "$OUT/busy_256.log"
  for n in 256 128; do
    timeout 170 python benchmarks/busy.py per-process --idle-s 0 --new-tokens $n --limit 5 --progress-out "$OUT/perproc_$n.jsonl" \
      --json-out "$OUT/perproc_$n.json" > "$OUT/perproc_$n.log" 2>&1; tail -4 "$OUT/perproc_$n.log"
  done
  ;;
call4)
  timeout 200 python -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tail -6 | tee "$OUT/tests_gpu.log"
  timeout 390 python benchmarks/overhead.py --workload steady --variants out,in --gc off --duration-s 300 --in-duration-s 30 \
    --json-out "$OUT/overhead_locked.json" > "$OUT/overhead_locked.log" 2>&1; grep -v '^RESULT' "$OUT/overhead_locked.log" | tail -60
  ;;
nodes)
  # needs .carry/snmpd (Debian's snmpd and its libraries, see benchmarks/README.md) and 2 GPUs for overlap
  nvidia-smi --query-gpu=name,uuid --format=csv | tee "$OUT/gpu.txt"
  export PATH=$PWD/.carry/snmpd/bin:$PATH
  snmpd -v 2>&1 | sed -n 2p
  timeout 560 python benchmarks/node_samplers_gpu.py --out "$OUT" > "$OUT/nodes.log" 2>&1; tail -30 "$OUT/nodes.log"
  ;;
overhead)
  python benchmarks/overhead.py --workload steady --variants out --gc off --duration-s "${DURATION:-480}" \
    --json-out "$OUT/overhead_long.json" > "$OUT/overhead_long.log" 2>&1; grep -v '^RESULT' "$OUT/overhead_long.log" | tail -32
  ;;
busy)
  python benchmarks/busy.py energyray --idle-s 0 ${ARGS:-} --json-out "$OUT/busy.json" > "$OUT/busy.log" 2>&1; tail -6 "$OUT/busy.log"
  ;;
esac
