#!/usr/bin/env bash
# Issue 4, session 5, on nvidia-h200-x2 (carry [".carry"]):  bash benchmarks/gpu_session_s5.sh PART
#   scale1 : 2 GPUs vs 1 (item 8b) at the defaults now (a process kept across groups, 16-token
#            warmups, work stealing): --groups4 (4 models × 6 trials) and --workload one (one model,
#            24 trials: a single group, which only work stealing spreads), 128 new tokens
#   scale2 : --groups4 at 256 new tokens, 1 GPU and 2; the issue's 24-trial, 3-model sweep on 2 GPUs
#            with work stealing and without
#   scale3 : --groups4 at 512 new tokens, 1 GPU and 2 (a sweep with ~4x the trial time of scale1)
#   scale4 : --groups4 at 256 new tokens after stealing could take a group's last queued trial:
#            2 GPUs first, then 1
#   (fair_a and fair_b, prepared here but not run in session 5, are gpu_session_s6.sh's: they ran there)
#   cc     : CARRY=.carry_cc (make_carry.sh .carry_cc codecarbon): sampler.node_cpu=codecarbon beside
#            the NVML samplers in a CLI sweep on both GPUs; the rows' CPU/RAM figures and their reasons
set -uo pipefail
source "${CARRY:-.carry}/bootstrap.sh"
export ENERGYRAY_CACHE=/tmp/erc HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 COLUMNS=220
busy() {  # NAME ARGS...: one busy.py energyray run, its summary lines
  local name=$1; shift
  timeout "${BUSY_TIMEOUT:-280}" python benchmarks/busy.py energyray --idle-s 0 "$@" --json-out "$OUT/$name.json" > "$OUT/$name.log" 2>&1
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
scale3)
  export BUSY_TIMEOUT=340
  busy groups4_512_1gpu --groups4 --gpus 1 --new-tokens 512
  busy groups4_512_2gpu --groups4 --gpus 2 --new-tokens 512
  ;;
scale4)
  BUSY_TIMEOUT=120 busy groups4_256_2gpu_late --groups4 --gpus 2 --new-tokens 256
  grep -E 'steal|loads with' "$OUT/groups4_256_2gpu_late.log"
  BUSY_TIMEOUT=190 busy groups4_256_1gpu_late --groups4 --gpus 1 --new-tokens 256
  ;;
cc)
  ls /sys/class/powercap 2>&1 | head -3; lscpu | grep -E 'Model name|^CPU\(s\)' | tee "$OUT/cpu.txt"
  python -c "import codecarbon; print('codecarbon', codecarbon.__version__)"
  timeout 300 python -m energyray sweep=smoke weights=dummy 'sweep.grid.model=[gemma3-1b]' 'sweep.grid.precision=[bf16,fp16]' \
    'sweep.grid.batch_size=[1,4]' sweep.repeats=2 generation.max_new_tokens=128 sampler.node_cpu=codecarbon \
    store.path=/tmp/cc_store hydra.run.dir=/tmp/cc_hydra > "$OUT/cc.log" 2>&1; echo "exit $?"; tail -5 "$OUT/cc.log"
  python - <<'PY'
import json, os
from energyray.store import Store
t = Store("/tmp/cc_store").read("trials").sort_values("started_at")
cols = [c for c in t.columns if c.startswith("cpu_")] + ["precision", "batch_size", "gpu_uuid", "window_s", "energy_j", "status"]
rows = t[cols].to_dict(orient="records")
json.dump(rows, open(os.path.join(os.environ["OUT"], "cc_rows.json"), "w"), indent=1, default=str)
for r in rows:
    print(r["precision"], r["batch_size"], str(r["gpu_uuid"])[-6:], f"window {r['window_s']:.2f} s gpu {r['energy_j']:.0f} J",
          "| cpu", r.get("cpu_energy_j"), r.get("cpu_energy_source"), "|", str(r.get("cpu_energy_reason"))[:160])
print({k: rows[0].get(k) for k in cols if k.startswith("cpu_")})
s = Store("/tmp/cc_store").read("systems")
for _, n in s[s.get("kind") == "node_sampler"].iterrows() if "kind" in s else []:
    print("node sampler:", {k: n.get(k) for k in n.index if n.get(k) is not None and str(n.get(k)) != "nan"})
PY
  ;;
esac
