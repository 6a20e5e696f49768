"""Degenerate data (issue 9), missing tables and an empty selection: no leads table, no
stage history, a segment filter that selects nothing.

See ``test_degenerate.py`` for how the cases run; the expected phrases are in
:data:`EXPECTED`.
"""

from __future__ import annotations

from degenerate_cases import case_tests

NA = "Not available here."
FILTER = "team = Enterprise; product = Widget Lite; source = Web"
NOTHING = (
    f"{NA} No opportunity matches the filter ({FILTER}), so there is nothing to analyse "
    "here; widen or clear the filter."
)
HISTORY = "can only be computed from the stage history"

EXPECTED: dict[str, dict[str, list[str]]] = {
    "no_leads": {
        "00_data_quality": ["lead funnel, leads per win, cohort conversion"],
        "01_product_potential": ["Scorecard per product", f"!{NA}"],
        "02_lead_generation_yield": [
            f"{NA} There is no leads table, so lead-generation yield cannot be measured. Add "
            "a leads table (lead_id, created_date, source and milestone dates)",
        ],
        "03_sales_forecast": ["the back-test winner", "Win models on the time-based test period"],
        "04_trend_review": ["Stage history: 1,275 stage change(s) of 300 deal(s)", f"!{NA}"],
    },
    "no_stage_history": {
        "00_data_quality": [
            "stage timing and pushes cannot be measured; snapshots are best effort"
        ],
        "01_product_potential": [
            "Weighted pipeline basis: product win rate (no stage history).",
            "Without a stage history each open deal is weighted by the product win rate",
        ],
        "02_lead_generation_yield": ["97 wins from 1,283 leads", f"!{NA}"],
        "03_sales_forecast": [
            "No stage history: stage, time in stage and close-date pushes are not used",
            "Win models on the time-based test period",
        ],
        "04_trend_review": [
            "No stage history in this data source.",
            f"{NA} Stage conversion {HISTORY}",
            f"{NA} Bottlenecks {HISTORY}",
            f"{NA} The pipeline flow {HISTORY}",
            f"{NA} Stalled deals {HISTORY}",
            f"{NA} Pushed deals {HISTORY}",
            "Velocity = opportunities × win rate × average won deal ÷ cycle days",
        ],
    },
    # team, product and source values that each exist, but no deal has all three.
    "empty_segment_filter": {
        "00_data_quality": [
            f"Filtered to {FILTER}: 0 of 300 opportunities. No opportunity matches",
            "3,289 rows read, 3,289 loaded, 0 rejected",  # the load is not filtered
        ],
        "01_product_potential": [f"Filtered to {FILTER}: 0 of 300", NOTHING],
        "02_lead_generation_yield": [
            "Filtered to source = Web; team = Enterprise; product = Widget Lite: 0 of 300",
            "541 leads as of 2025-12-31, and none has become an opportunity yet",
            f"{NA} No opportunity matches the filter (source = Web; team = Enterprise; "
            "product = Widget Lite)",
        ],
        "03_sales_forecast": [f"Filtered to {FILTER}: 0 of 300", NOTHING],
        "04_trend_review": [f"Filtered to {FILTER}: 0 of 300", NOTHING],
    },
}

test_table_case = case_tests(EXPECTED)
