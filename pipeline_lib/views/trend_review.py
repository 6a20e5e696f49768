"""Sections of the trend-review notebook (``04_trend_review``).

Each view computes with :mod:`pipeline_lib.trend_review`, formats with
:mod:`pipeline_lib.formatting` and draws with :mod:`pipeline_lib.plotting`. Views that need
the stage history raise :class:`~pipeline_lib.errors.InsufficientDataError` without it, so
the filter bar shows a note instead of the section.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .. import formatting, plotting, schema
from .. import trend_review as tr
from ..dataset import Dataset

__all__ = [
    "findings",
    "data_coverage",
    "stages",
    "bottlenecks",
    "pipeline_flow",
    "stalled_deals",
    "pushed_deals",
    "velocity",
    "trends",
    "period_comparison",
    "segment_trends",
    "owners",
    "lost_reasons",
    "what_worked",
]

_SEGMENTS = ("product", "team", "source")


def _money(value: float, currency: str) -> str:
    return f"{currency} {value:,.0f}"


def _window_text(as_of, period: str, comparison: str) -> str:
    w = tr.compute_review_windows(as_of=as_of, period=period, comparison=comparison)
    cur, cmp_ = w.iloc[0], w.iloc[1]
    return (
        f"Review window **{cur['label']}** ({cur['start']:%Y-%m-%d} – {cur['end']:%Y-%m-%d}), "
        f"compared with **{cmp_['label']}** ({cmp_['start']:%Y-%m-%d} – {cmp_['end']:%Y-%m-%d})."
    )


def findings(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    comparison: str = "previous",
    segments=_SEGMENTS,
) -> list:
    """The five most important findings, as numbered sentences."""
    f = tr.compute_findings(
        ds, as_of=as_of, period=period, comparison=comparison, by=tuple(segments)
    )
    lines = [f"{r.rank}. {r.finding}" for r in f.itertuples()]
    head = _window_text(as_of, period, comparison)
    return [head + "\n\n" + "\n".join(lines)]


def data_coverage(ds: Dataset, *, as_of) -> list:
    """Which sections need the stage history, and whether it is there."""
    hist = ds.stage_history
    if hist is not None and len(hist):
        n = hist["opportunity_id"].nunique()
        return [
            f"Stage history: {len(hist):,} stage change(s) of {n:,} deal(s) — the sections "
            "below that need it can use it."
        ]
    if hist is not None:
        return [
            "The stage history has no stage change of the deals shown, so stage conversion, "
            "time in stage, bottlenecks, pipeline flow, pushed and stalled deals have "
            "nothing to measure here."
        ]
    needs = "\n".join(f"- **{k}**: {v}" for k, v in tr.STAGE_HISTORY_ANALYSES.items())
    return [
        "**No stage history in this data source.** These sections need it (one row per stage "
        "change with `opportunity_id`, `stage`, `entered_at`) and say so below:\n\n"
        + needs
        + "\n\nVelocity, trends, change points, period comparisons, owner rankings, lost "
        "reasons and what worked use the opportunities alone and are shown in full."
    ]


def stages(ds: Dataset, *, as_of) -> list:
    """Stage funnel with conversion, and time in stage (median, p75, p90)."""
    conv = tr.compute_stage_conversion(ds, as_of=as_of)
    dur = tr.compute_stage_durations(ds, as_of=as_of)
    fig1, ax1 = plt.subplots(figsize=(9, 0.8 + 0.5 * len(conv)))
    plotting.plot_stage_funnel(conv, ax=ax1)
    fig2, ax2 = plt.subplots(figsize=(9, 0.8 + 0.5 * len(dur)))
    plotting.plot_stage_durations(dur, ax=ax2)
    decided = conv.loc[conv["conversion"].notna()]
    timed = dur.loc[dur["median_days"].notna()]
    if len(decided):
        worst = decided.loc[decided["conversion"].idxmin()]
        text = (
            f"Lowest conversion: **{worst['stage']}** → {worst['next_stage']}, "
            f"{worst['conversion']:.0%} ({worst['ci_low']:.0%}–{worst['ci_high']:.0%}) of "
            f"{worst['advanced'] + worst['dropped']:,} decided deals."
        )
    else:
        text = "No deal has moved on from or been lost at any stage yet: no conversion to show."
    if len(timed):
        slow = timed.loc[timed["median_days"].idxmax()]
        p90 = (
            f"p90 {slow['p90_days']:.0f}"
            if pd.notna(slow["p90_days"])
            else "p90 not known yet: too many visits in progress"
        )
        text += (
            f" Longest stage: **{slow['stage']}**, median {slow['median_days']:.0f} days "
            f"({p90}) over {slow['visits']:,} visits, {slow['in_progress']:,} still in "
            "progress (censored)."
        )
    else:
        text += " No stage has a median time yet: too many visits are still in progress."
    no_hist = conv.attrs.get("no_history", 0)
    if no_hist:
        text += f" {no_hist:,} deal(s) have no stage history and are placed by their current stage."
    return [
        text,
        fig1,
        formatting.style_table(
            conv, percent=("conversion", "ci_low", "ci_high", "reached_share"), caption="Conversion"
        ),
        fig2,
        formatting.style_table(dur, decimals=0, caption="Days in stage (Kaplan–Meier)"),
    ]


def bottlenecks(
    ds: Dataset, *, as_of, period: str = "quarter", comparison: str = "previous"
) -> list:
    """Stages whose conversion fell or duration rose against the comparison window."""
    b = tr.compute_bottlenecks(ds, as_of=as_of, period=period, comparison=comparison)
    hit = b[b["bottleneck"]]
    compared = b["conversion_change"].notna() | b["median_days_change"].notna()
    if hit.empty:
        text = (
            f"No stage got clearly worse from {b.attrs['comparison']} to {b.attrs['current']}: "
            "every change in conversion and median days that could be measured is within its "
            "95 % interval of zero."
        )
        if not compared.all():
            text += (
                f" {int((~compared).sum())} of {len(b)} stages had no deal decided and no "
                "visit begun in one of the two periods and are not compared."
            )
    else:
        text = "Bottlenecks: " + "; ".join(
            f"**{r.stage}** (conversion {r.conversion_before:.0%} → {r.conversion_now:.0%}, "
            f"median {r.median_days_before:.0f} → {r.median_days_now:.0f} days)"
            for r in hit.itertuples()
        )
    shown = b.drop(columns=["severity", "visits_before", "visits_now"])
    pct = [c for c in shown.columns if c.startswith("conversion")]
    return [
        text,
        plotting.plot_bottlenecks(b),
        formatting.style_table(shown, percent=pct, decimals=1),
    ]


def pipeline_flow(
    ds: Dataset, *, as_of, period: str = "quarter", comparison: str = "previous"
) -> list:
    """How the pipeline due in the review window moved from its start to its end."""
    w = tr.compute_review_windows(as_of=as_of, period=period, comparison=comparison).iloc[0]
    start = w["start"] - pd.Timedelta(days=1)
    flow = tr.compute_pipeline_flow(ds, as_of=as_of, start=start, end=w["end"])
    cur = ds.base_currency
    s, e = flow.iloc[0], flow.iloc[-1]
    if not flow["deals"].any() and not flow["amount"].any():
        return [
            f"No deal was open and expected to close by {w['end']:%Y-%m-%d}, on "
            f"{start:%Y-%m-%d} or on {w['end']:%Y-%m-%d}, and none was created, won, lost or "
            "moved in the window: there is no pipeline flow to show."
        ]
    text = (
        f"Pipeline expected to close by {w['end']:%Y-%m-%d}: {_money(s['amount'], cur)} in "
        f"{s['deals']:,} deals on {start:%Y-%m-%d}, {_money(e['amount'], cur)} in "
        f"{e['deals']:,} deals on {w['end']:%Y-%m-%d}. The identity end = start + created + "
        "pulled in − won − lost − pushed out + amount changes holds exactly."
    )
    missing = flow.attrs.get("missing_amount", 0)
    if missing:
        text += f" {missing:,} deal(s) without an amount count as 0."
    fig, ax = plt.subplots(figsize=(10, 4.5))
    plotting.plot_pipeline_flow(flow, currency=cur, ax=ax)
    return [text, fig, formatting.style_table(flow.drop(columns="kind"), decimals=0)]


def stalled_deals(ds: Dataset, *, as_of, max_rows: int = 15) -> list:
    """Open deals longer in their stage than 90 % of that stage's visits."""
    s = tr.compute_stalled_deals(ds, as_of=as_of)
    if s.empty and not ds.opportunities["status"].eq(schema.OPEN).any():
        return ["No deal is open, so none can be stalled."]
    if s.empty:
        return ["No open deal has been in its stage longer than that stage's p90."]
    cur = ds.base_currency
    text = f"**{len(s):,} stalled deals** worth {_money(s['amount'].sum(), cur)}, largest first."
    shown = s.drop(columns=["opportunity_id", "days_over"], errors="ignore")
    return [text, formatting.style_table(shown, decimals=0, max_rows=max_rows)]


def pushed_deals(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    comparison: str = "previous",
    max_rows: int = 15,
) -> list:
    """Push rate per period, and the deals pushed in the review window."""
    rate = tr.compute_push_rate(ds, as_of=as_of, period=period)
    w = tr.compute_review_windows(as_of=as_of, period=period, comparison=comparison).iloc[0]
    pushed = tr.compute_pushed_deals(ds, as_of=as_of, start=w["start"], end=w["end"])
    row = rate[rate["period"] == w["label"]]
    items = []
    if len(row) and row.iloc[0]["open_deals"] == 0:
        items.append(f"No deal was open in {w['label']}, so there is no push rate for it.")
    elif len(row):
        r = row.iloc[0]
        text = (
            f"In {w['label']}, **{r['pushed']:,} of {r['open_deals']:,} open deals "
            f"({r['push_rate']:.0%}, {r['ci_low']:.0%}–{r['ci_high']:.0%})** had their expected "
            "close date moved later"
        )
        if r["pushed"] and pd.notna(r["mean_days_pushed"]):
            text += f", by {r['mean_days_pushed']:.0f} days on average"
        items.append(text + ".")
    fig, ax = plt.subplots(figsize=(9, 3.8))
    plotting.plot_push_rate(rate, ax=ax)
    items.append(fig)
    if pushed.empty:
        items.append(f"No deal was pushed in {w['label']}.")
    else:
        shown = pushed.drop(columns=["opportunity_id", "team", "last_push"], errors="ignore")
        items.append(
            formatting.style_table(
                shown, decimals=0, max_rows=max_rows, caption=f"Deals pushed in {w['label']}"
            )
        )
    return items


def velocity(ds: Dataset, *, as_of, period: str = "quarter", comparison: str = "previous") -> list:
    """Sales velocity per period and what drove its change."""
    v = tr.compute_velocity(ds, as_of=as_of, period=period)
    w = tr.compute_review_windows(as_of=as_of, period=period, comparison=comparison)
    cur_label, cmp_label = w["label"].iloc[0], w["label"].iloc[1]
    d = tr.compute_velocity_decomposition(v, current=cur_label, previous=cmp_label)
    total = d.iloc[-1]
    cur = ds.base_currency
    text = (
        "Velocity = opportunities × win rate × average won deal ÷ cycle days. "
        f"{cmp_label}: {_money(total['previous'], cur)}/day → {cur_label}: "
        f"{_money(total['current'], cur)}/day ({total['contribution']:+,.0f}); the parts "
        "below add up exactly to the change (log-mean Divisia split)."
    )
    fig, ax = plt.subplots(figsize=(9, 4))
    plotting.plot_velocity_decomposition(d, currency=cur, ax=ax)
    return [
        text,
        fig,
        formatting.style_table(d, percent=("share",), decimals=3),
        formatting.style_table(
            v.drop(columns=["period_start"]),
            percent=("win_rate", "ci_low", "ci_high"),
            decimals=1,
            caption="Velocity per period",
        ),
    ]


def trends(ds: Dataset, *, as_of, period: str = "quarter") -> list:
    """Win rate, cycle, deal size and volume per period, with change points."""
    t = tr.compute_trends(ds, as_of=as_of, period=period)
    cp = tr.compute_change_points(ds, as_of=as_of, period=period)
    fig = plotting.plot_trends(t, cp, currency=ds.base_currency)
    with_deals = int(t["closed"].gt(0).sum())
    if cp.empty and with_deals < 4:
        text = (
            f"Closed deals fall in only {with_deals} {period}(s): too few to test for change "
            "points (at least 4 are needed, two on each side of a change); the chart shows "
            "the values per period."
        )
    elif cp.empty:
        text = "No overall change point: no metric shifted level beyond chance."
    else:
        text = "Overall change points: " + "; ".join(
            f"{r.metric_label} from {r.period} ({r.before:,.3g} → {r.after:,.3g}, q = "
            f"{r.q_value:.3f})"
            for r in cp.itertuples()
        )
    return [text, fig]


def period_comparison(
    ds: Dataset, *, as_of, period: str = "quarter", comparison: str = "previous"
) -> list:
    """Headline metrics, current window vs comparison window, with 95 % intervals."""
    c = tr.compute_period_comparison(ds, as_of=as_of, period=period, comparison=comparison)
    shown = _format_comparison(c, ds.base_currency)
    return [
        formatting.style_table(
            shown, caption=f"{c.attrs['comparison']} → {c.attrs['current']} (95 % intervals)"
        )
    ]


def _format_comparison(c: pd.DataFrame, currency: str) -> pd.DataFrame:
    """Each metric's numbers as text in its own unit (formatting only)."""

    def fmt(metric: str, v: float) -> str:
        if pd.isna(v):
            return "–"
        if metric == "win rate":
            return f"{v * 100:.1f}%" if abs(v) >= 0.001 else "0.0%"
        if metric in ("average won deal", "won revenue"):
            return f"{currency} {round(v):,}"
        if metric.startswith("mean sales cycle"):
            return f"{v:,.1f} days"
        return f"{round(v):,}"

    out = pd.DataFrame({"metric": c["metric"]})
    for col in ("before", "now", "change"):
        out[col] = [fmt(m, v) for m, v in zip(c["metric"], c[col], strict=True)]
    out["95 % interval"] = [
        f"{fmt(m, lo)} to {fmt(m, hi)}"
        for m, lo, hi in zip(c["metric"], c["ci_low"], c["ci_high"], strict=True)
    ]
    out["n before"], out["n now"] = c["n_before"], c["n_now"]
    out["p-value"] = c["p_value"].round(3)
    return out


def segment_trends(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    comparison: str = "previous",
    segments=_SEGMENTS,
) -> list:
    """Change points and period-over-period win-rate changes per segment (BH-controlled)."""
    segments = tuple(segments)
    cp = tr.compute_change_points(
        ds, as_of=as_of, period=period, metrics=("win_rate", "cycle_days"), by=segments
    )
    seg_cp = cp[cp["segment_column"] != "all"]
    items = []
    if seg_cp.empty:
        items.append("No segment shows a significant change point (false-discovery rate 5 %).")
    else:
        items.append(
            f"{len(seg_cp)} change point(s) across {len(segments)} segment columns, false-"
            "discovery rate controlled at 5 % (Benjamini–Hochberg):"
        )
        items.append(
            formatting.style_table(seg_cp.drop(columns=["metric", "period_start"]), decimals=3)
        )
        col = seg_cp["segment_column"].value_counts().index[0]
        t = tr.compute_trends(ds, as_of=as_of, period=period, by=col)
        fig, ax = plt.subplots(figsize=(10, 4))
        plotting.plot_segment_win_rates(t, segment_column=col, changes=cp, ax=ax)
        items.append(fig)
    sc = tr.compute_segment_changes(
        ds, as_of=as_of, period=period, comparison=comparison, by=segments
    )
    n_sig = int(sc["significant"].sum())
    items.append(
        f"Win rate {sc.attrs['comparison']} → {sc.attrs['current']} in {len(sc)} segment(s): "
        f"{n_sig} significant after Benjamini–Hochberg (q ≤ 0.1)."
    )
    items.append(
        formatting.style_table(
            sc,
            percent=("win_rate_before", "win_rate_now", "change", "ci_low", "ci_high"),
            decimals=3,
        )
    )
    return items


def owners(ds: Dataset, *, as_of, window_days: int = 365) -> list:
    """Reps ranked by win rate shrunk towards the team-wide rate (empirical Bayes)."""
    o = tr.compute_owner_performance(ds, as_of=as_of, window_days=window_days)
    a, b = o.attrs["prior"]
    overall = a / (a + b)
    if len(o) < 2 or overall in (0.0, 1.0):
        why = (
            f"only {o['owner'].iloc[0]} closed deals"
            if len(o) < 2
            else f"every deal closed was {'won' if overall == 1.0 else 'lost'}"
        )
        text = (
            f"Deals closed in the last {window_days} days. Reps cannot be told apart: {why}, "
            "so there is no spread between reps to learn and no shrinkage; the table shows "
            "each rep's own win rate."
        )
    else:
        text = (
            f"Deals closed in the last {window_days} days. Each rep's win rate is pulled "
            f"towards the overall {overall:.0%} by a prior worth {a + b:.0f} deals: a rep "
            "with few deals moves most, so small samples cannot top the ranking."
        )
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.4 * len(o)))
    plotting.plot_owner_shrinkage(o, ax=ax)
    pct = ("win_rate", "ci_low", "ci_high", "shrunk_win_rate", "shrunk_low", "shrunk_high")
    return [text, fig, formatting.style_table(o, percent=pct, decimals=0)]


def lost_reasons(ds: Dataset, *, as_of, period: str = "quarter") -> list:
    """Lost reasons over time and which ones grow or shrink."""
    lost = tr.compute_lost_reasons(ds, as_of=as_of, period=period)
    trend = tr.compute_lost_reason_trends(ds, as_of=as_of, period=period)
    fig, ax = plt.subplots(figsize=(10, 4))
    plotting.plot_lost_reasons(lost, ax=ax)
    pct = ("share", "share_first_year", "share_last_year", "slope_per_year")
    return [
        fig,
        formatting.style_table(
            trend, percent=pct, decimals=3, caption="Trend per reason (Cochran–Armitage)"
        ),
    ]


def what_worked(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    comparison: str = "previous",
    segments=_SEGMENTS,
    max_rows: int = 15,
) -> list:
    """Segments with clearly better win rate or shorter cycle, and a Simpson's-paradox check."""
    segments = tuple(segments)
    ww = tr.compute_what_worked(ds, as_of=as_of, by=segments)
    good = ww[ww["better"]]
    items = [
        f"{len(ww)} comparisons of a segment with the rest of the deals closed in the last two "
        f"years; **{len(good)}** are clearly better (Benjamini–Hochberg q ≤ 0.1). Win-rate "
        "differences are in points (effect size Cohen's h); cycle differences are relative "
        "(geometric means, effect size Cohen's d on log days)."
    ]
    fig, axes = plt.subplots(2, 1, figsize=(9, 9))
    plotting.plot_what_worked(ww, metric="win rate", ax=axes[0])
    plotting.plot_what_worked(ww, metric="cycle", ax=axes[1])
    fig.tight_layout()
    items.append(fig)
    if len(good):
        items.append(formatting.style_table(good, decimals=3, max_rows=max_rows))
    sp = tr.compute_simpsons_check(
        ds, as_of=as_of, period=period, comparison=comparison, by=segments
    )
    rev = sp[sp["reversal"]]
    if rev.empty and sp["aggregate_change"].abs().max() < 0.0005:
        items.append(
            f"Simpson's-paradox check: the overall win rate did not change "
            f"({sp['aggregate_before'].iloc[0]:.0%} in {sp.attrs['comparison']} and "
            f"{sp['aggregate_now'].iloc[0]:.0%} in {sp.attrs['current']}), so there is no "
            "change to reverse within segments."
        )
    elif rev.empty:
        items.append(
            "Simpson's-paradox check: the overall win-rate change points the same way "
            "within every segment column (no reversal)."
        )
    else:
        items.append(
            "**Simpson's paradox:** within "
            + ", ".join(rev["segment_column"])
            + " the win-rate change has the opposite sign of the overall change — the overall "
            "movement comes from the mix of deals."
        )
    items.append(
        formatting.style_table(
            sp,
            percent=(
                "aggregate_before",
                "aggregate_now",
                "aggregate_change",
                "within_change",
                "mix_change",
            ),
            caption=f"Win rate {sp.attrs['comparison']} → {sp.attrs['current']}: within vs mix",
        )
    )
    return items
