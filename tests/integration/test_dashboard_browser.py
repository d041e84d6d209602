"""The dashboard in a real browser: headless Chromium (Debian's package, driven by Playwright's
Python package through executable_path; no browser download) opens the page that
`python -m energyray report --out` writes for a realistic store (several sweeps and hardware,
old-schema rows, failures, samples with phases) and checks what a reader relies on: no console
errors, no network requests, every chart has data or says why not, the filters and the Pareto
deadline change what is shown, the failures are listed. A full-page screenshot is kept:
${ENERGYRAY_TEST_ARTIFACTS:-outputs/test-artifacts}/dashboard.png.

The harness itself is checked first on a small hand-made page that follows the same DOM contract
(docs/report.md): it finds what it must, and catches a console error and a network request."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install 'energyray[dev]'")

REPO_ROOT = Path(__file__).resolve().parents[2]
FILTER_KEYS = ("sweep", "hardware", "model", "precision", "backend", "task")
# Views that the realistic store gives data to (the others may show their note instead).
VIEWS_WITH_DATA = ("energy_vs_input_tokens", "latency_vs_j_per_1k_tokens", "latency_distribution",
                   "power_by_phase", "temperature", "accuracy_per_category", "pareto_time_energy",
                   "cross_hardware", "phase_breakdown", "failures")
REQUIRED_VIEWS = ("energy_vs_input_tokens", "latency_vs_j_per_1k_tokens", "energy_accuracy_frontier",
                  "latency_distribution", "emissions_vs_latency", "power_by_phase", "cumulative_energy_gpu_wall",
                  "temperature", "energy_per_word", "words_per_model", "accuracy_per_category", "daily_projection",
                  "pareto_time_energy", "pareto_energy_accuracy", "cross_hardware", "roofline",
                  "phase_breakdown", "failures", "diffusion_step_power")


def _chromium() -> str | None:
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium (scripts/install.sh --dev)"),
    pytest.mark.timeout(600),
]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ENERGYRAY_TEST_ARTIFACTS") or REPO_ROOT / "outputs" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot start
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


class Page:
    """A page opened from a file, with what it logged and requested."""

    def __init__(self, browser: Any, html: Path) -> None:
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(html.as_uri(), wait_until="load", timeout=120_000)
        # every chart drawn by plotly, or showing its note
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('.er-chart')].every("
            "d => d.querySelector('.er-empty') || (d.classList.contains('js-plotly-plot') && Array.isArray(d.data)))",
            timeout=120_000)

    def network(self) -> list[str]:
        """Requests that leave the file: anything but file:// (data: and blob: stay in the page)."""
        return [u for u in self.requests if not u.startswith(("file://", "data:", "blob:"))]

    def charts(self) -> dict[str, dict[str, Any]]:
        """Per chart id: empty note, and the points of its filterable traces (meta.keys/meta.key),
        of its visible traces, and x values of the Pareto point traces."""
        return self.page.evaluate("""() => {
          const out = {};
          const len = a => (Array.isArray(a) ? a.length : (a && a.length) || 0);
          for (const d of document.querySelectorAll('.er-chart')) {
            const empty = d.querySelector('.er-empty');
            const traces = Array.isArray(d.data) ? d.data : [];
            let points = 0, filterable = 0, paretoX = [];
            for (const t of traces) {
              if (t.visible === false) continue;
              const n = Math.max(len(t.x), len(t.y), len(t.values), len(t.labels), len(t.z));
              points += n;
              const meta = t.meta && typeof t.meta === 'object' ? t.meta : {};
              if (meta.role === 'frontier') continue;
              if (Array.isArray(meta.keys) || Array.isArray(meta.key)) filterable += n;
              if (Array.isArray(meta.keys) && Array.isArray(t.x)) paretoX.push(...t.x);
            }
            out[d.id.replace(/^view-/, '')] = {empty: empty ? empty.textContent.trim() : null,
                                               traces: traces.length, points, filterable, paretoX};
          }
          return out;
        }""")

    def visible_rows(self) -> int:
        return self.page.evaluate(
            "() => [...document.querySelectorAll('#summary-table tbody tr[data-keys]')]"
            ".filter(tr => tr.offsetParent !== null && getComputedStyle(tr).display !== 'none').length")

    def options(self, key: str) -> list[str]:
        return self.page.eval_on_selector(f'#filters select[data-key="{key}"]',
                                          "s => [...s.options].map(o => o.value)")

    def deselect(self, key: str, value: str) -> None:
        keep = [v for v in self.options(key) if v != value]
        self.page.locator(f'#filters select[data-key="{key}"]').select_option(keep)  # fires change

    def settle(self) -> None:
        self.page.wait_for_timeout(300)  # plotly redraws synchronously; one frame for the layout


def check_page(page: Page, failures: tuple[str, ...] = (), drop_model: str | None = None,
               required: tuple[str, ...] = (), with_data: tuple[str, ...] = ()) -> dict[str, Any]:
    """The DOM contract's checks; returns what it saw (for the assertion messages)."""
    p = page.page
    h1 = p.query_selector("h1")
    assert h1 and h1.inner_text().strip(), "the page has no <h1> title"
    for sel in ("#run-info", "#cheapest", "#summary-table", "#failures"):
        assert p.query_selector(sel), f"no {sel} on the page"
    for key in FILTER_KEYS:
        select = p.query_selector(f'#filters select[data-key="{key}"]')
        assert select and select.get_attribute("multiple") is not None, f"no <select multiple data-key={key!r}>"
        assert p.eval_on_selector(f'#filters select[data-key="{key}"]', "s => [...s.options].every(o => o.selected)"), \
            f"filter {key!r} does not start with every value selected"
    assert p.inner_text("#run-info").strip() and p.inner_text("#cheapest").strip()

    charts = page.charts()
    missing = [v for v in required if v not in charts]
    assert not missing, f"views missing from the page: {missing}"
    blank = {cid: c for cid, c in charts.items() if not c["empty"] and c["points"] == 0}
    assert not blank, f"charts with neither data nor a note saying why: {blank}"
    nodata = [v for v in with_data if charts[v]["empty"] or charts[v]["points"] == 0]
    assert not nodata, f"views that should have data show none: {[(v, charts[v]['empty']) for v in nodata]}"

    # a filter: one model deselected -> fewer table rows and fewer points on the charts
    rows_before = page.visible_rows()
    assert rows_before > 0, "the summary table shows no configuration"
    model = drop_model or page.options("model")[0]
    page.deselect("model", model)
    page.settle()
    after = page.charts()
    rows_after = page.visible_rows()
    assert rows_after < rows_before, f"deselecting model {model!r} left {rows_after} of {rows_before} table rows"
    fewer = [cid for cid in charts if after[cid]["filterable"] < charts[cid]["filterable"]]
    assert fewer, f"deselecting model {model!r} changed no chart: {after}"
    page.deselect("model", "\0")  # everything selected again
    page.settle()
    assert page.visible_rows() == rows_before

    # the Pareto deadline: a limit at the median x hides the points beyond it
    deadline = p.query_selector('[data-pareto="deadline"]')
    assert deadline, "no latency-deadline input (input[data-pareto=deadline]) for the Pareto chart"
    chart_id = p.evaluate("el => { let n = el; while (n && !n.querySelector('.er-chart')) n = n.parentElement;"
                          " return n ? n.querySelector('.er-chart').id.replace(/^view-/, '') : null; }", deadline)
    xs = sorted(x for x in charts[chart_id]["paretoX"] if x is not None)
    assert len(xs) >= 2, f"Pareto chart {chart_id!r} has too few points to test its deadline: {xs}"
    limit = xs[len(xs) // 2]
    deadline.fill(repr(limit))
    page.settle()
    kept = [x for x in page.charts()[chart_id]["paretoX"] if x is not None]
    assert 0 < len(kept) < len(xs) and max(kept) <= limit, \
        f"deadline {limit} on {chart_id!r}: {len(kept)} of {len(xs)} points kept, largest {max(kept, default=None)}"
    deadline.fill("")
    page.settle()

    text = p.inner_text("#failures")
    for error in failures:
        assert error in text, f"failure {error!r} not listed in #failures: {text[:500]!r}"

    assert not page.errors, f"the page logged errors: {page.errors}"
    assert not page.network(), f"the page made network requests: {page.network()}"
    return {"charts": charts, "rows": rows_before}


# -- the harness, on a small page that follows the contract ------------------------------------

CONTRACT_JS = r"""
const KEYS = ["sweep","hardware","model","precision","backend","task"];
function sel() { const s = {}; document.querySelectorAll('#filters select[data-key]').forEach(e =>
  s[e.dataset.key] = new Set([...e.options].filter(o => o.selected).map(o => o.value))); return s; }
const ok = (k, s) => KEYS.every((n, i) => s[n].has(k[i]));
function draw() {
  const s = sel(), dl = document.querySelector('[data-pareto="deadline"]'), lim = dl.value === '' ? Infinity : +dl.value;
  for (const [id, fig] of Object.entries(FIGS)) {
    const data = fig.data.map(t => { if (!t.meta || !t.meta.keys) return t;
      const m = t.meta.keys.map((k, i) => ok(k, s) && t.x[i] <= lim);
      return {...t, x: t.x.filter((_, i) => m[i]), y: t.y.filter((_, i) => m[i])}; });
    Plotly.react('view-' + id, data, fig.layout);
  }
  document.querySelectorAll('#summary-table tr[data-keys]').forEach(tr =>
    tr.style.display = ok(JSON.parse(tr.dataset.keys), s) ? '' : 'none');
}
document.querySelectorAll('#filters select').forEach(e => e.addEventListener('change', draw));
document.querySelector('[data-pareto="deadline"]').addEventListener('input', draw);
draw();
"""


def contract_page(path: Path, extra: str = "") -> Path:
    """A minimal page with the dashboard's DOM contract: filters, table, a Pareto chart with a
    deadline input, an empty view with its note, the failures section; plotly.js inlined."""
    from plotly.offline import get_plotlyjs

    keys = [["s1", "cpu", m, "baseline", "transformers", "qa"] for m in ("a", "a", "b", "b")]
    figs = {"pareto_time_energy": {"data": [{"type": "scatter", "mode": "markers", "x": [0.1, 0.2, 0.3, 0.4],
                                             "y": [4, 3, 2, 1], "meta": {"keys": keys, "kind": "measured"}}],
                                   "layout": {"height": 420, "meta": {"pareto": {"x": "min", "y": "min",
                                                                                 "deadline": "x", "budget": "y"}}}}}
    filters = "".join(f'<select multiple data-key="{k}">' + "".join(f"<option selected>{v}</option>" for v in vals)
                      + "</select>" for k, vals in zip(FILTER_KEYS, [["s1"], ["cpu"], ["a", "b"], ["baseline"],
                                                                     ["transformers"], ["qa"]], strict=True))
    rows = "".join(f"<tr data-keys='{json.dumps(k)}'><td>{k[2]}</td></tr>" for k in (keys[0], keys[2]))
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>t</title>"
        f"<script>{get_plotlyjs()}</script></head><body><h1>energyray report</h1>"
        f"<div id='run-info'>sweeps: s1</div><div id='filters'>{filters}</div><p id='cheapest'>a is cheapest</p>"
        f"<table id='summary-table'><tbody>{rows}</tbody></table>"
        "<section><label>deadline <input type='number' data-pareto='deadline'></label>"
        "<div class='er-chart' id='view-pareto_time_energy'></div></section>"
        "<div class='er-chart' id='view-temperature'><p class='er-empty'>no samples with temperatures</p></div>"
        "<section id='failures'><p>1 failed: CUDA out of memory</p></section>"
        f"<script>const FIGS = {json.dumps(figs)};{CONTRACT_JS}</script>{extra}</body></html>")
    return path


def test_harness_on_a_contract_page(browser, tmp_path):
    page = Page(browser, contract_page(tmp_path / "contract.html"))
    seen = check_page(page, failures=("CUDA out of memory",), drop_model="a",
                      required=("pareto_time_energy", "temperature"), with_data=("pareto_time_energy",))
    assert seen["rows"] == 2 and seen["charts"]["temperature"]["empty"] == "no samples with temperatures"


def test_harness_catches_console_errors_and_network(browser, tmp_path):
    extra = "<script>console.error('boom')</script><img src='http://127.0.0.1:9/pixel.png'>"
    page = Page(browser, contract_page(tmp_path / "bad.html", extra))
    page.page.wait_for_timeout(500)
    assert any("boom" in e for e in page.errors)
    assert page.network() == ["http://127.0.0.1:9/pixel.png"]


# -- the real page --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, cli_process) -> tuple[Path, dict[str, Any]]:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from support.report_store import build

    root = tmp_path_factory.mktemp("dashboard")
    info = build(root / "store")
    out = root / "report.html"
    argv, cwd, env = cli_process
    proc = subprocess.run([*argv, "report", "--store", str(root / "store"), "--out", str(out)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.is_file(), f"report --out failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out, info


def test_dashboard_in_chromium(browser, dashboard):
    html, info = dashboard
    page = Page(browser, html)
    shot = artifacts_dir() / "dashboard.png"
    try:
        check_page(page, failures=tuple(e.split(":")[0] for e in info["errors"]), drop_model="mistral-7b",
                   required=REQUIRED_VIEWS, with_data=VIEWS_WITH_DATA)
        assert sorted(page.options("model")) == info["models"]
        assert set(info["sweeps"]) <= set(page.options("sweep"))
    finally:
        page.page.screenshot(path=str(shot), full_page=True)
        print(f"dashboard screenshot: {shot}")
