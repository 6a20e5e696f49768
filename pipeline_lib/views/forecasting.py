"""Sections of the sales-forecast notebook (``03_sales_forecast``).

The win model and the bookings forecast are each fitted once per (dataset, options) and
shared by the sections that need them (:mod:`pipeline_lib.memo`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .. import forecasting, formatting, plotting, scoring
from ..dataset import Dataset
from ..memo import memoized

__all__ = [
    "bookings_forecast",
    "backtest_accuracy",
    "pipeline_forecast",
    "scored_deals",
    "model_quality",
]

_METHOD_LABELS = {
    "prophet": "Prophet",
    "seasonal_naive": "seasonal naive",
    "moving_average": "moving average",
}


@memoized(copy=False)
def _model(ds: Dataset, as_of) -> scoring.WinModel:
    return scoring.fit_win_model(ds, as_of=as_of)


@memoized()
def _scored(ds: Dataset, as_of) -> pd.DataFrame:
    return scoring.score_open_deals(ds, as_of=as_of, model=_model(ds, as_of))


@memoized(copy=False)
def _bookings(ds: Dataset, as_of, **options) -> forecasting.BookingsForecast:
    return forecasting.compute_bookings_forecast(ds, as_of=as_of, **options)


def _money(value: float, currency: str = "") -> str:
    if pd.isna(value):
        return "–"
    return f"{value:,.0f} {currency}".strip()


def _segment(segment_column: str | None) -> str | None:
    return segment_column or None


def _notes(notes) -> list:
    return [f"> {n}" for n in notes]


def bookings_forecast(
    ds: Dataset,
    *,
    as_of,
    frequency: str = "month",
    horizon: int = 6,
    segment_column: str | None = None,
    origins: int = 4,
    n_jobs: int = -1,
    progress: bool = False,
) -> list:
    """Won revenue per period and the back-test winner's forecast, total and per segment."""
    fc = _bookings(
        ds,
        as_of,
        frequency=frequency,
        horizon=horizon,
        segment=_segment(segment_column),
        origins=origins,
        n_jobs=n_jobs,
        progress=progress,
    )
    cur = ds.base_currency
    shown = fc.shown
    total = shown.loc[shown["segment"].eq("All")]
    method = fc.chosen["All"]
    bt = fc.backtest.loc[fc.backtest["segment"].eq("All")].set_index("method")
    others = ", ".join(
        f"{_METHOD_LABELS[m]} {bt.loc[m, 'mase']:.2f}" for m in bt.index if m != method
    )
    first, last = total["period"].iloc[0], total["period"].iloc[-1]
    text = (
        f"**Next {horizon} {frequency}s ({first:%b %Y} – {last:%b %Y}):** "
        f"{_money(total['forecast'].sum(), cur)} of won revenue forecast "
        f"(per-{frequency} {fc.interval:.0%} intervals from "
        f"{_money(total['lower'].min(), cur)} to {_money(total['upper'].max(), cur)}). "
        f"The method shown is **{_METHOD_LABELS[method]}**, the back-test winner "
        f"(MASE {bt.loc[method, 'mase']:.2f} over {int(bt.loc[method, 'origins'])} rolling "
        f"origins; {others}). MASE below 1 beats repeating last season. Its "
        f"{fc.interval:.0%} intervals held {bt.loc[method, 'coverage']:.0%} "
        f"({bt.loc[method, 'coverage_low']:.0%}–{bt.loc[method, 'coverage_high']:.0%}) of "
        f"the {int(bt.loc[method, 'n'])} back-test actuals."
    )
    if bt.loc[method, "coverage_high"] < fc.interval:
        text += " The band is too narrow: read it as a lower bound on the uncertainty."
    items = [text, *_notes(fc.notes)]
    fig, ax = plt.subplots(figsize=(10, 4))
    plotting.plot_bookings_forecast(
        fc.history, shown, segment="All", interval=fc.interval, currency=cur, ax=ax
    )
    items.append(fig)
    if fc.history["segment"].nunique() > 1:
        items.append(
            plotting.plot_segment_forecasts(fc.history, shown, interval=fc.interval, currency=cur)
        )
    return items


def backtest_accuracy(
    ds: Dataset,
    *,
    as_of,
    frequency: str = "month",
    horizon: int = 6,
    segment_column: str | None = None,
    origins: int = 4,
    n_jobs: int = -1,
    progress: bool = False,
) -> list:
    """The rolling-origin back-test: MAE, MAPE, MASE and interval coverage per method."""
    fc = _bookings(
        ds,
        as_of,
        frequency=frequency,
        horizon=horizon,
        segment=_segment(segment_column),
        origins=origins,
        n_jobs=n_jobs,
        progress=progress,
    )
    bt = fc.backtest
    table = pd.DataFrame(
        {
            "segment": bt["segment"],
            "method": bt["method"].map(_METHOD_LABELS),
            "shown": bt["chosen"].map({True: "✓", False: ""}),
            "origins": bt["origins"],
            "forecasts": bt["n"],
            "MAE": bt["mae"].round().astype("int64"),
            "MAPE": bt["mape"],
            "MASE": bt["mase"],
            "coverage": bt["coverage"],
            "coverage 95 % CI": [
                f"{lo:.0%} – {hi:.0%}"
                for lo, hi in zip(bt["coverage_low"], bt["coverage_high"], strict=True)
            ],
        }
    )
    text = (
        f"Each method forecast the last {horizon} {frequency}s from {int(bt['origins'].max())} "
        f"rolling origins (one {frequency} apart), using only the history before each origin. "
        "MAE = mean absolute error; MAPE = mean absolute error / actual (periods with "
        "revenue); MASE = MAE / the in-sample error of repeating last season; coverage = "
        f"share of actuals inside the {fc.interval:.0%} interval (nominal {fc.interval:.0%})."
    )
    return [
        text,
        formatting.style_table(
            table,
            caption="Back-test accuracy (✓ = the method shown)",
            percent=("MAPE", "coverage"),
            decimals=2,
        ),
    ]


def pipeline_forecast(
    ds: Dataset,
    *,
    as_of,
    frequency: str = "month",
    horizon: int = 6,
    target: float = 0.0,
    n_sims: int = 4000,
    seed: int = 0,
) -> list:
    """Bookings expected from open deals and new business: fan chart, P(target), table."""
    scored = _scored(ds, as_of)
    pf = forecasting.compute_pipeline_forecast(
        ds,
        as_of=as_of,
        frequency=frequency,
        horizon=horizon,
        scored=scored,
        target=target if target and target > 0 else None,
        n_sims=n_sims,
        seed=seed,
    )
    cur = ds.base_currency
    tot = pf.total.iloc[0]
    per = pf.periods
    n_deals = int(pf.deals["amount"].notna().sum())
    lines = [
        f"**Next {horizon} {frequency}s:** {_money(tot['expected'], cur)} expected "
        f"(P10 {_money(tot['p10'], cur)}, P50 {_money(tot['p50'], cur)}, "
        f"P90 {_money(tot['p90'], cur)}), of which {_money(tot['pipeline_expected'], cur)} "
        f"from the {n_deals:,} open deals (amount × win probability × chance of closing in "
        f"the period, timing from {pf.timing_method}) and {_money(tot['new_expected'], cur)} "
        "from deals not created yet (the run-rate of the last 12 periods)."
    ]
    if not pd.isna(tot["target"]):
        lines.append(
            f"Against a target of {_money(tot['target'], cur)} over the horizon, the chance "
            f"of reaching it is **{tot['p_target']:.0%}** ({pf.n_sims:,} simulations, "
            f"seed {pf.seed}); per {frequency} from {per['p_target'].min():.0%} to "
            f"{per['p_target'].max():.0%}."
        )
    items = [" ".join(lines), *_notes(pf.notes)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    plotting.plot_pipeline_fan(per, currency=cur, ax=ax)
    items.append(fig)
    table = per.drop(columns=["target_source"]).rename(
        columns={
            "booked": "already booked",
            "pipeline_expected": "expected: open deals",
            "new_expected": "expected: new deals",
            "expected": "expected total",
            "p_target": "P(target)",
        }
    )
    items.append(
        formatting.style_table(
            table, caption="Bookings per period", percent=("P(target)",), decimals=0
        )
    )
    return items


def scored_deals(ds: Dataset, *, as_of, top: int = 25) -> list:
    """Open deals with their win probability, expected value and top factors."""
    model = _model(ds, as_of)
    scored = _scored(ds, as_of)
    cur = ds.base_currency
    amount = scored["amount"].sum()
    ev = scored["expected_value"].sum()
    text = (
        f"**{len(scored):,} open deals** worth {_money(amount, cur)}; the "
        f"{model.method} model expects {_money(ev, cur)} of it to be won "
        f"({ev / amount:.0%} of the value). Win probability is learnt from "
        f"{model.n_closed:,} deals closed by {model.as_of.date()} only. Factors: how many "
        "points each feature moves the deal's probability compared with a typical deal."
    )
    cols = [
        c
        for c in (
            "name", "product", "stage", "owner", "amount", "close_date",
            "win_probability", "expected_value", "factors",
        )
        if c in scored
    ]  # fmt: skip
    table = scored[cols].rename(
        columns={
            "close_date": "expected close",
            "win_probability": "win probability",
            "expected_value": "expected value",
        }
    )
    return [
        text,
        *_notes(model.notes[:1] if model.fallback else ()),
        formatting.style_table(
            table,
            caption="Open deals by expected value",
            percent=("win probability",),
            decimals=0,
            max_rows=top,
        ),
    ]


def model_quality(ds: Dataset, *, as_of) -> list:
    """How the win models compare on a time-based split, and the calibration plot."""
    model = _model(ds, as_of)
    if model.fallback:
        rates = model.rates.rename(columns={"n": "deals", "raw_rate": "raw win rate"})
        return [
            *_notes(model.notes),
            formatting.style_table(
                rates,
                caption="Fallback: shrunken win rates",
                percent=("raw win rate", "win_rate", "ci_low", "ci_high"),
            ),
        ]
    cmp_ = model.comparison
    best = cmp_.loc[cmp_["chosen"]].iloc[0]
    text = (
        f"Learnt from {model.n_closed:,} closed deals seen on {model.n_examples:,} past dates. "
        f"On the test period (deals open after {model.split_date.date()}, "
        f"{int(best['n']):,} examples) the chosen **{model.method}** reaches AUC "
        f"{best['auc']:.2f} ({best['auc_low']:.2f}–{best['auc_high']:.2f}) and Brier "
        f"{best['brier']:.3f} against {best['brier_base']:.3f} for always predicting the "
        f"base rate (skill {best['brier_skill']:.0%})."
    )
    table = pd.DataFrame(
        {
            "model": cmp_["model"],
            "chosen": cmp_["chosen"].map({True: "✓", False: ""}),
            "test examples": cmp_["n"],
            "won": cmp_["won"],
            "AUC": cmp_["auc"],
            "AUC 95 % CI": [
                f"{a:.3f} – {b:.3f}" for a, b in zip(cmp_["auc_low"], cmp_["auc_high"], strict=True)
            ],
            "Brier": cmp_["brier"],
            "Brier (base rate)": cmp_["brier_base"],
            "Brier skill": cmp_["brier_skill"],
        }
    )
    fig, ax = plt.subplots(figsize=(6, 5))
    plotting.plot_calibration(model.calibration, base_rate=model.base_rate, ax=ax)
    return [
        text,
        *_notes(model.notes),
        formatting.style_table(
            table,
            caption="Win models on the time-based test period",
            decimals=3,
            percent=("Brier skill",),
        ),  # fmt: skip
        fig,
    ]
