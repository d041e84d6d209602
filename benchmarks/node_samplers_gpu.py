#!/usr/bin/env python
"""Node-level samplers on a GPU machine: a PDU's wall power over real SNMP and
sampler.node_cpu, beside the NVML device samplers, in a CLI sweep on every GPU of the machine.

    PATH=<dir with snmpd>:$PATH python benchmarks/node_samplers_gpu.py [--out DIR]

The PDU is Debian's snmpd on loopback (tests/integration/support/snmp_agent.py), serving APC's
rPDUIdentDevicePowerWatts. What it serves is the machine's "wall" as this script emulates it:
a 400 W base plus every GPU's power, read from NVML every 50 ms. So the wall figures have a
known truth: the integral of what was served (logged here with time stamps). The sweep runs
through the real CLI (`sampler/pdu=apc-rpdu sampler.pdu.host=127.0.0.1 ...`); with two GPUs its
two groups run at once, so windows overlap and share the node's energy by the rule (their GPU
energy in each interval). Printed per trial: the GPU's counter energy, the node's energy over the
window (`wall_energy_node_j`) against the served truth over the same window, the share and the
attributed wall energy; per node: what no window was open for. The figures of the emulated wall
mean nothing; the pipe (NVML -> snmpd -> pysnmp -> node actor -> ledger -> rows) is what is tested.
"""

from __future__ import annotations

import argparse
import bisect
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests" / "integration" / "support"))
from snmp_agent import WATTS, Agent  # noqa: E402  (the tests' real SNMP agent)

BASE_W = 400


def served_between(log: list[tuple[float, float]], t0: float, t1: float) -> float:
    """Joules of the served watts (a step function: each value holds until the next) over [t0, t1]."""
    times = [t for t, _ in log]
    i = max(0, bisect.bisect_right(times, t0) - 1)
    energy, t = 0.0, t0
    while i < len(log) and t < t1:
        nxt = log[i + 1][0] if i + 1 < len(log) else t1
        end = min(nxt, t1)
        if end > t:
            energy += log[i][1] * (end - t)
            t = end
        i += 1
    return energy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="write the rows and the served log here")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=128)
    args = ap.parse_args()
    from energyray.samplers.nvml import NvmlSampler, gpus
    from energyray.store import Store

    devices = [g["uuid"] for g in gpus()]
    samplers = [NvmlSampler(device=u, interval_s=0.05) for u in devices]
    for s in samplers:
        s.start()
    root = Path(tempfile.mkdtemp(prefix="energyray-pdu-"))
    (root / "agent").mkdir()
    agent = Agent(root / "agent")
    agent.start()
    log: list[tuple[float, float]] = []
    stop = threading.Event()

    def emulate() -> None:
        while not stop.is_set():
            watts = BASE_W + sum((s.latest() or {}).get("power_w") or 0.0 for s in samplers)
            agent.set(WATTS, int(round(watts)))
            log.append((time.time(), float(int(round(watts)))))
            stop.wait(0.05)

    th = threading.Thread(target=emulate, daemon=True)
    th.start()
    store = root / "store"
    cmd = [sys.executable, "-m", "energyray", "sweep=smoke", "weights=dummy", "sweep.grid.model=[gemma3-1b]",
           "sweep.grid.precision=[bf16,fp16]", "sweep.grid.batch_size=[1,4]", f"sweep.repeats={args.repeats}",
           f"generation.max_new_tokens={args.new_tokens}", "sampler/pdu=apc-rpdu", "sampler.pdu.host=127.0.0.1",
           f"sampler.pdu.port={agent.port}", "sampler.pdu.interval_s=0.2", "sampler.pdu.timeout_s=0.5",
           "sampler.node_cpu=auto", f"store.path={store}", "ray.trial_timeout_s=300",
           f"hydra.run.dir={root / 'hydra'}"]
    print("$ " + " ".join(cmd), flush=True)
    t_start = time.time()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=540)
    finally:
        stop.set()
        th.join(timeout=5)
        agent.stop()
        for s in samplers:
            s.close()
    print(f"exit {r.returncode} after {time.time() - t_start:.0f} s; {len(devices)} GPU(s); served {len(log)} values")
    print("\n".join(r.stdout.splitlines()[-6:]))
    if r.returncode != 0:
        print(r.stderr[-3000:])
        return 1
    trials = Store(store).read("trials")
    systems = Store(store).read("systems")
    rows = []
    for _, t in trials.sort_values("started_at").iterrows():
        t0 = datetime.fromisoformat(str(t["started_at"])).timestamp()
        truth = served_between(log, t0, t0 + float(t["window_s"]))
        rows.append({k: t.get(k) for k in (
            "precision", "batch_size", "repeat", "status", "gpu_uuid", "window_s", "energy_j", "wall_energy_j",
            "wall_energy_node_j", "wall_energy_share", "wall_energy_source", "wall_energy_attribution",
            "wall_energy_reason", "cpu_energy_total_j", "cpu_energy_source", "cpu_energy_reason")} | {"served_j": truth})
        x = rows[-1]
        node = x["wall_energy_node_j"]
        print(f"{x['precision']} b={x['batch_size']} r={x['repeat']} {str(x['gpu_uuid'])[-6:]} window "
              f"{x['window_s']:.2f} s  device {x['energy_j']:.0f} J  node {node if node is None else round(node)} J "
              f"(served {truth:.0f} J, {(node / truth - 1) * 100 if node and truth else float('nan'):+.1f} %)  "
              f"share {x['wall_energy_share']}  wall {x['wall_energy_j']}  [{x['wall_energy_source']}]  "
              f"cpu+ram {x['cpu_energy_total_j']} [{x['cpu_energy_source']}: {x['cpu_energy_reason']}]")
    nodes = systems[systems["kind"] == "node_sampler"] if "kind" in systems else systems.iloc[0:0]
    for _, n in nodes.iterrows():
        print("node sampler: " + ", ".join(f"{k}={n.get(k)}" for k in (
            "role", "attributed_j", "unattributed_j", "unattributed_s", "windows_closed", "ledger_span_s",
            "attribution_rule") if k in n))
    ok = [x for x in rows if x["status"] == "ok"]
    with_wall = [x for x in ok if x["wall_energy_j"] is not None]
    errs = [abs(x["wall_energy_node_j"] / x["served_j"] - 1) for x in with_wall if x["served_j"]]
    overlap = [x for x in with_wall if x["wall_energy_share"] is not None and x["wall_energy_share"] < 0.999]
    summary = {"trials": len(rows), "ok": len(ok), "with_wall": len(with_wall), "gpus": len(devices),
               "node_vs_served_mean_abs_err_pct": 100 * sum(errs) / len(errs) if errs else None,
               "node_vs_served_max_abs_err_pct": 100 * max(errs) if errs else None,
               "shared_windows": len(overlap)}
    print("RESULT " + json.dumps(summary))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "node_rows.json").write_text(json.dumps(rows, indent=1, default=str))
        (out / "served.json").write_text(json.dumps(log))
        (out / "systems.json").write_text(systems.to_json(orient="records", default_handler=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
