#!/usr/bin/env bash
# One device-machine session: GPU tests, then the quantization sweep on a random-init
# Mistral-7B (weights=dummy), results under $OUT. Run through the device tool with
# carry [".carry"] (bash ../shared/device/make_carry.sh .carry builds it).
set -uo pipefail
source .carry/bootstrap.sh
export ENERGYRAY_CACHE=/tmp/erc HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv | tee "$OUT/gpu.txt"
python -m pytest tests/gpu -q -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/tests.log"
python -m energyray sweep=quantization model=mistral-7b weights=dummy store.path=/tmp/store \
  ray.trial_timeout_s=180 "$@" 2>&1 | tee "$OUT/sweep.log"
python -m energyray report --store /tmp/store > "$OUT/report.txt" 2>&1
tar czf "$OUT/store.tgz" -C /tmp store
