"""Every sweep in sweeps/ composes through Hydra and plans (the dry run's path: plan.make_plan),
so its axes, models, precisions and tasks are all known; every command its header comment
gives plans too; and the task sweeps say how to shrink them to a few trials on a CPU."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from energyray import paths, plan
from energyray.errors import ConfigError

SWEEP_DIR = Path(__file__).resolve().parents[2] / "sweeps"
SWEEPS = sorted(p.stem for p in SWEEP_DIR.glob("*.yaml"))
# The task-and-accuracy sweeps: each header gives a command that runs it on a CPU in minutes.
TASK_SWEEPS = ("accuracy", "input_length", "summarization", "reasoning", "prompt_brevity")
def _plan(tmp_path: Path, sweep: str, *args: str) -> plan.Plan:
    """What `python -m energyray sweep=SWEEP ARGS dry_run=true` plans, in-process."""
    overrides = [f"sweep={sweep}", *(a for a in args if not a.startswith("dry_run=")), "dry_run=true",
                 f"store.path={tmp_path / 'store'}"]
    if not any(a.startswith("device=") for a in args):
        overrides.append("device=cpu")  # no GPU probe: the plan is the same
    plan.check_override_keys(overrides)
    plan.register_configs(sweep)
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
        return plan.make_plan(cfg, overrides)


def _header(sweep: str) -> list[str]:
    """The file's leading comment lines, '#' removed."""
    lines = []
    for line in (SWEEP_DIR / f"{sweep}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return lines


def _commands(sweep: str) -> list[list[str]]:
    """The arguments of each `python -m energyray sweep=...` command in the header."""
    out = []
    for line in _header(sweep):
        if "python -m energyray " not in line:
            continue
        args = shlex.split(line.split("python -m energyray ", 1)[1], comments=True)
        if args and args[0].startswith("sweep="):  # not `route` or `report`
            out.append(args)
    return out


def test_the_task_sweeps_exist():
    assert set(TASK_SWEEPS) <= set(SWEEPS)


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_composes_through_hydra(sweep):
    plan.register_configs(sweep)
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"sweep={sweep}"])
    node = OmegaConf.to_container(cfg.sweep)
    assert node["name"] == sweep and node["description"] and node["repeats"] >= 1
    assert node["grid"] and all(isinstance(v, list) and v for v in node["grid"].values()), node["grid"]
    assert _header(sweep), f"sweeps/{sweep}.yaml: no header comment saying what it measures"


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_sweep_plans_with_known_axes_models_and_tasks(tmp_path, sweep):
    p = _plan(tmp_path, sweep)
    assert p.todo and p.cfg.sweep.name == sweep
    grid = OmegaConf.to_container(OmegaConf.load(SWEEP_DIR / f"{sweep}.yaml"))["grid"]
    assert {s.task for s in p.todo} == set(grid.get("task", [p.todo[0].task]))  # no task left out


@pytest.mark.parametrize(("sweep", "args"), [
    pytest.param(s, args, id=f"{s}:{' '.join(args[1:]) or '-'}")
    for s in SWEEPS for args in _commands(s)])
def test_every_command_a_header_gives_plans(tmp_path, sweep, args):
    assert _plan(tmp_path, sweep, *args[1:]).todo


@pytest.mark.parametrize("sweep", TASK_SWEEPS)
def test_the_task_sweeps_say_how_to_run_on_a_cpu_in_minutes(sweep):
    cpu = [args for args in _commands(sweep) if "device=cpu" in args]
    assert len(cpu) == 1, f"sweeps/{sweep}.yaml: give one command with device=cpu that runs it in minutes"
    assert any("minutes" in line and "CPU" in line for line in _header(sweep))


@pytest.mark.parametrize("sweep", TASK_SWEEPS)
def test_the_cpu_command_plans_a_few_short_trials(tmp_path, sweep):
    [args] = [a for a in _commands(sweep) if "device=cpu" in a]
    p = _plan(tmp_path, sweep, *args[1:])
    assert 1 <= len(p.todo) <= 12, [s.trial_id for s in p.todo]
    assert all(s.max_new_tokens is not None and s.max_new_tokens <= 32 for s in p.todo)
    assert p.cfg.device == "cpu" and p.cfg.sweep.repeats == 1
    items_capped = p.cfg.tasks.limit is not None and p.cfg.tasks.limit <= 8
    assert items_capped or all(getattr(s, "requests", None) is None for s in p.todo)


def test_prompt_brevity_scores_every_task():
    grid = OmegaConf.load(SWEEP_DIR / "prompt_brevity.yaml")["grid"]
    assert set(grid["task"]) == {"longform", "qa", "summarization", "reasoning", "hle_style"}
    assert list(grid["requests"]) == ["all"]  # accuracy over every item, not over one batch


def test_an_unknown_task_in_a_sweep_is_refused_by_the_same_path(tmp_path, monkeypatch):
    """The plan checks task names, so the tests above catch a sweep naming a task that does not exist."""
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "bad_task.yaml").write_text(
        "name: bad_task\ndescription: x\ngrid:\n  task: [nosuchtask]\n")
    monkeypatch.setenv("ENERGYRAY_SWEEPS", str(tmp_path / "sweeps"))
    with pytest.raises(ConfigError, match="nosuchtask"):
        _plan(tmp_path, "bad_task")
