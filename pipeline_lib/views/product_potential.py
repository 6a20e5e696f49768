"""Sections of the product-potential notebook (``01_product_potential``).

Each view computes with :mod:`pipeline_lib.product_potential`, formats with
:mod:`pipeline_lib.formatting` and draws with :mod:`pipeline_lib.plotting`; the private
helpers below only choose, rename and spell out columns for display. Options a view does
not use itself go to the analysis function as they are (``**options``), so their defaults
live in one place: the analysis module.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .. import formatting, plotting
from .. import product_potential as pp
from ..dataset import Dataset
from ..errors import InsufficientDataError

__all__ = [
    "overview",
    "scorecard",
    "potential_map",
    "pipeline_weights",
    "what_if",
    "discount_evidence",
    "affinity",
    "white_space",
    "recommendations",
]


def _rate_text(rate, low, high) -> list[str]:
    return [
        "–" if pd.isna(r) else f"{r:.0%} ({lo:.0%}–{hi:.0%})"
        for r, lo, hi in zip(rate, low, high, strict=True)
    ]


def _pts_text(values) -> list[str]:
    return ["–" if pd.isna(v) else f"{v * 100:+.0f} pts" for v in values]


def _scorecard_table(card: pd.DataFrame, group_by: str, currency: str) -> pd.DataFrame:
    money = f" ({currency})" if currency else ""
    return pd.DataFrame(
        {
            group_by: card[group_by],
            "opportunities created": card["opportunities"],
            "won": card["won"],
            "lost": card["lost"],
            "open": card["open"],
            "win rate (95 % interval)": _rate_text(
                card["win_rate"], card["win_rate_low"], card["win_rate_high"]
            ),
            f"won revenue{money}": card["won_revenue"],
            "share of revenue": card["revenue_share"],
            "avg won deal": card["avg_won_deal"],
            "median won deal": card["median_won_deal"],
            "discount off list": card["discount"],
            "median cycle (days)": card["median_cycle_days"],
            f"open pipeline{money}": card["open_pipeline"],
            "weighted pipeline": card["weighted_pipeline"],
            "win rate vs previous": _pts_text(card["win_rate_change"]),
            "won revenue vs previous": card["won_revenue_change"],
        }
    )


def overview(ds: Dataset, *, as_of, group_by: str = "product", **options) -> list:
    """The narrative led by the scorecard's numbers (period, win rate, revenue, movers).

    ``options`` (``period_days``, ``weights``, ...) go to
    :func:`~pipeline_lib.product_potential.compute_scorecard`.
    """
    card = pp.compute_scorecard(ds, as_of=as_of, group_by=group_by, **options)
    text = pp.describe_scorecard(card, group_by=group_by, currency=ds.base_currency)
    notes = [f"- {n}" for n in ds.notes]
    return [text + ("\n" + "\n".join(notes) if notes else "")]


def scorecard(
    ds: Dataset, *, as_of, group_by: str = "product", weights: str = "history", **options
) -> list:
    """Scorecard table per ``group_by`` (with an ``All`` row) and what it could not compute.

    ``options`` (``period_days``, ...) go to
    :func:`~pipeline_lib.product_potential.compute_scorecard`.
    """
    card = pp.compute_scorecard(
        ds, as_of=as_of, group_by=group_by, weights=weights, total=True, **options
    )
    start, end = card.attrs["period"]
    table = _scorecard_table(card, group_by, ds.base_currency)
    caption = (
        f"Scorecard per {group_by}: deals closed {start:%Y-%m-%d} – {end:%Y-%m-%d}, "
        f"compared with the {(end - start).days} days before; pipeline open on {end:%Y-%m-%d}"
    )
    items: list = [
        formatting.style_table(
            table,
            caption=caption,
            percent=("share of revenue", "discount off list", "won revenue vs previous"),
            decimals=0,
        )
    ]
    weighting = {
        "history": "win rates learned from closed deals of the same product and stage"
        if ds.stage_history is not None
        else "win rates learned from closed deals of the same product (no stage history)",
        "stage": "win rates learned from closed deals per stage (all products)",
        "crm": "the probability typed into the CRM",
    }[weights]
    items.append(
        f"Weighted pipeline = open amount × {weighting}. Discount = 1 − won amount ÷ list "
        "price of the same deals (one unit per deal: there is no quantity column; deals "
        "above list price are left out)."
    )
    items += [f"- {n}" for n in card.attrs.get("notes", []) if not n.startswith("Weighted")]
    return items


def potential_map(ds: Dataset, *, as_of, group_by: str = "product", **options) -> list:
    """Win rate against average won deal, bubbles sized by the open pipeline.

    ``options`` (``period_days``, ``weights``, ...) go to
    :func:`~pipeline_lib.product_potential.compute_scorecard`.
    """
    card = pp.compute_scorecard(ds, as_of=as_of, group_by=group_by, **options)
    if not (card["win_rate"].notna() & card["avg_won_deal"].notna()).any():
        return [
            "No group has a won deal with an amount in the period, so there is no win rate "
            "and average deal to map."
        ]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    plotting.plot_potential_map(card, group_col=group_by, currency=ds.base_currency, ax=ax)
    return [
        fig,
        "Up and to the right sells well and big; a large bubble low down is pipeline that "
        "history says will mostly be lost.",
    ]


def pipeline_weights(ds: Dataset, *, as_of, weights: str = "history") -> list:
    """The win probability per product and stage that weights the open pipeline."""
    if weights == "crm":
        return ["The pipeline is weighted by the CRM's typed-in probability (weights='crm')."]
    if ds.stage_history is None:
        basis = "product" if weights == "history" and "product" in ds.opportunities else "overall"
        return [
            f"Without a stage history each open deal is weighted by the {basis} win rate of "
            "the closed deals (won / won + lost), whatever its stage; the scorecard shows "
            "it. Add a stage_history table to the source config to weight each deal by the "
            "win rate of deals that reached its stage."
        ]
    by = "product" if weights == "history" else None
    rates = pp.compute_stage_win_rates(ds, as_of=as_of, by=by)
    if by is None:
        table = rates[["stage", "reached", "won", "win_probability"]]
        return [formatting.style_table(table, percent=("win_probability",))]
    n_groups = rates[by].nunique()
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.5 * n_groups))
    plotting.plot_stage_win_rates(rates, by=by, ax=ax)
    thin = rates.loc[rates["own_weight"] < 0.5]
    text = (
        "Each open deal is weighted by the share of closed deals of its product that were "
        "won after reaching its current stage. Where a product has few such deals the rate "
        "is pulled towards the stage's rate over all products "
        f"(shrinkage of 20 pseudo-deals); {len(thin)} of {len(rates)} product × stage "
        "cells rely mostly on the stage rate."
    )
    return [text, fig]


def what_if(
    ds: Dataset,
    *,
    as_of,
    horizon_days: int = 365,
    period_days: int = 365,
    top: int = 15,
    **levers,
) -> list:
    """Ranked what-if table and chart: revenue impact of small changes per product.

    ``levers`` (``win_rate_pts``, ``discount_cut_pct``, ``cycle_days``, ``leads_pct``,
    ``discount_effect``) go to :func:`~pipeline_lib.product_potential.compute_sensitivity`.
    """
    sens = pp.compute_sensitivity(
        ds, as_of=as_of, horizon_days=horizon_days, period_days=period_days, **levers
    )
    if sens["revenue_change"].isna().all():
        why = "; ".join(sorted(set(sens["note"].dropna().astype(str)) - {""}))
        raise InsufficientDataError(
            f"no product has won revenue in the {period_days} days to {as_of:%Y-%m-%d} for a "
            f"change to build on ({why}); the what-if needs won deals with an amount (use a "
            "longer period_days)"
        )
    cur = ds.base_currency
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.35 * min(top, len(sens))))
    plotting.plot_what_if(sens, top=top, currency=cur, ax=ax)
    table = sens.drop(columns=["lever"]).rename(
        columns={
            "baseline_revenue": f"baseline revenue ({cur})",
            "scenario_revenue": "with the change",
            "revenue_change": "change",
            "change_pct": "change %",
        }
    )
    how = (
        f"Baseline = each product's won revenue over the last {period_days} days, run at the "
        f"same pace for {horizon_days} days. Win rate: closings × extra points × average "
        "won deal. Discount: discounts cut by the given share of themselves raise the "
        "average deal; where the data shows discounts win deals (next section) the win rate "
        "drops accordingly. Cycle: a shorter cycle pulls that many days of closings into the "
        "horizon once. Leads: more deals in proportion, counting only those whose median "
        "cycle ends inside the horizon. The *arithmetic* column spells out each row."
    )
    return [
        pp.describe_sensitivity(sens, horizon_days=horizon_days, currency=cur),
        fig,
        formatting.style_table(
            table,
            caption="What-if per product and lever, ranked",
            percent=("change %",),
            decimals=0,
        ),
        how,
    ]


def discount_evidence(ds: Dataset, *, as_of) -> list:
    """Does discounting win deals? Fitted effect per product, then win rate per band."""
    effect = pp.compute_discount_effect(ds, as_of=as_of)
    items: list = [pp.describe_discount_effect(effect)]
    shown = effect.assign(
        slope_per_10pts=_pts_text(effect["slope_per_10pts"]),
        slope_low=_pts_text(effect["slope_low"]),
        slope_high=_pts_text(effect["slope_high"]),
    ).rename(
        columns={
            "slope_per_10pts": "win rate per +10 discount pts",
            "slope_low": "low",
            "slope_high": "high",
        }
    )
    items.append(
        formatting.style_table(
            shown,
            caption="Win rate against discount, all closed deals up to as_of",
            percent=("win_rate", "avg_discount_won", "avg_discount_lost"),
            decimals=3,
        )
    )
    bands = pp.compute_band_win_rates(ds, as_of=as_of, by="discount")
    items.append(
        plotting.plot_band_win_rates(bands, title="Win rate by discount band (off list price)")
    )
    try:
        sizes = pp.compute_band_win_rates(ds, as_of=as_of, by="deal_size")
        items.append(
            plotting.plot_band_win_rates(
                sizes, title="Win rate by deal-size band (per product, by amount)"
            )
        )
    except InsufficientDataError as exc:  # pragma: no cover - discount bands exist
        items.append(f"Deal-size bands not shown: {exc}")
    return items


def affinity(ds: Dataset, *, as_of, basis: str = "won") -> list:
    """Product affinity across accounts: heatmap of lift and the strongest pairs."""
    aff = pp.compute_affinity(ds, as_of=as_of, basis=basis)
    n = aff["antecedent"].nunique()
    fig, ax = plt.subplots(figsize=(2 + 1.1 * n, 1.5 + 0.8 * n))
    plotting.plot_affinity_heatmap(aff, metric="lift", ax=ax)
    top = aff.loc[aff["both"] > 0].head(10)
    table = pd.DataFrame(
        {
            "accounts that bought": top["antecedent"],
            "also bought": top["consequent"],
            "accounts with both": top["both"],
            "of accounts with the first": top["antecedent_accounts"],
            "support": top["support"],
            "confidence (95 % interval)": _rate_text(
                top["confidence"], top["confidence_low"], top["confidence_high"]
            ),
            "base rate": top["base_rate"],
            "lift": top["lift"],
        }
    )
    return [
        pp.describe_affinity(aff),
        fig,
        formatting.style_table(
            table,
            caption="Strongest pairs (support = share of accounts with both; confidence = "
            "share of the first product's accounts that also have the second; lift = "
            "confidence ÷ base rate)",
            percent=("support", "base rate"),
            decimals=2,
        ),
    ]


def white_space(ds: Dataset, *, as_of, basis: str = "won") -> list:
    """Account × product white space: where it is worth most, per product."""
    ws = pp.compute_white_space(ds, as_of=as_of, basis=basis)
    summary = pp.summarise_white_space(ws)
    fig, ax = plt.subplots(figsize=(9, 0.8 + 0.45 * len(summary)))
    plotting.plot_white_space(summary, currency=ds.base_currency, ax=ax)
    return [
        pp.describe_white_space(summary, currency=ds.base_currency),
        fig,
        formatting.style_table(
            summary.rename(
                columns={
                    "open_deal": "open deal",
                    "white_space": "white space",
                    "avg_propensity": "avg propensity",
                    "expected_value": f"expected value ({ds.base_currency})",
                }
            ),
            caption="Accounts per product: owned, in an open deal, white space",
            percent=("avg propensity",),
            decimals=0,
        ),
        "Propensity = the best smoothed rule 'accounts that bought A also bought B' over "
        "the products the account owns (the base rate when it owns none); expected value "
        "= propensity × the product's average won deal.",
    ]


def recommendations(
    ds: Dataset, *, as_of, top_n: int = 3, max_rows: int = 30, basis: str = "won"
) -> list:
    """Next-best products per account and per open deal, with the evidence."""

    def table(per: str, caption: str):
        recs = pp.compute_next_best(ds, as_of=as_of, per=per, top_n=top_n, basis=basis)
        return formatting.style_table(
            recs.drop(columns=["because_of"]),
            caption=caption,
            percent=("propensity",),
            decimals=0,
            max_rows=max_rows,
        )

    items: list = [
        table(
            "account",
            f"Next-best products per account (top {top_n}), accounts with the most "
            "expected value first",
        )
    ]
    try:
        items.append(table("deal", f"Products to offer with each open deal (top {top_n})"))
    except InsufficientDataError as exc:
        items.append(f"Recommendations per open deal not shown: {exc}")
    return items
