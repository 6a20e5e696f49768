"""Trend review: hand-checked stage conversion, durations, flow, pushes, velocity, shrinkage."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from pipeline_lib import dataset, stats
from pipeline_lib import trend_review as tr
from pipeline_lib.dataset import Dataset
from pipeline_lib.errors import InsufficientDataError
from pipeline_lib.sources import StageConfig
from pipeline_lib.views import trend_review as views

STAGES = StageConfig(open=("A", "B", "C"), won=("Won",), lost=("Lost",))
D = pd.Timestamp


def _status(stage: str) -> str:
    return {"Won": "won", "Lost": "lost"}.get(stage, "open")


def make_ds(opps: list[tuple], hist: list[tuple] | None = None, **extra) -> Dataset:
    """opps: (id, stage, created, close, amount); hist: (id, stage, entered, amount, close)."""
    o = pd.DataFrame(
        opps, columns=["opportunity_id", "stage", "created_date", "close_date", "amount"]
    )
    o = o.assign(
        status=o["stage"].map(_status).astype("str"),
        created_date=pd.to_datetime(o["created_date"]),
        close_date=pd.to_datetime(o["close_date"]),
        amount=o["amount"].astype("float64"),
        **extra,
    )
    o["opportunity_id"] = o["opportunity_id"].astype("str")
    o["stage"] = o["stage"].astype("str")
    tables = {"opportunities": o}
    if hist is not None:
        h = pd.DataFrame(
            hist, columns=["opportunity_id", "stage", "entered_at", "amount", "close_date"]
        )
        h = h.assign(
            opportunity_id=h["opportunity_id"].astype("str"),
            stage=h["stage"].astype("str"),
            entered_at=pd.to_datetime(h["entered_at"]),
            close_date=pd.to_datetime(h["close_date"]),
            amount=h["amount"].astype("float64"),
        )
        tables["stage_history"] = h
    empty = pd.DataFrame()
    return Dataset(tables=tables, rejects=empty, warnings=empty, counts=empty, stages=STAGES)


# --------------------------------------------------------------------------- stages

# D1 skips B (A -> C -> Won); D2 lost in B; D3 lost in A; D4 open in C; D5 open, entered at B.
SKIP_OPPS = [
    ("D1", "Won", "2024-01-01", "2024-01-20", 10),
    ("D2", "Lost", "2024-01-01", "2024-01-15", 10),
    ("D3", "Lost", "2024-01-01", "2024-01-03", 10),
    ("D4", "C", "2024-01-01", "2025-03-01", 10),
    ("D5", "B", "2024-01-06", "2025-03-01", 10),
]
SKIP_HIST = [
    ("D1", "A", "2024-01-01", 10, "2024-02-01"),
    ("D1", "C", "2024-01-10", 10, "2024-02-01"),
    ("D1", "Won", "2024-01-20", 10, "2024-01-20"),
    ("D2", "A", "2024-01-01", 10, "2024-02-01"),
    ("D2", "B", "2024-01-05", 10, "2024-02-01"),
    ("D2", "Lost", "2024-01-15", 10, "2024-01-15"),
    ("D3", "A", "2024-01-01", 10, "2024-02-01"),
    ("D3", "Lost", "2024-01-03", 10, "2024-01-03"),
    ("D4", "A", "2024-01-01", 10, "2024-02-01"),
    ("D4", "B", "2024-01-02", 10, "2024-02-01"),
    ("D4", "C", "2024-01-04", 10, "2024-02-01"),
    ("D5", "B", "2024-01-06", 10, "2024-02-01"),
]


def test_stage_conversion_counts_skipped_stages_as_passed():
    ds = make_ds(SKIP_OPPS, SKIP_HIST)
    conv = tr.compute_stage_conversion(ds, as_of="2024-12-31")
    # A: all 5 reached; D1, D2, D4, D5 moved past it (D5 by skipping), D3 dropped -> 4/5
    # B: D1 (skipped it), D2, D4, D5 reached; D1 and D4 moved on, D2 dropped, D5 open -> 2/3
    # C: D1 and D4 reached; D1 won, D4 still open -> 1/1
    expected = pd.DataFrame(
        {
            "stage": ["A", "B", "C"],
            "next_stage": ["B", "C", "won"],
            "reached": [5, 4, 2],
            "advanced": [4, 2, 1],
            "dropped": [1, 1, 0],
            "still_open": [0, 1, 1],
        }
    )
    assert_frame_equal(conv[expected.columns], expected, check_dtype=False)
    np.testing.assert_allclose(conv["conversion"], [0.8, 2 / 3, 1.0])
    np.testing.assert_allclose(conv["reached_share"], [1.0, 0.8, 0.4])
    low, high = stats.wilson_interval(4, 5)
    assert conv["ci_low"].iloc[0] == pytest.approx(low)
    assert conv["ci_high"].iloc[0] == pytest.approx(high)


def test_stage_conversion_window_counts_deals_that_left_the_stage_in_it():
    ds = make_ds(SKIP_OPPS, SKIP_HIST)
    conv = tr.compute_stage_conversion(ds, as_of="2024-12-31", start="2024-01-05", end="2024-01-31")
    # leaving A inside 5-31 Jan: D1 (entered C 10 Jan), D2 (B 5 Jan), D5 (B 6 Jan);
    # D4 left on 2 Jan and D3 dropped on 3 Jan: outside
    first = conv.iloc[0]
    assert (first["advanced"], first["dropped"]) == (3, 0)


def test_stage_durations_treat_open_deals_as_censored():
    # stage A: completed visits of 2, 4 and 6 days; two open deals in A for 10 days
    opps = [
        ("E1", "Won", "2024-12-01", "2024-12-03", 1),
        ("E2", "Lost", "2024-12-01", "2024-12-05", 1),
        ("E3", "Lost", "2024-12-01", "2024-12-07", 1),
        ("E4", "A", "2024-12-21", "2025-02-01", 1),
        ("E5", "A", "2024-12-21", "2025-02-01", 1),
    ]
    hist = [
        ("E1", "A", "2024-12-01", 1, "2025-01-01"),
        ("E1", "Won", "2024-12-03", 1, "2024-12-03"),
        ("E2", "A", "2024-12-01", 1, "2025-01-01"),
        ("E2", "Lost", "2024-12-05", 1, "2024-12-05"),
        ("E3", "A", "2024-12-01", 1, "2025-01-01"),
        ("E3", "Lost", "2024-12-07", 1, "2024-12-07"),
        ("E4", "A", "2024-12-21", 1, "2025-02-01"),
        ("E5", "A", "2024-12-21", 1, "2025-02-01"),
    ]
    dur = tr.compute_stage_durations(make_ds(opps, hist), as_of="2024-12-31")
    a = dur.iloc[0]
    # Kaplan-Meier, n = 5: S(2) = 4/5, S(4) = 4/5 * 3/4 = 3/5, S(6) = 3/5 * 2/3 = 2/5.
    # median = 6 (first S <= 0.5); the completed-only median would say 4.
    # p75 and p90 need S <= 0.25 / 0.10: never reached -> missing
    assert (a["visits"], a["completed"], a["in_progress"]) == (5, 3, 2)
    assert a["median_days"] == 6
    assert np.isnan(a["p75_days"]) and np.isnan(a["p90_days"])
    assert dur["visits"].tolist() == [5, 0, 0]


def test_km_quantiles_by_hand():
    # S(1) = 3/4, S(2) = 1/2, 3 censored, S(4) = 0 -> median 2, p90 4
    q = stats.km_quantiles([1, 2, 3, 4], [True, True, False, True], quantiles=(0.5, 0.9))
    assert q.tolist() == [2.0, 4.0]
    with pytest.raises(ValueError, match="quantiles"):
        stats.km_quantiles([1], [True], quantiles=(1.5,))


def _stall_ds():
    # 10 visits of A that ended after 1..10 days; open deals in A for 30 and 5 days
    opps, hist = [], []
    for k in range(1, 11):
        end = (D("2024-01-01") + pd.Timedelta(days=k)).date().isoformat()
        opps.append((f"S{k}", "Lost", "2024-01-01", end, 5))
        hist += [(f"S{k}", "A", "2024-01-01", 5, "2024-03-01"), (f"S{k}", "Lost", end, 5, end)]
    opps += [
        ("LATE", "A", "2024-12-01", "2025-03-01", 900),
        ("NEW", "A", "2024-12-26", "2025-03-01", 50),
    ]
    hist += [
        ("LATE", "A", "2024-12-01", 900, "2025-03-01"),
        ("NEW", "A", "2024-12-26", 50, "2025-03-01"),
    ]
    owner = ["Ann"] * 10 + ["Bob", "Cy"]
    return make_ds(opps, hist, owner=pd.Series(owner, dtype="str"))


def test_stalled_deals_exceed_the_stage_p90():
    stalled = tr.compute_stalled_deals(_stall_ds(), as_of="2024-12-31")
    # KM with 12 visits (two censored at 30 and 5 days): S(10) = 7/72 <= 0.1 -> p90 = 10;
    # LATE has been in A for 30 days (20 over); NEW for 5 days is fine
    assert stalled["opportunity_id"].tolist() == ["LATE"]
    row = stalled.iloc[0]
    assert (row["owner"], row["amount"], row["days_in_stage"]) == ("Bob", 900.0, 30)
    assert (row["stage_threshold_days"], row["days_over"]) == (10.0, 20.0)


# --------------------------------------------------------------------------- flow and pushes

# window (2024-03-31, 2024-06-30], pipeline = open deals expected to close by 2024-06-30
FLOW_OPPS = [
    ("F1", "Won", "2024-01-01", "2024-05-01", 120),  # start 100 -> won 120 (+20)
    ("F2", "Lost", "2024-02-01", "2024-04-15", 50),  # start 50 -> lost 50
    ("F3", "B", "2024-03-01", "2024-09-30", 80),  # start 80 -> pushed out 80
    ("F4", "B", "2024-01-15", "2024-06-25", 150),  # pulled in at 200 -> end 150 (-50)
    ("F5", "B", "2024-04-10", "2024-06-30", 40),  # created 30 -> end 40 (+10)
    ("F6", "A", "2024-05-01", "2024-12-31", 60),  # created, due later: never in
    ("F7", "Won", "2024-01-01", "2024-03-20", 70),  # closed before the window
    ("F8", "A", "2024-02-10", "2024-06-01", 10),  # start 10 -> end 10
]
FLOW_HIST = [
    ("F1", "A", "2024-01-01", 100, "2024-06-15"),
    ("F1", "Won", "2024-05-01", 120, "2024-05-01"),
    ("F2", "A", "2024-02-01", 50, "2024-05-31"),
    ("F2", "Lost", "2024-04-15", 50, "2024-04-15"),
    ("F3", "A", "2024-03-01", 80, "2024-06-20"),
    ("F3", "B", "2024-05-10", 80, "2024-09-30"),  # a push: 20 Jun -> 30 Sep (102 days)
    ("F4", "A", "2024-01-15", 200, "2024-08-31"),
    ("F4", "B", "2024-04-20", 150, "2024-06-25"),  # pulled in: not a push
    ("F5", "A", "2024-04-10", 30, "2024-06-30"),
    ("F5", "B", "2024-05-01", 40, "2024-06-30"),
    ("F6", "A", "2024-05-01", 60, "2024-12-31"),
    ("F7", "A", "2024-01-01", 70, "2024-03-15"),
    ("F7", "Won", "2024-03-20", 70, "2024-03-20"),  # closing later than expected: not a push
    ("F8", "A", "2024-02-10", 10, "2024-06-01"),
]


def test_pipeline_flow_identity_on_a_hand_made_case():
    ds = make_ds(FLOW_OPPS, FLOW_HIST)
    before = {k: v.copy() for k, v in ds.tables.items()}
    flow = tr.compute_pipeline_flow(ds, as_of="2024-12-31", start="2024-03-31", end="2024-06-30")
    assert flow["step"].tolist() == [
        "start",
        "created",
        "pulled in",
        "won",
        "lost",
        "pushed out",
        "amount changes",
        "end",
    ]
    # start F1+F2+F3+F8 = 100+50+80+10; changes +20 (F1) -50 (F4) +10 (F5) = -20
    assert flow["amount"].tolist() == [240.0, 30.0, 200.0, -120.0, -50.0, -80.0, -20.0, 200.0]
    assert flow["deals"].tolist() == [4, 1, 1, -1, -1, -1, 0, 3]
    # the identity: end = start + created + pulled in - won - lost - pushed out + changes
    assert flow["amount"].iloc[:-1].sum() == flow["amount"].iloc[-1]
    assert flow["deals"].iloc[:-1].sum() == flow["deals"].iloc[-1]
    for name, table in ds.tables.items():  # the input is not mutated
        assert_frame_equal(table, before[name])


def test_pipeline_flow_identity_holds_on_the_demo(small_demo):
    ds = dataset.load_dataset(small_demo, as_of="2025-12-31")
    for horizon in ("end", None, "2026-06-30"):
        flow = tr.compute_pipeline_flow(
            ds, as_of="2025-12-31", start="2025-06-30", end="2025-12-31", horizon=horizon
        )
        assert flow["amount"].iloc[:-1].sum() == pytest.approx(flow["amount"].iloc[-1], abs=1e-6)
        assert flow["deals"].iloc[:-1].sum() == flow["deals"].iloc[-1]


def test_pipeline_flow_rejects_bad_dates():
    ds = make_ds(FLOW_OPPS, FLOW_HIST)
    with pytest.raises(ValueError, match="after start"):
        tr.compute_pipeline_flow(ds, as_of="2024-12-31", start="2024-06-30", end="2024-03-31")
    with pytest.raises(ValueError, match="as_of"):
        tr.compute_pipeline_flow(ds, as_of="2024-05-31", start="2024-03-31", end="2024-06-30")
    with pytest.raises(ValueError, match="horizon"):
        tr.compute_pipeline_flow(
            ds, as_of="2024-12-31", start="2024-03-31", end="2024-06-30", horizon="2024-05-01"
        )


def test_pushed_deals_detect_later_close_dates_only():
    ds = make_ds(FLOW_OPPS, FLOW_HIST)
    pushed = tr.compute_pushed_deals(ds, as_of="2024-12-31")
    # F3 moved 20 Jun -> 30 Sep; F4 moved earlier, F7 closed late (closing row): not pushes
    assert pushed["opportunity_id"].tolist() == ["F3"]
    row = pushed.iloc[0]
    assert (row["pushes"], row["days_pushed"]) == (1, 102)
    assert (row["first_expected"], row["expected_close"]) == (D("2024-06-20"), D("2024-09-30"))
    assert tr.compute_pushed_deals(ds, as_of="2024-12-31", start="2024-06-01").empty


def test_push_rate_per_quarter():
    rate = tr.compute_push_rate(make_ds(FLOW_OPPS, FLOW_HIST), as_of="2024-12-31")
    q2 = rate.set_index("period").loc["2024Q2"]
    # open at some time in Q2: all but F7 (closed 20 Mar) = 7 deals; pushed in Q2: F3
    assert (q2["open_deals"], q2["pushed"]) == (7, 1)
    assert q2["push_rate"] == pytest.approx(1 / 7)


# --------------------------------------------------------------------------- velocity


def test_velocity_decomposition_sums_exactly():
    v = pd.DataFrame(
        {
            "period": ["P0", "P1"],
            "opportunities": [10, 20],
            "win_rate": [0.5, 0.4],
            "avg_won_amount": [100.0, 150.0],
            "cycle_days": [10.0, 12.0],
        }
    )
    v["velocity"] = v["opportunities"] * v["win_rate"] * v["avg_won_amount"] / v["cycle_days"]
    d = tr.compute_velocity_decomposition(v, current="P1", previous="P0")
    # V0 = 10*0.5*100/10 = 50, V1 = 20*0.4*150/12 = 100; logarithmic mean = 50 / ln 2
    lm = 50 / np.log(2)
    expected = [lm * np.log(2), lm * np.log(0.8), lm * np.log(1.5), -lm * np.log(1.2), 50.0]
    np.testing.assert_allclose(d["contribution"], expected)
    np.testing.assert_allclose(
        d["contribution"], [50.0, -16.0964, 29.2481, -13.1517, 50.0], atol=1e-4
    )
    assert d["contribution"].iloc[:-1].sum() == pytest.approx(50.0, abs=1e-12)
    assert d["share"].iloc[-1] == 1.0
    with pytest.raises(InsufficientDataError, match="P9"):
        tr.compute_velocity_decomposition(v, current="P9", previous="P0")


def test_velocity_per_period_by_hand():
    # Q1 2024: 3 deals created; closed: X1 won (amount 100, 10 days), X2 won (300, 30 days),
    # X3 lost -> win rate 2/3, average won 200, cycle 20 days; V = 3 * 2/3 * 200 / 20 = 20
    opps = [
        ("X1", "Won", "2024-01-01", "2024-01-11", 100),
        ("X2", "Won", "2024-01-01", "2024-01-31", 300),
        ("X3", "Lost", "2024-02-01", "2024-02-05", 50),
    ]
    v = tr.compute_velocity(make_ds(opps), as_of="2024-12-31").set_index("period")
    q1 = v.loc["2024Q1"]
    assert (q1["opportunities"], q1["won"], q1["closed"]) == (3, 2, 3)
    assert q1["win_rate"] == pytest.approx(2 / 3)
    assert (q1["avg_won_amount"], q1["cycle_days"]) == (200.0, 20.0)
    assert q1["velocity"] == pytest.approx(20.0)
    assert np.isnan(v.loc["2024Q2", "velocity"])


# --------------------------------------------------------------------------- trends and tests


def _closed_deals(groups: list[tuple[str, str, int, int]], **cols) -> Dataset:
    """groups: (quarter start, segment, won, lost) -> one closed deal per outcome."""
    rows, seg = [], []
    i = 0
    for start, segment, won, lost in groups:
        close = (D(start) + pd.Timedelta(days=30)).date().isoformat()
        for stage, n in (("Won", won), ("Lost", lost)):
            for _ in range(n):
                i += 1
                rows.append((f"O{i}", stage, start, close, 100))
                seg.append(segment)
    return make_ds(rows, **{c: pd.Series(seg, dtype="str") for c in cols})


def test_change_point_found_where_the_win_rate_drops():
    quarters = pd.period_range("2022Q1", "2024Q4", freq="Q")
    groups = [
        (q.start_time.date().isoformat(), "x", 24 if i < 6 else 8, 16 if i < 6 else 32)
        for i, q in enumerate(quarters)
    ]
    ds = _closed_deals(groups, product=None)
    cp = tr.compute_change_points(ds, as_of="2024-12-31", metrics=("win_rate",))
    # 60 % for six quarters, then 20 %: one change, starting 2023Q3
    assert cp["period"].tolist() == ["2023Q3"]
    row = cp.iloc[0]
    assert (row["before"], row["after"]) == pytest.approx((0.6, 0.2))
    assert row["p_value"] < 0.001 and row["q_value"] <= 0.05
    flat = _closed_deals([(g[0], "x", 20, 20) for g in groups], product=None)
    assert tr.compute_change_points(flat, as_of="2024-12-31", metrics=("win_rate",)).empty


def test_benjamini_hochberg_by_hand():
    # sorted p 0.01, 0.03, 0.04, 0.5 -> p*m/rank 0.04, 0.06, 0.0533, 0.5 -> running min from top
    q = stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.5, np.nan])
    np.testing.assert_allclose(q[:4], [0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert np.isnan(q[4])


def test_segment_changes_are_controlled_for_multiple_testing():
    # Q3 -> Q4 2024: segment "up" goes 5/40 -> 30/40 won, segment "same" 20/40 -> 20/40
    ds = _closed_deals(
        [
            ("2024-07-01", "up", 5, 35),
            ("2024-10-01", "up", 30, 10),
            ("2024-07-01", "same", 20, 20),
            ("2024-10-01", "same", 20, 20),
        ],
        product=None,
    )
    sc = tr.compute_segment_changes(ds, as_of="2024-12-31", by=("product",))
    assert sc["segment"].tolist() == ["up", "same"]
    np.testing.assert_allclose(sc["change"], [0.625, 0.0])
    np.testing.assert_allclose(sc["q_value"], stats.benjamini_hochberg(sc["p_value"]))
    assert sc["significant"].tolist() == [True, False]
    low, high = stats.proportion_diff_interval(5, 40, 30, 40)
    assert (sc["ci_low"].iloc[0], sc["ci_high"].iloc[0]) == pytest.approx((low, high))


def test_owner_shrinkage_keeps_tiny_samples_off_the_top():
    ds = _closed_deals(
        [
            ("2024-07-01", "Tiny", 3, 0),
            ("2024-07-01", "Strong", 55, 45),
            ("2024-07-01", "Middle", 40, 60),
            ("2024-07-01", "Weak", 30, 70),
        ],
        owner=None,
    )
    own = tr.compute_owner_performance(ds, as_of="2024-12-31")
    raw_best = own.sort_values("win_rate", ascending=False)["owner"].iloc[0]
    assert raw_best == "Tiny"  # 3 of 3 = 100 % raw
    assert own["owner"].iloc[0] == "Strong"  # but not after shrinkage
    a, b = own.attrs["prior"]
    tiny = own.set_index("owner").loc["Tiny"]
    assert tiny["shrunk_win_rate"] == pytest.approx((3 + a) / (3 + a + b))
    assert a / (a + b) < tiny["shrunk_win_rate"] < 1.0
    assert tiny["shrunk_high"] - tiny["shrunk_low"] < tiny["ci_high"] - tiny["ci_low"]


def test_simpsons_paradox_is_flagged():
    # before: X 40/80, Y 2/20 (42 %); now: X 12/20, Y 16/80 (28 %): both segments up 10 points
    ds = _closed_deals(
        [
            ("2024-07-01", "X", 40, 40),
            ("2024-07-01", "Y", 2, 18),
            ("2024-10-01", "X", 12, 8),
            ("2024-10-01", "Y", 16, 64),
        ],
        team=None,
    )
    sp = tr.compute_simpsons_check(ds, as_of="2024-12-31", by=("team",))
    row = sp.iloc[0]
    # within = 0.5*0.1 + 0.5*0.1 = 0.10; mix = 0.55*(-0.6) + 0.15*0.6 = -0.24; total -0.14
    assert row["aggregate_change"] == pytest.approx(-0.14)
    assert (row["within_change"], row["mix_change"]) == pytest.approx((0.10, -0.24))
    assert (row["segments_up"], row["segments_down"], row["reversal"]) == (2, 0, True)


def test_what_worked_reports_effect_and_sample_sizes():
    ds = _closed_deals([("2024-07-01", "S1", 60, 40), ("2024-07-01", "S2", 20, 80)], source=None)
    ww = tr.compute_what_worked(ds, as_of="2024-12-31", by=("source",), depth=1)
    rate = ww[ww["metric"] == "win rate"].set_index("segment")
    s1 = rate.loc["source=S1"]
    assert (s1["n"], s1["n_rest"], s1["value"], s1["rest_value"]) == (100, 100, 0.6, 0.2)
    assert s1["difference"] == pytest.approx(0.4)
    assert s1["effect_size"] == pytest.approx(
        2 * np.arcsin(np.sqrt(0.6)) - 2 * np.arcsin(np.sqrt(0.2))
    )
    assert bool(s1["better"]) and not bool(rate.loc["source=S2", "better"])


def test_lost_reason_trend_detects_a_growing_reason():
    rows, reasons = [], []
    for i, q in enumerate(pd.period_range("2023Q1", "2024Q4", freq="Q")):
        close = (q.start_time + pd.Timedelta(days=10)).date().isoformat()
        budget = 5 + 5 * i  # 5, 10, ... 40 of 50 losses
        for j in range(50):
            rows.append((f"L{i}-{j}", "Lost", close, close, 1))
            reasons.append("No Budget" if j < budget else "Price")
    ds = make_ds(rows, lost_reason=pd.Series(reasons, dtype="str"))
    lost = tr.compute_lost_reasons(ds, as_of="2024-12-31")
    first = lost[(lost["period"] == "2023Q1") & (lost["reason"] == "No Budget")].iloc[0]
    assert (first["lost"], first["period_lost"], first["share"]) == (5, 50, 0.1)
    trend = tr.compute_lost_reason_trends(ds, as_of="2024-12-31").set_index("reason")
    assert trend.loc["No Budget", "slope_per_year"] > 0.3  # +10 points a quarter
    assert bool(trend.loc["No Budget", "significant"])
    assert trend.loc["Price", "slope_per_year"] == pytest.approx(
        -trend.loc["No Budget", "slope_per_year"]
    )


# --------------------------------------------------------------------------- errors and views


def test_stage_analyses_need_the_stage_history():
    ds = make_ds(SKIP_OPPS)
    for fn in (
        tr.compute_stage_conversion,
        tr.compute_stage_durations,
        tr.compute_stalled_deals,
        tr.compute_pushed_deals,
        tr.compute_bottlenecks,
    ):
        with pytest.raises(InsufficientDataError, match="stage history"):
            fn(ds, as_of="2024-12-31")
    with pytest.raises(InsufficientDataError, match="stage history"):
        tr.compute_pipeline_flow(ds, as_of="2024-12-31", start="2024-01-01", end="2024-06-30")


def test_bad_arguments_name_the_parameter():
    ds = make_ds(SKIP_OPPS, SKIP_HIST)
    with pytest.raises(ValueError, match="period='week'"):
        tr.compute_trends(ds, as_of="2024-12-31", period="week")
    with pytest.raises(ValueError, match="comparison"):
        tr.compute_review_windows(as_of="2024-12-31", comparison="last")
    with pytest.raises(ValueError, match="end=.*after as_of"):
        tr.compute_stage_conversion(ds, as_of="2024-06-30", end="2024-12-31")
    with pytest.raises(ValueError, match="quantile"):
        tr.compute_stalled_deals(ds, as_of="2024-12-31", quantile=2)
    with pytest.raises(InsufficientDataError, match="closed"):
        tr.compute_trends(make_ds([("O1", "A", "2024-01-01", "2025-01-01", 1)]), as_of="2024-12-31")


def test_review_windows():
    w = tr.compute_review_windows(as_of="2025-11-15", period="quarter", comparison="year_ago")
    assert w["label"].tolist() == ["2025Q3", "2024Q3"]
    assert w["start"].tolist() == [D("2025-07-01"), D("2024-07-01")]
    assert w["end"].tolist() == [D("2025-09-30"), D("2024-09-30")]
    m = tr.compute_review_windows(as_of="2025-12-31", period="month")
    assert m["label"].tolist() == ["2025-12", "2025-11"]


def test_views_run_on_the_small_demo(small_demo):
    import matplotlib.pyplot as plt

    ds = dataset.load_dataset(small_demo, as_of="2025-12-31")
    as_of = D("2025-12-31")
    shown = 0
    for name in views.__all__:
        try:
            items = getattr(views, name)(ds, as_of=as_of)
        except InsufficientDataError as exc:
            assert str(exc)  # a clear message, shown as a note
            continue
        assert items, name
        shown += 1
        plt.close("all")
    assert shown >= 10
    text = views.findings(ds, as_of=as_of)[0]
    assert "1. " in text and "Review window" in text


def test_without_stage_history_the_report_says_what_needs_it(small_demo):
    ds = dataset.load_dataset(small_demo, as_of="2025-12-31")
    tables = {k: v for k, v in ds.tables.items() if k != "stage_history"}
    bare = replace(ds, tables=tables)
    note = views.data_coverage(bare, as_of=D("2025-12-31"))[0]
    assert "No stage history" in note and "pipeline flow" in note
    for view in (views.stages, views.bottlenecks, views.pipeline_flow, views.stalled_deals):
        with pytest.raises(InsufficientDataError):
            view(bare, as_of=D("2025-12-31"))
    assert views.velocity(bare, as_of=D("2025-12-31"))  # the rest still works
    findings = tr.compute_findings(bare, as_of="2025-12-31")
    assert not findings["topic"].isin(["stalled deals", "bottleneck"]).any()


def test_analyses_do_not_mutate_their_input():
    ds = make_ds(FLOW_OPPS, FLOW_HIST, owner=pd.Series(["Ann", "Bob"] * 4, dtype="str"))
    before = {k: v.copy() for k, v in ds.tables.items()}
    tr.compute_stage_conversion(ds, as_of="2024-12-31")
    tr.compute_stage_durations(ds, as_of="2024-12-31")
    tr.compute_stalled_deals(ds, as_of="2024-12-31")
    tr.compute_trends(ds, as_of="2024-12-31", by="owner")
    tr.compute_owner_performance(ds, as_of="2024-12-31")
    for name, table in ds.tables.items():
        assert_frame_equal(table, before[name])


def test_no_open_deal_means_no_stalled_deal():
    ds = make_ds(SKIP_OPPS[:3], [h for h in SKIP_HIST if h[0] in ("D1", "D2", "D3")])
    assert tr.compute_stalled_deals(ds, as_of="2024-12-31").empty


# --------------------------------------------------------------------------- memo


def test_repeated_calls_on_the_same_dataset_reuse_the_result_as_copies():
    from pipeline_lib import memo as _memo

    ds = make_ds(SKIP_OPPS, SKIP_HIST)
    first = tr.compute_stage_conversion(ds, as_of="2024-12-31")
    n = len(_memo._entries)
    again = tr.compute_stage_conversion(ds, as_of=D("2024-12-31"))  # the same call
    assert len(_memo._entries) == n  # reused, not computed again
    assert again is not first
    assert_frame_equal(again, first)
    again.loc[0, "advanced"] = 999  # the caller's copy: the memo keeps its own
    again.attrs["no_history"] = -1
    third = tr.compute_stage_conversion(ds, as_of="2024-12-31")
    assert third["advanced"].tolist() == [4, 2, 1]
    assert third.attrs["no_history"] == 0


def test_memo_tells_datasets_apart_by_their_tables_and_stages():
    ds = make_ds(SKIP_OPPS, SKIP_HIST)
    assert len(tr.compute_stage_conversion(ds, as_of="2024-12-31")) == 3
    two = StageConfig(open=("A", "B"), won=("Won",), lost=("Lost", "C"))
    other = replace(ds, stages=two)  # same tables, other stage config
    assert tr.compute_stage_conversion(other, as_of="2024-12-31")["stage"].tolist() == ["A", "B"]
    bare = replace(ds, tables={"opportunities": ds.opportunities})  # no stage history
    with pytest.raises(InsufficientDataError):
        tr.compute_stage_conversion(bare, as_of="2024-12-31")


def test_findings_share_their_analyses_with_the_sections(small_demo):
    from pipeline_lib import memo as _memo

    ds = dataset.load_dataset(small_demo, as_of="2025-12-31")
    tr.compute_findings(ds, as_of="2025-12-31")
    n = len(_memo._entries)
    for fn in (tr.compute_stalled_deals, tr.compute_owner_performance, tr.compute_simpsons_check):
        fn(ds, as_of="2025-12-31")
    tr.compute_trends(ds, as_of="2025-12-31")  # computed for the velocity finding
    assert len(_memo._entries) == n


def test_memo_is_bounded_and_keeps_no_dataset_alive(monkeypatch):
    import gc
    import weakref

    from pipeline_lib import memo as _memo

    monkeypatch.setattr(_memo, "_SIZE", 3)
    ds = make_ds(FLOW_OPPS, FLOW_HIST)
    for fn in (tr.compute_stage_conversion, tr.compute_stage_durations, tr.compute_push_rate):
        fn(ds, as_of="2024-12-31")
    assert len(_memo._entries) <= 3
    gone = weakref.ref(ds.opportunities)
    del ds
    gc.collect()
    assert gone() is None  # the memo held no strong reference to the tables
    kept = make_ds(FLOW_OPPS, FLOW_HIST)
    tr.compute_push_rate(kept, as_of="2024-12-31")  # a new entry drops those of the dead one
    assert all(r is None or r() is not None for refs, _ in _memo._entries.values() for r in refs)


def test_large_sample_null_matches_shuffling_deals():
    # The Gaussian metrics' permutation null is drawn from its normal form above
    # _EXACT_SHUFFLE_MAX deals. On 22,000 skewed (lognormal) deal values over 12 periods,
    # the max-statistic distribution of the fast draws must match real shuffles: same
    # 50th/90th/95th percentiles within sampling error.
    from pipeline_lib.trend_review import change_points as cp

    rng = np.random.default_rng(1)
    t, m = 12, 22_000
    codes = np.sort(rng.integers(0, t, m))
    values = rng.lognormal(10, 1, m)
    n = np.bincount(codes, minlength=t).astype(float)
    s = np.bincount(codes, weights=values, minlength=t)
    ss = np.bincount(codes, weights=values**2, minlength=t)
    series = cp._Series("gaussian", n, s, ss, values, codes)
    exact = cp._split_stats(
        "gaussian", *series._shuffle_null(800, np.random.default_rng(2)), 2
    ).max(axis=1)
    fast = cp._split_stats("gaussian", *series._normal_null(1000, np.random.default_rng(3)), 2).max(
        axis=1
    )
    q = [0.5, 0.9, 0.95]
    np.testing.assert_allclose(np.quantile(fast, q), np.quantile(exact, q), rtol=0.15)
    # the public path takes the fast draws above the threshold
    assert len(values) > cp._EXACT_SHUFFLE_MAX


def test_bootstrap_by_cells_matches_bootstrap_by_visits(monkeypatch):
    # Above _CELL_BOOT_MIN visits the bootstrap draws counts per distinct (days, ended)
    # value instead of resampling visits: the same distribution. Two samples of 6,000
    # visits (integer days, 20 % censored), medians about 20 and 26 days: both ways give
    # an interval of the median difference around +6 days that agree within a day.
    from pipeline_lib.trend_review import stages as stg

    rng = np.random.default_rng(5)
    a = np.round(rng.exponential(29, 6000))
    b = np.round(rng.exponential(38, 6000))
    ea, eb = rng.random(6000) > 0.2, rng.random(6000) > 0.2
    cells = stg._boot_median_diff(a, ea, b, eb, 300, np.random.default_rng(1))
    monkeypatch.setattr(stg, "_CELL_BOOT_MIN", 10**9)
    visits = stg._boot_median_diff(a, ea, b, eb, 300, np.random.default_rng(1))
    np.testing.assert_allclose(cells, visits, atol=1.0)
    assert cells[0] > 2 and cells[1] < 11


def test_row_order_of_the_stage_history_does_not_change_the_stage_analyses(small_demo):
    # The history index skips its sort when the rows already come by deal and time, and
    # the pipeline flow then reads deal positions from it: the same answers as from
    # rows in any order (which take the sorting and id look-up paths).
    ds = dataset.load_dataset(small_demo, as_of="2025-12-31")
    hist = ds.stage_history
    shuffled = hist.sample(frac=1.0, random_state=3).reset_index(drop=True)
    other = replace(ds, tables={**ds.tables, "stage_history": shuffled})
    ts = "2025-12-31"
    calls = [
        lambda d: tr.compute_stage_conversion(d, as_of=ts),
        lambda d: tr.compute_stage_conversion(d, as_of=ts, start="2025-04-01", end="2025-09-30"),
        lambda d: tr.compute_stage_durations(d, as_of=ts),
        lambda d: tr.compute_bottlenecks(d, as_of=ts, period="year", comparison="previous"),
        lambda d: tr.compute_stalled_deals(d, as_of=ts),
        lambda d: tr.compute_pushed_deals(d, as_of=ts),
        lambda d: tr.compute_push_rate(d, as_of=ts),
        lambda d: tr.compute_pipeline_flow(d, as_of=ts, start="2025-06-30", end="2025-12-31"),
    ]
    for call in calls:
        a, b = call(ds), call(other)
        assert len(a)
        assert_frame_equal(a, b, check_exact=True)
        assert a.attrs == b.attrs


def test_fast_paths_match_the_general_computations():
    from pipeline_lib.trend_review import _common
    from pipeline_lib.trend_review import stages as stg

    # distinct (days, ended) cells: 1-d coding of whole days == the row-wise unique
    rng = np.random.default_rng(2)
    for t in (np.round(rng.exponential(30, 500)), rng.exponential(30, 50)):
        e = rng.random(len(t)) > 0.3
        days, ended, counts = stg._cells(t, e)
        ref, ref_counts = np.unique(
            np.column_stack([t, e.astype(float)]), axis=0, return_counts=True
        )
        np.testing.assert_array_equal(days, ref[:, 0])
        np.testing.assert_array_equal(ended, ref[:, 1].astype(bool))
        np.testing.assert_array_equal(counts, ref_counts)
    # sorted ids are coded in one pass, unsorted ones by pd.factorize: the same codes
    for ids in (["a1", "a1", "a2", "b", "b", "é"], ["b", "a1", "b", "a2"], ["x"]):
        s = pd.Series(ids, dtype="str")
        codes, names = _common._factorize_sorted(s)
        ref_codes, ref_names = pd.factorize(s, sort=True)
        np.testing.assert_array_equal(codes, ref_codes)
        assert names.tolist() == ref_names.tolist()
