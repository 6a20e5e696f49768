"""Figures of the lead-generation yield notebook.

Each function draws a frame computed by :mod:`pipeline_lib.lead_yield`; none computes.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter

from ._base import (
    ALL,
    GREEN,
    GREY,
    OLIVE,
    ORANGE,
    check_columns,
    get_ax,
    interval_errors,
    label_rows,
    money_formatter,
    percent_formatter,
)

__all__ = [
    "plot_funnel",
    "plot_conversion_by_group",
    "plot_cohort_heatmap",
    "plot_cohort_curves",
    "plot_time_to_convert",
    "plot_leads_required",
    "plot_optimal_mix",
    "plot_cost_per_win",
    "plot_open_leads",
]

_STATE_COLOURS = {"fresh": GREEN, "ageing": OLIVE, "stale": ORANGE, "expired": GREY}


def _count():
    return FuncFormatter(lambda v, _pos=None: f"{v:,.0f}")


def plot_funnel(funnel: pd.DataFrame, *, group: str = ALL, ax=None):
    """Horizontal funnel: leads reaching each step, with step and cumulative conversion.

    Parameters
    ----------
    funnel : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_funnel`
        (``group, label, count, step_rate, cum_rate``).
    group : str, default "All"
        Which group's funnel to draw.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(funnel, ["group", "label", "count", "step_rate", "cum_rate"], "plot_funnel")
    ax = get_ax(ax)
    rows = funnel[funnel["group"] == group].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"plot_funnel: no rows for group={group!r}")
    top = float(rows["count"].max())
    colours = sns.color_palette("Blues_r", len(rows) + 2)[: len(rows)]
    for i, r in rows.iterrows():
        ax.barh(i, r["count"], left=(top - r["count"]) / 2, color=colours[i], height=0.8)
        text = f"{int(r['count']):,}"
        if i > 0:
            text += f"  ({r['step_rate']:.1%} of previous, {r['cum_rate']:.1%} of leads)"
        ax.text(top / 2, i, text, ha="center", va="center", fontsize=9, color="black")
    label_rows(ax, rows["label"])
    ax.set_xticks([])
    ax.grid(False)
    ax.set_title("Lead funnel" + ("" if group == ALL else f": {group}"))
    return ax


def plot_conversion_by_group(
    yields: pd.DataFrame,
    *,
    rate: str = "win",
    xlabel: str | None = None,
    title: str = "Conversion by group",
    ax=None,
):
    """Conversion rate per group with its interval, the overall rate as a line.

    Parameters
    ----------
    yields : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_lead_yield` (``group, leads`` and
        ``<rate>_rate, <rate>_low, <rate>_high``) or
        :func:`~pipeline_lib.lead_yield.compute_conversion_at_age` (``rate="km"`` or
        ``"mature"``).
    rate : str, default "win"
        Prefix of the rate columns: ``"win"``, ``"opp"``, ``"km"``, ``"mature"``.
    xlabel, title : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    cols = [f"{rate}_rate", f"{rate}_low", f"{rate}_high"]
    check_columns(yields, ["group", "leads", *cols], "plot_conversion_by_group")
    ax = get_ax(ax)
    rows = yields[yields["group"] != ALL].sort_values(cols[0]).reset_index(drop=True)
    y = np.arange(len(rows))
    err = interval_errors(rows[cols[0]], rows[cols[1]], rows[cols[2]], missing=0.0)
    ax.errorbar(rows[cols[0]], y, xerr=err, fmt="o", capsize=3, color="C0")
    labels = [f"{g}  (n={n:,})" for g, n in zip(rows["group"], rows["leads"], strict=True)]
    ax.set_yticks(y, labels)
    total = yields[yields["group"] == ALL]
    if len(total):
        ax.axvline(total[cols[0]].iloc[0], color="grey", ls="--", lw=1, label="all leads")
        ax.legend(loc="lower right", fontsize=8)
    ax.xaxis.set_major_formatter(percent_formatter())
    ax.set_xlim(left=0)
    ax.set_xlabel(xlabel or f"{rate} rate (95 % interval)")
    ax.set_title(title)
    return ax


def plot_cohort_heatmap(cohorts: pd.DataFrame, *, freq: str = "M", group: str = ALL, ax=None):
    """Heatmap of the share of each cohort converted by age (blank: age not reached yet).

    Parameters
    ----------
    cohorts : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_cohort_conversion`
        (``group, cohort, age_days, converted_share``).
    freq : {"W", "M", "Q"}, default "M"
        The cohort frequency used (for the labels).
    group : str, default "All"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    need = ["group", "cohort", "age_days", "converted_share"]
    check_columns(cohorts, need, "plot_cohort_heatmap")
    ax = get_ax(ax)
    rows = cohorts[cohorts["group"] == group]
    wide = rows.pivot(index="cohort", columns="age_days", values="converted_share")
    wide = wide.drop(columns=[c for c in wide.columns if c == 0])  # nothing converts at birth
    fmt = {"W": "%Y-%m-%d", "M": "%Y-%m", "Q": "%Y-%m"}.get(freq, "%Y-%m-%d")
    labels = [f"{c:{fmt}}" if freq != "Q" else f"{c.year} Q{c.quarter}" for c in wide.index]
    values = wide.to_numpy(dtype="float64") * 100
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 100.0
    sns.heatmap(
        values,
        ax=ax,
        cmap="viridis",
        vmin=0,
        vmax=max(top, 1.0),
        cbar_kws={"label": "% converted"},
        annot=len(wide.columns) <= 14 and len(wide) <= 40,
        fmt=".0f",
        annot_kws={"fontsize": 7},
        xticklabels=[int(c) for c in wide.columns],
        yticklabels=labels,
    )
    ax.set_xlabel("age of the lead (days)")
    ax.set_ylabel("cohort (lead created)")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(False)
    ax.set_title("Share of each cohort converted by age (censoring-aware)")
    return ax


def plot_cohort_curves(cohorts: pd.DataFrame, *, group: str = ALL, ax=None):
    """Conversion curve of each cohort (colour = cohort date), censoring-aware.

    Parameters
    ----------
    cohorts : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_cohort_conversion`.
    group : str, default "All"
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    need = ["group", "cohort", "age_days", "converted_share"]
    check_columns(cohorts, need, "plot_cohort_curves")
    ax = get_ax(ax)
    rows = cohorts[(cohorts["group"] == group) & cohorts["converted_share"].notna()]
    starts = sorted(rows["cohort"].unique())
    cmap = plt.get_cmap("viridis")
    for i, start in enumerate(starts):
        c = rows[rows["cohort"] == start]
        colour = cmap(i / max(1, len(starts) - 1))
        ax.plot(c["age_days"], c["converted_share"], color=colour, lw=1.2, marker=".", ms=3)
    if starts:
        sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, max(1, len(starts) - 1)))
        cbar = ax.figure.colorbar(sm, ax=ax, ticks=[0, max(1, len(starts) - 1)])
        cbar.ax.set_yticklabels([f"{starts[0]:%Y-%m}", f"{starts[-1]:%Y-%m}"])
        cbar.set_label("cohort")
    ax.yaxis.set_major_formatter(percent_formatter())
    ax.set_ylim(bottom=0)
    ax.set_xlabel("age of the lead (days)")
    ax.set_ylabel("share converted")
    ax.set_title("Cohort conversion curves (young leads censored)")
    return ax


def plot_time_to_convert(lags: pd.DataFrame, *, order=None, clip_days=None, ax=None):
    """Box plot of the days from lead to conversion per group.

    Parameters
    ----------
    lags : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_conversion_lags` (``group, days``).
    order : list of str, optional
        Group order (e.g. the ``group`` column of ``compute_time_to_convert``).
    clip_days : float, optional
        Upper limit of the x axis (long tails hide the boxes).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(lags, ["group", "days"], "plot_time_to_convert")
    ax = get_ax(ax)
    order = [g for g in (order if order is not None else lags["group"].unique()) if g != ALL]
    data = [lags.loc[lags["group"] == g, "days"].to_numpy() for g in order]
    ax.boxplot(
        data,
        orientation="horizontal",
        whis=(5, 95),
        widths=0.6,
        patch_artist=True,
        boxprops={"facecolor": "C0", "alpha": 0.8},
        medianprops={"color": "black"},
        flierprops={"markersize": 1.5, "markerfacecolor": "grey", "markeredgecolor": "grey"},
    )
    label_rows(ax, order, start=1)
    if clip_days is not None:
        ax.set_xlim(0, clip_days)
    ax.set_xlabel("days from lead to conversion (box: quartiles, whiskers: 5–95 %)")
    ax.set_ylabel("")
    ax.set_title("Time to convert")
    return ax


def plot_leads_required(required: pd.DataFrame, *, ax=None):
    """Leads needed per group at the current mix, with the simulated range.

    Parameters
    ----------
    required : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_leads_required`
        (``group, leads_needed, leads_low, leads_high``).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    need = ["group", "leads_needed", "leads_low", "leads_high"]
    check_columns(required, need, "plot_leads_required")
    ax = get_ax(ax)
    rows = required[required["group"] != ALL].reset_index(drop=True)
    err = interval_errors(rows["leads_needed"], rows["leads_low"], rows["leads_high"], missing=0.0)
    ax.barh(range(len(rows)), rows["leads_needed"], xerr=err, color="C0", capsize=3)
    for i, v in enumerate(rows["leads_needed"]):
        ax.text(v, i, f"  {v:,.0f}", va="bottom", fontsize=8)
    label_rows(ax, rows["group"])
    ax.xaxis.set_major_formatter(_count())
    ax.set_xlabel("leads needed (bar: expected, line: simulated range)")
    ax.set_title("Leads required per source at the current mix")
    return ax


def plot_optimal_mix(mix: pd.DataFrame, *, ax=None):
    """Leads per group under the current, fewest-leads and lowest-cost mixes.

    Parameters
    ----------
    mix : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_optimal_mix`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(mix, ["group", "current_leads", "fewest_leads"], "plot_optimal_mix")
    ax = get_ax(ax)
    rows = mix[mix["group"] != ALL]
    cols = {"current_leads": "current mix", "fewest_leads": "fewest leads"}
    if "lowest_cost_leads" in rows and rows["lowest_cost_leads"].notna().any():
        cols["lowest_cost_leads"] = "lowest cost"
    long = rows.melt(id_vars="group", value_vars=list(cols), var_name="mix", value_name="leads")
    long["mix"] = long["mix"].map(cols)
    sns.barplot(data=long, y="group", x="leads", hue="mix", ax=ax, orient="h")
    ax.set_xlabel("leads")
    ax.set_ylabel("")
    ax.legend(title="", fontsize=8)
    ax.set_title("Lead mix: current vs fewest leads vs lowest cost")
    return ax


def plot_cost_per_win(cost: pd.DataFrame, *, currency: str = "", ax=None):
    """Cost per won lead per source with its interval (one row per source).

    Parameters
    ----------
    cost : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_cost_return` with ``freq=None``
        (``source, cost_per_win, cpw_low, cpw_high, revenue_per_cost``).
    currency : str, optional
        Shown with the amounts.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    need = ["source", "cost_per_win", "cpw_low", "cpw_high", "revenue_per_cost"]
    check_columns(cost, need, "plot_cost_per_win")
    ax = get_ax(ax)
    rows = cost[(cost["source"] != ALL) & cost["cost_per_win"].notna()]
    rows = rows.sort_values("cost_per_win").reset_index(drop=True)
    err = interval_errors(rows["cost_per_win"], rows["cpw_low"], rows["cpw_high"], missing=0.0)
    ax.barh(range(len(rows)), rows["cost_per_win"], xerr=err, color="C1", capsize=3)
    for i, r in rows.iterrows():
        ax.text(
            r["cpw_high"] if pd.notna(r["cpw_high"]) else r["cost_per_win"],
            i,
            f"  revenue / cost {r['revenue_per_cost']:,.1f}×",
            va="center",
            fontsize=8,
        )
    label_rows(ax, rows["source"])
    ax.xaxis.set_major_formatter(money_formatter(currency, kilo_from=1e4, billions=False))
    ax.set_xlabel("lead spend per won lead (95 % interval)")
    ax.set_title("Cost per win by source")
    ax.margins(x=0.35)
    return ax


def plot_open_leads(summary: pd.DataFrame, *, ax=None):
    """Open leads per group, stacked by state (fresh, ageing, stale, expired).

    Parameters
    ----------
    summary : DataFrame
        From :func:`pipeline_lib.lead_yield.compute_open_lead_summary`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(summary, ["group", *_STATE_COLOURS], "plot_open_leads")
    ax = get_ax(ax)
    rows = summary[summary["group"] != ALL].reset_index(drop=True)
    left = np.zeros(len(rows))
    for state, colour in _STATE_COLOURS.items():
        ax.barh(rows["group"], rows[state], left=left, color=colour, label=state)
        left += rows[state].to_numpy(dtype="float64")
    ax.invert_yaxis()
    ax.set_xlabel("open leads (not yet an opportunity)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Open leads by age against their source's usual time to convert")
    return ax
