"""Seaborn/matplotlib figures. Functions draw frames computed elsewhere; they never compute.

Axes-level functions take ``ax=None`` (falling back to the current axes), keyword-only
options, and return the Axes.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_load_summary", "plot_reject_reasons", "set_theme"]

_REJECTED = "#DD8452"


def set_theme() -> None:
    """The workbench's figure style (readable in HTML reports and dashboards)."""
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "figure.figsize": (8, 4)})


def _check_columns(frame: pd.DataFrame, needed, fn: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{fn}: frame lacks columns {missing}; "
            "pass the output of the matching compute_ function"
        )


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
    _check_columns(summary, ["table", "read", "rejected", "rejected_pct"], "plot_load_summary")
    ax = ax if ax is not None else plt.gca()
    y = range(len(summary))
    pct = summary["rejected_pct"].fillna(0)
    ax.barh(y, pct, color=_REJECTED)
    ax.set_yticks(list(y), summary["table"])
    ax.invert_yaxis()
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
    _check_columns(reasons, ["table", "reason", "rows"], "plot_reject_reasons")
    ax = ax if ax is not None else plt.gca()
    head = reasons.head(top)
    labels = head["table"] + ": " + head["reason"].str.slice(0, 60)
    ax.barh(range(len(head)), head["rows"], color=_REJECTED)
    ax.set_yticks(range(len(head)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("rejected rows")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Why rows were rejected")
    return ax
