"""Trend review: problems, bottlenecks and trends in the sales process — and what worked.

Every function takes a :class:`~pipeline_lib.dataset.Dataset` and an explicit ``as_of``
date; the data are seen as known at the end of ``as_of`` (the Dataset is snapshotted
unless it already is). Nothing here reads files or draws.

Vocabulary used throughout
--------------------------
- **period**: ``"month"``, ``"quarter"`` or ``"year"`` (calendar periods).
- **review window** (:func:`compute_review_windows`): the last *complete* period ending on
  or before ``as_of`` ("current"), and the period it is compared with ("comparison"):
  the one before (``comparison="previous"``) or the same period a year earlier
  (``comparison="year_ago"``).
- **win rate** of a set of deals: won / (won + lost); open deals are not counted. Deals
  belong to the period of their ``close_date`` unless said otherwise.
- **sales cycle**: days from ``created_date`` to ``close_date`` of a won deal (deals with
  a missing or negative cycle are skipped).
- Analyses of stages (conversion, time in stage, flow, pushes, stalls) need the
  ``stage_history`` table and raise :class:`~pipeline_lib.errors.InsufficientDataError`
  without it; everything else works from the opportunities alone.

Repeated calls on the same Dataset object with the same arguments reuse the first
result (the shared memo, :mod:`pipeline_lib.memo`): the findings and
the sections of the trend-review notebook share their analyses. Results are copies, so
changing one never changes another.

Modules
-------
- ``stages``: stage conversion, time in stage, bottlenecks, stalled deals.
- ``flow``: pipeline flow, pushed deals, push rate.
- ``trends``, ``velocity``, ``change_points``: per-period metrics and their changes.
- ``comparisons``: the review window against the comparison window, overall and per
  segment.
- ``owners``, ``lost_reasons``, ``what_worked``: rankings, loss reasons, winning segments.
- ``findings``: the headline sentences drawn from all of the above.
"""

from __future__ import annotations

from ._common import COMPARISONS, PERIODS, STAGE_HISTORY_ANALYSES, compute_review_windows
from .change_points import compute_change_points
from .comparisons import compute_period_comparison, compute_segment_changes
from .findings import compute_findings
from .flow import compute_pipeline_flow, compute_push_rate, compute_pushed_deals
from .lost_reasons import compute_lost_reason_trends, compute_lost_reasons
from .owners import compute_owner_performance
from .stages import (
    compute_bottlenecks,
    compute_stage_conversion,
    compute_stage_durations,
    compute_stalled_deals,
)
from .trends import compute_trends
from .velocity import compute_velocity, compute_velocity_decomposition
from .what_worked import compute_simpsons_check, compute_what_worked

__all__ = [
    "PERIODS",
    "COMPARISONS",
    "STAGE_HISTORY_ANALYSES",
    "compute_review_windows",
    "compute_stage_conversion",
    "compute_stage_durations",
    "compute_bottlenecks",
    "compute_pipeline_flow",
    "compute_pushed_deals",
    "compute_push_rate",
    "compute_stalled_deals",
    "compute_velocity",
    "compute_velocity_decomposition",
    "compute_trends",
    "compute_change_points",
    "compute_period_comparison",
    "compute_segment_changes",
    "compute_owner_performance",
    "compute_lost_reasons",
    "compute_lost_reason_trends",
    "compute_what_worked",
    "compute_simpsons_check",
    "compute_findings",
]
