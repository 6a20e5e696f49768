"""Lead-generation yield: how many leads it takes to close N sales, and how leads move.

Every function takes a :class:`~pipeline_lib.dataset.Dataset` (snapshotted at ``as_of``
unless it already is) or a frame computed here, and returns a new DataFrame; nothing
reads files or draws, and inputs are never modified.

The funnel of a lead is ``lead -> <milestones> -> opportunity -> won``: the milestones
are the source config's ordered lead milestone columns (``Dataset.milestones``, e.g.
``mql_date, sql_date``, named here without ``_date``); a lead reaches *opportunity* when
an opportunity links to it by ``lead_id`` and *won* when one of those is won (closed on
or before ``as_of``). A lead that reached a later step counts as having passed every
earlier one (a deal made from a lead that skipped "MQL" still passed MQL), so the counts
never grow along the funnel. The date a lead reached a step is its own recorded date or,
when that is missing, the earliest date of a later step.

Recent leads have had little time to convert: :func:`compute_cohort_conversion` and
:func:`compute_conversion_at_age` treat them as censored (Kaplan–Meier) so that a young
cohort is not mistaken for a bad one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import schema
from ._arrowtools import index_in
from .dataset import Dataset, to_timestamp
from .errors import InsufficientDataError
from .memo import memoized
from .stats import kaplan_meier, wilson_interval

__all__ = [
    "ALL",
    "COHORT_FREQS",
    "step_label",
    "lead_steps",
    "compute_funnel",
    "compute_lead_yield",
    "compute_conversion_lags",
    "compute_time_to_convert",
    "compute_cohort_conversion",
    "compute_conversion_at_age",
    "compute_leads_required",
    "compute_optimal_mix",
    "compute_cost_return",
    "compute_open_leads",
    "compute_open_lead_summary",
]

#: Label of the row/group that covers every lead.
ALL = "All"
#: Allowed cohort frequencies: weekly, monthly, quarterly.
COHORT_FREQS = {"W": "week", "M": "month", "Q": "quarter"}
_MISSING = "(missing)"
_LEAD, _OPP, _WON = "lead", "opportunity", "won"


def step_label(step: str) -> str:
    """Display name of a funnel step (``"mql"`` -> ``"MQL"``, ``"won"`` -> ``"Won"``).

    Examples
    --------
    >>> step_label("sql"), step_label("won")
    ('SQL', 'Won')
    """
    return step.upper() if len(step) <= 3 and step != _WON else step.replace("_", " ").capitalize()


# --------------------------------------------------------------------------- per-lead table


@dataclass(frozen=True)
class _Links:
    """Deals matched to leads: all the funnel counts need (see :func:`_links`)."""

    leads: pd.DataFrame  # the leads table as known on as_of; rows as in _Leads.frame
    steps: tuple[str, ...]  # ("lead", *milestones, "opportunity", "won")
    as_of: pd.Timestamp
    notes: tuple[str, ...]
    milestones: tuple[str, ...]  # milestone columns with dates
    reached: dict  # per step: the lead reached it or a later step (bool per lead)
    opp_lead: np.ndarray  # per row of the opportunities: row of its lead, or -1
    key: np.ndarray  # per lead: its id among the linked deals' distinct ids, or -1
    n_keys: int
    deals: pd.DataFrame  # the deals of known leads: created_date, close_date, amount
    deal_key: np.ndarray  # per deal of ``deals``: its lead's key
    deal_won: np.ndarray  # per deal of ``deals``: won


@dataclass(frozen=True)
class _Leads:
    frame: pd.DataFrame  # one row per lead
    steps: tuple[str, ...]  # ("lead", *milestones, "opportunity", "won")
    as_of: pd.Timestamp
    notes: tuple[str, ...]
    opp_lead: np.ndarray  # per row of the opportunities: row of its lead in frame, or -1
    leads: pd.DataFrame  # the leads table frame was made from (same rows)


def _snapshot(dataset: Dataset, as_of) -> tuple[Dataset, pd.Timestamp]:
    ts = to_timestamp(as_of)
    return (dataset if dataset.as_of == ts else dataset.snapshot(ts)), ts


def _require_leads(ds: Dataset) -> pd.DataFrame:
    leads = ds.leads
    if leads is None:
        raise InsufficientDataError(
            "There is no leads table, so lead-generation yield cannot be measured. Add a `leads` "
            "table (lead_id, created_date, source and milestone dates) to the source config "
            "and link deals to it with an opportunities `lead_id` column."
        )
    if leads.empty:
        raise InsufficientDataError(
            "The leads table has no lead created on or before the as_of date (or none in "
            "the filtered range); widen the date range or choose a later as_of."
        )
    if "lead_id" not in ds.opportunities.columns:
        raise InsufficientDataError(
            "The opportunities table has no lead_id column, so deals cannot be linked to "
            "their leads; map the lead id column of the deals export to `lead_id`."
        )
    return leads


@memoized(copy=False)
def _build(dataset: Dataset, as_of) -> _Leads:
    """Per-lead frame of ``dataset`` as known on ``as_of``, shared by every section (its
    callers never modify it): see :func:`_build_uncached`."""
    return _build_uncached(_links(dataset, as_of))


@memoized(copy=False)
def _links(dataset: Dataset, as_of) -> _Links:
    """Deals matched to the leads of ``dataset`` as known on ``as_of`` (shared; never
    modified): see :func:`_link`."""
    ds, ts = _snapshot(dataset, as_of)
    return _link(ds, ts, _require_leads(ds))


def _link(ds: Dataset, ts: pd.Timestamp, leads: pd.DataFrame) -> _Links:
    """Match deals to leads and find the funnel steps each lead reached.

    Deals are matched to leads through integer keys: the distinct lead ids of the linked
    deals are hashed once and every lead id is looked up among them.
    """
    notes = []
    milestones = []
    for col in ds.milestones:
        if col not in leads.columns or leads[col].notna().sum() == 0:
            notes.append(f"Milestone `{col}` has no dates and is left out of the funnel.")
        else:
            milestones.append(col)
    opps = ds.opportunities
    has_link = opps["lead_id"].notna().to_numpy()
    linked = opps.loc[has_link, ["lead_id", "status", "created_date", "close_date", "amount"]]
    okey, ouniq = pd.factorize(linked["lead_id"])  # deal -> distinct linked lead id
    lkey = index_in(leads["lead_id"], ouniq)  # lead -> distinct linked lead id, or -1
    has_opp = lkey >= 0
    in_leads = np.zeros(len(ouniq), dtype=bool)
    in_leads[lkey[has_opp]] = True
    known = in_leads[okey]
    if (~known).any():
        notes.append(
            f"{int((~known).sum()):,} deal(s) name a lead_id that is not in the leads table "
            "(or not in the filtered leads) and are left out of the funnel."
        )
    lead_of_key = np.full(len(ouniq), -1, dtype="int64")
    rows = np.flatnonzero(has_opp)[::-1]  # first lead row of a repeated id wins
    lead_of_key[lkey[rows]] = rows
    opp_lead = np.full(len(opps), -1, dtype="int64")
    opp_lead[np.flatnonzero(has_link)] = lead_of_key[okey]
    linked, okey = linked[known], okey[known]
    is_won = linked["status"].eq(schema.WON).to_numpy(dtype=bool, na_value=False)
    has_won_key = np.zeros(len(ouniq), dtype=bool)
    has_won_key[okey[is_won]] = True
    has_won = has_opp.copy()  # (indexing only the linked leads: no deal at all is fine)
    has_won[has_opp] = has_won_key[lkey[has_opp]]

    own = {m.removesuffix("_date"): leads[m].notna().to_numpy() for m in milestones}
    own[_OPP] = has_opp
    own[_WON] = has_won
    steps = (_LEAD, *own)
    reached = {}
    later = np.zeros(len(leads), dtype=bool)
    for step in reversed(steps[1:]):
        later = later | own[step]
        reached[step] = later
    reached[_LEAD] = np.ones(len(leads), dtype=bool)
    if leads["created_date"].isna().any():
        notes.append(
            f"{int(leads['created_date'].isna().sum()):,} lead(s) have no created date; "
            "they count in the funnel but not in ages, lags or cohorts."
        )
    return _Links(
        leads,
        steps,
        ts,
        tuple(notes),
        tuple(milestones),
        reached,
        opp_lead,
        lkey,
        len(ouniq),
        linked[["created_date", "close_date", "amount"]],
        okey,
        is_won,
    )


def _build_uncached(links: _Links) -> _Leads:
    """Per-lead frame: the lead's columns, ``age``, ``revenue``, ``won_no_amount`` and per
    step ``reached_<s>`` (it or a later step) and ``days_<s>`` (from the lead's creation to
    the step's date, or to the earliest date of a later step when its own is missing)."""
    leads, ts, lkey, n = links.leads, links.as_of, links.key, links.n_keys
    deals, okey = links.deals, links.deal_key
    won, wkey = deals[links.deal_won], okey[links.deal_won]
    opp_date = deals["created_date"].groupby(okey).min()
    won_date = won["close_date"].groupby(wkey).min()
    revenue = won["amount"].groupby(wkey).sum(min_count=1)
    no_amount = won["amount"].isna().groupby(wkey).sum()

    frame = {c: leads[c].reset_index(drop=True) for c in leads.columns if c != "_row"}
    frame["age"] = (ts - frame["created_date"]).dt.days
    n_leads = len(leads)
    dates = {m.removesuffix("_date"): frame[m] for m in links.milestones}
    dates[_OPP] = _lookup(opp_date, lkey, n)
    dates[_WON] = _lookup(won_date, lkey, n)
    cols: dict[str, object] = {}
    # dates as nanoseconds (NaT: missing); whole days between them are floored, as
    # Timedelta.days does
    created, no_created = _nanoseconds(frame["created_date"])
    later_min = np.zeros(n_leads, dtype="int64")
    no_later = np.ones(n_leads, dtype=bool)
    for step in reversed(links.steps[1:]):
        own, no_own = _nanoseconds(dates[step])
        date = np.where(no_own, later_min, own)  # the step's date, else the earliest later
        days = np.floor_divide(date - created, _DAY_NS)
        missing = (no_own & no_later) | no_created | (days < 0)
        cols[f"reached_{step}"] = links.reached[step]
        cols[f"days_{step}"] = np.where(missing, np.nan, days.astype("float64"))
        earlier = ~no_own & (no_later | (own <= later_min))
        later_min = np.where(earlier, own, later_min)
        no_later = no_later & no_own
    frame.update(
        revenue=_lookup(revenue, lkey, n).fillna(0.0).astype("float64"),
        won_no_amount=_lookup(no_amount, lkey, n).fillna(0).astype("int64"),
        **cols,
        reached_lead=links.reached[_LEAD],
    )
    frame = pd.DataFrame(frame, copy=False)  # columns as they are: nothing is modified
    return _Leads(frame, links.steps, ts, links.notes, links.opp_lead, leads)


_DAY_NS = 86_400_000_000_000


def _nanoseconds(dates: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Dates as int64 nanoseconds, and where they are missing."""
    values = dates.to_numpy(dtype="datetime64[ns]")
    missing = np.isnat(values)
    return values.view("int64"), missing


def _lookup(values: pd.Series, keys: np.ndarray, n: int) -> pd.Series:
    """``values`` (indexed by keys in ``[0, n)``, as a ``groupby`` of codes gives) at each
    key, missing where it has none (key -1 included), as ``values.reindex(keys)`` would."""
    pos = np.full(n + 1, -1, dtype="int64")  # pos[-1] = pos[n]: key -1 finds nothing
    pos[values.index.to_numpy()] = np.arange(len(values))
    return pd.Series(values.array.take(pos[keys], allow_fill=True))


def lead_steps(dataset: Dataset, *, as_of) -> tuple[str, ...]:
    """The funnel steps of a dataset: ``("lead", *milestones, "opportunity", "won")``.

    Milestones are ``Dataset.milestones`` without ``_date``; milestones with no date at
    all are left out.

    Raises
    ------
    InsufficientDataError
        When there is no leads table or deals cannot be linked to leads.

    Examples
    --------
    >>> lead_steps(ds, as_of="2025-12-31")  # doctest: +SKIP
    ('lead', 'mql', 'sql', 'opportunity', 'won')
    """
    return _build(dataset, as_of).steps


def _check_by(frame: pd.DataFrame, by: str | None) -> None:
    if by is None:
        return
    if by not in frame.columns or by.startswith(("reached_", "days_")):
        allowed = [
            c
            for c in frame.columns
            if pd.api.types.is_string_dtype(frame[c]) and c != "lead_id" and not c.startswith("_")
        ]
        raise ValueError(
            f"by={by!r} is not a column of the leads table; use one of {allowed} or None "
            "(deal-only columns such as team or product cannot split leads that never "
            "became deals)"
        )


def _groups(frame: pd.DataFrame, by: str | None) -> pd.Series:
    if by is None:
        return pd.Series(ALL, index=frame.index, dtype="str")
    return frame[by].astype("str").fillna(_MISSING).replace("", _MISSING)


@memoized(dates=(), copy=False)
def _group_codes(frame: pd.DataFrame, by: str | None) -> tuple[np.ndarray, list[str]]:
    """:func:`_groups` as ``(codes, labels)``: labels sorted, ``labels[codes]`` per row.

    Computed once per per-lead frame and ``by`` (a per-group loop then works on integer
    positions instead of comparing millions of strings per group).
    """
    if by is None:
        return np.zeros(len(frame), dtype="int64"), [ALL]
    codes, uniques = pd.factorize(_groups(frame, by))
    labels = [str(u) for u in uniques]
    order = sorted(range(len(labels)), key=labels.__getitem__)
    rank = np.empty(len(labels), dtype="int64")
    rank[order] = np.arange(len(labels))
    return rank[codes], [labels[i] for i in order]


def _codes_of(built: _Leads | _Links, by: str | None) -> tuple[np.ndarray, list[str]]:
    """:func:`_group_codes` of the per-lead rows, computed on the leads table when ``by`` is
    one of its columns (so the funnel and the other sections share them)."""
    if by is None or by in built.leads.columns:
        return _group_codes(built.leads, by)
    return _group_codes(built.frame, by)


def _is_lead_column(leads: pd.DataFrame, by: str | None) -> bool:
    """``by`` is None or a column of the leads table :func:`_check_by` accepts."""
    return by is None or (
        by in leads.columns and by != "_row" and not by.startswith(("reached_", "days_"))
    )


def _reached(built: _Leads | _Links, step: str) -> np.ndarray:
    """Per lead: reached ``step`` or a later one."""
    if isinstance(built, _Links):
        return built.reached[step]
    return _col(built.frame, f"reached_{step}")


def _labels_at(labels, codes: np.ndarray) -> pd.Series:
    """Text Series of ``labels[codes]`` (one Arrow take, not a Python string per row)."""
    return pd.Series(list(labels), dtype="str").take(codes).reset_index(drop=True)


def _by_size(codes: np.ndarray) -> list[int]:
    """Group codes largest first, ties in order of appearance (as ``Series.value_counts``)."""
    first = pd.unique(codes)
    counts = np.bincount(codes)[first]
    return list(pd.Series(counts, index=first).sort_values(ascending=False, kind="stable").index)


def _period_codes(dates: pd.Series, freq: str) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Per row, the code of its period's start among the sorted starts (-1: no date).

    ``dates.dt.to_period(freq).dt.start_time`` computed on the distinct dates only.
    """
    dcodes, distinct = pd.factorize(dates)
    starts = pd.Series(distinct).dt.to_period(freq).dt.start_time
    scodes, periods = pd.factorize(starts, sort=True)
    codes = np.where(dcodes >= 0, scodes[np.maximum(dcodes, 0)], -1) if len(scodes) else dcodes
    return codes.astype("int64"), pd.DatetimeIndex(periods)


def _check_step(steps, step: str, *, allow_lead: bool = False) -> None:
    allowed = [s for s in steps if allow_lead or s != _LEAD]
    if step not in allowed:
        raise ValueError(f"step={step!r} is not a funnel step here; use one of {allowed}")


def _window(frame: pd.DataFrame, start, end) -> np.ndarray:
    """Rows of leads created in ``[start, end]`` (every row when both are None)."""
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= (frame["created_date"] >= to_timestamp(start, name="start")).to_numpy()
    if end is not None:
        keep &= (frame["created_date"] <= to_timestamp(end, name="end")).to_numpy()
    return keep


def _col(frame: pd.DataFrame, column: str, rows=None) -> np.ndarray:
    """A column as a NumPy array, optionally at ``rows`` (mask or positions)."""
    values = frame[column].to_numpy()
    return values if rows is None else values[rows]


# --------------------------------------------------------------------------- funnel


def compute_funnel(
    dataset: Dataset,
    *,
    as_of,
    by: str | None = None,
    start=None,
    end=None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Lead funnel counts with step and cumulative conversion, overall or per group.

    Definitions, for leads created in ``[start, end]`` (all leads by default) as known on
    ``as_of``:

    - **count** of a step: leads that reached it (or a later step);
    - **step rate** = count / count of the previous step;
    - **cumulative rate** = count / leads;

    each with a Wilson interval. Recent leads may still convert, so these rates
    understate the eventual yield of young leads (see :func:`compute_cohort_conversion`).

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    by : str, optional
        A text column of the leads table (``source``, ``campaign``, ``segment``...);
        ``None`` for one funnel over all leads. Missing values form a ``(missing)`` group.
    start, end : date, optional
        Window of lead created dates (inclusive).
    confidence : float, default 0.95

    Returns
    -------
    DataFrame
        ``group, step, label, count, previous, step_rate, step_low, step_high,
        cum_rate, cum_low, cum_high``; ``group`` is ``"All"`` when ``by`` is None, steps
        in funnel order (``previous`` and the step rate of ``lead`` are the lead count
        and 1). ``attrs["notes"]`` says what was left out (undated milestones, deals
        naming an unknown lead).

    Raises
    ------
    InsufficientDataError
        No leads table, no lead link, or no lead in the window.
    ValueError
        ``by`` is not a text column of the leads table.

    Examples
    --------
    >>> compute_funnel(ds, as_of="2025-12-31")[["step", "count"]]  # doctest: +SKIP
    """
    # the counts need only which steps each lead reached, not the per-lead table
    built = _links(dataset, as_of)
    if not _is_lead_column(built.leads, by):  # a computed column, or none (the error)
        built = _build(dataset, as_of)
        _check_by(built.frame, by)
    keep = _window(built.leads, start, end)
    if not keep.any():
        raise InsufficientDataError("No lead was created in the chosen window; widen it.")
    codes, labels = _codes_of(built, by)
    codes = codes[keep]
    n = len(labels)
    counts = {s: np.bincount(codes[_reached(built, s)[keep]], minlength=n) for s in built.steps}
    rows = []
    for k in np.flatnonzero(counts[_LEAD]):  # groups with leads, sorted
        prev = int(counts[_LEAD][k])
        for step in built.steps:
            rows.append((labels[k], step, int(counts[step][k]), prev, int(counts[_LEAD][k])))
            prev = int(counts[step][k])
    out = pd.DataFrame(rows, columns=["group", "step", "count", "previous", "leads"])
    out["label"] = out["step"].map(step_label)
    s_low, s_high = wilson_interval(out["count"], out["previous"], confidence=confidence)
    c_low, c_high = wilson_interval(out["count"], out["leads"], confidence=confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["step_rate"] = out["count"] / out["previous"].where(out["previous"] > 0)
        out["cum_rate"] = out["count"] / out["leads"].where(out["leads"] > 0)
    out = out.assign(step_low=s_low, step_high=s_high, cum_low=c_low, cum_high=c_high)
    out["group"] = out["group"].astype("str")
    cols = ["group", "step", "label", "count", "previous", "step_rate", "step_low"]
    cols += ["step_high", "cum_rate", "cum_low", "cum_high"]
    out = out[cols]
    out.attrs["notes"] = built.notes
    return out


def compute_lead_yield(
    dataset: Dataset,
    *,
    as_of,
    by: str | None = "source",
    start=None,
    end=None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Lead -> opportunity -> won yield, leads per win and revenue per lead, per group.

    Definitions, for leads created in ``[start, end]`` as known on ``as_of``:

    - **opportunity rate** = leads that became an opportunity / leads;
    - **win rate** = leads with a won deal / leads (Wilson interval);
    - **leads per win** = leads / won leads; its interval is the inverse of the win
      rate's (``1 / win_high`` to ``1 / win_low``);
    - **revenue** = amount of the won deals of these leads (won deals without an amount
      are skipped and counted in ``won_no_amount``); **revenue per lead** = revenue /
      leads.

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    by : str or None, default "source"
        Text column of the leads table to split by; ``None`` for the total only.
    start, end : date, optional
        Window of lead created dates.
    confidence : float, default 0.95

    Returns
    -------
    DataFrame
        ``group, leads, opportunities, opp_rate, opp_low, opp_high, wins, win_rate,
        win_low, win_high, leads_per_win, lpw_low, lpw_high, revenue, revenue_per_lead,
        won_no_amount``; one row per group, largest first, then an ``"All"`` row.

    Raises
    ------
    InsufficientDataError, ValueError
        As :func:`compute_funnel`.

    Examples
    --------
    >>> compute_lead_yield(ds, as_of="2025-12-31", by="source")  # doctest: +SKIP
    """
    built = _build(dataset, as_of)
    _check_by(built.frame, by)
    keep = _window(built.frame, start, end)
    if not keep.any():
        raise InsufficientDataError("No lead was created in the chosen window; widen it.")
    frame = pd.DataFrame(
        {
            "opportunities": _col(built.frame, f"reached_{_OPP}", keep),
            "wins": _col(built.frame, f"reached_{_WON}", keep),
            "revenue": _col(built.frame, "revenue", keep),
            "won_no_amount": _col(built.frame, "won_no_amount", keep),
        }
    )
    parts = []
    if by is not None:
        codes, labels = _codes_of(built, by)
        parts.append(_yield_rows(frame, codes[keep], labels))
    total = _yield_rows(frame, np.zeros(len(frame), dtype="int64"), [ALL])
    out = pd.concat([*parts, total], ignore_index=True) if parts else total
    return _add_yield_rates(out, confidence)


def _yield_rows(frame: pd.DataFrame, codes: np.ndarray, labels: list[str]) -> pd.DataFrame:
    """Leads, opportunities, wins, revenue per group code (``labels`` sorted)."""
    agg = (
        frame.groupby(codes)
        .agg(
            leads=("opportunities", "size"),
            opportunities=("opportunities", "sum"),
            wins=("wins", "sum"),
            revenue=("revenue", "sum"),
            won_no_amount=("won_no_amount", "sum"),
        )
        .sort_values("leads", ascending=False, kind="stable")
    )
    agg.index = pd.Index(np.asarray(labels, dtype=object)[agg.index], name="group")
    return agg.reset_index().astype(
        {"group": "str", "leads": "int64", "opportunities": "int64", "wins": "int64"}
    )


def _add_yield_rates(out: pd.DataFrame, confidence: float) -> pd.DataFrame:
    o_low, o_high = wilson_interval(out["opportunities"], out["leads"], confidence=confidence)
    w_low, w_high = wilson_interval(out["wins"], out["leads"], confidence=confidence)
    leads = out["leads"].where(out["leads"] > 0)
    with np.errstate(divide="ignore"):
        out = out.assign(
            opp_rate=out["opportunities"] / leads,
            opp_low=o_low,
            opp_high=o_high,
            win_rate=out["wins"] / leads,
            win_low=w_low,
            win_high=w_high,
            leads_per_win=out["leads"] / out["wins"].where(out["wins"] > 0),
            lpw_low=1.0 / pd.Series(w_high, index=out.index),
            lpw_high=1.0 / pd.Series(w_low, index=out.index).where(lambda s: s > 0),
            revenue_per_lead=out["revenue"] / leads,
        )
    cols = ["group", "leads", "opportunities", "opp_rate", "opp_low", "opp_high", "wins"]
    cols += ["win_rate", "win_low", "win_high", "leads_per_win", "lpw_low", "lpw_high"]
    cols += ["revenue", "revenue_per_lead", "won_no_amount"]
    return out[cols].astype({"won_no_amount": "int64"})


# --------------------------------------------------------------------------- time to convert


def compute_conversion_lags(
    dataset: Dataset, *, as_of, step: str = _OPP, by: str | None = "source"
) -> pd.DataFrame:
    """Days from lead creation to reaching ``step``, one row per lead that reached it.

    The lag is measured to the step's own date, or to the earliest later date when the
    lead's own date for the step is missing. Leads whose date lies before their created
    date (a data error) are left out.

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    step : str, default "opportunity"
        A funnel step other than ``lead`` (see :func:`lead_steps`).
    by : str or None, default "source"

    Returns
    -------
    DataFrame
        ``group, lead_id, created_date, days`` (``days`` float, >= 0).

    Raises
    ------
    InsufficientDataError, ValueError

    Examples
    --------
    >>> lags = compute_conversion_lags(ds, as_of="2025-12-31")  # doctest: +SKIP
    >>> lags.groupby("group")["days"].median()  # doctest: +SKIP
    """
    built = _build(dataset, as_of)
    _check_step(built.steps, step)
    _check_by(built.frame, by)
    frame = built.frame
    days = _col(frame, f"days_{step}")
    keep = ~np.isnan(days) & _col(frame, f"reached_{step}")
    codes, labels = _codes_of(built, by)
    return pd.DataFrame(
        {
            "group": _labels_at(labels, codes[keep]),
            "lead_id": frame["lead_id"][keep].reset_index(drop=True),
            "created_date": _col(frame, "created_date", keep),
            "days": days[keep],
        }
    ).astype({"group": "str", "lead_id": "str"})


def compute_time_to_convert(
    dataset: Dataset, *, as_of, step: str = _OPP, by: str | None = "source"
) -> pd.DataFrame:
    """Distribution of days from lead to ``step`` among the leads that reached it, per group.

    Only leads that converted are measured, so for recent leads the lags are biased
    short (slow converters have not converted yet); the cohort curves account for that.

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    step : str, default "opportunity"
    by : str or None, default "source"

    Returns
    -------
    DataFrame
        ``group, converted, median_days, p25_days, p75_days, p90_days, mean_days,
        skipped`` (``skipped``: leads that reached the step with a date before their
        created date, or without any date). One row per group, fastest median first,
        then ``"All"``.

    Raises
    ------
    InsufficientDataError
        No lead reached the step.

    Examples
    --------
    >>> compute_time_to_convert(ds, as_of="2025-12-31")  # doctest: +SKIP
    """
    built = _build(dataset, as_of)
    _check_step(built.steps, step)
    _check_by(built.frame, by)
    frame = built.frame
    reached = _col(frame, f"reached_{step}")
    if not reached.any():
        raise InsufficientDataError(
            f"No lead has reached {step_label(step)} yet, so there is no time to convert."
        )
    days = _col(frame, f"days_{step}", reached)
    splits = [(_codes_of(built, by), False)] if by is not None else []
    splits.append(((np.zeros(len(frame), dtype="int64"), [ALL]), True))
    rows = []
    for (codes, labels), is_total in splits:
        codes = codes[reached]
        for k in pd.unique(codes):  # groups in order of appearance
            group = labels[k]
            in_group = days[codes == k]
            d = pd.Series(in_group[~np.isnan(in_group)])
            q = d.quantile([0.25, 0.5, 0.75, 0.9]) if len(d) else pd.Series([np.nan] * 4)
            rows.append(
                {
                    "group": group,
                    "converted": len(d),
                    "median_days": float(q.iloc[1]),
                    "p25_days": float(q.iloc[0]),
                    "p75_days": float(q.iloc[2]),
                    "p90_days": float(q.iloc[3]),
                    "mean_days": float(d.mean()) if len(d) else np.nan,
                    "skipped": int(len(in_group) - len(d)),
                    "_total": group == ALL and is_total,
                }
            )
    out = pd.DataFrame(rows).sort_values(["_total", "median_days"], kind="stable")
    return out.drop(columns="_total").reset_index(drop=True).astype({"group": "str"})


# --------------------------------------------------------------------------- cohorts (censored)


def _km_arrays(frame: pd.DataFrame, step: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lead: duration (days to the step, or age when not reached), event, usable.

    A lead is usable when its duration is known and non-negative and it did not reach
    the step without a date; ``dur[ok], event[ok]`` of a set of leads are the inputs of
    :func:`~pipeline_lib.stats.kaplan_meier`.
    """
    days = _col(frame, f"days_{step}")
    reached = _col(frame, f"reached_{step}")
    event = reached & ~np.isnan(days)
    dur = np.where(event, days, frame["age"].to_numpy(dtype="float64", na_value=np.nan))
    ok = ~np.isnan(dur) & (dur >= 0) & ~(reached & np.isnan(days))
    return dur, event, ok


def _km_at(km: tuple[np.ndarray, np.ndarray, np.ndarray], rows) -> tuple[np.ndarray, np.ndarray]:
    """Durations and events of the usable leads among ``rows``."""
    dur, event, ok = (a[rows] for a in km)
    return dur[ok], event[ok]


def _blocks(*keys: np.ndarray) -> list[np.ndarray]:
    """Row positions per distinct key combination, sorted by the keys (first key first),
    each in row order."""
    if not len(keys[0]):
        return []
    order = np.lexsort(keys[::-1])  # stable
    change = np.zeros(len(order), dtype=bool)
    change[0] = True
    for k in keys:
        change[1:] |= k[order][1:] != k[order][:-1]
    return np.split(order, np.flatnonzero(change)[1:])


def _check_freq(freq: str) -> str:
    if freq not in COHORT_FREQS:
        raise ValueError(f"freq={freq!r} is not allowed; use one of {list(COHORT_FREQS)}")
    return freq


def compute_cohort_conversion(
    dataset: Dataset,
    *,
    as_of,
    freq: str = "M",
    step: str = _OPP,
    age_step_days: int = 30,
    max_age_days: int = 360,
    by: str | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Share of each lead cohort converted by age, treating unconverted leads as censored.

    A cohort is the leads created in one week, month or quarter. The **converted share
    by age a** is the Kaplan–Meier estimate ``1 - S(a)`` where the event is reaching
    ``step`` (days after creation) and a lead that has not reached it is censored at its
    age on ``as_of``: a young lead counts only for the ages it has lived through, so a
    young cohort is not mistaken for a bad one. The **naive rate** (converted so far /
    leads) is given for comparison. Ages a cohort has not reached yet are missing.

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    freq : {"W", "M", "Q"}, default "M"
    step : str, default "opportunity"
    age_step_days, max_age_days : int, default 30 and 360
        Ages reported: ``0, age_step_days, ...`` up to ``max_age_days``.
    by : str, optional
        Also split each cohort by a text column of the leads table.
    confidence : float, default 0.95

    Returns
    -------
    DataFrame
        ``group, cohort (period start), leads, converted, naive_rate, age_days, at_risk,
        converted_share, low, high``; one row per group, cohort and age.

    Raises
    ------
    InsufficientDataError
        No lead with a created date.
    ValueError
        Bad ``freq``, ``step``, ``by`` or ages.

    Examples
    --------
    >>> cc = compute_cohort_conversion(ds, as_of="2025-12-31", freq="Q")  # doctest: +SKIP
    """
    _check_freq(freq)
    if age_step_days <= 0 or max_age_days < 0:
        raise ValueError("age_step_days must be positive and max_age_days non-negative")
    built = _build(dataset, as_of)
    _check_step(built.steps, step)
    _check_by(built.frame, by)
    frame = built.frame
    dated = np.flatnonzero(frame["created_date"].notna().to_numpy())
    if not len(dated):
        raise InsufficientDataError("No lead has a created date, so there are no cohorts.")
    ages = np.arange(0, max_age_days + 1, age_step_days, dtype="float64")
    cohorts, starts = _period_codes(frame["created_date"], freq)
    codes, labels = _codes_of(built, by)
    km_in = _km_arrays(frame, step)
    reached = _col(frame, f"reached_{step}")
    parts = []
    for block in _blocks(codes[dated], cohorts[dated]):  # by group, then cohort
        rows = dated[block]
        dur, ev = _km_at(km_in, rows)
        km = kaplan_meier(dur, ev, at=ages, confidence=confidence)
        n, conv = len(rows), int(reached[rows].sum())
        parts.append(
            pd.DataFrame(
                {
                    "group": labels[codes[rows[0]]],
                    "cohort": starts[cohorts[rows[0]]],
                    "leads": n,
                    "converted": conv,
                    "naive_rate": conv / n,
                    "age_days": km["time"].astype("int64"),
                    "at_risk": km["at_risk"],
                    "converted_share": km["share"],
                    "low": km["low"],
                    "high": km["high"],
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    return out.astype({"group": "str", "leads": "int64", "converted": "int64"})


def compute_conversion_at_age(
    dataset: Dataset,
    *,
    as_of,
    age_days: int = 90,
    step: str = _OPP,
    by: str | None = "source",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Conversion to ``step`` within ``age_days`` of creation, per group, three ways.

    - **km_rate**: Kaplan–Meier share converted by ``age_days`` over all leads (young
      leads censored at their age), with a Greenwood interval;
    - **mature_rate**: among leads at least ``age_days`` old, the share that converted
      within ``age_days`` (``mature_converted / mature_leads``, Wilson interval);
    - **naive_rate**: leads converted so far (at any age) / all leads — biased low when
      many leads are young.

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    age_days : int, default 90
    step : str, default "opportunity"
    by : str or None, default "source"
    confidence : float, default 0.95

    Returns
    -------
    DataFrame
        ``group, leads, converted, naive_rate, mature_leads, mature_converted,
        mature_rate, mature_low, mature_high, km_rate, km_low, km_high``; groups by lead
        count, then ``"All"``.

    Raises
    ------
    InsufficientDataError, ValueError

    Examples
    --------
    >>> compute_conversion_at_age(ds, as_of="2025-12-31", age_days=90)  # doctest: +SKIP
    """
    if age_days < 0:
        raise ValueError(f"age_days={age_days!r} must be a non-negative number of days")
    built = _build(dataset, as_of)
    _check_step(built.steps, step)
    _check_by(built.frame, by)
    frame = built.frame
    dated = np.flatnonzero(frame["created_date"].notna().to_numpy())
    if not len(dated):
        raise InsufficientDataError("No lead has a created date, so ages are unknown.")
    km_in = _km_arrays(frame, step)
    reached = _col(frame, f"reached_{step}")
    within = reached & (_col(frame, f"days_{step}") <= age_days)
    mature = frame["age"].to_numpy(dtype="float64", na_value=np.nan) >= age_days
    splits = [_codes_of(built, by)] if by is not None else []
    splits.append((np.zeros(len(frame), dtype="int64"), [ALL]))
    rows = []
    for codes, labels in splits:
        codes = codes[dated]
        for k in _by_size(codes):  # largest group first
            sub = dated[codes == k]
            dur, ev = _km_at(km_in, sub)
            km = kaplan_meier(dur, ev, at=[age_days], confidence=confidence).iloc[0]
            old = sub[mature[sub]]
            rows.append(
                {
                    "group": labels[k],
                    "leads": len(sub),
                    "converted": int(reached[sub].sum()),
                    "mature_leads": len(old),
                    "mature_converted": int(within[old].sum()),
                    "km_rate": km["share"],
                    "km_low": km["low"],
                    "km_high": km["high"],
                }
            )
    out = pd.DataFrame(rows)
    low, high = wilson_interval(out["mature_converted"], out["mature_leads"], confidence=confidence)
    out = out.assign(
        naive_rate=out["converted"] / out["leads"],
        mature_rate=out["mature_converted"] / out["mature_leads"].where(out["mature_leads"] > 0),
        mature_low=low,
        mature_high=high,
    )
    cols = ["group", "leads", "converted", "naive_rate", "mature_leads", "mature_converted"]
    cols += ["mature_rate", "mature_low", "mature_high", "km_rate", "km_low", "km_high"]
    return out[cols].astype({"group": "str"})


# --------------------------------------------------------------------------- inverse funnel


def _unsplit_costs(ds: Dataset) -> tuple[list[str], list[str]]:
    """Filter columns the lead spend could not be split by (see ``Dataset.filter``).

    Returns those the leads were filtered by (the spend of the kept leads is unknown)
    and those that filtered only the deals (the spend is that of all leads, so cost per
    lead holds but cost per deal or win does not).
    """
    costs = ds.table("lead_costs")
    cols = list(costs.attrs.get("not_split_by", ())) if costs is not None else []
    leads = ds.leads
    by_lead = [c for c in cols if leads is not None and c in leads.columns]
    return by_lead, [c for c in cols if c not in by_lead]


def _lead_costs_by_group(ds: Dataset, by: str, start, end) -> pd.Series:
    """Spend per group in (start, end] (periods by their first day); empty without costs.

    Empty too when the leads were filtered by a column the spend does not have.
    """
    costs = ds.table("lead_costs")
    if costs is None or by != "source" or costs.empty or _unsplit_costs(ds)[0]:
        return pd.Series(dtype="float64")
    sel = costs[(costs["period"] > start) & (costs["period"] <= end)]
    return sel.groupby(sel["source"].astype("str").fillna(_MISSING))["cost"].sum()


def compute_leads_required(
    dataset: Dataset,
    *,
    as_of,
    target_date,
    target_wins: int | None = None,
    target_revenue: float | None = None,
    by: str = "source",
    mix_days: int = 365,
    horizon_days: int = 365,
    lag_quantile: float = 0.8,
    n_sims: int = 2000,
    seed: int = 0,
    confidence: float = 0.9,
) -> pd.DataFrame:
    """Leads needed for a target of wins (or revenue) by a date, in total and per group.

    Method (documented so the numbers can be checked by hand):

    - **mix**: each group's share of the leads created in the ``mix_days`` before
      ``as_of`` (the current mix); the plan keeps it.
    - **win rate** ``p`` per group: Kaplan–Meier share of its leads (all history) won
      within ``horizon_days`` of creation (young leads censored, so equal to won / leads
      when every lead is older than the horizon).
    - **value per lead**: ``p`` for a wins target; ``p x revenue per win`` (mean amount
      of the group's won lead deals) for a revenue target.
    - **leads needed** = target / (sum over groups of mix x value per lead); per group,
      mix x total. ``expected_wins`` = leads x p.
    - **uncertainty**: ``n_sims`` seeded simulations draw each group's ``p`` from a Beta
      matching its estimate and Greenwood variance, then the leads needed until the
      target is met (negative binomial in wins; for revenue, wins needed are drawn from
      the observed won amounts). ``leads_low``/``leads_high`` are the central
      ``confidence`` range (it covers both estimation and chance).
    - **enter by**: ``target_date`` minus the ``lag_quantile`` quantile of the days from
      lead creation to the won close date (won leads of the group): leads created by
      then close in time with that share of their wins. ``needed_per_week`` spreads the
      leads over the weeks from ``as_of`` to that date; ``current_per_week`` is the pace
      of the mix window.
    - **cost**: when ``lead_costs`` exist (and ``by="source"``), cost per lead = spend /
      leads in the mix window, and ``cost`` = leads needed x cost per lead.

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    target_date : str, date or Timestamp
        After ``as_of``.
    target_wins : int, optional
    target_revenue : float, optional
        Exactly one of the two, positive.
    by : str, default "source"
    mix_days, horizon_days : int, default 365
    lag_quantile : float, default 0.8
    n_sims : int, default 2000
    seed : int, default 0
    confidence : float, default 0.9

    Returns
    -------
    DataFrame
        One row per group with leads in the mix window (largest first), then ``"All"``:
        ``group, mix_share, leads_history, wins_history, win_rate, win_low, win_high,
        revenue_per_win, value_per_lead, leads_needed, leads_low, leads_high,
        expected_wins, lag_days, enter_by, needed_per_week, current_per_week,
        leads_at_current_pace (leads the current pace brings in by ``enter_by``),
        cost_per_lead, cost``. ``attrs`` holds ``target`` ("wins" or "revenue"),
        ``target_value``, ``target_date``, ``mix_days``, ``confidence``, ``lag_quantile``,
        ``has_costs`` and ``late`` (True when ``enter_by`` of the total is before
        ``as_of``: even leads entering today are late for part of the wins).

    Raises
    ------
    ValueError
        No or both targets, non-positive target, ``target_date`` not after ``as_of``,
        bad ``lag_quantile``/``confidence``/``n_sims``.
    InsufficientDataError
        No leads in the mix window, no won lead ever, or no won amounts for a revenue
        target.

    Examples
    --------
    >>> req = compute_leads_required(ds, as_of="2025-12-31", target_wins=50,
    ...                              target_date="2026-06-30")  # doctest: +SKIP
    """
    if (target_wins is None) == (target_revenue is None):
        raise ValueError("pass exactly one of target_wins or target_revenue")
    target = "wins" if target_wins is not None else "revenue"
    value = float(target_wins if target_wins is not None else target_revenue)
    if not value > 0:
        raise ValueError(f"target_{target}={value!r} must be positive")
    if not 0 < lag_quantile < 1:
        raise ValueError(f"lag_quantile={lag_quantile!r} must be between 0 and 1")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} must be between 0 and 1")
    if n_sims < 100:
        raise ValueError(f"n_sims={n_sims!r} must be at least 100")
    ts = to_timestamp(as_of)
    due = to_timestamp(target_date, name="target_date")
    if due <= ts:
        raise ValueError(f"target_date={target_date!r} must be after as_of ({ts.date()})")
    ds, _ = _snapshot(dataset, ts)
    built = _build(ds, ts)
    _check_by(built.frame, by)
    frame = built.frame
    is_dated = frame["created_date"].notna().to_numpy()
    dated = np.flatnonzero(is_dated)
    codes, labels = _codes_of(built, by)
    codes = codes[dated]
    mix_start = ts - pd.Timedelta(days=mix_days)
    recent = (frame["created_date"] > mix_start).to_numpy()[dated]
    if not recent.any():
        raise InsufficientDataError(
            f"No lead was created in the {mix_days} days before {ts.date()}, so there is no "
            "current mix; widen the date filter, raise mix_days or pick an as_of inside "
            "the data."
        )
    reached_won = _col(frame, f"reached_{_WON}")
    if not reached_won[dated].any():
        raise InsufficientDataError(
            "No lead has a won deal yet, so the leads needed per win cannot be estimated."
        )
    mix_codes = _by_size(codes[recent])  # as value_counts: largest first
    mix = pd.Series(np.bincount(codes[recent])[mix_codes], index=[labels[k] for k in mix_codes])
    groups = list(mix.index)
    opps = ds.opportunities
    lead = built.opp_lead
    won = opps["status"].eq(schema.WON).to_numpy(dtype=bool, na_value=False) & (lead >= 0)
    won &= is_dated[np.maximum(lead, 0)]  # won deals of dated leads
    won_group = np.full(len(frame), -1, dtype="int64")
    won_group[dated] = codes
    won_group = won_group[lead[won]]
    won_amount = opps["amount"].to_numpy(dtype="float64", na_value=np.nan)[won]
    km_in = _km_arrays(frame, _WON)
    days_won = _col(frame, f"days_{_WON}")
    rows = []
    amounts: dict[str, np.ndarray] = {}
    for grp, k in zip(groups, mix_codes, strict=True):
        sub = dated[codes == k]
        dur, ev = _km_at(km_in, sub)
        horizon = min(float(horizon_days), float(dur.max()) if len(dur) else 0.0)
        km = kaplan_meier(dur, ev, at=[horizon], confidence=0.95).iloc[0]
        amt = won_amount[won_group == k]
        amt = amt[~np.isnan(amt)]
        amounts[grp] = amt
        lags = pd.Series(days_won[sub[reached_won[sub]]]).dropna()
        rows.append(
            {
                "group": grp,
                "mix_share": mix[grp] / mix.sum(),
                "leads_recent": int(mix[grp]),
                "leads_history": len(sub),
                "wins_history": int(reached_won[sub].sum()),
                "win_rate": float(km["share"]) if not np.isnan(km["share"]) else 0.0,
                "win_low": km["low"],
                "win_high": km["high"],
                "revenue_per_win": amt.mean() if len(amt) else np.nan,
                "lag_days": float(lags.quantile(lag_quantile)) if len(lags) else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    if target == "revenue":
        if not any(len(a) for a in amounts.values()):
            raise InsufficientDataError(
                "No won lead deal has an amount, so leads per revenue cannot be estimated; "
                "set a target in wins instead."
            )
        out["value_per_lead"] = out["win_rate"] * out["revenue_per_win"].fillna(0.0)
    else:
        out["value_per_lead"] = out["win_rate"]
    per_lead = float((out["mix_share"] * out["value_per_lead"]).sum())
    if per_lead <= 0:
        raise InsufficientDataError(
            "The current lead mix has produced no wins within the horizon; raise horizon_days."
        )
    total_needed = value / per_lead
    out["leads_needed"] = out["mix_share"] * total_needed
    out["expected_wins"] = out["leads_needed"] * out["win_rate"]

    sims = _simulate_leads(out, amounts, target, value, n_sims, seed)
    qlo, qhi = (1 - confidence) / 2, (1 + confidence) / 2
    lo, hi = np.quantile(sims, [qlo, qhi])
    out["leads_low"] = out["mix_share"] * lo
    out["leads_high"] = out["mix_share"] * hi

    all_lags = pd.Series(days_won[dated[reached_won[dated]]]).dropna()
    total = {
        "group": ALL,
        "mix_share": 1.0,
        "leads_recent": int(mix.sum()),
        "leads_history": len(dated),
        "wins_history": int(reached_won[dated].sum()),
        "win_rate": float((out["mix_share"] * out["win_rate"]).sum()),
        "win_low": np.nan,
        "win_high": np.nan,
        "revenue_per_win": np.mean(np.concatenate(list(amounts.values())))
        if any(len(a) for a in amounts.values())
        else np.nan,
        "value_per_lead": per_lead,
        "leads_needed": total_needed,
        "expected_wins": float(out["expected_wins"].sum()),
        "leads_low": lo,
        "leads_high": hi,
        "lag_days": float(all_lags.quantile(lag_quantile)) if len(all_lags) else np.nan,
    }
    out = pd.concat([out, pd.DataFrame([total])], ignore_index=True)
    out["enter_by"] = due - pd.to_timedelta(out["lag_days"].round(), unit="D")
    weeks = (out["enter_by"] - ts).dt.days / 7
    out["needed_per_week"] = (out["leads_needed"] / weeks.where(weeks > 0)).astype("float64")
    out["current_per_week"] = out["leads_recent"] / (mix_days / 7)
    out["leads_at_current_pace"] = out["current_per_week"] * weeks.clip(lower=0)
    spend = _lead_costs_by_group(ds, by, mix_start, ts)
    if len(spend):
        cpl = out["group"].map(spend) / out["leads_recent"]
        cpl = cpl.where(out["group"] != ALL, spend.sum() / mix.sum())
        out["cost_per_lead"] = cpl.astype("float64")
        out["cost"] = out["leads_needed"] * out["cost_per_lead"]
        per_group = out["cost"].iloc[:-1]
        out.loc[out.index[-1], "cost"] = per_group.sum(min_count=1)
    else:
        out["cost_per_lead"] = np.nan
        out["cost"] = np.nan
    cols = ["group", "mix_share", "leads_history", "wins_history", "win_rate", "win_low"]
    cols += ["win_high", "revenue_per_win", "value_per_lead", "leads_needed", "leads_low"]
    cols += ["leads_high", "expected_wins", "lag_days", "enter_by", "needed_per_week"]
    cols += ["current_per_week", "leads_at_current_pace", "cost_per_lead", "cost"]
    out = out[cols].astype({"group": "str", "leads_history": "int64", "wins_history": "int64"})
    out.attrs.update(
        target=target,
        target_value=value,
        target_date=due,
        as_of=ts,
        late=bool(out["enter_by"].iloc[-1] < ts) if pd.notna(out["enter_by"].iloc[-1]) else False,
        confidence=confidence,
        lag_quantile=lag_quantile,
        has_costs=bool(len(spend)),
        mix_days=mix_days,
    )
    return out


def _beta_params(p: np.ndarray, low: np.ndarray, high: np.ndarray, n: np.ndarray):
    """Beta(a, b) with mean ``p`` and the spread of the interval (Jeffreys-like fallback)."""
    se = (high - low) / (2 * 1.96)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(se > 0, p * (1 - p) / se**2, n)
    n_eff = np.where(np.isfinite(n_eff) & (n_eff > 0), n_eff, np.maximum(n, 1))
    return p * n_eff + 0.5, (1 - p) * n_eff + 0.5


def _simulate_leads(out, amounts, target, value, n_sims, seed) -> np.ndarray:
    """Simulated total leads needed to reach the target (estimation + chance)."""
    rng = np.random.default_rng(seed)
    p = out["win_rate"].to_numpy(dtype="float64")
    a, b = _beta_params(
        p,
        out["win_low"].fillna(0).to_numpy(dtype="float64"),
        out["win_high"].fillna(0).to_numpy(dtype="float64"),
        out["leads_history"].to_numpy(dtype="float64"),
    )
    draws = np.where(p > 0, rng.beta(a, b, size=(n_sims, len(p))), 0.0)
    m = out["mix_share"].to_numpy(dtype="float64")
    p_tot = np.clip(draws @ m, 1e-9, 1.0)
    if target == "wins":
        k = np.full(n_sims, int(np.ceil(value)))
    else:
        k = _wins_for_revenue(rng, out, amounts, value, n_sims)
    return k + rng.negative_binomial(np.maximum(k, 1), p_tot)


def _wins_for_revenue(rng, out, amounts, value, n_sims) -> np.ndarray:
    """Wins needed until their amounts (drawn from the observed ones) reach ``value``."""
    w = (out["mix_share"] * out["win_rate"]).to_numpy(dtype="float64")
    keep = np.array([len(amounts[g]) > 0 for g in out["group"]]) & (w > 0)
    w = np.where(keep, w, 0.0)
    w = w / w.sum()
    pool = [amounts[g] for g in out["group"]]
    mean = float(sum(wi * a.mean() for wi, a in zip(w, pool, strict=True) if wi > 0))
    cols = int(np.ceil(value / mean * 1.5 + 10 * np.sqrt(value / mean) + 10))
    if cols * n_sims > 20_000_000:  # very large targets: normal approximation of the sum
        need = value / mean
        return np.maximum(1, np.round(rng.normal(need, np.sqrt(need), n_sims))).astype("int64")
    src = rng.choice(len(w), size=(n_sims, cols), p=w)
    draws = np.zeros((n_sims, cols))
    for i, a in enumerate(pool):
        mask = src == i
        if mask.any() and len(a):
            draws[mask] = a[rng.integers(0, len(a), int(mask.sum()))]
    reached = np.cumsum(draws, axis=1) >= value
    k = np.where(reached.any(axis=1), reached.argmax(axis=1) + 1, cols)
    return k.astype("int64")


def compute_optimal_mix(required: pd.DataFrame, *, max_scale: float = 2.0) -> pd.DataFrame:
    """The lead mix that needs the fewest leads, and the one that costs least.

    Both deliver the same expected target as the current mix (sum of leads x value per
    lead). Each group may supply at most ``max_scale`` times the leads the current mix
    asks of it (lead supply cannot grow without limit); within that, groups are filled
    greedily from the best value per lead (fewest leads) or the best value per unit
    cost (lowest cost; ``cost_per_lead / value_per_lead``), which is optimal for this
    one-constraint problem. Leads of no known group (``(missing)``) cannot be bought on
    purpose and get none; groups with no known cost come last for the lowest cost.

    Parameters
    ----------
    required : DataFrame
        From :func:`compute_leads_required`.
    max_scale : float, default 2.0
        Cap on each group's leads, as a multiple of its current-mix leads; ``inf`` for
        no cap (then the single best group takes everything).

    Returns
    -------
    DataFrame
        ``group, current_leads, current_cost, fewest_leads, fewest_leads_cost,
        lowest_cost_leads, lowest_cost_cost`` then an ``"All"`` row of totals. The cost
        columns (and ``lowest_cost_*``) are missing without lead costs. ``attrs["short"]``
        is True when the caps do not allow the target (the shortfall stays unplanned).

    Raises
    ------
    ValueError
        ``max_scale`` below 1 or a frame without the columns of
        :func:`compute_leads_required`.

    Examples
    --------
    >>> compute_optimal_mix(req, max_scale=2.0)  # doctest: +SKIP
    """
    need = ["group", "leads_needed", "value_per_lead", "cost_per_lead"]
    missing = [c for c in need if c not in required.columns]
    if missing:
        raise ValueError(f"required lacks columns {missing}; pass compute_leads_required output")
    if not max_scale >= 1:
        raise ValueError(f"max_scale={max_scale!r} must be at least 1")
    rows = required[required["group"] != ALL].reset_index(drop=True)
    value = rows["value_per_lead"].to_numpy(dtype="float64")
    current = rows["leads_needed"].to_numpy(dtype="float64")
    cpl = rows["cost_per_lead"].to_numpy(dtype="float64")
    goal = float((current * value).sum())
    cap = current * max_scale
    # leads of no known group cannot be bought on purpose: not planned in the optimal mixes
    value = np.where(rows["group"].to_numpy() == _MISSING, 0.0, value)
    short = False

    def fill(order: np.ndarray) -> np.ndarray:
        nonlocal short
        leads = np.zeros(len(rows))
        left = goal
        for i in order:
            if left <= 1e-9 * goal or not value[i] > 0:
                continue
            take = min(cap[i], left / value[i])
            leads[i] = take
            left -= take * value[i]
        short = short or left > 1e-6 * goal
        return leads

    with np.errstate(divide="ignore", invalid="ignore"):
        per_value = np.where(value > 0, 1.0 / value, np.inf)
        fewest = fill(np.argsort(per_value, kind="stable"))
        has_cost = bool(np.isfinite(cpl).any())
        # cost per unit of value; groups with no known cost come last (by value)
        cost_key = np.where(np.isfinite(cpl), cpl * per_value, np.inf)
        cheapest = fill(np.lexsort((per_value, cost_key)))
    out = pd.DataFrame(
        {
            "group": rows["group"],
            "current_leads": current,
            "current_cost": current * cpl,
            "fewest_leads": fewest,
            "fewest_leads_cost": np.where(fewest > 0, fewest * cpl, 0.0),
            "lowest_cost_leads": cheapest if has_cost else np.full(len(rows), np.nan),
            "lowest_cost_cost": np.where(cheapest > 0, cheapest * cpl, 0.0),
        }
    )
    total = out.drop(columns="group").sum(min_count=1).to_dict()
    out = pd.concat([out, pd.DataFrame([{"group": ALL, **total}])], ignore_index=True)
    out.attrs.update(short=bool(short), max_scale=max_scale)
    return out.astype({"group": "str"})


# --------------------------------------------------------------------------- cost and return


def compute_cost_return(
    dataset: Dataset,
    *,
    as_of,
    freq: str | None = "Q",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Lead spend against what the leads yielded, per source (and period).

    Leads are attributed to the period they were created in, spend to its period; the
    wins and revenue are those of the leads created in the period (so they keep coming
    in for recent periods — read them with the cohort curves).

    - **cost per lead** = spend / leads; **per opportunity** = spend / leads that became
      an opportunity; **per win** = spend / leads with a won deal, its interval from the
      Wilson interval of the win rate (``cost_per_lead / win_high`` to ``/ win_low``);
    - **revenue per cost** = revenue of the won deals of those leads / spend.

    On a :meth:`~pipeline_lib.dataset.Dataset.filter`-ed dataset the spend follows the
    source and date filters. A filter on a deal-only column (``team``, ``product``…)
    cannot split the spend: cost and cost per lead are then those of all leads, and the
    per-opportunity, per-win and return figures are missing (``attrs["notes"]`` says
    why); a filter on another lead column makes the spend of the leads unknown.

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    freq : {"W", "M", "Q"} or None, default "Q"
        Period length; ``None`` for one row per source over the whole history.
    confidence : float, default 0.95

    Returns
    -------
    DataFrame
        ``source, period, cost, leads, opportunities, wins, revenue, cost_per_lead,
        cost_per_opportunity, cost_per_win, cpw_low, cpw_high, revenue_per_cost``;
        ``period`` is the period start (missing when ``freq`` is None); an ``"All"``
        source row per period sums the sources. ``attrs["notes"]`` says which cost
        figures a filter left out.

    Raises
    ------
    InsufficientDataError
        No leads table, no ``lead_costs`` table, or leads filtered by a column the
        spend is not recorded by.

    Examples
    --------
    >>> compute_cost_return(ds, as_of="2025-12-31", freq=None)  # doctest: +SKIP
    """
    if freq is not None:
        _check_freq(freq)
    ds, ts = _snapshot(dataset, as_of)
    built = _build(ds, ts)
    costs = ds.table("lead_costs")
    if costs is None:
        raise InsufficientDataError(
            "There is no lead_costs table (spend per period and source), so cost per lead, "
            "per win and return on spend cannot be computed; add one to the source config."
        )
    if costs.empty:
        raise InsufficientDataError(
            f"No lead spend is recorded on or before {ts.date()}, so cost per lead, per win "
            "and return on spend cannot be computed; choose a later as_of."
        )
    by_lead, by_deal = _unsplit_costs(ds)
    if by_lead:
        raise InsufficientDataError(
            f"The leads are filtered by {', '.join(by_lead)} but lead spend is recorded per "
            "source and period only, so the spend of the selected leads is unknown and cost "
            f"per lead, per win and return on spend cannot be computed; remove the "
            f"{', '.join(by_lead)} filter (or add that column to the lead_costs table)."
        )
    frame = built.frame
    dated = frame["created_date"].notna().to_numpy()
    codes, labels = _codes_of(built, "source")
    if freq is None:
        period_codes = np.zeros(len(frame), dtype="int64")
        periods = pd.DatetimeIndex([pd.NaT], dtype="datetime64[ns]")
        cost_period = pd.Series(pd.NaT, index=costs.index, dtype="datetime64[ns]")
    else:
        period_codes, periods = _period_codes(frame["created_date"], freq)
        cost_period = costs["period"].dt.to_period(freq).dt.start_time
    counts = pd.DataFrame(
        {
            "opportunities": _col(frame, f"reached_{_OPP}", dated),
            "wins": _col(frame, f"reached_{_WON}", dated),
            "revenue": _col(frame, "revenue", dated),
        }
    )
    # one integer key per (source, period); then the few groups get their labels
    key = codes[dated] * len(periods) + period_codes[dated]
    agg = counts.groupby(key).agg(
        leads=("opportunities", "size"),
        opportunities=("opportunities", "sum"),
        wins=("wins", "sum"),
        revenue=("revenue", "sum"),
    )
    key = agg.index.to_numpy()
    source = pd.Series(np.asarray(labels, dtype=object)[key // len(periods)], dtype="str")
    period = pd.Series(periods.take(key % len(periods)))
    agg = (
        agg.reset_index(drop=True)
        .groupby([source.rename("source"), period.rename("period")], dropna=False)
        .sum()
    )  # one row per group: the same numbers, indexed as a groupby on the labels
    c_src = costs["source"].astype("str").fillna(_MISSING).rename("source")
    spend = costs.groupby([c_src, cost_period.rename("period")], dropna=False)["cost"].sum()
    out = agg.join(spend.rename("cost"), how="outer").reset_index()
    out[["leads", "opportunities", "wins"]] = out[["leads", "opportunities", "wins"]].fillna(0)
    out["revenue"] = out["revenue"].fillna(0.0)
    tot = out.groupby("period", dropna=False)[["cost", "leads", "opportunities", "wins"]].sum(
        min_count=1
    )
    tot["revenue"] = out.groupby("period", dropna=False)["revenue"].sum()
    tot = tot.reset_index().assign(source=ALL)
    out = pd.concat([out, tot], ignore_index=True)
    out = out.astype({"leads": "int64", "opportunities": "int64", "wins": "int64"})
    low, high = wilson_interval(out["wins"], out["leads"], confidence=confidence)
    cost = out["cost"]
    with np.errstate(divide="ignore", invalid="ignore"):
        cpl = cost / out["leads"].where(out["leads"] > 0)
        out = out.assign(
            cost_per_lead=cpl,
            cost_per_opportunity=cost / out["opportunities"].where(out["opportunities"] > 0),
            cost_per_win=cost / out["wins"].where(out["wins"] > 0),
            cpw_low=cpl / pd.Series(high, index=out.index).where(lambda s: s > 0),
            cpw_high=cpl / pd.Series(low, index=out.index).where(lambda s: s > 0),
            revenue_per_cost=out["revenue"] / cost.where(cost > 0),
        )
    notes: tuple[str, ...] = ()
    if by_deal:  # all leads' spend against the selected deals only: no per-deal cost
        per_deal = ["cost_per_opportunity", "cost_per_win", "cpw_low", "cpw_high"]
        out[[*per_deal, "revenue_per_cost"]] = np.nan
        notes = (
            f"The deals are filtered by {', '.join(by_deal)}, which lead spend is not "
            "recorded by: spend and cost per lead are those of all leads; cost per "
            "opportunity, per win and return on spend are left out.",
        )
    out["_all"] = out["source"] == ALL
    out = out.sort_values(["period", "_all", "source"], kind="stable", na_position="first")
    cols = ["source", "period", "cost", "leads", "opportunities", "wins", "revenue"]
    cols += ["cost_per_lead", "cost_per_opportunity", "cost_per_win", "cpw_low", "cpw_high"]
    cols += ["revenue_per_cost"]
    out = out[cols].reset_index(drop=True).astype({"source": "str"})
    out.attrs["notes"] = notes
    return out


# --------------------------------------------------------------------------- open leads


def compute_open_leads(
    dataset: Dataset,
    *,
    as_of,
    step: str = _OPP,
    by: str = "source",
    horizon_days: int = 365,
    stale_quantile: float = 0.9,
    min_converted: int = 5,
) -> pd.DataFrame:
    """Leads that have not reached ``step`` yet, aged against their group's usual lag.

    - **usual_days** / **stale_after_days**: median and ``stale_quantile`` quantile of
      the days to ``step`` of the group's converted leads (the overall ones when the
      group has fewer than ``min_converted``).
    - **state**: ``fresh`` (age <= usual), ``ageing`` (<= stale_after), ``stale``
      (older than the usual time to convert but younger than ``horizon_days``: still a
      chance, worth a follow-up) or ``expired`` (older than the horizon).
    - **p_convert**: chance the lead still reaches ``step`` within the horizon given it
      has not by its age ``a``: ``(F(H) - F(a)) / (1 - F(a))`` with ``F`` the group's
      Kaplan–Meier conversion curve; **p_win** = p_convert x the group's opportunity
      win rate (won / closed deals from its leads) — for ``step="won"``, p_convert.

    Parameters
    ----------
    dataset : Dataset
    as_of : str, date or Timestamp
    step : str, default "opportunity"
    by : str, default "source"
    horizon_days : int, default 365
    stale_quantile : float, default 0.9
    min_converted : int, default 5

    Returns
    -------
    DataFrame
        ``lead_id, group, created_date, age_days, last_step, usual_days,
        stale_after_days, state, p_convert, p_win``, highest ``p_win`` first.

    Raises
    ------
    InsufficientDataError
        No lead reached ``step`` (no lag to compare with).

    Examples
    --------
    >>> compute_open_leads(ds, as_of="2025-12-31").query("state == 'stale'")  # doctest: +SKIP
    """
    if not 0 < stale_quantile < 1:
        raise ValueError(f"stale_quantile={stale_quantile!r} must be between 0 and 1")
    if horizon_days <= 0:
        raise ValueError(f"horizon_days={horizon_days!r} must be positive")
    ds, ts = _snapshot(dataset, as_of)
    built = _build(ds, ts)
    _check_step(built.steps, step)
    _check_by(built.frame, by)
    frame = built.frame
    is_dated = frame["created_date"].notna().to_numpy()
    dated = np.flatnonzero(is_dated)
    reached = _col(frame, f"reached_{step}")
    if not reached[dated].any():
        raise InsufficientDataError(
            f"No lead has reached {step_label(step)} yet, so there is no usual time to "
            "convert to compare open leads with."
        )
    days = _col(frame, f"days_{step}")
    all_lags = pd.Series(days[dated[reached[dated]]]).dropna()
    codes_all, labels = _codes_of(built, by)
    codes = codes_all[dated]
    opps = ds.opportunities
    lead = built.opp_lead
    status = opps["status"]
    closed = (status.eq(schema.WON) | status.eq(schema.LOST)).to_numpy(dtype=bool, na_value=False)
    closed = closed & (lead >= 0) & is_dated[np.maximum(lead, 0)]  # closed deals of dated leads
    closed_group = codes_all[lead[closed]]
    closed_won = status.eq(schema.WON).to_numpy(dtype=bool, na_value=False)[closed]
    n_closed = np.bincount(closed_group, minlength=len(labels))
    n_won = np.bincount(closed_group[closed_won], minlength=len(labels))
    overall_win = float(closed_won.sum() / len(closed_won)) if len(closed_won) else np.nan
    km_in = _km_arrays(frame, step)
    age = frame["age"].to_numpy(dtype="float64", na_value=np.nan)
    steps = built.steps
    upto = steps[: steps.index(step)]
    step_names = [step_label(s) for s in upto]
    last_step = np.zeros(len(frame), dtype="int64")  # the lead's last step reached
    for i, s in enumerate(upto[1:], start=1):
        last_step[_col(frame, f"reached_{s}")] = i
    parts: list[tuple] = []
    usual_days, stale_days = np.zeros(len(labels)), np.zeros(len(labels))
    win_rate = np.zeros(len(labels))
    for k in pd.unique(codes):  # groups in order of appearance
        sub = dated[codes == k]
        lags = pd.Series(days[sub[reached[sub]]]).dropna()
        ref = lags if len(lags) >= min_converted else all_lags
        usual, stale_after = float(ref.median()), float(ref.quantile(stale_quantile))
        usual_days[k], stale_days[k] = usual, stale_after
        dur, ev = _km_at(km_in, sub)
        open_ = sub[~reached[sub]]
        if not len(open_):
            continue
        ages = age[open_]
        distinct, at = np.unique(ages, return_inverse=True)  # the curve at each distinct age
        f_age = kaplan_meier(dur, ev, at=distinct)["share"].to_numpy()[at]
        f_h = kaplan_meier(dur, ev, at=[min(horizon_days, dur.max())])["share"].iloc[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            p_conv = np.where(ages >= horizon_days, 0.0, np.clip((f_h - f_age) / (1 - f_age), 0, 1))
        p_conv = np.nan_to_num(p_conv, nan=0.0)
        win = 1.0 if step == _WON else (n_won[k] / n_closed[k] if n_closed[k] else overall_win)
        state = np.select([ages <= usual, ages <= stale_after, ages <= horizon_days], [0, 1, 2], 3)
        win_rate[k] = 0.0 if np.isnan(win) else float(win)
        parts.append((k, open_, state.astype("int8"), p_conv))
    cols = ["lead_id", "group", "created_date", "age_days", "last_step", "usual_days"]
    cols += ["stale_after_days", "state", "p_convert", "p_win"]
    if not parts:
        return pd.DataFrame({c: [] for c in cols})
    group = np.repeat([p[0] for p in parts], [len(p[1]) for p in parts])
    rows, state, p_conv = (np.concatenate(a) for a in list(zip(*parts, strict=True))[1:])
    p_win = p_conv * win_rate[group]
    age_days = age[rows].astype("int64")
    order = np.lexsort((age_days, -p_win))  # highest p_win first, then youngest; stable
    rows, group = rows[order], group[order]
    out = pd.DataFrame(
        {
            "lead_id": frame["lead_id"].take(rows).reset_index(drop=True),
            "group": _labels_at(labels, group),
            "created_date": _col(frame, "created_date", rows),
            "age_days": age_days[order],
            "last_step": _labels_at(step_names, last_step[rows]),
            "usual_days": usual_days[group],
            "stale_after_days": stale_days[group],
            "state": _labels_at(["fresh", "ageing", "stale", "expired"], state[order]),
            "p_convert": p_conv[order],
            "p_win": p_win[order],
        },
        copy=False,  # fresh arrays
    )
    return out[cols].astype({"lead_id": "str", "group": "str", "state": "str", "last_step": "str"})


def compute_open_lead_summary(open_leads: pd.DataFrame, *, confidence: float = 0.95):
    """Open leads per group and state, and the wins expected from them.

    **expected_wins** = sum of ``p_win``; its interval is the normal approximation of a
    sum of independent chances (variance sum ``p (1 - p)``), clipped at 0.

    Parameters
    ----------
    open_leads : DataFrame
        From :func:`compute_open_leads`.
    confidence : float, default 0.95

    Returns
    -------
    DataFrame
        ``group, open_leads, fresh, ageing, stale, expired, expected_opportunities,
        expected_wins, wins_low, wins_high``; groups by open leads, then ``"All"``.

    Examples
    --------
    >>> compute_open_lead_summary(compute_open_leads(ds, as_of="2025-12-31"))  # doctest: +SKIP
    """
    from scipy import stats as _st

    need = ["group", "state", "p_convert", "p_win"]
    missing = [c for c in need if c not in open_leads.columns]
    if missing:
        raise ValueError(f"open_leads lacks columns {missing}; pass compute_open_leads output")
    z = _st.norm.ppf(0.5 + confidence / 2)
    p_win = open_leads["p_win"].to_numpy()
    var = (open_leads["p_win"] * (1 - open_leads["p_win"])).to_numpy()
    p_convert = open_leads["p_convert"].to_numpy()
    states = ["fresh", "ageing", "stale", "expired"]
    state = index_in(open_leads["state"], pd.Index(states))

    def summarise(rows) -> dict:
        in_rows = state[rows]
        counts = np.bincount(in_rows[in_rows >= 0], minlength=len(states))
        ew = float(pd.Series(p_win[rows]).sum())
        sd = float(np.sqrt(pd.Series(var[rows]).sum()))
        return {
            "open_leads": len(p_win[rows]),
            **{s: int(counts[i]) for i, s in enumerate(states)},
            "expected_opportunities": float(pd.Series(p_convert[rows]).sum()),
            "expected_wins": ew,
            "wins_low": max(0.0, ew - z * sd),
            "wins_high": ew + z * sd,
        }

    codes, groups = pd.factorize(open_leads["group"])  # in order of appearance
    rows = [{"group": grp, **summarise(codes == k)} for k, grp in enumerate(groups)]
    rows.sort(key=lambda r: -r["open_leads"])
    rows.append({"group": ALL, **summarise(slice(None))})
    return pd.DataFrame(rows).astype({"group": "str"})
