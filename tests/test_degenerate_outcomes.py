"""Degenerate data (issue 9), outcomes: no won deals, no lost deals, every deal open.

See ``test_degenerate.py`` for how the cases run; the expected phrases are in
:data:`EXPECTED`.
"""

from __future__ import annotations

from degenerate_cases import case_tests

NA = "Not available here."
WIN_MODEL = "win probabilities need"

EXPECTED: dict[str, dict[str, list[str]]] = {
    # Every won deal removed: 70 lost deals in the last year, 11 open.
    "no_won_deals": {
        "00_data_quality": ["Win rate 0.0% (95 % interval 0.0%–9.9%, 35 closed deals)"],
        "01_product_potential": [
            "0 of 70 closed deals were won",
            "No group has a won deal with an amount in the period, so there is no win rate "
            "and average deal to map.",
            f"{NA} no product has won revenue in the 365 days to 2025-12-31",
            "Analytics Suite: all 30 closed deals were lost, so the win rate cannot be related "
            "to the discount.",
            f"{NA} no account has bought anything yet",
        ],
        "02_lead_generation_yield": [
            "No lead has become a won deal yet (0 of 1,283 leads;",
            "No lead has reached Won yet, so there is no time to convert.",
            f"{NA} No lead has a won deal yet, so the leads needed per win cannot be estimated.",
            "but no won deal yet, so there is no cost per win",
            "No lead has become a won deal yet, so the wins still to expect from them cannot "
            "be estimated",
        ],
        "03_sales_forecast": [
            f"{NA} no deal with an amount was won in a complete month up to 2025-12-31",
            f"{NA} all 159 deals closed by 2025-12-31 (and open on a past cut date) were "
            f"lost: {WIN_MODEL} won deals too",
        ],
        "04_trend_review": [
            "no finding could be made: every one of the 176 deals closed up to 2025-12-31 was lost",
            "sales velocity cannot be compared between 2025Q3 and 2025Q4: no deal was won",
            "Reps cannot be told apart: every deal closed was lost",
            "Simpson's-paradox check: the overall win rate did not change (0% in 2025Q3 and 0% "
            "in 2025Q4)",
        ],
    },
    # Every lost deal removed.
    "no_lost_deals": {
        "00_data_quality": ["Win rate 100.0% (95 % interval 89.0%–100.0%, 31 closed deals)"],
        "01_product_potential": [
            "53 of 53 closed deals were won",
            "Premium Support: all 40 closed deals were won, so the win rate cannot be related "
            "to the discount.",
        ],
        "02_lead_generation_yield": ["97 wins from 1,283 leads"],
        "03_sales_forecast": [
            "the back-test winner",
            f"{NA} all 103 deals closed by 2025-12-31 (and open on a past cut date) were won: "
            f"{WIN_MODEL} lost deals too",
        ],
        "04_trend_review": [
            "Reps cannot be told apart: every deal closed was won",
            f"{NA} no deal was lost up to 2025-12-31, so there are no lost reasons",
            "Simpson's-paradox check: the overall win rate did not change (100% in 2025Q3 and "
            "100% in 2025Q4)",
        ],
    },
    # Only the 11 deals still open on 2025-12-31.
    "all_open": {
        "00_data_quality": ["No deals closed in the KPI window, so there is no win rate"],
        "01_product_potential": [
            "No deal was won or lost in the period (2024-12-31 – 2025-12-31).",
            "Weighted pipeline not shown: the pipeline cannot be weighted: there is no won or "
            "lost deal",
            f"{NA} no deal was won or lost by 2025-12-31, so there are no win rates per stage",
            f"{NA} no deal was won or lost in the 365 days before 2025-12-31; the what-if needs "
            "a closed history",
            f"{NA} no won or lost deal has both an amount and a list price",
        ],
        "02_lead_generation_yield": [
            "No lead has become a won deal yet (0 of 1,283 leads;",
            "11 leads became an opportunity",
        ],
        "03_sales_forecast": [
            f"{NA} no deal with an amount was won in a complete month up to 2025-12-31",
            f"{NA} no deal was won or lost on or before 2025-12-31: {WIN_MODEL} closed deals",
        ],
        "04_trend_review": [
            "no finding could be made: no deal was won or lost up to 2025-12-31",
            "5 of 11 open deals",
            f"{NA} no deal is closed (won or lost) up to as_of; trends need closed deals",
            f"{NA} no deal with an owner closed in the 365 days to 2025-12-31",
            f"{NA} no deal closed in the 730 days to 2025-12-31",
        ],
    },
}

test_outcome_case = case_tests(EXPECTED)
