"""Figures of the product-potential notebook.

Each function draws a frame computed by :mod:`pipeline_lib.product_potential`; none
computes anything beyond picking rows and columns to show.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ._base import (
    ALL,
    BLUE,
    GREEN,
    ORANGE,
    PURPLE,
    check_columns,
    get_ax,
    interval_errors,
    label_rows,
    money_formatter,
    money_text,
    percent_formatter,
)

__all__ = [
    "plot_potential_map",
    "plot_what_if",
    "plot_band_win_rates",
    "plot_affinity_heatmap",
    "plot_stage_win_rates",
    "plot_white_space",
]

_LEVER_COLORS = {"win rate": BLUE, "discount": ORANGE, "cycle": GREEN, "leads": PURPLE}


def _with_currency(label: str, currency: str) -> str:
    """``"average won deal (EUR)"``; the label alone without a currency."""
    return f"{label} ({currency})" if currency else label


def plot_potential_map(
    card: pd.DataFrame, *, group_col: str = "product", currency: str = "", ax=None
):
    """Potential map: win rate against average won deal, bubbles sized by open pipeline.

    Error bars show the win rate's 95 % interval; each bubble is labelled with its group.
    Groups with no closed deal in the period are left out (they have no win rate).

    Parameters
    ----------
    card : DataFrame
        From :func:`pipeline_lib.product_potential.compute_scorecard`.
    group_col : str, default "product"
        The scorecard's grouping column.
    currency : str, optional
        Shown on the money axis.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    need = [group_col, "win_rate", "win_rate_low", "win_rate_high", "avg_won_deal"]
    check_columns(card, [*need, "open_pipeline"], "plot_potential_map")
    ax = get_ax(ax)
    rows = card.loc[card[group_col].ne(ALL) & card["win_rate"].notna()]
    rows = rows.loc[rows["avg_won_deal"].notna()]
    pipe = rows["open_pipeline"].fillna(0).to_numpy(dtype="float64")
    size = 60 + 1400 * np.sqrt(pipe / pipe.max()) if pipe.max() > 0 else np.full(len(rows), 80)
    x = rows["avg_won_deal"].to_numpy(dtype="float64")
    y = rows["win_rate"].to_numpy(dtype="float64")
    colors = sns.color_palette("deep", max(len(rows), 1))
    ax.errorbar(
        x,
        y,
        yerr=interval_errors(y, rows["win_rate_low"], rows["win_rate_high"]),
        fmt="none",
        ecolor="0.6",
        elinewidth=1,
        zorder=1,
    )
    ax.scatter(x, y, s=size, c=colors[: len(rows)], alpha=0.6, edgecolor="white", zorder=2)
    for xi, yi, label, p in zip(x, y, rows[group_col], pipe, strict=True):
        ax.annotate(
            f"{label}\n{money_text(p)} open",
            (xi, yi),
            xytext=(8, 6),
            textcoords="offset points",
            fontsize=8,
        )
    if len(x) and np.all(x > 0) and x.max() / x.min() > 20:
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(money_formatter(currency))
    ax.yaxis.set_major_formatter(percent_formatter(decimals=0))
    ax.set_xlabel(_with_currency("average won deal", currency))
    ax.set_ylabel("win rate (95 % interval)")
    ax.set_title(f"Potential map per {group_col}: bubble size = open pipeline")
    ax.margins(x=0.15, y=0.15)
    return ax


def plot_what_if(sens: pd.DataFrame, *, top: int = 15, currency: str = "", ax=None):
    """Ranked revenue impact of the what-if levers, one bar per product and lever.

    Parameters
    ----------
    sens : DataFrame
        From :func:`pipeline_lib.product_potential.compute_sensitivity`.
    top : int, default 15
        How many of the ranked rows to show.
    currency : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(sens, ["product", "lever", "scenario", "revenue_change"], "plot_what_if")
    ax = get_ax(ax)
    head = sens.loc[sens["revenue_change"].notna()].head(top)
    y = np.arange(len(head))
    colors = [_LEVER_COLORS.get(lv, "0.5") for lv in head["lever"]]
    ax.barh(y, head["revenue_change"], color=colors)
    label_rows(ax, head["product"] + " · " + head["scenario"])
    ax.axvline(0, color="0.3", linewidth=0.8)
    ax.xaxis.set_major_formatter(money_formatter(currency))
    ax.set_xlabel(_with_currency("revenue change over the horizon", currency))
    ax.set_title("Where small changes would sell more (ranked)")
    for yi, v in zip(y, head["revenue_change"], strict=True):
        ha = "left" if v >= 0 else "right"
        ax.text(v, yi, f" {money_text(v)} ", va="center", ha=ha, fontsize=8)
    labels = [lv for lv in _LEVER_COLORS if lv in set(head["lever"])]
    handles = [plt.Rectangle((0, 0), 1, 1, color=_LEVER_COLORS[lv]) for lv in labels]
    if handles:
        ax.legend(handles, labels, title="lever", loc="lower right", fontsize=8)
    ax.margins(x=0.15)
    return ax


def plot_band_win_rates(bands: pd.DataFrame, *, title: str | None = None, ncols: int = 4):
    """Win rate by band (discount or deal size), one small panel per product.

    Points are the band's win rate with its 95 % interval; the number of closed deals is
    written above each point.

    Parameters
    ----------
    bands : DataFrame
        From :func:`pipeline_lib.product_potential.compute_band_win_rates`.
    title : str, optional
        Figure title.
    ncols : int, default 4
        Panels per row.

    Returns
    -------
    matplotlib Figure
    """
    need = ["product", "band", "band_order", "closed", "win_rate", "win_rate_low"]
    check_columns(bands, [*need, "win_rate_high"], "plot_band_win_rates")
    products = list(dict.fromkeys(bands["product"]))
    n = max(len(products), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), sharey=True, squeeze=False
    )
    for ax, product in zip(axes.flat, products, strict=False):
        g = bands.loc[bands["product"].eq(product)].sort_values("band_order")
        x = np.arange(len(g))
        y = g["win_rate"].to_numpy(dtype="float64")
        ax.errorbar(
            x,
            y,
            yerr=interval_errors(y, g["win_rate_low"], g["win_rate_high"]),
            fmt="o-",
            color=BLUE,
            ecolor="0.6",
            capsize=3,
        )
        for xi, yi, c in zip(x, g["win_rate_high"], g["closed"], strict=True):
            ax.text(xi, yi + 0.02, f"n={c}", ha="center", fontsize=7, color="0.4")
        ax.set_xticks(x, g["band"], rotation=30, fontsize=8)
        ax.set_title(product, fontsize=10)
        ax.yaxis.set_major_formatter(percent_formatter(decimals=0))
        ax.set_ylim(0, 1)
        ax.margins(x=0.15)
    for ax in list(axes.flat)[len(products) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("win rate")
    if title:
        fig.suptitle(title)
    # fixed spacing: tight_layout on many small panels is slow and gains little here
    top = 1 - (0.55 if title else 0.3) / fig.get_figheight()
    fig.subplots_adjust(left=0.07, right=0.98, top=top, bottom=0.12, hspace=0.75, wspace=0.1)
    return fig


def plot_affinity_heatmap(aff: pd.DataFrame, *, metric: str = "lift", ax=None):
    """Heatmap of product affinity: rows = bought first (antecedent), columns = also bought.

    Parameters
    ----------
    aff : DataFrame
        From :func:`pipeline_lib.product_potential.compute_affinity`.
    metric : {"lift", "confidence", "support"}, default "lift"
        Cell value. Lift is centred on 1 (blue above, red below chance).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if metric not in ("lift", "confidence", "support"):
        raise ValueError(f"metric={metric!r} is not allowed; use lift, confidence or support")
    check_columns(aff, ["antecedent", "consequent", metric], "plot_affinity_heatmap")
    ax = get_ax(ax)
    names = sorted(set(aff["antecedent"]) | set(aff["consequent"]))
    grid = aff.pivot(index="antecedent", columns="consequent", values=metric).reindex(
        index=names, columns=names
    )
    if metric == "lift":
        # log2 scale centred on 1 (chance), capped at 8x either way so one rare pair
        # does not wash out the rest
        data = np.log2(grid.astype("float64").clip(lower=1 / 8, upper=8))
        top = float(np.nanmax(np.abs(data.to_numpy()))) if data.notna().any().any() else 1.0
        top = max(top, 1.0)
        sns.heatmap(
            data,
            ax=ax,
            cmap="RdBu",
            center=0,
            vmin=-top,
            vmax=top,
            annot=grid.round(2),
            fmt="",
            cbar_kws={"label": "lift (log scale; 1 = chance)"},
            linewidths=0.5,
        )
        cbar = ax.collections[0].colorbar
        ticks = [t for t in range(-8, 9) if abs(t) <= top]
        cbar.set_ticks(ticks, labels=[f"{2.0**t:.3g}" for t in ticks])
    else:
        sns.heatmap(
            grid,
            ax=ax,
            cmap="Blues",
            annot=True,
            fmt=".0%",
            cbar_kws={"label": metric},
            linewidths=0.5,
        )
    ax.set_xlabel("also bought")
    ax.set_ylabel("accounts that bought")
    ax.set_title(f"Product affinity across accounts ({metric})")
    ax.tick_params(axis="x", rotation=30)
    for label in ax.get_xticklabels():
        label.set_ha("right")
    return ax


def plot_stage_win_rates(rates: pd.DataFrame, *, by: str = "product", ax=None):
    """Heatmap of learned win probability per group and open stage (the pipeline weights).

    Parameters
    ----------
    rates : DataFrame
        From :func:`pipeline_lib.product_potential.compute_stage_win_rates`.
    by : str, default "product"
        Its group column.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(rates, [by, "stage", "win_probability", "reached"], "plot_stage_win_rates")
    ax = get_ax(ax)
    stages = list(dict.fromkeys(rates["stage"]))
    grid = rates.pivot(index=by, columns="stage", values="win_probability")[stages]
    n = rates.pivot(index=by, columns="stage", values="reached")[stages]
    annot = grid.map(lambda v: f"{v:.0%}") + "\n" + n.map(lambda v: f"n={int(v)}")
    sns.heatmap(
        grid,
        ax=ax,
        cmap="Blues",
        vmin=0,
        vmax=1,
        annot=annot,
        fmt="",
        annot_kws={"fontsize": 8},
        cbar_kws={"label": "win probability"},
        linewidths=0.5,
    )
    ax.set_xlabel("stage reached")
    ax.set_ylabel(by)
    ax.set_title("Win probability learned from closed deals (n = closed deals that reached it)")
    ax.tick_params(axis="x", rotation=20)
    return ax


def plot_white_space(summary: pd.DataFrame, *, currency: str = "", ax=None):
    """Expected value of the white space per product, labelled with the accounts left.

    Parameters
    ----------
    summary : DataFrame
        From :func:`pipeline_lib.product_potential.summarise_white_space`.
    currency : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(summary, ["product", "white_space", "expected_value"], "plot_white_space")
    ax = get_ax(ax)
    y = np.arange(len(summary))
    ax.barh(y, summary["expected_value"], color=GREEN)
    label_rows(ax, summary["product"])
    ax.xaxis.set_major_formatter(money_formatter(currency))
    for yi, v, k in zip(y, summary["expected_value"], summary["white_space"], strict=True):
        ax.text(v, yi, f" {money_text(v)} · {k:,} accounts", va="center", fontsize=8)
    ax.set_xlabel(_with_currency("expected value of the white space", currency))
    ax.set_title("White space per product")
    ax.margins(x=0.3)
    return ax
