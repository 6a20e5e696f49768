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
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..stats import wilson_interval
from ._common import (
    _check_choice,
    _closed_within,
    _has_values,
    _isin,
    _need_column,
    _non_negative,
    _prepare,
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


def _closed_for_learning(ds: Dataset, ts: pd.Timestamp, history_days: int | None):
    """The won and lost deals win rates are learned from."""
    opps = ds.opportunities
    return opps.loc[_closed_within(opps, ts, history_days)]


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
    if by is not None:
        _need_column(ds, by, f"stage win rates per {by}")
    cols = ["opportunity_id", "status"] + ([by] if by is not None else [])
    open_stages = list(ds.stages.open)
    reached = (
        hist.loc[_isin(hist["stage"], open_stages), ["opportunity_id", "stage"]]
        .drop_duplicates()
        .merge(closed[cols], on="opportunity_id", how="inner")
    )
    if reached.empty:
        raise InsufficientDataError(
            "no closed deal has a stage history, so win rates per stage cannot be learned; "
            "they need deals that were won or lost after passing through open stages"
        )
    reached["won"] = reached["status"].eq(schema.WON)
    with_hist = _isin(closed["opportunity_id"], reached["opportunity_id"])
    overall = float(closed.loc[with_hist, "status"].eq(schema.WON).mean())

    pooled = reached.groupby("stage")["won"].agg(["size", "sum"]).reindex(open_stages)
    pooled = pooled.fillna(0)
    stage_rate = (pooled["sum"] + m * overall) / (pooled["size"] + m)
    stage_rate = stage_rate.where(pooled["size"] + m > 0, overall)

    if by is None:
        grid = pd.DataFrame({"stage": open_stages})
        counts = pooled.rename(columns={"size": "reached", "sum": "won"}).reset_index()
        keys = ["stage"]
    else:
        groups = sorted(ds.opportunities[by].dropna().astype("str").unique())
        grid = pd.MultiIndex.from_product([groups, open_stages], names=[by, "stage"]).to_frame(
            index=False
        )
        counts = (
            reached.dropna(subset=[by])
            .groupby([by, "stage"])["won"]
            .agg(reached="size", won="sum")
            .reset_index()
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
        if closed.empty:
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
            keys = ["stage"] if by is None else [by, "stage"]
            merged = open_.merge(
                rates[[*keys, "win_probability", "basis"]], on=keys, how="left", sort=False
            )
            stage_only = rates.drop_duplicates("stage").set_index("stage")["stage_rate"]
            missing = merged["win_probability"].isna()  # e.g. a deal with no product
            prob = merged["win_probability"].fillna(open_["stage"].map(stage_only))
            basis = merged["basis"].where(~missing, "stage (no product on the deal)")
        except InsufficientDataError:
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
        _isin(open_[by], rate.index), "overall win rate (no stage history)"
    )
    return prob, basis
