"""What worked: segments clearly better than the rest, and a Simpson's-paradox check."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from .. import schema
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..stats import benjamini_hochberg, proportion_diff_interval
from ._common import (
    _closed,
    _cycle_days,
    _segments,
    _snap,
    _two_prop_p,
    _welch,
    _window_closed,
    _wins_by,
)

__all__ = ["compute_what_worked", "compute_simpsons_check"]


def _segment_rows(closed: pd.DataFrame, group: tuple) -> list[tuple[str, np.ndarray]]:
    """``(label, row positions)`` per combination of values of ``group``, by label.

    Labels read ``source=Referral & team=SMB``; rows missing any of the columns are left
    out. Grouping runs on the columns' codes, so only one label per segment is built.
    """
    cols = list(group)
    valid = np.flatnonzero(closed[cols].notna().all(axis=1).to_numpy())
    if not len(valid):
        return []
    sub = closed[cols].iloc[valid]
    out = []
    for key, pos in sub.groupby(cols, sort=False).indices.items():
        values = key if isinstance(key, tuple) else (key,)
        label = " & ".join(
            f"{c}={pd.Series([v]).astype('str').iloc[0]}" for c, v in zip(cols, values, strict=True)
        )
        out.append((label, valid[pos]))
    return sorted(out, key=lambda item: item[0])


@memoized()
def compute_what_worked(
    ds: Dataset,
    *,
    as_of,
    by=("source", "product", "team"),
    depth: int = 2,
    window_days: int = 730,
    min_deals: int = 30,
    fdr: float = 0.1,
) -> pd.DataFrame:
    """Segments with a clearly better win rate or shorter cycle than the rest.

    Segments are every value of each ``by`` column and (``depth=2``) every pair of values
    of two columns (e.g. ``source=Referral & team=SMB``), among deals closed in the
    ``window_days`` days ending on ``as_of``; each is compared with all other closed deals.

    - **win rate**: ``difference`` = segment − rest in points (as a fraction) with a 95 %
      Newcombe interval, two-proportion z test; effect size Cohen's *h*
      (2·asin√p₁ − 2·asin√p₂; 0.2 small, 0.5 medium). Needs ``min_deals`` closed deals.
    - **cycle**: days from creation to close of won deals, compared on the log scale:
      ``value``/``rest_value`` are geometric means in days, ``difference`` the relative
      change (segment / rest − 1) with a 95 % Welch interval; effect size Cohen's *d* on
      log days (negative = shorter). Needs ``min_deals // 2`` won deals.

    ``q_value``: Benjamini–Hochberg over every test in the table. ``better``: ``q_value <=
    fdr`` and the segment is better (higher win rate / shorter cycle).

    Returns
    -------
    DataFrame
        ``metric, segment, n, n_rest, value, rest_value, difference, ci_low, ci_high,
        effect_size, p_value, q_value, better``; better rows first, by effect size.

    Raises
    ------
    InsufficientDataError
        When no segment column is usable or no deal closed in the window.
    ValueError
        For ``depth`` not 1 or 2 or a non-positive ``window_days``.
    """
    if depth not in (1, 2):
        raise ValueError(f"depth={depth!r} must be 1 or 2")
    if window_days <= 0:
        raise ValueError(f"window_days={window_days!r} must be a positive number of days")
    ds, ts = _snap(ds, as_of)
    opps = ds.opportunities
    cols = _segments(opps, by)
    used = list(dict.fromkeys([*cols, "status", "created_date", "close_date"]))
    closed = _closed(opps[used], ts - pd.Timedelta(days=window_days - 1), ts)  # lean take
    if closed.empty:
        raise InsufficientDataError(f"no deal closed in the {window_days} days to {ts.date()}")
    won = closed["status"].eq(schema.WON).to_numpy()
    logc = np.log(np.maximum(_cycle_days(closed).to_numpy(float), 0.5))
    logc = np.where(won, logc, np.nan)
    # counts of the rest by subtraction; cycles of the won deals that have one, in order
    n_all, k_all = len(closed), int(won.sum())
    has_cycle = ~np.isnan(logc)
    cycles = logc[has_cycle]
    at_cycle = np.cumsum(has_cycle) - 1  # a closed deal's position in `cycles`
    groups = [(c,) for c in cols] + (list(combinations(cols, 2)) if depth == 2 else [])
    rows = []
    for group in groups:
        for seg, idx in _segment_rows(closed, group):
            n1 = len(idx)  # idx: distinct positions, ascending
            n2 = n_all - n1
            if n1 >= min_deals and n2 >= min_deals:
                k1 = int(won[idx].sum())
                k2 = k_all - k1
                p1, p2 = k1 / n1, k2 / n2
                lo, hi = proportion_diff_interval(k2, n2, k1, n1)
                rows.append(
                    {
                        "metric": "win rate",
                        "segment": seg,
                        "n": n1,
                        "n_rest": n2,
                        "value": p1,
                        "rest_value": p2,
                        "difference": p1 - p2,
                        "ci_low": lo,
                        "ci_high": hi,
                        "effect_size": 2 * np.arcsin(np.sqrt(p1)) - 2 * np.arcsin(np.sqrt(p2)),
                        "p_value": float(_two_prop_p(k2, n2, k1, n1)),
                    }
                )
            in_seg = at_cycle[idx[has_cycle[idx]]]
            a, b = cycles[in_seg], np.delete(cycles, in_seg)  # both in deal order
            if len(a) >= max(min_deals // 2, 2) and len(b) >= max(min_deals // 2, 2):
                d, lo, hi, p = _welch(b, a)
                pooled = np.sqrt(
                    ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1))
                    / (len(a) + len(b) - 2)
                )
                rows.append(
                    {
                        "metric": "cycle",
                        "segment": seg,
                        "n": len(a),
                        "n_rest": len(b),
                        "value": float(np.exp(a.mean())),
                        "rest_value": float(np.exp(b.mean())),
                        "difference": float(np.expm1(d)),
                        "ci_low": float(np.expm1(lo)),
                        "ci_high": float(np.expm1(hi)),
                        "effect_size": d / pooled if pooled > 0 else np.nan,
                        "p_value": p,
                    }
                )
    if not rows:
        raise InsufficientDataError(
            f"no segment has {min_deals} closed deals in the {window_days} days to "
            f"{ts.date()}; lower min_deals or widen the window"
        )
    out = pd.DataFrame(rows)
    out["q_value"] = benjamini_hochberg(out["p_value"])
    good = np.where(out["metric"].eq("win rate"), out["difference"] > 0, out["difference"] < 0)
    out["better"] = (out["q_value"] <= fdr) & good
    out["segment"] = out["segment"].astype("str")
    out["metric"] = out["metric"].astype("str")
    order = out.assign(_abs=-out["effect_size"].abs(), _b=~out["better"])
    return out.loc[order.sort_values(["_b", "_abs"]).index].reset_index(drop=True)


@memoized()
def compute_simpsons_check(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    comparison: str = "previous",
    by=("product", "team", "source"),
) -> pd.DataFrame:
    """Does the aggregate win-rate change hold within segments? (Simpson's paradox check)

    The aggregate change between the windows, ``R1 - R0``, splits exactly into a
    **within-segment** part ``Σ_s w̄_s (r1_s - r0_s)`` and a **mix** part ``Σ_s r̄_s (w1_s
    - w0_s)`` (``w`` = segment's share of closed deals, ``r`` = its win rate; bars are the
    two windows' averages; a segment absent from one window keeps its other rate). The
    trend **reverses** within segments when the aggregate change and the within-segment
    change have opposite signs — the aggregate movement is then due to the mix of deals,
    not to how each segment fares.

    Returns
    -------
    DataFrame
        One row per ``by`` column: ``segment_column, aggregate_before, aggregate_now,
        aggregate_change, within_change, mix_change, segments_up, segments_down,
        reversal``; ``aggregate_change == within_change + mix_change`` exactly.

    Raises
    ------
    InsufficientDataError
        When either window has no closed deal or no segment column is usable.
    """
    ds, w, frames = _window_closed(ds, as_of, period, comparison)
    cols = _segments(ds.opportunities, by)
    if any(f.empty for f in frames.values()):
        raise InsufficientDataError(
            f"the Simpson's-paradox check needs closed deals in both {w['comparison']} and "
            f"{w['current']}"
        )
    rows = []
    for col in cols:
        stats = _wins_by(frames, col, missing="(missing)")
        t = stats["cmp"].join(stats["cur"], how="outer", suffixes=("0", "1")).fillna(0)
        w0, w1 = t["n0"] / t["n0"].sum(), t["n1"] / t["n1"].sum()
        r0 = (t["won0"] / t["n0"]).where(t["n0"] > 0)
        r1 = (t["won1"] / t["n1"]).where(t["n1"] > 0)
        r0, r1 = r0.fillna(r1), r1.fillna(r0)
        agg0 = t["won0"].sum() / t["n0"].sum()
        agg1 = t["won1"].sum() / t["n1"].sum()
        within = float((((w0 + w1) / 2) * (r1 - r0)).sum())
        mix = float((((r0 + r1) / 2) * (w1 - w0)).sum())
        both = (t["n0"] > 0) & (t["n1"] > 0)
        change = agg1 - agg0
        rows.append(
            {
                "segment_column": col,
                "aggregate_before": agg0,
                "aggregate_now": agg1,
                "aggregate_change": change,
                "within_change": within,
                "mix_change": mix,
                "segments_up": int(((r1 > r0) & both).sum()),
                "segments_down": int(((r1 < r0) & both).sum()),
                "reversal": bool(change * within < 0),
            }
        )
    out = pd.DataFrame(rows)
    out.attrs.update(current=str(w["current"]), comparison=str(w["comparison"]))
    return out
