"""Sections of the lead-generation yield notebook (``02_lead_generation_yield``).

Each view is ``view(ds, *, as_of, **options) -> list`` of displayable items; the numbers
come from :mod:`pipeline_lib.lead_yield`, tables from :mod:`pipeline_lib.formatting`,
figures from :mod:`pipeline_lib.plotting`. A view raises
:class:`~pipeline_lib.errors.InsufficientDataError` when its analysis is impossible on
the data (no leads table, no lead costs...); the filter bar shows the message instead.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from .. import formatting, plotting
from .. import lead_yield as ly
from ..dataset import Dataset
from ..errors import InsufficientDataError

__all__ = [
    "funnel",
    "conversion_by_source",
    "cohorts",
    "time_to_convert",
    "leads_required",
    "cost_return",
    "open_leads",
]


# --------------------------------------------------------------------------- text helpers


def _pct(v) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"


def _ci(rate, low, high) -> str:
    """``"22.3% (20.1–24.7%)"``."""
    if rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "–"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return _pct(rate)
    return f"{rate:.1%} ({low * 100:.1f}–{high:.1%})"


def _num(v, decimals: int = 0) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "–"
    return f"{v:,.{decimals}f}"


def _range(v, low, high, decimals: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{_num(v, decimals)} ({_num(low, decimals)}–{_num(high, decimals)})"


def _date(v) -> str:
    return "–" if pd.isna(v) else f"{pd.Timestamp(v):%Y-%m-%d}"


def _plural(count, noun: str) -> str:
    """``"1 lead"``, ``"2,345 leads"``."""
    n = int(count)
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _fig(height: float, width: float = 9.0):
    return plt.subplots(figsize=(width, height))


def _total(frame: pd.DataFrame, col: str = "group") -> pd.Series:
    return frame[frame[col] == ly.ALL].iloc[0]


# --------------------------------------------------------------------------- sections


def funnel(ds: Dataset, *, as_of: pd.Timestamp, by: str | None = "source") -> list:
    """The funnel from lead to won deal: chart, step table, and counts per group.

    Parameters
    ----------
    ds : Dataset
    as_of : Timestamp
    by : str or None, default "source"
        Text column of the leads table for the per-group table.

    Returns
    -------
    list
        Markdown narrative, funnel Figure, step table, per-group table.

    Raises
    ------
    InsufficientDataError
        No leads table or no link from deals to leads.
    """
    total = ly.compute_funnel(ds, as_of=as_of)
    t = total.set_index("step")
    leads, won = int(t.loc["lead", "count"]), t.loc["won"]
    opp = t.loc["opportunity"]
    if int(opp["count"]) == 0:
        text = (
            f"**{_plural(leads, 'lead')}** as of {as_of:%Y-%m-%d}, and **none has become an "
            "opportunity yet** (the 95 % interval of the lead → opportunity rate is "
            f"0–{opp['cum_high']:.1%}), so there is no conversion to a won deal to measure."
        )
    else:
        text = (
            f"**{_plural(leads, 'lead')}** as of {as_of:%Y-%m-%d}: {int(opp['count']):,} "
            f"became an opportunity — {_ci(opp['cum_rate'], opp['cum_low'], opp['cum_high'])} "
            f"of leads — and **{int(won['count']):,} a won deal**: "
            f"{_ci(won['cum_rate'], won['cum_low'], won['cum_high'])} of leads, "
            f"{_ci(won['step_rate'], won['step_low'], won['step_high'])} of opportunities "
            "(95 % intervals). Recent leads may still convert: the cohort curves below "
            "correct for that."
        )
    items: list = [text, *total.attrs.get("notes", ())]
    fig, ax = _fig(0.6 + 0.55 * len(total))
    plotting.plot_funnel(total, ax=ax)
    items.append(fig)
    table = pd.DataFrame(
        {
            "step": total["label"],
            "leads": total["count"],
            "of previous step (95 % CI)": [
                _ci(r.step_rate, r.step_low, r.step_high) for r in total.itertuples()
            ],
            "of all leads (95 % CI)": [
                _ci(r.cum_rate, r.cum_low, r.cum_high) for r in total.itertuples()
            ],
        }
    )
    items.append(formatting.style_table(table, caption="Funnel steps, all leads"))
    if by is not None:
        per = ly.compute_funnel(ds, as_of=as_of, by=by)
        wide = per.pivot(index="group", columns="label", values="count")
        wide = wide[list(total["label"])].sort_values("Lead", ascending=False).reset_index()
        items.append(
            formatting.style_table(
                wide.rename(columns={"group": by}), caption=f"Leads reaching each step, by {by}"
            )
        )
    return items


def conversion_by_source(ds: Dataset, *, as_of: pd.Timestamp, by: str = "source") -> list:
    """Lead -> win conversion, leads per win and revenue per lead per group, with intervals.

    Returns
    -------
    list
        Markdown narrative, Figure, table.

    Raises
    ------
    InsufficientDataError
    """
    y = ly.compute_lead_yield(ds, as_of=as_of, by=by)
    groups = y[y["group"] != ly.ALL]
    tot = _total(y)
    if int(tot["wins"]) == 0:
        text = [
            f"**No lead has become a won deal yet** (0 of {_plural(tot['leads'], 'lead')}; "
            f"the 95 % interval of the lead → win rate is 0–{tot['win_high']:.1%}), so there "
            "is no leads-per-win figure or won revenue per lead; "
            f"{_plural(tot['opportunities'], 'lead')} became an opportunity."
        ]
    else:
        text = [
            "Across all leads it takes "
            f"**{_range(tot['leads_per_win'], tot['lpw_low'], tot['lpw_high'], 1)} leads per "
            f"win** ({_plural(tot['wins'], 'win')} from {_plural(tot['leads'], 'lead')}), and "
            f"a lead brings **{_num(tot['revenue_per_lead'])} {ds.base_currency}** of won "
            "revenue."
        ]
    ranked = groups[groups["wins"] > 0].sort_values("win_rate", ascending=False)
    if len(ranked) >= 2:
        best, worst = ranked.iloc[0], ranked.iloc[-1]
        text.append(
            f"**{best['group']}** converts best: "
            f"{_ci(best['win_rate'], best['win_low'], best['win_high'])} of "
            f"{int(best['leads']):,} leads win, {_num(best['leads_per_win'], 1)} leads per win; "
            f"**{worst['group']}** converts worst: "
            f"{_ci(worst['win_rate'], worst['win_low'], worst['win_high'])} of "
            f"{int(worst['leads']):,} leads, {_num(worst['leads_per_win'], 1)} leads per win."
        )
    if int(y["won_no_amount"].sum()):
        text.append(
            f"{int(tot['won_no_amount']):,} won deal(s) have no amount and are left out of revenue."
        )
    fig, ax = _fig(0.8 + 0.45 * len(groups))
    plotting.plot_conversion_by_group(
        y, rate="win", xlabel="leads that became a won deal (95 % interval)",
        title=f"Lead → win conversion by {by}", ax=ax,
    )  # fmt: skip
    table = pd.DataFrame(
        {
            by: y["group"],
            "leads": y["leads"],
            "opportunities": y["opportunities"],
            "lead → opportunity": [_ci(r.opp_rate, r.opp_low, r.opp_high) for r in y.itertuples()],
            "wins": y["wins"],
            "lead → win": [_ci(r.win_rate, r.win_low, r.win_high) for r in y.itertuples()],
            "leads per win": [
                _range(r.leads_per_win, r.lpw_low, r.lpw_high, 1) for r in y.itertuples()
            ],
            f"revenue per lead ({ds.base_currency})": y["revenue_per_lead"].round(0),
        }
    )
    caption = f"Conversion by {by} (95 % Wilson intervals)"
    return [" ".join(text), fig, formatting.style_table(table, caption=caption, decimals=0)]


def cohorts(
    ds: Dataset,
    *,
    as_of: pd.Timestamp,
    freq: str = "M",
    age_days: int = 90,
    by: str = "source",
    step: str = "opportunity",
) -> list:
    """Cohort conversion (heatmap and curves, censoring-aware) and conversion at a fixed age.

    Returns
    -------
    list
        Markdown, heatmap Figure, curves Figure, Markdown, table of conversion at age.

    Raises
    ------
    InsufficientDataError
    """
    step_name = ly.step_label(step).lower()
    cc = ly.compute_cohort_conversion(ds, as_of=as_of, freq=freq, step=step)
    at = ly.compute_conversion_at_age(ds, as_of=as_of, age_days=age_days, by=by, step=step)
    tot = _total(at)
    period = ly.COHORT_FREQS[freq]
    if pd.isna(tot["km_rate"]):
        text = (
            f"The share of leads that become an {step_name} within **{age_days} days** "
            f"cannot be estimated: of the {_plural(tot['leads'], 'lead')}, none is still "
            f"followed at {age_days} days (each converted earlier or is younger), and "
            "Kaplan–Meier says nothing beyond the longest follow-up; lower "
            "`conversion_age_days` or wait for the leads to age."
        )
    else:
        text = (
            f"Within **{age_days} days** of arriving, "
            f"{_ci(tot['km_rate'], tot['km_low'], tot['km_high'])} of leads become an "
            f"{step_name} (Kaplan–Meier over {_plural(tot['leads'], 'lead')}: a lead not "
            "converted yet counts only for the days it has lived)."
        )
    last = cc[cc["cohort"] == cc["cohort"].max()]
    seen = last[last["converted_share"].notna()]
    if len(seen) > 1:
        row = seen.iloc[-1]
        text += (
            f" The youngest {period}ly cohort ({row['cohort']:%Y-%m-%d}, "
            f"{int(row['leads']):,} leads, most only days old) has "
            f"{_pct(row['naive_rate'])} converted so far; "
            "censoring-aware, "
            f"{_ci(row['converted_share'], row['low'], row['high'])} convert within "
            f"{int(row['age_days'])} days."
        )
    n_cohorts = cc["cohort"].nunique()
    fig1, ax1 = _fig(1.2 + 0.25 * n_cohorts)
    plotting.plot_cohort_heatmap(cc, freq=freq, ax=ax1)
    fig2, ax2 = _fig(4.0)
    plotting.plot_cohort_curves(cc, ax=ax2)
    table = pd.DataFrame(
        {
            by: at["group"],
            "leads": at["leads"],
            f"converted by {age_days} d (KM, 95 % CI)": [
                _ci(r.km_rate, r.km_low, r.km_high) for r in at.itertuples()
            ],
            f"leads ≥ {age_days} d old": at["mature_leads"],
            f"of those, converted by {age_days} d": [
                _ci(r.mature_rate, r.mature_low, r.mature_high) for r in at.itertuples()
            ],
            "naive (converted so far / leads)": at["naive_rate"],
        }
    )
    caption = f"Conversion to {step_name} within {age_days} days of the lead, by {by}"
    return [
        text,
        fig1,
        fig2,
        formatting.style_table(
            table, caption=caption, percent=["naive (converted so far / leads)"]
        ),
    ]


def time_to_convert(
    ds: Dataset,
    *,
    as_of: pd.Timestamp,
    by: str = "source",
    step: str = "opportunity",
) -> list:
    """Days from lead to ``step`` (and to won) per group: box plot and quantile table.

    Returns
    -------
    list
        Markdown, Figure, table (to ``step``), table (to won).

    Raises
    ------
    InsufficientDataError
    """
    summary = ly.compute_time_to_convert(ds, as_of=as_of, step=step, by=by)
    lags = ly.compute_conversion_lags(ds, as_of=as_of, step=step, by=by)
    try:
        won = ly.compute_time_to_convert(ds, as_of=as_of, step="won", by=by)
    except InsufficientDataError as exc:
        won = None
        won_note = str(exc)
    groups = summary[summary["group"] != ly.ALL]
    tot = _total(summary)
    step_name = ly.step_label(step).lower()
    text = (
        f"Half of the leads that became an {step_name} did so within "
        f"**{_num(tot['median_days'])} days** (90 % within {_num(tot['p90_days'])})"
    )
    if won is not None:
        text += (
            f"; from lead to won deal the median is **{_num(_total(won)['median_days'])} days**."
        )
    else:
        text += ". " + won_note
    if len(groups) >= 2:
        fast, slow = groups.iloc[0], groups.iloc[-1]
        text += (
            f" {fast['group']} is fastest (median {_num(fast['median_days'])} days, "
            f"{_plural(fast['converted'], 'lead')}), {slow['group']} slowest "
            f"(median {_num(slow['median_days'])} days, {_plural(slow['converted'], 'lead')})."
        )
    fig, ax = _fig(0.8 + 0.45 * len(groups))
    plotting.plot_time_to_convert(
        lags, order=list(groups["group"]), clip_days=float(groups["p90_days"].max()) * 1.6, ax=ax
    )
    ax.set_title(f"Days from lead to {step_name}")

    def show(frame, what):
        out = frame.rename(
            columns={
                "group": by,
                "converted": "leads measured",
                "median_days": "median",
                "p25_days": "25 %",
                "p75_days": "75 %",
                "p90_days": "90 %",
                "mean_days": "mean",
            }
        )
        return formatting.style_table(out, caption=f"Days from lead to {what}", decimals=0)

    items = [text, fig, show(summary, step_name)]
    return items if won is None else [*items, show(won, "won deal")]


def leads_required(
    ds: Dataset,
    *,
    as_of: pd.Timestamp,
    target_wins: int = 50,
    target_date: str = "2026-06-30",
    target_revenue: float = 0.0,
    max_scale: float = 2.0,
    by: str = "source",
    mix_days: int = 365,
    horizon_days: int = 365,
) -> list:
    """The inverse funnel: leads needed for ``target_wins`` (or revenue) by ``target_date``.

    Parameters
    ----------
    ds : Dataset
    as_of : Timestamp
    target_wins : int, default 50
    target_date : str, default "2026-06-30"
    target_revenue : float, default 0.0
        When positive, also plan for this much won revenue.
    max_scale : float, default 2.0
        Cap of the optimal mixes (see :func:`pipeline_lib.lead_yield.compute_optimal_mix`).
    by : str, default "source"
    mix_days, horizon_days : int, default 365
        See :func:`pipeline_lib.lead_yield.compute_leads_required`.

    Returns
    -------
    list
        For each target: Markdown, Figure, table; then the optimal-mix Markdown, Figure
        and table.

    Raises
    ------
    InsufficientDataError
    ValueError
        A non-positive target or a target date not after ``as_of``.
    """
    targets = []
    if target_wins and target_wins > 0:
        targets.append({"target_wins": int(target_wins)})
    if target_revenue and target_revenue > 0:
        targets.append({"target_revenue": float(target_revenue)})
    if not targets:
        return ["Set `target_wins` or `target_revenue` above zero to compute the leads needed."]
    items: list = []
    first = None
    for target in targets:
        req = ly.compute_leads_required(
            ds,
            as_of=as_of,
            target_date=target_date,
            by=by,
            mix_days=mix_days,
            horizon_days=horizon_days,
            **target,
        )
        first = first if first is not None else req
        items.extend(_required_items(req, ds.base_currency, by))
    mix = ly.compute_optimal_mix(first, max_scale=max_scale)
    items.extend(_mix_items(mix, first, ds.base_currency, by))
    return items


def _required_items(req: pd.DataFrame, currency: str, by: str) -> list:
    a = req.attrs
    tot = _total(req)
    goal = (
        f"{a['target_value']:,.0f} wins"
        if a["target"] == "wins"
        else f"{a['target_value']:,.0f} {currency} of won revenue"
    )
    level = f"{a['confidence']:.0%}"
    text = (
        f"**{goal} by {_date(a['target_date'])}** need about "
        f"**{_num(tot['leads_needed'])} new leads** at the current mix "
        f"({level} range {_num(tot['leads_low'])}–{_num(tot['leads_high'])}, "
        f"simulated), at {_pct(tot['win_rate'])} of leads winning. They must enter by "
        f"**{_date(tot['enter_by'])}** so that {a['lag_quantile']:.0%} of their wins close "
        f"in time (lead → win takes {_num(tot['lag_days'])} days at the "
        f"{a['lag_quantile']:.0%} quantile)"
    )
    if a["late"]:
        text += (
            ": that date is already past, so even leads entering today will close part of "
            "their wins after the target date."
        )
    else:
        text += (
            f": {_num(tot['needed_per_week'], 1)} leads a week, against "
            f"{_num(tot['current_per_week'], 1)} a week over the last {a['mix_days']} days "
            f"({_num(tot['leads_at_current_pace'])} leads by then at that pace)."
        )
    if a["has_costs"] and pd.notna(tot["cost"]):
        text += f" At recent cost per lead that is about **{_num(tot['cost'])} {currency}**."
    fig, ax = _fig(0.8 + 0.45 * (len(req) - 1))
    plotting.plot_leads_required(req, ax=ax)
    ax.set_title(f"Leads required for {goal} by {_date(a['target_date'])}")
    table = pd.DataFrame(
        {
            by: req["group"],
            "share of leads": req["mix_share"],
            "lead → win (KM)": [_ci(r.win_rate, r.win_low, r.win_high) for r in req.itertuples()],
            f"leads needed ({level} range)": [
                _range(r.leads_needed, r.leads_low, r.leads_high) for r in req.itertuples()
            ],
            "enter by": req["enter_by"],
            "leads / week needed": req["needed_per_week"].round(1),
            f"leads / week, last {a['mix_days']} d": req["current_per_week"].round(1),
            f"cost ({currency})": req["cost"].round(0),
        }
    )
    if not a["has_costs"]:
        table = table.drop(columns=f"cost ({currency})")
    caption = f"Leads required for {goal} by {_date(a['target_date'])}"
    styled = formatting.style_table(table, caption=caption, percent=["share of leads"], decimals=1)
    return [text, fig, styled]


def _mix_items(mix: pd.DataFrame, req: pd.DataFrame, currency: str, by: str) -> list:
    tot = _total(mix)
    scale = mix.attrs["max_scale"]
    text = (
        f"**Mix needing fewest leads** (no {by} more than {scale:g}× its current-mix "
        f"volume): {_num(tot['fewest_leads'])} leads instead of {_num(tot['current_leads'])}."
    )
    if req.attrs["has_costs"] and pd.notna(tot["lowest_cost_cost"]):
        text += (
            f" **Lowest-cost mix**: {_num(tot['lowest_cost_cost'])} {currency} instead of "
            f"{_num(tot['current_cost'])} {currency} ({_num(tot['lowest_cost_leads'])} leads)."
        )
    else:
        text += " Without lead costs the lowest-cost mix cannot be computed."
    if mix.attrs["short"]:
        text += (
            f" Even at {scale:g}× the best {by}s cannot meet the target alone; "
            "the rest stays unplanned — raise the cap or the mix."
        )
    fig, ax = _fig(0.8 + 0.55 * (len(mix) - 1))
    plotting.plot_optimal_mix(mix, ax=ax)
    shown = mix.rename(
        columns={
            "group": by,
            "current_leads": "current mix: leads",
            "current_cost": f"current mix: cost ({currency})",
            "fewest_leads": "fewest leads: leads",
            "fewest_leads_cost": f"fewest leads: cost ({currency})",
            "lowest_cost_leads": "lowest cost: leads",
            "lowest_cost_cost": f"lowest cost: cost ({currency})",
        }
    )
    if not req.attrs["has_costs"]:
        shown = shown[[c for c in shown.columns if "cost" not in c or c == by]]
    styled = formatting.style_table(shown, caption="Lead mix options", decimals=0)
    return [text, fig, styled]


def cost_return(ds: Dataset, *, as_of: pd.Timestamp, freq: str = "Q", periods: int = 4) -> list:
    """Lead spend against leads, opportunities, wins and revenue per source (and period).

    Returns
    -------
    list
        Markdown, cost-per-win Figure, table per source, table of the last ``periods``
        periods.

    Raises
    ------
    InsufficientDataError
        No lead_costs table (or no leads table).
    """
    whole = ly.compute_cost_return(ds, as_of=as_of, freq=None)
    by_period = ly.compute_cost_return(ds, as_of=as_of, freq=freq)
    tot = _total(whole, "source")
    src = whole[(whole["source"] != ly.ALL) & whole["cost_per_win"].notna()]
    cur = ds.base_currency
    notes = list(whole.attrs.get("notes", ()))
    if notes and pd.isna(tot["cost_per_win"]):  # a filter the spend is not recorded by
        text = (
            f"**{_num(tot['cost'])} {cur}** of lead spend brought "
            f"{_plural(tot['leads'], 'lead')} ({_num(tot['cost_per_lead'])} {cur} per lead); "
            f"this selection won {_plural(tot['wins'], 'deal')} and {_num(tot['revenue'])} "
            f"{cur} of revenue. " + " ".join(notes)
        )
    elif int(tot["wins"]) == 0:
        text = (
            f"**{_num(tot['cost'])} {cur}** of lead spend brought "
            f"{_plural(tot['leads'], 'lead')} ({_num(tot['cost_per_lead'])} {cur} per lead) "
            "but **no won deal yet**, so there is no cost per win and no return on the spend "
            "to report."
        )
    else:
        text = (
            f"**{_num(tot['cost'])} {cur}** of lead spend brought "
            f"{_plural(tot['leads'], 'lead')} ({_num(tot['cost_per_lead'])} {cur} per lead), "
            f"{_plural(tot['wins'], 'win')} "
            f"({_range(tot['cost_per_win'], tot['cpw_low'], tot['cpw_high'])} {cur} per win) "
            f"and {_num(tot['revenue'])} {cur} of won revenue: "
            f"**{_num(tot['revenue_per_cost'], 1)}× the spend**."
        )
    if len(src) >= 2:
        best = src.sort_values("cost_per_win").iloc[0]
        worst = src.sort_values("cost_per_win").iloc[-1]
        text += (
            f" {best['source']} is the cheapest per win ({_num(best['cost_per_win'])} {cur}), "
            f"{worst['source']} the dearest ({_num(worst['cost_per_win'])} {cur})."
        )
    if int(tot["wins"]) and not notes:
        text += " Wins of recent periods are still coming in, so their cost per win reads high."
    figures = []
    if len(src):  # no cost per win to draw when none could be worked out
        fig, ax = _fig(0.8 + 0.45 * len(src))
        plotting.plot_cost_per_win(whole, currency=cur, ax=ax)
        figures.append(fig)
    names = {
        "cost": f"spend ({cur})",
        "cost_per_lead": "per lead",
        "cost_per_opportunity": "per opportunity",
        "cost_per_win": "per win",
        "revenue": f"revenue ({cur})",
        "revenue_per_cost": "revenue / spend",
    }
    table = whole.drop(columns=["period", "cpw_low", "cpw_high"]).rename(columns=names)
    last = sorted(by_period["period"].dropna().unique())[-periods:]
    recent = by_period[by_period["period"].isin(last)]
    recent = recent.drop(columns=["cpw_low", "cpw_high"]).rename(columns=names)
    return [
        text,
        *figures,
        formatting.style_table(table, caption="Cost and return by source, all history"),
        formatting.style_table(
            recent,
            caption=f"Cost and return by source, last {len(last)} {ly.COHORT_FREQS[freq]}s "
            "(leads created in the period)",
        ),
    ]


def open_leads(
    ds: Dataset,
    *,
    as_of: pd.Timestamp,
    by: str = "source",
    max_rows: int = 20,
    horizon_days: int = 365,
) -> list:
    """Leads not yet an opportunity, aged against their source's usual time to convert.

    Returns
    -------
    list
        Markdown, Figure, summary table, table of the stale leads most worth a follow-up.

    Raises
    ------
    InsufficientDataError
    """
    leads = ly.compute_open_leads(ds, as_of=as_of, by=by, horizon_days=horizon_days)
    summary = ly.compute_open_lead_summary(leads)
    tot = _total(summary)
    if int(tot["open_leads"]) == 0:
        return ["Every lead has become an opportunity: no prospect is waiting in the funnel."]
    funnel = ly.compute_funnel(ds, as_of=as_of).set_index("step")
    if int(funnel.loc["won", "count"]) == 0:
        return [
            f"**{_plural(tot['open_leads'], 'lead')}** have not become an opportunity yet "
            f"({int(tot['fresh']):,} fresh, {int(tot['ageing']):,} ageing, "
            f"{int(tot['stale']):,} stale, {int(tot['expired']):,} expired). No lead has "
            "become a won deal yet, so the wins still to expect from them cannot be "
            "estimated and they cannot be ranked by their chance of a win."
        ]
    text = (
        f"**{int(tot['open_leads']):,} leads** have not become an opportunity yet: "
        f"{int(tot['fresh']):,} fresh, {int(tot['ageing']):,} ageing, "
        f"**{int(tot['stale']):,} stale** (older than 90 % of their source's conversions "
        f"took, but under {horizon_days} days) and {int(tot['expired']):,} expired. "
        f"Given their ages they should still bring about "
        f"**{_range(tot['expected_wins'], tot['wins_low'], tot['wins_high'])} wins** "
        f"({_num(tot['expected_opportunities'])} opportunities)."
    )
    fig, ax = _fig(0.8 + 0.45 * (len(summary) - 1))
    plotting.plot_open_leads(summary, ax=ax)
    shown = summary.rename(columns={"group": by, "expected_opportunities": "exp. opportunities"})
    shown["expected wins (95 % range)"] = [
        _range(r.expected_wins, r.wins_low, r.wins_high, 1) for r in summary.itertuples()
    ]
    shown = shown.drop(columns=["expected_wins", "wins_low", "wins_high"])
    stale = leads[leads["state"] == "stale"]
    stale = stale.drop(columns="state").rename(
        columns={
            "group": by,
            "age_days": "age (days)",
            "last_step": "last step",
            "usual_days": "usual days to convert",
            "stale_after_days": "stale after (days)",
            "p_convert": "chance of opportunity",
            "p_win": "chance of win",
        }
    )
    items = [text, fig, formatting.style_table(shown, caption="Open leads by state", decimals=1)]
    if len(stale):
        items.append(
            formatting.style_table(
                stale,
                caption="Stale leads most worth a follow-up (highest chance of a win first)",
                percent=["chance of opportunity", "chance of win"],
                decimals=0,
                max_rows=max_rows,
            )
        )
    else:
        items.append("No stale lead.")
    return items
