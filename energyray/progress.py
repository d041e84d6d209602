"""Terminal progress while a sweep runs: trials done of total, failures, ETA, and one line
per worker slot (its hardware, what it is doing, its group's trials done of total)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class SweepProgress:
    def __init__(self, total: int, console: Console | None = None) -> None:
        self.failed = 0
        self.done = 0
        self.total = total
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
            TimeRemainingColumn(), TextColumn("{task.fields[last]}"),
            console=console, transient=False,
        )
        self._task = self._progress.add_task("trials", total=total, failed="failed: 0", eta="ETA", last="")
        self._workers: dict[int, TaskID] = {}

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for task in self._workers.values():
            self._progress.update(task, visible=False)
        self._progress.stop()

    def advance(self, row: dict[str, Any]) -> None:
        self.done += 1
        if row.get("status") != "ok":
            self.failed += 1
        last = f"{row.get('model')} {row.get('precision_requested', row.get('precision'))} b={row.get('batch_size')}: {row.get('status')}"
        self._progress.update(self._task, advance=1, failed=f"failed: {self.failed}", last=escape(last))

    def worker(self, index: int, hardware: str, text: str, done: int | None = None, total: int | None = None) -> None:
        """One line per slot: `  worker 0 [h100]` with its group's progress and what it is doing."""
        label = escape(f"  worker {index} [{hardware}]")  # brackets are rich markup otherwise
        text = escape(text)
        if index not in self._workers:
            self._workers[index] = self._progress.add_task(label, total=total or 1, completed=done or 0,
                                                           failed="", eta="", last=text)
        fields: dict[str, Any] = {"last": text}
        if total:
            fields.update(total=total, completed=done or 0)
        self._progress.update(self._workers[index], **fields)
