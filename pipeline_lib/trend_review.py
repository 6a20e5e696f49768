"""Trend review: problems, bottlenecks and trends in the sales process — and what worked.

Every function takes a :class:`~pipeline_lib.dataset.Dataset` and an explicit ``as_of``
date; the data are seen as known at the end of ``as_of`` (the Dataset is snapshotted
unless it already is). Nothing here reads files or draws.

Vocabulary used throughout
--------------------------
- **period**: ``"month"``, ``"quarter"`` or ``"year"`` (calendar periods).
- **review window** (:func:`compute_review_windows`): the last *complete* period ending on
  or before ``as_of`` ("current"), and the period it is compared with ("comparison"):
  the one before (``comparison="previous"``) or the same period a year earlier
  (``comparison="year_ago"``).
- **win rate** of a set of deals: won / (won + lost); open deals are not counted. Deals
  belong to the period of their ``close_date`` unless said otherwise.
- **sales cycle**: days from ``created_date`` to ``close_date`` of a won deal (deals with
  a missing or negative cycle are skipped).
- Analyses of stages (conversion, time in stage, flow, pushes, stalls) need the
  ``stage_history`` table and raise :class:`~pipeline_lib.errors.InsufficientDataError`
  without it; everything else works from the opportunities alone.
"""

from __future__ import annotations

import contextlib
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import optimize, special
from scipy import stats as st

from . import schema
from .dataset import Dataset, to_timestamp
from .errors import InsufficientDataError
from .stats import benjamini_hochberg, km_quantiles, proportion_diff_interval, wilson_interval

__all__ = [
    "PERIODS",
    "COMPARISONS",
    "STAGE_HISTORY_ANALYSES",
    "compute_review_windows",
    "compute_stage_conversion",
    "compute_stage_durations",
    "compute_bottlenecks",
    "compute_pipeline_flow",
    "compute_pushed_deals",
    "compute_push_rate",
    "compute_stalled_deals",
    "compute_velocity",
    "compute_velocity_decomposition",
    "compute_trends",
    "compute_change_points",
    "compute_period_comparison",
    "compute_segment_changes",
    "compute_owner_performance",
    "compute_lost_reasons",
    "compute_lost_reason_trends",
    "compute_what_worked",
    "compute_simpsons_check",
    "compute_findings",
]

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
    return (ds if ds.as_of == ts else ds.snapshot(ts)), ts


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
    closed = opps[opps["status"].isin([schema.WON, schema.LOST])]
    keep = pd.Series(True, index=closed.index)
    if lo is not None:
        keep &= closed["close_date"] >= lo
    if hi is not None:
        keep &= closed["close_date"] <= hi
    return closed[keep & closed["close_date"].notna()]


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


# --------------------------------------------------------------------------- stages


def _stage_events(ds: Dataset, ts: pd.Timestamp) -> dict:
    """Per deal: furthest open stage reached and when it left each open stage."""
    hist = _require_history(ds, "Stage conversion")
    stages = ds.stages.open
    if not stages:
        raise InsufficientDataError("the source config defines no open stages")
    n_open = len(stages)
    idx_of = {s: i for i, s in enumerate(stages)}
    opps = ds.opportunities
    ids = opps["opportunity_id"]
    h = hist[hist["stage"].isin(stages)]
    h = h.assign(idx=h["stage"].map(idx_of).astype("int64"))
    first = (
        h.groupby(["opportunity_id", "idx"])["entered_at"]
        .min()
        .unstack()
        .reindex(index=ids.to_numpy(), columns=range(n_open))
    )
    entry = np.column_stack([_days(first[c]) for c in range(n_open)])
    hist_max = ids.map(h.groupby("opportunity_id")["idx"].max()).to_numpy(dtype="float64")
    cur = opps["stage"].map(idx_of).to_numpy(dtype="float64", na_value=np.nan)
    status = opps["status"].to_numpy()
    furthest = np.fmax(hist_max, np.where(status == schema.OPEN, cur, np.nan))
    furthest = np.where(np.isnan(furthest), 0, furthest).astype("int64")
    won = status == schema.WON
    lost = status == schema.LOST
    furthest = np.where(won, n_open, furthest)
    close = _days(opps["close_date"])
    # date the deal moved past stage i: first entry into a later open stage, or the win
    later = np.full(len(opps), np.nan)
    advance = np.full((len(opps), n_open), np.nan)
    for i in range(n_open - 1, -1, -1):
        advance[:, i] = np.fmin(later, np.where(won, close, np.nan))
        later = np.fmin(later, entry[:, i])
    in_history = _member(ids, hist["opportunity_id"])
    return {
        "stages": stages,
        "furthest": furthest,
        "advance": advance,
        "entry": entry,
        "won": won,
        "lost": lost,
        "open": status == schema.OPEN,
        "close": close,
        "no_history": int((~in_history).sum()),
    }


def compute_stage_conversion(ds: Dataset, *, as_of, start=None, end=None) -> pd.DataFrame:
    """Stage-to-stage conversion; a deal that skipped a stage counts as having passed it.

    Definitions, per open stage *s* (in the configured order):

    - a deal **reached** *s* when its stage history shows *s* or any later open stage, or
      it was won (won deals passed every open stage). A lost deal whose history holds no
      open stage counts as lost in the first stage.
    - it **advanced** past *s* when it reached a later open stage or was won; the date it
      did so is its first entry into a later open stage (or its win date).
    - it **dropped** at *s* when it was lost and *s* is the furthest open stage it reached
      (date: its close date).
    - **still open**: deals open on ``as_of`` whose furthest stage is *s*.
    - **conversion** = advanced / (advanced + dropped), with a 95 % Wilson interval; open
      deals are not in the denominator (their outcome is not known yet).

    With ``start``/``end`` only deals that left *s* (advanced or dropped) inside the window
    count, and still-open deals are those that had entered *s* by ``end``.

    Parameters
    ----------
    ds : Dataset
        Needs the ``stage_history`` table.
    as_of : str, date or Timestamp
    start, end : date-like, optional
        Inclusive window on the date a deal left the stage.

    Returns
    -------
    DataFrame
        One row per open stage: ``stage, next_stage, reached, advanced, dropped,
        still_open, conversion, ci_low, ci_high, reached_share`` (``reached`` / deals that
        reached the first stage). ``attrs["no_history"]`` counts deals without any stage
        history row (placed by their current stage).

    Raises
    ------
    InsufficientDataError
        Without a stage history.
    ValueError
        When ``end`` is before ``start`` or after ``as_of``.

    Examples
    --------
    >>> compute_stage_conversion(ds, as_of="2025-12-31")  # doctest: +SKIP
    """
    ds, ts = _snap(ds, as_of)
    lo, hi = _bounds(start, end, ts)
    ev = _stage_events(ds, ts)
    stages = ev["stages"]
    rows = []
    for i, stage in enumerate(stages):
        reached = ev["furthest"] >= i
        adv = reached & (ev["furthest"] > i)
        drop = ev["lost"] & (ev["furthest"] == i)
        still = ev["open"] & (ev["furthest"] == i)
        if lo is not None or hi is not None:
            adv = adv & _in_window(ev["advance"][:, i], lo, hi)
            drop = drop & _in_window(ev["close"], lo, hi)
            if hi is not None:
                entered = np.fmin.reduce(ev["entry"][:, i:], axis=1)
                still = still & ~(entered > _days([hi])[0])
            reached = adv | drop | still
        rows.append(
            {
                "stage": stage,
                "next_stage": stages[i + 1] if i + 1 < len(stages) else "won",
                "reached": int(reached.sum()),
                "advanced": int(adv.sum()),
                "dropped": int(drop.sum()),
                "still_open": int(still.sum()),
            }
        )
    out = pd.DataFrame(rows)
    decided = out["advanced"] + out["dropped"]
    low, high = wilson_interval(out["advanced"], decided)
    out["conversion"] = out["advanced"] / decided.where(decided > 0)
    out["ci_low"], out["ci_high"] = low, high
    first = out["reached"].iloc[0]
    out["reached_share"] = out["reached"] / first if first else np.nan
    out.attrs["no_history"] = ev["no_history"]
    return out


def _visits(ds: Dataset, ts: pd.Timestamp) -> pd.DataFrame:
    """One row per visit of an open stage: duration in days and whether it ended."""
    hist = _require_history(ds, "Time in stage")
    stages = ds.stages
    order = {s: i for i, s in enumerate(stages.order)}
    h = hist[["opportunity_id", "stage", "entered_at"]].assign(
        _o=hist["stage"].map(order).fillna(len(order))
    )
    h = h.sort_values(["opportunity_id", "entered_at", "_o"], kind="stable")
    nxt = h.groupby("opportunity_id", sort=False)["entered_at"].shift(-1)
    h = h.assign(next_at=nxt)
    h = h[h["stage"].isin(stages.open)]
    opps = ds.opportunities.set_index("opportunity_id")
    status = h["opportunity_id"].map(opps["status"])
    close = h["opportunity_id"].map(opps["close_date"])
    is_open = status.eq(schema.OPEN) | status.isna()
    end = h["next_at"].where(h["next_at"].notna(), close.where(~is_open))
    observed = end.notna()
    end = end.where(observed, ts)
    duration = (end - h["entered_at"]).dt.days.astype("float64")
    out = pd.DataFrame(
        {
            "opportunity_id": h["opportunity_id"].to_numpy(),
            "stage": h["stage"].to_numpy(),
            "entered_at": h["entered_at"].to_numpy(),
            "days": duration.to_numpy(),
            "ended": observed.to_numpy(),
        }
    )
    return out[out["days"] >= 0].reset_index(drop=True)


def _km_row(days: np.ndarray, ended: np.ndarray) -> dict:
    q = km_quantiles(days, ended, quantiles=(0.5, 0.75, 0.9)) if len(days) else np.full(3, np.nan)
    return {
        "visits": len(days),
        "completed": int(ended.sum()),
        "in_progress": int((~ended).sum()),
        "median_days": q[0],
        "p75_days": q[1],
        "p90_days": q[2],
    }


def compute_stage_durations(ds: Dataset, *, as_of, start=None, end=None) -> pd.DataFrame:
    """Time in stage (median, p75, p90 days) with open deals treated as censored.

    A **visit** of a stage runs from its ``entered_at`` to the next stage-history row of
    the same deal (or the deal's close date when the history stops earlier). Visits of
    deals still open on ``as_of`` are **censored**: they are known to have lasted at
    least ``as_of - entered_at`` days. Quantiles come from the Kaplan–Meier curve of each
    stage (:func:`pipeline_lib.stats.km_quantiles`); a quantile the curve never reaches
    (too many visits still in progress) is missing. Revisits count as separate visits.

    Parameters
    ----------
    ds : Dataset
        Needs ``stage_history``.
    as_of : str, date or Timestamp
    start, end : date-like, optional
        Only visits that began in this inclusive window.

    Returns
    -------
    DataFrame
        One row per open stage: ``stage, visits, completed, in_progress, median_days,
        p75_days, p90_days``.

    Raises
    ------
    InsufficientDataError
        Without a stage history.

    Examples
    --------
    >>> compute_stage_durations(ds, as_of="2025-12-31")  # doctest: +SKIP
    """
    ds, ts = _snap(ds, as_of)
    lo, hi = _bounds(start, end, ts)
    v = _visits(ds, ts)
    v = v[_in_window(_days(v["entered_at"]), lo, hi)]
    rows = []
    for stage in ds.stages.open:
        sub = v[v["stage"] == stage]
        rows.append({"stage": stage, **_km_row(sub["days"].to_numpy(), sub["ended"].to_numpy())})
    return pd.DataFrame(rows)


def _km_median_weighted(t: np.ndarray, e: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kaplan–Meier medians of many weighted samples at once (rows of ``w``)."""
    order = np.argsort(t, kind="stable")
    t, e, w = t[order], e[order], w[:, order]
    times, first = np.unique(t, return_index=True)
    at_time = np.add.reduceat(w, first, axis=1)
    events = np.add.reduceat(w * e, first, axis=1)
    at_risk = np.cumsum(at_time[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - np.where(at_risk > 0, events / at_risk, 0.0), axis=1)
    hit = surv <= 0.5 + 1e-12
    idx = hit.argmax(axis=1)
    return np.where(hit.any(axis=1), times[idx], np.nan)


def _boot_median_diff(a, ea, b, eb, n_boot, rng) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the difference of KM medians (b - a)."""
    if len(a) < 5 or len(b) < 5 or n_boot <= 0:
        return np.nan, np.nan
    wa = rng.multinomial(len(a), np.full(len(a), 1 / len(a)), size=n_boot).astype(float)
    wb = rng.multinomial(len(b), np.full(len(b), 1 / len(b)), size=n_boot).astype(float)
    diffs = _km_median_weighted(b, eb.astype(float), wb) - _km_median_weighted(
        a, ea.astype(float), wa
    )
    diffs = diffs[~np.isnan(diffs)]
    if len(diffs) < n_boot / 2:
        return np.nan, np.nan
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def compute_bottlenecks(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    comparison: str = "previous",
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Stages whose conversion fell or whose time in stage rose against the comparison window.

    Conversion per window follows :func:`compute_stage_conversion` (deals that left the
    stage inside the window); its change has a 95 % Newcombe interval. Median days in
    stage per window follow :func:`compute_stage_durations` (visits that began in the
    window, open ones censored); the change has a 95 % percentile-bootstrap interval
    (``n_boot`` resamples, fixed ``seed``). A stage is a **bottleneck** when conversion
    fell (interval below 0) or the median rose (interval above 0). ``severity`` is the
    larger of the two changes in standard errors (conversion drop, duration rise) and
    orders the rows.

    Parameters
    ----------
    ds : Dataset
        Needs ``stage_history``.
    as_of : str, date or Timestamp
    period : {"month", "quarter", "year"}, default "quarter"
    comparison : {"previous", "year_ago"}, default "previous"
    n_boot : int, default 200
        Bootstrap resamples for the duration interval (0 disables it).
    seed : int, default 0

    Returns
    -------
    DataFrame
        One row per open stage: ``stage, conversion_before, conversion_now,
        conversion_change, conversion_change_low, conversion_change_high, decided_before,
        decided_now, median_days_before, median_days_now, median_days_change,
        median_days_change_low, median_days_change_high, visits_before, visits_now,
        bottleneck, severity``; ``attrs`` hold the window labels.

    Raises
    ------
    InsufficientDataError
        Without a stage history.
    ValueError
        For a bad ``period`` or ``comparison``.
    """
    ds, ts = _snap(ds, as_of)
    _require_history(ds, "Bottlenecks")
    w = _windows(ts, period, comparison)
    conv = {
        k: compute_stage_conversion(ds, as_of=ts, start=w[f"{k}_start"], end=w[f"{k}_end"])
        for k in ("cmp", "cur")
    }
    visits = _visits(ds, ts)
    vdays = _days(visits["entered_at"])
    rng = np.random.default_rng(seed)
    rows = []
    for i, stage in enumerate(ds.stages.open):
        c0, c1 = conv["cmp"].iloc[i], conv["cur"].iloc[i]
        n0, n1 = int(c0["advanced"] + c0["dropped"]), int(c1["advanced"] + c1["dropped"])
        low, high = proportion_diff_interval(c0["advanced"], n0, c1["advanced"], n1)
        sub = visits["stage"].to_numpy() == stage
        a_mask = sub & _in_window(vdays, w["cmp_start"], w["cmp_end"])
        b_mask = sub & _in_window(vdays, w["cur_start"], w["cur_end"])
        a, ea = visits["days"].to_numpy()[a_mask], visits["ended"].to_numpy()[a_mask]
        b, eb = visits["days"].to_numpy()[b_mask], visits["ended"].to_numpy()[b_mask]
        m0 = km_quantiles(a, ea, quantiles=(0.5,))[0] if len(a) else np.nan
        m1 = km_quantiles(b, eb, quantiles=(0.5,))[0] if len(b) else np.nan
        dlow, dhigh = _boot_median_diff(a, ea, b, eb, n_boot, rng)
        rows.append(
            {
                "stage": stage,
                "conversion_before": c0["conversion"],
                "conversion_now": c1["conversion"],
                "conversion_change": c1["conversion"] - c0["conversion"],
                "conversion_change_low": low,
                "conversion_change_high": high,
                "decided_before": n0,
                "decided_now": n1,
                "median_days_before": m0,
                "median_days_now": m1,
                "median_days_change": m1 - m0,
                "median_days_change_low": dlow,
                "median_days_change_high": dhigh,
                "visits_before": int(a_mask.sum()),
                "visits_now": int(b_mask.sum()),
            }
        )
    out = pd.DataFrame(rows)
    conv_se = (out["conversion_change_high"] - out["conversion_change_low"]) / (2 * _Z95)
    dur_se = (out["median_days_change_high"] - out["median_days_change_low"]) / (2 * _Z95)
    z_conv = (-out["conversion_change"] / conv_se.where(conv_se > 0)).fillna(0.0)
    z_dur = (out["median_days_change"] / dur_se.where(dur_se > 0)).fillna(0.0)
    out["bottleneck"] = (out["conversion_change_high"] < 0) | (out["median_days_change_low"] > 0)
    out["severity"] = np.maximum(z_conv, z_dur)
    out = out.sort_values("severity", ascending=False, ignore_index=True)
    out.attrs.update(current=str(w["current"]), comparison=str(w["comparison"]))
    return out


# --------------------------------------------------------------------------- flow


def _first_amounts(ds: Dataset) -> pd.Series:
    hist = ds.stage_history
    if hist is None or "amount" not in hist:
        return pd.Series(dtype="float64")
    h = hist[hist["amount"].notna()].sort_values(["opportunity_id", "entered_at"], kind="stable")
    return h.groupby("opportunity_id")["amount"].first()


def compute_pipeline_flow(ds: Dataset, *, as_of, start, end, horizon="end") -> pd.DataFrame:
    """How the open pipeline moved from ``start`` to ``end``: a waterfall whose identity holds.

    The **pipeline on day d**, P(d), is the set of deals open at the end of *d* (created by
    *d*, not closed by *d*) whose expected close date as known on *d* is on or before the
    horizon date *H* (``horizon="end"``: *H* = ``end``, i.e. the pipeline due by the end of
    the window; a date: that date; ``None``: every open deal). Amounts and close dates "as
    known on d" come from the stage history (:meth:`Dataset.snapshot`). Every deal that
    counts falls in exactly one entry and one exit class:

    - **start**: deals in P(start), at their amount on ``start``.
    - **created**: deals created in (start, end] that are in P(end) or closed in
      (start, end], at their first recorded amount (stage history; else current amount).
    - **pulled in**: deals open on ``start`` but not in P(start) (expected after *H*) that
      are in P(end) or closed in (start, end], at their amount on ``start``.
    - **won** / **lost**: counted deals closed won / lost in (start, end], at their final
      amount (shown negative).
    - **pushed out**: counted deals still open on ``end`` but not in P(end) (their expected
      close date moved past *H*), at their amount on ``end`` (negative).
    - **amount changes**: for every counted deal, its exit amount (final, or on ``end``)
      minus its entry amount.
    - **end**: deals in P(end), at their amount on ``end``.

    Hence exactly ``end = start + created + pulled in - won - lost - pushed out + amount
    changes`` (for amounts; for deal counts the same without amount changes). Created
    deals expected after *H* and still open, and pulled-in deals pushed out again, never
    enter the flow. Missing amounts count as 0 (``attrs["missing_amount"]``).

    Parameters
    ----------
    ds : Dataset
        Needs ``stage_history`` (for amounts and close dates as they were).
    as_of : str, date or Timestamp
        Data as known then; ``end`` must not be later.
    start, end : date-like
        The window (``start`` < ``end``).
    horizon : "end", date-like or None, default "end"
        Expected-close cut-off *H* defining the pipeline (must not precede ``end``).

    Returns
    -------
    DataFrame
        Rows ``start, created, pulled in, won, lost, pushed out, amount changes, end``:
        ``step, deals, amount, kind`` (``total`` / ``in`` / ``out`` / ``change``),
        ``definition``. Outflows are negative; ``attrs`` hold ``start``, ``end``,
        ``horizon``, ``missing_amount``.

    Raises
    ------
    InsufficientDataError
        Without a stage history.
    ValueError
        For dates out of order or after ``as_of``, or a horizon before ``end``.

    Examples
    --------
    >>> flow = compute_pipeline_flow(ds, as_of="2025-12-31", start="2025-09-30",
    ...                              end="2025-12-31")  # doctest: +SKIP
    """
    ds, ts = _snap(ds, as_of)
    _require_history(ds, "The pipeline flow")
    s = to_timestamp(start, name="start")
    e = to_timestamp(end, name="end")
    if e <= s:
        raise ValueError(f"end={e.date()} must be after start={s.date()}")
    if e > ts:
        raise ValueError(f"end={e.date()} is after as_of={ts.date()}: the future is unknown")
    if horizon is None:
        h = None
    elif isinstance(horizon, str) and horizon == "end":
        h = e
    else:
        h = to_timestamp(horizon, name="horizon")
        if h < e:
            raise ValueError(f"horizon={h.date()} must not be before end={e.date()}")

    def _state(day):
        o = ds.snapshot(day).opportunities.set_index("opportunity_id")
        is_open = o["status"].eq(schema.OPEN)
        due = is_open if h is None else is_open & ~(o["close_date"] > h)
        return o, is_open, due

    o0, open0, in0 = _state(s)
    o1, open1, in1 = _state(e)
    ids = o1.index
    open0 = open0.reindex(ids, fill_value=False)
    in0 = in0.reindex(ids, fill_value=False)
    amt0 = o0["amount"].reindex(ids)
    amt1 = o1["amount"]
    closed = o1["status"].isin([schema.WON, schema.LOST]) & (o1["close_date"] > s)
    won = closed & o1["status"].eq(schema.WON)
    lost = closed & o1["status"].eq(schema.LOST)
    stays = in1
    created = ~open0 & ~in0 & (o1["created_date"] > s) & (stays | closed)
    pulled = open0 & ~in0 & (stays | closed)
    counted = in0 | created | pulled
    pushed = counted & open1 & ~in1
    first_amt = ids.to_series().map(_first_amounts(ds)).reindex(ids)
    entry = pd.Series(0.0, index=ids)
    entry[in0 | pulled] = amt0[in0 | pulled]
    entry[created] = first_amt[created].where(first_amt[created].notna(), amt1[created])
    exit_ = amt1.where(counted, np.nan)
    missing = int((counted & (entry.isna() | exit_.isna())).sum())
    entry, exit_ = entry.fillna(0.0), exit_.fillna(0.0)

    def _sum(mask, values):
        return float(values[mask].sum()) + 0.0

    due = "" if h is None else f", expected to close by {h.date()}"

    rows = [
        ("start", int(in0.sum()), _sum(in0, entry), "total", f"open on {s.date()}{due}"),
        ("created", int(created.sum()), _sum(created, entry), "in", "created in the window"),
        ("pulled in", int(pulled.sum()), _sum(pulled, entry), "in", "close date moved in"),
        ("won", -int((won & counted).sum()), -_sum(won & counted, exit_), "out", "closed won"),
        ("lost", -int((lost & counted).sum()), -_sum(lost & counted, exit_), "out", "closed lost"),
        ("pushed out", -int(pushed.sum()), -_sum(pushed, exit_), "out", "close date moved out"),
        (
            "amount changes",
            0,
            _sum(counted, exit_ - entry),
            "change",
            "exit amount minus entry amount",
        ),
        ("end", int(in1.sum()), _sum(in1, exit_), "total", f"open on {e.date()}{due}"),
    ]
    out = pd.DataFrame(rows, columns=["step", "deals", "amount", "kind", "definition"])
    out["amount"] = out["amount"] + 0.0  # no negative zeros
    out.attrs.update(start=s, end=e, horizon=h, missing_amount=missing)
    return out


# --------------------------------------------------------------------------- pushes, stalls


def _push_events(ds: Dataset) -> pd.DataFrame:
    hist = _require_history(ds, "Pushed deals")
    if "close_date" not in hist or hist["close_date"].isna().all():
        raise InsufficientDataError(
            "Pushed deals need the expected close date recorded at each stage change "
            "(stage_history.close_date); map that column in the source config"
        )
    order = {s: i for i, s in enumerate(ds.stages.order)}
    h = hist[["opportunity_id", "stage", "entered_at", "close_date"]]
    h = h.assign(_o=h["stage"].map(order).fillna(len(order)))
    h = h.sort_values(["opportunity_id", "entered_at", "_o"], kind="stable")
    prev = h.groupby("opportunity_id", sort=False)["close_date"].shift(1)
    moved = (h["close_date"] - prev).dt.days
    push = h["stage"].isin(ds.stages.open) & (moved > 0)
    return pd.DataFrame(
        {
            "opportunity_id": h["opportunity_id"][push].to_numpy(),
            "pushed_at": h["entered_at"][push].to_numpy(),
            "from_date": prev[push].to_numpy(),
            "to_date": h["close_date"][push].to_numpy(),
            "days": moved[push].astype("int64").to_numpy(),
        }
    )


def compute_pushed_deals(ds: Dataset, *, as_of, start=None, end=None) -> pd.DataFrame:
    """Deals whose expected close date moved later (a **push**), with owner and value.

    A push is a stage-history row entering an *open* stage whose ``close_date`` is later
    than the deal's previous row's ``close_date`` (close dates are known only at stage
    changes; the closing row holds the actual close date and is not a push). With
    ``start``/``end`` only pushes recorded in that inclusive window count.

    Parameters
    ----------
    ds : Dataset
        Needs ``stage_history`` with ``close_date``.
    as_of : str, date or Timestamp
    start, end : date-like, optional

    Returns
    -------
    DataFrame
        One row per pushed deal, largest amount first: ``opportunity_id, name, owner,
        team, product, stage, status, amount, pushes, days_pushed, first_expected,
        expected_close, last_push`` (``first_expected``: the expected close before its
        first push in the window; ``expected_close``: its close date on ``as_of``).
        Columns the opportunities lack are left out.

    Raises
    ------
    InsufficientDataError
        Without a stage history or its close dates.
    """
    ds, ts = _snap(ds, as_of)
    lo, hi = _bounds(start, end, ts)
    ev = _push_events(ds)
    ev = ev[_in_window(_days(ev["pushed_at"]), lo, hi)]
    agg = (
        ev.groupby("opportunity_id")
        .agg(
            pushes=("days", "size"),
            days_pushed=("days", "sum"),
            first_expected=("from_date", "first"),
            last_push=("pushed_at", "max"),
        )
        .reset_index()
    )
    info = [
        c
        for c in ("opportunity_id", "name", "owner", "team", "product", "stage", "status")
        if c in ds.opportunities
    ]
    opps = ds.opportunities[[*info, "amount", "close_date"]].rename(
        columns={"close_date": "expected_close"}
    )
    out = opps.merge(agg, on="opportunity_id", how="inner")
    cols = [*info, "amount", "pushes", "days_pushed", "first_expected", "expected_close"]
    out = out[[*cols, "last_push"]]
    return out.sort_values(["amount", "days_pushed"], ascending=False, ignore_index=True)


def compute_push_rate(ds: Dataset, *, as_of, period: str = "quarter") -> pd.DataFrame:
    """Share of deals open during each period that were pushed at least once in it.

    **Open during the period**: created by the period's end (or with no created date)
    and not closed before its start. **Pushed**: at least one push (see
    :func:`compute_pushed_deals`) recorded in the period. Push rate = pushed / open during
    the period, with a 95 % Wilson interval.

    Returns
    -------
    DataFrame
        ``period, period_start, open_deals, pushed, push_rate, ci_low, ci_high, pushes,
        mean_days_pushed``, one row per period up to ``as_of``'s.

    Raises
    ------
    InsufficientDataError
        Without a stage history or its close dates.
    ValueError
        For a bad ``period``.
    """
    _check_choice("period", period, PERIODS)
    ds, ts = _snap(ds, as_of)
    ev = _push_events(ds)
    opps = ds.opportunities
    freq = PERIODS[period]
    first = opps["created_date"].min()
    if pd.isna(first):
        raise InsufficientDataError("no opportunity has a created date")
    periods = pd.period_range(pd.Period(first, freq), pd.Period(ts, freq), freq=freq)
    created = _days(opps["created_date"])
    closed_at = np.where(opps["status"].eq(schema.OPEN), np.inf, _days(opps["close_date"]))
    ev_period = ev["pushed_at"].dt.to_period(freq)
    rows = []
    for p in periods:
        p0, p1 = _days([p.start_time])[0], _days([p.end_time.normalize()])[0]
        open_during = ~(created > p1) & ~(closed_at < p0)
        e = ev[ev_period == p]
        pushed = _member(opps["opportunity_id"], e["opportunity_id"]) & open_during
        rows.append(
            {
                "period": str(p),
                "period_start": p.start_time,
                "open_deals": int(open_during.sum()),
                "pushed": int(pushed.sum()),
                "pushes": len(e),
                "mean_days_pushed": float(e["days"].mean()) if len(e) else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    low, high = wilson_interval(out["pushed"], out["open_deals"])
    out.insert(4, "push_rate", out["pushed"] / out["open_deals"].where(out["open_deals"] > 0))
    out.insert(5, "ci_low", low)
    out.insert(6, "ci_high", high)
    return out


def compute_stalled_deals(ds: Dataset, *, as_of, quantile: float = 0.9) -> pd.DataFrame:
    """Open deals longer in their current stage than ``quantile`` of that stage's visits.

    The threshold per stage is the Kaplan–Meier ``quantile`` (p90 by default) of all
    visits of the stage up to ``as_of`` (:func:`compute_stage_durations`). A deal is
    **stalled** when ``as_of - entered_at`` of its current stage exceeds it. Stages whose
    p90 cannot be estimated (too many visits in progress) flag nothing.

    Parameters
    ----------
    ds : Dataset
        Needs ``stage_history``.
    as_of : str, date or Timestamp
    quantile : float, default 0.9
        In (0, 1).

    Returns
    -------
    DataFrame
        One row per stalled deal, largest amount first: ``opportunity_id, name, owner,
        team, product, stage, amount, entered_stage, days_in_stage, stage_threshold_days,
        days_over, expected_close`` (columns the opportunities lack are left out).

    Raises
    ------
    InsufficientDataError
        Without a stage history.
    ValueError
        When ``quantile`` is not in (0, 1).
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile!r} must lie between 0 and 1")
    ds, ts = _snap(ds, as_of)
    _require_history(ds, "Stalled deals")
    v = _visits(ds, ts)
    thresholds = {
        s: km_quantiles(g["days"].to_numpy(), g["ended"].to_numpy(), quantiles=(quantile,))[0]
        for s, g in v.groupby("stage")
    }
    current = v[~v["ended"]].drop_duplicates("opportunity_id", keep="last")
    current = current.assign(
        threshold=pd.to_numeric(current["stage"].map(thresholds), errors="coerce")
    )
    stalled = current[current["days"] > current["threshold"]]
    info = [
        c for c in ("opportunity_id", "name", "owner", "team", "product") if c in ds.opportunities
    ]
    opps = ds.opportunities[ds.opportunities["status"].eq(schema.OPEN)]
    out = opps[[*info, "stage", "amount", "close_date"]].merge(
        stalled[["opportunity_id", "entered_at", "days", "threshold"]],
        on="opportunity_id",
        how="inner",
    )
    out = out.rename(
        columns={
            "entered_at": "entered_stage",
            "days": "days_in_stage",
            "threshold": "stage_threshold_days",
            "close_date": "expected_close",
        }
    )
    out["days_in_stage"] = out["days_in_stage"].astype("int64")
    out["days_over"] = out["days_in_stage"] - out["stage_threshold_days"]
    cols = [*info, "stage", "amount", "entered_stage", "days_in_stage", "stage_threshold_days"]
    out = out[[*cols, "days_over", "expected_close"]]
    return out.sort_values(["amount", "days_over"], ascending=False, ignore_index=True)


# --------------------------------------------------------------------------- per period


def _won_deals(opps: pd.DataFrame, period: str, basis: str = "close") -> pd.DataFrame:
    """Won deals with their period, cycle days and amount."""
    won = _closed(opps)
    won = won[won["status"].eq(schema.WON)]
    date = won["close_date"] if basis == "close" else won["created_date"]
    return won.assign(
        period=date.dt.to_period(PERIODS[period]), cycle=_cycle_days(won), amount=won["amount"]
    )


def _period_frame(
    opps: pd.DataFrame, ts: pd.Timestamp, period: str, by=(), *, basis: str = "close"
) -> pd.DataFrame:
    """Per period (and segment): counts, sums and squares for every trend metric."""
    freq = PERIODS[period]
    by = list(by)
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
    agg["period_start"] = agg["period"].map(lambda p: p.start_time)
    agg["days"] = agg["period"].map(lambda p: (p.end_time.normalize() - p.start_time).days + 1)
    agg["complete"] = agg["period"].map(lambda p: p.end_time.normalize() <= ts)
    return agg


def _no_closed(opps) -> None:
    if not opps["status"].isin([schema.WON, schema.LOST]).any():
        raise InsufficientDataError(
            "no deal is closed (won or lost) up to as_of; trends need closed deals — "
            "choose a later as_of or a wider filter"
        )


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


# --------------------------------------------------------------------------- velocity


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
            raise InsufficientDataError(f"period {label!r} is not in the velocity table")
        rows[label] = hit.iloc[0]
    r0, r1 = rows[previous], rows[current]
    for _name, col, _sign in factors:
        for r, label in ((r0, previous), (r1, current)):
            if not (pd.notna(r[col]) and r[col] > 0):
                raise InsufficientDataError(
                    f"velocity of {label} cannot be decomposed: its {col} is "
                    f"{r[col]!r}; every factor must be positive (closed and won deals needed)"
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


# --------------------------------------------------------------------------- change points

_METRICS = {
    # name: (kind, label)
    "win_rate": ("binomial", "win rate"),
    "cycle_days": ("gaussian", "sales cycle (days)"),
    "avg_won_amount": ("gaussian", "average won deal"),
    "created": ("poisson", "deals created"),
}


def _xlogy(x, y):
    return special.xlogy(x, np.where(x > 0, y, 1.0))


def _split_stats(kind: str, a, b, c, min_size: int) -> np.ndarray:
    """Likelihood-ratio statistic of one change after each split (along the last axis).

    ``kind`` binomial: a = successes, b = trials; poisson: a = counts, b = exposure;
    gaussian (common variance): a = n, b = sum, c = sum of squares.
    """
    ca, cb, cc = (np.cumsum(x, axis=-1) for x in (a, b, c))
    ta, tb, tc = ca[..., -1:], cb[..., -1:], cc[..., -1:]
    la, lb, lc = ca[..., :-1], cb[..., :-1], cc[..., :-1]
    ra, rb, rc = ta - la, tb - lb, tc - lc
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "binomial":

            def ll(k, n):
                return _xlogy(k, k / n) + _xlogy(n - k, (n - k) / n)

            stat = 2 * (ll(la, lb) + ll(ra, rb) - ll(ta, tb))
        elif kind == "poisson":

            def ll(k, e):
                return _xlogy(k, k / e) - k

            stat = 2 * (ll(la, lb) + ll(ra, rb) - ll(ta, tb))
        else:

            def rss(n, s, ss):
                return np.where(n > 0, ss - s**2 / np.where(n > 0, n, 1), 0.0)

            r0 = rss(ta, tb, tc)
            r1 = rss(la, lb, lc) + rss(ra, rb, rc)
            stat = ta * np.log(r0 / r1)
            stat = np.where((la < 2) | (ra < 2), 0.0, stat)
    stat = np.nan_to_num(stat, nan=0.0, posinf=0.0, neginf=0.0)
    n = a.shape[-1]
    pos = np.arange(1, n)
    ok = (pos >= min_size) & (n - pos >= min_size)
    return np.where(ok, stat, 0.0)


class _Series:
    """One metric over consecutive periods, with what its permutation test needs."""

    def __init__(self, kind, a, b, c=None, values=None, codes=None):
        self.kind, self.a, self.b = kind, np.asarray(a, float), np.asarray(b, float)
        self.c = np.zeros(len(self.a)) if c is None else np.asarray(c, float)
        self.values, self.codes = values, codes

    def part(self, lo, hi) -> _Series:
        if self.kind != "gaussian":
            return _Series(self.kind, self.a[lo:hi], self.b[lo:hi])
        keep = (self.codes >= lo) & (self.codes < hi)
        return _Series(
            "gaussian",
            self.a[lo:hi],
            self.b[lo:hi],
            self.c[lo:hi],
            self.values[keep],
            self.codes[keep] - lo,
        )

    def null(self, n_perm: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n_perm`` draws of (a, b, c) with no change: deals' outcomes permuted."""
        t = len(self.a)
        if self.kind == "binomial":
            total = int(self.a.sum())
            a = rng.multivariate_hypergeometric(self.b.astype("int64"), total, size=n_perm)
            return a.astype(float), np.broadcast_to(self.b, a.shape), np.zeros(a.shape)
        if self.kind == "poisson":
            share = self.b / self.b.sum()
            a = rng.multinomial(int(self.a.sum()), share, size=n_perm).astype(float)
            return a, np.broadcast_to(self.b, a.shape), np.zeros(a.shape)
        n_perm = max(99, n_perm // 4)  # every deal is shuffled: fewer draws suffice
        m = len(self.values)
        codes = rng.permuted(np.broadcast_to(self.codes, (n_perm, m)), axis=1)
        slot = (codes + t * np.arange(n_perm)[:, None]).ravel()
        v = np.broadcast_to(self.values, (n_perm, m)).ravel()
        s = np.bincount(slot, weights=v, minlength=n_perm * t).reshape(n_perm, t)
        ss = np.bincount(slot, weights=v**2, minlength=n_perm * t).reshape(n_perm, t)
        return np.broadcast_to(self.a, s.shape), s, ss

    def pooled(self, lo, hi) -> float:
        a, b = self.a[lo:hi], self.b[lo:hi]
        if self.kind == "binomial":
            return a.sum() / b.sum() if b.sum() > 0 else np.nan
        if self.kind == "poisson":
            return a.sum() / len(a) if len(a) else np.nan  # deals per period
        return b.sum() / a.sum() if a.sum() > 0 else np.nan  # mean of deal values


def _test_split(series: _Series, min_size, n_perm, rng):
    n = len(series.a)
    if n < 2 * min_size:
        return None
    stat = _split_stats(series.kind, series.a, series.b, series.c, min_size)
    best = int(np.argmax(stat))
    if stat[best] <= 0:
        return None
    null = _split_stats(series.kind, *series.null(n_perm, rng), min_size).max(axis=1)
    p = (1 + int((null >= stat[best] - 1e-9).sum())) / (n_perm + 1)
    if p <= 1 / (n_perm + 1):  # beyond every draw: resolve further with the χ² bound
        p = min(p, float(min(1.0, (stat > 0).sum() * st.chi2.sf(stat[best], 1))))
    return best + 1, float(p)


def _find_changes(series: _Series, *, alpha, min_size, max_changes, n_perm, rng):
    """Binary segmentation: [(index, p_value)] of significant changes, and all tests' p."""
    found, tested = [], []
    stack = [(0, len(series.a))]
    while stack and len(found) < max_changes:
        lo, hi = stack.pop(0)
        res = _test_split(series.part(lo, hi), min_size, n_perm, rng)
        if res is None:
            continue
        k, p = res
        tested.append(p)
        if p <= alpha:
            found.append((lo + k, p))
            stack += [(lo, lo + k), (lo + k, hi)]
    return sorted(found), tested


def _make_series(metric: str, f: pd.DataFrame, won: pd.DataFrame) -> _Series:
    kind = _METRICS[metric][0]
    if metric == "win_rate":
        return _Series(kind, f["won"], f["closed"])
    if metric == "created":
        return _Series(kind, f["created"], f["days"])
    name, col = ("cycle", "cycle") if metric == "cycle_days" else ("amount", "amount")
    codes = pd.Index(f["period"]).get_indexer(won["period"])
    vals = won[col].to_numpy(float)
    keep = (codes >= 0) & ~np.isnan(vals)
    return _Series(kind, f[f"n_{name}"], f[f"sum_{name}"], f[f"ss_{name}"], vals[keep], codes[keep])


def compute_change_points(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    metrics=("win_rate", "cycle_days", "avg_won_amount", "created"),
    by=None,
    basis: str = "close",
    alpha: float = 0.05,
    min_size: int = 2,
    max_changes: int = 2,
    n_perm: int = 1999,
    seed: int = 0,
) -> pd.DataFrame:
    """Periods where a trend metric changed level (change-point detection).

    For each series (metric, and segment with ``by``) over the *complete* periods, the
    best single split maximises a likelihood-ratio statistic — binomial for the win rate
    (won of closed), Poisson for deals created (per day of the period), Gaussian with a
    common variance for the cycle days and amounts of individual won deals. Its p-value
    is a permutation test with ``n_perm`` draws (a quarter as many for the Gaussian
    metrics): the deals' outcomes (won/lost, creation dates, values) are shuffled across
    periods, keeping each period's number of deals, so the maximum over all splits is
    accounted for. Significant splits (``p <= alpha``)
    are searched again on each side (binary segmentation, at most ``max_changes`` per
    series, segments of at least ``min_size`` periods). When the observed statistic
    beats every draw, the smaller Bonferroni bound over the splits of its χ²₁
    approximation is reported instead of ``1 / (n_perm + 1)``. ``q_value`` is the
    Benjamini–Hochberg adjustment over every split test run in the call, so scanning many
    segments does not inflate false alarms; changes with ``q_value <= alpha`` are kept.
    The test assumes deals are independent; seasonal swings larger than chance can
    show up as changes.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    period : {"month", "quarter", "year"}, default "quarter"
    metrics : sequence of {"win_rate", "cycle_days", "avg_won_amount", "created"}
    by : str or sequence of str, optional
        Test every value of each column separately (e.g. ``("product", "team")``).
    basis : {"close", "created"}, default "close"
        Period of a closed deal: its close date, or its creation date (cohorts: shows
        when a change started, but young cohorts hold only their fast closers).
    alpha : float, default 0.05
    min_size : int, default 2
    max_changes : int, default 2
    n_perm : int, default 1999
    seed : int, default 0

    Returns
    -------
    DataFrame
        One row per change: ``segment_column, segment, metric, metric_label, period,
        period_start, before, after, change, p_value, q_value`` (``period`` = first period
        after the change; ``before``/``after`` = pooled level between neighbouring
        changes; volume in deals per period). ``segment_column``/``segment`` are
        ``"all"`` without ``by``.

    Raises
    ------
    InsufficientDataError
        When no deal is closed or fewer than ``2 * min_size`` complete periods exist.
    ValueError
        For a bad ``period``, ``basis`` or metric.

    Examples
    --------
    >>> compute_change_points(ds, as_of="2025-12-31", by="product")  # doctest: +SKIP
    """
    _check_choice("period", period, PERIODS)
    _check_choice("basis", basis, ("close", "created"))
    for m in metrics:
        _check_choice("metrics", m, _METRICS)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must lie between 0 and 1")
    ds, ts = _snap(ds, as_of)
    opps = ds.opportunities
    _no_closed(opps)
    cols = _segments(opps, by)
    rng = np.random.default_rng(seed)
    base = _period_frame(opps, ts, period, basis=basis)
    base = base[base["complete"]].reset_index(drop=True)
    if len(base) < 2 * min_size:
        raise InsufficientDataError(
            f"change points need at least {2 * min_size} complete {period}s of data; "
            f"there are {len(base)} — use a shorter period or a later as_of"
        )
    won = _won_deals(opps, period, basis)
    series = [("all", "all", base, won)]
    for col in cols:
        f = _period_frame(opps, ts, period, [col], basis=basis)
        f = f[f["complete"]]
        for value, g in f.groupby(col, sort=True):
            series.append((col, value, g.reset_index(drop=True), won[won[col] == value]))
    rows, all_p = [], []
    for col, value, f, w in series:
        for metric in metrics:
            s = _make_series(metric, f, w)
            found, tested = _find_changes(
                s, alpha=alpha, min_size=min_size, max_changes=max_changes, n_perm=n_perm, rng=rng
            )
            all_p += tested
            cuts = [0, *[k for k, _ in found], len(s.a)]
            for j, (k, p) in enumerate(found):
                before = s.pooled(cuts[j], k)
                after = s.pooled(k, cuts[j + 2])
                rows.append(
                    {
                        "segment_column": col,
                        "segment": value,
                        "metric": metric,
                        "metric_label": _METRICS[metric][1],
                        "period": str(f["period"].iloc[k]),
                        "period_start": f["period_start"].iloc[k],
                        "before": before,
                        "after": after,
                        "change": after - before,
                        "p_value": p,
                    }
                )
    cols_out = [
        "segment_column",
        "segment",
        "metric",
        "metric_label",
        "period",
        "period_start",
        "before",
        "after",
        "change",
        "p_value",
        "q_value",
    ]
    if not rows:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols_out})
        text = ("segment_column", "segment", "metric", "metric_label", "period")
        return empty.astype({c: "str" for c in text}).astype({"period_start": "datetime64[ns]"})
    out = pd.DataFrame(rows)
    q_all = benjamini_hochberg(np.array(all_p))
    lookup = dict(zip(all_p, q_all, strict=True))
    out["q_value"] = out["p_value"].map(lookup)
    out = out[out["q_value"] <= alpha]
    out = out.sort_values(["p_value", "segment_column"], kind="stable", ignore_index=True)
    return out[cols_out]


# --------------------------------------------------------------------------- comparisons


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
    ds, ts = _snap(ds, as_of)
    w = _windows(ts, period, comparison)
    opps = ds.opportunities
    frames = {k: _closed(opps, w[f"{k}_start"], w[f"{k}_end"]) for k in ("cmp", "cur")}
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
    ds, ts = _snap(ds, as_of)
    w = _windows(ts, period, comparison)
    opps = ds.opportunities
    cols = _segments(opps, by)
    frames = {k: _closed(opps, w[f"{k}_start"], w[f"{k}_end"]) for k in ("cmp", "cur")}
    parts = []
    for col in cols:
        g = {
            k: f.groupby(col)["status"].agg(won=lambda s: int(s.eq(schema.WON).sum()), n="size")
            for k, f in frames.items()
        }
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


# --------------------------------------------------------------------------- owners


def _fit_beta_binomial(k: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Maximum marginal likelihood (alpha, beta) of a beta-binomial; pooled fallback."""
    keep = n > 0
    k, n = k[keep].astype(float), n[keep].astype(float)
    pooled = k.sum() / n.sum()
    if len(k) < 2 or pooled in (0.0, 1.0):
        strength = 1e4
        return pooled * strength, (1 - pooled) * strength

    def nll(x):
        mu = special.expit(x[0])
        s = np.exp(x[1])
        a, b = mu * s, (1 - mu) * s
        return -np.sum(special.betaln(k + a, n - k + b) - special.betaln(a, b))

    x0 = np.array([special.logit(pooled), np.log(20.0)])
    res = optimize.minimize(
        nll, x0, method="L-BFGS-B", bounds=[(-10, 10), (np.log(0.5), np.log(1e4))]
    )
    mu, s = special.expit(res.x[0]), float(np.exp(res.x[1]))
    return mu * s, (1 - mu) * s


def compute_owner_performance(
    ds: Dataset, *, as_of, by: str = "owner", window_days: int = 365
) -> pd.DataFrame:
    """Win rate per owner (or team) with empirical-Bayes shrinkage, so tiny samples do not top it.

    Deals closed in the ``window_days`` days ending on ``as_of``. The raw win rate has a
    95 % Wilson interval. The **shrunk win rate** is the posterior mean under a
    beta-binomial model: owners' true rates ~ Beta(α, β), fitted by maximum marginal
    likelihood over all owners (empirical Bayes); an owner with *k* wins of *n* gets
    (k + α) / (n + α + β), with a 95 % credible interval from Beta(k + α, n − k + β). An
    owner with 3 deals is pulled strongly towards the team-wide rate; one with 300
    barely moves. Rows are ranked by the shrunk rate.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    by : str, default "owner"
        Column to rank (``"owner"`` or ``"team"``...).
    window_days : int, default 365

    Returns
    -------
    DataFrame
        ``rank, <by>, team (when by is owner and team exists), won, closed, win_rate,
        ci_low, ci_high, shrunk_win_rate, shrunk_low, shrunk_high, won_amount``;
        ``attrs["prior"]`` = (α, β).

    Raises
    ------
    InsufficientDataError
        When the column is missing or no deal closed in the window.
    ValueError
        When ``window_days`` is not positive.
    """
    if window_days <= 0:
        raise ValueError(f"window_days={window_days!r} must be a positive number of days")
    ds, ts = _snap(ds, as_of)
    opps = ds.opportunities
    if by not in opps or opps[by].isna().all():
        raise InsufficientDataError(
            f"the opportunities have no {by!r} values; map that column in the source config"
        )
    closed = _closed(opps, ts - pd.Timedelta(days=window_days - 1), ts)
    closed = closed[closed[by].notna()]
    if closed.empty:
        raise InsufficientDataError(
            f"no deal with an {by} closed in the {window_days} days to {ts.date()}"
        )
    is_won = closed["status"].eq(schema.WON)
    g = closed.assign(_won=is_won, _amt=closed["amount"].where(is_won, 0.0)).groupby(by)
    t = g.agg(won=("_won", "sum"), closed=("_won", "size"), won_amount=("_amt", "sum"))
    if by == "owner" and "team" in closed:
        t.insert(0, "team", g["team"].agg(lambda s: s.mode().iloc[0] if s.notna().any() else pd.NA))
    t = t.reset_index()
    k, n = t["won"].to_numpy(float), t["closed"].to_numpy(float)
    a, b = _fit_beta_binomial(k, n)
    low, high = wilson_interval(k, n)
    t["win_rate"] = k / n
    t["ci_low"], t["ci_high"] = low, high
    t["shrunk_win_rate"] = (k + a) / (n + a + b)
    t["shrunk_low"] = st.beta.ppf(0.025, k + a, n - k + b)
    t["shrunk_high"] = st.beta.ppf(0.975, k + a, n - k + b)
    t["won"], t["closed"] = t["won"].astype("int64"), t["closed"].astype("int64")
    t = t.sort_values(["shrunk_win_rate", "closed"], ascending=False, ignore_index=True)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    cols = ["rank", by, *(["team"] if "team" in t and by != "team" else [])]
    cols += ["won", "closed", "win_rate", "ci_low", "ci_high"]
    cols += ["shrunk_win_rate", "shrunk_low", "shrunk_high", "won_amount"]
    out = t[cols]
    out.attrs["prior"] = (a, b)
    return out


# --------------------------------------------------------------------------- lost reasons


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
    if "lost_reason" not in opps or lost.empty or lost["lost_reason"].isna().all():
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


# --------------------------------------------------------------------------- what worked


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
    closed = _closed(opps, ts - pd.Timedelta(days=window_days - 1), ts)
    if closed.empty:
        raise InsufficientDataError(f"no deal closed in the {window_days} days to {ts.date()}")
    won = closed["status"].eq(schema.WON).to_numpy()
    logc = np.log(np.maximum(_cycle_days(closed).to_numpy(float), 0.5))
    logc = np.where(won, logc, np.nan)
    groups = [(c,) for c in cols] + (list(combinations(cols, 2)) if depth == 2 else [])
    rows = []
    for group in groups:
        keys = closed[list(group)].astype("str")
        label = keys.iloc[:, 0].radd(f"{group[0]}=")
        for c in group[1:]:
            label = label + " & " + keys[c].radd(f"{c}=")
        valid = closed[list(group)].notna().all(axis=1).to_numpy()
        for seg, idx in pd.Series(np.arange(len(closed)))[valid].groupby(label[valid].to_numpy()):
            mask = np.zeros(len(closed), bool)
            mask[idx.to_numpy()] = True
            n1, n2 = int(mask.sum()), int((~mask).sum())
            if n1 >= min_deals and n2 >= min_deals:
                k1, k2 = int(won[mask].sum()), int(won[~mask].sum())
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
            a, b = logc[mask & won], logc[~mask & won]
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
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
    ds, ts = _snap(ds, as_of)
    w = _windows(ts, period, comparison)
    opps = ds.opportunities
    cols = _segments(opps, by)
    frames = {k: _closed(opps, w[f"{k}_start"], w[f"{k}_end"]) for k in ("cmp", "cur")}
    if any(f.empty for f in frames.values()):
        raise InsufficientDataError(
            f"the Simpson's-paradox check needs closed deals in both {w['comparison']} and "
            f"{w['current']}"
        )
    rows = []
    for col in cols:
        stats = {}
        for k, f in frames.items():
            f = f.assign(**{col: f[col].fillna("(missing)")})
            g = f.groupby(col)["status"].agg(won=lambda s: s.eq(schema.WON).sum(), n="size")
            stats[k] = g
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


# --------------------------------------------------------------------------- findings


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _money(x: float, cur: str) -> str:
    if abs(x) >= 1e6:
        return f"{cur} {x / 1e6:,.1f}M"
    if abs(x) >= 1e3:
        return f"{cur} {x / 1e3:,.0f}k"
    return f"{cur} {x:,.0f}"


def _factor(name: str, value: float, cur: str) -> str:
    if name == "win rate":
        return _pct(value)
    if name == "average won deal":
        return _money(value, cur)
    if name == "cycle length":
        return f"{value:,.0f} days"
    return f"{value:,.0f}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def compute_findings(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    comparison: str = "previous",
    by=("product", "team", "source"),
    n: int = 5,
) -> pd.DataFrame:
    """The most important findings of the review, as plain sentences with their numbers.

    Candidates come from the other analyses: win-rate change points per segment, the
    velocity change and its main driver, the worst bottleneck, stalled deals, the
    clearest "what worked" segment, growing lost reasons, significant segment win-rate
    changes, Simpson's reversals and the top-ranked owner after shrinkage. Each candidate
    gets an importance score — its test statistic as a z-value (capped at 5), weighted by
    topic (a change of trend counts double; the clearest win-rate segment is preferred
    for "what worked") — and the ``n`` best are kept, one per topic. The scores are a
    heuristic ordering, not a statistic. Analyses that cannot run on
    this data (e.g. no stage history) are skipped silently here; their sections say why.

    Returns
    -------
    DataFrame
        ``rank, topic, finding, score`` (at most ``n`` rows).

    Raises
    ------
    InsufficientDataError
        When no finding can be made (e.g. no closed deals).
    """
    ds, ts = _snap(ds, as_of)
    cur = ds.base_currency
    cands: list[tuple[str, float, str]] = []

    def z_of(p):
        return min(float(st.norm.isf(max(p, 1e-15) / 2)), 5.0)

    def attempt(fn):
        with contextlib.suppress(InsufficientDataError):
            fn()

    def change_points():
        cp = compute_change_points(ds, as_of=ts, period=period, metrics=("win_rate",), by=by)
        for r in cp.itertuples():
            who = "Overall" if r.segment_column == "all" else f"{r.segment} ({r.segment_column})"
            verb = "fell" if r.change < 0 else "rose"
            cands.append(
                (
                    "trend change",
                    z_of(r.p_value) * 2.0 * (1.0 if r.segment_column == "all" else 0.95),
                    f"{who} win rate {verb} from {_pct(r.before)} to {_pct(r.after)} "
                    f"from {r.period} on (change point, {_p(r.p_value)}, "
                    f"q = {r.q_value:.3f}).",
                )
            )

    def velocity():
        w = _windows(ts, period, comparison)
        v = compute_velocity(ds, as_of=ts, period=period)
        d = compute_velocity_decomposition(
            v, current=str(w["current"]), previous=str(w["comparison"])
        )
        tot = d.iloc[-1]
        parts = d.iloc[:-1]
        main = parts.loc[parts["contribution"].abs().idxmax()]
        pct = np.expm1(tot["log_change"])
        cands.append(
            (
                "velocity",
                min(abs(tot["log_change"]) * 10, 6.0),
                f"Sales velocity was {_money(tot['current'], cur)}/day in {w['current']}, "
                f"{'up' if pct >= 0 else 'down'} {abs(pct):.0%} on {w['comparison']} "
                f"({_money(tot['previous'], cur)}/day); the largest driver was "
                f"{main['factor']} ({_factor(main['factor'], main['previous'], cur)} → "
                f"{_factor(main['factor'], main['current'], cur)}, "
                f"{_money(main['contribution'], cur)}/day).",
            )
        )

    def bottleneck():
        b = compute_bottlenecks(ds, as_of=ts, period=period, comparison=comparison, n_boot=100)
        hit = b[b["bottleneck"]]
        if hit.empty:
            return
        r = hit.iloc[0]
        if r["conversion_change_high"] < 0:
            text = (
                f"Bottleneck: conversion out of {r['stage']} fell from "
                f"{_pct(r['conversion_before'])} to {_pct(r['conversion_now'])} "
                f"({b.attrs['comparison']} → {b.attrs['current']}, "
                f"{int(r['decided_now'])} deals decided)."
            )
        else:
            text = (
                f"Bottleneck: median time in {r['stage']} rose from "
                f"{r['median_days_before']:.0f} to {r['median_days_now']:.0f} days "
                f"({b.attrs['comparison']} → {b.attrs['current']})."
            )
        cands.append(("bottleneck", min(float(r["severity"]), 8.0), text))

    def stalled():
        s = compute_stalled_deals(ds, as_of=ts)
        opens = int(ds.opportunities["status"].eq(schema.OPEN).sum())
        if s.empty or not opens:
            return
        share = len(s) / opens
        top = s.iloc[0]
        owner = f" ({top['owner']})" if "owner" in s else ""
        label = top["name"] if "name" in s else top["opportunity_id"]
        cands.append(
            (
                "stalled deals",
                2.0 + 6 * share,
                f"{len(s)} of {opens} open deals ({share:.0%}) worth "
                f"{_money(s['amount'].sum(), cur)} are stalled — longer in their stage "
                f"than 90% of deals; the largest is {label}{owner}, "
                f"{_money(top['amount'], cur)}.",
            )
        )

    def worked():
        ww = compute_what_worked(ds, as_of=ts, by=by)
        good = ww[ww["better"]]
        if good.empty:
            return
        by_rate = good[good["metric"].eq("win rate")]
        r = (by_rate if len(by_rate) else good).iloc[0]
        if r["metric"] == "win rate":
            text = (
                f"What worked: {r['segment']} wins {_pct(r['value'])} of {r['n']} closed "
                f"deals vs {_pct(r['rest_value'])} for the rest "
                f"(+{r['difference'] * 100:.0f} points, q = {r['q_value']:.3f})."
            )
        else:
            text = (
                f"What worked: {r['segment']} closes won deals in {r['value']:.0f} days vs "
                f"{r['rest_value']:.0f} for the rest ({r['difference']:+.0%}, "
                f"{r['n']} won deals, q = {r['q_value']:.3f})."
            )
        cands.append(("what worked", z_of(r["p_value"]) * 1.0, text))

    def lost_reasons():
        lr = compute_lost_reason_trends(ds, as_of=ts, period=period)
        sig = lr[lr["significant"]]
        if sig.empty:
            return
        r = sig.iloc[0]
        verb = "grew" if r["slope_per_year"] > 0 else "shrank"
        cands.append(
            (
                "lost reasons",
                z_of(r["p_value"]) * 0.8,
                f"Lost reason “{r['reason']}” {verb} from {_pct(r['share_first_year'])} "
                f"of losses in the first year to {_pct(r['share_last_year'])} in the last "
                f"({r['slope_per_year'] * 100:+.1f} points a year, {_p(r['p_value'])}).",
            )
        )

    def segments():
        sc = compute_segment_changes(ds, as_of=ts, period=period, comparison=comparison, by=by)
        sig = sc[sc["significant"]]
        if sig.empty:
            return
        r = sig.iloc[0]
        cands.append(
            (
                "segment change",
                z_of(r["p_value"]) * 0.9,
                f"{r['segment']} ({r['segment_column']}) win rate went from "
                f"{_pct(r['win_rate_before'])} to {_pct(r['win_rate_now'])} "
                f"({sc.attrs['comparison']} → {sc.attrs['current']}, "
                f"{r['closed_now']} closed deals now, q = {r['q_value']:.3f}).",
            )
        )

    def simpson():
        sp = compute_simpsons_check(ds, as_of=ts, period=period, comparison=comparison, by=by)
        rev = sp[sp["reversal"]]
        for r in rev.itertuples():
            cands.append(
                (
                    "Simpson's paradox",
                    3.0 + 100 * abs(r.within_change - r.aggregate_change),
                    f"The overall win rate moved {r.aggregate_change * 100:+.1f} points "
                    f"({sp.attrs['comparison']} → {sp.attrs['current']}), but within "
                    f"{r.segment_column}s it moved {r.within_change * 100:+.1f} points: "
                    f"the change comes from the {r.segment_column} mix.",
                )
            )

    def owners():
        o = compute_owner_performance(ds, as_of=ts)
        if len(o) < 3:
            return
        top, bottom = o.iloc[0], o.iloc[-1]
        cands.append(
            (
                "owners",
                2.5,
                f"Top rep after shrinkage: {top['owner']} with {_pct(top['shrunk_win_rate'])} "
                f"({top['won']} of {top['closed']} won in the last year); lowest: "
                f"{bottom['owner']} with {_pct(bottom['shrunk_win_rate'])} "
                f"({bottom['won']} of {bottom['closed']}).",
            )
        )

    for fn in (
        change_points,
        velocity,
        bottleneck,
        stalled,
        worked,
        lost_reasons,
        segments,
        simpson,
        owners,
    ):
        attempt(fn)
    if not cands:
        raise InsufficientDataError("no finding could be made: too few closed deals")
    frame = pd.DataFrame(cands, columns=["topic", "score", "finding"])
    frame = frame.sort_values("score", ascending=False, kind="stable")
    frame = frame.drop_duplicates("topic").head(n).reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame[["rank", "topic", "finding", "score"]]
