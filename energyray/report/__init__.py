"""Reading a store for people: the summary table (summary), DuckDB queries over the store
(query), the dashboard's figures (views) and page (dashboard), static export (export)."""

from energyray.report.summary import (
    CONFIG_KEYS,
    MEASURED_SOURCES,
    configurations,
    energy_label,
    print_summary,
    print_sweep_summary,
    skipped_lines,
    summarize,
)

__all__ = ["CONFIG_KEYS", "MEASURED_SOURCES", "configurations", "energy_label", "print_summary",
           "print_sweep_summary", "skipped_lines", "summarize"]
