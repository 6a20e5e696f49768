"""Degenerate data (issue 9): every notebook runs and explains what it cannot compute.

The cases are built by :mod:`degenerate_cases` from the demo's canonical tables; each
slow test runs the five published notebooks on one case through the runner (one
``run_reports`` call, two kernels) and reads the HTML reports. The cases are spread over
three files (this one, ``test_degenerate_outcomes.py`` and ``test_degenerate_tables.py``)
so that ``pytest -n 2 --dist loadfile`` can share them between workers.

This file also holds the fast tests of the filter bar's starting filters (the notebooks'
``segment_filters`` parameter), which the empty-filter case relies on.
"""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import four_deals, make_dataset
from degenerate_cases import case_tables, case_tests

from pipeline_lib import forecasting, scoring, widgets
from pipeline_lib import product_potential as pp
from pipeline_lib import trend_review as tr
from pipeline_lib.dataset import Dataset
from pipeline_lib.errors import InsufficientDataError
from pipeline_lib.views import forecasting as fviews
from pipeline_lib.views import lead_yield as lviews
from pipeline_lib.views import product_potential as pviews
from pipeline_lib.views import trend_review as tviews

# --------------------------------------------------------------------------- filter bar


def _ds():
    return four_deals(product=["P", "Q", "P", "R"], owner=["Ann", "Ann", "Bob", "Bob"])


def count_view(ds, *, as_of):
    if ds.opportunities.empty:
        raise InsufficientDataError("no deal to count")
    return [f"{len(ds.opportunities)} deals"]


def test_starting_filters_select_deals_and_the_report_says_so(capsys):
    bar = widgets.FilterBar(
        _ds(), as_of="2025-12-31", interactive=False, filters={"team": "East", "owner": "Ann"}
    )
    assert list(bar.dataset.opportunities["opportunity_id"]) == ["A"]  # owner: no dropdown
    bar.display()
    bar.show(count_view)
    out = capsys.readouterr().out
    assert "Filtered to team = East; owner = Ann:** 1 of 4 opportunities." in out
    assert "1 deals" in out
    listed = widgets.FilterBar(_ds(), as_of="2025-12-31", filters={"product": ["Q", "R"]})
    assert list(listed.dataset.opportunities["opportunity_id"]) == ["B", "D"]
    assert listed._active() == ["product = Q or R"]


def test_a_filter_that_selects_nothing_explains_every_section(capsys):
    bar = widgets.FilterBar(
        _ds(), as_of="2025-12-31", interactive=False, filters={"team": "East", "product": "R"}
    )
    assert bar.dataset.opportunities.empty
    bar.display()
    bar.show(count_view)
    out = capsys.readouterr().out
    assert "0 of 4 opportunities. No opportunity matches" in out
    assert (
        "Not available here.** No opportunity matches the filter (team = East; product = R), "
        "so there is nothing to analyse here; widen or clear the filter." in out
    )
    bar.set_filters(team=None, product=None)  # cleared: the view's own reason again
    assert bar._explain(InsufficientDataError("why")) == "why"


def test_no_filter_shows_nothing_in_a_static_report(capsys):
    widgets.FilterBar(_ds(), as_of="2025-12-31", interactive=False, filters={}).display()
    assert capsys.readouterr().out == ""


def test_bad_starting_filters_name_the_problem():
    with pytest.raises(ValueError, match="no column 'region'.*filter on one of"):
        widgets.FilterBar(_ds(), as_of="2025-12-31", filters={"region": "North"})
    with pytest.raises(ValueError, match="must map opportunity columns"):
        widgets.FilterBar(_ds(), as_of="2025-12-31", filters=["team"])
    with pytest.raises(ValueError, match="'start' needs a date range"):
        widgets.FilterBar(_ds(), as_of="2025-12-31", date_column=None, filters={"start": "2025"})
    bar = widgets.FilterBar(_ds(), as_of="2025-12-31", filters={"start": "2025-02-15"})
    assert list(bar.dataset.opportunities["opportunity_id"]) == ["C", "D"]
    assert bar._active() == ["created_date from 2025-02-15"]


def test_interactive_dropdowns_start_at_the_filter():
    bar = widgets.FilterBar(
        _ds(), as_of="2025-12-31", interactive=True, filters={"product": ["Q", "R"], "team": "x"}
    )
    bar.display()
    bar.show(count_view)
    dropdowns = {
        c: w
        for w in bar._widget.children[0].children
        for c in bar.segments
        if f"pw-filter-{c}" in getattr(w, "_dom_classes", ())
    }
    assert dropdowns["product"].value == "Q or R" and dropdowns["team"].value == "x"
    assert "0 of 4 opportunities" in bar._status.value
    dropdowns["team"].value = "West"  # back to a real value: the list survives the round trip
    assert bar.filters["product"] == ("Q", "R") and bar.filters["team"] == "West"
    assert list(bar.dataset.opportunities["opportunity_id"]) == ["B", "D"]
    dropdowns["product"].value = "(all)"
    assert bar.filters["product"] is None


def test_the_cases_are_what_they_say():
    t = case_tables("single_opportunity")
    assert len(t["opportunities"]) == 1 and len(t["leads"]) == 1
    assert t["opportunities"]["status"].tolist() == ["won"]
    assert case_tables("single_product")["opportunities"]["product"].nunique() == 1
    assert "won" not in set(case_tables("no_won_deals")["opportunities"]["status"])
    assert "lost" not in set(case_tables("no_lost_deals")["opportunities"]["status"])
    assert set(case_tables("all_open")["opportunities"]["status"]) == {"open"}
    month = case_tables("one_month")
    assert month["opportunities"]["created_date"].min() >= pd.Timestamp("2025-12-01")
    assert month["leads"]["created_date"].min() >= pd.Timestamp("2025-12-01")
    assert "leads" not in case_tables("no_leads")
    assert "stage_history" not in case_tables("no_stage_history")


# --------------------------------------------------------------------------- analyses

AS_OF = pd.Timestamp("2025-12-31")


def _case_ds(name: str) -> Dataset:
    """Case ``name`` as a Dataset straight from its canonical tables (no files)."""
    return make_dataset(case_tables(name)).snapshot(AS_OF)


def test_win_model_needs_both_outcomes():
    no_won, no_lost = _case_ds("no_won_deals"), _case_ds("no_lost_deals")
    with pytest.raises(InsufficientDataError, match=r"were lost: win probabilities need won"):
        scoring.fit_win_model(no_won, as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match=r"were won: win probabilities need lost"):
        scoring.fit_win_model(no_lost, as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match="need won deals too"):
        fviews.pipeline_forecast(no_won, as_of=AS_OF, horizon=3, n_sims=100)


def test_a_forecast_needs_won_revenue_in_three_periods():
    one = _case_ds("single_opportunity")
    with pytest.raises(InsufficientDataError, match=r"won revenue in only 1 of the 14 complete"):
        forecasting.compute_bookings_forecast(one, as_of=AS_OF, horizon=3, origins=2, n_jobs=1)


def test_trend_review_says_why_on_degenerate_data():
    one, no_won, no_lost = (
        _case_ds(n) for n in ("single_opportunity", "no_won_deals", "no_lost_deals")
    )
    with pytest.raises(InsufficientDataError, match="no stage has deals decided .* in both"):
        tr.compute_bottlenecks(one, as_of=AS_OF)
    v = tr.compute_velocity(no_won, as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match=r"no deal was won \(the win rate is 0"):
        tr.compute_velocity_decomposition(v, current="2025Q4", previous="2025Q3")
    with pytest.raises(InsufficientDataError, match="the data have no deals in 2024Q1"):
        tr.compute_velocity_decomposition(v.iloc[5:], current="2025Q4", previous="2024Q1")
    with pytest.raises(InsufficientDataError, match="no deal was lost up to 2025-12-31"):
        tr.compute_lost_reasons(no_lost, as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match=r"deals closed up to 2025-12-31 was lost"):
        tr.compute_findings(no_won, as_of=AS_OF)
    owners = tviews.owners(no_lost, as_of=AS_OF)[0]
    assert "Reps cannot be told apart: every deal closed was won" in owners
    pushed = tviews.pushed_deals(one, as_of=AS_OF)[0]
    assert pushed == "No deal was open in 2025Q4, so there is no push rate for it."


def test_discounts_with_one_outcome_have_no_slope():
    eff = pp.compute_discount_effect(_case_ds("no_won_deals"), as_of=AS_OF)
    big = eff[eff["closed"] >= 20]
    assert len(big) and set(big["verdict"]) == {"all lost"}
    assert big["slope_per_10pts"].isna().all()
    text = pp.describe_discount_effect(big.head(1))
    assert "closed deals were lost, so the win rate cannot be related to the discount" in text
    with pytest.raises(InsufficientDataError, match="no product has won revenue in the 365"):
        pviews.what_if(_case_ds("no_won_deals"), as_of=AS_OF)
    with pytest.raises(InsufficientDataError, match="no deal was won or lost by 2025-12-31"):
        pviews.pipeline_weights(_case_ds("all_open"), as_of=AS_OF)


def test_lead_views_say_there_is_no_win_yet():
    no_won = _case_ds("no_won_deals")
    text = lviews.conversion_by_source(no_won, as_of=AS_OF)[0]
    assert text.startswith("**No lead has become a won deal yet** (0 of 1,283 leads;")
    assert (
        "no won deal yet**, so there is no cost per win"
        in lviews.cost_return(no_won, as_of=AS_OF)[0]
    )
    assert "cannot be estimated" in lviews.open_leads(no_won, as_of=AS_OF)[0]
    one = _case_ds("single_opportunity")
    assert lviews.open_leads(one, as_of=AS_OF) == [
        "Every lead has become an opportunity: no prospect is waiting in the funnel."
    ]


# --------------------------------------------------------------------------- cases


NA = "Not available here."

EXPECTED: dict[str, dict[str, list[str]]] = {
    # One won deal (from one lead), closed in 2025.
    "single_opportunity": {
        "00_data_quality": [
            "No deals closed in the KPI window, so there is no win rate to report.",
            "sum of amount of deals open on 2025-12-31",  # the KPI table still shows
        ],
        "01_product_potential": [
            "1 of 1 closed deals were won",
            "Implementation Services: too few closed deals (1) to tell.",
            "product affinity compares accounts, but only 1 account has a product; it needs "
            "purchases by at least two accounts",
        ],
        "02_lead_generation_yield": [
            "1 lead as of 2025-12-31: 1 became an opportunity",
            "1.0 (1.0–4.8) leads per win (1 win from 1 lead)",
            "within 90 days cannot be estimated: of the 1 lead, none is still followed at 90 days",
            f"{NA} No lead was created in the 365 days before 2025-12-31, so there is no "
            "current mix",
            "Every lead has become an opportunity: no prospect is waiting in the funnel.",
        ],
        "03_sales_forecast": [
            f"{NA} won revenue in only 1 of the 14 complete months up to 2025-12-31: a "
            "bookings forecast needs won deals in at least 3 months",
            f"{NA} the only deal closed by 2025-12-31 (and open on a past cut date) was won: "
            "win probabilities need lost deals too",
        ],
        "04_trend_review": [
            "no finding could be made: the only deal closed up to 2025-12-31 was won",
            "Stage history: 6 stage change(s) of 1 deal(s)",
            "no stage has deals decided or stage visits begun in both 2025Q3 and 2025Q4",
            "No deal was open and expected to close by 2025-12-31",
            "No deal is open, so none can be stalled.",
            "No deal was open in 2025Q4, so there is no push rate for it.",
            "sales velocity cannot be compared between 2025Q3 and 2025Q4: no deal was created "
            "in 2025Q3",
            "Closed deals fall in only 1 quarter(s): too few to test for change points",
            "Reps cannot be told apart: only Hannah Schulz closed deals",
            "no deal was lost up to 2025-12-31, so there are no lost reasons",
        ],
    },
    # Only the deals of Premium Support (the products table lists only it).
    "single_product": {
        "00_data_quality": ["Win rate 72.2% (95 % interval 49.1%–87.5%, 18 closed deals)"],
        "01_product_potential": [
            "21 of 33 closed deals were won",
            "Scorecard per product",
            "What-if per product and lever, ranked",
            "Premium Support: no clear effect",
            f"{NA} product affinity needs at least two products that accounts have bought; "
            "only Premium Support has purchases",
        ],
        "02_lead_generation_yield": [
            "1,283 leads as of 2025-12-31",
            "36 wins from 1,283 leads",
            "wins by 2026-06-30 need about",
            f"!{NA}",
        ],
        "03_sales_forecast": [
            "the back-test winner",
            "open deals worth 28,320 USD",
            "Too little history for a model (only 57 closed deals (34 won)",
            f"!{NA}",
        ],
        "04_trend_review": [
            "Stage history: 325 stage change(s) of 70 deal(s)",
            "Velocity = opportunities × win rate × average won deal ÷ cycle days",
            "in 1 segment(s)",
            f"!{NA}",
        ],
    },
    # Only the deals created in December 2025 (and the leads, costs and targets of it).
    "one_month": {
        "00_data_quality": ["Win rate 50.0% (95 % interval 15.0%–85.0%, 4 closed deals)"],
        "01_product_potential": [
            "2 of 4 closed deals were won",
            "No closed deal in the period for Analytics Suite: no win rate, won revenue or cycle.",
            "Not computed for Widget Pro: no won deal with an amount in the period.",
        ],
        "02_lead_generation_yield": [
            "23 leads as of 2025-12-31",
            "within 90 days cannot be estimated: of the 23 leads, none is still followed",
        ],
        "03_sales_forecast": [
            f"{NA} only 1 complete month(s) of history up to 2025-12-31: a 3-month forecast "
            "and its back-test need at least 6",
            f"{NA} the only deal closed by 2025-12-31 (and open on a past cut date) was lost: "
            "win probabilities need won deals too",
        ],
        "04_trend_review": [
            "no finding could be made: the 4 deals closed up to 2025-12-31 are too few",
            "p90 not known yet: too many visits in progress",
            "no stage has deals decided or stage visits begun in both 2025Q3 and 2025Q4",
            "sales velocity cannot be compared between 2025Q3 and 2025Q4: the data have no "
            "deals in 2025Q3",
            "change points need at least 4 complete quarters of data; there are 1",
            "lost-reason trends need losses in at least 3 periods",
        ],
    },
}

test_small_data_case = case_tests(EXPECTED)
