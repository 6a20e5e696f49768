"""Sections of the data-quality notebook (``00_data_quality``)."""

from __future__ import annotations

import matplotlib.pyplot as plt

from .. import formatting, plotting, quality
from ..dataset import Dataset

__all__ = [
    "coverage",
    "headline_kpis",
    "load_summary",
    "overview",
    "parse_notes",
    "reject_reasons",
    "warnings",
]


def overview(ds: Dataset, *, as_of, kpi_window_days: int = 365) -> list:
    """A short narrative: rows read/loaded/rejected and the headline KPIs, with notes."""
    summary = quality.compute_load_summary(ds)
    kpis = quality.compute_headline_kpis(ds, as_of=as_of, window_days=kpi_window_days)
    return [quality.describe_quality(summary, kpis, notes=ds.notes)]


def load_summary(ds: Dataset, *, as_of) -> list:
    """Rows read, loaded and rejected per table: a table and a bar chart."""
    summary = quality.compute_load_summary(ds)
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.4 * len(summary)))
    plotting.plot_load_summary(summary, ax=ax)
    return [formatting.style_table(summary, decimals=2), fig]


def reject_reasons(ds: Dataset, *, as_of, sample_rejects: int = 10) -> list:
    """Why rows were rejected: reasons, a chart and example rejected rows."""
    reasons = quality.compute_reject_reasons(ds)
    if reasons.empty:
        return ["No row was rejected."]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.4 * min(len(reasons), 10)))
    plotting.plot_reject_reasons(reasons, ax=ax)
    return [
        formatting.style_table(reasons),
        fig,
        formatting.style_table(ds.rejects, caption="Rejected rows", max_rows=sample_rejects),
    ]


def warnings(ds: Dataset, *, as_of) -> list:
    """Data-quality warnings on loaded rows, counted by table, column and issue."""
    summary = quality.compute_warning_summary(ds)
    if summary.empty:
        return ["No data-quality warnings."]
    return [formatting.style_table(summary)]


def parse_notes(ds: Dataset, *, as_of) -> list:
    """How each date and number column was read (day order, decimal mark, scale)."""
    notes = ds.parse_notes
    if notes is None or notes.empty:
        return ["No date or number column needed a reading decision."]
    return [formatting.style_table(notes.drop(columns="file", errors="ignore"))]


def coverage(ds: Dataset, *, as_of) -> list:
    """Which optional tables are present and which analyses they enable."""
    return [formatting.style_table(quality.compute_table_coverage(ds))]


def headline_kpis(ds: Dataset, *, as_of, kpi_window_days: int = 365) -> list:
    """Open pipeline, won revenue, win rate (with interval), average won deal, cycle."""
    kpis = quality.compute_headline_kpis(ds, as_of=as_of, window_days=kpi_window_days)
    return [formatting.style_table(formatting.format_kpis(kpis))]
