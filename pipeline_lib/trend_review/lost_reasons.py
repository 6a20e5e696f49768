"""Lost reasons per period and which of them grow or shrink (Cochran–Armitage)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from .. import schema
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..stats import benjamini_hochberg, wilson_interval
from ._common import PERIODS, _check_choice, _snap

__all__ = ["compute_lost_reasons", "compute_lost_reason_trends"]


@memoized()
def compute_lost_reasons(ds: Dataset, *, as_of, period: str = "quarter") -> pd.DataFrame:
    """Lost deals per period and reason, with each reason's share of the period's losses.

    Lost deals count in the period of their close date; a lost deal with no reason is
    counted as ``"(none given)"``. Share = lost with the reason / lost in the period, with
    a 95 % Wilson interval.

    Returns
    -------
    DataFrame
        ``period, period_start, reason, lost, period_lost, share, ci_low, ci_high`` (every
        reason in every period, zeros included).

    Raises
    ------
    InsufficientDataError
        When the opportunities have no ``lost_reason`` values or no lost deal.
    """
    _check_choice("period", period, PERIODS)
    ds, ts = _snap(ds, as_of)
    opps = ds.opportunities
    lost = opps[opps["status"].eq(schema.LOST) & opps["close_date"].notna()]
    if lost.empty:
        raise InsufficientDataError(
            f"no deal was lost up to {ts.date()}, so there are no lost reasons to follow over time"
        )
    if "lost_reason" not in opps or lost["lost_reason"].isna().all():
        raise InsufficientDataError(
            "lost reasons over time need lost deals with a `lost_reason`; map the loss-reason "
            "column of the CRM export in the source config"
        )
    freq = PERIODS[period]
    p = lost["close_date"].dt.to_period(freq)
    reason = lost["lost_reason"].fillna("(none given)")
    counts = pd.crosstab(p, reason)
    periods = pd.period_range(counts.index.min(), pd.Period(ts, freq), freq=freq)
    counts = counts.reindex(periods, fill_value=0)
    counts.index.name = "period"
    long = counts.stack().rename("lost").reset_index()
    long.columns = ["period", "reason", "lost"]
    long["period_lost"] = long.groupby("period")["lost"].transform("sum")
    long["share"] = long["lost"] / long["period_lost"].where(long["period_lost"] > 0)
    low, high = wilson_interval(long["lost"], long["period_lost"])
    long["ci_low"], long["ci_high"] = low, high
    long.insert(1, "period_start", long["period"].map(lambda x: x.start_time))
    long["period"] = long["period"].astype("str")
    long["reason"] = long["reason"].astype("str")
    long["lost"] = long["lost"].astype("int64")
    long["period_lost"] = long["period_lost"].astype("int64")
    return long


@memoized()
def compute_lost_reason_trends(
    ds: Dataset, *, as_of, period: str = "quarter", fdr: float = 0.1
) -> pd.DataFrame:
    """Which lost reasons grow or shrink: a Cochran–Armitage trend test per reason.

    For each reason, its share of lost deals per period (:func:`compute_lost_reasons`)
    is tested for a linear trend over time (Cochran–Armitage, periods scored in years
    since the first). ``slope_per_year`` is the weighted least-squares change in share
    per year (points as a fraction); ``q_value`` is Benjamini–Hochberg over reasons and
    ``significant`` = ``q_value <= fdr``. ``share_first_year``/``share_last_year`` compare
    the first and last 12 months of losses.

    Returns
    -------
    DataFrame
        ``reason, lost, share, share_first_year, share_last_year, slope_per_year, z,
        p_value, q_value, significant``, by ascending p-value.

    Raises
    ------
    InsufficientDataError
        As :func:`compute_lost_reasons`, or with fewer than 3 periods of losses.
    """
    long = compute_lost_reasons(ds, as_of=as_of, period=period)
    wide_k = long.pivot(index="period_start", columns="reason", values="lost")
    n = wide_k.sum(axis=1).to_numpy(float)
    keep = n > 0
    wide_k, n = wide_k[keep], n[keep]
    if len(n) < 3:
        raise InsufficientDataError("lost-reason trends need losses in at least 3 periods")
    t = ((wide_k.index - wide_k.index[0]).days / 365.25).to_numpy(float)
    tbar = (n * t).sum() / n.sum()
    sxx = (n * (t - tbar) ** 2).sum()
    first_end = wide_k.index[0] + pd.DateOffset(years=1)
    last_start = wide_k.index[-1] - pd.DateOffset(years=1) + pd.DateOffset(days=1)
    first = wide_k.index < first_end
    last = wide_k.index >= last_start
    rows = []
    for reason in wide_k.columns:
        k = wide_k[reason].to_numpy(float)
        pbar = k.sum() / n.sum()
        tstat = (t * (k - n * pbar)).sum()
        var = pbar * (1 - pbar) * sxx
        z = tstat / np.sqrt(var) if var > 0 else 0.0
        rows.append(
            {
                "reason": reason,
                "lost": int(k.sum()),
                "share": pbar,
                "share_first_year": k[first].sum() / n[first].sum(),
                "share_last_year": k[last].sum() / n[last].sum(),
                "slope_per_year": tstat / sxx if sxx > 0 else np.nan,
                "z": z,
                "p_value": float(2 * st.norm.sf(abs(z))),
            }
        )
    out = pd.DataFrame(rows)
    out["q_value"] = benjamini_hochberg(out["p_value"])
    out["significant"] = out["q_value"] <= fdr
    out["reason"] = out["reason"].astype("str")
    return out.sort_values("p_value", ignore_index=True)
