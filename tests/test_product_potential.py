"""Product potential: hand-checked scorecards, weights, discounts, what-if, affinity."""

from __future__ import annotations

import dataclasses
import functools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from pipeline_lib import dataset, plotting
from pipeline_lib import product_potential as pp
from pipeline_lib.dataset import Dataset
from pipeline_lib.errors import InsufficientDataError
from pipeline_lib.sources import StageConfig
from pipeline_lib.stats import wilson_interval
from pipeline_lib.views import product_potential as views

STAGES = StageConfig(open=("Qualify", "Propose"), won=("Won",), lost=("Lost",), aliases={})
AS_OF = "2025-12-31"
D = pd.Timestamp


def _status(stages):
    return ["won" if s == "Won" else "lost" if s == "Lost" else "open" for s in stages]


def make_ds(opps: dict, *, history=None, products=None, accounts=None) -> Dataset:
    opps = pd.DataFrame(opps)
    opps["status"] = pd.Series(_status(opps["stage"]), dtype="str")
    for col in ("created_date", "close_date"):
        opps[col] = pd.to_datetime(opps[col])
    for col in ("opportunity_id", "stage", "product", "account", "team"):
        if col in opps:
            opps[col] = opps[col].astype("str")
    tables = {"opportunities": opps}
    if history is not None:
        rows = [(i, s, D(d)) for i, steps in history.items() for s, d in steps]
        hist = pd.DataFrame(rows, columns=["opportunity_id", "stage", "entered_at"])
        tables["stage_history"] = hist.astype({"opportunity_id": "str", "stage": "str"})
    if products is not None:
        tables["products"] = pd.DataFrame(products).astype({"product": "str"})
    if accounts is not None:
        tables["accounts"] = pd.DataFrame(accounts).astype({"account": "str"})
    empty = pd.DataFrame()
    return Dataset(
        tables=tables,
        rejects=empty,
        warnings=empty,
        counts=empty,
        stages=STAGES,
        as_of=D(AS_OF),
        base_currency="USD",
    )


# Two products, period_days=100 -> period (2025-09-22, 2025-12-31], previous
# (2025-06-14, 2025-09-22]. List prices: A 100, B 50.
SCORE_OPPS = {
    "opportunity_id": ["A1", "A2", "A3", "A4", "A5", "A6", "B1", "B2", "B3"],
    "stage": ["Won", "Won", "Lost", "Propose", "Won", "Lost", "Won", "Lost", "Qualify"],
    "created_date": [
        "2025-10-01",
        "2025-10-01",
        "2025-09-01",
        "2025-11-01",
        "2025-07-01",
        "2025-07-01",
        "2025-12-01",
        "2025-12-01",
        "2025-12-15",
    ],
    "close_date": [
        "2025-10-11",
        "2025-10-31",
        "2025-10-15",
        "2026-02-01",
        "2025-08-01",
        "2025-08-10",
        "2025-12-11",
        "2025-12-20",
        "2026-03-01",
    ],
    "amount": [90.0, 80.0, 100.0, 100.0, 100.0, 100.0, 60.0, 50.0, 40.0],
    "probability": [1.0, 1.0, 0.0, 0.6, 1.0, 0.0, 1.0, 0.0, 0.2],
    "product": ["A"] * 6 + ["B"] * 3,
    "account": ["a1", "a2", "a3", "a4", "a1", "a2", "a3", "a4", "a1"],
    "team": ["East"] * 4 + ["West"] * 5,
}
SCORE_HISTORY = {
    "A1": [("Qualify", "2025-10-01"), ("Propose", "2025-10-05"), ("Won", "2025-10-11")],
    "A2": [("Propose", "2025-10-01"), ("Won", "2025-10-31")],
    "A3": [("Qualify", "2025-09-01"), ("Lost", "2025-10-15")],
    "A4": [("Qualify", "2025-11-01"), ("Propose", "2025-11-10")],
    "A5": [("Qualify", "2025-07-01"), ("Propose", "2025-07-10"), ("Won", "2025-08-01")],
    "A6": [("Qualify", "2025-07-01"), ("Propose", "2025-07-10"), ("Lost", "2025-08-10")],
    "B1": [("Qualify", "2025-12-01"), ("Won", "2025-12-11")],
    "B2": [("Qualify", "2025-12-01"), ("Propose", "2025-12-05"), ("Lost", "2025-12-20")],
    "B3": [("Qualify", "2025-12-15")],
}
PRODUCTS = {"product": ["A", "B"], "family": ["Core", "Add-on"], "list_price": [100.0, 50.0]}
ACCOUNTS = {
    "account": ["a1", "a2", "a3", "a4"],
    "region": ["North", "North", "South", "South"],
}


@pytest.fixture
def score_ds():
    return make_ds(SCORE_OPPS, history=SCORE_HISTORY, products=PRODUCTS, accounts=ACCOUNTS)


# --------------------------------------------------------------------------- scorecard


def test_scorecard_hand_checked(score_ds):
    card = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100, prior_strength=2)
    assert list(card["product"]) == ["A", "B"]  # by won revenue
    a, b = card.iloc[0], card.iloc[1]
    # A: created in the period A1, A2, A4; closed A1, A2 won, A3 lost; A4 open
    assert (a["opportunities"], a["won"], a["lost"], a["open"]) == (3, 2, 1, 1)
    lo, hi = wilson_interval(2, 3)
    assert a["win_rate"] == pytest.approx(2 / 3)
    assert (a["win_rate_low"], a["win_rate_high"]) == pytest.approx((lo, hi))
    # revenue 90 + 80 = 170 of 170 + 60 = 230
    assert a["won_revenue"] == 170 and a["revenue_share"] == pytest.approx(170 / 230)
    assert a["avg_won_deal"] == 85 and a["median_won_deal"] == 85
    # discount: 1 - (90 + 80) / (100 + 100) = 0.15
    assert a["discount"] == pytest.approx(0.15) and a["discount_deals"] == 2
    assert a["median_cycle_days"] == 20  # cycles 10 and 30
    assert a["open_pipeline"] == 100
    # previous period: A5 won (100), A6 lost; created A3, A5, A6
    assert (a["won_prev"], a["lost_prev"], a["opportunities_prev"]) == (1, 1, 3)
    assert a["win_rate_change"] == pytest.approx(2 / 3 - 1 / 2)
    assert a["won_revenue_change"] == pytest.approx(170 / 100 - 1)
    # B1 is priced above list (60 > 50): no discount; nothing closed before
    assert np.isnan(b["discount"]) and b["discount_deals"] == 0
    assert b["win_rate"] == 0.5 and b["median_cycle_days"] == 10
    assert np.isnan(b["win_rate_prev"]) and np.isnan(b["won_revenue_change"])
    # weighted pipeline with shrinkage m = 2 (see test_stage_win_rates_shrinkage)
    assert a["weighted_pipeline"] == pytest.approx(100 * 205 / 294)
    assert b["weighted_pipeline"] == pytest.approx(40 * 57 / 112)


def test_scorecard_total_row_and_groupings(score_ds):
    card = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100, total=True)
    total = card.iloc[-1]
    assert total["product"] == "All"
    assert (total["won"], total["lost"], total["open"]) == (3, 2, 2)
    assert total["won_revenue"] == 230 and total["revenue_share"] == 1.0
    # family comes from the products table, region from the accounts table
    fam = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100, group_by="family")
    assert fam.set_index("family")["won"].to_dict() == {"Core": 2, "Add-on": 1}
    reg = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100, group_by="region")
    # North = a1, a2: A1, A2 won; South = a3, a4: A3 lost, B1 won, B2 lost
    got = reg.set_index("region")[["won", "lost"]].to_dict("index")
    assert got == {"North": {"won": 2, "lost": 0}, "South": {"won": 1, "lost": 2}}
    team = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100, group_by="team")
    assert set(team["team"]) == {"East", "West"}
    assert "family" in pp.group_columns(score_ds) and "region" in pp.group_columns(score_ds)


def test_win_rates_are_the_scorecards_columns(score_ds):
    # period (2025-09-22, 2025-12-31]: A1, A2 won (90, 80), A3 lost; B1 won (60), B2 lost
    rates = pp.compute_win_rates(score_ds, as_of=AS_OF, period_days=100)
    assert rates["product"].tolist() == ["A", "B"]  # by won revenue
    assert rates[["won", "lost"]].to_numpy().tolist() == [[2, 1], [1, 1]]
    np.testing.assert_allclose(rates["win_rate"], [2 / 3, 0.5])
    lo, hi = wilson_interval(np.array([2, 1]), np.array([3, 2]))
    np.testing.assert_allclose(rates["win_rate_low"], lo)
    np.testing.assert_allclose(rates["win_rate_high"], hi)
    assert rates["won_revenue"].tolist() == [170.0, 60.0]
    assert rates["avg_won_deal"].tolist() == [85.0, 60.0]
    assert rates["median_won_deal"].tolist() == [85.0, 60.0]
    assert rates.attrs["period"] == (D("2025-09-22"), D(AS_OF))
    card = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100)
    cols = ["product", "won", "lost", "win_rate", "win_rate_low", "win_rate_high"]
    cols += ["won_revenue", "avg_won_deal", "median_won_deal"]
    pd.testing.assert_frame_equal(rates[cols], card[cols])
    # grouped by a column of the accounts table; a group without a closed deal has no row
    reg = pp.compute_win_rates(score_ds, as_of=AS_OF, period_days=100, by="region")
    assert reg.set_index("region")[["won", "lost"]].to_dict("index") == {
        "North": {"won": 2, "lost": 0},
        "South": {"won": 1, "lost": 2},
    }
    # only the previous period's A5 (won) and A6 (lost) close in (2025-07-31, 2025-08-10]
    early = pp.compute_win_rates(score_ds, as_of="2025-08-10", period_days=10)
    assert early[["product", "won", "lost"]].to_numpy().tolist() == [["A", 1, 1]]
    with pytest.raises(ValueError, match="period_days"):
        pp.compute_win_rates(score_ds, as_of=AS_OF, period_days=0)
    with pytest.raises(ValueError, match="by='colour'.*product"):
        pp.compute_win_rates(score_ds, as_of=AS_OF, by="colour")


def test_scorecard_does_not_mutate(score_ds):
    before = score_ds.opportunities.copy()
    pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100, total=True)
    pd.testing.assert_frame_equal(score_ds.opportunities, before)


def test_scorecard_errors(score_ds):
    with pytest.raises(ValueError, match="group_by='colour'.*product"):
        pp.compute_scorecard(score_ds, as_of=AS_OF, group_by="colour")
    with pytest.raises(ValueError, match="weights='magic'.*history, stage, crm"):
        pp.compute_scorecard(score_ds, as_of=AS_OF, weights="magic")
    with pytest.raises(ValueError, match="period_days"):
        pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=0)
    with pytest.raises(TypeError, match="Dataset"):
        pp.compute_scorecard(score_ds.opportunities, as_of=AS_OF)


def test_product_without_closed_deals_and_without_list_prices():
    opps = {k: v for k, v in SCORE_OPPS.items()}
    opps["product"] = ["A"] * 6 + ["C"] * 3
    opps["stage"] = [*SCORE_OPPS["stage"][:6], "Qualify", "Qualify", "Qualify"]
    ds = make_ds(opps, history=None)  # no products table, no history
    card = pp.compute_scorecard(ds, as_of=AS_OF, period_days=100)
    c = card.set_index("product").loc["C"]
    assert c["won"] == 0 and np.isnan(c["win_rate"]) and c["open"] == 3
    notes = " ".join(card.attrs["notes"])
    assert "No closed deal in the period for C" in notes
    assert "list prices" in notes
    assert card["discount"].isna().all()
    # no stage history: weights fall back to the product's win rate over all closed deals
    # C has none -> overall 3/5 (A1, A2, A5 won; A3, A6 lost)
    assert c["weighted_pipeline"] == pytest.approx((60 + 50 + 40) * 3 / 5)
    sens = pp.compute_sensitivity(ds, as_of=AS_OF, period_days=100)
    notes_c = set(sens.loc[sens["product"].eq("C"), "note"])
    assert notes_c == {"no deal closed in the period"}
    assert sens.loc[sens["product"].eq("A") & sens["lever"].eq("discount"), "note"].item() == (
        "no list price (or no won deal with a discount)"
    )
    with pytest.raises(InsufficientDataError, match="list prices"):
        pp.compute_band_win_rates(ds, as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match="stage history"):
        pp.compute_stage_win_rates(ds, as_of=AS_OF)


# --------------------------------------------------------------------------- weights


def test_stage_win_rates_shrinkage(score_ds):
    # closed deals with a history: A1 A2 A3 A5 A6 B1 B2, won A1 A2 A5 B1 -> overall 4/7
    # Qualify reached by A1 A3 A5 A6 B1 B2 (won 3); Propose by A1 A2 A5 A6 B2 (won 3)
    rates = pp.compute_stage_win_rates(score_ds, as_of=AS_OF, prior_strength=2)
    got = rates.set_index(["product", "stage"])
    q_rate = (3 + 2 * 4 / 7) / (6 + 2)  # = 29/56
    p_rate = (3 + 2 * 4 / 7) / (5 + 2)  # = 29/49
    assert got.loc[("A", "Qualify"), "stage_rate"] == pytest.approx(29 / 56) == q_rate
    assert got.loc[("A", "Propose"), "stage_rate"] == pytest.approx(29 / 49) == p_rate
    # A at Propose: A1 A2 A5 A6 reached, 3 won -> (3 + 2 * 29/49) / (4 + 2)
    assert got.loc[("A", "Propose"), ["reached", "won"]].tolist() == [4, 3]
    assert got.loc[("A", "Propose"), "win_probability"] == pytest.approx(205 / 294)
    assert got.loc[("A", "Propose"), "own_weight"] == pytest.approx(4 / 6)
    assert got.loc[("A", "Propose"), "basis"] == "product & stage"
    # B at Qualify: B1 B2 reached, 1 won -> (1 + 2 * 29/56) / (2 + 2)
    assert got.loc[("B", "Qualify"), "win_probability"] == pytest.approx(57 / 112)
    assert got.loc[("B", "Qualify"), "raw_rate"] == 0.5
    lo, hi = wilson_interval(1, 2)
    assert got.loc[("B", "Qualify"), ["raw_low", "raw_high"]].tolist() == pytest.approx([lo, hi])
    # without shrinkage the raw rates come back
    raw = pp.compute_stage_win_rates(score_ds, as_of=AS_OF, prior_strength=0)
    assert raw.set_index(["product", "stage"]).loc[("A", "Propose"), "win_probability"] == 0.75
    assert list(rates["stage"].unique()) == ["Qualify", "Propose"]


def test_weighted_pipeline_weights(score_ds):
    hist = pp.compute_weighted_pipeline(score_ds, as_of=AS_OF, prior_strength=2)
    assert list(hist["opportunity_id"]) == ["A4", "B3"]
    assert hist["weighted_amount"].tolist() == pytest.approx([100 * 205 / 294, 40 * 57 / 112])
    stage = pp.compute_weighted_pipeline(score_ds, as_of=AS_OF, weights="stage", prior_strength=2)
    assert stage["win_probability"].tolist() == pytest.approx([29 / 49, 29 / 56])
    crm = pp.compute_weighted_pipeline(score_ds, as_of=AS_OF, weights="crm")
    assert crm["weighted_amount"].tolist() == pytest.approx([60.0, 8.0])
    assert set(crm["basis"]) == {"CRM probability"}


def test_weighted_pipeline_needs_closed_deals():
    opps = {k: v[3:4] for k, v in SCORE_OPPS.items()}  # only the open A4
    ds = make_ds(opps, history={"A4": SCORE_HISTORY["A4"]})
    with pytest.raises(InsufficientDataError, match="no won or lost deal"):
        pp.compute_weighted_pipeline(ds, as_of=AS_OF)
    card = pp.compute_scorecard(ds, as_of=AS_OF)
    assert card["weighted_pipeline"].isna().all()
    assert any("Weighted pipeline not shown" in n for n in card.attrs["notes"])


# --------------------------------------------------------------------------- discounts


def _discount_ds(discounts, won, *, product="P", price=100.0, start=0):
    n = len(discounts)
    ids = [f"{product}{start + i}" for i in range(n)]
    opps = {
        "opportunity_id": ids,
        "stage": ["Won" if w else "Lost" for w in won],
        "created_date": ["2025-11-01"] * n,
        "close_date": ["2025-12-01"] * n,
        "amount": [price * (1 - d) for d in discounts],
        "product": [product] * n,
        "account": [f"acc{i}" for i in range(n)],
    }
    return opps


def test_deal_discounts_one_unit_per_deal(score_ds):
    d = pp.compute_deal_discounts(score_ds, as_of=AS_OF).set_index("opportunity_id")
    assert d.loc["A1", "discount"] == pytest.approx(0.10)
    assert d.loc["A2", "discount"] == pytest.approx(0.20)
    assert d.loc["B1", "above_list"] and np.isnan(d.loc["B1", "discount"])
    assert d.loc["B3", "discount"] == pytest.approx(0.20)  # open deals get one too


def test_discount_effect_and_bands():
    # discounts 0, 0, .1, .1 with won 0, 1, 1, 1: slope = cov / var = .0125 / .0025 = 5
    # per unit of discount -> +0.5 (50 pts) of win rate per 10 discount points
    opps = _discount_ds([0, 0, 0.1, 0.1], [0, 1, 1, 1])
    ds = make_ds(opps, products={"product": ["P"], "list_price": [100.0]})
    eff = pp.compute_discount_effect(ds, as_of=AS_OF, min_deals=4)
    assert eff["slope_per_10pts"].item() == pytest.approx(0.5)
    assert eff[["closed", "won"]].iloc[0].tolist() == [4, 3]
    assert eff["avg_discount_won"].item() == pytest.approx(0.2 / 3)
    assert pp.compute_discount_effect(ds, as_of=AS_OF)["verdict"].item() == "too few deals"
    bands = pp.compute_band_win_rates(ds, as_of=AS_OF, bands=(0, 0.05))
    assert bands["band"].tolist() == ["0%–5%", "5%+"]
    assert bands[["closed", "won"]].to_numpy().tolist() == [[2, 1], [2, 2]]
    lo, hi = wilson_interval(1, 2)
    assert bands[["win_rate_low", "win_rate_high"]].iloc[0].tolist() == pytest.approx([lo, hi])
    sizes = pp.compute_band_win_rates(ds, as_of=AS_OF, by="deal_size")
    # amounts 100, 100, 90, 90: two distinct amounts -> two size bands
    assert sizes["band"].tolist() == ["smaller", "larger"]
    assert sizes["win_rate"].tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match="by='colour'"):
        pp.compute_band_win_rates(ds, as_of=AS_OF, by="colour")
    with pytest.raises(ValueError, match="bands"):
        pp.compute_band_win_rates(ds, as_of=AS_OF, bands=(0.1, 0.05))


# --------------------------------------------------------------------------- what-if


def test_sensitivity_arithmetic(score_ds):
    sens = pp.compute_sensitivity(
        score_ds,
        as_of=AS_OF,
        period_days=100,
        horizon_days=200,
        win_rate_pts=10,
        discount_cut_pct=50,
        cycle_days=5,
        leads_pct=20,
        discount_effect=False,
    )
    got = sens.set_index(["product", "lever"])["revenue_change"]
    # A: C = 3 closed, p = 2/3, A = 85, W = 170, d = .15, c = 20; R = 170 * 200/100 = 340
    assert got[("A", "win rate")] == pytest.approx(6 * 0.10 * 85)  # 6 closings
    # d' = .075, A' = 85 * .925 / .85 = 92.5, delta = 6 * 2/3 * (92.5 - 85)
    assert got[("A", "discount")] == pytest.approx(30.0)
    assert got[("A", "cycle")] == pytest.approx(170 / 100 * 5)
    assert got[("A", "leads")] == pytest.approx(340 * 0.2 * (1 - 20 / 200))
    # B: C = 2, p = .5, A = 60, W = 60, c = 10, no discount; R = 120
    assert got[("B", "win rate")] == pytest.approx(4 * 0.10 * 60)
    assert got[("B", "cycle")] == pytest.approx(0.6 * 5)
    assert got[("B", "leads")] == pytest.approx(120 * 0.2 * (1 - 10 / 200))
    assert np.isnan(got[("B", "discount")])
    order = list(zip(sens["product"], sens["lever"], strict=True))
    assert order[:7] == [
        ("A", "leads"),
        ("A", "win rate"),
        ("A", "discount"),
        ("B", "win rate"),
        ("B", "leads"),
        ("A", "cycle"),
        ("B", "cycle"),
    ]
    assert sens["rank"].tolist()[:7] == [1, 2, 3, 4, 5, 6, 7] and pd.isna(sens["rank"].iloc[7])
    base = sens.set_index(["product", "lever"])["baseline_revenue"]
    assert base[("A", "leads")] == 340 and base[("B", "win rate")] == 120
    assert "6 closings" in sens.set_index(["product", "lever"]).loc[("A", "win rate"), "arithmetic"]


def test_sensitivity_discount_lowers_win_rate_where_discounts_win():
    # 10 deals at 0 % (1 won), 10 at 20 % (9 won): slope 4 per unit of discount
    opps = _discount_ds([0.0] * 10 + [0.2] * 10, [1] + [0] * 9 + [1] * 9 + [0])
    ds = make_ds(opps, products={"product": ["P"], "list_price": [100.0]})
    what_if = functools.partial(
        pp.compute_sensitivity,
        ds,
        as_of=AS_OF,
        period_days=100,
        horizon_days=100,
        discount_cut_pct=50,
    )
    sens = what_if()
    row = sens.set_index("lever").loc["discount"]
    # won revenue 100 + 9 * 80 = 820 over list 1000 -> d = .18; p = .5, A = 82; 20 closings
    # d' = .09 -> A' = 82 * .91 / .82 = 91; p' = .5 - 4 * .09 = .14
    assert row["revenue_change"] == pytest.approx(20 * (0.14 * 91 - 0.5 * 82))
    inputs = sens.attrs["inputs"].set_index("product")
    assert inputs.loc["P", "discount_slope"] == pytest.approx(4.0)
    off = what_if(discount_effect=False)
    assert off.set_index("lever").loc["discount", "revenue_change"] == pytest.approx(
        20 * 0.5 * (91 - 82)
    )


def test_sensitivity_errors(score_ds):
    with pytest.raises(ValueError, match="win_rate_pts"):
        pp.compute_sensitivity(score_ds, as_of=AS_OF, win_rate_pts=-1)
    with pytest.raises(ValueError, match="horizon_days"):
        pp.compute_sensitivity(score_ds, as_of=AS_OF, horizon_days=0)
    with pytest.raises(InsufficientDataError, match="every what-if lever is 0"):
        pp.compute_sensitivity(
            score_ds, as_of=AS_OF, win_rate_pts=0, discount_cut_pct=0, cycle_days=0, leads_pct=0
        )
    with pytest.raises(InsufficientDataError, match="no deal was won or lost"):
        pp.compute_sensitivity(score_ds, as_of=AS_OF, period_days=1)


# --------------------------------------------------------------------------- affinity


AFF_OPPS = {
    "opportunity_id": ["o1", "o2", "o3", "o4", "o5", "o6", "o7"],
    "stage": ["Won", "Won", "Won", "Won", "Won", "Won", "Qualify"],
    "created_date": ["2025-01-01"] * 7,
    "close_date": ["2025-02-01"] * 6 + ["2026-02-01"],
    "amount": [10.0, 20.0, 10.0, 20.0, 10.0, 30.0, 30.0],
    "product": ["X", "Y", "X", "Y", "X", "Z", "Z"],
    "account": ["acc1", "acc1", "acc2", "acc2", "acc3", "acc4", "acc3"],
}


@pytest.fixture
def aff_ds():
    return make_ds(AFF_OPPS)


def test_affinity_support_confidence_lift(aff_ds):
    # N = 4 accounts; X: acc1-3, Y: acc1-2, Z: acc4
    aff = pp.compute_affinity(aff_ds, as_of=AS_OF).set_index(["antecedent", "consequent"])
    xy = aff.loc[("X", "Y")]
    assert (xy["accounts"], xy["antecedent_accounts"], xy["both"]) == (4, 3, 2)
    assert xy["support"] == 0.5 and xy["confidence"] == pytest.approx(2 / 3)
    assert xy["lift"] == pytest.approx((2 / 3) / (2 / 4))
    assert aff.loc[("Y", "X"), "lift"] == pytest.approx(1 / (3 / 4))
    assert aff.loc[("X", "Z"), "lift"] == 0
    lo, hi = wilson_interval(2, 3)
    assert xy[["confidence_low", "confidence_high"]].tolist() == pytest.approx([lo, hi])
    assert xy["lift_low"] == pytest.approx(lo / 0.5)


def test_white_space_and_next_best(aff_ds):
    ws = pp.compute_white_space(aff_ds, as_of=AS_OF, prior_strength=2)
    cell = ws.set_index(["account", "product"])
    assert cell.loc[("acc1", "X"), "status"] == "owned"
    assert cell.loc[("acc3", "Z"), "status"] == "open deal"  # o7 is open
    # acc3 owns X: X -> Y smoothed (2 + 2 * 2/4) / (3 + 2) = 3/5; avg won Y = 20
    assert cell.loc[("acc3", "Y"), "propensity"] == pytest.approx(3 / 5)
    assert cell.loc[("acc3", "Y"), "expected_value"] == pytest.approx(12.0)
    assert cell.loc[("acc3", "Y"), "because_of"] == "X"
    assert cell.loc[("acc3", "Y"), "evidence"].startswith(
        "2 of 3 accounts that bought X also bought Y"
    )
    # acc4 owns Z: Z -> X = (0 + 2 * 3/4) / (1 + 2) = .5; Z -> Y = (0 + 2 * 2/4) / 3 = 1/3
    assert cell.loc[("acc4", "X"), "propensity"] == pytest.approx(0.5)
    assert cell.loc[("acc4", "Y"), "expected_value"] == pytest.approx(20 / 3)

    summary = pp.summarise_white_space(ws).set_index("product")
    assert summary.loc["Z", ["owned", "open_deal", "white_space"]].tolist() == [1, 1, 2]

    nb = pp.compute_next_best(aff_ds, as_of=AS_OF, prior_strength=2, top_n=2)
    assert nb["account"].tolist()[:3] == ["acc3", "acc4", "acc4"]
    assert nb.loc[nb["account"].eq("acc4"), "product"].tolist() == ["Y", "X"]
    assert "Z" not in set(nb.loc[nb["account"].eq("acc3"), "product"])  # already open
    # acc1: Z via Y (0 + 2 * 1/4) / (2 + 2) = .125 beats via X (0 + .5) / 5 = .1
    acc1 = nb.loc[nb["account"].eq("acc1")].iloc[0]
    assert acc1["product"] == "Z" and acc1["propensity"] == pytest.approx(0.125)
    assert acc1["because_of"] == "Y"

    deal = pp.compute_next_best(aff_ds, as_of=AS_OF, per="deal", prior_strength=2)
    assert deal["opportunity_id"].unique().tolist() == ["o7"]
    assert deal["product"].tolist() == ["Y"]  # X owned, Z is the deal itself
    assert deal["expected_value"].item() == pytest.approx(12.0)


def test_affinity_edge_cases(aff_ds):
    one = make_ds({k: v[:2] for k, v in AFF_OPPS.items()})  # acc1 only
    with pytest.raises(InsufficientDataError, match="only 1 account"):
        pp.compute_affinity(one, as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match="only 1 account"):
        pp.compute_next_best(one, as_of=AS_OF)
    no_acc = make_ds({k: v for k, v in AFF_OPPS.items() if k != "account"})
    with pytest.raises(InsufficientDataError, match="'account' column"):
        pp.compute_white_space(no_acc, as_of=AS_OF)
    with pytest.raises(ValueError, match="basis='bought'"):
        pp.compute_affinity(aff_ds, as_of=AS_OF, basis="bought")
    with pytest.raises(ValueError, match="per='team'"):
        pp.compute_next_best(aff_ds, as_of=AS_OF, per="team")


def test_describe_texts_lead_with_numbers(score_ds, aff_ds):
    card = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100)
    text = pp.describe_scorecard(card, group_by="product", currency="USD")
    assert "**3 of 5** closed deals were won" in text and "230 USD" in text
    aff = pp.compute_affinity(aff_ds, as_of=AS_OF)
    assert "4 accounts have at least one product" in pp.describe_affinity(aff, min_both=1)


# --------------------------------------------------------------------------- plots and views


def test_plots_draw_computed_frames(score_ds, aff_ds):
    card = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100)
    ax = plotting.plot_potential_map(card)
    assert len(ax.collections) >= 1 and "Potential map" in ax.get_title()
    sens = pp.compute_sensitivity(score_ds, as_of=AS_OF, period_days=100)
    _, ax = plt.subplots()
    plotting.plot_what_if(sens, ax=ax)
    assert len(ax.patches) >= 7
    fig = plotting.plot_band_win_rates(pp.compute_band_win_rates(score_ds, as_of=AS_OF))
    assert isinstance(fig, Figure)
    _, ax = plt.subplots()
    plotting.plot_affinity_heatmap(pp.compute_affinity(aff_ds, as_of=AS_OF), ax=ax)
    _, ax = plt.subplots()
    plotting.plot_stage_win_rates(pp.compute_stage_win_rates(score_ds, as_of=AS_OF), ax=ax)
    with pytest.raises(ValueError, match="plot_potential_map"):
        plotting.plot_potential_map(card.drop(columns="win_rate"))


def test_views_on_small_demo(small_demo):
    ds = dataset.load_dataset(small_demo, as_of=AS_OF)
    as_of = D(AS_OF)
    for name in views.__all__:
        try:
            items = getattr(views, name)(ds, as_of=as_of)
        except InsufficientDataError:
            continue  # shown as a note by the filter bar
        assert items, name
        for item in items:
            assert isinstance(item, str | Styler | Figure | pd.DataFrame), (name, type(item))
    text = views.overview(ds, as_of=as_of)[0]
    assert "closed deals were won" in text
    items = views.scorecard(ds, as_of=as_of, group_by="family")
    assert isinstance(items[0], Styler) and "All" in items[0].data["family"].tolist()


def test_views_pass_their_options_to_the_analysis(score_ds):
    as_of = D(AS_OF)
    items = views.scorecard(score_ds, as_of=as_of, period_days=100, prior_strength=2)
    assert "compared with the 100 days before" in items[0].caption
    card = pp.compute_scorecard(score_ds, as_of=AS_OF, period_days=100, prior_strength=2)
    assert items[0].data["weighted pipeline"].iloc[0] == card["weighted_pipeline"].iloc[0]
    items = views.what_if(score_ds, as_of=as_of, period_days=100, horizon_days=200, win_rate_pts=10)
    table = items[2].data.set_index(["product", "scenario"])
    # 6 closings x 10 pts x 85 avg won deal, as in test_sensitivity_arithmetic
    assert table.loc[("A", "win rate +10 pts"), "change"] == pytest.approx(6 * 0.10 * 85)
    with pytest.raises(TypeError, match="colour"):
        views.overview(score_ds, as_of=as_of, colour="red")


def test_views_give_messages_not_tracebacks():
    one = make_ds({k: v[:2] for k, v in AFF_OPPS.items()})
    with pytest.raises(InsufficientDataError, match="only 1 account"):
        views.affinity(one, as_of=D(AS_OF))
    with pytest.raises(InsufficientDataError, match="list prices"):
        views.discount_evidence(one, as_of=D(AS_OF))


def test_missing_canonical_grouping_column_is_a_note_not_an_error():
    ds = make_ds(SCORE_OPPS)  # no products or accounts table
    with pytest.raises(InsufficientDataError, match="'family'.*source config"):
        pp.compute_scorecard(ds, as_of=AS_OF, group_by="family")
    no_amounts = dict(SCORE_OPPS, amount=[np.nan] * 9)
    items = views.potential_map(make_ds(no_amounts), as_of=D(AS_OF), period_days=100)
    assert items == [
        "No group has a won deal with an amount in the period, so there is no win rate and "
        "average deal to map."
    ]


# --------------------------------------------------------------------------- text storage


def _object_text(ds: Dataset) -> Dataset:
    """The same data with its text columns stored as Python objects instead of Arrow."""
    tables = {
        name: t.astype({c: object for c in t.columns if pd.api.types.is_string_dtype(t[c])})
        for name, t in ds.tables.items()
    }
    return dataclasses.replace(ds, tables=tables)


def test_results_do_not_depend_on_how_text_is_stored(score_ds, aff_ds):
    # ids and labels are matched through Arrow's hash kernels when they are Arrow strings,
    # through pandas otherwise: the same answers either way
    calls = [
        (score_ds, lambda ds: pp.compute_scorecard(ds, as_of=AS_OF, period_days=100, total=True)),
        (score_ds, lambda ds: pp.compute_scorecard(ds, as_of=AS_OF, group_by="region")),
        (score_ds, lambda ds: pp.compute_stage_win_rates(ds, as_of=AS_OF, prior_strength=2)),
        (score_ds, lambda ds: pp.compute_weighted_pipeline(ds, as_of=AS_OF, prior_strength=2)),
        (score_ds, lambda ds: pp.compute_deal_discounts(ds, as_of=AS_OF)),
        (aff_ds, lambda ds: pp.compute_white_space(ds, as_of=AS_OF, basis="any")),
        (aff_ds, lambda ds: pp.compute_next_best(ds, as_of=AS_OF, per="deal")),
    ]
    for ds, call in calls:
        pd.testing.assert_frame_equal(call(_object_text(ds)), call(ds), check_dtype=False)


@pytest.mark.parametrize("dtype", ["str", "string[pyarrow]", object])
def test_arrow_lookups_agree_with_pandas(dtype):
    from pipeline_lib._arrowtools import index_in, isin

    values = pd.Series(["b", None, "a", "x", "b"], dtype=dtype)
    uniques = pd.Index(["a", "b", "c"], dtype=dtype)
    assert index_in(values, uniques).tolist() == [1, -1, 0, -1, 1]
    assert index_in(values, pd.Index(["b", "a", "b"], dtype=dtype)).tolist() == [0, -1, 1, -1, 0]
    assert isin(values, pd.Series(["b", "c"], dtype=dtype)).tolist() == [1, 0, 0, 0, 1]
    assert isin(values, ["a"]).tolist() == [0, 0, 1, 0, 0]
    # missing is a member only where the allowed values hold a missing one
    assert isin(values, pd.Series(["a", None], dtype=dtype)).tolist() == [0, 1, 1, 0, 0]
    # many more allowed values than rows (ids of a big table): the same answers
    many = pd.Series([f"id{i}" for i in range(20)] + ["x"], dtype=dtype)
    assert isin(values, many).tolist() == [0, 0, 0, 1, 0]
    assert isin(values, pd.concat([many, pd.Series([None], dtype=dtype)])).tolist() == [
        0,
        1,
        0,
        1,
        0,
    ]


def test_best_rule_per_set_of_products_matches_every_cell():
    from pipeline_lib.product_potential.affinity import _best_rules

    rng = np.random.default_rng(7)
    have = rng.random((200, 5)) < 0.4
    conf = np.where(rng.random((5, 5)) < 0.2, -np.inf, rng.integers(0, 4, (5, 5)) / 4)  # ties
    rows, products = np.nonzero(rng.random((200, 5)) < 0.5)
    best_a, best = _best_rules(have, conf, rows, products)
    for r, p, a, b in zip(rows, products, best_a, best, strict=True):
        cand = np.where(have[r], conf[:, p], -np.inf)
        assert (a, b) == (cand.argmax(), cand.max())
