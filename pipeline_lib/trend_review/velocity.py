"""Sales velocity per period and its exact split into four factors."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..dataset import Dataset
from ..errors import InsufficientDataError
from .trends import compute_trends

__all__ = ["compute_velocity", "compute_velocity_decomposition"]

#: Why a velocity factor is zero or missing, for the error message.
_ZERO_FACTOR = {
    "opportunities": "no deal was created",
    "win_rate": "no deal was won (the win rate is 0 or there is no closed deal)",
    "avg_won_amount": "no won deal has an amount",
    "cycle_days": "no won deal has a sales cycle",
}


def compute_velocity(ds: Dataset, *, as_of, period: str = "quarter") -> pd.DataFrame:
    """Sales velocity per period and its four factors.

    velocity = opportunities × win rate × average won deal ÷ cycle length, in money per
    day, where per period: **opportunities** = deals created; **win rate** = won / (won +
    lost) of deals closed; **average won deal** = mean amount of deals won; **cycle** =
    mean created → close days of deals won (all by close date except opportunities).

    Returns
    -------
    DataFrame
        ``period, period_start, complete, opportunities, win_rate, ci_low, ci_high,
        avg_won_amount, cycle_days, velocity, won, closed``.

    Raises
    ------
    InsufficientDataError
        When no deal is closed.
    ValueError
        For a bad ``period``.
    """
    t = compute_trends(ds, as_of=as_of, period=period)
    out = t[["period", "period_start", "complete"]].copy()
    out["opportunities"] = t["created"]
    out[["win_rate", "ci_low", "ci_high", "avg_won_amount"]] = t[
        ["win_rate", "ci_low", "ci_high", "avg_won_amount"]
    ]
    out["cycle_days"] = t["mean_cycle_days"]
    out["velocity"] = (
        out["opportunities"] * out["win_rate"] * out["avg_won_amount"] / out["cycle_days"]
    )
    out["won"], out["closed"] = t["won"], t["closed"]
    return out


def compute_velocity_decomposition(velocity: pd.DataFrame, *, current, previous) -> pd.DataFrame:
    """Split the change in velocity between two periods exactly into its four factors.

    With V = N·W·A/L, ``ln V1 - ln V0 = Δln N + Δln W + Δln A - Δln L``. Each factor's share
    of the change in money per day is ``Lm(V1, V0) × Δln factor`` (``-Δln L`` for the cycle),
    where ``Lm(a, b) = (a - b) / (ln a - ln b)`` is the logarithmic mean (``a`` when
    ``a == b``): the log-mean Divisia index, whose parts sum *exactly* to ``V1 - V0`` and
    treat both periods symmetrically (like a Shapley split of the log change).

    Parameters
    ----------
    velocity : DataFrame
        From :func:`compute_velocity`.
    current, previous : str
        Period labels (e.g. ``"2025Q4"``, ``"2025Q3"``).

    Returns
    -------
    DataFrame
        Rows ``opportunities, win rate, average won deal, cycle length, velocity``:
        ``factor, previous, current, log_change, contribution, share`` (``contribution`` in
        money per day; the ``velocity`` row holds the totals; ``share`` = contribution /
        change, missing when the change is 0).

    Raises
    ------
    InsufficientDataError
        When a period is missing or a factor is zero or missing in either period.

    Examples
    --------
    >>> v = pd.DataFrame({"period": ["A", "B"], "opportunities": [10, 20],
    ...                   "win_rate": [0.5, 0.5], "avg_won_amount": [100.0, 100.0],
    ...                   "cycle_days": [10.0, 10.0]})
    >>> v["velocity"] = v.opportunities * v.win_rate * v.avg_won_amount / v.cycle_days
    >>> d = compute_velocity_decomposition(v, current="B", previous="A")
    >>> d["contribution"].round(2).tolist()
    [50.0, 0.0, 0.0, 0.0, 50.0]
    """
    factors = [
        ("opportunities", "opportunities", 1),
        ("win rate", "win_rate", 1),
        ("average won deal", "avg_won_amount", 1),
        ("cycle length", "cycle_days", -1),
    ]
    rows = {}
    for label in (previous, current):
        hit = velocity[velocity["period"].astype("str") == str(label)]
        if hit.empty:
            span = (
                f"they cover {velocity['period'].iloc[0]} to {velocity['period'].iloc[-1]}"
                if len(velocity)
                else "there are none"
            )
            raise InsufficientDataError(
                f"sales velocity cannot be compared between {previous} and {current}: the "
                f"data have no deals in {label} ({span}); pick a later as_of or a shorter "
                "period"
            )
        rows[label] = hit.iloc[0]
    r0, r1 = rows[previous], rows[current]
    for _name, col, _sign in factors:
        for r, label in ((r0, previous), (r1, current)):
            if not (pd.notna(r[col]) and r[col] > 0):
                raise InsufficientDataError(
                    f"sales velocity cannot be compared between {previous} and {current}: "
                    f"{_ZERO_FACTOR[col]} in {label}. Every factor must be positive in both "
                    "periods (deals created, and deals won with an amount); pick another "
                    "period or as_of"
                )
    v0 = float(np.prod([r0[c] ** s for _, c, s in factors]))
    v1 = float(np.prod([r1[c] ** s for _, c, s in factors]))
    lm = v0 if np.isclose(v1, v0, rtol=1e-12, atol=0) else (v1 - v0) / (np.log(v1) - np.log(v0))
    out = []
    for name, col, sign in factors:
        dl = float(np.log(r1[col]) - np.log(r0[col]))
        out.append((name, float(r0[col]), float(r1[col]), dl, lm * sign * dl + 0.0))
    total = v1 - v0
    out.append(("velocity", v0, v1, float(np.log(v1) - np.log(v0)), total))
    frame = pd.DataFrame(
        out, columns=["factor", "previous", "current", "log_change", "contribution"]
    )
    frame["share"] = frame["contribution"] / total if total != 0 else np.nan
    frame.attrs.update(current=str(current), previous=str(previous))
    return frame
