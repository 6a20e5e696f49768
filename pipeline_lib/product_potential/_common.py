"""Checks and small helpers shared by the product-potential modules (private)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import schema
from ..dataset import Dataset, to_timestamp
from ..errors import InsufficientDataError

__all__: list[str] = []

_CLOSED = (schema.WON, schema.LOST)


def _prepare(data, as_of) -> tuple[Dataset, pd.Timestamp]:
    """The dataset as known on ``as_of`` (snapshotted unless it already is)."""
    if not isinstance(data, Dataset):
        raise TypeError(
            "expected a Dataset (from pipeline_lib.dataset.load_dataset), "
            f"got {type(data).__name__}"
        )
    ts = to_timestamp(as_of)
    ds = data if data.as_of == ts else data.snapshot(ts)
    if ds.opportunities.empty:
        raise InsufficientDataError(
            f"there are no opportunities as of {ts.date()} in this selection; "
            "widen the filters or choose a later as_of"
        )
    return ds, ts


def _positive(value, name: str) -> None:
    if value is None or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive number")


def _non_negative(value, name: str) -> None:
    if value is None or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} must be zero or a positive number")


def _check_choice(value, name: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; use one of {', '.join(allowed)}")


def _has_values(frame: pd.DataFrame | None, column: str) -> bool:
    return frame is not None and column in frame and frame[column].notna().any()


def _need_column(ds: Dataset, column: str, what: str) -> None:
    if not _has_values(ds.opportunities, column):
        raise InsufficientDataError(
            f"{what} needs the opportunities' '{column}' column, which is missing or empty; "
            f"map a '{column}' column in the source config"
        )


def _window(dates: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """``start < date <= end`` (missing dates are outside)."""
    return (dates > start) & (dates <= end)


def _isin(series: pd.Series, values) -> pd.Series:
    """``series.isin(values)`` through a hash index (much faster on Arrow-backed text)."""
    index = pd.Index(pd.unique(np.asarray(list(values), dtype=object)))
    return pd.Series(index.get_indexer(series) >= 0, index=series.index)


def _closed_within(frame: pd.DataFrame, ts: pd.Timestamp, history_days: int | None) -> pd.Series:
    """Deals won or lost, closed in the last ``history_days`` days up to ``ts`` when given."""
    closed = _isin(frame["status"], _CLOSED)
    if history_days is not None:
        _positive(history_days, "history_days")
        closed &= _window(frame["close_date"], ts - pd.Timedelta(days=history_days), ts)
    return closed


def _money(value: float, currency: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:,.0f}"
    return f"{text} {currency}".strip()


def _pct(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}%}"
