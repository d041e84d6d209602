"""Static export: a view's plotly figure written as PNG and PDF by kaleido in the system Chromium,
and the one-line errors of a request that cannot be done."""

from __future__ import annotations

import argparse
import struct
from dataclasses import dataclass
from typing import Any

import pytest

from energyray.report import export as ex

go = pytest.importorskip("plotly.graph_objects", reason="needs plotly: pip install 'energyray[report]'")


@dataclass
class View:  # the shape of report.views.View
    id: str
    title: str
    family: str
    fig: Any
    note: str | None = None


def _views() -> list[View]:
    fig = go.Figure(go.Scatter(x=[0.1, 0.2, 0.4], y=[2.0, 1.5, 1.1], mode="markers+lines", name="gemma3-270m"))
    fig.update_layout(height=420, xaxis_title="Time per output token (s)", yaxis_title="Energy per output token (J)")
    return [View("pareto_time_energy", "Energy vs time per token", "pareto", fig),
            View("temperature", "Temperature over time", "series", None, "no samples with temperatures")]


def _renderer_missing() -> str | None:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "needs kaleido: pip install 'energyray[report]'"
    if ex.find_chromium() is None:
        return "needs Chromium: apt-get install chromium (scripts/install.sh --dev)"
    return None


needs_renderer = pytest.mark.skipif(_renderer_missing() is not None, reason=_renderer_missing() or "")


@needs_renderer
@pytest.mark.timeout(300)
def test_png_and_pdf_of_a_view(tmp_path):
    paths = ex.export(_views(), tmp_path / "figs", formats=("png", "pdf"))
    assert [p.name for p in paths] == ["pareto_time_energy.png", "pareto_time_energy.pdf"]  # the empty view skipped
    png = paths[0].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # IHDR: the figure's size times the PNG scale
    assert (width, height) == (ex.DEFAULT_WIDTH_PX * ex.PNG_SCALE, 420 * ex.PNG_SCALE)
    pdf = paths[1].read_bytes()
    assert pdf[:5] == b"%PDF-" and len(pdf) > 1000


@needs_renderer
@pytest.mark.timeout(300)
def test_export_main_writes_the_chosen_views(tmp_path, capsys):
    args = argparse.Namespace(export="png", views="pareto_time_energy", export_dir=str(tmp_path))
    assert ex.export_main(args, _views()) == 0
    assert (tmp_path / "pareto_time_energy.png").stat().st_size > 1000
    assert f"figure: {tmp_path / 'pareto_time_energy.png'}" in capsys.readouterr().out


@needs_renderer
@pytest.mark.timeout(300)
def test_every_legend_entry_fits(tmp_path):
    fig = go.Figure([go.Scatter(x=[i], y=[i], mode="markers", name=f"configuration {i}") for i in range(30)])
    fig.update_layout(height=420, margin={"t": 24})
    (path,) = ex.export([View("many", "Thirty configurations", "x", fig)], tmp_path, formats=("png",))
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    assert height >= (140 + 22 * 30) * ex.PNG_SCALE and width > ex.DEFAULT_WIDTH_PX * ex.PNG_SCALE
    assert fig.layout.title.text is None and fig.layout.margin.t == 24  # the page's figure is left as it was


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"formats": ("gif",)}, "cannot export as gif: the formats are png, pdf, svg"),
    ({"ids": ["nope"]}, "no view 'nope': the views are pareto_time_energy, temperature"),
    ({"ids": ["temperature"]}, "view 'temperature' has no figure to export: no samples with temperatures"),
])
def test_requests_that_cannot_be_done(tmp_path, kwargs, says):
    with pytest.raises(ex.ExportError, match=says):
        ex.export(_views(), tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_no_chromium_names_the_fix(tmp_path, monkeypatch, capsys):
    pytest.importorskip("kaleido", reason="needs kaleido: pip install 'energyray[report]'")
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-such-browser"))
    args = argparse.Namespace(export="png,pdf", views=None, export_dir=str(tmp_path / "out"))
    assert ex.export_main(args, _views()) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "apt-get install chromium" in err


def test_parse_list():
    assert ex.parse_list(" png, pdf ,") == ["png", "pdf"] and ex.parse_list(None) == []
