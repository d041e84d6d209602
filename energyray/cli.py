"""`python -m energyray [report | store ...] [overrides]`: the one driver process.

argv -> Hydra (conf/config.yaml + sweeps/<name>.yaml + the shell's overrides, against the
typed schema) -> plan.make_plan (checks, grid, what the store already has) -> the
orchestrator (Ray) -> each result written atomically to the store -> the sweep's summary.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from omegaconf import DictConfig

from energyray import env, paths
from energyray.errors import EnergyRayError
from energyray.grid import AXES
from energyray.plan import Plan, axis_counts, check_override_keys, make_plan, register_configs

# A dry run lists every trial up to this many; beyond, the counts by axis only (dry_run=list: all).
LIST_AT_MOST = 100

HELP = f"""\
energyray: measure the energy (and time, CO2, cost) of LLM inference over a grid of models,
precisions, batch sizes, tasks and hardware; one Parquet row per trial in a store.

usage: python -m energyray [KEY=VALUE ...]          run a sweep (Hydra overrides)
       python -m energyray report [--store DIR]     summarise a store (--help for its options)
       python -m energyray store upgrade ...        bring a store an older version wrote up to date
       python -m energyray --cfg job [KEY=VALUE ...]  print every knob and its value; run nothing

common overrides:
  sweep=NAME                 a sweep in sweeps/ (quantization, smoke, batching, backends, ...)
  model=NAME                 a model in conf/model/ (pins the model axis)
  precision=P                baseline fp32 fp16 bf16 int8 nf4 ... (pins the precision axis)
  weights=dummy              random-init weights of the model's architecture: nothing downloaded
  'sweep.grid.batch_size=[1,8]'   set an axis's values (any axis: sweep.grid.AXIS=[...])
  sweep.repeats=N            repeats of every grid point
  store.path=DIR             where results go (default outputs/store); trials already there are skipped
  device=cpu|cuda|auto       where trials run
  ray.address=auto           join a running Ray cluster instead of starting one
  sampler/pdu=apc-rpdu       also read a PDU's wall power over SNMP (conf/sampler/pdu/)
  dry_run=true               print the plan and run nothing: trials per value of each axis
                             (and every trial, up to {LIST_AT_MOST})
  dry_run=list               ... and every trial, however many

examples:
  python -m energyray sweep=smoke
  python -m energyray sweep=batching model=mistral-7b weights=dummy 'sweep.grid.batch_size=[1,8]'

every knob, with its default: python -m energyray --cfg job
docs: docs/guide.md (sweeps, overrides, models, backends, clusters); Hydra's own: --hydra-help
"""


def _console() -> Any:
    """Rich console; wide when output is not a terminal (logs, CI), so tables stay readable."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_dry_run(plan: Plan) -> None:
    """The plan without running it: the count of trials per value of each axis; every trial
    as well when there are few of them, or with dry_run=list."""
    todo = plan.todo
    print(f"sweep {plan.cfg.sweep.name}: {len(todo)} trials to run in {len(plan.groups)} groups"
          + (f" ({plan.skipped} already in the store)" if plan.skipped else ""))
    if todo:
        print("trials per value of each axis:")
        for axis, counts in axis_counts(todo).items():
            print(f"  {axis:<15}" + ", ".join(f"{'default' if v is None else v} ({n})" for v, n in counts.items()))
    if todo and (plan.cfg.dry_run == "list" or len(todo) <= LIST_AT_MOST):
        cols = ["trial_id", "repeat", *AXES]
        rows = [[str(getattr(s, c)) for c in cols] for s in todo]
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        print("\n".join(lines))
    elif todo:
        print(f"(every trial: dry_run=list; {len(todo)} lines)")
    print(f"trials: {len(todo)}")


def run(cfg_node: DictConfig) -> int:
    from hydra.core.hydra_config import HydraConfig

    plan = make_plan(cfg_node, list(HydraConfig.get().overrides.task))
    cfg = plan.cfg
    if cfg.dry_run != "false":
        print_dry_run(plan)  # plain text: no rich, fast for 10,000 lines
        return 0
    console = _console()
    if not plan.todo:
        console.print(f"All {plan.skipped} trials of sweep {cfg.sweep.name!r} are already in {cfg.store.path} "
                      "(store.resume=false reruns them).")
        return 0

    from energyray import orchestrator, report
    from energyray.progress import SweepProgress
    from energyray.store import Store
    from energyray.trial import TrialResult

    store = Store(cfg.store.path)
    todo = plan.todo
    driver_env = env.snapshot()
    by_id = {s.trial_id: s for s in todo}
    failed = [0, 0]  # trials written by this run, of which not ok

    def on_result(result: TrialResult) -> None:
        row = dict(result.row)
        spec = by_id[row["trial_id"]]
        row.setdefault("config_json", json.dumps(plan.configs[spec.trial_id], default=str))
        row["driver_env_json"] = json.dumps(driver_env, default=str)
        # samples first: the trials file is what marks a trial done (resume), so a driver
        # killed between the two writes reruns the trial instead of losing its samples
        store.write("samples", result.samples, spec.sweep, spec.hardware, spec.trial_id)
        store.write("trials", [row], spec.sweep, spec.hardware, spec.trial_id)
        failed[0] += 1
        failed[1] += row.get("status") != "ok"

    def on_system(system: dict[str, Any]) -> None:
        name = system.get("system_id") or f"{system.get('node')}-{system.get('gpu_uuid') or 'cpu'}"
        hw = system.get("hardware") or todo[0].hardware
        store.write("systems", [{**system, "seen_at": driver_env.get("hostname")}], cfg.sweep.name, hw, name)

    stale = store.clean_partial()
    if stale:
        console.print(f"energyray: removed {len(stale)} partial file(s) a killed run left in {store.path}")
    console.print(f"energyray: sweep [bold]{cfg.sweep.name}[/]: {len(todo)} trials in "
                  f"{len(plan.groups)} groups ({plan.skipped} already in the store) -> {store.path}")
    orchestrator.check_cluster(plan)  # before the progress bar: a sweep the cluster cannot run fails here
    with SweepProgress(len(todo), console) as progress:
        orchestrator.run_sweep(plan, on_result, on_system, progress)
    report.print_sweep_summary(store, cfg.sweep.name, console)  # the whole sweep, earlier runs' trials too
    written, bad = failed
    console.print(f"{written - bad} ok, {bad} failed in this run; store: {store.path}")
    return 0


def _hydra_entry(cfg_node: DictConfig) -> None:
    try:
        code = run(cfg_node)
    except EnergyRayError as e:
        print(f"energyray: error: {e}", file=sys.stderr)
        code = 2
    if code:
        sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from energyray.report import report_main

        sys.exit(report_main(argv[1:]))
    if argv and argv[0] == "store":
        from energyray.store import store_main

        sys.exit(store_main(argv[1:]))
    if (argv and argv[0] == "help") or any(a in ("--help", "-h") for a in argv):
        print(HELP, end="")
        sys.exit(0)
    import hydra

    try:
        check_override_keys(argv)
        register_configs()
        path = paths.conf_dir()
    except EnergyRayError as e:
        print(f"energyray: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]
    hydra.main(config_path=str(path), config_name="config", version_base="1.3")(_hydra_entry)()
