"""Figures of the data-quality notebook (load summary, reject reasons)."""

from __future__ import annotations

import pandas as pd
from matplotlib.ticker import MaxNLocator

from ._base import REJECTED, check_columns, get_ax, label_rows

__all__ = ["plot_load_summary", "plot_reject_reasons"]


def plot_load_summary(summary: pd.DataFrame, *, ax=None):
    """Share of rows rejected per table, labelled with the counts behind it.

    Parameters
    ----------
    summary : DataFrame
        From :func:`pipeline_lib.quality.compute_load_summary`
        (``table, read, rejected, rejected_pct``).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(summary, ["table", "read", "rejected", "rejected_pct"], "plot_load_summary")
    ax = get_ax(ax)
    y = range(len(summary))
    pct = summary["rejected_pct"].fillna(0)
    ax.barh(y, pct, color=REJECTED)
    label_rows(ax, summary["table"])
    ax.set_xlim(0, max(1.0, float(pct.max()) * 1.6))
    ax.set_xlabel("rows rejected (% of rows read)")
    ax.set_title("Rows rejected per table")
    for i, row in enumerate(summary.itertuples()):
        ax.text(pct.iloc[i], i, f"  {row.rejected:,} of {row.read:,} rows", va="center", fontsize=9)
    return ax


def plot_reject_reasons(reasons: pd.DataFrame, *, top: int = 10, ax=None):
    """Bar chart of the most frequent reject reasons.

    Parameters
    ----------
    reasons : DataFrame
        From :func:`pipeline_lib.quality.compute_reject_reasons` (``table, reason, rows``).
    top : int, default 10
        How many reasons to show.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(reasons, ["table", "reason", "rows"], "plot_reject_reasons")
    ax = get_ax(ax)
    head = reasons.head(top)
    labels = head["table"] + ": " + head["reason"].str.slice(0, 60)
    ax.barh(range(len(head)), head["rows"], color=REJECTED)
    label_rows(ax, labels)
    ax.set_xlabel("rejected rows")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Why rows were rejected")
    return ax
