"""Shared pieces of the trend review: allowed values, review windows, dates, tests, memo.

Private to :mod:`pipeline_lib.trend_review`; :func:`compute_review_windows` and the
constants are re-exported there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats as st

from .. import schema
from ..dataset import Dataset, to_timestamp
from ..errors import InsufficientDataError
from ..memo import memoized
from ..parsing import _is_arrow_text

__all__ = ["PERIODS", "COMPARISONS", "STAGE_HISTORY_ANALYSES", "compute_review_windows"]

#: Allowed ``period`` values and their pandas frequency.
PERIODS = {"month": "M", "quarter": "Q", "year": "Y"}
#: Allowed ``comparison`` values.
COMPARISONS = ("previous", "year_ago")
#: Analyses that need the stage history, and what they show.
STAGE_HISTORY_ANALYSES = {
    "stage conversion": "share of deals that move past each stage",
    "time in stage": "median, p75 and p90 days per stage",
    "bottlenecks": "stages whose conversion fell or duration rose",
    "pipeline flow": "how the pipeline moved between two dates",
    "pushed deals": "deals whose expected close date moved later",
    "stalled deals": "deals longer in their stage than 90 % of deals",
}

_PER_YEAR = {"month": 12, "quarter": 4, "year": 1}
_EPOCH = pd.Timestamp("1970-01-01")
_Z95 = float(st.norm.ppf(0.975))


# --------------------------------------------------------------------------- helpers


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; use one of {list(allowed)}")


def _snap(ds: Dataset, as_of) -> tuple[Dataset, pd.Timestamp]:
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a Dataset, got {type(ds).__name__}")
    ts = to_timestamp(as_of)
    return (ds if ds.as_of == ts else _snapshot(ds, ts)), ts


@memoized(copy=False)
def _snapshot(ds: Dataset, as_of: pd.Timestamp) -> Dataset:
    """``ds.snapshot(as_of)``, shared by every analysis of the same Dataset and date."""
    return ds.snapshot(as_of)


def _days(values) -> np.ndarray:
    """Dates -> float days since 1970-01-01 (nan where missing)."""
    s = pd.to_datetime(pd.Series(values))  # an all-missing column may come as object
    return ((s - _EPOCH) / pd.Timedelta(days=1)).to_numpy(dtype="float64", na_value=np.nan)


def _bounds(start, end, ts: pd.Timestamp) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    lo = None if start is None else to_timestamp(start, name="start")
    hi = None if end is None else to_timestamp(end, name="end")
    if lo is not None and hi is not None and hi < lo:
        raise ValueError(f"end={hi.date()} is before start={lo.date()}")
    if hi is not None and hi > ts:
        raise ValueError(f"end={hi.date()} is after as_of={ts.date()}: the future is unknown")
    return lo, hi


def _in_window(days: np.ndarray, lo, hi) -> np.ndarray:
    keep = ~np.isnan(days)
    if lo is not None:
        keep &= days >= _days([lo])[0]
    if hi is not None:
        keep &= days <= _days([hi])[0]
    return keep


def _windows(ts: pd.Timestamp, period: str, comparison: str) -> dict:
    _check_choice("period", period, PERIODS)
    _check_choice("comparison", comparison, COMPARISONS)
    cur = pd.Period(ts, freq=PERIODS[period])
    if cur.end_time.normalize() > ts:
        cur = cur - 1
    prev = cur - (1 if comparison == "previous" else _PER_YEAR[period])
    return {
        "current": cur,
        "comparison": prev,
        "cur_start": cur.start_time.normalize(),
        "cur_end": cur.end_time.normalize(),
        "cmp_start": prev.start_time.normalize(),
        "cmp_end": prev.end_time.normalize(),
    }


def _segments(opps: pd.DataFrame, by) -> list[str]:
    cols = [by] if isinstance(by, str) else list(by or ())
    usable = [c for c in cols if c in opps.columns and opps[c].notna().any()]
    if cols and not usable:
        raise InsufficientDataError(
            f"none of the segment columns {cols} is present with values in the "
            "opportunities; map one of them (e.g. product, team, source) in the source config"
        )
    return usable


def _closed(opps: pd.DataFrame, lo=None, hi=None) -> pd.DataFrame:
    close = opps["close_date"]
    keep = opps["status"].isin([schema.WON, schema.LOST]).to_numpy() & close.notna().to_numpy()
    if lo is not None:
        keep &= (close >= lo).to_numpy()
    if hi is not None:
        keep &= (close <= hi).to_numpy()
    return opps.take(np.flatnonzero(keep))  # one take by position: cheaper than a mask


def _window_closed(ds: Dataset, as_of, period: str, comparison: str) -> tuple:
    """The snapshot, its review windows and the deals closed in each window.

    Returns ``(ds, w, frames)``: ``w`` from :func:`_windows`; ``frames["cmp"]`` and
    ``frames["cur"]`` hold the deals closed in the comparison and current windows.
    """
    ds, ts = _snap(ds, as_of)
    w = _windows(ts, period, comparison)
    opps = ds.opportunities
    return ds, w, {k: _closed(opps, w[f"{k}_start"], w[f"{k}_end"]) for k in ("cmp", "cur")}


def _wins_by(frames: dict[str, pd.DataFrame], col: str, *, missing=None) -> dict:
    """Per frame and value of ``col``: ``won`` and closed (``n``) deals.

    Deals without a value are left out, or counted under ``missing`` when it is given.
    """
    out = {}
    for k, f in frames.items():
        key = f[col] if missing is None else f[col].fillna(missing)
        out[k] = f["status"].eq(schema.WON).groupby(key).agg(won="sum", n="size")
    return out


def _cycle_days(frame: pd.DataFrame) -> pd.Series:
    cycle = (frame["close_date"] - frame["created_date"]).dt.days.astype("float64")
    return cycle.where(cycle >= 0)


def _two_prop_p(k1, n1, k2, n2) -> np.ndarray:
    """Two-sided p-value of the pooled two-proportion z test (vectorised)."""
    k1, n1, k2, n2 = (np.asarray(x, dtype="float64") for x in (k1, n1, k2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (k1 + k2) / (n1 + n2)
        se = np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
        z = (k2 / n2 - k1 / n1) / se
        out = 2 * st.norm.sf(np.abs(z))
    return np.where((se > 0) & np.isfinite(se), out, np.where((n1 > 0) & (n2 > 0), 1.0, np.nan))


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
    """Mean difference b - a, its 95 % Welch interval and two-sided p-value."""
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 2 or len(b) < 2:
        return (
            (float(b.mean() - a.mean()) if len(a) and len(b) else np.nan),
            np.nan,
            np.nan,
            np.nan,
        )
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(b.mean() - a.mean())
    se = np.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff, 1.0 if diff == 0 else 0.0
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    tq = st.t.ppf(0.975, df)
    p = 2 * st.t.sf(abs(diff / se), df)
    return diff, diff - tq * se, diff + tq * se, float(p)


def _member(values: pd.Series, pool: pd.Series) -> np.ndarray:
    """``values.isin(pool)`` by hashing (fast for many text ids)."""
    return pd.Index(pool.dropna().unique()).get_indexer(values) >= 0


def _require_history(ds: Dataset, what: str) -> pd.DataFrame:
    hist = ds.stage_history
    if hist is None:
        raise InsufficientDataError(
            f"{what} can only be computed from the stage history (one row per stage change: "
            "opportunity_id, stage, entered_at, and ideally amount and close_date as they "
            "were); add a `stage_history` table to the source config (e.g. a Salesforce "
            "Opportunity History report) to see it"
        )
    hist = hist[hist["entered_at"].notna() & hist["opportunity_id"].notna()]
    if hist.empty:
        raise InsufficientDataError(
            f"{what} needs stage changes, but the stage history has no dated rows up to as_of"
        )
    return hist


def _code_of(values: pd.Series, labels, *, factorized=None) -> np.ndarray:
    """Position of each value in ``labels`` (-1 when absent), via the distinct values.

    Factorising first keeps the text lookups to the few distinct values, which matters
    for millions of rows of Arrow-backed text. ``factorized``: ``pd.factorize(values)``
    when already at hand (several label lists, one factorisation).
    """
    codes, uniques = pd.factorize(values) if factorized is None else factorized
    pos = pd.Index(list(labels), dtype="object").get_indexer(np.asarray(uniques, dtype=object))
    return np.append(pos, -1)[codes]  # code -1 (missing) picks the appended -1


def _factorize_sorted(values: pd.Series):
    """``pd.factorize(values, sort=True)``, in one pass when the text is already sorted.

    Exported histories usually come ordered by deal: then the codes just count the
    changes of value, and hashing millions of ids is skipped. Otherwise (or for text
    that is not Arrow-backed, or has missing values) it is ``pd.factorize``.
    """
    if _is_arrow_text(values) and len(values) > 1:
        arr = pa.array(values.array)
        if arr.null_count == 0 and pc.all(pc.greater_equal(arr[1:], arr[:-1])).as_py():
            change = np.asarray(pc.not_equal(arr[1:], arr[:-1]), dtype=bool)
            codes = np.concatenate([[0], np.cumsum(change)]).astype(np.intp)
            firsts = np.concatenate([[0], np.flatnonzero(change) + 1])
            return codes, pd.Index(values.array.take(firsts))
    return pd.factorize(values, sort=True)


def _sort_order(deal: np.ndarray, entered: np.ndarray, stage: np.ndarray):
    """``np.lexsort((stage, entered, deal))`` and whether that is the identity.

    The sort is skipped when the rows already come in that order (as exports usually do).
    """
    if len(deal) > 1:
        d, e, s = np.diff(deal), np.diff(entered.view(np.int64)), np.diff(stage)
        if not np.isnat(entered).any() and np.all(
            (d > 0) | ((d == 0) & ((e > 0) | ((e == 0) & (s >= 0))))
        ):
            return np.arange(len(deal)), True
    else:
        return np.arange(len(deal)), True
    return np.lexsort((stage, entered, deal)), False


@memoized(copy=False)
def _history_index(ds: Dataset) -> dict:
    """The dated stage history sorted by deal, time and stage order, as integer arrays.

    ``deal`` (codes into ``deal_names``, sorted), ``row`` (the deal's row in
    ``ds.opportunities``, -1 when absent), ``order`` (each row's position in
    ``stage_text``, the history's stage column as filtered, unsorted: take only the rows
    needed), ``stage_open`` (index into ``ds.stages.open``, -1 for other stages), ``entered``
    (datetime64), ``close`` (datetime64 or None without the column), ``first`` / ``last``
    (whether a row is its deal's first / last), ``as_table`` (no row was dropped or
    moved: the arrays follow ``ds.stage_history`` row by row). Shared by time in stage,
    stage conversion, pushed deals and the pipeline flow.
    """
    hist = _require_history(ds, "The stage history")
    deal, deal_names = _factorize_sorted(hist["opportunity_id"])
    stages = pd.factorize(hist["stage"])  # once for both label lists
    stage_order = _code_of(hist["stage"], ds.stages.order, factorized=stages)
    stage_order = np.where(stage_order < 0, len(ds.stages.order), stage_order)
    entered = hist["entered_at"].to_numpy("datetime64[ns]")
    order, in_order = _sort_order(deal, entered, stage_order)

    def _sorted(values: np.ndarray) -> np.ndarray:
        return values if in_order else values[order]

    deal = _sorted(deal)
    opp_row = pd.Index(ds.opportunities["opportunity_id"]).get_indexer(deal_names)
    close = _sorted(hist["close_date"].to_numpy("datetime64[ns]")) if "close_date" in hist else None
    same_next = np.append(deal[1:] == deal[:-1], False)
    return {
        "deal": deal,
        "deal_names": deal_names,
        "row": opp_row[deal],
        "order": order,
        "stage_text": hist["stage"],
        "stage_open": _sorted(_code_of(hist["stage"], ds.stages.open, factorized=stages)),
        "entered": _sorted(entered),
        "close": close,
        "first": np.insert(~same_next[:-1], 0, True) if len(deal) else same_next,
        "last": ~same_next,
        "id_dtype": hist["opportunity_id"].dtype,
        # rows are those of ds.stage_history, in its order: `row` is then per table row
        "as_table": in_order and len(hist) == len(ds.stage_history),
    }


def _no_closed(opps) -> None:
    if not opps["status"].isin([schema.WON, schema.LOST]).any():
        raise InsufficientDataError(
            "no deal is closed (won or lost) up to as_of; trends need closed deals — "
            "choose a later as_of or a wider filter"
        )


# --------------------------------------------------------------------------- windows


def compute_review_windows(*, as_of, period: str = "quarter", comparison: str = "previous"):
    """The review window and its comparison window.

    The **current** window is the last complete calendar period ending on or before
    ``as_of`` (as_of 2025-12-31 with quarters gives 2025Q4; as_of 2025-11-15 gives
    2025Q3). The **comparison** window is the period before it (``"previous"``) or the
    same period one year earlier (``"year_ago"``).

    Parameters
    ----------
    as_of : str, date or Timestamp
    period : {"month", "quarter", "year"}, default "quarter"
    comparison : {"previous", "year_ago"}, default "previous"

    Returns
    -------
    DataFrame
        Two rows (``current``, ``comparison``): ``window, label, start, end`` (inclusive
        dates).

    Raises
    ------
    ValueError
        When ``period`` or ``comparison`` is not an allowed value.

    Examples
    --------
    >>> compute_review_windows(as_of="2025-12-31")["label"].tolist()
    ['2025Q4', '2025Q3']
    """
    w = _windows(to_timestamp(as_of), period, comparison)
    return pd.DataFrame(
        {
            "window": ["current", "comparison"],
            "label": [str(w["current"]), str(w["comparison"])],
            "start": [w["cur_start"], w["cmp_start"]],
            "end": [w["cur_end"], w["cmp_end"]],
        }
    )
