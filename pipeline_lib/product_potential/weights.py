"""Pipeline weights: win rates learned from closed deals' stage history.

:func:`compute_stage_win_rates` learns, per product (or any column) and open stage, the
share of closed deals that were won after reaching the stage, shrunk towards the stage's
rate where the history is thin; :func:`compute_weighted_pipeline` weights every open deal
by it (or by the CRM's probability when asked).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema
from .._arrowtools import index_in, isin
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..sources import _hist_positions
from ..stats import wilson_interval
from ._common import (
    _check_choice,
    _closed_within,
    _has_values,
    _need_column,
    _non_negative,
    _prepare,
    _status,
    _take,
    _unique,
)

__all__ = ["WEIGHTS", "compute_stage_win_rates", "compute_weighted_pipeline"]

#: Allowed values of the ``weights`` option.
WEIGHTS = ("history", "stage", "crm")


def compute_stage_win_rates(
    data: Dataset,
    *,
    as_of,
    by: str | None = "product",
    prior_strength: float = 20.0,
    history_days: int | None = None,
) -> pd.DataFrame:
    """Win rate of deals that reached each open stage, learned from closed deals' history.

    Definitions (closed deals = won or lost by ``as_of``, closed within the last
    ``history_days`` when given):

    - **reached**: closed deals whose stage history shows they entered the stage;
      **won**: those of them that were won. ``raw_rate = won / reached`` with a 95 %
      Wilson interval (``raw_low``, ``raw_high``).
    - **stage_rate**: the same pooled over every group, shrunk towards the overall win
      rate of closed deals with a history: ``(won_s + m * overall) / (reached_s + m)``
      with ``m = prior_strength``.
    - **win_probability**: the group's rate shrunk towards the stage rate,
      ``(won + m * stage_rate) / (reached + m)``; a group with little history borrows
      from the stage, a group with none gets the stage rate. ``own_weight = reached /
      (reached + m)`` says how much of it is the group's own history; ``basis`` says so
      in words.

    Parameters
    ----------
    data : Dataset
        Needs a stage history.
    as_of : str, date or Timestamp
        Only what was known at the end of this day is used.
    by : str or None, default "product"
        Column of the opportunities to learn rates for; ``None`` for stage-only rates.
    prior_strength : float, default 20
        Pseudo-deals of the shrinkage (0 = raw rates where there is history).
    history_days : int, optional
        Learn only from deals closed in the last ``history_days`` days.

    Returns
    -------
    DataFrame
        ``<by>`` (omitted when ``by`` is None), ``stage, reached, won, raw_rate, raw_low,
        raw_high, stage_rate, win_probability, own_weight, basis``; one row per group and
        open stage, stages in pipeline order.

    Raises
    ------
    InsufficientDataError
        When there is no stage history or no closed deal with one.
    ValueError
        For a negative ``prior_strength`` or a non-positive ``history_days``.

    Examples
    --------
    >>> compute_stage_win_rates(ds, as_of="2025-12-31").head()  # doctest: +SKIP
    """
    ds, ts = _prepare(data, as_of)
    return _stage_win_rates(ds, ts, by=by, prior_strength=prior_strength, history_days=history_days)


def _closed_for_learning(ds: Dataset, ts: pd.Timestamp, history_days: int | None) -> np.ndarray:
    """Rows of the won and lost deals win rates are learned from."""
    return _closed_within(ds.opportunities, ts, history_days).to_numpy()


@memoized(copy=False)
def _history_pairs(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Each (deal, open stage) the stage history shows, once, sorted: the deal's row in the
    opportunities and the stage's position in the pipeline. Matched through positions
    (one hash lookup of the ids) rather than a merge on the text ids; once per dataset,
    and the look-up is the one the loader, snapshots and filters keep for these tables
    when the ids are unique."""
    hist, opps = ds.stage_history, ds.opportunities
    stage = index_in(hist["stage"], pd.Index(list(ds.stages.open)))
    row = _hist_positions(hist, opps)
    if row is None:  # ids missing or repeated: the first deal with the id
        row = index_in(hist["opportunity_id"], pd.Index(opps["opportunity_id"]))
    keep = (stage >= 0) & (row >= 0)
    n_stages = len(ds.stages.open)
    pairs = _unique(row[keep] * n_stages + stage[keep])
    return pairs // n_stages, pairs % n_stages


def _reached(ds: Dataset, closed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_history_pairs` of the ``closed`` deals."""
    row, stage = _history_pairs(ds)
    keep = closed[row]
    return row[keep], stage[keep]


def _stage_win_rates(ds, ts, *, by, prior_strength, history_days) -> pd.DataFrame:
    _non_negative(prior_strength, "prior_strength")
    m = float(prior_strength)
    hist = ds.stage_history
    if hist is None or hist.empty:
        raise InsufficientDataError(
            "learning stage win rates needs a stage history (when each deal entered each "
            "stage); add a stage_history table to the source config"
        )
    closed = _closed_for_learning(ds, ts, history_days)
    if not closed.any():
        raise InsufficientDataError(
            f"no deal was won or lost by {ts.date()}, so there are no win rates per stage to "
            "learn; they need deals that were won or lost after passing through open stages"
        )
    if by is not None:
        _need_column(ds, by, f"stage win rates per {by}")
    open_stages = list(ds.stages.open)
    n_stages = len(open_stages)
    row, stage = _reached(ds, closed)
    if not len(row):
        raise InsufficientDataError(
            "no closed deal has a stage history, so win rates per stage cannot be learned; "
            "they need deals that were won or lost after passing through open stages"
        )
    opps = ds.opportunities
    won = _status(opps, schema.WON)
    reached_won = won[row]
    with_hist = _unique(row)
    overall = int(won[with_hist].sum()) / len(with_hist)

    stage_index = pd.Index(open_stages, name="stage")
    pooled = pd.DataFrame(
        {
            "size": np.bincount(stage, minlength=n_stages),
            "sum": np.bincount(stage[reached_won], minlength=n_stages),
        },
        index=stage_index,
    )
    stage_rate = (pooled["sum"] + m * overall) / (pooled["size"] + m)
    stage_rate = stage_rate.where(pooled["size"] + m > 0, overall)

    if by is None:
        grid = pd.DataFrame({"stage": open_stages})
        counts = pooled.rename(columns={"size": "reached", "sum": "won"}).reset_index()
        keys = ["stage"]
    else:
        groups = sorted(opps[by].dropna().astype("str").unique())
        grid = pd.MultiIndex.from_product([groups, open_stages], names=[by, "stage"]).to_frame(
            index=False
        )
        codes, values = pd.factorize(opps[by])
        cell = codes[row] * n_stages + stage
        ok = codes[row] >= 0
        cells, size = np.unique(cell[ok], return_counts=True)
        n_won = np.bincount(np.searchsorted(cells, cell[ok & reached_won]), minlength=len(cells))
        counts = pd.DataFrame(
            {
                by: values.take(cells // n_stages),
                "stage": stage_index.take(cells % n_stages),
                "reached": size.astype("int64"),
                "won": n_won.astype("int64"),
            }
        )
        keys = [by, "stage"]
    out = grid.merge(counts, on=keys, how="left")
    out["reached"] = out["reached"].fillna(0).astype("int64")
    out["won"] = out["won"].fillna(0).astype("int64")
    with np.errstate(invalid="ignore", divide="ignore"):
        out["raw_rate"] = out["won"] / out["reached"].where(out["reached"] > 0)
    low, high = wilson_interval(out["won"].to_numpy(), out["reached"].to_numpy())
    out["raw_low"], out["raw_high"] = low, high
    out["stage_rate"] = out["stage"].map(stage_rate).astype("float64")
    if by is None:
        out["win_probability"] = out["stage_rate"]
        own = out["reached"] / (out["reached"] + m)
        out["own_weight"] = own.where(out["reached"] + m > 0, 0.0)
        out["basis"] = "stage (all products)"
    else:
        denom = out["reached"] + m
        prob = (out["won"] + m * out["stage_rate"]) / denom.where(denom > 0)
        out["win_probability"] = prob.fillna(out["stage_rate"])
        out["own_weight"] = (out["reached"] / denom.where(denom > 0)).fillna(0.0)
        out["basis"] = np.select(
            [out["own_weight"] >= 0.5, out["reached"] > 0],
            [f"{by} & stage", f"stage (thin {by} history)"],
            default=f"stage (no {by} history)",
        )
    order = {s: i for i, s in enumerate(open_stages)}
    out = out.sort_values(keys, key=lambda s: s.map(order) if s.name == "stage" else s)
    return out.reset_index(drop=True)


def compute_weighted_pipeline(
    data: Dataset,
    *,
    as_of,
    weights: str = "history",
    prior_strength: float = 20.0,
    history_days: int | None = None,
) -> pd.DataFrame:
    """Open deals with a win probability and a weighted amount.

    Weights (``weighted_amount = amount * win_probability``):

    - ``"history"`` (default): the win rate of closed deals of the same product that
      reached the deal's current stage, shrunk towards the stage's rate when the product's
      history is thin (:func:`compute_stage_win_rates`). Without a product column the
      stage-only rate is used; without a stage history, the product's win rate over all
      closed deals (shrunk towards the overall rate).
    - ``"stage"``: the stage-only rate, the same for every product.
    - ``"crm"``: the probability typed into the CRM (only when asked).

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
    weights : {"history", "stage", "crm"}, default "history"
    prior_strength : float, default 20
        Pseudo-deals of the shrinkage (see :func:`compute_stage_win_rates`).
    history_days : int, optional
        Learn only from deals closed in the last ``history_days`` days.

    Returns
    -------
    DataFrame
        One row per deal open on ``as_of``: ``opportunity_id, product, account, stage,
        close_date, amount, win_probability, weighted_amount, basis`` (``product`` and
        ``account`` only when present). ``weighted_amount`` is missing where the amount
        is.

    Raises
    ------
    InsufficientDataError
        When there is no closed deal to learn from (history weights), or no CRM
        probability (``weights="crm"``).
    ValueError
        For an unknown ``weights``.

    Examples
    --------
    >>> compute_weighted_pipeline(ds, as_of="2025-12-31")["weighted_amount"].sum()  # doctest: +SKIP
    """
    ds, ts = _prepare(data, as_of)
    return _weighted_pipeline(
        ds, ts, weights=weights, prior_strength=prior_strength, history_days=history_days
    )


def _weighted_pipeline(ds, ts, *, weights, prior_strength, history_days) -> pd.DataFrame:
    _check_choice(weights, "weights", WEIGHTS)
    opps = ds.opportunities
    keep = [
        c
        for c in ("opportunity_id", "product", "account", "stage", "close_date", "amount")
        if c in opps
    ]
    open_ = opps.loc[opps["status"].eq(schema.OPEN), keep].reset_index(drop=True)
    has_product = _has_values(opps, "product")
    if weights == "crm":
        if not _has_values(opps, "probability"):
            raise InsufficientDataError(
                "weights='crm' needs the CRM's probability column, which is missing or "
                "empty; use weights='history' (learned from closed deals) instead"
            )
        prob = opps.loc[opps["status"].eq(schema.OPEN), "probability"].reset_index(drop=True)
        basis = pd.Series("CRM probability", index=open_.index).where(
            prob.notna(), "CRM probability missing"
        )
    else:
        closed = _closed_for_learning(ds, ts, history_days)
        if not closed.any():
            raise InsufficientDataError(
                "the pipeline cannot be weighted: there is no won or lost deal to learn win "
                "rates from; weights='crm' uses the CRM's probability instead"
            )
        by = "product" if (weights == "history" and has_product) else None
        has_hist = ds.stage_history is not None and not ds.stage_history.empty
        try:
            if not has_hist:
                raise InsufficientDataError("no stage history")
            rates = _stage_win_rates(
                ds, ts, by=by, prior_strength=prior_strength, history_days=history_days
            )
            # rates has one row per (group, stage): groups sorted, stages in pipeline order
            stages = pd.Index(list(ds.stages.open))
            stage = index_in(open_["stage"], stages)
            row = stage.copy()
            if by is not None:
                group = index_in(open_[by], pd.Index(rates[by].iloc[:: len(stages)]))
                row = np.where((group >= 0) & (stage >= 0), group * len(stages) + stage, -1)
            prob = _take(rates["win_probability"].to_numpy(), row)
            missing = np.isnan(prob)  # e.g. a deal with no product
            stage_rate = _take(rates["stage_rate"].to_numpy()[: len(stages)], stage)
            prob = pd.Series(np.where(missing, stage_rate, prob))
            basis = np.where(
                missing,
                "stage (no product on the deal)",
                _take(rates["basis"].to_numpy(dtype=object), row, fill=None),
            ).astype(object)
        except InsufficientDataError:
            closed = ds.opportunities.loc[closed, [c for c in ("status", by) if c]]
            prob, basis = _flat_rates(closed, open_, by=by, prior_strength=prior_strength)
    open_["win_probability"] = prob.astype("float64").to_numpy()
    open_["weighted_amount"] = open_["amount"] * open_["win_probability"]
    open_["basis"] = pd.Series(basis, dtype="str").to_numpy()
    return open_


def _flat_rates(closed, open_, *, by, prior_strength):
    """Stage-free win rates (no stage history): per ``by`` group, shrunk to overall."""
    m = float(prior_strength)
    overall = float(closed["status"].eq(schema.WON).mean())
    if by is None:
        return (
            pd.Series(overall, index=open_.index),
            pd.Series("overall win rate (no stage history)", index=open_.index),
        )
    g = closed.groupby(by)["status"].agg(n="size", won=lambda s: int(s.eq(schema.WON).sum()))
    rate = (g["won"] + m * overall) / (g["n"] + m)
    prob = open_[by].map(rate).fillna(overall)
    basis = pd.Series(f"{by} win rate (no stage history)", index=open_.index).where(
        isin(open_[by], rate.index), "overall win rate (no stage history)"
    )
    return prob, basis
