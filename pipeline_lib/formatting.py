"""Readable tables for notebooks and HTML reports (formatting only; nothing is computed here)."""

from __future__ import annotations

import math

import pandas as pd
from pandas.io.formats.style import Styler

__all__ = ["style_table", "format_kpis"]


def style_table(
    frame: pd.DataFrame,
    *,
    caption: str | None = None,
    percent=(),
    decimals: int = 2,
    max_rows: int | None = None,
) -> Styler:
    """A Styler with thousands separators, no index and full-width text.

    Parameters
    ----------
    frame : DataFrame
        The table to show; it is not modified.
    caption : str, optional
        Shown above the table.
    percent : iterable of str
        Columns holding shares in [0, 1], shown as percentages.
    decimals : int, default 2
        Decimals of float columns that are not percentages.
    max_rows : int, optional
        Show only the first rows (the caption says how many were left out).

    Returns
    -------
    pandas Styler
    """
    shown = frame if max_rows is None else frame.head(max_rows)
    if max_rows is not None and len(frame) > max_rows:
        more = f"first {max_rows:,} of {len(frame):,} rows"
        caption = f"{caption} ({more})" if caption else more
    formats = {}
    for col in shown.columns:
        dtype = shown[col].dtype
        if col in percent:
            formats[col] = "{:.1%}"
        elif pd.api.types.is_integer_dtype(dtype):
            formats[col] = "{:,}"
        elif pd.api.types.is_float_dtype(dtype):
            formats[col] = "{:,.%sf}".replace("%s", str(decimals))
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            formats[col] = lambda v: "" if pd.isna(v) else f"{v:%Y-%m-%d}"
    styler = shown.style.format(formats, na_rep="–").hide(axis="index")
    text = [c for c in shown.columns if c not in formats and c not in percent]
    if text:
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
    dates = [c for c in shown.columns if pd.api.types.is_datetime64_any_dtype(shown[c].dtype)]
    if dates:  # a date never breaks at its hyphens
        styler = styler.set_properties(subset=dates, **{"white-space": "nowrap"})
    styler = styler.set_table_styles(
        [
            {"selector": "th", "props": "text-align: left; padding: 4px 8px;"},
            {"selector": "td", "props": "padding: 4px 8px; white-space: normal;"},
            {
                "selector": "caption",
                "props": "caption-side: top; text-align: left; font-weight: bold;",
            },
        ]
    )
    return styler.set_caption(caption) if caption else styler


def _fmt_value(value: float, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if unit == "share":
        return f"{value:.1%}"
    if unit == "days":
        return f"{value:,.0f} days"
    return f"{value:,.0f} {unit}"


def format_kpis(kpis: pd.DataFrame) -> pd.DataFrame:
    """KPI rows as text for display: value with its unit, interval, counts, definition.

    Parameters
    ----------
    kpis : DataFrame
        From :func:`pipeline_lib.quality.compute_headline_kpis`.

    Returns
    -------
    DataFrame
        ``metric, value, 95 % interval, n, skipped, definition`` (all text but n, skipped).
    """
    interval = [
        "" if pd.isna(lo) else f"{lo:.1%} – {hi:.1%}"
        for lo, hi in zip(kpis["ci_low"], kpis["ci_high"], strict=True)
    ]
    return pd.DataFrame(
        {
            "metric": kpis["metric"],
            "value": [_fmt_value(v, u) for v, u in zip(kpis["value"], kpis["unit"], strict=True)],
            "95 % interval": interval,
            "n": kpis["n"],
            "skipped": kpis["skipped"],
            "definition": kpis["definition"],
        }
    )
