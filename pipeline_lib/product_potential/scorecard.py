"""Scorecard per product or any grouping column, and the columns it can be grouped by.

:func:`compute_scorecard` counts, per group, what was created, won and lost in a period,
the won revenue, discount, cycle and the open pipeline weighted by win rates learned from
history (:mod:`.weights`); it compares with the previous period.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema
from .._arrowtools import index_in
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..stats import wilson_interval
from ._common import (
    _check_choice,
    _codes,
    _has_values,
    _per_group,
    _positive,
    _prepare,
    _status,
    _window,
)
from .discounts import _deal_discounts
from .weights import WEIGHTS, _weighted_pipeline

__all__ = ["NONE_LABEL", "group_columns", "compute_win_rates", "compute_scorecard"]

#: Label of deals whose grouping value is missing.
NONE_LABEL = "(none)"


def group_columns(data: Dataset) -> list[str]:
    """Columns a scorecard can be grouped by on this dataset.

    Parameters
    ----------
    data : Dataset

    Returns
    -------
    list of str
        Text columns of the opportunities among ``product, team, owner, source``, then the
        text columns of the products table (e.g. ``family``) and of the accounts table
        (e.g. ``industry``, ``region``) that have values. Any other opportunities column
        can be passed to ``group_by`` too.

    Examples
    --------
    >>> group_columns(ds)  # doctest: +SKIP
    ['product', 'team', 'owner', 'source', 'family', 'industry', 'region']
    """
    opps = data.opportunities
    out = [c for c in ("product", "team", "owner", "source") if _has_values(opps, c)]
    for table, key in (("products", "product"), ("accounts", "account")):
        frame = data.table(table)
        if frame is None or not _has_values(opps, key):
            continue
        for col in frame.columns:
            if col in (key, "_row") or col in out or col in opps:
                continue
            if pd.api.types.is_string_dtype(frame[col]) and frame[col].notna().any():
                out.append(col)
    return out


def _group_labels(
    ds: Dataset,
    opps: pd.DataFrame,
    column: str,
    rows: np.ndarray | None = None,
    *,
    param: str = "group_by",
) -> pd.Series:
    """The grouping value of every deal (``NONE_LABEL`` where missing), or of the deals
    at positions ``rows`` only (the checks still look at every deal); errors name the
    parameter ``param``."""
    if not isinstance(column, str) or not column:
        raise ValueError(f"{param}={column!r} must be a column name")
    if column in opps:
        labels = opps[column]
        if labels.isna().all():
            raise InsufficientDataError(
                f"the opportunities' '{column}' column is empty; group by another column "
                f"({', '.join(group_columns(ds)) or 'none available'})"
            )
        if rows is not None:
            labels = labels.iloc[rows]
    else:
        labels = None
        for table, key in (("products", "product"), ("accounts", "account")):
            frame = ds.table(table)
            if frame is not None and column in frame and column != key:
                if not _has_values(opps, key):
                    raise InsufficientDataError(
                        f"grouping by '{column}' ({table} table) needs the opportunities' "
                        f"'{key}' column, which is missing or empty"
                    )
                lookup = frame.dropna(subset=[key]).drop_duplicates(key)
                keys = opps[key] if rows is None else opps[key].iloc[rows]
                pos = index_in(keys, pd.Index(lookup[key]))
                values = lookup[column].array.take(pos, allow_fill=True)
                labels = pd.Series(values, index=keys.index)
                break
        if labels is None:
            allowed = group_columns(ds)
            for table in ("opportunities", "products", "accounts"):
                if column in schema.columns_of(table):
                    raise InsufficientDataError(
                        f"grouping by '{column}' needs the {table} table's '{column}' "
                        "column, which this data does not provide; map it in the source "
                        f"config, or group by {', '.join(allowed) or 'another column'}"
                    )
            raise ValueError(
                f"{param}={column!r} is not a column of the opportunities, products or "
                f"accounts tables; use one of {', '.join(allowed) or 'none available'}"
            )
    return labels.astype("str").fillna(NONE_LABEL).rename("_group")


def _closed_stats(
    won: np.ndarray, lost: np.ndarray, amount: np.ndarray, codes: np.ndarray, labels: pd.Index
) -> pd.DataFrame:
    """won, lost, win rate, interval, won revenue, avg/median won deal per group code
    (``won``, ``lost``, ``amount``, ``codes`` of the deals in the period; indexed by label)."""
    amount = np.where(won, amount, np.nan)
    g = pd.DataFrame({"won": won, "lost": lost, "amount": amount})
    out = g.groupby(codes).agg(
        won=("won", "sum"),
        lost=("lost", "sum"),
        won_revenue=("amount", "sum"),
        won_with_amount=("amount", "count"),
        avg_won_deal=("amount", "mean"),
        median_won_deal=("amount", "median"),
    )
    out.index = labels.take(out.index)
    out[["won", "lost"]] = out[["won", "lost"]].astype("int64")
    closed = out["won"] + out["lost"]
    out["win_rate"] = out["won"] / closed.where(closed > 0)
    out["win_rate_low"], out["win_rate_high"] = wilson_interval(
        out["won"].to_numpy(), closed.to_numpy()
    )
    return out


def _closed_rows(opps: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp):
    """Positions of the deals won or lost with ``start < close_date <= end``, and
    whether each of them was won / lost. The dates are compared first (numpy), so the
    text status is read only for the deals closing in the window."""
    rows = np.flatnonzero(_window(opps["close_date"], start, end).to_numpy())
    status = opps["status"].iloc[rows]
    won = status.eq(schema.WON).to_numpy(dtype=bool, na_value=False)
    lost = status.eq(schema.LOST).to_numpy(dtype=bool, na_value=False)
    keep = won | lost
    return rows[keep], won[keep], lost[keep]


def _period_stats(opps: pd.DataFrame, start, end, labels_of) -> pd.DataFrame:
    """:func:`_closed_stats` of the deals closed (won/lost) in ``(start, end]``, grouped
    by ``labels_of(rows)`` (their labels); indexed by label, groups with such deals."""
    rows, won, lost = _closed_rows(opps, start, end)
    amount = opps["amount"].to_numpy(dtype="float64", na_value=np.nan)[rows]
    codes, labels = _codes(labels_of(rows))
    return _closed_stats(won, lost, amount, codes, labels)


def _scorecard_core(
    ds: Dataset, ts: pd.Timestamp, group: pd.Series, period_days: int, discounts
) -> pd.DataFrame:
    """Everything of the scorecard except the pipeline weights.

    Groups are integer codes (one factorisation of ``group``; the closed-deal figures
    come from :func:`_period_stats`, shared with :func:`compute_win_rates`); every
    per-group sum, mean and median is pandas' own kernel on the same values in the same
    order, so the numbers are those of a ``groupby`` on the labels.
    """
    opps = ds.opportunities
    start = ts - pd.Timedelta(days=period_days)
    prev_start = start - pd.Timedelta(days=period_days)
    is_won, is_lost = _status(opps, schema.WON), _status(opps, schema.LOST)
    is_open = _status(opps, schema.OPEN)
    closed = is_won | is_lost
    in_period = closed & _window(opps["close_date"], start, ts).to_numpy()
    created = _window(opps["created_date"], start, ts).to_numpy()
    created_prev = _window(opps["created_date"], prev_start, start).to_numpy()
    amount = opps["amount"].to_numpy(dtype="float64", na_value=np.nan)

    codes, labels = _codes(group)
    n = len(labels)
    first = pd.unique(codes)  # groups in order of appearance

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes[mask], minlength=n)[first]

    def per_group(values, how: str, **kwargs) -> np.ndarray:
        return _per_group(values, codes, n, how, **kwargs)[first]

    out = pd.DataFrame(index=labels.take(first).rename("_group"))
    out["opportunities"] = count(created)
    out["opportunities_prev"] = count(created_prev)

    def labels_of(rows: np.ndarray) -> pd.Series:
        return group.iloc[rows]

    cur = _period_stats(opps, start, ts, labels_of)
    prev = _period_stats(opps, prev_start, start, labels_of)
    out = out.join(cur, how="left")
    out["open"] = count(is_open)
    out["open_pipeline"] = per_group(np.where(is_open, amount, np.nan), "sum", min_count=1)
    skipped = (is_open | (in_period & is_won)) & np.isnan(amount)
    out["amount_missing"] = count(skipped)

    won_now = in_period & is_won
    cycle = (opps["close_date"] - opps["created_date"]).dt.days
    cycle = cycle.where(won_now & (cycle >= 0))
    out["median_cycle_days"] = per_group(cycle, "median")
    out["cycle_deals"] = count(cycle.notna().to_numpy())

    if discounts is not None:
        ok = won_now & discounts["discount"].notna().to_numpy()
        amt = per_group(np.where(ok, discounts["amount"].to_numpy(), np.nan), "sum", min_count=1)
        lst = per_group(
            np.where(ok, discounts["list_price"].to_numpy(), np.nan), "sum", min_count=1
        )
        out["discount"] = 1 - amt / lst
        out["discount_deals"] = count(ok)
    else:
        out["discount"] = np.nan
        out["discount_deals"] = 0

    out["won_prev"] = prev["won"]
    out["lost_prev"] = prev["lost"]
    out["won_revenue_prev"] = prev["won_revenue"]
    out["win_rate_prev"] = prev["win_rate"]
    for col in (
        "opportunities",
        "opportunities_prev",
        "won",
        "lost",
        "open",
        "amount_missing",
        "cycle_deals",
        "discount_deals",
        "won_prev",
        "lost_prev",
        "won_with_amount",
    ):
        out[col] = out[col].fillna(0).astype("int64")
    for col in ("won_revenue", "won_revenue_prev"):
        out[col] = out[col].fillna(0.0)
    return out


def compute_win_rates(
    data: Dataset,
    *,
    as_of,
    by: str = "product",
    period_days: int = 365,
) -> pd.DataFrame:
    """Win rate and won revenue per product (or any grouping) for the period ending on
    ``as_of``: the scorecard's win-rate columns alone, without its other figures.

    Deals won or lost with ``close_date`` in the ``period_days`` days ending on ``as_of``
    (``as_of - period_days < close_date <= as_of``) count; **win_rate** = won / (won +
    lost) with a 95 % Wilson interval; **won_revenue** sums the won deals' amounts;
    **avg_won_deal** and **median_won_deal** are over won deals with an amount. The
    numbers are those of :func:`compute_scorecard` (same code), which also counts
    created and open deals, discounts, cycle times and the pipeline; this is the quick
    path when only win rates are wanted.

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
        End of the period (inclusive); the data as known then.
    by : str, default "product"
        A column of the opportunities, or of the products or accounts table (see
        :func:`group_columns`).
    period_days : int, default 365

    Returns
    -------
    DataFrame
        ``<by>, won, lost, win_rate, win_rate_low, win_rate_high, won_revenue,
        won_with_amount, avg_won_deal, median_won_deal``: one row per group with a deal
        closed in the period (deals without a value under ``NONE_LABEL``), by won
        revenue (largest first), then by name.

    Raises
    ------
    InsufficientDataError
        When there is no opportunity, or ``by`` is a canonical column this data lacks or
        leaves empty.
    ValueError
        For an unknown ``by`` or a non-positive ``period_days``.

    Examples
    --------
    >>> compute_win_rates(ds, as_of="2025-12-31", by="product")  # doctest: +SKIP
    """
    _positive(period_days, "period_days")
    ds, ts = _prepare(data, as_of)
    opps = ds.opportunities
    start = ts - pd.Timedelta(days=int(period_days))

    def labels_of(rows: np.ndarray) -> pd.Series:
        return _group_labels(ds, opps, by, rows=rows, param="by")

    stats = _period_stats(opps, start, ts, labels_of)
    cols = ["won", "lost", "win_rate", "win_rate_low", "win_rate_high", "won_revenue"]
    cols += ["won_with_amount", "avg_won_deal", "median_won_deal"]
    out = stats[cols].rename_axis(by).reset_index()
    out[by] = out[by].astype("str")
    out["won_with_amount"] = out["won_with_amount"].astype("int64")
    out = out.sort_values(["won_revenue", by], ascending=[False, True], kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["period"] = (start, ts)
    return out


def compute_scorecard(
    data: Dataset,
    *,
    as_of,
    group_by: str = "product",
    period_days: int = 365,
    weights: str = "history",
    prior_strength: float = 20.0,
    total: bool = False,
) -> pd.DataFrame:
    """Scorecard per product (or any grouping column) for the period ending on ``as_of``.

    The period is the ``period_days`` days ending on ``as_of``; the previous period is
    the ``period_days`` days before it. Definitions:

    - **opportunities**: deals created in the period.
    - **won, lost**: deals closed (won/lost) with ``close_date`` in the period;
      **win_rate** = won / (won + lost), with a 95 % Wilson interval.
    - **won_revenue**: sum of the amounts of deals won in the period; **revenue_share**:
      its share of all groups' won revenue; **avg_won_deal**, **median_won_deal** over
      won deals with an amount.
    - **discount**: realised price against list price of the deals won in the period,
      revenue-weighted: ``1 - sum(amount) / sum(list_price)`` (one unit per deal; see
      the module notes); ``discount_deals`` = won deals it is based on.
    - **median_cycle_days**: median days from created to close of deals won in the
      period (``cycle_deals`` of them had consistent dates).
    - **open**, **open_pipeline**: deals open on ``as_of`` and the sum of their amounts;
      **weighted_pipeline**: sum of amount x win probability learned from history
      (:func:`compute_weighted_pipeline`; weights for the deal's product and stage,
      whatever the grouping).
    - **amount_missing**: won-in-period or open deals with no amount (skipped in the
      money columns, still counted in win rates).
    - **change vs previous period**: ``won_revenue_change`` = won revenue / previous
      period's - 1; ``win_rate_change`` = win rate minus the previous period's (share
      points: 0.05 = +5 pts); the previous values are in ``*_prev`` columns.

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
        End of the period (inclusive); the data as known then.
    group_by : str, default "product"
        A column of the opportunities, or of the products table (``family``, joined on
        product) or accounts table (``industry``, ``region``, joined on account); see
        :func:`group_columns`.
    period_days : int, default 365
        Length of the period (and of the previous period compared against).
    weights : {"history", "stage", "crm"}, default "history"
        How open deals are weighted (see :func:`compute_weighted_pipeline`).
    prior_strength : float, default 20
        Shrinkage of the learned weights.
    total : bool, default False
        Append an ``All`` row over every deal.

    Returns
    -------
    DataFrame
        ``<group_by>, opportunities, won, lost, open, win_rate, win_rate_low,
        win_rate_high, won_revenue, revenue_share, avg_won_deal, median_won_deal,
        discount, discount_deals, median_cycle_days, cycle_deals, open_pipeline,
        weighted_pipeline, amount_missing, won_prev, lost_prev, win_rate_prev,
        win_rate_change, won_revenue_prev, won_revenue_change, opportunities_prev``,
        sorted by won revenue (largest first). ``attrs["notes"]`` lists what could not be
        computed (no list prices, no history to weight the pipeline...).

    Raises
    ------
    InsufficientDataError
        When there is no opportunity, or the grouping column is a canonical column this
        data lacks (e.g. ``family`` without a products table) or leaves empty.
    ValueError
        For an unknown ``group_by`` or ``weights``, or a non-positive ``period_days``.

    Examples
    --------
    >>> card = compute_scorecard(ds, as_of="2025-12-31", group_by="family")  # doctest: +SKIP
    >>> card[["family", "won", "win_rate", "won_revenue"]]  # doctest: +SKIP
    """
    _positive(period_days, "period_days")
    _check_choice(weights, "weights", WEIGHTS)
    ds, ts = _prepare(data, as_of)
    opps = ds.opportunities
    group = _group_labels(ds, opps, group_by)
    notes: list[str] = []
    try:
        discounts = _deal_discounts(ds)
    except InsufficientDataError as exc:
        discounts = None
        notes.append(f"Discount not shown: {exc}.")
    frames = [(group, None)]
    if total:
        frames.append((pd.Series("All", index=opps.index, name="_group"), "All"))
    parts = [_scorecard_core(ds, ts, g, int(period_days), discounts) for g, _ in frames]
    card = pd.concat(parts) if len(parts) > 1 else parts[0]

    try:
        pipe = _weighted_pipeline(
            ds, ts, weights=weights, prior_strength=prior_strength, history_days=None
        )
        open_group = group.loc[opps["status"].eq(schema.OPEN)].reset_index(drop=True)
        weighted = pipe["weighted_amount"].groupby(open_group).sum(min_count=1)
        if total:
            weighted = pd.concat(
                [weighted, pd.Series([pipe["weighted_amount"].sum(min_count=1)], ["All"])]
            )
        card["weighted_pipeline"] = weighted.reindex(card.index).astype("float64")
        bases = sorted(set(pipe["basis"].unique()))
        if bases and weights != "crm":
            notes.append("Weighted pipeline basis: " + "; ".join(bases) + ".")
    except InsufficientDataError as exc:
        card["weighted_pipeline"] = np.nan
        notes.append(f"Weighted pipeline not shown: {exc}.")

    is_group = card.index != "All" if total else np.ones(len(card), dtype=bool)
    total_rev = card.loc[is_group, "won_revenue"].sum()
    card["revenue_share"] = card["won_revenue"] / total_rev if total_rev > 0 else np.nan
    card["win_rate_change"] = card["win_rate"] - card["win_rate_prev"]
    prev_rev = card["won_revenue_prev"].where(card["won_revenue_prev"] > 0)
    card["won_revenue_change"] = card["won_revenue"] / prev_rev - 1
    no_closed = card.index[is_group & (card["won"] + card["lost"]).eq(0).to_numpy()]
    if len(no_closed):
        notes.append(
            f"No closed deal in the period for {', '.join(map(str, no_closed))}: "
            "no win rate, won revenue or cycle."
        )
    cols = [
        "opportunities",
        "won",
        "lost",
        "open",
        "win_rate",
        "win_rate_low",
        "win_rate_high",
        "won_revenue",
        "revenue_share",
        "avg_won_deal",
        "median_won_deal",
        "discount",
        "discount_deals",
        "median_cycle_days",
        "cycle_deals",
        "open_pipeline",
        "weighted_pipeline",
        "amount_missing",
        "won_prev",
        "lost_prev",
        "win_rate_prev",
        "win_rate_change",
        "won_revenue_prev",
        "won_revenue_change",
        "opportunities_prev",
    ]
    card = card[cols].rename_axis(group_by).reset_index()
    if total:
        body = card.iloc[:-1].sort_values(
            ["won_revenue", group_by], ascending=[False, True], kind="stable"
        )
        card = pd.concat([body, card.iloc[-1:]])
    else:
        card = card.sort_values(["won_revenue", group_by], ascending=[False, True], kind="stable")
    card = card.reset_index(drop=True)
    card[group_by] = card[group_by].astype("str")
    card.attrs["notes"] = notes
    card.attrs["period"] = (ts - pd.Timedelta(days=int(period_days)), ts)
    return card
