"""Figures of the sales-forecast notebook: bookings history and forecast, the pipeline fan
chart, and the calibration of win probabilities."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ._base import (
    ALL,
    BLUE,
    ORANGE,
    RED,
    check_columns,
    get_ax,
    interval_errors,
    money_formatter,
    percent_formatter,
)

__all__ = [
    "plot_bookings_forecast",
    "plot_segment_forecasts",
    "plot_pipeline_fan",
    "plot_calibration",
]

_HISTORY, _FORECAST, _TARGET = BLUE, ORANGE, RED
_METHOD_LABELS = {
    "prophet": "Prophet",
    "seasonal_naive": "seasonal naive",
    "moving_average": "moving average",
}


def plot_bookings_forecast(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    *,
    segment: str = ALL,
    interval: float = 0.8,
    currency: str = "",
    ax=None,
):
    """Won revenue per period, then the chosen forecast with its prediction interval.

    Parameters
    ----------
    history : DataFrame
        ``segment, period, won_amount`` (from
        :func:`pipeline_lib.forecasting.compute_bookings_history`).
    forecast : DataFrame
        ``segment, method, period, forecast, lower, upper`` (``BookingsForecast.shown``).
    segment : str, default "All"
        Which series to draw.
    interval : float, default 0.8
        Coverage of the band (for the legend).
    currency : str
        Shown in the axis label.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(history, ["segment", "period", "won_amount"], "plot_bookings_forecast")
    check_columns(
        forecast, ["segment", "method", "period", "forecast", "lower", "upper"],
        "plot_bookings_forecast",
    )  # fmt: skip
    ax = get_ax(ax)
    h = history.loc[history["segment"].eq(segment)]
    f = forecast.loc[forecast["segment"].eq(segment)]
    ax.plot(h["period"], h["won_amount"], color=_HISTORY, marker="o", ms=3, label="won revenue")
    if len(f):
        method = _METHOD_LABELS.get(f["method"].iloc[0], f["method"].iloc[0])
        # join the forecast to the last actual so the line is continuous
        x = pd.concat([h["period"].tail(1), f["period"]])
        y = pd.concat([h["won_amount"].tail(1), f["forecast"]])
        ax.plot(x, y, color=_FORECAST, ls="--", marker="o", ms=3, label=f"forecast ({method})")
        ax.fill_between(
            f["period"], f["lower"], f["upper"], color=_FORECAST, alpha=0.25,
            label=f"{interval:.0%} interval",
        )  # fmt: skip
    ax.yaxis.set_major_formatter(money_formatter(kilo="K"))
    ax.set_ylim(bottom=0)
    ax.set_ylabel(f"won revenue {currency}".strip())
    ax.set_xlabel("")
    title = "Won revenue" if segment == ALL else f"Won revenue: {segment}"
    ax.set_title(f"{title} — history and forecast")
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_segment_forecasts(
    history: pd.DataFrame,
    forecast: pd.DataFrame,
    *,
    interval: float = 0.8,
    currency: str = "",
    columns: int = 2,
    last_periods: int | None = 24,
):
    """One small panel per segment (the total left out), each with its chosen method.

    Parameters
    ----------
    history, forecast : DataFrame
        As for :func:`plot_bookings_forecast`.
    interval : float
    currency : str
    columns : int, default 2
    last_periods : int, optional
        Show only the latest periods of history.

    Returns
    -------
    matplotlib Figure
    """
    check_columns(history, ["segment", "period", "won_amount"], "plot_segment_forecasts")
    segs = [s for s in history["segment"].unique() if s != ALL]
    if not segs:
        raise ValueError("plot_segment_forecasts: the history has no segment besides 'All'")
    rows = math.ceil(len(segs) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(5 * columns, 3 * rows), sharex=True, squeeze=False
    )
    for ax, seg in zip(axes.ravel(), segs, strict=False):
        h = history.loc[history["segment"].eq(seg)]
        if last_periods:
            h = h.tail(last_periods)
        plot_bookings_forecast(
            h, forecast, segment=seg, interval=interval, currency=currency, ax=ax
        )
        method = forecast.loc[forecast["segment"].eq(seg), "method"]
        label = _METHOD_LABELS.get(method.iloc[0], "") if len(method) else ""
        ax.set_title(f"{seg} ({label})", fontsize=10)
        ax.get_legend().remove()
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    for ax in axes.ravel()[len(segs) :]:
        ax.set_visible(False)
    fig.suptitle("Won revenue per segment — history and forecast", y=1.0)
    fig.tight_layout()
    return fig


def plot_pipeline_fan(periods: pd.DataFrame, *, currency: str = "", ax=None):
    """Fan chart of bookings per future period: P10–P90 band, median, expected, target.

    Each period is labelled with its probability of reaching the target.

    Parameters
    ----------
    periods : DataFrame
        ``period, p10, p50, p90, expected, pipeline_expected, booked, target, p_target``
        (``PipelineForecast.periods``).
    currency : str
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    need = ["period", "p10", "p50", "p90", "expected", "pipeline_expected", "target", "p_target"]
    check_columns(periods, need, "plot_pipeline_fan")
    ax = get_ax(ax)
    x = np.arange(len(periods))
    labels = [f"{p:%Y-%m-%d}" if p.day != 1 else f"{p:%b %Y}" for p in periods["period"]]
    ax.fill_between(x, periods["p10"], periods["p90"], color=_FORECAST, alpha=0.25,
                    label="P10–P90")  # fmt: skip
    ax.plot(x, periods["p50"], color=_FORECAST, marker="o", label="P50 (median)")
    ax.bar(x, periods["pipeline_expected"], width=0.5, color=_HISTORY, alpha=0.5,
           label="expected from open deals")  # fmt: skip
    if periods["target"].notna().any():
        ax.scatter(x, periods["target"], marker="_", s=600, color=_TARGET, lw=2, label="target")
        top = np.nanmax(np.r_[periods["p90"].to_numpy(), periods["target"].to_numpy()])
        for i, p in enumerate(periods["p_target"]):
            if not pd.isna(p):
                ax.annotate(f"P(target) {p:.0%}", (i, top * 1.04), ha="center", fontsize=8)
        ax.set_ylim(0, top * 1.15)
    ax.set_xticks(x, labels)
    ax.yaxis.set_major_formatter(money_formatter(kilo="K"))
    ax.set_ylabel(f"bookings {currency}".strip())
    ax.set_title("Pipeline forecast: bookings per period (open deals + new business)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, ncols=4, frameon=False)
    return ax


def plot_calibration(calibration: pd.DataFrame, *, base_rate: float | None = None, ax=None):
    """Observed win rate against predicted probability, one line per model.

    Parameters
    ----------
    calibration : DataFrame
        ``model, mean_predicted, observed, ci_low, ci_high`` (``WinModel.calibration``);
        the model whose name ends with ``(calibrated)`` gets error bars.
    base_rate : float, optional
        Drawn as a horizontal line (what predicting the base rate would give).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    check_columns(
        calibration, ["model", "mean_predicted", "observed", "ci_low", "ci_high"],
        "plot_calibration",
    )  # fmt: skip
    ax = get_ax(ax)
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="perfect calibration")
    if base_rate is not None:
        ax.axhline(base_rate, color="grey", ls="--", lw=1, label=f"base rate {base_rate:.0%}")
    for model, g in calibration.groupby("model", sort=False):
        chosen = str(model).endswith("(calibrated)")
        if chosen:
            err = interval_errors(g["observed"], g["ci_low"], g["ci_high"])
            ax.errorbar(
                g["mean_predicted"], g["observed"], yerr=err, marker="o", lw=2.5,
                capsize=3, label=model, zorder=3,
            )  # fmt: skip
        else:
            ax.plot(g["mean_predicted"], g["observed"], marker=".", lw=1, alpha=0.7, label=model)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_formatter(percent_formatter())
    ax.yaxis.set_major_formatter(percent_formatter())
    ax.set_xlabel("predicted win probability")
    ax.set_ylabel("observed win rate")
    ax.set_title("Calibration on the test period")
    ax.legend(loc="upper left", fontsize=8)
    return ax
