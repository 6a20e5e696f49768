"""Product potential: which products sell, where small changes would sell more, what a
prospect may buy.

Everything here is computed from a :class:`~pipeline_lib.dataset.Dataset` as known on an
explicit ``as_of`` date; nothing reads files or draws. Three groups of functions:

1. **Scorecard** — :func:`compute_scorecard` per product or any grouping column
   (``family`` from the products table, ``industry``/``region`` from the accounts table,
   ``team``, ``source``, ...), with the pipeline weighted by win rates learned from history
   (:func:`compute_stage_win_rates`, :func:`compute_weighted_pipeline`).
2. **Potential and sensitivity** — :func:`compute_sensitivity` (what-if levers over a
   horizon) and the evidence behind the discount lever: :func:`compute_discount_effect`,
   :func:`compute_band_win_rates` (win rate by discount band and by deal-size band).
3. **What a prospect may buy** — :func:`compute_affinity` (support, confidence, lift
   across accounts), :func:`compute_white_space` (account x product with an expected
   value), :func:`compute_next_best` (per account or per open deal, with the evidence).

Discount
--------
There is no quantity column in the canonical data, so **every deal is taken as one unit
of its product at its list price**: ``discount = 1 - amount / list_price`` (products
table). A deal whose amount exceeds the list price (probably several units, or a price
uplift) cannot be told apart from a multi-unit deal, so it is flagged ``above_list`` and
left out of every discount figure (the frames count how many). The discount of a group of
deals is revenue-weighted: ``1 - sum(amount) / sum(list_price)``.

Modules
-------
:mod:`.scorecard` (groupings, scorecard), :mod:`.weights` (stage win rates, weighted
pipeline), :mod:`.discounts` (deal discounts, discount effect, band win rates),
:mod:`.sensitivity` (what-if levers), :mod:`.affinity` (affinity, white space, next
best) and :mod:`.narrative` (the ``describe_*`` texts). Everything public is importable
from this package: ``from pipeline_lib import product_potential as pp``.
"""

from __future__ import annotations

from .affinity import (
    compute_affinity,
    compute_next_best,
    compute_white_space,
    summarise_white_space,
)
from .discounts import (
    DISCOUNT_BANDS,
    compute_band_win_rates,
    compute_deal_discounts,
    compute_discount_effect,
)
from .narrative import (
    describe_affinity,
    describe_discount_effect,
    describe_scorecard,
    describe_sensitivity,
    describe_white_space,
)
from .scorecard import NONE_LABEL, compute_scorecard, compute_win_rates, group_columns
from .sensitivity import LEVERS, compute_sensitivity
from .weights import WEIGHTS, compute_stage_win_rates, compute_weighted_pipeline

__all__ = [
    "NONE_LABEL",
    "WEIGHTS",
    "LEVERS",
    "DISCOUNT_BANDS",
    "group_columns",
    "compute_deal_discounts",
    "compute_stage_win_rates",
    "compute_weighted_pipeline",
    "compute_win_rates",
    "compute_scorecard",
    "compute_discount_effect",
    "compute_band_win_rates",
    "compute_sensitivity",
    "compute_affinity",
    "compute_white_space",
    "summarise_white_space",
    "compute_next_best",
    "describe_scorecard",
    "describe_sensitivity",
    "describe_discount_effect",
    "describe_affinity",
    "describe_white_space",
]
