"""Figures of the trend-review notebook: they draw frames from :mod:`pipeline_lib.trend_review`."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ._base import (
    BLUE,
    GREEN,
    GREY,
    RED,
    check_columns,
    get_ax,
    label_rows,
    money_formatter,
    money_text,
    percent_formatter,
)

__all__ = [
    "plot_stage_funnel",
    "plot_stage_durations",
    "plot_bottlenecks",
    "plot_pipeline_flow",
    "plot_push_rate",
    "plot_velocity_decomposition",
    "plot_trends",
    "plot_segment_win_rates",
    "plot_owner_shrinkage",
    "plot_lost_reasons",
    "plot_what_worked",
]

_UP, _DOWN, _TOTAL, _NEUTRAL = GREEN, RED, BLUE, GREY
_MONEY = {"billions": False}  # amounts here read "EUR 2,500.0M", never in billions


def _money_axis(axis, currency: str) -> None:
    axis.set_major_formatter(money_formatter(currency, currency_first=True, **_MONEY))


def _period_ticks(ax, periods) -> None:
    """Label at most about 12 of the periods at x = 0, 1, ... (rotated)."""
    periods = list(periods)
    step = max(1, len(periods) // 12)
    ax.set_xticks(range(0, len(periods), step), periods[::step], rotation=45, ha="right")


def _changes_of(changes: pd.DataFrame | None, segment_column: str, metric: str) -> pd.DataFrame:
    """The change points of ``metric`` for ``segment_column`` (empty when there are none)."""
    if changes is None or changes.empty:
        return pd.DataFrame(columns=["segment", "period"])
    return changes[(changes["segment_column"] == segment_column) & (changes["metric"] == metric)]


def plot_stage_funnel(conversion: pd.DataFrame, *, ax=None):
    """Deals reaching each stage, labelled with the conversion to the next.

    Parameters
    ----------
    conversion : DataFrame
        From :func:`pipeline_lib.trend_review.compute_stage_conversion`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(
        conversion,
        ["stage", "next_stage", "reached", "conversion", "ci_low", "ci_high"],
        "plot_stage_funnel",
    )
    ax = get_ax(ax)
    y = np.arange(len(conversion))
    ax.barh(y, conversion["reached"], color=_TOTAL)
    label_rows(ax, conversion["stage"])
    top = float(conversion["reached"].max() or 1)
    ax.set_xlim(0, top * 1.55)
    for i, r in enumerate(conversion.itertuples()):
        text = (
            f"  {r.reached:,} reached · {r.conversion:.0%} ({r.ci_low:.0%}–{r.ci_high:.0%}) "
            f"→ {r.next_stage}"
            if pd.notna(r.conversion)
            else f"  {r.reached:,} reached"
        )
        ax.text(r.reached, i, text, va="center", fontsize=8)
    ax.set_xlabel("deals that reached the stage (skipped stages count as passed)")
    ax.set_title("Stage funnel and stage-to-stage conversion")
    ax.grid(axis="y", visible=False)
    return ax


def plot_stage_durations(durations: pd.DataFrame, *, ax=None):
    """Median, p75 and p90 days in each stage (Kaplan–Meier, open deals censored).

    Parameters
    ----------
    durations : DataFrame
        From :func:`pipeline_lib.trend_review.compute_stage_durations`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(
        durations, ["stage", "median_days", "p75_days", "p90_days"], "plot_stage_durations"
    )
    ax = get_ax(ax)
    y = np.arange(len(durations))
    ax.hlines(y, durations["median_days"], durations["p90_days"], color=_NEUTRAL, lw=2)
    for col, marker, label in (
        ("median_days", "o", "median"),
        ("p75_days", "s", "p75"),
        ("p90_days", "D", "p90"),
    ):
        ax.plot(durations[col], y, marker, label=label, ms=7)
    label_rows(ax, durations["stage"])
    ax.set_xlabel("days in stage")
    ax.set_xlim(left=0)
    ax.set_title("Time in stage")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_bottlenecks(bottlenecks: pd.DataFrame):
    """Change in conversion and in median days per stage, with 95 % intervals.

    Parameters
    ----------
    bottlenecks : DataFrame
        From :func:`pipeline_lib.trend_review.compute_bottlenecks`.

    Returns
    -------
    matplotlib Figure
        Two panels side by side; bottleneck stages in red.
    """
    check_columns(
        bottlenecks,
        [
            "stage",
            "conversion_change",
            "conversion_change_low",
            "conversion_change_high",
            "median_days_change",
            "median_days_change_low",
            "median_days_change_high",
            "bottleneck",
        ],
        "plot_bottlenecks",
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.8 + 0.5 * len(bottlenecks)), sharey=True)
    y = np.arange(len(bottlenecks))
    colors = np.where(bottlenecks["bottleneck"], _DOWN, _TOTAL)
    for ax, col, label in (
        (axes[0], "conversion_change", "conversion change (points)"),
        (axes[1], "median_days_change", "change in median days in stage"),
    ):
        scale = 100 if col == "conversion_change" else 1
        mid = bottlenecks[col] * scale
        low = bottlenecks[f"{col}_low"] * scale
        high = bottlenecks[f"{col}_high"] * scale
        ax.hlines(y, low, high, colors=colors, lw=2)
        ax.scatter(mid, y, c=colors, zorder=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(label)
    label_rows(axes[0], bottlenecks["stage"])
    cur, cmp_ = bottlenecks.attrs.get("current", "now"), bottlenecks.attrs.get("comparison", "")
    fig.suptitle(f"Stage changes, {cmp_} → {cur} (red: bottleneck)")
    fig.tight_layout()
    return fig


def plot_pipeline_flow(flow: pd.DataFrame, *, currency: str = "", ax=None):
    """Waterfall of the pipeline flow: start, inflows, outflows, amount changes, end.

    Parameters
    ----------
    flow : DataFrame
        From :func:`pipeline_lib.trend_review.compute_pipeline_flow`.
    currency : str, optional
        Shown on the money axis.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(flow, ["step", "deals", "amount", "kind"], "plot_pipeline_flow")
    ax = get_ax(ax)
    level = 0.0
    for i, r in enumerate(flow.itertuples()):
        if r.kind == "total":
            bottom, height, color = 0.0, r.amount, _TOTAL
            level = r.amount
        else:
            bottom, height = level, r.amount
            color = _UP if r.amount >= 0 else _DOWN
            level += r.amount
        ax.bar(i, height, bottom=bottom, color=color, width=0.65)
        label = money_text(r.amount, **_MONEY)
        if r.kind != "change":
            label += f"\n{abs(r.deals):,} deals"
        ax.text(i, max(bottom, bottom + height), label, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(flow)), flow["step"].str.replace(" ", "\n"))
    _money_axis(ax.yaxis, currency)
    ax.set_ylabel("pipeline amount")
    top = ax.get_ylim()[1]
    ax.set_ylim(top=top * 1.12)
    start, end = flow.attrs.get("start"), flow.attrs.get("end")
    when = f", {start:%Y-%m-%d} → {end:%Y-%m-%d}" if start is not None else ""
    ax.set_title(f"Pipeline flow{when}")
    return ax


def plot_push_rate(push_rate: pd.DataFrame, *, ax=None):
    """Share of open deals pushed per period, with its 95 % interval.

    Parameters
    ----------
    push_rate : DataFrame
        From :func:`pipeline_lib.trend_review.compute_push_rate`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(push_rate, ["period", "push_rate", "ci_low", "ci_high"], "plot_push_rate")
    ax = get_ax(ax)
    x = np.arange(len(push_rate))
    ax.fill_between(x, push_rate["ci_low"], push_rate["ci_high"], alpha=0.25, color=_TOTAL)
    ax.plot(x, push_rate["push_rate"], marker="o", color=_TOTAL)
    ax.set_xticks(x, push_rate["period"], rotation=45, ha="right")
    ax.yaxis.set_major_formatter(percent_formatter(decimals=0))
    ax.set_ylim(bottom=0)
    ax.set_ylabel("open deals pushed in the period")
    ax.set_title("Push rate (expected close date moved later)")
    return ax


def plot_velocity_decomposition(decomposition: pd.DataFrame, *, currency: str = "", ax=None):
    """Bridge from the previous to the current velocity through the four factors.

    Parameters
    ----------
    decomposition : DataFrame
        From :func:`pipeline_lib.trend_review.compute_velocity_decomposition`.
    currency : str, optional
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(
        decomposition,
        ["factor", "previous", "current", "contribution"],
        "plot_velocity_decomposition",
    )
    ax = get_ax(ax)
    total = decomposition[decomposition["factor"] == "velocity"].iloc[0]
    parts = decomposition[decomposition["factor"] != "velocity"]
    prev_label = decomposition.attrs.get("previous", "before")
    cur_label = decomposition.attrs.get("current", "now")
    labels = [f"velocity {prev_label}", *parts["factor"], f"velocity {cur_label}"]
    level = float(total["previous"])
    ax.bar(0, level, color=_TOTAL, width=0.65)
    ax.text(0, level, money_text(level, **_MONEY), ha="center", va="bottom", fontsize=8)
    for i, c in enumerate(parts["contribution"], start=1):
        ax.bar(i, c, bottom=level, color=_UP if c >= 0 else _DOWN, width=0.65)
        ax.text(i, max(level, level + c), f"{c:+,.0f}", ha="center", va="bottom", fontsize=8)
        level += c
    n = len(labels) - 1
    ax.bar(n, float(total["current"]), color=_TOTAL, width=0.65)
    ax.text(
        n, float(total["current"]), money_text(total["current"], **_MONEY), ha="center", va="bottom"
    )
    ax.set_xticks(range(len(labels)), labels, rotation=20)
    _money_axis(ax.yaxis, currency)
    ax.set_ylabel("won value per day")
    ax.set_title("What changed sales velocity")
    return ax


def _mark_changes(ax, x_of: dict, changes: pd.DataFrame | None, metric: str) -> None:
    for r in _changes_of(changes, "all", metric).itertuples():
        if r.period in x_of:
            ax.axvline(x_of[r.period] - 0.5, color=_DOWN, ls="--", lw=1.2)
            ax.text(
                x_of[r.period] - 0.45,
                ax.get_ylim()[1],
                f" change {r.period}",
                color=_DOWN,
                fontsize=8,
                va="top",
            )


def plot_trends(trends: pd.DataFrame, changes: pd.DataFrame | None = None, *, currency: str = ""):
    """Win rate, sales cycle, average won deal and volume per period, with change points.

    Parameters
    ----------
    trends : DataFrame
        From :func:`pipeline_lib.trend_review.compute_trends` (no ``by``).
    changes : DataFrame, optional
        From :func:`pipeline_lib.trend_review.compute_change_points`; overall changes
        (``segment_column == "all"``) are drawn as dashed lines.
    currency : str, optional

    Returns
    -------
    matplotlib Figure
        A 2 × 2 grid; incomplete periods are drawn hollow.
    """
    check_columns(
        trends,
        [
            "period",
            "complete",
            "win_rate",
            "ci_low",
            "ci_high",
            "median_cycle_days",
            "avg_won_amount",
            "created",
        ],
        "plot_trends",
    )
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    x = np.arange(len(trends))
    x_of = dict(zip(trends["period"], x, strict=True))
    panels = (
        (axes[0, 0], "win_rate", "win rate (won / closed)", "win_rate"),
        (axes[0, 1], "median_cycle_days", "median sales cycle (days, won deals)", "cycle_days"),
        (axes[1, 0], "avg_won_amount", "average won deal", "avg_won_amount"),
        (axes[1, 1], "created", "deals created", "created"),
    )
    hollow = ~trends["complete"].to_numpy(bool)
    for ax, col, title, metric in panels:
        if col == "win_rate":
            ax.fill_between(x, trends["ci_low"], trends["ci_high"], alpha=0.25, color=_TOTAL)
            ax.yaxis.set_major_formatter(percent_formatter(decimals=0))
        if col == "created":
            ax.bar(x, trends[col], color=np.where(hollow, "#C8D3E6", _TOTAL))
        else:
            ax.plot(x, trends[col], marker="o", color=_TOTAL)
            ax.plot(x[hollow], trends[col].to_numpy()[hollow], "o", mfc="white", color=_TOTAL)
        if col == "avg_won_amount":
            _money_axis(ax.yaxis, currency)
        ax.set_title(title)
        _mark_changes(ax, x_of, changes, metric)
    for ax in axes[1]:
        _period_ticks(ax, trends["period"])
    fig.suptitle("Trends per period (dashed: detected change points)")
    fig.tight_layout()
    return fig


def plot_segment_win_rates(
    trends: pd.DataFrame, *, segment_column: str, changes: pd.DataFrame | None = None, ax=None
):
    """Win rate per period of each segment; segments with a detected change are bold.

    Parameters
    ----------
    trends : DataFrame
        From :func:`pipeline_lib.trend_review.compute_trends` with ``by=segment_column``.
    segment_column : str
    changes : DataFrame, optional
        From :func:`pipeline_lib.trend_review.compute_change_points` with the same ``by``.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(trends, [segment_column, "period", "win_rate"], "plot_segment_win_rates")
    ax = get_ax(ax)
    periods = list(dict.fromkeys(trends["period"]))
    x_of = {p: i for i, p in enumerate(periods)}
    hits = _changes_of(changes, segment_column, "win_rate")
    flagged = set(hits["segment"])
    for seg, g in trends.groupby(segment_column, sort=True):
        xs = g["period"].map(x_of)
        bold = seg in flagged
        ax.plot(
            xs,
            g["win_rate"],
            marker="o" if bold else None,
            lw=2.5 if bold else 1,
            alpha=1 if bold else 0.45,
            label=f"{seg}{' (change)' if bold else ''}",
        )
    for r in hits.itertuples():
        if r.period in x_of:
            ax.axvline(x_of[r.period] - 0.5, color=_DOWN, ls="--", lw=1)
    _period_ticks(ax, periods)
    ax.yaxis.set_major_formatter(percent_formatter(decimals=0))
    ax.set_ylabel("win rate")
    ax.set_title(f"Win rate per {segment_column} (bold: significant change point)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return ax


def plot_owner_shrinkage(owners: pd.DataFrame, *, label: str = "owner", ax=None):
    """Raw win rate (with its interval) and the shrunk estimate per owner.

    Parameters
    ----------
    owners : DataFrame
        From :func:`pipeline_lib.trend_review.compute_owner_performance`.
    label : str, default "owner"
        The column naming each row.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(
        owners,
        [label, "closed", "win_rate", "ci_low", "ci_high", "shrunk_win_rate"],
        "plot_owner_shrinkage",
    )
    ax = get_ax(ax)
    y = np.arange(len(owners))
    ax.hlines(
        y, owners["ci_low"], owners["ci_high"], color=_NEUTRAL, lw=2, label="raw 95 % interval"
    )
    ax.scatter(owners["win_rate"], y, color=_NEUTRAL, label="raw win rate", zorder=3)
    ax.scatter(owners["shrunk_win_rate"], y, color=_TOTAL, marker="D", label="shrunk", zorder=4)
    prior = owners.attrs.get("prior")
    if prior:
        ax.axvline(prior[0] / (prior[0] + prior[1]), color=_TOTAL, ls=":", lw=1)
    label_rows(ax, [f"{n} ({c})" for n, c in zip(owners[label], owners["closed"], strict=True)])
    ax.xaxis.set_major_formatter(percent_formatter(decimals=0))
    ax.set_xlabel("win rate (closed deals in brackets)")
    ax.set_title("Win rate per rep: raw vs shrunk (empirical Bayes)")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_lost_reasons(lost: pd.DataFrame, *, ax=None):
    """Share of lost deals per reason and period (stacked).

    Parameters
    ----------
    lost : DataFrame
        From :func:`pipeline_lib.trend_review.compute_lost_reasons`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(lost, ["period", "reason", "share"], "plot_lost_reasons")
    ax = get_ax(ax)
    wide = lost.pivot(index="period", columns="reason", values="share").fillna(0.0)
    wide = wide.loc[list(dict.fromkeys(lost["period"]))]
    x = np.arange(len(wide))
    ax.stackplot(x, wide.T.to_numpy(), labels=list(wide.columns), alpha=0.85)
    _period_ticks(ax, wide.index)
    ax.yaxis.set_major_formatter(percent_formatter(decimals=0))
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of lost deals")
    ax.set_title("Lost reasons over time")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return ax


def plot_what_worked(worked: pd.DataFrame, *, metric: str = "win rate", top: int = 12, ax=None):
    """Forest plot of the segments that did clearly better than the rest.

    Parameters
    ----------
    worked : DataFrame
        From :func:`pipeline_lib.trend_review.compute_what_worked`.
    metric : {"win rate", "cycle"}, default "win rate"
    top : int, default 12
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(
        worked,
        ["metric", "segment", "n", "difference", "ci_low", "ci_high", "better"],
        "plot_what_worked",
    )
    if metric not in ("win rate", "cycle"):
        raise ValueError(f"metric={metric!r} is not allowed; use 'win rate' or 'cycle'")
    ax = get_ax(ax)
    rows = worked[(worked["metric"] == metric) & worked["better"]].head(top)
    y = np.arange(len(rows))
    ax.hlines(y, rows["ci_low"], rows["ci_high"], color=_UP, lw=2)
    ax.scatter(rows["difference"], y, color=_UP, zorder=3)
    ax.axvline(0, color="black", lw=0.8)
    label_rows(ax, [f"{s} (n={n})" for s, n in zip(rows["segment"], rows["n"], strict=True)])
    ax.xaxis.set_major_formatter(percent_formatter(decimals=0))
    if metric == "win rate":
        ax.set_xlabel("win rate minus the rest's (points, 95 % interval)")
        ax.set_title("Segments that win clearly more often")
    else:
        ax.set_xlabel("cycle relative to the rest (95 % interval)")
        ax.set_title("Segments that close clearly faster")
    if rows.empty:
        ax.text(0.5, 0.5, "no segment is clearly better", transform=ax.transAxes, ha="center")
    return ax
