"""Checks and small helpers shared by the product-potential modules (private)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import schema
from .._arrowtools import isin
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


def _take(values: np.ndarray, pos: np.ndarray, fill=np.nan) -> np.ndarray:
    """``values[pos]``, ``fill`` where ``pos`` is -1."""
    dtype = object if values.dtype == object else np.result_type(values.dtype, type(fill))
    out = np.full(len(pos), fill, dtype=dtype)
    ok = pos >= 0
    out[ok] = values[pos[ok]]
    return out


def _unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct integers (``np.unique`` by sorting: its hash path is far slower)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """``(codes, labels)``: the distinct values sorted (as ``groupby`` sorts its keys) and
    each row's position among them (-1 where missing)."""
    codes, labels = pd.factorize(values, sort=True)
    return codes.astype("int64", copy=False), labels


def _per_group(values, codes: np.ndarray, n: int, how: str, **kwargs) -> np.ndarray:
    """``Series(values).groupby(codes).<how>()`` as an array over all ``n`` codes (NaN for a
    code without rows). pandas' kernels, so sums (compensated), means and medians come
    out exactly as a ``groupby`` on the labels would give them."""
    values = values.to_numpy() if isinstance(values, pd.Series) else values
    out = getattr(pd.Series(values).groupby(codes), how)(**kwargs)
    return out.reindex(np.arange(n)).to_numpy(dtype="float64")


def _status(frame: pd.DataFrame, *statuses: str) -> np.ndarray:
    """Rows whose status is one of ``statuses`` (missing status: no)."""
    status = frame["status"]
    out = np.zeros(len(frame), dtype=bool)
    for s in statuses:
        out |= status.eq(s).to_numpy(dtype=bool, na_value=False)
    return out


def _closed_within(frame: pd.DataFrame, ts: pd.Timestamp, history_days: int | None) -> pd.Series:
    """Deals won or lost, closed in the last ``history_days`` days up to ``ts`` when given."""
    closed = pd.Series(isin(frame["status"], _CLOSED), index=frame.index)
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
