"""backend=openai and backend=server through `python -m energyray` (a local Ray), against the
fake OpenAI server shipped in energyray.testing, and what the driver refuses before a sweep.

The API key is put in the environment of the CLI process only; it must reach the Ray worker
(the fake refuses any other key) and nothing else: not the store, Hydra's run directory
(its config dump), nor the terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openai", reason="pip install 'energyray[api]'")

from energyray.store import Store  # noqa: E402
from energyray.testing.fake_openai import FakeOpenAI, Reply  # noqa: E402

KEY = "sk-test-CliKeyMustNotLeak0123456789abcdef"


def _files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.fixture(scope="module")
def api_run(tmp_path_factory, shared_cache, cli):
    root = tmp_path_factory.mktemp("api-cli")
    with FakeOpenAI([Reply(status=429, retry_after_s=0.1)], default=Reply(token_delay_s=0.005), api_key=KEY) as fake, \
            pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", KEY)
        args = ["sweep=smoke", "backend=openai", "model=gpt-4.1-mini", "precision=baseline",
                f"api.base_url={fake.base_url}", "api.energy_estimate=flops", f"store.path={root / 'store'}",
                f"cache_dir={shared_cache}"]
        result = cli(args, root / "hydra")
        requests = list(fake.requests)
    return {"root": root, "result": result, "requests": requests}


def test_api_sweep_runs_and_records_cost_with_null_energy(api_run):
    r = api_run["result"]
    assert r.returncode == 0, r.explain()
    assert "Traceback" not in r.output, r.explain()
    df = Store(api_run["root"] / "store").read("trials")
    assert len(df) == 2 and (df["status"] == "ok").all(), df[["status", "error"]]
    assert df["energy_j"].isna().all() and set(df["energy_source"]) == {"not_measurable"}
    assert df["energy_reason"].str.contains("remote API").all()
    assert (df["energy_estimated_j"] > 0).all() and set(df["energy_estimated_source"]) == {"estimated"}
    assert (df["cost_usd"] > 0).all() and df["price_table_date"].notna().all()
    assert (df["output_tokens"] > 0).all() and df["ttft_s"].notna().all()
    assert df["api_retries"].sum() == 1  # the scripted 429
    assert set(df["precision"]) == {"api"}
    config = json.loads(df["config_json"].iloc[0])
    assert config["api"]["api_key_env"] == "OPENAI_API_KEY" and config["api"]["base_url"].startswith("http://127.0.0.1")


def test_the_key_reaches_the_worker_and_nothing_else(api_run):
    assert api_run["result"].returncode == 0, api_run["result"].explain()
    auth = {q["headers"].get("authorization") for q in api_run["requests"]}
    assert auth == {f"Bearer {KEY}"}
    root = api_run["root"]
    assert (root / "hydra" / ".hydra" / "config.yaml").exists()  # Hydra's config dump is there ...
    assert _files_containing(root, KEY) == []  # ... and neither it nor the store holds the key
    assert KEY not in api_run["result"].output


def test_missing_key_is_refused_before_anything_runs(energyray, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    r = energyray("sweep=smoke", "backend=openai", "model=gpt-4.1-mini", "precision=baseline",
                  f"store.path={tmp_path / 'store'}")
    assert r.returncode == 2, r.explain()
    assert "OPENAI_API_KEY" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "store").exists()


def test_open_vs_closed_sweep_dry_runs_without_a_key(energyray, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    r = energyray("sweep=open_vs_closed", "dry_run=true", f"store.path={tmp_path / 'store'}")
    assert r.returncode == 0, r.explain()
    assert "trials: 64" in r.output
    assert "gpt-5-pro" in r.output and "mistral-7b" in r.output


def test_a_hosted_model_on_a_local_backend_is_refused(energyray, tmp_path):
    r = energyray("sweep=smoke", "model=gpt-4.1-mini", "dry_run=true", f"store.path={tmp_path / 'store'}")
    assert r.returncode == 2, r.explain()
    assert "only backend=openai" in r.output


def test_server_sweep_measures_startup_and_shutdown(cli, shared_cache, tmp_path):
    """backend=server end to end in a Ray worker, with the fake as the server command."""
    command = '["{python}","-m","energyray.testing.fake_openai","--port","{port}"]'
    args = ["sweep=smoke", "backend=server", "model=tiny-llama", "precision=baseline", f"server.command={command}",
            f"server.hf_home={tmp_path / 'hf'}", f"store.path={tmp_path / 'store'}", f"cache_dir={shared_cache}",
            "sampler.interval_s=0.01"]
    r = cli(args, tmp_path / "hydra")
    assert r.returncode == 0, r.explain()
    df = Store(tmp_path / "store").read("trials").sort_values("repeat")
    assert len(df) == 2 and (df["status"] == "ok").all(), df[["status", "error"]]
    assert set(df["load_label"]) == {"server_startup"} and set(df["unload_label"]) == {"server_shutdown"}
    assert (df["load_s"] > 0).all()
    last = df[df["unload_j"].notna() | df["unload_s"].notna()]
    assert len(last) == 1 and not last["server_shutdown_forced"].iloc[0]
    assert set(df["api_endpoint"]) == {"completions"} and (df["output_tokens"] > 0).all()
    # the server runs here: its energy is this machine's (unlike backend=openai's)
    assert df["energy_j"].notna().all(), df[["energy_source", "energy_reason"]]
    assert df["load_j"].notna().all(), df[["load_source", "load_energy_reason"]]
