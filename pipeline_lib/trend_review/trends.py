"""Per-period counts and the trend table (win rate, cycle, deal size, volume)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema
from ..dataset import Dataset
from ..memo import memoized
from ..parsing import _is_arrow_text
from ..stats import wilson_interval
from ._common import PERIODS, _check_choice, _closed, _cycle_days, _no_closed, _segments, _snap

__all__ = ["compute_trends"]


@memoized(copy=False)
def _won_deals(opps: pd.DataFrame, period: str, basis: str = "close") -> pd.DataFrame:
    """Won deals with their period, cycle days and amount."""
    won = opps["status"].eq(schema.WON).to_numpy(bool, na_value=False)
    keep = won & opps["close_date"].notna().to_numpy()
    won = opps.take(np.flatnonzero(keep))  # one take of the wide table, not two
    date = won["close_date"] if basis == "close" else won["created_date"]
    return won.assign(
        period=date.dt.to_period(PERIODS[period]), cycle=_cycle_days(won), amount=won["amount"]
    )


@memoized(copy=False)
def _period_frame(
    opps: pd.DataFrame, ts: pd.Timestamp, period: str, by=(), *, basis: str = "close"
) -> pd.DataFrame:
    """Per period (and segment): counts, sums and squares for every trend metric."""
    freq = PERIODS[period]
    by = list(by)
    opps = opps[[*by, "status", "created_date", "close_date", "amount"]]  # lean filters
    # group Arrow-backed text segments by their sorted codes (missing: NaN, dropped as
    # by groupby) and put the values back at the end: the same groups in the same
    # order, without hashing the text once per grouping
    coded = {c: pd.factorize(opps[c], sort=True) for c in by if _is_arrow_text(opps[c])}
    if coded:
        opps = opps.assign(
            **{c: np.where(codes >= 0, codes, np.nan) for c, (codes, _) in coded.items()}
        )
    created_p = opps["created_date"].dt.to_period(freq)
    closed = _closed(opps)
    close_p = (closed["close_date"] if basis == "close" else closed["created_date"]).dt.to_period(
        freq
    )
    won = closed[closed["status"].eq(schema.WON)]
    won_p = close_p[won.index]
    cyc = _cycle_days(won)
    amt = won["amount"]
    keys = [*by, "period"]
    parts = [
        opps[by].assign(period=created_p).groupby(keys, dropna=True).size().rename("created"),
        closed[by].assign(period=close_p).groupby(keys).size().rename("closed"),
        won[by].assign(period=won_p).groupby(keys).size().rename("won"),
    ]
    for name, values in (("cycle", cyc), ("amount", amt)):
        f = won[by].assign(period=won_p, v=values, v2=values**2)
        f = f[f["v"].notna()]
        g = f.groupby(keys)
        parts += [
            g.size().rename(f"n_{name}"),
            g["v"].sum().rename(f"sum_{name}"),
            g["v2"].sum().rename(f"ss_{name}"),
            g["v"].median().rename(f"median_{name}"),
        ]
    agg = pd.concat(parts, axis=1)
    if coded and isinstance(agg.index, pd.MultiIndex):
        levels = [
            coded[c][1].take(level.astype("int64")) if c in coded else level
            for c, level in zip(keys, agg.index.levels, strict=True)
        ]
        agg.index = agg.index.set_levels(levels)
    first = min(x for x in (created_p.min(), close_p.min()) if not pd.isna(x))
    periods = pd.period_range(first, pd.Period(ts, freq), freq=freq)
    if by:
        segs = agg.reset_index()[by].drop_duplicates()
        full = segs.merge(pd.DataFrame({"period": periods}), how="cross")
        agg = agg.reindex(pd.MultiIndex.from_frame(full))
    else:
        agg = agg.reindex(pd.Index(periods, name="period"))
    count_cols = ["created", "closed", "won", "n_cycle", "n_amount"]
    agg[count_cols] = agg[count_cols].fillna(0).astype("int64")
    agg = agg.fillna({"sum_cycle": 0.0, "ss_cycle": 0.0, "sum_amount": 0.0, "ss_amount": 0.0})
    agg = agg.reset_index()
    agg["lost"] = agg["closed"] - agg["won"]
    agg["period_start"] = agg["period"].dt.start_time
    last_day = agg["period"].dt.end_time.dt.normalize()
    agg["days"] = (last_day - agg["period_start"]).dt.days + 1
    agg["complete"] = last_day <= ts
    return agg


@memoized()
def compute_trends(ds: Dataset, *, as_of, period: str = "quarter", by=None) -> pd.DataFrame:
    """Win rate, cycle, deal size and volume per period (optionally per segment).

    Per period: ``created`` = deals created in it (volume); ``won``/``lost``/``closed`` and
    the **win rate** = won / closed count deals by their close date, with a 95 % Wilson
    interval; **won_amount** = sum of won amounts; **avg_won_amount** = mean amount of won
    deals with an amount; **median_cycle_days** / **mean_cycle_days** = created → close
    days of won deals. ``complete`` is False for a period that ends after ``as_of``.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    period : {"month", "quarter", "year"}, default "quarter"
    by : str or sequence of str, optional
        Segment columns (absent or empty columns are skipped).

    Returns
    -------
    DataFrame
        ``[by...], period, period_start, complete, created, closed, won, lost, win_rate,
        ci_low, ci_high, won_amount, avg_won_amount, median_cycle_days, mean_cycle_days``.

    Raises
    ------
    InsufficientDataError
        When no deal is closed.
    ValueError
        For a bad ``period``.

    Examples
    --------
    >>> compute_trends(ds, as_of="2025-12-31", period="quarter")  # doctest: +SKIP
    """
    _check_choice("period", period, PERIODS)
    ds, ts = _snap(ds, as_of)
    opps = ds.opportunities
    _no_closed(opps)
    by = _segments(opps, by)
    f = _period_frame(opps, ts, period, by)
    low, high = wilson_interval(f["won"], f["closed"])
    out = f[[*by, "period_start", "complete", "created", "closed", "won", "lost"]].copy()
    out.insert(len(by), "period", f["period"].astype("str"))
    out["win_rate"] = f["won"] / f["closed"].where(f["closed"] > 0)
    out["ci_low"], out["ci_high"] = low, high
    out["won_amount"] = f["sum_amount"]
    out["avg_won_amount"] = f["sum_amount"] / f["n_amount"].where(f["n_amount"] > 0)
    out["median_cycle_days"] = f["median_cycle"]
    out["mean_cycle_days"] = f["sum_cycle"] / f["n_cycle"].where(f["n_cycle"] > 0)
    return out
