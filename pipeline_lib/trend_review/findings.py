"""The most important findings of the review, as plain sentences with their numbers."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
from scipy import stats as st

from .. import schema
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ._common import _snap, _windows
from .change_points import compute_change_points
from .comparisons import compute_segment_changes
from .lost_reasons import compute_lost_reason_trends
from .owners import compute_owner_performance
from .stages import compute_bottlenecks, compute_stalled_deals
from .velocity import compute_velocity, compute_velocity_decomposition
from .what_worked import compute_simpsons_check, compute_what_worked

__all__ = ["compute_findings"]


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


@memoized()
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
        if top["shrunk_win_rate"] - bottom["shrunk_win_rate"] < 0.005:
            return  # no spread between reps (e.g. every closed deal won, or every one lost)
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
        status = ds.opportunities["status"]
        won, lost = int(status.eq(schema.WON).sum()), int(status.eq(schema.LOST).sum())
        if won + lost == 0:
            why = f"no deal was won or lost up to {ts.date()}"
        elif won == 0 or lost == 0:
            which = "the only deal" if won + lost == 1 else f"every one of the {won + lost:,} deals"
            why = (
                f"{which} closed up to {ts.date()} was {'lost' if won == 0 else 'won'}, so "
                "win rates, velocity and reps cannot be compared"
            )
        else:
            why = (
                f"the {won + lost:,} deals closed up to {ts.date()} are too few to show a "
                "clear change, difference or bottleneck"
            )
        raise InsufficientDataError(
            f"no finding could be made: {why}; the findings are drawn from closed deals "
            "(see the sections below)"
        )
    frame = pd.DataFrame(cands, columns=["topic", "score", "finding"])
    frame = frame.sort_values("score", ascending=False, kind="stable")
    frame = frame.drop_duplicates("topic").head(n).reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame[["rank", "topic", "finding", "score"]]
