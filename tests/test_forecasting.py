"""Bookings forecasts, back-tests, close timing, Monte Carlo and the forecast views."""

from __future__ import annotations

import copy
import logging

import conftest
import joblib
import numpy as np
import pandas as pd
import pytest
from joblib._parallel_backends import ThreadingBackend
from pandas.testing import assert_frame_equal

from pipeline_lib import dataset, demo, forecasting
from pipeline_lib.dataset import Dataset
from pipeline_lib.errors import InsufficientDataError
from pipeline_lib.sources import StageConfig

STAGES = StageConfig(
    open=("Prospecting", "Qualification", "Negotiation/Review"),
    won=("Closed Won",),
    lost=("Closed Lost",),
)


def make_dataset(tables: dict, stages=STAGES) -> Dataset:
    return conftest.make_dataset(tables, stages)


def opportunities(rows) -> pd.DataFrame:
    """rows: (id, status, created, close, amount, team)."""
    stage = {"won": "Closed Won", "lost": "Closed Lost", "open": "Prospecting"}
    frame = pd.DataFrame(
        rows, columns=["opportunity_id", "status", "created_date", "close_date", "amount", "team"]
    )
    frame["stage"] = frame["status"].map(stage)
    for c in ("created_date", "close_date"):
        frame[c] = pd.to_datetime(frame[c])
    return frame.astype({"opportunity_id": "str", "status": "str", "team": "str", "stage": "str"})


@pytest.fixture(scope="module")
def demo_ds():
    return conftest.make_dataset(demo.generate_demo(n_opportunities=500, seed=3))


def monthly(values, start="2023-01-01") -> pd.Series:
    return pd.Series(
        np.asarray(values, dtype="float64"),
        index=pd.date_range(start, periods=len(values), freq="MS"),
    )


# --------------------------------------------------------------------------- history


def test_bookings_history_by_hand():
    # won: Jan 100 (A) + 50 (B), Mar 30 (A); a lost deal in Feb; a win in April is in a
    # period still running on as_of (15 April) and is left out; Feb has no win -> 0
    opps = opportunities(
        [
            ("1", "won", "2025-01-02", "2025-01-10", 100.0, "A"),
            ("2", "won", "2025-01-03", "2025-01-31", 50.0, "B"),
            ("3", "lost", "2025-01-05", "2025-02-10", 70.0, "A"),
            ("4", "won", "2025-02-01", "2025-03-05", 30.0, "A"),
            ("5", "won", "2025-02-01", "2025-04-02", 999.0, "B"),
            ("6", "won", "2025-02-01", "2025-03-06", np.nan, "B"),
        ]
    )
    d = make_dataset({"opportunities": opps})
    h = forecasting.compute_bookings_history(d, as_of="2025-04-15", segment="team")
    months = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01"])
    expected = pd.DataFrame(
        {
            "segment": ["All"] * 3 + ["A"] * 3 + ["B"] * 3,
            "period": list(months) * 3,
            "won_amount": [150.0, 0, 30, 100, 0, 30, 50, 0, 0],
            "won_deals": [2, 0, 1, 1, 0, 1, 1, 0, 0],
        }
    ).astype({"segment": "str", "period": "datetime64[ns]"})
    assert_frame_equal(h, expected)
    assert h.attrs["skipped"] == 1  # the won deal without an amount
    # a month-end as_of keeps that month
    h2 = forecasting.compute_bookings_history(d, as_of="2025-04-30")
    assert h2["period"].iloc[-1] == pd.Timestamp("2025-04-01")
    assert h2["won_amount"].iloc[-1] == 999.0


def test_bookings_history_weekly():
    opps = opportunities(
        [
            ("1", "won", "2025-01-01", "2025-01-06", 10.0, "A"),  # Monday
            ("2", "won", "2025-01-01", "2025-01-12", 5.0, "A"),  # Sunday, same week
            ("3", "won", "2025-01-01", "2025-01-13", 7.0, "A"),  # next Monday
        ]
    )
    d = make_dataset({"opportunities": opps})
    h = forecasting.compute_bookings_history(d, as_of="2025-01-19", frequency="week")
    # weeks start on Monday; the first week holds 1 Jan (Wed) -> starts 30 Dec 2024
    assert h["period"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-12-30",
        "2025-01-06",
        "2025-01-13",
    ]
    assert h["won_amount"].tolist() == [0.0, 15.0, 7.0]


def test_empty_or_short_history_is_a_clear_error():
    opps = opportunities([("1", "lost", "2025-01-02", "2025-01-10", 100.0, "A")])
    d = make_dataset({"opportunities": opps})
    with pytest.raises(InsufficientDataError, match="no deal with an amount was won"):
        forecasting.compute_bookings_history(d, as_of="2025-06-30")
    short = make_dataset(
        {
            "opportunities": opportunities(
                [
                    ("1", "won", "2025-01-02", "2025-01-10", 100.0, "A"),
                    ("2", "won", "2025-02-02", "2025-03-10", 100.0, "A"),
                ]
            )
        }
    )
    with pytest.raises(InsufficientDataError, match=r"only 5 complete month\(s\)"):
        forecasting.compute_bookings_forecast(short, as_of="2025-05-31", horizon=6, n_jobs=1)
    with pytest.raises(ValueError, match="frequency"):
        forecasting.compute_bookings_history(short, as_of="2025-05-31", frequency="day")
    with pytest.raises(ValueError, match="segment='region'"):
        forecasting.compute_bookings_history(short, as_of="2025-05-31", segment="region")


# --------------------------------------------------------------------------- methods


def test_backtest_windows():
    # 10 periods, horizon 2, 3 origins one period apart: the last tests positions 8-9
    w = forecasting.compute_backtest_windows(10, horizon=2, origins=3, min_train=4)
    expected = pd.DataFrame(
        {
            "origin": [1, 2, 3],
            "train_end": [6, 7, 8],
            "test_start": [6, 7, 8],
            "test_end": [8, 9, 10],
        }
    )
    assert_frame_equal(w, expected, check_dtype=False)
    # 5 origins would start training at 3 periods; min_train 4 drops the first
    w = forecasting.compute_backtest_windows(10, horizon=3, origins=5, min_train=4)
    assert w["train_end"].tolist() == [4, 5, 6, 7]
    assert w["test_end"].tolist() == [7, 8, 9, 10]
    with pytest.raises(InsufficientDataError, match="too few to back-test"):
        forecasting.compute_backtest_windows(5, horizon=3, origins=2, min_train=3)
    with pytest.raises(ValueError, match="horizon"):
        forecasting.compute_backtest_windows(10, horizon=0, origins=2)


def test_baseline_forecasts_by_hand():
    y = monthly([1, 2, 3, 4])
    ma = forecasting.forecast_series(y, method="moving_average", horizon=2, window=2)
    assert ma["forecast"].tolist() == [3.5, 3.5]
    assert ma["period"].tolist() == list(pd.to_datetime(["2023-05-01", "2023-06-01"]))
    # 26 months repeating a 12-month pattern: seasonal naive repeats it exactly, with a
    # zero-width interval (every seasonal difference is 0)
    pattern = np.arange(1, 13) * 10.0
    y = monthly(np.r_[pattern, pattern, pattern[:2]])
    sn = forecasting.forecast_series(y, method="seasonal_naive", horizon=4)
    assert sn["forecast"].tolist() == [30.0, 40.0, 50.0, 60.0]
    assert (sn["upper"] - sn["lower"]).abs().max() == pytest.approx(0)


def test_backtest_and_accuracy_by_hand():
    # y = 1..6, window 2, horizon 1, 2 origins, min_train 3:
    # origin 1 trains on 1..4 -> forecast 3.5 vs actual 5; origin 2 on 1..5 -> 4.5 vs 6
    # MAE = 1.5; scale = mean |y_t - y_t-1| on the training data = 1 -> MASE = 1.5
    # MAPE = (1.5/5 + 1.5/6) / 2 = 0.275
    bt = forecasting.backtest_series(
        monthly([1, 2, 3, 4, 5, 6]),
        method="moving_average",
        horizon=1,
        origins=2,
        min_train=3,
        window=2,
    )
    assert bt["forecast"].tolist() == [3.5, 4.5]
    assert bt["actual"].tolist() == [5.0, 6.0]
    assert bt["scale"].tolist() == [1.0, 1.0]
    acc = forecasting.compute_forecast_accuracy(bt)
    assert acc["mae"] == pytest.approx(1.5)
    assert acc["mase"] == pytest.approx(1.5)
    assert acc["mape"] == pytest.approx(0.275)
    assert acc["n"] == 2 and acc["origins"] == 2


def test_forecast_series_errors():
    with pytest.raises(ValueError, match="method='arima'"):
        forecasting.forecast_series(monthly([1, 2, 3]), method="arima", horizon=1)
    with pytest.raises(InsufficientDataError, match="at least 3"):
        forecasting.forecast_series(monthly([1, 2]), method="moving_average", horizon=1)
    with pytest.raises(ValueError, match="interval"):
        forecasting.forecast_series(monthly([1, 2, 3]), method="prophet", horizon=1, interval=2)


@pytest.mark.slow
def test_prophet_forecast_is_silent(capfd, caplog):
    rng = np.random.default_rng(0)
    y = monthly(1000 + 100 * np.arange(30) + rng.normal(0, 50, 30))
    with caplog.at_level(logging.DEBUG):
        fc = forecasting.forecast_series(y, method="prophet", horizon=3)
    out, err = capfd.readouterr()
    assert "cmdstanpy" not in out + err and "Chain" not in out + err and "INFO" not in err
    assert not [r for r in caplog.records if r.name.startswith(("cmdstanpy", "prophet"))]
    assert (fc["lower"] <= fc["forecast"]).all() and (fc["forecast"] <= fc["upper"]).all()
    assert fc["forecast"].iloc[0] > 3000  # it follows the trend


@pytest.mark.slow
def test_prophet_intervals_are_seeded_and_leave_the_global_generator_alone():
    """The same series gives the same interval whatever ran before (or beside) it."""
    rng = np.random.default_rng(0)
    y = monthly(1000 + 100 * np.arange(30) + rng.normal(0, 50, 30))
    np.random.seed(1)
    a = forecasting.forecast_series(y, method="prophet", horizon=3)
    np.random.seed(2)
    before = np.random.get_state()[1].copy()
    b = forecasting.forecast_series(y, method="prophet", horizon=3)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert_frame_equal(a, b)


@pytest.mark.slow
def test_many_prophet_fits_prefer_worker_processes(demo_ds, monkeypatch):
    """From _PROCESS_FITS Prophet fits on, the tasks prefer processes; nothing changes.

    (The tasks then run in threads all the same, to keep the test quick: that they travel
    to other processes is shown on a Dask cluster in test_parallel.py.)
    """
    preferred = []

    class Recording(joblib.Parallel):
        def __init__(self, *args, **kwargs):
            preferred.append(kwargs.get("prefer"))
            super().__init__(*args, backend="threading", **kwargs)

    opts = {"as_of": "2025-12-31", "methods": ("prophet",), "horizon": 2, "origins": 1}
    serial = forecasting.compute_bookings_forecast(demo_ds, n_jobs=1, **opts)
    monkeypatch.setattr(joblib, "Parallel", Recording)
    monkeypatch.setattr(forecasting, "_PROCESS_FITS", 2)  # the total: 1 window + forecast
    pooled = forecasting.compute_bookings_forecast(demo_ds, n_jobs=2, **opts)
    assert preferred == ["processes"]
    assert_frame_equal(pooled.backtest, serial.backtest)
    assert_frame_equal(pooled.forecasts, serial.forecasts)


class _CountingBackend(ThreadingBackend):
    used = 0

    def configure(self, *args, **kwargs):
        type(self).used += 1
        return super().configure(*args, **kwargs)


def test_bookings_forecast_respects_joblib_backend_and_n_jobs(demo_ds, capfd):
    joblib.register_parallel_backend("fc_counting", _CountingBackend)
    opts = {
        "as_of": "2025-12-31",
        "segment": "team",
        "methods": ("seasonal_naive", "moving_average"),
        "horizon": 3,
        "origins": 3,
    }
    with joblib.parallel_config(backend="fc_counting"):
        fc = forecasting.compute_bookings_forecast(demo_ds, **opts)
    assert _CountingBackend.used >= 1
    serial = forecasting.compute_bookings_forecast(demo_ds, n_jobs=1, **opts)
    # a backend that cannot stream results (like Dask's) works too
    with joblib.parallel_config(backend="multiprocessing"):
        pooled = forecasting.compute_bookings_forecast(demo_ds, n_jobs=2, **opts)
    assert_frame_equal(pooled.backtest, serial.backtest)
    assert_frame_equal(fc.backtest, serial.backtest)
    assert_frame_equal(fc.forecasts, serial.forecasts)
    assert "Forecasting" not in capfd.readouterr().err  # no progress bar unless asked
    forecasting.compute_bookings_forecast(demo_ds, n_jobs=1, progress=True, **opts)
    assert "Forecasting" in capfd.readouterr().err
    # one back-test row per segment and method, the chosen one has the lowest MASE
    bt = fc.backtest
    assert len(bt) == 4 * 2 and set(bt["segment"]) == {"All", "SMB", "Mid-Market", "Enterprise"}
    for _seg, g in bt.groupby("segment"):
        assert g["chosen"].sum() == 1
        assert g.loc[g["chosen"], "mase"].iloc[0] == g["mase"].min()
    assert (bt["origins"] == 3).all() and (bt["n"] == 9).all()
    shown = fc.shown
    assert len(shown) == 4 * 3
    assert (shown["method"] == shown["segment"].map(fc.chosen)).all()


# --------------------------------------------------------------------------- Monte Carlo


def test_monte_carlo_one_coin_flip():
    # one deal of 100 won with probability 0.5 in the only period: bookings are 0 or 100
    # with equal chance -> P10 = 0, P90 = 100, mean ~ 50, P(>= 100) ~ 0.5
    out = forecasting.simulate_bookings(
        [100.0], [[0.5]], periods=["p1"], targets=[100.0], n_sims=20_000, seed=1
    )
    row = out.iloc[0]
    assert row["pipeline_expected"] == 50.0
    assert row["expected"] == pytest.approx(50, abs=2)  # sd of the mean = 50/sqrt(20000)
    assert row["p10"] == 0 and row["p90"] == 100
    assert row["p_target"] == pytest.approx(0.5, abs=0.02)


def test_monte_carlo_two_independent_deals():
    # two deals of 100, each won with p = 0.5, both in period 1 of 2:
    # totals 0 / 100 / 200 with probabilities 1/4, 1/2, 1/4 -> P10 0, P50 100, P90 200,
    # P(>= 200) = 1/4; period 2 is always 0; new business adds 10 in period 2
    out = forecasting.simulate_bookings(
        [100.0, 100.0],
        [[0.5, 0.0], [0.5, 0.0]],
        periods=["p1", "p2"],
        new_business=pd.DataFrame({"step": [2, 2], "won_amount": [10.0, 10.0]}),
        targets=[200.0, 5.0],
        n_sims=20_000,
        seed=2,
    )
    p1, p2, total = out.iloc[0], out.iloc[1], out.iloc[2]
    assert (p1["p10"], p1["p50"], p1["p90"]) == (0, 100, 200)
    assert p1["p_target"] == pytest.approx(0.25, abs=0.015)
    assert (p2["p10"], p2["p90"], p2["p_target"]) == (10, 10, 1.0)
    assert p2["new_expected"] == 10 and p1["new_expected"] == 0
    assert pd.isna(total["period"]) and total["pipeline_expected"] == 100
    assert total["target"] == 205 and total["p_target"] == pytest.approx(0.25, abs=0.015)


def test_monte_carlo_is_seeded_and_checks_input():
    kw = {"periods": ["a", "b"], "n_sims": 500}
    probs = [[0.3, 0.3], [0.2, 0.5]]
    a = forecasting.simulate_bookings([10.0, 20.0], probs, seed=7, **kw)
    b = forecasting.simulate_bookings([10.0, 20.0], probs, seed=7, **kw)
    assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="row sums"):
        forecasting.simulate_bookings([1.0], [[0.8, 0.5]], **kw)
    with pytest.raises(ValueError, match="columns"):
        forecasting.simulate_bookings([1.0], [[0.8, 0.1, 0.1]], **kw)


def _place_every_deal(amounts, probs, n_sims, rng) -> np.ndarray:
    """The Monte Carlo as first written: all numbers at once, every deal in turn."""
    sims = np.zeros((n_sims, probs.shape[1] + 1))
    cum = np.cumsum(probs, axis=1)
    u = rng.random((n_sims, len(amounts)))
    for i in range(len(amounts)):
        k = np.searchsorted(cum[i], u[:, i], side="right")
        np.add.at(sims, (np.arange(n_sims), k), amounts[i])
    return sims[:, :-1]


def test_monte_carlo_in_blocks_equals_placing_every_deal_in_turn(monkeypatch):
    gen = np.random.default_rng(5)
    amounts = gen.gamma(2.0, 1000.0, 37)
    probs = gen.dirichlet(np.ones(5), 37)[:, :4] * gen.random((37, 1))  # row sums < 1
    probs[3] = 0.0  # never closes in the horizon
    probs[4] = [1.0, 0.0, 0.0, 0.0]  # surely closes in the first period
    want_rng, got_rng = np.random.default_rng(9), np.random.default_rng(9)
    want = _place_every_deal(amounts, probs, 301, want_rng)
    monkeypatch.setattr(forecasting, "_SIM_BLOCK", 100)  # 2 simulations a block, 151 blocks
    got = forecasting._simulate_pipeline(amounts, probs, 301, 4, got_rng)
    np.testing.assert_array_equal(got, want)  # exactly: the same numbers, added in order
    assert got_rng.random() == want_rng.random()  # and the generator is where it was
    periods = ["a", "b", "c", "d"]
    blocks = forecasting.simulate_bookings(amounts, probs, periods=periods, n_sims=301, seed=3)
    monkeypatch.setattr(forecasting, "_SIM_BLOCK", 10**9)
    whole = forecasting.simulate_bookings(amounts, probs, periods=periods, n_sims=301, seed=3)
    assert_frame_equal(blocks, whole)


# --------------------------------------------------------------------------- pipeline parts


def test_close_timing_from_cycle_times_by_hand():
    # no stage history -> cycle times. Won cycles 10, 20 and 60 days. The open deal is 15
    # days old at the end of 31 Jan: only cycles above 15 remain (20 and 60), so it
    # closes 5 days (6 Feb) or 45 days (18 Mar) after 1 Feb: 1/2 in Feb, 1/2 in Mar.
    opps = opportunities(
        [
            ("w1", "won", "2024-11-01", "2024-11-11", 10.0, "A"),
            ("w2", "won", "2024-11-01", "2024-11-21", 10.0, "A"),
            ("w3", "won", "2024-11-01", "2024-12-31", 10.0, "A"),
            ("o", "open", "2025-01-17", "2025-02-15", 10.0, "A"),
        ]
    )
    d = make_dataset({"opportunities": opps})
    t = forecasting.compute_close_timing(d, as_of="2025-01-31", horizon=3)
    assert t.attrs["method"] == "cycle time"
    assert t.columns[1:4].tolist() == list(
        pd.to_datetime(["2025-02-01", "2025-03-01", "2025-04-01"])
    )
    assert t.iloc[0, 1:].tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0])


def test_close_timing_beyond_every_past_case():
    # won cycles 10, 20 and 60 days; the open deal is 100 days old on 31 Jan, older than
    # every cycle: it is taken as a deal at the shortest of the (up to 20) longest past
    # cycles, so it closes 0, 10 or 50 days after 1 Feb: 2/3 in Feb, 1/3 in Mar
    opps = opportunities(
        [
            ("w1", "won", "2024-11-01", "2024-11-11", 10.0, "A"),
            ("w2", "won", "2024-11-01", "2024-11-21", 10.0, "A"),
            ("w3", "won", "2024-11-01", "2024-12-31", 10.0, "A"),
            ("o", "open", "2024-10-24", "2025-02-15", 10.0, "A"),
        ]
    )
    t = forecasting.compute_close_timing(
        make_dataset({"opportunities": opps}), as_of="2025-01-31", horizon=3
    )
    assert t.iloc[0, 1:].tolist() == pytest.approx([2 / 3, 1 / 3, 0.0, 0.0])


def test_close_timing_from_slippage(demo_ds):
    t = forecasting.compute_close_timing(demo_ds, as_of="2025-06-30", horizon=4)
    assert t.attrs["method"] == "slippage" and t.attrs["observations"] >= 20
    probs = t.drop(columns=["opportunity_id"]).to_numpy()
    assert (probs >= -1e-12).all()
    assert probs.sum(axis=1) == pytest.approx(np.ones(len(t)))


def test_period_targets():
    # monthly quotas of teams A and B (C has no deal, so its quota is left out);
    # Jan 2025: 310 + 620 = 930 -> 30 a day; Feb: 280 -> 10 a day
    targets = pd.DataFrame(
        {
            "period": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-02-01", "2025-01-01"]),
            "target": [310.0, 620.0, 280.0, 1e6],
            "team": ["A", "B", "A", "C"],
        }
    )
    opps = opportunities(
        [
            ("1", "won", "2024-12-01", "2024-12-10", 1.0, "A"),
            ("2", "won", "2024-12-01", "2024-12-10", 1.0, "B"),
        ]
    )
    d = make_dataset({"opportunities": opps, "targets": targets})
    m = forecasting.compute_period_targets(d, pd.to_datetime(["2025-01-01", "2025-02-01"]))
    assert m["target"].tolist() == pytest.approx([930.0, 280.0])
    assert m["source"].tolist() == ["targets table", "targets table"]
    # week of Mon 27 Jan - Sun 2 Feb: 5 days of January (150) + 2 of February (20)
    w = forecasting.compute_period_targets(d, [pd.Timestamp("2025-01-27")], frequency="week")
    assert w["target"].iloc[0] == pytest.approx(170.0)
    # a month after the table ends takes the same month a year earlier
    later = forecasting.compute_period_targets(d, [pd.Timestamp("2026-01-01")])
    assert later["target"].iloc[0] == pytest.approx(930.0)
    assert later["source"].iloc[0] == "last year's quota"
    fixed = forecasting.compute_period_targets(d, [pd.Timestamp("2026-01-01")], target=500.0)
    assert (fixed["target"].iloc[0], fixed["source"].iloc[0]) == (500.0, "parameter")


def test_new_business_runrate_by_hand():
    # origin = end of Jan (step 1 -> Feb): deals created after January and won in Feb
    opps = opportunities(
        [
            ("1", "won", "2025-01-10", "2025-02-10", 100.0, "A"),  # created before: no
            ("2", "won", "2025-02-03", "2025-02-20", 40.0, "A"),  # yes
            ("3", "won", "2025-03-01", "2025-03-02", 25.0, "A"),  # Mar: step 1 from Feb
            ("4", "won", "2025-02-05", "2025-03-09", 60.0, "A"),  # created in Feb: no
        ]
    )
    d = make_dataset({"opportunities": opps})
    r = forecasting.compute_new_business_runrate(d, as_of="2025-03-31", horizon=1, lookback=2)
    got = dict(zip(r["origin"].dt.strftime("%Y-%m"), r["won_amount"], strict=True))
    assert got == {"2025-02": 25.0, "2025-01": 40.0}


@pytest.mark.slow
def test_pipeline_forecast_adds_up(demo_ds):
    pf = forecasting.compute_pipeline_forecast(
        demo_ds, as_of="2025-06-30", horizon=4, n_sims=2000, seed=3
    )
    per = pf.periods
    assert len(per) == 4 and per["period"].iloc[0] == pd.Timestamp("2025-07-01")
    assert (per["p10"] <= per["p50"]).all() and (per["p50"] <= per["p90"]).all()
    assert per["expected"].to_numpy() == pytest.approx(
        (per["pipeline_expected"] + per["new_expected"]).to_numpy(), rel=0.05
    )
    assert per["target"].notna().all() and per["p_target"].between(0, 1).all()
    assert pf.timing_method == "slippage"
    tot = pf.total.iloc[0]
    assert tot["pipeline_expected"] == pytest.approx(per["pipeline_expected"].sum())
    assert tot["pipeline_expected"] == pytest.approx(pf.deals["expected_in_horizon"].sum())
    again = forecasting.compute_pipeline_forecast(
        demo_ds, as_of="2025-06-30", horizon=4, n_sims=2000, seed=3
    )
    assert_frame_equal(per, again.periods)


def test_forecasts_do_not_mutate_the_dataset(demo_ds):
    before = copy.deepcopy(dict(demo_ds.tables))
    forecasting.compute_bookings_history(demo_ds, as_of="2025-12-31", segment="team")
    forecasting.compute_close_timing(demo_ds, as_of="2025-12-31")
    forecasting.compute_new_business_runrate(demo_ds, as_of="2025-12-31")
    for name, frame in before.items():
        assert_frame_equal(demo_ds.tables[name], frame)


# --------------------------------------------------------------------------- views


@pytest.mark.slow
def test_views_on_the_small_demo(small_demo):
    from IPython.display import Markdown  # noqa: F401 - the views' items must render
    from matplotlib.figure import Figure
    from pandas.io.formats.style import Styler

    from pipeline_lib import widgets
    from pipeline_lib.views import forecasting as views

    ds = dataset.load_dataset(small_demo, as_of="2025-12-31")
    opts = {"frequency": "month", "horizon": 3, "segment_column": "team", "origins": 2}
    items = views.bookings_forecast(ds, as_of=ds.as_of, **opts)
    assert isinstance(items[0], str) and "Next 3 months" in items[0]
    assert sum(isinstance(i, Figure) for i in items) == 2
    table = views.backtest_accuracy(ds, as_of=ds.as_of, **opts)
    assert isinstance(table[-1], Styler) and "Back-test" in table[-1].to_html()
    pf = views.pipeline_forecast(ds, as_of=ds.as_of, horizon=3, n_sims=500)
    assert "P10" in pf[0] and any(isinstance(i, Figure) for i in pf)
    deals = views.scored_deals(ds, as_of=ds.as_of, top=5)
    assert "open deals" in deals[0] and isinstance(deals[-1], Styler)
    quality = views.model_quality(ds, as_of=ds.as_of)
    assert quality and all(isinstance(i, str | Styler | Figure) for i in quality)
    # every item renders (as in the filter bar) and a filtered dataset works too
    assert widgets.render_items(items + pf + deals + quality)
    smb = ds.filter(date_column=None, team="SMB")
    assert views.scored_deals(smb, as_of=ds.as_of, top=3)
