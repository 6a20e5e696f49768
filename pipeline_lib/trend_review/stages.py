"""Stages: conversion with skipped stages, censored time in stage, bottlenecks, stalled deals.

All need the ``stage_history`` table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..stats import km_quantiles, proportion_diff_interval, wilson_interval
from ._common import (
    _Z95,
    _bounds,
    _code_of,
    _days,
    _history_index,
    _in_window,
    _require_history,
    _snap,
    _windows,
)

__all__ = [
    "compute_stage_conversion",
    "compute_stage_durations",
    "compute_bottlenecks",
    "compute_stalled_deals",
]


@memoized(copy=False)
def _stage_events(ds: Dataset, ts: pd.Timestamp) -> dict:
    """Per deal: furthest open stage reached and when it left each open stage."""
    _require_history(ds, "Stage conversion")
    stages = ds.stages.open
    if not stages:
        raise InsufficientDataError("the source config defines no open stages")
    n_open = len(stages)
    opps = ds.opportunities
    hx = _history_index(ds)  # integer codes: deal -> row of opps, stage -> index in `stages`
    keep = (hx["stage_open"] >= 0) & (hx["row"] >= 0) & ~np.isnat(hx["entered"])
    deal, stage_code = hx["row"][keep], hx["stage_open"][keep]
    entered = _days(hx["entered"][keep])
    entry = np.full(len(opps) * n_open, np.nan)
    np.fmin.at(entry, deal * n_open + stage_code, entered)  # first entry per deal and stage
    entry = entry.reshape(len(opps), n_open)
    hist_max = np.full(len(opps), np.nan)
    np.fmax.at(hist_max, deal, stage_code.astype("float64"))
    cur = _code_of(opps["stage"], stages).astype("float64")
    cur[cur < 0] = np.nan
    status = opps["status"]
    is_open = status.eq(schema.OPEN).to_numpy(bool, na_value=False)
    furthest = np.fmax(hist_max, np.where(is_open, cur, np.nan))
    furthest = np.where(np.isnan(furthest), 0, furthest).astype("int64")
    won = status.eq(schema.WON).to_numpy(bool, na_value=False)
    lost = status.eq(schema.LOST).to_numpy(bool, na_value=False)
    furthest = np.where(won, n_open, furthest)
    close = _days(opps["close_date"])
    # date the deal moved past stage i: first entry into a later open stage, or the win
    later = np.full(len(opps), np.nan)
    advance = np.full((len(opps), n_open), np.nan)
    for i in range(n_open - 1, -1, -1):
        advance[:, i] = np.fmin(later, np.where(won, close, np.nan))
        later = np.fmin(later, entry[:, i])
    in_history = np.zeros(len(opps), bool)
    in_history[hx["row"][hx["row"] >= 0]] = True
    return {
        "stages": stages,
        "furthest": furthest,
        "advance": advance,
        "entry": entry,
        "won": won,
        "lost": lost,
        "open": is_open,
        "close": close,
        "no_history": int((~in_history).sum()),
    }


@memoized(dates=("as_of", "start", "end"))
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


@memoized(copy=False)
def _visit_arrays(ds: Dataset, ts: pd.Timestamp) -> dict:
    """One entry per visit of an open stage, as arrays in stage-history order.

    ``code`` (index in ``ds.stages.open``), ``days`` (whole days, censored at ``ts`` when
    the visit has not ended), ``ended``, ``entered_at`` (datetime64) and ``entered``
    (float days), and ``hist`` (the visit's row in :func:`_history_index`). Masks on
    integers instead of comparing millions of Arrow-backed texts once per stage; the
    table of :func:`_visits` is built only from the rows it needs.
    """
    _require_history(ds, "Time in stage")
    hx = _history_index(ds)
    nat = np.iinfo(np.int64).min  # datetimes as int64 nanoseconds: NaT is the minimum
    next_at = np.append(hx["entered"].view(np.int64)[1:], nat)
    next_at[hx["last"]] = nat
    keep = hx["stage_open"] >= 0
    opps = ds.opportunities
    row = hx["row"][keep]
    at = np.where(row >= 0, row, len(opps))  # slot len(opps): no such deal
    status = opps["status"]
    is_open = np.append((status.eq(schema.OPEN) | status.isna()).to_numpy(bool), True)[at]
    close = np.append(opps["close_date"].to_numpy("datetime64[ns]").view(np.int64), nat)[at]
    entered = hx["entered"][keep]
    start = entered.view(np.int64)
    next_at = next_at[keep]
    end = np.where(next_at != nat, next_at, np.where(is_open, nat, close))
    observed = end != nat
    end = np.where(observed, end, ts.to_datetime64().astype("datetime64[ns]").view(np.int64))
    duration = ((end - start) // (86_400 * 10**9)).astype("float64")  # whole days, floored
    duration[start == nat] = np.nan
    ok = duration >= 0
    return {
        "hist": np.flatnonzero(keep)[ok],
        "code": hx["stage_open"][keep][ok],
        "days": duration[ok],
        "ended": observed[ok],
        "entered_at": entered[ok],
        "entered": _days(entered[ok]),
    }


def _visits(ds: Dataset, ts: pd.Timestamp, rows=None) -> pd.DataFrame:
    """Visits of open stages: ``opportunity_id, stage, entered_at, days, ended``.

    All of them, or those at positions ``rows`` of :func:`_visit_arrays`.
    """
    v = _visit_arrays(ds, ts)
    hx = _history_index(ds)
    pick = slice(None) if rows is None else rows
    h = v["hist"][pick]
    return pd.DataFrame(
        {
            "opportunity_id": pd.Series(
                hx["deal_names"].to_numpy()[hx["deal"][h]], dtype=hx["id_dtype"]
            ),
            "stage": hx["stage_text"].take(hx["order"][h]).reset_index(drop=True),
            "entered_at": v["entered_at"][pick],
            "days": v["days"][pick],
            "ended": v["ended"][pick],
        }
    )


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


@memoized(dates=("as_of", "start", "end"))
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
    v = _visit_arrays(ds, ts)
    inside = _in_window(v["entered"], lo, hi)
    rows = []
    for i, stage in enumerate(ds.stages.open):
        sub = inside & (v["code"] == i)
        rows.append({"stage": stage, **_km_row(v["days"][sub], v["ended"][sub])})
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


# Above this many visits, a bootstrap resample is drawn as counts per distinct (days,
# ended) value: the same distribution as resampling visits, at the cost of the distinct
# values (a few hundred) instead of the visits.
_CELL_BOOT_MIN = 5_000


def _cells(t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (t, e) pairs in lexicographic order, and how often each occurs.

    Whole-day durations (always, from :func:`_visits`) are coded as ``2 t + e`` and
    counted by a 1-d unique: the same cells in the same order as the row-wise unique,
    without its slow structured sort.
    """
    e = e.astype(bool)
    if len(t) and np.all(t == np.floor(t)) and np.abs(t).max() < 2.0**50:
        keys, counts = np.unique(t * 2 + e, return_counts=True)
        days = np.floor(keys / 2)
        return days, (keys - 2 * days) > 0, counts
    cells, counts = np.unique(np.column_stack([t, e.astype(float)]), axis=0, return_counts=True)
    return cells[:, 0], cells[:, 1].astype(bool), counts


def _boot_cells(t: np.ndarray, e: np.ndarray, n_boot: int, rng):
    """Distinct (t, e) cells and ``n_boot`` multinomial resamples of their counts."""
    days, ended, counts = _cells(t, e)
    w = rng.multinomial(len(t), counts / len(t), size=n_boot).astype(float)
    return days, ended, w


def _boot_median_diff(a, ea, b, eb, n_boot, rng) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the difference of KM medians (b - a)."""
    if len(a) < 5 or len(b) < 5 or n_boot <= 0:
        return np.nan, np.nan
    if max(len(a), len(b)) > _CELL_BOOT_MIN:
        a, ea, wa = _boot_cells(a, ea, n_boot, rng)
        b, eb, wb = _boot_cells(b, eb, n_boot, rng)
    else:
        wa = rng.multinomial(len(a), np.full(len(a), 1 / len(a)), size=n_boot).astype(float)
        wb = rng.multinomial(len(b), np.full(len(b), 1 / len(b)), size=n_boot).astype(float)
    diffs = _km_median_weighted(b, eb.astype(float), wb) - _km_median_weighted(
        a, ea.astype(float), wa
    )
    diffs = diffs[~np.isnan(diffs)]
    if len(diffs) < n_boot / 2:
        return np.nan, np.nan
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


@memoized()
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
    visits = _visit_arrays(ds, ts)
    vdur, vend = visits["days"], visits["ended"]
    in_cmp = _in_window(visits["entered"], w["cmp_start"], w["cmp_end"])
    in_cur = _in_window(visits["entered"], w["cur_start"], w["cur_end"])
    rng = np.random.default_rng(seed)
    rows = []
    for i, stage in enumerate(ds.stages.open):
        c0, c1 = conv["cmp"].iloc[i], conv["cur"].iloc[i]
        n0, n1 = int(c0["advanced"] + c0["dropped"]), int(c1["advanced"] + c1["dropped"])
        low, high = proportion_diff_interval(c0["advanced"], n0, c1["advanced"], n1)
        sub = visits["code"] == i
        a_mask = sub & in_cmp
        b_mask = sub & in_cur
        a, ea = vdur[a_mask], vend[a_mask]
        b, eb = vdur[b_mask], vend[b_mask]
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
    if not (out["conversion_change"].notna() | out["median_days_change"].notna()).any():
        raise InsufficientDataError(
            f"no stage has deals decided or stage visits begun in both {w['comparison']} "
            f"and {w['current']}, so there is nothing to compare; pick a longer period or "
            "another as_of"
        )
    conv_se = (out["conversion_change_high"] - out["conversion_change_low"]) / (2 * _Z95)
    dur_se = (out["median_days_change_high"] - out["median_days_change_low"]) / (2 * _Z95)
    z_conv = (-out["conversion_change"] / conv_se.where(conv_se > 0)).fillna(0.0)
    z_dur = (out["median_days_change"] / dur_se.where(dur_se > 0)).fillna(0.0)
    out["bottleneck"] = (out["conversion_change_high"] < 0) | (out["median_days_change_low"] > 0)
    out["severity"] = np.maximum(z_conv, z_dur)
    out = out.sort_values("severity", ascending=False, ignore_index=True)
    out.attrs.update(current=str(w["current"]), comparison=str(w["comparison"]))
    return out


@memoized()
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
    v = _visit_arrays(ds, ts)
    code = v["code"]
    thresholds = np.full(len(ds.stages.open), np.nan)
    for i in np.unique(code):
        g = code == i
        thresholds[i] = km_quantiles(v["days"][g], v["ended"][g], quantiles=(quantile,))[0]
    # each deal's last visit still in progress (visits are in deal order)
    running = np.flatnonzero(~v["ended"])
    deal = _history_index(ds)["deal"][v["hist"][running]]
    running = running[np.append(deal[1:] != deal[:-1], True)] if len(running) else running
    current = _visits(ds, ts, rows=running).assign(threshold=thresholds[code[running]])
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
