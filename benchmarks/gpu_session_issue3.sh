#!/usr/bin/env bash
# Issue 3 on the device machine: GPU tests, fidelity and overhead benchmarks (part "bench"), or
# the quantization sweep at batch 1 and 8 with every phase measured (part "sweep").
# Run through the device tool with carry [".carry"]:  bash benchmarks/gpu_session_issue3.sh bench|sweep
set -uo pipefail
source .carry/bootstrap.sh
export ENERGYRAY_CACHE=/tmp/erc HF_HUB_OFFLINE=1
case "${1:-bench}" in
bench)
  nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv | tee "$OUT/gpu.txt"
  python -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/tests.log"
  python benchmarks/fidelity.py --json-out "$OUT/fidelity.json" > "$OUT/fidelity.log" 2>&1; tail -40 "$OUT/fidelity.log"
  python benchmarks/overhead.py --json-out "$OUT/overhead.json" > "$OUT/overhead.log" 2>&1; tail -25 "$OUT/overhead.log"
  ;;
sweep)
  python -m energyray sweep=quantization model=mistral-7b weights=dummy store.path=/tmp/store \
    'sweep.grid.batch_size=[1,8]' 'sweep.grid.task=[longform]' ray.trial_timeout_s=240 2>&1 | tee "$OUT/sweep.log" | tail -30
  python analysis/compare.py /tmp/store j_per_token > "$OUT/ci.txt" 2>&1
  tar czf "$OUT/store.tgz" -C /tmp store
  ;;
final)
  bash "$0" sweep
  python benchmarks/overhead.py --variants out --pairs 9 --run-s 4 --json-out "$OUT/overhead.json" > "$OUT/overhead.log" 2>&1; tail -22 "$OUT/overhead.log" | grep -v RESULT
  python benchmarks/fidelity.py --parts c --json-out "$OUT/fidelity_c.json" > "$OUT/fidelity_c.log" 2>&1; grep -E "GOAL|covers|naive" "$OUT/fidelity_c.log"
  ;;
esac
