"""Shared style, colours, number formats and argument checks of the plotting package.

Names here are public within the package (the plotting modules import them); the package
itself re-exports only :func:`set_theme`.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, PercentFormatter

__all__ = [
    "ALL",
    "BLUE",
    "GREEN",
    "GREY",
    "OLIVE",
    "ORANGE",
    "PURPLE",
    "RED",
    "REJECTED",
    "check_columns",
    "get_ax",
    "interval_errors",
    "label_rows",
    "money_formatter",
    "money_text",
    "percent_formatter",
    "set_theme",
]

ALL = "All"
"""The label the ``compute_`` functions give the row or series of all groups together."""

# seaborn's "deep" palette, by name
BLUE = "#4C72B0"
ORANGE = "#DD8452"
GREEN = "#55A868"
RED = "#C44E52"
PURPLE = "#8172B3"
GREY = "#8C8C8C"
OLIVE = "#CCB974"

REJECTED = ORANGE


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


def money_text(value, *, kilo: str = "k", kilo_from: float = 1e3, billions: bool = True) -> str:
    """A compact amount: ``1234567 -> "1.2M"``, ``45000 -> "45k"``, ``900 -> "900"``.

    Parameters
    ----------
    value : float
        The amount; missing or infinite gives ``"–"``.
    kilo : str, default "k"
        Suffix of thousands.
    kilo_from : float, default 1000
        Smallest size written in thousands; below it whole units (``5,000`` with 10000).
    billions : bool, default True
        Write sizes from 1e9 in billions (``2.5B``); False keeps millions (``2,500.0M``).

    Returns
    -------
    str

    Examples
    --------
    >>> money_text(-45_000), money_text(2.5e9, billions=False), money_text(5000, kilo_from=1e4)
    ('-45k', '2,500.0M', '5,000')
    """
    if value is None or pd.isna(value) or not np.isfinite(value):
        return "–"
    size = abs(value)
    if billions and size >= 1e9:
        return f"{value / 1e9:,.1f}B"
    if size >= 1e6:
        return f"{value / 1e6:,.1f}M"
    if size >= kilo_from:
        return f"{value / 1e3:,.0f}{kilo}"
    return f"{value:,.0f}"


def money_formatter(currency: str = "", *, currency_first: bool = False, **options):
    """Tick formatter writing amounts with :func:`money_text`, with the currency if given.

    Parameters
    ----------
    currency : str, optional
        Written after the amount (``"1.2M EUR"``), or before it with ``currency_first``
        (``"EUR 1.2M"``).
    currency_first : bool, default False
    **options
        ``kilo``, ``kilo_from``, ``billions`` of :func:`money_text`.

    Returns
    -------
    matplotlib FuncFormatter

    Examples
    --------
    >>> money_formatter("EUR")(1.5e6), money_formatter("EUR", currency_first=True)(900)
    ('1.5M EUR', 'EUR 900')
    """
    if not currency:
        return FuncFormatter(lambda v, _pos=None: money_text(v, **options))
    if currency_first:
        return FuncFormatter(lambda v, _pos=None: f"{currency} {money_text(v, **options)}")
    return FuncFormatter(lambda v, _pos=None: f"{money_text(v, **options)} {currency}")


def percent_formatter(*, decimals: int | None = None) -> PercentFormatter:
    """Tick formatter showing shares in [0, 1] as percentages (``0.25 -> "25%"``).

    Parameters
    ----------
    decimals : int, optional
        Decimals shown; None lets matplotlib choose from the axis range.

    Returns
    -------
    matplotlib PercentFormatter
    """
    return PercentFormatter(1.0, decimals=decimals)


def interval_errors(mid, low, high, *, missing: float | None = None) -> np.ndarray:
    """Error-bar lengths ``[mid - low, high - mid]`` from interval bounds, for ``xerr``/``yerr``.

    Lengths below 0 (rounding noise, a point estimate just outside its interval) become 0.

    Parameters
    ----------
    mid, low, high : array-like of float
        Point estimates and interval bounds, one per bar.
    missing : float, optional
        Length for a missing bound; None leaves it missing, so no error bar is drawn.

    Returns
    -------
    ndarray of shape (2, n)

    Examples
    --------
    >>> interval_errors([0.5, 0.2], [0.4, 0.25], [0.7, None], missing=0.0).round(2).tolist()
    [[0.1, 0.0], [0.2, 0.0]]
    """
    mid, low, high = (np.asarray(a, dtype="float64") for a in (mid, low, high))
    err = np.clip(np.vstack([mid - low, high - mid]), 0, None)
    return err if missing is None else np.nan_to_num(err, nan=missing)


def label_rows(ax, labels, *, start: int = 0) -> None:
    """Label the y positions ``start, start + 1, ...`` with ``labels``, first row on top.

    Parameters
    ----------
    ax : matplotlib Axes
    labels : sequence of str
        One per row, in drawing order.
    start : int, default 0
        Position of the first row (``boxplot`` draws from 1).
    """
    ax.set_yticks(range(start, start + len(labels)), labels)
    ax.invert_yaxis()
