"""Pipeline movement: the exact pipeline-flow waterfall, pushed deals and push rates.

All need the ``stage_history`` table.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .. import schema
from ..dataset import Dataset, to_timestamp
from ..errors import InsufficientDataError
from ..memo import memoized
from ..parsing import _has_duplicates
from ..sources import _hist_positions, _remember_positions
from ..stats import wilson_interval
from ._common import (
    PERIODS,
    _bounds,
    _check_choice,
    _days,
    _history_index,
    _in_window,
    _require_history,
    _snap,
)

__all__ = ["compute_pipeline_flow", "compute_pushed_deals", "compute_push_rate"]


#: The opportunity and stage-history columns the pipeline flow's snapshots read.
_FLOW_COLUMNS = ("stage", "status", "created_date", "close_date", "amount")
_FLOW_HISTORY = ("stage", "entered_at", "amount", "close_date")


@memoized(copy=False)
def _flow_base(ds: Dataset) -> tuple[Dataset, np.ndarray] | None:
    """``ds`` cut to what the flow reads, and each history row's deal position.

    Snapshots of the cut Dataset give the same stage, status, dates and amounts as
    snapshots of ``ds`` at a fraction of the cost: only the columns of
    :data:`_FLOW_COLUMNS` / :data:`_FLOW_HISTORY`, no leads, and as
    ``opportunity_id`` each deal's *position* in ``ds.opportunities`` (in the history:
    the position of the row's deal, -1 for none), so the snapshots carry integers
    instead of millions of id texts and line up without looking ids up. ``None`` when
    the opportunity ids repeat or are missing (the flow then aligns snapshots by id).
    """
    opps, hist = ds.opportunities, ds.stage_history
    ids = opps["opportunity_id"]
    if ids.isna().any() or _has_duplicates(ids):
        return None
    hx = _history_index(ds)
    # the history index already holds each row's deal position when it kept the rows
    pos = hx["row"] if hx["as_table"] else _hist_positions(hist, opps)
    narrow = opps[[c for c in _FLOW_COLUMNS if c in opps]].assign(
        opportunity_id=np.arange(len(opps), dtype="int64")
    )
    narrow_hist = hist[[c for c in _FLOW_HISTORY if c in hist]].assign(opportunity_id=pos)
    _remember_positions(narrow_hist, narrow, pos)  # the same look-up, already done
    tables = {"opportunities": narrow, "stage_history": narrow_hist}
    return replace(ds, tables=tables), pos


def _first_amounts(ds: Dataset, ids: pd.Index, rows=None) -> np.ndarray:
    """Per deal of ``ids``: the amount of its earliest stage-history row with an amount.

    ``rows``, when given, is each stage-history row's position in ``ids`` (-1: none),
    saving the look-up of every id.
    """
    out = np.full(len(ids), np.nan)
    hist = ds.stage_history
    if hist is None or "amount" not in hist or not len(ids):
        return out
    if rows is None:
        codes, uniques = pd.factorize(hist["opportunity_id"])
        row = np.append(ids.get_indexer(uniques), -1)[codes]
    else:
        row = rows
    amount = hist["amount"].to_numpy("float64", na_value=np.nan)
    when = _days(hist["entered_at"])
    when = np.where(np.isnan(when), np.inf, when)  # undated rows last, as in a sort
    keep = np.flatnonzero((row >= 0) & ~np.isnan(amount))
    # per deal the earliest row, file order on ties: two group minima instead of a sort
    r, w = row[keep], when[keep]
    earliest = np.full(len(ids), np.inf)
    np.minimum.at(earliest, r, w)
    top = w == earliest[r]
    pick = np.full(len(ids), len(amount), dtype=np.int64)  # len(amount): no such row
    np.minimum.at(pick, r[top], keep[top])
    found = pick < len(amount)
    out[found] = amount[pick[found]]
    return out


@memoized(dates=("as_of", "start", "end", "horizon"))
def compute_pipeline_flow(ds: Dataset, *, as_of, start, end, horizon="end") -> pd.DataFrame:
    """How the open pipeline moved from ``start`` to ``end``: a waterfall whose identity holds.

    The **pipeline on day d**, P(d), is the set of deals open at the end of *d* (created by
    *d*, not closed by *d*) whose expected close date as known on *d* is on or before the
    horizon date *H* (``horizon="end"``: *H* = ``end``, i.e. the pipeline due by the end of
    the window; a date: that date; ``None``: every open deal). Amounts and close dates "as
    known on d" come from the stage history (:meth:`Dataset.snapshot`). Every deal that
    counts falls in exactly one entry and one exit class:

    - **start**: deals in P(start), at their amount on ``start``.
    - **created**: deals created in (start, end] that are in P(end) or closed in
      (start, end], at their first recorded amount (stage history; else current amount).
    - **pulled in**: deals open on ``start`` but not in P(start) (expected after *H*) that
      are in P(end) or closed in (start, end], at their amount on ``start``.
    - **won** / **lost**: counted deals closed won / lost in (start, end], at their final
      amount (shown negative).
    - **pushed out**: counted deals still open on ``end`` but not in P(end) (their expected
      close date moved past *H*), at their amount on ``end`` (negative).
    - **amount changes**: for every counted deal, its exit amount (final, or on ``end``)
      minus its entry amount.
    - **end**: deals in P(end), at their amount on ``end``.

    Hence exactly ``end = start + created + pulled in - won - lost - pushed out + amount
    changes`` (for amounts; for deal counts the same without amount changes). Created
    deals expected after *H* and still open, and pulled-in deals pushed out again, never
    enter the flow. Missing amounts count as 0 (``attrs["missing_amount"]``).

    Parameters
    ----------
    ds : Dataset
        Needs ``stage_history`` (for amounts and close dates as they were).
    as_of : str, date or Timestamp
        Data as known then; ``end`` must not be later.
    start, end : date-like
        The window (``start`` < ``end``).
    horizon : "end", date-like or None, default "end"
        Expected-close cut-off *H* defining the pipeline (must not precede ``end``).

    Returns
    -------
    DataFrame
        Rows ``start, created, pulled in, won, lost, pushed out, amount changes, end``:
        ``step, deals, amount, kind`` (``total`` / ``in`` / ``out`` / ``change``),
        ``definition``. Outflows are negative; ``attrs`` hold ``start``, ``end``,
        ``horizon``, ``missing_amount``.

    Raises
    ------
    InsufficientDataError
        Without a stage history.
    ValueError
        For dates out of order or after ``as_of``, or a horizon before ``end``.

    Examples
    --------
    >>> flow = compute_pipeline_flow(ds, as_of="2025-12-31", start="2025-09-30",
    ...                              end="2025-12-31")  # doctest: +SKIP
    """
    ds, ts = _snap(ds, as_of)
    _require_history(ds, "The pipeline flow")
    s = to_timestamp(start, name="start")
    e = to_timestamp(end, name="end")
    if e <= s:
        raise ValueError(f"end={e.date()} must be after start={s.date()}")
    if e > ts:
        raise ValueError(f"end={e.date()} is after as_of={ts.date()}: the future is unknown")
    if horizon is None:
        h = None
    elif isinstance(horizon, str) and horizon == "end":
        h = e
    else:
        h = to_timestamp(horizon, name="horizon")
        if h < e:
            raise ValueError(f"horizon={h.date()} must not be before end={e.date()}")

    base = _flow_base(ds)

    def _state(day):
        snap = (ds if base is None else base[0]).snapshot(day)
        o = snap.opportunities.set_index("opportunity_id")
        is_open = o["status"].eq(schema.OPEN)
        due = is_open if h is None else is_open & ~(o["close_date"] > h)
        return o, is_open, due

    o0, open0, in0 = _state(s)
    o1, open1, in1 = _state(e)
    ids = o1.index
    if base is None:
        open0 = open0.reindex(ids, fill_value=False)
        in0 = in0.reindex(ids, fill_value=False)
        amt0 = o0["amount"].reindex(ids)
        hist_rows = None
    else:  # align by position in ds.opportunities (ids are unique there)
        n_opps = len(ds.opportunities)
        row1 = o1.index.to_numpy()  # positions in ds.opportunities
        at0 = np.full(n_opps, -1, dtype="int64")
        at0[o0.index.to_numpy()] = np.arange(len(o0))
        at0 = at0[row1]  # row of o0 of each deal of o1, -1 when it did not exist yet
        has0 = at0 >= 0

        def _on_start(values, missing):
            out = np.full(len(ids), missing, dtype=values.dtype)
            out[has0] = values[at0[has0]]
            return pd.Series(out, index=ids)

        open0 = _on_start(open0.to_numpy(), False)
        in0 = _on_start(in0.to_numpy(), False)
        amt0 = _on_start(o0["amount"].to_numpy("float64", na_value=np.nan), np.nan)
        at1 = np.full(n_opps + 1, -1, dtype="int64")  # slot n_opps: no deal
        at1[row1] = np.arange(len(o1))
        pos = base[1]
        hist_rows = at1[np.where(pos >= 0, pos, n_opps)]
    amt1 = o1["amount"]
    closed = o1["status"].isin([schema.WON, schema.LOST]) & (o1["close_date"] > s)
    won = closed & o1["status"].eq(schema.WON)
    lost = closed & o1["status"].eq(schema.LOST)
    stays = in1
    created = ~open0 & ~in0 & (o1["created_date"] > s) & (stays | closed)
    pulled = open0 & ~in0 & (stays | closed)
    counted = in0 | created | pulled
    pushed = counted & open1 & ~in1
    first_amt = _first_amounts(ds, ids, hist_rows)
    entry = np.zeros(len(ids))  # on arrays: the masks all share the index `ids`
    at_start = (in0 | pulled).to_numpy(bool)
    entry[at_start] = amt0.to_numpy("float64", na_value=np.nan)[at_start]
    new = created.to_numpy(bool)
    first_new = first_amt[new]
    amt1_new = amt1.to_numpy("float64", na_value=np.nan)[new]
    entry[new] = np.where(np.isnan(first_new), amt1_new, first_new)
    entry = pd.Series(entry, index=ids)
    exit_ = amt1.where(counted, np.nan)
    missing = int((counted & (entry.isna() | exit_.isna())).sum())
    entry, exit_ = entry.fillna(0.0), exit_.fillna(0.0)

    def _sum(mask, values):
        return float(values[mask].sum()) + 0.0

    due = "" if h is None else f", expected to close by {h.date()}"

    rows = [
        ("start", int(in0.sum()), _sum(in0, entry), "total", f"open on {s.date()}{due}"),
        ("created", int(created.sum()), _sum(created, entry), "in", "created in the window"),
        ("pulled in", int(pulled.sum()), _sum(pulled, entry), "in", "close date moved in"),
        ("won", -int((won & counted).sum()), -_sum(won & counted, exit_), "out", "closed won"),
        ("lost", -int((lost & counted).sum()), -_sum(lost & counted, exit_), "out", "closed lost"),
        ("pushed out", -int(pushed.sum()), -_sum(pushed, exit_), "out", "close date moved out"),
        (
            "amount changes",
            0,
            _sum(counted, exit_ - entry),
            "change",
            "exit amount minus entry amount",
        ),
        ("end", int(in1.sum()), _sum(in1, exit_), "total", f"open on {e.date()}{due}"),
    ]
    out = pd.DataFrame(rows, columns=["step", "deals", "amount", "kind", "definition"])
    out["amount"] = out["amount"] + 0.0  # no negative zeros
    out.attrs.update(start=s, end=e, horizon=h, missing_amount=missing)
    return out


# --------------------------------------------------------------------------- pushes, stalls


@memoized(copy=False)
def _push_events(ds: Dataset) -> pd.DataFrame:
    """One row per push: ``opportunity_id, pushed_at, from_date, to_date, days``."""
    return _push_table(ds)[0]


def _push_rows(ds: Dataset) -> np.ndarray:
    """Per row of :func:`_push_events`: its deal's row in ``ds.opportunities`` (-1: none)."""
    return _push_table(ds)[1]


@memoized(copy=False)
def _push_table(ds: Dataset) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`_push_events` and :func:`_push_rows`, computed together once."""
    hist = _require_history(ds, "Pushed deals")
    if "close_date" not in hist or hist["close_date"].isna().all():
        raise InsufficientDataError(
            "Pushed deals need the expected close date recorded at each stage change "
            "(stage_history.close_date); map that column in the source config"
        )
    hx = _history_index(ds)
    deal, entered, close = hx["deal"], hx["entered"], hx["close"]
    prev = np.where(
        hx["first"], np.datetime64("NaT"), np.insert(close[:-1], 0, np.datetime64("NaT"))
    )
    valid = ~np.isnat(close) & ~np.isnat(prev)
    moved = np.zeros(len(close), "int64")
    moved[valid] = (close[valid] - prev[valid]) // np.timedelta64(1, "D")
    push = (hx["stage_open"] >= 0) & valid & (moved > 0)
    events = pd.DataFrame(
        {
            "opportunity_id": pd.Series(
                hx["deal_names"].to_numpy()[deal[push]], dtype=hx["id_dtype"]
            ),
            "pushed_at": entered[push],
            "from_date": prev[push],
            "to_date": close[push],
            "days": moved[push].astype("int64"),
        }
    )
    return events, hx["row"][push]


@memoized(dates=("as_of", "start", "end"))
def compute_pushed_deals(ds: Dataset, *, as_of, start=None, end=None) -> pd.DataFrame:
    """Deals whose expected close date moved later (a **push**), with owner and value.

    A push is a stage-history row entering an *open* stage whose ``close_date`` is later
    than the deal's previous row's ``close_date`` (close dates are known only at stage
    changes; the closing row holds the actual close date and is not a push). With
    ``start``/``end`` only pushes recorded in that inclusive window count.

    Parameters
    ----------
    ds : Dataset
        Needs ``stage_history`` with ``close_date``.
    as_of : str, date or Timestamp
    start, end : date-like, optional

    Returns
    -------
    DataFrame
        One row per pushed deal, largest amount first: ``opportunity_id, name, owner,
        team, product, stage, status, amount, pushes, days_pushed, first_expected,
        expected_close, last_push`` (``first_expected``: the expected close before its
        first push in the window; ``expected_close``: its close date on ``as_of``).
        Columns the opportunities lack are left out.

    Raises
    ------
    InsufficientDataError
        Without a stage history or its close dates.
    """
    ds, ts = _snap(ds, as_of)
    lo, hi = _bounds(start, end, ts)
    ev = _push_events(ds)
    ev = ev[_in_window(_days(ev["pushed_at"]), lo, hi)]
    agg = (
        ev.groupby("opportunity_id")
        .agg(
            pushes=("days", "size"),
            days_pushed=("days", "sum"),
            first_expected=("from_date", "first"),
            last_push=("pushed_at", "max"),
        )
        .reset_index()
    )
    info = [
        c
        for c in ("opportunity_id", "name", "owner", "team", "product", "stage", "status")
        if c in ds.opportunities
    ]
    opps = ds.opportunities[[*info, "amount", "close_date"]].rename(
        columns={"close_date": "expected_close"}
    )
    out = opps.merge(agg, on="opportunity_id", how="inner")
    cols = [*info, "amount", "pushes", "days_pushed", "first_expected", "expected_close"]
    out = out[[*cols, "last_push"]]
    return out.sort_values(["amount", "days_pushed"], ascending=False, ignore_index=True)


@memoized()
def compute_push_rate(ds: Dataset, *, as_of, period: str = "quarter") -> pd.DataFrame:
    """Share of deals open during each period that were pushed at least once in it.

    **Open during the period**: created by the period's end (or with no created date)
    and not closed before its start. **Pushed**: at least one push (see
    :func:`compute_pushed_deals`) recorded in the period. Push rate = pushed / open during
    the period, with a 95 % Wilson interval.

    Returns
    -------
    DataFrame
        ``period, period_start, open_deals, pushed, push_rate, ci_low, ci_high, pushes,
        mean_days_pushed``, one row per period up to ``as_of``'s.

    Raises
    ------
    InsufficientDataError
        Without a stage history or its close dates.
    ValueError
        For a bad ``period``.
    """
    _check_choice("period", period, PERIODS)
    ds, ts = _snap(ds, as_of)
    ev = _push_events(ds)
    opps = ds.opportunities
    freq = PERIODS[period]
    first = opps["created_date"].min()
    if pd.isna(first):
        raise InsufficientDataError("no opportunity has a created date")
    periods = pd.period_range(pd.Period(first, freq), pd.Period(ts, freq), freq=freq)
    created = _days(opps["created_date"])
    closed_at = np.where(opps["status"].eq(schema.OPEN), np.inf, _days(opps["close_date"]))
    ev_period = ev["pushed_at"].dt.to_period(freq)
    ev_row = _push_rows(ds)  # each push's row in opps
    rows = []
    for p in periods:
        p0, p1 = _days([p.start_time])[0], _days([p.end_time.normalize()])[0]
        open_during = ~(created > p1) & ~(closed_at < p0)
        in_p = (ev_period == p).to_numpy()
        e = ev[in_p]
        pushed = np.zeros(len(opps), bool)
        rows_p = ev_row[in_p]
        pushed[rows_p[rows_p >= 0]] = True
        pushed &= open_during
        rows.append(
            {
                "period": str(p),
                "period_start": p.start_time,
                "open_deals": int(open_during.sum()),
                "pushed": int(pushed.sum()),
                "pushes": len(e),
                "mean_days_pushed": float(e["days"].mean()) if len(e) else np.nan,
            }
        )
    out = pd.DataFrame(rows)
    low, high = wilson_interval(out["pushed"], out["open_deals"])
    out.insert(4, "push_rate", out["pushed"] / out["open_deals"].where(out["open_deals"] > 0))
    out.insert(5, "ci_low", low)
    out.insert(6, "ci_high", high)
    return out
