"""Short Markdown narratives led by the numbers of the product-potential frames."""

from __future__ import annotations

import pandas as pd

from ..stats import wilson_interval
from ._common import _money, _pct

__all__ = [
    "describe_scorecard",
    "describe_sensitivity",
    "describe_discount_effect",
    "describe_affinity",
    "describe_white_space",
]


def _bullets(lines: list[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def describe_scorecard(card: pd.DataFrame, *, group_by: str, currency: str = "") -> str:
    """A short Markdown narrative led by the scorecard's numbers.

    Parameters
    ----------
    card : DataFrame
        From :func:`compute_scorecard` (an ``All`` row, if present, gives the totals).
    group_by : str
        Its grouping column.
    currency : str, optional
        Shown after money amounts.

    Returns
    -------
    str
        Markdown bullet points.
    """
    rows = card.loc[card[group_by].ne("All")] if "All" in set(card[group_by]) else card
    closed = rows["won"] + rows["lost"]
    won, n_closed = int(rows["won"].sum()), int(closed.sum())
    lines = []
    start, end = card.attrs.get("period", (None, None))
    span = f" ({start:%Y-%m-%d} – {end:%Y-%m-%d})" if start is not None else ""
    if n_closed:
        lo, hi = wilson_interval(won, n_closed)
        lines.append(
            f"In the period{span}, **{won:,} of {n_closed:,}** closed deals were won "
            f"(**{won / n_closed:.0%}**, 95 % interval {lo:.0%}–{hi:.0%}), bringing "
            f"**{_money(rows['won_revenue'].sum(), currency)}**."
        )
    else:
        lines.append(f"No deal was won or lost in the period{span}.")
    if rows["won_revenue"].sum() > 0:
        top = rows.iloc[0]
        lines.append(
            f"**{top[group_by]}** brings the most won revenue: "
            f"{_money(top['won_revenue'], currency)} ({_pct(top['revenue_share'])} of the total)."
        )
    ok = rows.loc[closed >= 20]
    if len(ok) >= 2:
        best = ok.loc[ok["win_rate"].idxmax()]
        worst = ok.loc[ok["win_rate"].idxmin()]
        lines.append(
            f"Best win rate: **{best[group_by]}** {_pct(best['win_rate'])} "
            f"({_pct(best['win_rate_low'])}–{_pct(best['win_rate_high'])}, "
            f"{int(best['won'] + best['lost']):,} closed); lowest: **{worst[group_by]}** "
            f"{_pct(worst['win_rate'])} ({_pct(worst['win_rate_low'])}–"
            f"{_pct(worst['win_rate_high'])}, {int(worst['won'] + worst['lost']):,} closed)."
        )
    chg = rows.loc[
        rows["win_rate_change"].notna()
        & (closed >= 20)
        & (rows["won_prev"] + rows["lost_prev"] >= 20)
    ]
    if len(chg):
        mover = chg.loc[chg["win_rate_change"].abs().idxmax()]
        word = "rose" if mover["win_rate_change"] > 0 else "fell"
        lines.append(
            f"Biggest change against the previous period: **{mover[group_by]}** win rate "
            f"{word} from {_pct(mover['win_rate_prev'])} to {_pct(mover['win_rate'])} "
            f"({mover['win_rate_change'] * 100:+.0f} pts)."
        )
    if rows["weighted_pipeline"].notna().any() and rows["open_pipeline"].sum() > 0:
        big = rows.loc[rows["weighted_pipeline"].idxmax()]
        lines.append(
            f"Open pipeline {_money(rows['open_pipeline'].sum(), currency)} in "
            f"{int(rows['open'].sum()):,} deals, worth "
            f"{_money(rows['weighted_pipeline'].sum(), currency)} weighted by win rates "
            f"learned from history; the largest is **{big[group_by]}** "
            f"({_money(big['weighted_pipeline'], currency)})."
        )
    if rows["discount"].notna().any():
        d = rows.loc[rows["discount"].notna()]
        deep = d.loc[d["discount"].idxmax()]
        lines.append(
            f"Deepest average discount off list price: **{deep[group_by]}** "
            f"{_pct(deep['discount'], 1)}."
        )
    lines += card.attrs.get("notes", [])
    return _bullets(lines)


def describe_sensitivity(sens: pd.DataFrame, *, horizon_days: int, currency: str = "") -> str:
    """Markdown: the three what-if moves worth most, and what could not be computed."""
    ranked = sens.loc[sens["revenue_change"].notna()]
    lines = []
    for _, r in ranked.head(3).iterrows():
        lines.append(
            f"**{r['product']}, {r['scenario']}**: {_money(r['revenue_change'], currency)} "
            f"more over {horizon_days} days ({r['change_pct']:+.1%} on its baseline)."
        )
    skipped = sens.loc[sens["revenue_change"].isna()]
    if len(skipped):
        reasons = skipped.groupby("note")["product"].apply(lambda s: ", ".join(sorted(set(s))))
        for note, prods in reasons.items():
            lines.append(f"Not computed for {prods}: {note}.")
    return _bullets(lines)


def describe_discount_effect(effect: pd.DataFrame) -> str:
    """Markdown: where discounting goes with winning, and where it does not."""
    lines = []
    for _, r in effect.iterrows():
        if r["verdict"] == "too few deals":
            lines.append(f"**{r['product']}**: too few closed deals ({r['closed']}) to tell.")
            continue
        if r["verdict"] in ("all won", "all lost"):
            lines.append(
                f"**{r['product']}**: all {r['closed']:,} closed deals were "
                f"{r['verdict'].split()[1]}, so the win rate cannot be related to the discount."
            )
            continue
        lines.append(
            f"**{r['product']}**: {r['verdict']} — each 10 discount points go with a win rate "
            f"{r['slope_per_10pts'] * 100:+.1f} pts (95 % interval "
            f"{r['slope_low'] * 100:+.1f} to {r['slope_high'] * 100:+.1f}; "
            f"{r['closed']:,} closed deals)."
        )
    return _bullets(lines)


def describe_affinity(aff: pd.DataFrame, *, top: int = 3, min_both: int = 5) -> str:
    """Markdown: the strongest product pairs across accounts.

    Pairs whose lift is above 1 even at the low end of the confidence interval
    (``lift_low > 1``) are reported as clear; otherwise the highest lifts seen on at least
    ``min_both`` accounts are reported as not clearly above chance.
    """
    n = int(aff["accounts"].iloc[0]) if len(aff) else 0
    lines = [f"{n:,} accounts have at least one product."]
    clear = aff.loc[aff["lift_low"] > 1].head(top)
    weak = aff.loc[(aff["lift"] > 1) & (aff["both"] >= min_both)].head(top)
    for _, r in (clear if len(clear) else weak).iterrows():
        lines.append(
            f"Buyers of **{r['antecedent']}** also bought **{r['consequent']}** in "
            f"{_pct(r['confidence'])} of cases ({int(r['both']):,} of "
            f"{int(r['antecedent_accounts']):,} accounts) against a "
            f"{_pct(r['base_rate'])} base rate: lift "
            f"{r['lift']:.1f}" + ("." if len(clear) else " (not clearly above chance).")
        )
    if clear.empty and weak.empty:
        lines.append("No pair of products is bought together more often than chance.")
    return _bullets(lines)


def describe_white_space(summary: pd.DataFrame, *, currency: str = "") -> str:
    """Markdown: where the white space is worth most."""
    lines = []
    total = summary["expected_value"].sum()
    lines.append(
        f"The white space (account × product not bought and not in an open deal) is worth "
        f"**{_money(total, currency)}** in expected value."
    )
    for _, r in summary.head(3).iterrows():
        lines.append(
            f"**{r['product']}**: {int(r['white_space']):,} accounts without it "
            f"(average propensity {_pct(r['avg_propensity'])}), "
            f"{_money(r['expected_value'], currency)} expected."
        )
    return _bullets(lines)
