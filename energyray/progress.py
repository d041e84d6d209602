"""Terminal progress while a sweep runs: trials done of total, failures, ETA, and the last trial."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class SweepProgress:
    def __init__(self, total: int, console: Console | None = None) -> None:
        self.failed = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("failed: {task.fields[failed]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
            console=console, transient=False,
        )
        self._task = self._progress.add_task("trials", total=total, failed=0, last="")

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def advance(self, row: dict[str, Any]) -> None:
        if row.get("status") != "ok":
            self.failed += 1
        last = f"{row.get('model')} {row.get('precision_requested', row.get('precision'))} b={row.get('batch_size')}: {row.get('status')}"
        self._progress.update(self._task, advance=1, failed=self.failed, last=last)
