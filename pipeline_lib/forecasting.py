"""Sales forecasts: won revenue from history, and from today's open deals, with uncertainty.

Two complementary views of the coming periods:

* **Bookings forecast from history** (:func:`compute_bookings_forecast`): won revenue per
  week or month, in total and per segment, forecast with Prophet and with two simple
  baselines (seasonal naive, moving average). A rolling-origin back-test measures each
  method's accuracy (MAE, MAPE, MASE, interval coverage) and the method with the lowest
  MASE is the one shown. Segments, methods and back-test windows are forecast in
  parallel with :mod:`joblib`: threads here, or any backend set with
  ``joblib.parallel_config`` such as a Dask cluster (:mod:`pipeline_lib.parallel`).
* **Pipeline forecast** (:func:`compute_pipeline_forecast`): each open deal contributes
  amount x win probability (from :mod:`pipeline_lib.scoring`) x the probability that it
  closes in each future period (from the slippage of past deals' expected close dates,
  or their cycle times). A seeded Monte Carlo gives P10/P50/P90 per period and the
  probability of reaching the target; bookings from deals not yet created are added
  from the historical run-rate.

Nothing after ``as_of`` is used; nothing here draws or reads files.
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import schema
from .dataset import Dataset, to_timestamp
from .errors import InsufficientDataError
from .parallel import configured
from .stats import wilson_interval

__all__ = [
    "FREQUENCIES",
    "METHODS",
    "BookingsForecast",
    "PipelineForecast",
    "compute_bookings_history",
    "compute_backtest_windows",
    "forecast_series",
    "backtest_series",
    "compute_forecast_accuracy",
    "compute_bookings_forecast",
    "compute_close_timing",
    "compute_new_business_runrate",
    "compute_period_targets",
    "simulate_bookings",
    "compute_pipeline_forecast",
]

#: Accepted ``frequency`` values and their pandas period codes.
FREQUENCIES = {"month": "M", "week": "W"}
#: Forecasting methods, in order of preference when the back-test ties.
METHODS = ("prophet", "seasonal_naive", "moving_average")
_METHOD_LABELS = {
    "prophet": "Prophet",
    "seasonal_naive": "seasonal naive",
    "moving_average": "moving average",
}
_SEASON = {"M": 12, "W": 52}
_TOTAL = "All"
_OTHER = "Other"
#: From this many Prophet fits on, they run in worker processes rather than threads.
_PROCESS_FITS = 60
#: Seed of the samples Prophet draws its intervals from (see :func:`_prophet`).
_PROPHET_SEED = 0
_prophet_random = threading.Lock()
_MISSING = "(missing)"


def _freq(frequency: str) -> str:
    if frequency not in FREQUENCIES:
        raise ValueError(f"frequency={frequency!r}: use one of {sorted(FREQUENCIES)}")
    return FREQUENCIES[frequency]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer of at least {minimum}")
    return int(value)


def _snapshot(ds: Dataset, ts: pd.Timestamp) -> Dataset:
    """``ds`` as known at the end of ``ts``: ``ds`` itself when it is that snapshot already
    (taking a snapshot again shows the same data and costs a pass over every table)."""
    return ds if ds.as_of is not None and ds.as_of == ts else ds.snapshot(ts)


def _quiet_prophet() -> None:
    """Silence Prophet's and cmdstanpy's loggers and warnings (never in a report).

    The warning filters are installed once, for those modules only: a
    ``warnings.catch_warnings`` block is not thread-safe, and forecasts run in threads.
    """
    for name in ("cmdstanpy", "prophet", "prophet.plot", "prophet.models"):
        logger = logging.getLogger(name)
        logger.disabled = True
        logger.setLevel(logging.CRITICAL + 1)
        logger.propagate = False
    for module in (r"prophet(\..*)?$", r"cmdstanpy(\..*)?$"):
        if not any(
            f[0] == "ignore" and getattr(f[3], "pattern", f[3]) == module for f in warnings.filters
        ):
            warnings.filterwarnings("ignore", module=module)


# --------------------------------------------------------------------------- history


def _last_complete(as_of: pd.Timestamp, freq: str) -> pd.Period:
    """The last period that ends on or before the end of ``as_of``."""
    period = as_of.to_period(freq)
    if (as_of + pd.Timedelta(days=1)).to_period(freq) == period:
        period = period - 1
    return period


def compute_bookings_history(
    ds: Dataset,
    *,
    as_of,
    frequency: str = "month",
    segment: str | None = None,
    max_segments: int = 8,
) -> pd.DataFrame:
    """Won revenue per complete period, in total and per segment, up to ``as_of``.

    Won revenue of a period = sum of ``amount`` of the deals won (``close_date``) in it.
    Only complete periods are kept (a period still running on ``as_of`` is left out) and
    periods without a win count as zero, from the first period any deal was created or
    closed in.

    Parameters
    ----------
    ds : Dataset
        The data (cut to ``as_of``; not modified).
    as_of : str, date or Timestamp
    frequency : {"month", "week"}, default "month"
        Weeks run Monday to Sunday.
    segment : str, optional
        An opportunity column (e.g. ``team``) to break the total down by. Values beyond
        the ``max_segments`` largest by revenue are pooled as ``Other``; a missing value
        is ``(missing)``.
    max_segments : int, default 8

    Returns
    -------
    DataFrame
        ``segment`` (``All`` for the total), ``period`` (first day), ``won_amount``,
        ``won_deals``; sorted by segment (total first) and period. ``attrs["skipped"]``
        counts won deals without an amount (left out).

    Raises
    ------
    ValueError
        For an unknown ``frequency`` or ``segment`` column.
    InsufficientDataError
        When no deal was won in a complete period up to ``as_of``.

    Examples
    --------
    >>> compute_bookings_history(ds, as_of="2025-12-31", segment="team")  # doctest: +SKIP
    """
    freq = _freq(frequency)
    ts = to_timestamp(as_of)
    _check_int("max_segments", max_segments, 1)
    snap = _snapshot(ds, ts)
    opps = snap.opportunities
    if segment is not None and segment not in opps.columns:
        raise ValueError(
            f"segment={segment!r} is not a column of the opportunities; use one of "
            f"{[c for c in ('team', 'product', 'source', 'owner') if c in opps.columns]}"
        )
    last = _last_complete(ts, freq)
    used = ["close_date", "amount"] + (
        [segment] if segment not in (None, "close_date", "amount") else []
    )
    won = opps.loc[opps["status"].eq(schema.WON) & opps["close_date"].notna(), used]
    skipped = int(won["amount"].isna().sum())
    won = won.loc[won["amount"].notna()]
    won = won.assign(period=won["close_date"].dt.to_period(freq))
    won = won.loc[won["period"] <= last]
    if won.empty:
        raise InsufficientDataError(
            f"no deal with an amount was won in a complete {frequency} up to {ts.date()}: "
            "a bookings forecast needs won deals in past periods; load more history or "
            "choose a later as_of"
        )
    start = pd.concat([opps["created_date"], opps["close_date"]]).min().to_period(freq)
    periods = pd.period_range(min(start, won["period"].min()), last, freq=freq)
    parts = [won.assign(segment=_TOTAL)]
    if segment is not None:
        seg = won[segment].astype("object").where(won[segment].notna(), _MISSING).astype(str)
        top = won.groupby(seg)["amount"].sum().sort_values(ascending=False)
        keep = set(top.index[:max_segments])
        parts.append(won.assign(segment=seg.where(seg.isin(keep), _OTHER)))
    allwon = pd.concat(parts, ignore_index=True)
    g = allwon.groupby(["segment", "period"]).agg(
        won_amount=("amount", "sum"), won_deals=("amount", "size")
    )
    segs = [_TOTAL, *sorted(s for s in allwon["segment"].unique() if s != _TOTAL)]
    idx = pd.MultiIndex.from_product([segs, periods], names=["segment", "period"])
    out = g.reindex(idx, fill_value=0).reset_index()
    out["period"] = out["period"].dt.start_time.astype("datetime64[ns]")
    out["won_amount"] = out["won_amount"].astype("float64")
    out["won_deals"] = out["won_deals"].astype("int64")
    out["segment"] = out["segment"].astype("str")
    out.attrs["skipped"] = skipped
    return out


# --------------------------------------------------------------------------- methods


#: Fewest periods with won revenue a bookings forecast is made from.
_MIN_ACTIVE_PERIODS = 3


def _future(last: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    start = pd.Timestamp(last).to_period(freq) + 1
    return pd.period_range(start, periods=horizon, freq=freq).start_time.astype("datetime64[ns]")


def _z(interval: float) -> float:
    from scipy import stats

    return float(stats.norm.ppf(0.5 + interval / 2))


def _seasonal_naive(y: np.ndarray, horizon: int, m: int, interval: float):
    """Repeat the last season; intervals from the in-sample seasonal differences."""
    season = m if len(y) >= m + 2 else 1
    h = np.arange(horizon)
    point = y[len(y) - season + (h % season)]
    resid = y[season:] - y[:-season]
    sd = float(np.std(resid, ddof=1)) if len(resid) > 1 else float(np.std(y))
    k = np.floor(h / season) + 1  # the k-th repeat of the season
    half = _z(interval) * sd * np.sqrt(k)
    return point, point - half, point + half


def _moving_average(y: np.ndarray, horizon: int, window: int, interval: float):
    """The mean of the last ``window`` periods; intervals from past one-step errors."""
    w = min(window, len(y))
    point = np.full(horizon, float(np.mean(y[-w:])))
    errors = np.array([y[t] - np.mean(y[t - w : t]) for t in range(w, len(y))])
    sd = float(np.std(errors, ddof=1)) if len(errors) > 1 else float(np.std(y))
    half = _z(interval) * sd
    return point, point - half, point + half


def _prophet(dates: pd.DatetimeIndex, y: np.ndarray, horizon: int, freq: str, interval: float):
    _quiet_prophet()
    from prophet import Prophet

    m = _SEASON[freq]
    model = Prophet(
        yearly_seasonality=5 if len(y) >= 2 * m else False,
        weekly_seasonality=False,
        daily_seasonality=False,
        interval_width=interval,
        uncertainty_samples=300,
    )
    model.fit(pd.DataFrame({"ds": dates, "y": y}))
    future = pd.DataFrame({"ds": _future(dates[-1], freq, horizon)})
    # Prophet samples its intervals from NumPy's global random state: seed it for this
    # forecast alone (then restore it), one forecast at a time, so that an interval
    # depends on the series only, not on what ran before or beside it (thread, process
    # or Dask worker)
    with _prophet_random:
        state = np.random.get_state()
        np.random.seed(_PROPHET_SEED)
        try:
            fc = model.predict(future)
        finally:
            np.random.set_state(state)
    return (
        fc["yhat"].to_numpy(),
        fc["yhat_lower"].to_numpy(),
        fc["yhat_upper"].to_numpy(),
    )


def forecast_series(
    series: pd.Series,
    *,
    method: str,
    horizon: int,
    frequency: str = "month",
    interval: float = 0.8,
    window: int = 3,
) -> pd.DataFrame:
    """Forecast one regular series of won revenue ``horizon`` periods ahead.

    Methods: ``prophet`` (trend + yearly seasonality once two years are known; the
    interval comes from 300 simulated paths drawn with a fixed seed, so a forecast is
    reproducible wherever it runs);
    ``seasonal_naive`` (each period repeats the same period one season earlier: 12 months
    or 52 weeks, or the last value when the history is shorter than two seasons; the
    interval widens with the square root of the number of seasons ahead);
    ``moving_average`` (the mean of the last ``window`` periods, interval from its past
    one-step errors). Forecasts and bounds are clipped at zero.

    Parameters
    ----------
    series : Series
        Values indexed by period start dates, regular and complete (see
        :func:`compute_bookings_history`).
    method : {"prophet", "seasonal_naive", "moving_average"}
    horizon : int
    frequency : {"month", "week"}
    interval : float, default 0.8
        Coverage of the prediction interval.
    window : int, default 3
        Periods averaged by ``moving_average``.

    Returns
    -------
    DataFrame
        ``period, forecast, lower, upper``.

    Raises
    ------
    ValueError
        For an unknown method or frequency, or a bad horizon/interval.
    InsufficientDataError
        With fewer than 3 periods of history.

    Examples
    --------
    >>> y = pd.Series([1.0, 2, 3, 4], index=pd.date_range("2025-01-01", periods=4, freq="MS"))
    >>> forecast_series(y, method="moving_average", horizon=2, window=2)["forecast"].tolist()
    [3.5, 3.5]
    """
    freq = _freq(frequency)
    if method not in METHODS:
        raise ValueError(f"method={method!r}: use one of {list(METHODS)}")
    horizon = _check_int("horizon", horizon, 1)
    window = _check_int("window", window, 1)
    if not 0 < interval < 1:
        raise ValueError(f"interval={interval!r} must be between 0 and 1")
    y = series.to_numpy(dtype="float64")
    if len(y) < 3:
        raise InsufficientDataError(
            f"only {len(y)} period(s) of history: a forecast needs at least 3 "
            "(more than two seasons for seasonality)"
        )
    dates = pd.DatetimeIndex(series.index)
    if method == "prophet":
        point, lo, hi = _prophet(dates, y, horizon, freq, interval)
    elif method == "seasonal_naive":
        point, lo, hi = _seasonal_naive(y, horizon, _SEASON[freq], interval)
    else:
        point, lo, hi = _moving_average(y, horizon, window, interval)
    return pd.DataFrame(
        {
            "period": _future(dates[-1], freq, horizon),
            "forecast": np.clip(point, 0, None),
            "lower": np.clip(lo, 0, None),
            "upper": np.clip(np.maximum(hi, lo), 0, None),
        }
    )


# --------------------------------------------------------------------------- back-test


def compute_backtest_windows(
    n_periods: int, *, horizon: int, origins: int, min_train: int = 6, step: int = 1
) -> pd.DataFrame:
    """Rolling-origin windows over a series of ``n_periods`` periods (positions 0..n-1).

    The last window tests the final ``horizon`` periods; each earlier origin moves back
    by ``step``. A window trains on positions ``[0, train_end)`` and tests
    ``[train_end, train_end + horizon)``. Windows with fewer than ``min_train`` training
    periods are dropped.

    Parameters
    ----------
    n_periods, horizon, origins, min_train, step : int

    Returns
    -------
    DataFrame
        ``origin`` (1 = oldest), ``train_end`` (exclusive), ``test_start``, ``test_end``
        (exclusive), oldest first.

    Raises
    ------
    ValueError
        For a non-positive horizon, origins or step.
    InsufficientDataError
        When not one window has ``min_train`` training periods.

    Examples
    --------
    >>> compute_backtest_windows(10, horizon=2, origins=3, min_train=4)["train_end"].tolist()
    [6, 7, 8]
    """
    horizon = _check_int("horizon", horizon, 1)
    origins = _check_int("origins", origins, 1)
    step = _check_int("step", step, 1)
    ends = [n_periods - horizon - step * k for k in range(origins - 1, -1, -1)]
    ends = [e for e in ends if e >= max(min_train, 1)]
    if not ends:
        raise InsufficientDataError(
            f"{n_periods} period(s) of history are too few to back-test a {horizon}-period "
            f"forecast (at least {max(min_train, 1) + horizon} are needed)"
        )
    return pd.DataFrame(
        {
            "origin": np.arange(1, len(ends) + 1),
            "train_end": ends,
            "test_start": ends,
            "test_end": [e + horizon for e in ends],
        }
    )


def backtest_series(
    series: pd.Series,
    *,
    method: str,
    horizon: int,
    frequency: str = "month",
    origins: int = 4,
    min_train: int = 6,
    interval: float = 0.8,
    window: int = 3,
) -> pd.DataFrame:
    """Rolling-origin forecasts of one series: each window's forecasts next to the actuals.

    Parameters
    ----------
    series : Series
        As for :func:`forecast_series`.
    method, horizon, frequency, interval, window
        As for :func:`forecast_series`.
    origins, min_train : int
        As for :func:`compute_backtest_windows`.

    Returns
    -------
    DataFrame
        ``origin, step`` (1 = first period ahead), ``period, actual, forecast, lower,
        upper, scale`` (the mean absolute seasonal-naive error on that window's training
        data: the MASE denominator; season length 12 months / 52 weeks, or 1 when the
        training data are shorter than two seasons).
    """
    _freq(frequency)
    windows = compute_backtest_windows(
        len(series), horizon=horizon, origins=origins, min_train=min_train
    )
    common = {"horizon": horizon, "frequency": frequency, "interval": interval, "window": window}
    frames = [
        _backtest_window(series, tuple(w), method=method, **common)
        for w in windows.itertuples(index=False)
    ]
    return _backtest_frame(frames)


def _backtest_window(series: pd.Series, w: tuple, *, method: str, horizon: int, **options):
    """One window ``(origin, train_end, test_start, test_end)`` of :func:`backtest_series`:
    the forecasts from the training part next to the actuals."""
    freq = _freq(options["frequency"])
    origin, train_end, test_start, test_end = (int(v) for v in w)
    train = series.iloc[:train_end]
    fc = forecast_series(train, method=method, horizon=horizon, **options)
    tr = train.to_numpy(dtype="float64")
    m = _SEASON[freq] if len(tr) >= _SEASON[freq] + 2 else 1
    scale = float(np.mean(np.abs(tr[m:] - tr[:-m]))) if len(tr) > m else np.nan
    return fc.assign(
        origin=origin,
        step=np.arange(1, horizon + 1),
        actual=series.to_numpy(dtype="float64")[test_start:test_end],
        scale=scale,
    )


def _backtest_frame(frames: list) -> pd.DataFrame:
    out = pd.concat(frames, ignore_index=True)
    return out[["origin", "step", "period", "actual", "forecast", "lower", "upper", "scale"]]


def compute_forecast_accuracy(backtest: pd.DataFrame) -> dict:
    """Accuracy of back-test forecasts (the output of :func:`backtest_series`).

    MAE = mean |actual - forecast|; MAPE = mean |actual - forecast| / actual over the
    ``mape_n`` forecasts with a positive actual; MASE = mean of |actual - forecast| /
    ``scale`` (each window's in-sample seasonal-naive error); coverage = share of actuals
    within ``[lower, upper]`` with its 95 % Wilson interval.

    Returns
    -------
    dict
        ``origins, n, mae, mape, mape_n, mase, coverage, coverage_low, coverage_high``.

    Examples
    --------
    >>> bt = pd.DataFrame({"origin": [1, 2], "actual": [5.0, 6.0], "forecast": [3.5, 4.5],
    ...                    "lower": [3.0, 4.0], "upper": [5.0, 5.0], "scale": [1.0, 1.0]})
    >>> acc = compute_forecast_accuracy(bt)
    >>> acc["mae"], acc["mase"], acc["coverage"]
    (1.5, 1.5, 0.5)
    """
    bt = backtest
    err = (bt["actual"] - bt["forecast"]).abs()
    pos = bt["actual"] > 0
    scaled = err / bt["scale"].where(bt["scale"] > 0)
    inside = (bt["actual"] >= bt["lower"]) & (bt["actual"] <= bt["upper"])
    n = len(bt)
    lo, hi = wilson_interval(int(inside.sum()), n)
    return {
        "origins": int(bt["origin"].nunique()),
        "n": n,
        "mae": float(err.mean()),
        "mape": float((err[pos] / bt["actual"][pos]).mean()) if pos.any() else np.nan,
        "mape_n": int(pos.sum()),
        "mase": float(scaled.mean()) if scaled.notna().any() else np.nan,
        "coverage": float(inside.mean()),
        "coverage_low": lo,
        "coverage_high": hi,
    }


def _forecast_task(index: int, series: pd.Series, method: str, window, options: dict):
    """One task of the parallel run: one back-test window of one series and method
    (``window`` as in :func:`_backtest_window`), or its forecast from all the history
    (``window=None``); None when the history is too short for it."""
    _quiet_prophet()
    try:
        if window is None:
            return index, forecast_series(series, method=method, **options)
        return index, _backtest_window(series, window, method=method, **options)
    except InsufficientDataError:
        return index, None


@dataclass(frozen=True)
class BookingsForecast:
    """Won-revenue forecasts of one or many series and how their methods were chosen.

    Attributes
    ----------
    history : DataFrame
        From :func:`compute_bookings_history`.
    backtest : DataFrame
        ``segment, method, origins, n, mae, mape, mape_n, mase, coverage, coverage_low,
        coverage_high, chosen``: MAE = mean |actual - forecast|; MAPE = mean
        |actual - forecast| / actual over the ``mape_n`` periods with a positive actual;
        MASE = mean |error| / the training data's mean seasonal-naive error (below 1:
        better than repeating last season in-sample); coverage = share of actuals inside
        the prediction interval (nominal ``interval``), with a Wilson interval.
    forecasts : DataFrame
        ``segment, method, period, forecast, lower, upper`` for every method.
    chosen : dict
        Segment -> the method with the lowest back-test MASE (ties: order of
        :data:`METHODS`).
    frequency : str
    interval : float
    notes : tuple of str
    """

    history: pd.DataFrame
    backtest: pd.DataFrame
    forecasts: pd.DataFrame
    chosen: dict
    frequency: str
    interval: float
    notes: tuple[str, ...] = field(default=())

    @property
    def shown(self) -> pd.DataFrame:
        """The chosen method's forecast per segment (``segment, method, period, ...``)."""
        f = self.forecasts
        keep = f["method"].eq(f["segment"].map(self.chosen))
        return f.loc[keep].reset_index(drop=True)


def compute_bookings_forecast(
    ds: Dataset,
    *,
    as_of,
    frequency: str = "month",
    horizon: int = 6,
    segment: str | None = None,
    methods=METHODS,
    origins: int = 4,
    min_train: int | None = None,
    interval: float = 0.8,
    window: int = 3,
    max_segments: int = 8,
    n_jobs: int = -1,
    progress: bool = False,
) -> BookingsForecast:
    """Forecast won revenue per period, in total and per segment; back-test every method.

    Every (segment, method) is back-tested over ``origins`` rolling origins (as
    :func:`backtest_series`) and forecast ``horizon`` periods from all the history. Each
    back-test window and each final forecast is one task run with
    :class:`joblib.Parallel`: by default in threads (they start at once; Prophet's
    fitting runs in a cmdstan subprocess), or in worker processes from 60 Prophet fits
    on (Prophet's own Python work then runs truly in parallel, which repays starting
    the workers); or on whatever backend ``joblib.parallel_config`` sets, e.g. a Dask
    cluster, and the environment variable ``PIPELINE_WORKBENCH_DASK`` points them at
    one without code (:mod:`pipeline_lib.parallel`). The results do not depend on the
    backend.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    frequency : {"month", "week"}, default "month"
    horizon : int, default 6
        Periods ahead.
    segment : str, optional
        Opportunity column to forecast per value of, besides the total.
    methods : sequence of str, default all of :data:`METHODS`
    origins : int, default 4
        Back-test origins (windows).
    min_train : int, optional
        Fewest training periods of a back-test window (default: 12 months or 26 weeks,
        never more than half the history).
    interval : float, default 0.8
        Coverage of the prediction intervals.
    window : int, default 3
        Periods averaged by the moving average.
    max_segments : int, default 8
    n_jobs : int, default -1
        Parallel workers (-1: all cores, or all of a Dask cluster's; 1: no parallelism).
    progress : bool, default False
        Show a tqdm progress bar (keep it off in reports).

    Returns
    -------
    BookingsForecast

    Raises
    ------
    ValueError
        For unknown methods, frequency or segment, or a bad horizon.
    InsufficientDataError
        When the history has no won deal, won revenue in fewer than 3 periods, or is
        too short to back-test any method.

    Examples
    --------
    >>> fc = compute_bookings_forecast(ds, as_of="2025-12-31", segment="team")  # doctest: +SKIP
    >>> fc.backtest[["segment", "method", "mase", "chosen"]]  # doctest: +SKIP
    """
    from joblib import Parallel, delayed
    from joblib.parallel import get_active_backend
    from tqdm.auto import tqdm

    freq = _freq(frequency)
    horizon = _check_int("horizon", horizon, 1)
    origins = _check_int("origins", origins, 1)
    methods = tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods={list(methods)!r}: choose among {list(METHODS)}")
    hist = compute_bookings_history(
        ds, as_of=as_of, frequency=frequency, segment=segment, max_segments=max_segments
    )
    n = int(hist["segment"].eq(_TOTAL).sum())
    if min_train is None:
        min_train = min(12 if freq == "M" else 26, max(3, n // 2))
    if n < min_train + horizon:
        raise InsufficientDataError(
            f"only {n} complete {frequency}(s) of history up to {to_timestamp(as_of).date()}: "
            f"a {horizon}-{frequency} forecast and its back-test need at least "
            f"{min_train + horizon}; shorten the horizon or load more history"
        )
    active = int(hist.loc[hist["segment"].eq(_TOTAL), "won_amount"].gt(0).sum())
    if active < _MIN_ACTIVE_PERIODS:
        raise InsufficientDataError(
            f"won revenue in only {active} of the {n} complete {frequency}s up to "
            f"{to_timestamp(as_of).date()}: a bookings forecast needs won deals in at least "
            f"{_MIN_ACTIVE_PERIODS} {frequency}s to have a pattern to follow; load more "
            "history or choose a later as_of"
        )
    options = {"horizon": horizon, "frequency": frequency, "interval": interval, "window": window}
    series = {
        seg: g.set_index("period")["won_amount"] for seg, g in hist.groupby("segment", sort=False)
    }
    try:
        windows = [
            tuple(int(v) for v in w)
            for w in compute_backtest_windows(
                n, horizon=horizon, origins=origins, min_train=min_train
            ).itertuples(index=False)
        ]
    except InsufficientDataError:
        windows = []
    # one task per (segment, method, back-test window), and one for the final forecast
    # (window None): a Prophet fit each, so that the work spreads evenly over the workers
    tasks = [(seg, m, w) for seg in series for m in methods for w in (*windows, None)]
    calls = (
        delayed(_forecast_task)(i, series[seg], m, w, options)
        for i, (seg, m, w) in enumerate(tasks)
    )
    # Half of a Prophet fit is Python (the other half runs in cmdstan's own process):
    # threads start at once but share one interpreter; worker processes take a second
    # or two to start, then run it all in parallel. Threads for a few fits, processes
    # for many (any backend set by the caller wins).
    fits = sum(m == "prophet" for _, m, _ in tasks)
    prefer = "processes" if fits >= _PROCESS_FITS else "threads"
    results = [None] * len(tasks)
    with configured():  # PIPELINE_WORKBENCH_DASK, unless the caller chose a backend
        # results stream as they finish where the backend can (threads, loky, Dask);
        # others (multiprocessing) return them all at the end and the bar jumps once
        backend, _ = get_active_backend(prefer=prefer)
        streams = bool(getattr(backend, "supports_return_generator", False))
        run = Parallel(
            n_jobs=n_jobs,
            prefer=prefer,
            return_as="generator_unordered" if streams else "list",
        )
        with tqdm(total=len(tasks), desc="Forecasting", disable=not progress, leave=False) as bar:
            for i, res in run(calls):
                results[i] = res
                bar.update(1)
    done = dict(zip(tasks, results, strict=True))
    rows, fcs = [], []
    for seg in series:
        for method in methods:
            frames = [done[seg, method, w] for w in windows]
            if windows and all(f is not None for f in frames):
                acc = compute_forecast_accuracy(_backtest_frame(frames))
                rows.append({"segment": seg, "method": method, **acc})
            if done[seg, method, None] is not None:
                fcs.append(done[seg, method, None].assign(segment=seg, method=method))
    if not rows or not fcs:
        raise InsufficientDataError(
            "no method could be back-tested on this history; load more periods"
        )
    bt = pd.DataFrame(rows)
    rank = bt["method"].map({m: i for i, m in enumerate(METHODS)})
    best = (
        bt.assign(_key=bt["mase"].fillna(np.inf), _rank=rank)
        .sort_values(["segment", "_key", "_rank"])
        .groupby("segment", sort=False)
        .first()["method"]
    )
    chosen = best.to_dict()
    bt["chosen"] = bt["method"].eq(bt["segment"].map(chosen))
    seg_order = {s: i for i, s in enumerate(series)}
    bt = bt.assign(_s=bt["segment"].map(seg_order), _m=rank).sort_values(["_s", "_m"])
    bt = bt.drop(columns=["_s", "_m"])
    forecasts = pd.concat(fcs, ignore_index=True)[
        ["segment", "method", "period", "forecast", "lower", "upper"]
    ]
    notes = []
    if hist.attrs.get("skipped"):
        notes.append(f"{hist.attrs['skipped']:,} won deal(s) without an amount are left out.")
    return BookingsForecast(
        history=hist,
        backtest=bt.reset_index(drop=True),
        forecasts=forecasts,
        chosen=chosen,
        frequency=frequency,
        interval=interval,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- pipeline


def _forecast_periods(ts: pd.Timestamp, freq: str, horizon: int) -> pd.PeriodIndex:
    first = (ts + pd.Timedelta(days=1)).to_period(freq)
    return pd.period_range(first, periods=horizon, freq=freq)


def compute_close_timing(
    ds: Dataset, *, as_of, frequency: str = "month", horizon: int = 6, examples=None
) -> pd.DataFrame:
    """Probability that each open deal, if won, closes in each of the next periods.

    With a stage history the *slippage* method is used: for every (won deal, past cut
    date) of :func:`pipeline_lib.scoring.compute_training_examples`, slip = actual close
    date - the expected close date known on that cut. An open deal expected to close
    ``d`` days after ``as_of`` closes ``d + slip`` days after it, with slips drawn from
    those that keep the close after ``as_of`` (a deal still open cannot have closed).
    Without a stage history (past expected dates unknown) the *cycle-time* method is
    used: a deal of age ``a`` closes at the age of a won deal whose cycle exceeded ``a``.
    The probabilities of a deal sum to at most 1; the rest falls after the horizon.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    frequency : {"month", "week"}
    horizon : int
        Periods from the one holding the day after ``as_of``.
    examples : DataFrame, optional
        Training examples already computed for ``as_of`` (saves time).

    Returns
    -------
    DataFrame
        ``opportunity_id``, one column per period start date (``Timestamp`` labels) with
        the probability, ``after_horizon``. ``attrs["method"]`` is ``"slippage"`` or
        ``"cycle time"``, ``attrs["observations"]`` the number of past cases used.

    Raises
    ------
    InsufficientDataError
        When no won deal is known to learn timing from.

    Examples
    --------
    >>> compute_close_timing(ds, as_of="2025-12-31", horizon=3)  # doctest: +SKIP
    """
    from .scoring import compute_training_examples

    freq = _freq(frequency)
    ts = to_timestamp(as_of)
    horizon = _check_int("horizon", horizon, 1)
    snap = _snapshot(ds, ts)
    opps = snap.opportunities
    open_ = opps.loc[opps["status"].eq(schema.OPEN)].reset_index(drop=True)
    periods = _forecast_periods(ts, freq, horizon)
    end = ts + pd.Timedelta(days=1)
    # days after as_of by which each period has ended (a close on day `end + k` has k)
    bounds = np.array([(p.end_time.normalize() - end).days for p in periods], dtype="float64")
    labels = list(periods.start_time.astype("datetime64[ns]"))
    won = opps.loc[
        opps["status"].eq(schema.WON) & opps["close_date"].notna(), ["created_date", "close_date"]
    ]
    if won.empty:
        raise InsufficientDataError(
            f"no deal was won by {ts.date()}: close timing cannot be learnt"
        )
    method = "cycle time"
    if snap.stage_history is not None and "close_date" in snap.stage_history:
        if examples is None:
            examples = compute_training_examples(snap, as_of=ts, features=False)
        ex = examples.loc[
            examples["won"].eq(1) & examples["expected_close"].notna(),
            ["close_date", "expected_close"],
        ]
        if len(ex) >= 20:
            method = "slippage"
            slips = np.sort((ex["close_date"] - ex["expected_close"]).dt.days.to_numpy())
            offset = (open_["close_date"] - end).dt.days.to_numpy(dtype="float64")
    if method == "cycle time":
        cyc = (won["close_date"] - won["created_date"]).dt.days.dropna().to_numpy()
        slips = np.sort(cyc.astype("float64"))
        age = (end - open_["created_date"]).dt.days.to_numpy(dtype="float64")
        offset = -age  # closes at cycle c: c - age days after as_of
    # per deal (all at once): the past cases still possible (d + slip >= 0) and the share
    # of them closing by the end of each period
    d = np.nan_to_num(np.asarray(offset, dtype="float64"), nan=0.0)
    lo = np.searchsorted(slips, -d, side="left")
    beyond = lo == len(slips)  # beyond every past case: the closest past cases
    if beyond.any() and len(slips):
        lo[beyond] = max(len(slips) - 20, 0)
        d[beyond] = -slips[lo[beyond]]
    avail = len(slips) - lo
    cum = np.searchsorted(slips, bounds[None, :] - d[:, None], side="right") - lo[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        cum = np.clip(cum, 0, avail[:, None]) / avail[:, None]
    probs = np.diff(np.concatenate([np.zeros((len(d), 1)), cum], axis=1), axis=1)
    probs[avail == 0] = 0.0
    out = pd.DataFrame(probs.reshape(len(open_), horizon), columns=labels)
    out.insert(0, "opportunity_id", open_["opportunity_id"].to_numpy())
    out["after_horizon"] = 1 - probs.sum(axis=1)
    out.attrs["method"] = method
    out.attrs["observations"] = len(slips)
    return out


def compute_new_business_runrate(
    ds: Dataset, *, as_of, frequency: str = "month", horizon: int = 6, lookback: int = 12
) -> pd.DataFrame:
    """Past bookings from deals not yet created at an origin, by periods ahead.

    For each past origin ``t`` (the end of one of the ``lookback`` most recent periods
    for which period ``t + step`` is complete) and each ``step`` 1..``horizon``: the
    revenue won in period ``t + step`` from deals created after ``t``. These are the
    run-rate observations the pipeline forecast adds for deals not yet in the CRM.

    Returns
    -------
    DataFrame
        ``step, origin`` (period start), ``won_amount``.

    Raises
    ------
    InsufficientDataError
        When no origin has a complete following period.

    Examples
    --------
    >>> rr = compute_new_business_runrate(ds, as_of="2025-12-31")  # doctest: +SKIP
    >>> rr.groupby("step")["won_amount"].mean()  # doctest: +SKIP
    """
    freq = _freq(frequency)
    ts = to_timestamp(as_of)
    horizon = _check_int("horizon", horizon, 1)
    lookback = _check_int("lookback", lookback, 1)
    opps = _snapshot(ds, ts).opportunities
    won = opps.loc[
        opps["status"].eq(schema.WON) & opps["amount"].notna(),
        ["created_date", "close_date", "amount"],
    ]
    # periods as ordinals (missing dates never match, as NaT periods never compared equal)
    cp = won["close_date"].dt.to_period(freq).array.asi8
    crp = won["created_date"].dt.to_period(freq).array.asi8
    cp = np.where(won["close_date"].isna().to_numpy(), np.iinfo("int64").min, cp)
    crp_known = won["created_date"].notna().to_numpy()
    amount = won["amount"].to_numpy(dtype="float64")
    last = _last_complete(ts, freq)
    rows = []
    for step in range(1, horizon + 1):
        for k in range(lookback):
            origin = last - step - k
            target = origin + step
            new = amount[(cp == target.ordinal) & crp_known & (crp > origin.ordinal)]
            rows.append(
                {
                    "step": step,
                    "origin": origin.start_time,
                    "won_amount": float(new.sum()),
                }
            )
    out = pd.DataFrame(rows)
    first = pd.concat([opps["created_date"], opps["close_date"]]).min()
    if pd.isna(first):
        raise InsufficientDataError("no dated deal: the new-business run-rate is unknown")
    out = out.loc[out["origin"] >= first.to_period(freq).start_time]
    if out.empty:
        raise InsufficientDataError(
            f"history before {ts.date()} is too short to measure bookings from new deals"
        )
    out["origin"] = out["origin"].astype("datetime64[ns]")
    return out.reset_index(drop=True)


def compute_period_targets(
    ds: Dataset, periods, *, frequency: str = "month", target: float | None = None
) -> pd.DataFrame:
    """The quota of each forecast period.

    ``target`` (a number per period) wins when given. Otherwise the ``targets`` table
    is used: quotas of the teams present in the opportunities (all rows when the table
    has no ``team``), spread evenly over the days of their period and summed over the
    days of each forecast period (so monthly quotas also give weekly ones). A day whose
    month has no quota takes the quota of the same month one year earlier (said in
    ``source``).

    Parameters
    ----------
    ds : Dataset
    periods : sequence of Timestamp
        Period start dates.
    frequency : {"month", "week"}
    target : float, optional

    Returns
    -------
    DataFrame
        ``period, target`` (missing when unknown), ``source`` (``parameter``,
        ``targets table``, ``last year's quota`` or ``none``).

    Raises
    ------
    ValueError
        For an unknown ``frequency``.

    Examples
    --------
    >>> compute_period_targets(ds, ["2026-01-01"], target=1e6)["source"].tolist()  # doctest: +SKIP
    ['parameter']
    """
    freq = _freq(frequency)
    periods = pd.DatetimeIndex(periods)
    if target is not None and target > 0:
        return pd.DataFrame(
            {"period": periods, "target": float(target), "source": "parameter"}
        ).astype({"source": "str"})
    t = ds.table("targets")
    none = pd.DataFrame({"period": periods, "target": np.nan, "source": "none"})
    if t is None or t.empty:
        return none.astype({"source": "str"})
    if "team" in t and t["team"].notna().any() and "team" in ds.opportunities:
        teams = set(ds.opportunities["team"].dropna().unique())
        t = t.loc[t["team"].isin(teams) | t["team"].isna()]
    daily = {}
    for period, value in t.groupby(t["period"].dt.to_period("M"))["target"].sum().items():
        daily[period] = value / period.days_in_month
    rows = []
    for start in periods:
        p = start.to_period(freq)
        days = pd.date_range(p.start_time, p.end_time.normalize(), freq="D")
        total, sources = 0.0, set()
        for day in days:
            m = day.to_period("M")
            if m in daily:
                total += daily[m]
                sources.add("targets table")
            elif (m - 12) in daily:
                total += daily[m - 12]
                sources.add("last year's quota")
            else:
                total = np.nan
                break
        src = "none" if np.isnan(total) else " + ".join(sorted(sources))
        rows.append({"period": start, "target": total, "source": src})
    return pd.DataFrame(rows).astype({"source": "str"})


def simulate_bookings(
    amounts,
    probabilities,
    *,
    periods,
    new_business: pd.DataFrame | None = None,
    targets=None,
    n_sims: int = 4000,
    seed: int = 0,
) -> pd.DataFrame:
    """Monte Carlo of bookings per period from open deals and new business.

    In every simulation each deal ``i`` independently closes won in period ``k`` with
    probability ``probabilities[i, k]`` (and otherwise not within the horizon), adding
    ``amounts[i]`` to that period. New business adds, per period ``k``, one value drawn
    at random from the run-rate observations of step ``k + 1``. Quantiles are over
    simulations.

    Parameters
    ----------
    amounts : array-like, shape (n,)
    probabilities : array-like, shape (n, len(periods))
        Row sums at most 1.
    periods : sequence
        Labels of the periods (e.g. start dates).
    new_business : DataFrame, optional
        ``step, won_amount`` (from :func:`compute_new_business_runrate`).
    targets : array-like, optional
        Target per period; ``p_target`` = share of simulations at or above it.
    n_sims : int, default 4000
    seed : int, default 0

    Returns
    -------
    DataFrame
        One row per period then a total row (``period`` missing; the sum over the
        horizon): ``period, pipeline_expected`` (sum of amount x probability),
        ``new_expected``, ``expected``, ``p10, p50, p90``, ``target``, ``p_target``.

    Raises
    ------
    ValueError
        On mismatched shapes, probabilities outside [0, 1] or row sums above 1.

    Examples
    --------
    >>> out = simulate_bookings([100.0], [[1.0]], periods=["2026-01"], n_sims=10)
    >>> out[["p10", "p50", "p90"]].iloc[0].tolist()
    [100.0, 100.0, 100.0]
    """
    n_sims = _check_int("n_sims", n_sims, 1)
    amounts = np.asarray(amounts, dtype="float64")
    probs = np.asarray(probabilities, dtype="float64").reshape(len(amounts), -1)
    H = len(periods)
    if probs.shape[1] != H and len(amounts):
        raise ValueError(f"probabilities have {probs.shape[1]} columns for {H} periods")
    if len(amounts) and (np.any(probs < 0) or np.any(probs.sum(axis=1) > 1 + 1e-9)):
        raise ValueError("probabilities must be >= 0 with row sums of at most 1")
    amounts = np.nan_to_num(amounts)
    rng = np.random.default_rng(seed)
    sims = _simulate_pipeline(amounts, probs, n_sims, H, rng)
    new_mean = np.zeros(H)
    if new_business is not None and len(new_business):
        for k in range(H):
            vals = new_business.loc[new_business["step"].eq(k + 1), "won_amount"].to_numpy()
            if len(vals):
                sims[:, k] += rng.choice(vals, size=n_sims)
                new_mean[k] = vals.mean()
    total = sims.sum(axis=1)
    tgt = np.full(H, np.nan) if targets is None else np.asarray(targets, dtype="float64")

    def _row(label, x, pipe, new, target):
        q = np.quantile(x, [0.1, 0.5, 0.9])
        return {
            "period": label,
            "pipeline_expected": pipe,
            "new_expected": new,
            "expected": float(x.mean()),
            "p10": float(q[0]),
            "p50": float(q[1]),
            "p90": float(q[2]),
            "target": target,
            "p_target": float((x >= target).mean()) if not np.isnan(target) else np.nan,
        }

    exp_pipe = (amounts[:, None] * probs).sum(axis=0) if len(amounts) else np.zeros(H)
    out = [_row(periods[k], sims[:, k], exp_pipe[k], new_mean[k], tgt[k]) for k in range(H)]
    total_target = float(tgt.sum()) if not np.isnan(tgt).any() else np.nan
    out.append(_row(None, total, float(exp_pipe.sum()), float(new_mean.sum()), total_target))
    return pd.DataFrame(out)


#: Random numbers drawn at a time by the Monte Carlo (bounds its memory: 8 bytes each).
_SIM_BLOCK = 2_000_000


def _simulate_pipeline(amounts, probs, n_sims: int, H: int, rng) -> np.ndarray:
    """Bookings per simulation and period from the open deals: ``(n_sims, H)``.

    In simulation ``s`` deal ``i`` closes won in the first period ``k`` whose cumulative
    probability exceeds the uniform number ``u[s, i]`` (none: after the horizon), where
    ``u`` is ``rng.random((n_sims, n))``. The numbers are drawn a block of simulations
    at a time (the same stream, so the same numbers) while a second thread places the
    previous block (NumPy releases the GIL for both); only the deals that close within
    the horizon are placed, and each cell sums its deals in deal order: the result is
    that of placing every deal in turn, with memory bounded by :data:`_SIM_BLOCK`.
    """
    from concurrent.futures import ThreadPoolExecutor

    n = len(amounts)
    sims = np.zeros((n_sims, H))
    if not n:
        return sims
    cum = np.cumsum(probs, axis=1)
    within = cum[:, -1]  # probability of closing won within the horizon

    def place(s0: int, u: np.ndarray) -> None:
        hit = np.flatnonzero(u < within)  # row-major: simulation by simulation, deals in order
        sim, deal = np.divmod(hit, n)
        v = u.reshape(-1)[hit]
        k = np.zeros(len(hit), dtype="int64")  # the period: how many cumulative probs <= u
        for j in range(H - 1):
            k += cum[deal, j] <= v
        cells = np.bincount(sim * H + k, weights=amounts[deal], minlength=len(u) * H)
        sims[s0 : s0 + len(u)] = cells.reshape(len(u), H)

    step = max(1, _SIM_BLOCK // n)
    with ThreadPoolExecutor(max_workers=1) as placer:
        pending = None
        for s0 in range(0, n_sims, step):
            u = rng.random((min(step, n_sims - s0), n))
            if pending is not None:
                pending.result()
            pending = placer.submit(place, s0, u)
        pending.result()
    return sims


@dataclass(frozen=True)
class PipelineForecast:
    """Bookings expected from open deals and new business, per period, with uncertainty.

    Attributes
    ----------
    periods : DataFrame
        One row per forecast period: ``period, booked`` (already won in the period on
        ``as_of``), ``pipeline_expected, new_expected, expected, p10, p50, p90`` (all
        including ``booked``), ``target, target_source, p_target``.
    total : DataFrame
        The same for the whole horizon (one row).
    deals : DataFrame
        Per open deal: ``opportunity_id, name, amount, win_probability,
        p_close_in_horizon`` (if won), ``expected_in_horizon`` (amount x both).
    timing_method : str
        ``slippage`` or ``cycle time``.
    n_sims, seed : int
    notes : tuple of str
    """

    periods: pd.DataFrame
    total: pd.DataFrame
    deals: pd.DataFrame
    timing_method: str
    n_sims: int
    seed: int
    notes: tuple[str, ...] = field(default=())


def compute_pipeline_forecast(
    ds: Dataset,
    *,
    as_of,
    frequency: str = "month",
    horizon: int = 6,
    scored: pd.DataFrame | None = None,
    target: float | None = None,
    lookback: int = 12,
    n_sims: int = 4000,
    seed: int = 0,
    examples: pd.DataFrame | None = None,
) -> PipelineForecast:
    """Bookings expected per period: open deals x win probability x close timing, plus
    the run-rate of deals not yet created, simulated to give P10/P50/P90 and P(target).

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    frequency : {"month", "week"}
    horizon : int, default 6
        Periods from the one holding the day after ``as_of``.
    scored : DataFrame, optional
        :func:`pipeline_lib.scoring.score_open_deals` output for ``as_of``
        (``opportunity_id, amount, win_probability``); computed when omitted.
    target : float, optional
        Quota per period overriding the targets table (see :func:`compute_period_targets`).
    lookback : int, default 12
        Past origins of the new-business run-rate.
    n_sims : int, default 4000
    seed : int, default 0
    examples : DataFrame, optional
        Training examples for ``as_of`` (reused for the close timing).

    Returns
    -------
    PipelineForecast

    Raises
    ------
    InsufficientDataError
        When no deal has been won by ``as_of`` (no timing, no probabilities).

    Examples
    --------
    >>> pf = compute_pipeline_forecast(ds, as_of="2025-12-31", horizon=3)  # doctest: +SKIP
    >>> pf.periods[["period", "p10", "p50", "p90", "p_target"]]  # doctest: +SKIP
    """
    from .scoring import score_open_deals

    freq = _freq(frequency)
    ts = to_timestamp(as_of)
    horizon = _check_int("horizon", horizon, 1)
    notes = []
    timing = compute_close_timing(
        ds, as_of=ts, frequency=frequency, horizon=horizon, examples=examples
    )
    labels = [c for c in timing.columns if c not in ("opportunity_id", "after_horizon")]
    try:
        if scored is None:
            scored = score_open_deals(ds, as_of=ts, top_factors=0)
        p_win = timing["opportunity_id"].map(scored.set_index("opportunity_id")["win_probability"])
    except InsufficientDataError as exc:
        if len(timing):
            raise
        notes.append(str(exc))
        p_win = pd.Series(dtype="float64")
    opps = _snapshot(ds, ts).opportunities
    # the open deals only: mapping ids against them is cheaper than against every deal
    snap = opps.loc[opps["status"].eq(schema.OPEN)].set_index("opportunity_id")
    amount = timing["opportunity_id"].map(snap["amount"]).astype("float64")
    missing = int(amount.isna().sum())
    if missing:
        notes.append(f"{missing:,} open deal(s) without an amount add nothing.")
    probs = timing[labels].to_numpy() * p_win.fillna(0).to_numpy()[:, None]
    try:
        runrate = compute_new_business_runrate(
            ds, as_of=ts, frequency=frequency, horizon=horizon, lookback=lookback
        )
    except InsufficientDataError as exc:
        runrate = None
        notes.append(f"No new-business run-rate: {exc}.")
    # the current period may already be under way: add what it has booked so far
    periods = _forecast_periods(ts, freq, horizon)
    won = opps.loc[
        opps["status"].eq(schema.WON) & opps["close_date"].notna(), ["close_date", "amount"]
    ]
    won_period = won["close_date"].dt.to_period(freq).array.asi8
    won_amount = won["amount"].to_numpy(dtype="float64")
    booked = np.array(
        [float(np.nansum(won_amount[won_period == p.ordinal])) for p in periods], dtype="float64"
    )
    if runrate is not None and booked[0] > 0:
        first = periods[0]
        share = ((first.end_time.normalize() - ts).days) / (
            (first.end_time.normalize() - first.start_time).days + 1
        )
        runrate = runrate.assign(
            won_amount=np.where(
                runrate["step"].eq(1), runrate["won_amount"] * share, runrate["won_amount"]
            )
        )
        notes.append(
            f"{periods[0]} is under way: {booked[0]:,.0f} already booked is included, and "
            f"new business is counted for the remaining {share:.0%} of it."
        )
    targets = compute_period_targets(ds, labels, frequency=frequency, target=target)
    sim = simulate_bookings(
        amount.to_numpy(),
        probs,
        periods=labels,
        new_business=runrate,
        targets=targets["target"].to_numpy() - booked,
        n_sims=n_sims,
        seed=seed,
    )
    per, tot = sim.iloc[:-1].reset_index(drop=True), sim.iloc[[-1]].reset_index(drop=True)
    for col in ("pipeline_expected", "expected", "p10", "p50", "p90"):
        per[col] = per[col] + booked
        tot[col] = tot[col] + booked.sum()
    per["target"] = targets["target"].to_numpy()
    tot["target"] = per["target"].sum() if per["target"].notna().all() else np.nan
    per.insert(1, "booked", booked)
    tot.insert(1, "booked", booked.sum())
    per["target_source"] = targets["source"].to_numpy()
    per["period"] = pd.DatetimeIndex(labels)
    tot = tot.drop(columns="period")
    if targets["source"].str.contains("last year").any():
        notes.append(
            "The targets table stops before the horizon: later periods use the quota of "
            "the same month one year earlier."
        )
    if targets["source"].eq("none").all():
        notes.append("No target is known for these periods: P(target) is not computed.")
    deals = pd.DataFrame(
        {
            "opportunity_id": timing["opportunity_id"],
            "name": timing["opportunity_id"].map(snap["name"]) if "name" in snap else pd.NA,
            "amount": amount,
            "win_probability": p_win.to_numpy(),
            "p_close_in_horizon": 1 - timing["after_horizon"],
        }
    )
    deals["expected_in_horizon"] = (
        deals["amount"] * deals["win_probability"] * deals["p_close_in_horizon"]
    )
    deals = deals.sort_values("expected_in_horizon", ascending=False, na_position="last")
    return PipelineForecast(
        periods=per,
        total=tot,
        deals=deals.reset_index(drop=True),
        timing_method=timing.attrs["method"],
        n_sims=n_sims,
        seed=seed,
        notes=tuple(notes),
    )
