"""What-if levers: revenue impact per product of small changes over a horizon.

The baseline of each product is its scorecard over the last period (:mod:`.scorecard`)
run at the same pace; the discount lever borrows the fitted discount effect
(:mod:`.discounts`) when the data shows one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._arrowtools import isin
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ._common import _need_column, _non_negative, _pct, _positive, _prepare
from .discounts import _deal_discounts, _discount_effect
from .scorecard import NONE_LABEL, _group_labels, _scorecard_core

__all__ = ["LEVERS", "compute_sensitivity"]

#: What-if levers of :func:`compute_sensitivity`, in display order.
LEVERS = ("win rate", "discount", "cycle", "leads")
#: Scenario label of each lever, given its size.
_SCENARIOS = {
    "win rate": "win rate +{:g} pts",
    "discount": "discount −{:g} %",
    "cycle": "cycle −{:g} days",
    "leads": "leads +{:g} %",
}
#: Columns of :func:`compute_sensitivity`, in order.
_COLUMNS = [
    "rank",
    "product",
    "lever",
    "scenario",
    "baseline_revenue",
    "scenario_revenue",
    "revenue_change",
    "change_pct",
    "arithmetic",
    "note",
]


def compute_sensitivity(
    data: Dataset,
    *,
    as_of,
    horizon_days: int = 365,
    period_days: int = 365,
    win_rate_pts: float = 5.0,
    discount_cut_pct: float = 10.0,
    cycle_days: float = 7.0,
    leads_pct: float = 10.0,
    discount_effect: bool = True,
) -> pd.DataFrame:
    """Revenue impact per product of small what-if changes over a horizon, ranked.

    The baseline of each product is its last ``period_days`` days (ending on ``as_of``)
    run at the same pace over the next ``horizon_days`` days. With ``P`` = period_days,
    ``H`` = horizon_days, and per product ``C`` = deals closed (won + lost) in the
    period, ``p`` = win rate, ``A`` = average won deal, ``W`` = won revenue in the
    period, ``d`` = revenue-weighted discount of won deals, ``c`` = median cycle of won
    deals (days):

    - **baseline** ``R = W * H / P`` (= closings over the horizon ``C*H/P`` x ``p`` x ``A``).
    - **win rate +x pts**: ``p' = min(p + x/100, 1)``; ``ΔR = (C*H/P) * (p' - p) * A``.
    - **discount -y %**: discounts ``y`` % smaller (relative: ``d' = d * (1 - y/100)``), so
      the average won deal becomes ``A' = A * (1 - d') / (1 - d)``; when
      ``discount_effect`` is on and :func:`compute_discount_effect` finds a significant
      slope ``b`` (win-rate change per unit of discount), the win rate moves too:
      ``p' = clip(p - b * (d - d'), 0, 1)``. ``ΔR = (C*H/P) * (p'*A' - p*A)``. Needs
      list prices.
    - **cycle -z days**: a cycle ``z`` days shorter pulls ``z`` days' worth of closings
      into the horizon once: ``ΔR = W / P * min(z, c)``.
    - **leads +n %**: opportunities grow with leads (constant yield), and only those
      whose cycle ends inside the horizon count: ``ΔR = R * n/100 * max(0, 1 - c/H)``.

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
    horizon_days : int, default 365
        How far ahead the revenue is counted.
    period_days : int, default 365
        History the baseline is taken from.
    win_rate_pts, discount_cut_pct, cycle_days, leads_pct : float
        Size of each lever (0 leaves the lever out): win rate + points, discount - % of
        itself, cycle - days, leads + %.
    discount_effect : bool, default True
        Let a smaller discount lower the win rate where the data shows discounts win
        deals (see above).

    Returns
    -------
    DataFrame
        One row per product and lever, ranked by ``revenue_change`` (largest first):
        ``rank, product, lever, scenario, baseline_revenue, scenario_revenue,
        revenue_change, change_pct, arithmetic, note``. ``arithmetic`` spells the
        computation with the product's numbers; ``note`` says why a lever could not be
        computed (no closed deals, no list price...). ``attrs["inputs"]`` holds the
        per-product inputs (``closed, won, win_rate, avg_won_deal, won_revenue, discount,
        median_cycle_days, discount_slope``).

    Raises
    ------
    InsufficientDataError
        When there is no product column or no deal closed in the period.
    ValueError
        For non-positive ``horizon_days``/``period_days`` or negative levers.

    Examples
    --------
    >>> compute_sensitivity(ds, as_of="2025-12-31", win_rate_pts=5).head()  # doctest: +SKIP
    """
    _positive(horizon_days, "horizon_days")
    _positive(period_days, "period_days")
    sizes = dict(zip(LEVERS, (win_rate_pts, discount_cut_pct, cycle_days, leads_pct), strict=True))
    for lever, name in zip(
        LEVERS, ("win_rate_pts", "discount_cut_pct", "cycle_days", "leads_pct"), strict=True
    ):
        _non_negative(sizes[lever], name)
    if discount_cut_pct > 100:
        raise ValueError(f"discount_cut_pct={discount_cut_pct!r} must be at most 100")
    ds, ts = _prepare(data, as_of)
    _need_column(ds, "product", "the what-if analysis per product")
    group = _group_labels(ds, ds.opportunities, "product")
    try:
        discounts = _deal_discounts(ds)
    except InsufficientDataError:
        discounts = None
    core = _scorecard_core(ds, ts, group, int(period_days), discounts)
    core = core.loc[core.index != NONE_LABEL]
    if (core["won"] + core["lost"]).sum() == 0:
        raise InsufficientDataError(
            f"no deal was won or lost in the {period_days} days before {ts.date()}; the "
            "what-if needs a closed history (use a longer period_days)"
        )
    slopes = pd.Series(dtype="float64")
    if discounts is not None and discount_effect:
        slopes = _discount_slopes(ds, ts)
    H, P = float(horizon_days), float(period_days)
    levers = [(lever, _SCENARIOS[lever].format(sizes[lever])) for lever in LEVERS]
    levers = [(lever, scenario) for lever, scenario in levers if sizes[lever] > 0]
    rows = []
    for product, r in core.iterrows():
        closed = int(r["won"] + r["lost"])
        R = r["won_revenue"] * H / P
        slope = slopes.get(product, 0.0) if len(slopes) else 0.0
        for lever, scenario in levers:
            delta, text, note = _lever_change(lever, sizes[lever], r, slope=slope, H=H, P=P)
            rows.append(
                {
                    "product": product,
                    "lever": lever,
                    "scenario": scenario,
                    "baseline_revenue": R if closed else np.nan,
                    "scenario_revenue": R + delta,
                    "revenue_change": delta,
                    "change_pct": delta / R if R > 0 else np.nan,
                    "arithmetic": text,
                    "note": note,
                }
            )
    if not rows:
        raise InsufficientDataError(
            "every what-if lever is 0: set at least one of win_rate_pts, discount_cut_pct, "
            "cycle_days, leads_pct"
        )
    out = pd.DataFrame(rows)
    out = out.sort_values(
        ["revenue_change", "product", "lever"],
        ascending=[False, True, True],
        na_position="last",
        kind="stable",
    ).reset_index(drop=True)
    out["rank"] = pd.array(np.arange(1, len(out) + 1), dtype="Int64")
    out.loc[out["revenue_change"].isna(), "rank"] = pd.NA
    for col in ("product", "lever", "scenario", "arithmetic", "note"):
        out[col] = out[col].astype("str")
    inputs = pd.DataFrame(
        {
            "closed": core["won"] + core["lost"],
            "won": core["won"],
            "win_rate": core["win_rate"],
            "avg_won_deal": core["avg_won_deal"],
            "won_revenue": core["won_revenue"],
            "discount": core["discount"],
            "median_cycle_days": core["median_cycle_days"],
            "discount_slope": slopes.reindex(core.index),
        }
    ).rename_axis("product")
    out = out[_COLUMNS]
    out.attrs["inputs"] = inputs.reset_index()
    return out


def _discount_slopes(ds: Dataset, ts) -> pd.Series:
    """Win-rate change per unit of discount per product (0 where not significant)."""
    try:
        eff = _discount_effect(ds, ts, history_days=None, min_deals=20)
    except InsufficientDataError:
        return pd.Series(dtype="float64")
    sig = isin(eff["verdict"], ["more discount, more wins", "more discount, fewer wins"])
    return eff.set_index("product")["slope_per_10pts"].where(sig, 0.0) * 10


def _lever_change(lever: str, size: float, r: pd.Series, *, slope, H: float, P: float):
    """``(revenue change, arithmetic, note)`` of one lever for one product's inputs ``r``."""
    closed = int(r["won"] + r["lost"])
    p, A, W = r["win_rate"], r["avg_won_deal"], r["won_revenue"]
    d, c = r["discount"], r["median_cycle_days"]
    if closed == 0:
        return np.nan, "", "no deal closed in the period"
    if r["won"] == 0 or pd.isna(A):
        return np.nan, "", "no won deal with an amount in the period"
    closings = closed * H / P
    if lever == "win rate":
        p2 = min(p + size / 100, 1.0)
        text = f"{closings:,.0f} closings × ({_pct(p, 1)} → {_pct(p2, 1)}) × {A:,.0f} avg won deal"
        return closings * (p2 - p) * A, text, ""
    if lever == "discount":
        if pd.isna(d):
            return np.nan, "", "no list price (or no won deal with a discount)"
        d2 = d * (1 - size / 100)
        A2 = A * (1 - d2) / (1 - d) if d < 1 else A
        b = float(slope)
        b = 0.0 if pd.isna(b) else b
        p2 = float(np.clip(p - b * (d - d2), 0, 1))
        effect = (
            f"win rate {_pct(p, 1)} → {_pct(p2, 1)} (discount effect {b / 10:+.1%} per 10 pts)"
            if b
            else f"win rate {_pct(p, 1)} unchanged (no clear discount effect)"
        )
        text = (
            f"{closings:,.0f} closings; discount {_pct(d, 1)} → {_pct(d2, 1)}: "
            f"avg won deal {A:,.0f} → {A2:,.0f}; {effect}"
        )
        return closings * (p2 * A2 - p * A), text, ""
    if pd.isna(c):  # cycle and leads
        return np.nan, "", "no cycle length (no won deal with dates)"
    if lever == "cycle":
        z = min(size, c)
        text = f"{W / P:,.0f} won revenue per day × {z:g} days pulled into the horizon"
        return W / P * z, text, ""
    R = W * H / P  # leads
    frac = max(0.0, 1 - c / H)
    text = (
        f"{R:,.0f} baseline × {size:g} % more deals × {frac:.0%} of "
        f"the horizon left after the {c:.0f}-day median cycle"
    )
    return R * size / 100 * frac, text, ""
