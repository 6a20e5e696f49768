"""The review window against the comparison window: headline metrics and segments."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as st

from .. import schema
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..stats import benjamini_hochberg, proportion_diff_interval
from ._common import (
    _Z95,
    _cycle_days,
    _segments,
    _two_prop_p,
    _welch,
    _window_closed,
    _wins_by,
)

__all__ = ["compute_period_comparison", "compute_segment_changes"]


@memoized()
def compute_period_comparison(
    ds: Dataset, *, as_of, period: str = "quarter", comparison: str = "previous"
) -> pd.DataFrame:
    """Headline metrics of the current window against the comparison window, with intervals.

    - **win rate** (won / closed): difference with a 95 % Newcombe interval; p from the
      two-proportion z test.
    - **deals created**, **deals won**: difference in counts; interval ±1.96·√(n0 + n1)
      (Poisson); p from the conditional binomial test given the windows' lengths.
    - **average won deal**, **mean sales cycle (days)**: Welch interval and t test.
    - **won revenue**: difference of sums; interval from the compound-Poisson variance
      ``Σ amount²`` of each window.

    Returns
    -------
    DataFrame
        ``metric, before, now, change, ci_low, ci_high, n_before, n_now, p_value``;
        ``attrs`` hold the window labels.

    Raises
    ------
    InsufficientDataError
        When neither window has a closed deal.
    ValueError
        For a bad ``period`` or ``comparison``.
    """
    ds, w, frames = _window_closed(ds, as_of, period, comparison)
    opps = ds.opportunities
    if all(f.empty for f in frames.values()):
        raise InsufficientDataError(
            f"no deal closed in {w['comparison']} or {w['current']}; pick another as_of or period"
        )
    won = {k: f[f["status"].eq(schema.WON)] for k, f in frames.items()}
    created = {
        k: int(opps["created_date"].between(w[f"{k}_start"], w[f"{k}_end"]).sum())
        for k in ("cmp", "cur")
    }
    days = {k: (w[f"{k}_end"] - w[f"{k}_start"]).days + 1 for k in ("cmp", "cur")}
    rows = []
    k0, n0, k1, n1 = len(won["cmp"]), len(frames["cmp"]), len(won["cur"]), len(frames["cur"])
    low, high = proportion_diff_interval(k0, n0, k1, n1)
    wr0, wr1 = (k0 / n0 if n0 else np.nan), (k1 / n1 if n1 else np.nan)
    rows.append(
        ("win rate", wr0, wr1, wr1 - wr0, low, high, n0, n1, float(_two_prop_p(k0, n0, k1, n1)))
    )
    for name, c0, c1 in (
        ("deals created", created["cmp"], created["cur"]),
        ("deals won", k0, k1),
    ):
        half = _Z95 * np.sqrt(c0 + c1)
        share = days["cur"] / (days["cur"] + days["cmp"])
        p = st.binomtest(c1, c0 + c1, share).pvalue if c0 + c1 else np.nan
        rows.append((name, c0, c1, c1 - c0, c1 - c0 - half, c1 - c0 + half, c0, c1, p))
    for name, values in (
        ("average won deal", {k: won[k]["amount"].to_numpy(float) for k in won}),
        ("mean sales cycle (days)", {k: _cycle_days(won[k]).to_numpy(float) for k in won}),
    ):
        d, lo_, hi_, p = _welch(values["cmp"], values["cur"])
        a, b = values["cmp"][~np.isnan(values["cmp"])], values["cur"][~np.isnan(values["cur"])]
        rows.append(
            (
                name,
                a.mean() if len(a) else np.nan,
                b.mean() if len(b) else np.nan,
                d,
                lo_,
                hi_,
                len(a),
                len(b),
                p,
            )
        )
    amt = {k: won[k]["amount"].dropna().to_numpy(float) for k in won}
    s0, s1 = amt["cmp"].sum(), amt["cur"].sum()
    half = _Z95 * np.sqrt((amt["cmp"] ** 2).sum() + (amt["cur"] ** 2).sum())
    z = (s1 - s0) / half * _Z95 if half > 0 else np.nan
    rows.append(
        (
            "won revenue",
            s0,
            s1,
            s1 - s0,
            s1 - s0 - half,
            s1 - s0 + half,
            len(amt["cmp"]),
            len(amt["cur"]),
            float(2 * st.norm.sf(abs(z))) if half > 0 else np.nan,
        )
    )
    out = pd.DataFrame(
        rows,
        columns=["metric", "before", "now", "change", "ci_low", "ci_high", "n_before", "n_now"]
        + ["p_value"],
    )
    out[["before", "now", "change"]] = out[["before", "now", "change"]].astype("float64")
    out.attrs.update(current=str(w["current"]), comparison=str(w["comparison"]))
    return out


@memoized()
def compute_segment_changes(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    comparison: str = "previous",
    by=("product", "team", "source"),
    fdr: float = 0.1,
    min_closed: int = 5,
) -> pd.DataFrame:
    """Win-rate change of every segment between the windows, controlled for multiple testing.

    For each value of each ``by`` column with at least ``min_closed`` closed deals in both
    windows: win rate before and now, the difference with a 95 % Newcombe interval, the
    two-proportion z-test p-value and its Benjamini–Hochberg q-value over all segments
    tested. ``significant`` = ``q_value <= fdr`` (expected share of false alarms among
    flagged segments at most ``fdr``). Note: the per-row intervals are not adjusted.

    Returns
    -------
    DataFrame
        ``segment_column, segment, won_before, closed_before, won_now, closed_now,
        win_rate_before, win_rate_now, change, ci_low, ci_high, p_value, q_value,
        significant``, by ascending p-value.

    Raises
    ------
    InsufficientDataError
        When no segment column is usable or no segment has enough closed deals.
    """
    ds, w, frames = _window_closed(ds, as_of, period, comparison)
    cols = _segments(ds.opportunities, by)
    parts = []
    for col in cols:
        g = _wins_by(frames, col)
        t = g["cmp"].join(g["cur"], how="inner", suffixes=("_before", "_now"))
        t = t.reset_index().rename(columns={col: "segment"})
        t.insert(0, "segment_column", col)
        parts.append(t)
    if not parts:
        raise InsufficientDataError("no segment column to compare")
    t = pd.concat(parts, ignore_index=True)
    t = t[(t["n_before"] >= min_closed) & (t["n_now"] >= min_closed)]
    if t.empty:
        raise InsufficientDataError(
            f"no segment has {min_closed} closed deals in both {w['comparison']} and "
            f"{w['current']}; use a longer period"
        )
    out = pd.DataFrame(
        {
            "segment_column": t["segment_column"].astype("str"),
            "segment": t["segment"].astype("str"),
            "won_before": t["won_before"].astype("int64"),
            "closed_before": t["n_before"].astype("int64"),
            "won_now": t["won_now"].astype("int64"),
            "closed_now": t["n_now"].astype("int64"),
        }
    )
    out["win_rate_before"] = out["won_before"] / out["closed_before"]
    out["win_rate_now"] = out["won_now"] / out["closed_now"]
    out["change"] = out["win_rate_now"] - out["win_rate_before"]
    low, high = proportion_diff_interval(
        out["won_before"], out["closed_before"], out["won_now"], out["closed_now"]
    )
    out["ci_low"], out["ci_high"] = low, high
    out["p_value"] = _two_prop_p(
        out["won_before"], out["closed_before"], out["won_now"], out["closed_now"]
    )
    out["q_value"] = benjamini_hochberg(out["p_value"])
    out["significant"] = out["q_value"] <= fdr
    out.attrs.update(current=str(w["current"]), comparison=str(w["comparison"]))
    return out.sort_values("p_value", ignore_index=True)
