"""`python -m energyray [report | store ... | route | bill] [overrides]`: the one driver process.

argv -> Hydra (conf/config.yaml + sweeps/<name>.yaml + the shell's overrides, against the
typed schema) -> plan.make_plan (checks, grid, what the store already has) -> the
orchestrator (Ray) -> each result written atomically to the store -> the sweep's summary.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from energyray import env, paths
from energyray.errors import ConfigError, EnergyRayError
from energyray.grid import AXES
from energyray.plan import (
    Plan,
    axis_counts,
    check_override_keys,
    make_plan,
    register_configs,
    requested_sweep,
)

# A dry run lists every trial up to this many; beyond, the counts by axis only (dry_run=list: all).
LIST_AT_MOST = 100

HELP = f"""\
energyray: measure the energy (and time, CO2, cost) of LLM inference over a grid of models,
precisions, batch sizes, tasks and hardware; one Parquet row per trial in a store.

usage: python -m energyray [KEY=VALUE ...]          run a sweep (Hydra overrides)
       python -m energyray report [--store DIR]     summarise a store (--help for its options)
       python -m energyray store upgrade ...        bring a store an older version wrote up to date
       python -m energyray store check --store DIR  list damaged files (--quarantine: move aside)
       python -m energyray store compact --store DIR   merge per-trial files: a large store reads fast
       python -m energyray route --store DIR        a small model escalating to a larger one:
                                                    energy and accuracy by rule (--help: options)
       python -m energyray bill --store DIR         local and API models on one bill: USD, gCO2e
                                                    and seconds per request (--sweep S: one sweep)
       python -m energyray project --store DIR --queries-per-day N   measured J/request at scale (--help)
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

exit status: 0 every trial ok (or nothing to do); 1 a trial failed or ran out of memory
  (stored; the last line says whether rerunning the same command may fix it); 2 input refused
  or a setup error; 3 an internal error; 130 interrupted (the same command resumes).
  ENERGYRAY_DEBUG=1 prints the traceback as well as the message.
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


@dataclass
class Tally:
    """What this run stored, by outcome; `retryable`: failed trials a rerun may fix."""

    plan: Plan | None = None
    store_path: str = ""
    ok: int = 0
    failed: int = 0
    oom: int = 0
    retryable: int = 0

    def add(self, row: dict[str, Any]) -> None:
        status = row.get("status")
        if status == "ok":
            self.ok += 1
        elif status == "oom":
            self.oom += 1
        else:
            self.failed += 1
            self.retryable += bool(row.get("retryable"))

    @property
    def stored(self) -> int:
        return self.ok + self.failed + self.oom

    def exit_code(self) -> int:
        return EXIT_TRIALS_FAILED if self.failed or self.oom else EXIT_OK

    def last_line(self) -> str:
        """`sweep smoke: 22 ok, 2 failed, 0 skipped; store outputs/store`, and what a rerun does."""
        plan = self.plan
        assert plan is not None
        oom = f", {self.oom} oom" if self.oom else ""
        line = (f"sweep {plan.cfg.sweep.name}: {self.ok} ok, {self.failed} failed{oom}, {plan.skipped} skipped; "
                f"store {self.store_path}")
        again = self.failed - self.retryable  # failed in a way that repeats
        if self.retryable:
            some = f"the {self.retryable}" if not again else f"{self.retryable} of the {self.failed}"
            line += (f"; rerun the same command to retry {some} failed (a worker died, a timeout, no free slot "
                     "or an API error: may pass next time)")
        if again:
            line += (f"; {'the other' if self.retryable else 'the'} {again} failed will fail again until "
                     "their error (above) is fixed")
        return line

    def interrupted(self) -> str:
        """Ctrl-C: what is stored, and that the same command resumes."""
        plan = self.plan
        if plan is None or not self.stored and not plan.skipped:
            return "energyray: interrupted before any trial was stored; the same command starts the sweep again."
        done = plan.skipped + self.ok + self.oom  # what a rerun skips
        total = plan.skipped + len(plan.todo)
        return (f"energyray: interrupted. This run stored {self.stored} trial(s) ({self.ok} ok); "
                f"the store {self.store_path} has {done} of the {total} trials of sweep {plan.cfg.sweep.name!r} done. "
                f"The same command resumes: it skips the {done} done and runs the other {total - done}.")


def run(cfg_node: DictConfig, tally: Tally) -> int:
    from hydra.core.hydra_config import HydraConfig

    plan = make_plan(cfg_node, list(HydraConfig.get().overrides.task))
    cfg = plan.cfg
    if cfg.dry_run != "false":
        print_dry_run(plan)  # plain text: no rich, fast for 10,000 lines
        return EXIT_OK
    console = _console()
    tally.plan, tally.store_path = plan, str(cfg.store.path)
    if not plan.todo:
        console.print(f"All {plan.skipped} trials of sweep {cfg.sweep.name!r} are already in {cfg.store.path} "
                      "(store.resume=false reruns them).")
        _say(console, tally.last_line())
        return EXIT_OK

    from energyray import footprint, orchestrator, report
    from energyray.progress import SweepProgress
    from energyray.store import TRIAL_TABLES, Store
    from energyray.trial import TrialResult

    store = Store(cfg.store.path)
    todo = plan.todo
    driver_env = env.snapshot()
    tables = footprint.load_tables()  # read once (the planner's check already did)
    by_id = {s.trial_id: s for s in todo}

    def on_result(result: TrialResult) -> None:
        row = dict(result.row)
        spec = by_id[row["trial_id"]]
        row.setdefault("config_json", json.dumps(plan.configs[spec.trial_id], default=str))
        row["driver_env_json"] = json.dumps(driver_env, default=str)
        row.update(footprint.footprint_fields(row, cfg.footprint, tables))  # CO2 (and cost) of its energy
        # the trials file last: it marks the trial done (resume); StoreWriteError: exit 2
        store.write_trial(row, result.samples, result.responses, spec.sweep, spec.hardware)
        tally.add(row)

    def on_system(system: dict[str, Any]) -> None:
        name = system.get("system_id") or f"{system.get('node')}-{system.get('gpu_uuid') or 'cpu'}"
        hw = system.get("hardware") or todo[0].hardware
        store.write("systems", [{**system, "seen_at": driver_env.get("hostname")}], cfg.sweep.name, hw, name)

    for d in plan.damaged:  # found by the resume check, moved aside
        rerun = "; its trial runs again" if d.path.relative_to(store.path).parts[0] in TRIAL_TABLES else ""
        console.print(f"energyray: damaged file {d.line()}{rerun}", soft_wrap=True, markup=False, highlight=False)
    stale = store.clean_partial()
    if stale:
        console.print(f"energyray: removed {len(stale)} partial file(s) a killed run left in {store.path}")
    console.print(f"energyray: sweep [bold]{cfg.sweep.name}[/]: {len(todo)} trials in "
                  f"{len(plan.groups)} groups ({plan.skipped} already in the store) -> {store.path}")
    orchestrator.check_cluster(plan)  # before the progress bar: a sweep the cluster cannot run fails here
    signal.signal(signal.SIGTERM, _terminated)  # after ray.init, which sets its own (a bare exit)
    with SweepProgress(len(todo), console) as progress:
        orchestrator.run_sweep(plan, on_result, on_system, progress)
    report.print_sweep_summary(store, cfg.sweep.name, console)  # the whole sweep, earlier runs' trials too
    _say(console, tally.last_line())
    return tally.exit_code()


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler's stop, `kill`) ends the sweep as Ctrl-C does: what is stored is kept."""
    raise KeyboardInterrupt


def _say(console: Any, line: str) -> None:
    console.print(line, soft_wrap=True, markup=False, highlight=False)  # one line, never wrapped


# -- exits: no traceback for what a user can fix ------------------------------------------------
EXIT_OK, EXIT_TRIALS_FAILED, EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def debug() -> bool:
    """ENERGYRAY_DEBUG=1 (or Hydra's HYDRA_FULL_ERROR=1): tracebacks as well as the messages."""
    return any(os.environ.get(v, "") not in ("", "0") for v in ("ENERGYRAY_DEBUG", "HYDRA_FULL_ERROR"))


def guarded(body: Callable[[], int], on_interrupt: Callable[[], str] | None = None) -> int:
    """Run `body`; an error becomes one or two lines on stderr and its exit status."""
    try:
        return body()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends it at once
        if debug():
            traceback.print_exc()
        print(on_interrupt() if on_interrupt else "energyray: interrupted.", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except EnergyRayError as e:
        if debug():
            traceback.print_exc()
        print(f"energyray: error: {e}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except Exception as e:
        if debug():
            traceback.print_exc()
        first = (str(e).splitlines() or [""])[0]
        print(f"energyray: internal error: {type(e).__name__}: {first}\n"
              "Run again with ENERGYRAY_DEBUG=1 for the traceback, and report it with that.",
              file=sys.stderr, flush=True)
        return EXIT_BUG


_entered = False  # whether Hydra got as far as calling the task function


def _hydra_entry(cfg_node: DictConfig) -> None:
    global _entered
    _entered = True
    tally = Tally()
    code = guarded(lambda: run(cfg_node, tally), tally.interrupted)
    if code:
        sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from energyray.report.main import report_main

        sys.exit(guarded(lambda: report_main(argv[1:])))
    if argv and argv[0] == "store":
        from energyray.store import store_main

        sys.exit(guarded(lambda: store_main(argv[1:])))
    if argv and argv[0] == "route":
        sys.exit(guarded(lambda: _analysis("routing").route_main(argv[1:])))
    if argv and argv[0] == "bill":
        from energyray.footprint.cost import bill_main

        sys.exit(guarded(lambda: bill_main(argv[1:])))
    if argv and argv[0] == "project":
        from energyray.footprint.project import project_main

        sys.exit(guarded(lambda: project_main(argv[1:])))
    if (argv and argv[0] == "help") or any(a in ("--help", "-h") for a in argv):
        print(HELP, end="")
        sys.exit(0)
    sys.exit(guarded(lambda: _run_hydra(argv)))


def _analysis(name: str) -> Any:
    """A module of the checkout's analysis/ folder (analyses over the store; not in the package)."""
    path = Path(__file__).resolve().parents[1] / "analysis" / f"{name}.py"
    if not path.is_file():
        raise ConfigError(f"this command runs analysis/{name}.py of an energyray checkout, not found at {path}: "
                          "run it from a clone of the repository.")
    spec = importlib.util.spec_from_file_location(f"energyray_analysis_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run_hydra(argv: list[str]) -> int:
    import hydra

    global _entered
    _entered = False
    check_override_keys(argv)
    for line in register_configs(requested_sweep(argv)):
        print(f"energyray: skipped {line}", file=sys.stderr)
    path = paths.conf_dir()
    sys.argv = [sys.argv[0], *argv]
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        hydra.main(config_path=str(path), config_name="config", version_base="1.3")(_hydra_entry)()
    except SystemExit as e:
        # Hydra's own refusals (a wrong type, a missing sweep) exit 1: bad input is 2 here
        if not _entered and e.code == 1:
            return EXIT_ERROR
        raise
    except (HydraException, OmegaConfBaseException) as e:  # raised, not printed, under HYDRA_FULL_ERROR=1
        traceback.print_exc()
        print(f"energyray: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK
