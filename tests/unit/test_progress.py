"""The terminal progress: trials done of total, failures, ETA, and one line per worker."""

from __future__ import annotations

import io

from rich.console import Console

from energyray.progress import SweepProgress


def _render(progress: SweepProgress) -> str:
    console = progress._progress.console
    console.print(progress._progress.get_renderable())
    return console.file.getvalue()


def test_progress_shows_totals_failures_eta_and_a_line_per_worker():
    console = Console(file=io.StringIO(), width=200, force_terminal=False, color_system=None)
    p = SweepProgress(5, console)
    p.worker(0, "h100", "loading mistral-7b nf4", 0, 3)
    p.worker(1, "a6000", "qwen2-7b int8 b=4 qa", 1, 2)
    p.advance({"model": "mistral-7b", "precision_requested": "nf4", "batch_size": 1, "status": "ok"})
    p.advance({"model": "qwen2-7b", "precision_requested": "int8", "batch_size": 4, "status": "oom"})
    p.worker(0, "h100", "mistral-7b nf4 b=1 longform", 1, 3)
    text = _render(p)
    assert "2/5" in text and "failed: 1" in text and "ETA" in text
    assert "worker 0 [h100]" in text and "mistral-7b nf4 b=1 longform" in text and "1/3" in text
    assert "worker 1 [a6000]" in text and "qwen2-7b int8 b=4 qa" in text
    assert "loading mistral-7b" not in text  # a worker's line shows what it does now
    assert p.failed == 1 and p.done == 2
