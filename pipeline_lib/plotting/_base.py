"""Shared style and argument checks of the plotting package."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

__all__ = ["REJECTED", "check_columns", "get_ax", "set_theme"]

REJECTED = "#DD8452"


def set_theme() -> None:
    """The workbench's figure style (readable in HTML reports and dashboards)."""
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams.update({"figure.dpi": 100, "savefig.bbox": "tight", "figure.figsize": (8, 4)})


def check_columns(frame: pd.DataFrame, needed, fn: str) -> None:
    """Raise a ValueError naming the plot function and the columns ``frame`` lacks."""
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{fn}: frame lacks columns {missing}; "
            "pass the output of the matching compute_ function"
        )


def get_ax(ax=None):
    """``ax`` or, when None, the current Axes."""
    return ax if ax is not None else plt.gca()
