"""Lead-generation yield: funnel, intervals, censored cohorts, inverse funnel, costs, open leads.

Every expected value is worked out by hand in a comment next to the data.
"""

from __future__ import annotations

import dataclasses
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from pipeline_lib import dataset, lead_yield, plotting
from pipeline_lib.dataset import Dataset
from pipeline_lib.errors import InsufficientDataError
from pipeline_lib.sources import StageConfig
from pipeline_lib.stats import kaplan_meier, wilson_interval
from pipeline_lib.views import lead_yield as views

STAGES = StageConfig(open=("Open",), won=("Won",), lost=("Lost",), aliases={})
D = pd.Timestamp


def _opps(rows):
    """rows: (opportunity_id, lead_id, status, created, close, amount)."""
    cols = ["opportunity_id", "lead_id", "status", "created_date", "close_date", "amount"]
    f = pd.DataFrame(rows, columns=cols)
    stage = f["status"].map({"won": "Won", "lost": "Lost", "open": "Open"})
    return pd.DataFrame(
        {
            "opportunity_id": f["opportunity_id"].astype("str"),
            "stage": stage.astype("str"),
            "status": f["status"].astype("str"),
            "created_date": pd.to_datetime(f["created_date"]),
            "close_date": pd.to_datetime(f["close_date"]),
            "amount": f["amount"].astype("float64"),
            "lead_id": f["lead_id"].astype("str"),
        }
    )


def _leads(rows, milestones=("mql_date",)):
    """rows: (lead_id, source, created, *milestone dates)."""
    f = pd.DataFrame(rows, columns=["lead_id", "source", "created_date", *milestones])
    out = f.astype({"lead_id": "str", "source": "str"})
    for c in ["created_date", *milestones]:
        out[c] = pd.to_datetime(f[c])
    return out


def _ds(leads=None, opps=None, costs=None, milestones=("mql_date",)):
    tables = {"opportunities": opps}
    if leads is not None:
        tables["leads"] = leads
    if costs is not None:
        tables["lead_costs"] = costs
    empty = pd.DataFrame()
    return Dataset(
        tables=tables,
        rejects=empty,
        warnings=empty,
        counts=empty,
        stages=STAGES,
        milestones=milestones if leads is not None else (),
    )


# --------------------------------------------------------------------------- funnel data
# As of 2025-12-31, six leads created 2025-01-01:
#   L1 Web  mql 01-05  -> O1 created 01-20, won 03-01, amount 1000
#   L2 Web  mql 01-10  -> O2 created 01-11, lost
#   L3 Web  no mql     -> O3 created 02-01, open   (reached MQL through the later step)
#   L4 Web  mql 02-01  (no deal)
#   L5 Ref  nothing
#   L6 Ref  mql 01-03  -> O4 created 01-04, won 02-01, no amount
# plus O5 naming an unknown lead LX and O6 with no lead at all.
AS_OF = "2025-12-31"


@pytest.fixture
def funnel_ds():
    leads = _leads(
        [
            ("L1", "Web", "2025-01-01", "2025-01-05"),
            ("L2", "Web", "2025-01-01", "2025-01-10"),
            ("L3", "Web", "2025-01-01", None),
            ("L4", "Web", "2025-01-01", "2025-02-01"),
            ("L5", "Ref", "2025-01-01", None),
            ("L6", "Ref", "2025-01-01", "2025-01-03"),
        ]
    )
    opps = _opps(
        [
            ("O1", "L1", "won", "2025-01-20", "2025-03-01", 1000.0),
            ("O2", "L2", "lost", "2025-01-11", "2025-02-01", 500.0),
            ("O3", "L3", "open", "2025-02-01", "2026-03-01", 800.0),
            ("O4", "L6", "won", "2025-01-04", "2025-02-01", np.nan),
            ("O5", "LX", "won", "2025-01-04", "2025-02-01", 99.0),
            ("O6", None, "won", "2025-01-04", "2025-02-01", 99.0),
        ]
    )
    return _ds(leads, opps)


def test_funnel_counts_step_and_cumulative_rates(funnel_ds):
    f = lead_yield.compute_funnel(funnel_ds, as_of=AS_OF)
    # lead 6; MQL: L1 L2 L3 (via its deal) L4 L6 = 5; opportunity: L1 L2 L3 L6 = 4; won: L1 L6 = 2
    assert f["step"].tolist() == ["lead", "mql", "opportunity", "won"]
    assert f["label"].tolist() == ["Lead", "MQL", "Opportunity", "Won"]
    assert f["count"].tolist() == [6, 5, 4, 2]
    assert f["previous"].tolist() == [6, 6, 5, 4]
    np.testing.assert_allclose(f["step_rate"], [1, 5 / 6, 4 / 5, 2 / 4])
    np.testing.assert_allclose(f["cum_rate"], [1, 5 / 6, 4 / 6, 2 / 6])
    low, high = wilson_interval([6, 5, 4, 2], [6, 6, 5, 4])
    np.testing.assert_allclose(f["step_low"], low)
    np.testing.assert_allclose(f["step_high"], high)
    low, high = wilson_interval([6, 5, 4, 2], [6, 6, 6, 6])
    np.testing.assert_allclose(f["cum_low"], low)
    np.testing.assert_allclose(f["cum_high"], high)
    # the deal naming an unknown lead is reported, not counted
    assert any("1 deal(s) name a lead_id" in n for n in f.attrs["notes"])


def test_funnel_by_source(funnel_ds):
    f = lead_yield.compute_funnel(funnel_ds, as_of=AS_OF, by="source")
    counts = f.pivot(index="group", columns="step", values="count")
    # Web: 4 leads, all 4 reach MQL (L3 via its deal), 3 deals, 1 win; Ref: 2, 1, 1, 1
    assert counts.loc["Web", ["lead", "mql", "opportunity", "won"]].tolist() == [4, 4, 3, 1]
    assert counts.loc["Ref", ["lead", "mql", "opportunity", "won"]].tolist() == [2, 1, 1, 1]


def test_lead_yield_leads_per_win_and_revenue(funnel_ds):
    y = lead_yield.compute_lead_yield(funnel_ds, as_of=AS_OF, by="source").set_index("group")
    assert y.index.tolist() == ["Web", "Ref", "All"]
    # Web: 4 leads, 3 deals, 1 win worth 1000 -> 4 leads per win, 250 per lead
    assert y.loc["Web", ["leads", "opportunities", "wins"]].tolist() == [4, 3, 1]
    assert y.loc["Web", "leads_per_win"] == 4.0
    assert y.loc["Web", "revenue_per_lead"] == 250.0
    # Ref: the win has no amount: revenue 0, counted as skipped
    assert y.loc["Ref", "leads_per_win"] == 2.0
    assert y.loc["Ref", "won_no_amount"] == 1
    # All: 6 leads, 2 wins -> 3 leads per win; interval = inverse of the win-rate interval
    low, high = wilson_interval(2, 6)
    assert y.loc["All", "leads_per_win"] == 3.0
    assert y.loc["All", "win_rate"] == pytest.approx(1 / 3)
    assert y.loc["All", "lpw_low"] == pytest.approx(1 / high)
    assert y.loc["All", "lpw_high"] == pytest.approx(1 / low)
    assert y.loc["All", "revenue_per_lead"] == pytest.approx(1000 / 6)
    assert y.loc["All", "opp_rate"] == pytest.approx(4 / 6)


def test_time_to_convert_uses_later_dates_when_a_milestone_is_missing(funnel_ds):
    lags = lead_yield.compute_conversion_lags(funnel_ds, as_of=AS_OF, step="mql", by=None)
    # MQL days: L1 4, L2 9, L3 31 (no MQL date: its deal's date, 02-01), L4 31, L6 2
    assert dict(zip(lags["lead_id"], lags["days"], strict=True)) == {
        "L1": 4.0,
        "L2": 9.0,
        "L3": 31.0,
        "L4": 31.0,
        "L6": 2.0,
    }
    t = lead_yield.compute_time_to_convert(funnel_ds, as_of=AS_OF).set_index("group")
    # days to the deal: Web L1 19, L2 10, L3 31 -> median 19; Ref L6 3; all -> median 14.5
    assert t.loc["Web", "converted"] == 3
    assert t.loc["Web", "median_days"] == 19.0
    assert t.loc["Ref", "median_days"] == 3.0
    assert t.loc["All", "median_days"] == 14.5
    assert t.index.tolist() == ["Ref", "Web", "All"]  # fastest first, total last


def test_snapshot_hides_what_happened_after_as_of(funnel_ds):
    # On 2025-01-15: L1's deal (01-20) and L3's (02-01) and L4's MQL (02-01) are unknown;
    # L2's deal was created 01-11 (lost 02-01, so still open then); L6's deal won 02-01 -> open.
    f = lead_yield.compute_funnel(funnel_ds, as_of="2025-01-15").set_index("step")
    assert f["count"].to_dict() == {"lead": 6, "mql": 3, "opportunity": 2, "won": 0}


# --------------------------------------------------------------------------- censored cohorts
# One quarterly cohort (2025 Q1), as of 2025-04-11. Two groups of four leads follow the same
# process: in each group one lead converts at age 10, one at age 25, two never.
#   old (created 01-01, age 100): conversions at 10 and 25 seen.
#   young (created 03-22, age 20): the age-10 conversion is seen; the age-25 one cannot be yet.
# The truth by age 30 is 4/8 = 50 %. Naive: 3 converted / 8 leads = 37.5 %.
# Kaplan–Meier: age 10: 2 events of 8 at risk -> S = 6/8; the 3 young leads left are censored
# at 20; age 25: 1 event of the 3 old still at risk -> S = 6/8 * 2/3 = 1/2 -> 50 % (= truth).


@pytest.fixture
def cohort_ds():
    rows, opps = [], []
    for i, (created, conv) in enumerate(
        [("2025-01-01", 10), ("2025-01-01", 25), ("2025-01-01", None), ("2025-01-01", None)]
        + [("2025-03-22", 10), ("2025-03-22", 25), ("2025-03-22", None), ("2025-03-22", None)]
    ):
        lead = f"L{i}"
        rows.append((lead, "Web", created))
        if conv is not None:
            day = D(created) + pd.Timedelta(days=conv)
            if day <= D("2025-04-11"):
                opps.append((f"O{i}", lead, "open", day, day + pd.Timedelta(days=90), 10.0))
    return _ds(_leads(rows, milestones=()), _opps(opps), milestones=())


def test_cohort_curve_treats_young_leads_as_censored(cohort_ds):
    cc = lead_yield.compute_cohort_conversion(
        cohort_ds, as_of="2025-04-11", freq="Q", age_step_days=10, max_age_days=30
    )
    assert cc["cohort"].unique().tolist() == [D("2025-01-01")]
    assert cc["leads"].iloc[0] == 8 and cc["converted"].iloc[0] == 3
    assert cc["naive_rate"].iloc[0] == pytest.approx(3 / 8)
    assert cc["age_days"].tolist() == [0, 10, 20, 30]
    np.testing.assert_allclose(cc["converted_share"], [0, 0.25, 0.25, 0.5])
    # at risk (followed at least that long): 20 -> all but the two age-10 converters;
    # 30 -> the two old leads never converted
    assert cc["at_risk"].tolist() == [8, 8, 6, 2]
    last = cc.iloc[-1]
    assert last["low"] < 0.5 < last["high"]


def test_conversion_at_age_naive_vs_censoring_aware(cohort_ds):
    at = lead_yield.compute_conversion_at_age(cohort_ds, as_of="2025-04-11", age_days=30)
    row = at.set_index("group").loc["All"]
    assert row["naive_rate"] == pytest.approx(0.375)  # biased low by the young leads
    assert row["km_rate"] == pytest.approx(0.5)  # the true rate
    assert (row["mature_leads"], row["mature_converted"]) == (4, 2)  # the old leads: 2 of 4
    assert row["mature_rate"] == pytest.approx(0.5)


def test_kaplan_meier_by_hand():
    # events at 10 and 25; censored at 20, 20, 100, 100
    # S(10) = 5/6; at 25 three at risk -> S(25) = 5/6 * 2/3 = 5/9; beyond 100 undefined
    km = kaplan_meier([10, 25, 100, 100, 20, 20], [1, 1, 0, 0, 0, 0], at=[5, 10, 25, 100, 101])
    np.testing.assert_allclose(km["share"][:4], [0, 1 / 6, 4 / 9, 4 / 9])
    assert math.isnan(km["share"].iloc[4])
    assert km["at_risk"].tolist() == [6, 6, 3, 2, 0]
    # Greenwood on log(-log S) at 25: var = 1/(6*5) + 1/(3*2) = 0.2
    s = 5 / 9
    c = 1.959964 * math.sqrt(0.2) / abs(math.log(s))
    assert km["high"].iloc[2] == pytest.approx(1 - s ** math.exp(c), rel=1e-5)


# --------------------------------------------------------------------------- inverse funnel
# As of 2025-12-31; every lead created 2024-01-01 (730 days old, all older than the horizon).
#   A: 10 leads, 2 won after 30 and 50 days (amounts 1000, 3000)  -> p = 0.2
#   B: 10 leads, 1 won after 100 days (amount 6000)               -> p = 0.1
# Mix 50/50 -> p = 0.15; 3 wins need 3 / 0.15 = 20 leads: 10 A, 10 B.
# Lag medians: A 40, B 100, all (30, 50, 100) 50 days -> enter by 2026-12-31 minus those:
#   A 2026-11-21, B 2026-09-22, all 2026-11-11 (315 days = 45 weeks after as_of).
# Spend in the window: A 100 (10 per lead), B 40 (4 per lead).


@pytest.fixture
def plan_ds():
    rows, opps = [], []
    won = {"A0": (30, 1000.0), "A1": (50, 3000.0), "B0": (100, 6000.0)}
    for src in "AB":
        for i in range(10):
            lead = f"{src}{i}"
            rows.append((lead, src, "2024-01-01"))
            if lead in won:
                lag, amount = won[lead]
                close = D("2024-01-01") + pd.Timedelta(days=lag)
                opps.append((f"O{lead}", lead, "won", "2024-01-02", close, amount))
    opps.append(("OX", "A5", "lost", "2024-01-02", "2024-02-01", 10.0))
    costs = pd.DataFrame(
        {
            "period": pd.to_datetime(["2024-01-01", "2024-01-01"]),
            "source": pd.Series(["A", "B"], dtype="str"),
            "cost": [100.0, 40.0],
        }
    )
    return _ds(_leads(rows, milestones=()), _opps(opps), costs=costs, milestones=())


def _plan(ds, **kw):
    opts = dict(as_of=AS_OF, target_date="2026-12-31", mix_days=800, lag_quantile=0.5, n_sims=2000)
    opts.update(kw)
    return lead_yield.compute_leads_required(ds, **opts)


def test_leads_required_arithmetic_and_lag(plan_ds):
    req = _plan(plan_ds, target_wins=3).set_index("group")
    assert req.index.tolist() == ["A", "B", "All"]
    np.testing.assert_allclose(req["win_rate"], [0.2, 0.1, 0.15])
    np.testing.assert_allclose(req["mix_share"], [0.5, 0.5, 1.0])
    np.testing.assert_allclose(req["leads_needed"], [10, 10, 20])
    np.testing.assert_allclose(req["expected_wins"], [2, 1, 3])
    np.testing.assert_allclose(req["lag_days"], [40, 100, 50])
    assert req["enter_by"].tolist() == [D("2026-11-21"), D("2026-09-22"), D("2026-11-11")]
    assert req.loc["All", "needed_per_week"] == pytest.approx(20 / 45)
    # cost: 10 A leads at 10 + 10 B leads at 4
    np.testing.assert_allclose(req["cost_per_lead"], [10, 4, 7])
    np.testing.assert_allclose(req["cost"], [100, 40, 140])
    # simulated range around the expected 20 leads, reproducible with the seed
    assert req.loc["All", "leads_low"] < 20 < req.loc["All", "leads_high"]
    assert req.attrs["target"] == "wins" and req.attrs["late"] is False
    pdt.assert_frame_equal(_plan(plan_ds, target_wins=3).set_index("group"), req)


def test_leads_required_for_revenue(plan_ds):
    # revenue per lead: A 0.2 * 2000 = 400, B 0.1 * 6000 = 600 -> 500 at the 50/50 mix
    req = _plan(plan_ds, target_revenue=10_000).set_index("group")
    np.testing.assert_allclose(req["value_per_lead"], [400, 600, 500])
    np.testing.assert_allclose(req["leads_needed"], [10, 10, 20])
    assert req.attrs["target"] == "revenue"


def test_optimal_mix_fewest_leads_and_lowest_cost(plan_ds):
    req = _plan(plan_ds, target_wins=3)
    mix = lead_yield.compute_optimal_mix(req, max_scale=2.0).set_index("group")
    # goal: 3 wins. Fewest leads: A (0.2 per lead) up to 2 x 10 leads -> 15 A leads, cost 150.
    np.testing.assert_allclose(mix["fewest_leads"], [15, 0, 15])
    np.testing.assert_allclose(mix["fewest_leads_cost"], [150, 0, 150])
    # Lowest cost: a win costs 10/0.2 = 50 from A, 4/0.1 = 40 from B -> B first, capped at
    # 20 leads (2 wins), the last win from 5 A leads: 25 leads, 20*4 + 5*10 = 130.
    np.testing.assert_allclose(mix["lowest_cost_leads"], [5, 20, 25])
    np.testing.assert_allclose(mix["lowest_cost_cost"], [50, 80, 130])
    np.testing.assert_allclose(mix["current_cost"], [100, 40, 140])
    assert mix.attrs["short"] is False
    # no cap: all from the best source
    free = lead_yield.compute_optimal_mix(req, max_scale=math.inf).set_index("group")
    np.testing.assert_allclose(free["lowest_cost_leads"], [0, 30, 30])


def test_leads_required_bad_arguments(plan_ds):
    with pytest.raises(ValueError, match="exactly one"):
        _plan(plan_ds)
    with pytest.raises(ValueError, match="exactly one"):
        _plan(plan_ds, target_wins=3, target_revenue=5.0)
    with pytest.raises(ValueError, match="target_wins"):
        _plan(plan_ds, target_wins=0)
    with pytest.raises(ValueError, match="target_date"):
        _plan(plan_ds, target_wins=3, target_date="2025-06-30")
    with pytest.raises(ValueError, match="max_scale"):
        lead_yield.compute_optimal_mix(_plan(plan_ds, target_wins=3), max_scale=0.5)


def test_late_plan_is_flagged(plan_ds):
    # 2026-01-20 minus the 50-day median lag is before as_of
    req = _plan(plan_ds, target_wins=3, target_date="2026-01-20")
    assert req.attrs["late"] is True
    assert math.isnan(req["needed_per_week"].iloc[-1])


# --------------------------------------------------------------------------- cost and return


def test_cost_return_by_source(plan_ds):
    c = lead_yield.compute_cost_return(plan_ds, as_of=AS_OF, freq=None).set_index("source")
    # A: spend 100, 10 leads, 3 deals (2 won + 1 lost), 2 wins, revenue 4000
    assert c.loc["A", ["leads", "opportunities", "wins"]].tolist() == [10, 3, 2]
    assert c.loc["A", "cost_per_lead"] == 10
    assert c.loc["A", "cost_per_opportunity"] == pytest.approx(100 / 3)
    assert c.loc["A", "cost_per_win"] == 50
    assert c.loc["A", "revenue_per_cost"] == 40
    low, high = wilson_interval(2, 10)
    assert c.loc["A", "cpw_low"] == pytest.approx(10 / high)
    assert c.loc["A", "cpw_high"] == pytest.approx(10 / low)
    # B: 40 / 1 win; 6000 / 40 = 150; All: 140 spend, 3 wins, 10000 revenue
    assert c.loc["B", "cost_per_win"] == 40
    assert c.loc["B", "revenue_per_cost"] == 150
    assert c.loc["All", "cost"] == 140 and c.loc["All", "wins"] == 3
    q = lead_yield.compute_cost_return(plan_ds, as_of=AS_OF, freq="Q")
    assert q["period"].unique().tolist() == [D("2024-01-01")]


# Spend under filters. Leads: A0-A2 and B0-B1 created 2024-01-01, A3 2024-04-02.
# Spend: A 100 (2024-01-01) + 50 (2024-04-01), B 40 (2024-01-01).
# Deals (created 2024-01-02): A0 won 1000 East, A1 won 500 West, B0 won 2000 East.
#   whole:            A 150 / 4 leads = 37.5 per lead, / 2 wins = 75; B 40 / 2 = 20, / 1 = 40
#   source = B:       only B: All = 40 spend, 2 leads, 1 win (was 190 / 2 leads before)
#   created to 03-31: A3 and the April spend out: A 100 / 3 leads, / 2 wins = 50
#   team = East:      leads and spend whole (no team): A 150 / 4 leads = 37.5 per lead,
#                     but only 1 win in East, so no per-win cost or return


@pytest.fixture
def spend_ds():
    leads = _leads(
        [(f"A{i}", "A", "2024-01-01") for i in range(3)]
        + [("A3", "A", "2024-04-02"), ("B0", "B", "2024-01-01"), ("B1", "B", "2024-01-01")],
        milestones=(),
    )
    deals = [("A0", 1000.0, "East"), ("A1", 500.0, "West"), ("B0", 2000.0, "East")]
    opps = _opps([(f"O{k}", k, "won", "2024-01-02", "2024-03-01", a) for k, a, _ in deals])
    opps["source"] = pd.Series([k[0] for k, _, _ in deals], dtype="str")
    opps["team"] = pd.Series([t for _, _, t in deals], dtype="str")
    costs = pd.DataFrame(
        {
            "period": pd.to_datetime(["2024-01-01", "2024-04-01", "2024-01-01"]),
            "source": pd.Series(["A", "A", "B"], dtype="str"),
            "cost": [100.0, 50.0, 40.0],
        }
    )
    return _ds(leads, opps, costs=costs, milestones=())


def _cost(ds):
    return lead_yield.compute_cost_return(ds, as_of=AS_OF, freq=None).set_index("source")


def test_cost_return_follows_source_and_date_filters(spend_ds):
    whole = _cost(spend_ds)
    assert whole.loc["A", "cost_per_lead"] == 37.5 and whole.loc["A", "cost_per_win"] == 75
    assert whole.loc["B", "cost_per_win"] == 40 and whole.loc["All", "cost"] == 190
    b = _cost(spend_ds.filter(source="B"))
    assert b.index.tolist() == ["B", "All"]
    assert b.loc["All", ["cost", "leads", "wins"]].tolist() == [40, 2, 1]
    assert b.loc["All", "cost_per_lead"] == 20 and b.loc["All", "cost_per_win"] == 40
    assert b.attrs["notes"] == ()
    early = _cost(spend_ds.filter(end="2024-03-31"))
    assert early.loc["A", ["cost", "leads", "wins"]].tolist() == [100, 3, 2]
    assert early.loc["A", "cost_per_win"] == 50 and early.loc["All", "cost"] == 140
    # the inverse funnel's "All" cost per lead: B's spend over B's leads
    req = _plan(spend_ds.filter(source="B"), target_wins=1).set_index("group")
    assert req.loc["All", "cost_per_lead"] == 20


def test_cost_return_under_a_deal_only_filter_keeps_cost_per_lead_only(spend_ds):
    east = spend_ds.filter(team="East")
    c = _cost(east)
    assert c.loc["A", ["cost", "leads", "opportunities", "wins"]].tolist() == [150, 4, 1, 1]
    assert c.loc["A", "cost_per_lead"] == 37.5 and c.loc["All", "cost_per_lead"] == 190 / 6
    per_deal = ["cost_per_opportunity", "cost_per_win", "cpw_low", "cpw_high"]
    assert c[[*per_deal, "revenue_per_cost"]].isna().all().all()
    assert "team" in c.attrs["notes"][0] and "left out" in c.attrs["notes"][0]
    assert any("not recorded per team" in n for n in east.notes)
    # the inverse funnel still prices leads: all leads' spend per lead
    req = _plan(east, target_wins=1).set_index("group")
    assert req.attrs["has_costs"] is True and req.loc["A", "cost_per_lead"] == 37.5
    items = views.cost_return(east, as_of=D(AS_OF))  # says why there is no per-win figure
    text = items[0]
    assert "(32 USD per lead)" in text and "this selection won 2 deals and 3,000 USD" in text
    assert "filtered by team" in text and "per win" in text and "– USD" not in text
    assert not any(isinstance(i, plt.Figure) for i in items)  # no empty cost-per-win chart


def test_cost_return_when_leads_are_filtered_by_a_column_spend_lacks(spend_ds):
    # a custom 'campaign' column on deals and leads: the leads are split, the spend is not
    leads = spend_ds.leads.assign(campaign=["X", "Y", "X", "X", "Y", "X"])
    opps = spend_ds.opportunities.assign(campaign=["X", "Y", "Y"])
    ds = _ds(leads, opps, costs=spend_ds.table("lead_costs"), milestones=())
    x = ds.filter(campaign="X")
    assert x.table("lead_costs").attrs["not_split_by"] == ("campaign",)
    with pytest.raises(InsufficientDataError, match="campaign"):
        lead_yield.compute_cost_return(x, as_of=AS_OF)
    req = _plan(x, target_wins=1)
    assert req.attrs["has_costs"] is False and req["cost_per_lead"].isna().all()


# --------------------------------------------------------------------------- open leads
# Source A as of 2025-12-31: three leads converted after 10, 20 and 30 days (deals won, lost,
# open) and four open leads aged 5, 25, 100 and 400 days. Usual time: median 20, 90 % quantile
# 28 days. KM over the 7 leads: S(10) = 5/6, S(20) = 5/6 * 4/5 = 2/3, S(30) = 2/3 * 2/3 = 4/9;
# F(365) = 5/9. Chance of a deal: age 5 -> 5/9; age 25 -> (5/9 - 1/3) / (2/3) = 1/3;
# age 100 -> 0 (nothing converts after 30 days); age 400 -> expired. Deal win rate 1/2.


@pytest.fixture
def open_ds():
    as_of = D(AS_OF)
    rows, opps = [], []
    for i, (lag, status) in enumerate([(10, "won"), (20, "lost"), (30, "open")]):
        created = as_of - pd.Timedelta(days=200 + i)
        rows.append((f"C{i}", "A", created))
        day = created + pd.Timedelta(days=lag)
        opps.append((f"O{i}", f"C{i}", status, day, day + pd.Timedelta(days=5), 1.0))
    for age in (5, 25, 100, 400):
        rows.append((f"N{age}", "A", as_of - pd.Timedelta(days=age)))
    return _ds(_leads(rows, milestones=()), _opps(opps), milestones=())


def test_open_leads_ages_states_and_expected_wins(open_ds):
    ol = lead_yield.compute_open_leads(open_ds, as_of=AS_OF, min_converted=1)
    ol = ol.set_index("lead_id").loc[["N5", "N25", "N100", "N400"]]
    assert ol["state"].tolist() == ["fresh", "ageing", "stale", "expired"]
    assert ol["usual_days"].iloc[0] == 20 and ol["stale_after_days"].iloc[0] == 28
    np.testing.assert_allclose(ol["p_convert"], [5 / 9, 1 / 3, 0, 0], atol=1e-12)
    np.testing.assert_allclose(ol["p_win"], [5 / 18, 1 / 6, 0, 0], atol=1e-12)
    s = lead_yield.compute_open_lead_summary(ol.reset_index()).set_index("group")
    assert s.loc["A", ["open_leads", "fresh", "ageing", "stale", "expired"]].tolist() == [
        4,
        1,
        1,
        1,
        1,
    ]
    assert s.loc["All", "expected_wins"] == pytest.approx(5 / 18 + 1 / 6)
    sd = math.sqrt(5 / 18 * 13 / 18 + 1 / 6 * 5 / 6)
    assert s.loc["All", "wins_high"] == pytest.approx(4 / 9 + 1.959964 * sd, rel=1e-5)
    assert s.loc["All", "wins_low"] == 0.0  # clipped


# --------------------------------------------------------------------------- degraded data


def test_without_leads_table_views_say_why(funnel_ds):
    ds = _ds(None, funnel_ds.opportunities)
    with pytest.raises(InsufficientDataError, match="no leads table"):
        lead_yield.compute_funnel(ds, as_of=AS_OF)
    for view in (views.funnel, views.cohorts, views.open_leads, views.cost_return):
        with pytest.raises(InsufficientDataError, match="leads table"):
            view(ds, as_of=D(AS_OF))


def test_without_lead_link(funnel_ds):
    ds = _ds(funnel_ds.leads, funnel_ds.opportunities.drop(columns="lead_id"))
    with pytest.raises(InsufficientDataError, match="lead_id"):
        lead_yield.compute_lead_yield(ds, as_of=AS_OF)


def test_leads_without_costs_degrade(plan_ds):
    ds = _ds(plan_ds.leads, plan_ds.opportunities, milestones=())
    with pytest.raises(InsufficientDataError, match="lead_costs"):
        lead_yield.compute_cost_return(ds, as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match="lead_costs"):
        views.cost_return(ds, as_of=D(AS_OF))
    req = _plan(ds, target_wins=3)
    assert req.attrs["has_costs"] is False and req["cost"].isna().all()
    mix = lead_yield.compute_optimal_mix(req)
    assert mix["lowest_cost_leads"].isna().all()
    items = views.leads_required(
        ds, as_of=D(AS_OF), target_wins=3, target_date="2026-12-31", mix_days=800
    )
    assert any("Without lead costs" in i for i in items if isinstance(i, str))


def test_bad_arguments_name_the_parameter(funnel_ds):
    with pytest.raises(ValueError, match="by='team'"):
        lead_yield.compute_funnel(funnel_ds, as_of=AS_OF, by="team")
    with pytest.raises(ValueError, match="step='demo'"):
        lead_yield.compute_time_to_convert(funnel_ds, as_of=AS_OF, step="demo")
    with pytest.raises(ValueError, match="freq='Y'"):
        lead_yield.compute_cohort_conversion(funnel_ds, as_of=AS_OF, freq="Y")
    with pytest.raises(ValueError, match="as_of"):
        lead_yield.compute_funnel(funnel_ds, as_of="not a date")


def test_nothing_mutates_the_input(plan_ds):
    before = {k: v.copy() for k, v in plan_ds.tables.items()}
    lead_yield.compute_funnel(plan_ds, as_of=AS_OF, by="source")
    lead_yield.compute_lead_yield(plan_ds, as_of=AS_OF)
    lead_yield.compute_cohort_conversion(plan_ds, as_of=AS_OF)
    lead_yield.compute_cost_return(plan_ds, as_of=AS_OF)
    lead_yield.compute_open_leads(plan_ds, as_of=AS_OF)
    req = _plan(plan_ds, target_wins=3)
    req_copy = req.copy()
    lead_yield.compute_optimal_mix(req)
    pdt.assert_frame_equal(req, req_copy)
    for k, v in before.items():
        pdt.assert_frame_equal(plan_ds.tables[k], v)


# --------------------------------------------------------------------------- demo: views


@pytest.fixture(scope="module")
def demo_ds(small_demo):
    return dataset.load_dataset(small_demo, as_of=AS_OF)


def test_views_on_the_small_demo(demo_ds):
    plotting.set_theme()
    as_of = D(AS_OF)
    calls = [
        (views.funnel, {}),
        (views.conversion_by_source, {}),
        (views.cohorts, {"freq": "Q"}),
        (views.time_to_convert, {}),
        (views.leads_required, {"target_wins": 10, "target_revenue": 1e5}),
        (views.cost_return, {}),
        (views.open_leads, {}),
    ]
    for view, opts in calls:
        items = view(demo_ds, as_of=as_of, **opts)
        assert items and isinstance(items[0], str), view.__name__
        assert any(isinstance(i, plt.Figure) for i in items), view.__name__
        plt.close("all")
    # the demo's story: Referral leads convert better than Web leads
    y = lead_yield.compute_lead_yield(demo_ds, as_of=AS_OF).set_index("group")
    assert y.loc["Referral", "opp_rate"] > y.loc["Web", "opp_rate"]


def test_views_on_a_filtered_demo(demo_ds):
    team = demo_ds.opportunities["team"].dropna().iloc[0]
    ds = demo_ds.filter(start="2024-01-01", team=team)
    items = views.funnel(ds, as_of=D(AS_OF))
    assert "leads" in items[0]
    src = ds.filter(source="Referral")
    f = lead_yield.compute_funnel(src, as_of=AS_OF, by="source")
    assert f["group"].unique().tolist() == ["Referral"]


# --------------------------------------------------------------------------- text storage


def _object_text(ds: Dataset) -> Dataset:
    """The same data with its text columns stored as Python objects instead of Arrow."""
    tables = {
        name: t.astype({c: object for c in t.columns if pd.api.types.is_string_dtype(t[c])})
        for name, t in ds.tables.items()
    }
    return dataclasses.replace(ds, tables=tables)


def test_results_do_not_depend_on_how_text_is_stored(demo_ds):
    # deals are matched to leads through Arrow's hash kernels when the ids are Arrow
    # strings, through pandas otherwise: the same answers either way
    objects = _object_text(demo_ds)
    calls = [
        lambda ds: lead_yield.compute_funnel(ds, as_of=AS_OF, by="source"),
        lambda ds: lead_yield.compute_lead_yield(ds, as_of=AS_OF, by="campaign"),
        lambda ds: lead_yield.compute_cohort_conversion(ds, as_of=AS_OF, freq="Q", by="source"),
        lambda ds: lead_yield.compute_conversion_at_age(ds, as_of=AS_OF),
        lambda ds: lead_yield.compute_time_to_convert(ds, as_of=AS_OF, step="won"),
        lambda ds: lead_yield.compute_conversion_lags(ds, as_of=AS_OF),
        lambda ds: _plan(ds, target_wins=20, target_date="2026-06-30"),
        lambda ds: lead_yield.compute_cost_return(ds, as_of=AS_OF, freq="Q"),
        lambda ds: lead_yield.compute_open_leads(ds, as_of=AS_OF),
    ]
    for call in calls:
        pdt.assert_frame_equal(call(objects), call(demo_ds), check_dtype=False)


def test_leads_reached_through_later_steps_and_earliest_later_dates():
    # L1: no MQL date, SQL 01-10, deal 01-05 -> MQL reached, dated by the earliest later
    # date (01-05, the deal); L2: MQL after its SQL (01-20 vs 01-15): days as recorded;
    # L3: SQL before the lead was created -> reached, no lag
    leads = _leads(
        [
            ("L1", "Web", "2025-01-01", None, "2025-01-10"),
            ("L2", "Web", "2025-01-01", "2025-01-20", "2025-01-15"),
            ("L3", "Web", "2025-01-10", None, "2025-01-05"),
        ],
        milestones=("mql_date", "sql_date"),
    )
    opps = _opps([("O1", "L1", "won", "2025-01-05", "2025-02-01", 10.0)])
    ds = _ds(leads, opps, milestones=("mql_date", "sql_date"))
    lags = lead_yield.compute_conversion_lags(ds, as_of=AS_OF, step="mql", by=None)
    assert dict(zip(lags["lead_id"], lags["days"], strict=True)) == {"L1": 4.0, "L2": 19.0}
    sql = lead_yield.compute_time_to_convert(ds, as_of=AS_OF, step="sql", by=None)
    assert sql[["converted", "skipped"]].values.tolist() == [[2, 1]]  # L1 9 days, L2 14
    assert sql["median_days"].iloc[0] == 11.5
    f = lead_yield.compute_funnel(ds, as_of=AS_OF).set_index("step")["count"]
    assert f.tolist() == [3, 3, 3, 1, 1]
