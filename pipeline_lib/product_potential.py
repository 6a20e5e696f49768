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
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as _st

from . import schema
from .dataset import Dataset, to_timestamp
from .errors import InsufficientDataError
from .stats import wilson_interval

__all__ = [
    "NONE_LABEL",
    "WEIGHTS",
    "LEVERS",
    "DISCOUNT_BANDS",
    "group_columns",
    "compute_deal_discounts",
    "compute_stage_win_rates",
    "compute_weighted_pipeline",
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

#: Label of deals whose grouping value is missing.
NONE_LABEL = "(none)"
#: Allowed values of the ``weights`` option.
WEIGHTS = ("history", "stage", "crm")
#: What-if levers of :func:`compute_sensitivity`, in display order.
LEVERS = ("win rate", "discount", "cycle", "leads")
#: Default lower edges of the discount bands (share of list price).
DISCOUNT_BANDS = (0.0, 0.05, 0.10, 0.20, 0.30)

_CLOSED = (schema.WON, schema.LOST)


# --------------------------------------------------------------------------- helpers


def _prepare(data, as_of) -> tuple[Dataset, pd.Timestamp]:
    """The dataset as known on ``as_of`` (snapshotted unless it already is)."""
    if not isinstance(data, Dataset):
        raise TypeError(
            "expected a Dataset (from pipeline_lib.dataset.load_dataset), "
            f"got {type(data).__name__}"
        )
    ts = to_timestamp(as_of)
    ds = data if data.as_of == ts else data.snapshot(ts)
    if ds.opportunities.empty:
        raise InsufficientDataError(
            f"there are no opportunities as of {ts.date()} in this selection; "
            "widen the filters or choose a later as_of"
        )
    return ds, ts


def _positive(value, name: str) -> None:
    if value is None or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive number")


def _non_negative(value, name: str) -> None:
    if value is None or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value!r} must be zero or a positive number")


def _check_choice(value, name: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; use one of {', '.join(allowed)}")


def _has_values(frame: pd.DataFrame | None, column: str) -> bool:
    return frame is not None and column in frame and frame[column].notna().any()


def _need_column(ds: Dataset, column: str, what: str) -> None:
    if not _has_values(ds.opportunities, column):
        raise InsufficientDataError(
            f"{what} needs the opportunities' '{column}' column, which is missing or empty; "
            f"map a '{column}' column in the source config"
        )


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


def _group_labels(ds: Dataset, opps: pd.DataFrame, column: str) -> pd.Series:
    """The grouping value of every deal (``NONE_LABEL`` where missing)."""
    if not isinstance(column, str) or not column:
        raise ValueError(f"group_by={column!r} must be a column name")
    if column in opps:
        labels = opps[column]
        if labels.isna().all():
            raise InsufficientDataError(
                f"the opportunities' '{column}' column is empty; group by another column "
                f"({', '.join(group_columns(ds)) or 'none available'})"
            )
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
                lookup = frame.dropna(subset=[key]).drop_duplicates(key).set_index(key)[column]
                labels = opps[key].map(lookup)
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
                f"group_by={column!r} is not a column of the opportunities, products or "
                f"accounts tables; use one of {', '.join(allowed) or 'none available'}"
            )
    return labels.astype("str").fillna(NONE_LABEL).rename("_group")


def _window(dates: pd.Series, start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """``start < date <= end`` (missing dates are outside)."""
    return (dates > start) & (dates <= end)


def _isin(series: pd.Series, values) -> pd.Series:
    """``series.isin(values)`` through a hash index (much faster on Arrow-backed text)."""
    index = pd.Index(pd.unique(np.asarray(list(values), dtype=object)))
    return pd.Series(index.get_indexer(series) >= 0, index=series.index)


def _money(value: float, currency: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:,.0f}"
    return f"{text} {currency}".strip()


def _pct(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}%}"


# --------------------------------------------------------------------------- discounts


def compute_deal_discounts(data: Dataset, *, as_of) -> pd.DataFrame:
    """Each deal's realised price against its product's list price.

    Definition: no quantity column exists, so a deal is taken as one unit of its product
    at list price: ``discount = 1 - amount / list_price``. A deal priced above list
    (several units or an uplift, indistinguishable) is flagged ``above_list`` and gets no
    discount; so does a deal with no amount or whose product has no list price.

    Parameters
    ----------
    data : Dataset
        Needs ``opportunities.product`` and ``products.list_price``.
    as_of : str, date or Timestamp
        The data as known at the end of this day.

    Returns
    -------
    DataFrame
        One row per deal: ``opportunity_id, product, status, created_date, close_date,
        amount, list_price, discount, above_list``. ``discount`` is a share of list price
        (0.15 = 15 % off), rounded to 4 decimals; missing where it cannot be computed.

    Raises
    ------
    InsufficientDataError
        When there is no product column, no products table, or no list price at all.

    Examples
    --------
    >>> compute_deal_discounts(ds, as_of="2025-12-31").head()  # doctest: +SKIP
    """
    ds, _ = _prepare(data, as_of)
    return _deal_discounts(ds)


def _deal_discounts(ds: Dataset) -> pd.DataFrame:
    _need_column(ds, "product", "the discount analysis")
    products = ds.table("products")
    if not _has_values(products, "list_price"):
        raise InsufficientDataError(
            "the discount analysis needs list prices: add a products table with a "
            "'list_price' column to the source config"
        )
    opps = ds.opportunities
    prices = products.dropna(subset=["product"]).drop_duplicates("product")
    price = opps["product"].map(prices.set_index("product")["list_price"]).astype("float64")
    price = price.where(price > 0)
    if price.isna().all():
        raise InsufficientDataError(
            "no deal's product has a list price in the products table; check that the "
            "product names match (aliases can be mapped in the source config)"
        )
    amount = opps["amount"].astype("float64")
    ratio = amount / price
    above = ratio > 1 + 1e-9
    discount = (1 - ratio).round(4).where(~above & (amount >= 0))
    return pd.DataFrame(
        {
            "opportunity_id": opps["opportunity_id"],
            "product": opps["product"],
            "status": opps["status"],
            "created_date": opps["created_date"],
            "close_date": opps["close_date"],
            "amount": amount,
            "list_price": price,
            "discount": discount,
            "above_list": above.fillna(False).astype("bool"),
        }
    ).reset_index(drop=True)


# --------------------------------------------------------------------------- weights


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
    opps = ds.opportunities
    closed = _isin(opps["status"], _CLOSED)
    if history_days is not None:
        _positive(history_days, "history_days")
        closed &= _window(opps["close_date"], ts - pd.Timedelta(days=history_days), ts)
    return opps.loc[closed]


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


# --------------------------------------------------------------------------- scorecard


def _closed_stats(frame: pd.DataFrame, group: pd.Series) -> pd.DataFrame:
    """won, lost, win rate, interval, won revenue, avg/median won deal per group."""
    won = frame["status"].eq(schema.WON)
    lost = frame["status"].eq(schema.LOST)
    amount = frame["amount"].where(won)
    g = pd.DataFrame({"_group": group, "won": won, "lost": lost, "amount": amount})
    out = g.groupby("_group", sort=False).agg(
        won=("won", "sum"),
        lost=("lost", "sum"),
        won_revenue=("amount", "sum"),
        won_with_amount=("amount", "count"),
        avg_won_deal=("amount", "mean"),
        median_won_deal=("amount", "median"),
    )
    out[["won", "lost"]] = out[["won", "lost"]].astype("int64")
    closed = out["won"] + out["lost"]
    out["win_rate"] = out["won"] / closed.where(closed > 0)
    out["win_rate_low"], out["win_rate_high"] = wilson_interval(
        out["won"].to_numpy(), closed.to_numpy()
    )
    return out


def _scorecard_core(
    ds: Dataset, ts: pd.Timestamp, group: pd.Series, period_days: int, discounts
) -> pd.DataFrame:
    """Everything of the scorecard except the pipeline weights."""
    opps = ds.opportunities
    start = ts - pd.Timedelta(days=period_days)
    prev_start = start - pd.Timedelta(days=period_days)
    closed = _isin(opps["status"], _CLOSED)
    in_period = closed & _window(opps["close_date"], start, ts)
    in_prev = closed & _window(opps["close_date"], prev_start, start)
    created = _window(opps["created_date"], start, ts)
    created_prev = _window(opps["created_date"], prev_start, start)
    is_open = opps["status"].eq(schema.OPEN)

    groups = pd.Index(pd.unique(group), name="_group")
    base = pd.DataFrame(index=groups)
    base["opportunities"] = created.groupby(group).sum()
    base["opportunities_prev"] = created_prev.groupby(group).sum()
    cur = _closed_stats(opps.loc[in_period], group.loc[in_period])
    prev = _closed_stats(opps.loc[in_prev], group.loc[in_prev])
    out = base.join(cur, how="left")
    out["open"] = is_open.groupby(group).sum()
    open_amount = opps["amount"].where(is_open)
    out["open_pipeline"] = open_amount.groupby(group).sum(min_count=1)
    skipped = (is_open | (in_period & opps["status"].eq(schema.WON))) & opps["amount"].isna()
    out["amount_missing"] = skipped.groupby(group).sum()

    won_now = in_period & opps["status"].eq(schema.WON)
    cycle = (opps["close_date"] - opps["created_date"]).dt.days
    cycle = cycle.where(won_now & (cycle >= 0))
    out["median_cycle_days"] = cycle.groupby(group).median()
    out["cycle_deals"] = cycle.notna().groupby(group).sum()

    if discounts is not None:
        d = discounts.set_index(opps.index)
        ok = won_now & d["discount"].notna()
        amt = d["amount"].where(ok).groupby(group).sum(min_count=1)
        lst = d["list_price"].where(ok).groupby(group).sum(min_count=1)
        out["discount"] = 1 - amt / lst
        out["discount_deals"] = ok.groupby(group).sum()
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
        bases = sorted(set(pipe["basis"]))
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


# --------------------------------------------------------------------------- discount evidence


def compute_discount_effect(
    data: Dataset, *, as_of, history_days: int | None = None, min_deals: int = 20
) -> pd.DataFrame:
    """Does discounting win deals? A per-product linear fit of winning on discount.

    For each product, over closed deals (won or lost by ``as_of``, closed in the last
    ``history_days`` days when given) with a discount (see
    :func:`compute_deal_discounts`), a least-squares line of ``won`` (1/0) on
    ``discount``. Its slope is the change in win rate per point of discount, reported
    per 10 points (``slope_per_10pts = 0.12``: 10 more discount points go with a win rate
    12 points higher), with a 95 % interval and p-value (``scipy.stats.linregress``).
    A correlation, not a proof: reps may discount deals that were harder to win.

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
    history_days : int, optional
        Use only deals closed in the last ``history_days`` days.
    min_deals : int, default 20
        Fewer closed deals with a discount (or a single discount level) gives no slope.

    Returns
    -------
    DataFrame
        ``product, closed, won, win_rate, avg_discount_won, avg_discount_lost,
        slope_per_10pts, slope_low, slope_high, p_value, verdict`` where ``verdict`` is
        one of ``"more discount, more wins"``, ``"more discount, fewer wins"``, ``"no
        clear effect"``, ``"too few deals"``. Sorted by slope (largest first).

    Raises
    ------
    InsufficientDataError
        When list prices or closed deals with a discount are missing.

    Examples
    --------
    >>> compute_discount_effect(ds, as_of="2025-12-31")  # doctest: +SKIP
    """
    ds, ts = _prepare(data, as_of)
    _positive(min_deals, "min_deals")
    return _discount_effect(ds, ts, history_days=history_days, min_deals=int(min_deals))


def _closed_discounts(ds: Dataset, ts, history_days) -> pd.DataFrame:
    d = _deal_discounts(ds)
    closed = _isin(d["status"], _CLOSED) & d["discount"].notna()
    if history_days is not None:
        _positive(history_days, "history_days")
        closed &= _window(d["close_date"], ts - pd.Timedelta(days=history_days), ts)
    d = d.loc[closed]
    if d.empty:
        raise InsufficientDataError(
            "no won or lost deal has both an amount and a list price, so discounts cannot "
            "be related to winning"
        )
    return d.assign(won=d["status"].eq(schema.WON))


def _discount_effect(ds, ts, *, history_days, min_deals) -> pd.DataFrame:
    d = _closed_discounts(ds, ts, history_days)
    rows = []
    z = _st.norm.ppf(0.975)
    for product, g in d.groupby("product", sort=True):
        won = g["won"].to_numpy(dtype="float64")
        x = g["discount"].to_numpy(dtype="float64")
        row = {
            "product": product,
            "closed": len(g),
            "won": int(won.sum()),
            "win_rate": won.mean(),
            "avg_discount_won": x[won == 1].mean() if won.any() else np.nan,
            "avg_discount_lost": x[won == 0].mean() if (won == 0).any() else np.nan,
            "slope_per_10pts": np.nan,
            "slope_low": np.nan,
            "slope_high": np.nan,
            "p_value": np.nan,
            "verdict": "too few deals",
        }
        if len(g) >= min_deals and np.unique(x).size > 1:
            if np.unique(won).size > 1:
                fit = _st.linregress(x, won)
                slope, se, p = fit.slope * 0.1, fit.stderr * 0.1, fit.pvalue
            else:
                slope, se, p = 0.0, 0.0, 1.0
            row.update(
                slope_per_10pts=slope,
                slope_low=slope - z * se,
                slope_high=slope + z * se,
                p_value=p,
                verdict=(
                    "no clear effect"
                    if p >= 0.05
                    else ("more discount, more wins" if slope > 0 else "more discount, fewer wins")
                ),
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    out["product"] = out["product"].astype("str")
    return out.sort_values("slope_per_10pts", ascending=False, na_position="last").reset_index(
        drop=True
    )


def _band_label(low: float, high: float | None) -> str:
    if high is None:
        return f"{low:.0%}+"
    return f"{low:.0%}–{high:.0%}"


def compute_band_win_rates(
    data: Dataset,
    *,
    as_of,
    by: str = "discount",
    bands=DISCOUNT_BANDS,
    n_bands: int = 3,
    history_days: int | None = None,
) -> pd.DataFrame:
    """Win rate per product by discount band or by deal-size band.

    Over closed deals (won or lost by ``as_of``; closed in the last ``history_days``
    days when given): win rate = won / closed in the band, with a 95 % Wilson interval.

    - ``by="discount"``: bands of ``discount = 1 - amount / list_price`` with lower edges
      ``bands`` (``[0, 5 %)``, ``[5 %, 10 %)``, ...; the last is open-ended). Deals without
      a discount (no list price, no amount, above list) are left out.
    - ``by="deal_size"``: per product, ``n_bands`` quantile bands of the amount (one band
      per distinct amount when there are no more of them than bands; fewer bands when
      repeated amounts make quantiles coincide), labelled ``small / medium / large`` for
      three bands, ``smaller / larger`` for two. Deals with no amount are left out.

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
    by : {"discount", "deal_size"}, default "discount"
    bands : sequence of float, default (0, .05, .10, .20, .30)
        Increasing lower edges of the discount bands (shares of list price).
    n_bands : int, default 3
        Number of deal-size bands per product.
    history_days : int, optional

    Returns
    -------
    DataFrame
        ``product, band, band_order, band_low, band_high, closed, won, win_rate,
        win_rate_low, win_rate_high, avg_discount, avg_amount`` (``band_low/high`` are
        discount shares or amounts; ``avg_discount`` is missing for deals without a list
        price). Empty bands are not listed.

    Raises
    ------
    InsufficientDataError
        When the needed columns or tables are missing or no closed deal qualifies.
    ValueError
        For an unknown ``by``, unsorted ``bands`` or ``n_bands < 1``.

    Examples
    --------
    >>> compute_band_win_rates(ds, as_of="2025-12-31", by="deal_size")  # doctest: +SKIP
    """
    _check_choice(by, "by", ("discount", "deal_size"))
    ds, ts = _prepare(data, as_of)
    if by == "discount":
        edges = [float(b) for b in bands]
        if not edges or any(b2 <= b1 for b1, b2 in zip(edges, edges[1:], strict=False)):
            raise ValueError(f"bands={bands!r} must be increasing lower edges, e.g. (0, 0.1)")
        d = _closed_discounts(ds, ts, history_days)
        idx = np.searchsorted(np.asarray(edges), d["discount"].to_numpy(), side="right") - 1
        d = d.assign(band_order=np.maximum(idx, 0))
        highs = [*edges[1:], None]
        d["band"] = [_band_label(edges[i], highs[i]) for i in d["band_order"]]
        d["band_low"] = [edges[i] for i in d["band_order"]]
        d["band_high"] = [np.nan if highs[i] is None else highs[i] for i in d["band_order"]]
    else:
        if int(n_bands) < 1:
            raise ValueError(f"n_bands={n_bands!r} must be at least 1")
        _need_column(ds, "product", "deal-size bands per product")
        opps = ds.opportunities
        closed = _isin(opps["status"], _CLOSED) & opps["amount"].notna()
        if history_days is not None:
            _positive(history_days, "history_days")
            closed &= _window(opps["close_date"], ts - pd.Timedelta(days=history_days), ts)
        d = opps.loc[closed & opps["product"].notna(), ["opportunity_id", "product", "amount"]]
        if d.empty:
            raise InsufficientDataError(
                "no won or lost deal has an amount and a product, so deal-size bands cannot "
                "be formed"
            )
        d = d.assign(won=opps.loc[d.index, "status"].eq(schema.WON))
        try:
            disc = _deal_discounts(ds).set_index(opps.index)["discount"]
            d["discount"] = disc.loc[d.index]
        except InsufficientDataError:
            d["discount"] = np.nan
        parts = []
        for _, g in d.groupby("product", sort=True):
            distinct = np.sort(g["amount"].unique())
            if len(distinct) <= int(n_bands):  # one band per amount
                codes = pd.Series(np.searchsorted(distinct, g["amount"]), index=g.index)
            else:
                codes = pd.qcut(g["amount"], int(n_bands), labels=False, duplicates="drop")
            k = int(codes.max()) + 1
            names = {1: ["all"], 2: ["smaller", "larger"], 3: ["small", "medium", "large"]}.get(
                k, [f"size band {i + 1}" for i in range(k)]
            )
            g = g.assign(band_order=codes.astype("int64"))
            g["band"] = [names[i] for i in g["band_order"]]
            lims = g.groupby("band_order")["amount"].agg(["min", "max"])
            g["band_low"] = g["band_order"].map(lims["min"])
            g["band_high"] = g["band_order"].map(lims["max"])
            parts.append(g)
        d = pd.concat(parts)
    out = (
        d.groupby(["product", "band_order"], sort=True)
        .agg(
            band=("band", "first"),
            band_low=("band_low", "first"),
            band_high=("band_high", "first"),
            closed=("won", "size"),
            won=("won", "sum"),
            avg_discount=("discount", "mean"),
            avg_amount=("amount", "mean"),
        )
        .reset_index()
    )
    out["won"] = out["won"].astype("int64")
    out["win_rate"] = out["won"] / out["closed"]
    out["win_rate_low"], out["win_rate_high"] = wilson_interval(
        out["won"].to_numpy(), out["closed"].to_numpy()
    )
    out["product"] = out["product"].astype("str")
    out["band"] = out["band"].astype("str")
    cols = [
        "product",
        "band",
        "band_order",
        "band_low",
        "band_high",
        "closed",
        "won",
        "win_rate",
        "win_rate_low",
        "win_rate_high",
        "avg_discount",
        "avg_amount",
    ]
    return out[cols]


# --------------------------------------------------------------------------- sensitivity


def compute_sensitivity(
    data: Dataset,
    *,
    as_of,
    horizon_days: int = 365,
    period_days: int = 365,
    win_rate_pts: float = 5.0,
    discount_cut_pct: float = 10.0,
    cycle_days: float = 7.0,
    leads_pct: float = 10.0,
    discount_effect: bool = True,
) -> pd.DataFrame:
    """Revenue impact per product of small what-if changes over a horizon, ranked.

    The baseline of each product is its last ``period_days`` days (ending on ``as_of``)
    run at the same pace over the next ``horizon_days`` days. With ``P`` = period_days,
    ``H`` = horizon_days, and per product ``C`` = deals closed (won + lost) in the
    period, ``p`` = win rate, ``A`` = average won deal, ``W`` = won revenue in the
    period, ``d`` = revenue-weighted discount of won deals, ``c`` = median cycle of won
    deals (days):

    - **baseline** ``R = W * H / P`` (= closings over the horizon ``C*H/P`` x ``p`` x ``A``).
    - **win rate +x pts**: ``p' = min(p + x/100, 1)``; ``ΔR = (C*H/P) * (p' - p) * A``.
    - **discount -y %**: discounts ``y`` % smaller (relative: ``d' = d * (1 - y/100)``), so
      the average won deal becomes ``A' = A * (1 - d') / (1 - d)``; when
      ``discount_effect`` is on and :func:`compute_discount_effect` finds a significant
      slope ``b`` (win-rate change per unit of discount), the win rate moves too:
      ``p' = clip(p - b * (d - d'), 0, 1)``. ``ΔR = (C*H/P) * (p'*A' - p*A)``. Needs
      list prices.
    - **cycle -z days**: a cycle ``z`` days shorter pulls ``z`` days' worth of closings
      into the horizon once: ``ΔR = W / P * min(z, c)``.
    - **leads +n %**: opportunities grow with leads (constant yield), and only those
      whose cycle ends inside the horizon count: ``ΔR = R * n/100 * max(0, 1 - c/H)``.

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
    horizon_days : int, default 365
        How far ahead the revenue is counted.
    period_days : int, default 365
        History the baseline is taken from.
    win_rate_pts, discount_cut_pct, cycle_days, leads_pct : float
        Size of each lever (0 leaves the lever out): win rate + points, discount - % of
        itself, cycle - days, leads + %.
    discount_effect : bool, default True
        Let a smaller discount lower the win rate where the data shows discounts win
        deals (see above).

    Returns
    -------
    DataFrame
        One row per product and lever, ranked by ``revenue_change`` (largest first):
        ``rank, product, lever, scenario, baseline_revenue, scenario_revenue,
        revenue_change, change_pct, arithmetic, note``. ``arithmetic`` spells the
        computation with the product's numbers; ``note`` says why a lever could not be
        computed (no closed deals, no list price...). ``attrs["inputs"]`` holds the
        per-product inputs (``closed, won, win_rate, avg_won_deal, won_revenue, discount,
        median_cycle_days, discount_slope``).

    Raises
    ------
    InsufficientDataError
        When there is no product column or no deal closed in the period.
    ValueError
        For non-positive ``horizon_days``/``period_days`` or negative levers.

    Examples
    --------
    >>> compute_sensitivity(ds, as_of="2025-12-31", win_rate_pts=5).head()  # doctest: +SKIP
    """
    _positive(horizon_days, "horizon_days")
    _positive(period_days, "period_days")
    for name, value in (
        ("win_rate_pts", win_rate_pts),
        ("discount_cut_pct", discount_cut_pct),
        ("cycle_days", cycle_days),
        ("leads_pct", leads_pct),
    ):
        _non_negative(value, name)
    if discount_cut_pct > 100:
        raise ValueError(f"discount_cut_pct={discount_cut_pct!r} must be at most 100")
    ds, ts = _prepare(data, as_of)
    _need_column(ds, "product", "the what-if analysis per product")
    opps = ds.opportunities
    group = _group_labels(ds, opps, "product")
    try:
        discounts = _deal_discounts(ds)
    except InsufficientDataError:
        discounts = None
    core = _scorecard_core(ds, ts, group, int(period_days), discounts)
    core = core.loc[core.index != NONE_LABEL]
    if (core["won"] + core["lost"]).sum() == 0:
        raise InsufficientDataError(
            f"no deal was won or lost in the {period_days} days before {ts.date()}; the "
            "what-if needs a closed history (use a longer period_days)"
        )
    slopes = pd.Series(dtype="float64")
    if discounts is not None and discount_effect:
        try:
            eff = _discount_effect(ds, ts, history_days=None, min_deals=20)
            sig = _isin(eff["verdict"], ["more discount, more wins", "more discount, fewer wins"])
            slopes = eff.set_index("product")["slope_per_10pts"].where(sig.to_numpy(), 0.0) * 10
        except InsufficientDataError:
            pass
    H, P = float(horizon_days), float(period_days)
    rows = []
    for product, r in core.iterrows():
        closed = int(r["won"] + r["lost"])
        p, A, W = r["win_rate"], r["avg_won_deal"], r["won_revenue"]
        d, c = r["discount"], r["median_cycle_days"]
        R = W * H / P
        closings = closed * H / P
        levers = []
        if win_rate_pts > 0:
            levers.append(("win rate", f"win rate +{win_rate_pts:g} pts"))
        if discount_cut_pct > 0:
            levers.append(("discount", f"discount −{discount_cut_pct:g} %"))
        if cycle_days > 0:
            levers.append(("cycle", f"cycle −{cycle_days:g} days"))
        if leads_pct > 0:
            levers.append(("leads", f"leads +{leads_pct:g} %"))
        for lever, scenario in levers:
            delta, text, note = np.nan, "", ""
            if closed == 0:
                note = "no deal closed in the period"
            elif r["won"] == 0 or pd.isna(A):
                note = "no won deal with an amount in the period"
            elif lever == "win rate":
                p2 = min(p + win_rate_pts / 100, 1.0)
                delta = closings * (p2 - p) * A
                text = (
                    f"{closings:,.0f} closings × ({_pct(p, 1)} → {_pct(p2, 1)}) "
                    f"× {A:,.0f} avg won deal"
                )
            elif lever == "discount":
                if pd.isna(d):
                    note = "no list price (or no won deal with a discount)"
                else:
                    d2 = d * (1 - discount_cut_pct / 100)
                    A2 = A * (1 - d2) / (1 - d) if d < 1 else A
                    b = float(slopes.get(product, 0.0)) if len(slopes) else 0.0
                    b = 0.0 if pd.isna(b) else b
                    p2 = float(np.clip(p - b * (d - d2), 0, 1))
                    delta = closings * (p2 * A2 - p * A)
                    effect = (
                        f"win rate {_pct(p, 1)} → {_pct(p2, 1)} (discount effect "
                        f"{b / 10:+.1%} per 10 pts)"
                        if b
                        else f"win rate {_pct(p, 1)} unchanged (no clear discount effect)"
                    )
                    text = (
                        f"{closings:,.0f} closings; discount {_pct(d, 1)} → {_pct(d2, 1)}: "
                        f"avg won deal {A:,.0f} → {A2:,.0f}; {effect}"
                    )
            elif lever == "cycle":
                if pd.isna(c):
                    note = "no cycle length (no won deal with dates)"
                else:
                    z = min(cycle_days, c)
                    delta = W / P * z
                    text = f"{W / P:,.0f} won revenue per day × {z:g} days pulled into the horizon"
            elif lever == "leads":
                if pd.isna(c):
                    note = "no cycle length (no won deal with dates)"
                else:
                    frac = max(0.0, 1 - c / H)
                    delta = R * leads_pct / 100 * frac
                    text = (
                        f"{R:,.0f} baseline × {leads_pct:g} % more deals × {frac:.0%} of "
                        f"the horizon left after the {c:.0f}-day median cycle"
                    )
            rows.append(
                {
                    "product": product,
                    "lever": lever,
                    "scenario": scenario,
                    "baseline_revenue": R if closed else np.nan,
                    "scenario_revenue": R + delta,
                    "revenue_change": delta,
                    "change_pct": delta / R if R > 0 else np.nan,
                    "arithmetic": text,
                    "note": note,
                }
            )
    cols = [
        "rank",
        "product",
        "lever",
        "scenario",
        "baseline_revenue",
        "scenario_revenue",
        "revenue_change",
        "change_pct",
        "arithmetic",
        "note",
    ]
    if not rows:
        raise InsufficientDataError(
            "every what-if lever is 0: set at least one of win_rate_pts, discount_cut_pct, "
            "cycle_days, leads_pct"
        )
    out = pd.DataFrame(rows)
    out = out.sort_values(
        ["revenue_change", "product", "lever"],
        ascending=[False, True, True],
        na_position="last",
        kind="stable",
    ).reset_index(drop=True)
    out["rank"] = pd.array(np.arange(1, len(out) + 1), dtype="Int64")
    out.loc[out["revenue_change"].isna(), "rank"] = pd.NA
    for col in ("product", "lever", "scenario", "arithmetic", "note"):
        out[col] = out[col].astype("str")
    inputs = pd.DataFrame(
        {
            "closed": core["won"] + core["lost"],
            "won": core["won"],
            "win_rate": core["win_rate"],
            "avg_won_deal": core["avg_won_deal"],
            "won_revenue": core["won_revenue"],
            "discount": core["discount"],
            "median_cycle_days": core["median_cycle_days"],
            "discount_slope": slopes.reindex(core.index),
        }
    ).rename_axis("product")
    out = out[cols]
    out.attrs["inputs"] = inputs.reset_index()
    return out


# --------------------------------------------------------------------------- affinity


def _baskets(ds: Dataset, ts, basis: str) -> pd.DataFrame:
    """Account x product table of booleans: the account bought (or dealt in) the product."""
    _check_choice(basis, "basis", ("won", "any"))
    _need_column(ds, "product", "product affinity")
    _need_column(ds, "account", "product affinity across accounts")
    opps = ds.opportunities
    rows = opps.dropna(subset=["account", "product"])
    if basis == "won":
        rows = rows.loc[rows["status"].eq(schema.WON)]
    if rows.empty:
        raise InsufficientDataError(
            "no account has bought anything yet (no won deal with an account and a product); "
            "affinity needs purchases by several accounts, or basis='any' to count every deal"
        )
    basket = pd.crosstab(rows["account"], rows["product"]).gt(0)
    products = sorted(opps["product"].dropna().astype("str").unique())
    return basket.reindex(columns=products, fill_value=False)


def compute_affinity(
    data: Dataset, *, as_of, basis: str = "won", min_accounts: int = 1
) -> pd.DataFrame:
    """Which products are bought together, across accounts (association rules A → B).

    An account *has* a product when it won a deal for it by ``as_of`` (``basis="won"``)
    or had any deal for it (``basis="any"``). With ``N`` accounts that have at least one
    product:

    - **support** = accounts with both A and B / N;
    - **confidence** = accounts with both / accounts with A (how often A's buyers also
      have B), with a 95 % Wilson interval;
    - **lift** = confidence / (accounts with B / N): above 1, A's buyers take B more
      often than accounts in general.

    Parameters
    ----------
    data : Dataset
        Needs ``product`` and ``account`` columns.
    as_of : str, date or Timestamp
    basis : {"won", "any"}, default "won"
    min_accounts : int, default 1
        Leave out rules whose antecedent A has fewer accounts.

    Returns
    -------
    DataFrame
        ``antecedent, consequent, accounts, antecedent_accounts, consequent_accounts,
        both, support, confidence, confidence_low, confidence_high, base_rate, lift,
        lift_low`` for every ordered pair of different products (B bought by at least one
        account), sorted by lift then support (largest first). ``base_rate`` = accounts
        with B / N; ``lift_low`` = ``confidence_low / base_rate``, the lift at the low end
        of the interval (above 1: clearly above chance).

    Raises
    ------
    InsufficientDataError
        With fewer than two accounts or two products having purchases.

    Examples
    --------
    >>> compute_affinity(ds, as_of="2025-12-31").head(3)  # doctest: +SKIP
    """
    ds, ts = _prepare(data, as_of)
    _positive(min_accounts, "min_accounts")
    basket = _baskets(ds, ts, basis)
    return _affinity(basket, min_accounts=int(min_accounts))


def _affinity(basket: pd.DataFrame, *, min_accounts: int = 1) -> pd.DataFrame:
    n = len(basket)
    counts = basket.sum()
    if n < 2:
        raise InsufficientDataError(
            f"product affinity compares accounts, but only {n} account has a product; it "
            "needs purchases by at least two accounts"
        )
    if int((counts > 0).sum()) < 2:
        raise InsufficientDataError(
            "product affinity needs at least two products that accounts have bought; "
            f"only {', '.join(counts.index[counts > 0]) or 'none'} has purchases"
        )
    b = basket.to_numpy(dtype="int64")
    co = b.T @ b
    names = list(basket.columns)
    ia, ib = np.nonzero(~np.eye(len(names), dtype=bool))
    n_a = co[ia, ia]
    n_b = co[ib, ib]
    both = co[ia, ib]
    out = pd.DataFrame(
        {
            "antecedent": pd.Series(np.asarray(names, dtype=object)[ia], dtype="str"),
            "consequent": pd.Series(np.asarray(names, dtype=object)[ib], dtype="str"),
            "accounts": n,
            "antecedent_accounts": n_a,
            "consequent_accounts": n_b,
            "both": both,
        }
    )
    out = out.loc[(out["antecedent_accounts"] >= min_accounts) & (out["consequent_accounts"] > 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["support"] = out["both"] / n
        out["confidence"] = out["both"] / out["antecedent_accounts"].where(
            out["antecedent_accounts"] > 0
        )
        low, high = wilson_interval(out["both"].to_numpy(), out["antecedent_accounts"].to_numpy())
        out["confidence_low"], out["confidence_high"] = low, high
        out["base_rate"] = out["consequent_accounts"] / n
        out["lift"] = out["confidence"] / out["base_rate"]
        out["lift_low"] = out["confidence_low"] / out["base_rate"]
    out = out.sort_values(
        ["lift", "support", "antecedent", "consequent"],
        ascending=[False, False, True, True],
        na_position="last",
    )
    return out.reset_index(drop=True)


def _product_value(ds: Dataset, products: list[str], basis: str) -> np.ndarray:
    """Value of one more deal per product: average won deal (x win rate for ``any``)."""
    opps = ds.opportunities
    won = opps.loc[opps["status"].eq(schema.WON) & opps["amount"].notna()]
    value = won.groupby("product")["amount"].mean().reindex(products)
    if basis == "any":
        closed = opps.loc[_isin(opps["status"], _CLOSED)]
        value = value * closed["status"].eq(schema.WON).groupby(closed["product"]).mean()
    return value.reindex(products).to_numpy(dtype="float64")


def _recommend(basket: pd.DataFrame, have: np.ndarray, eligible: np.ndarray, m: float, basis):
    """Propensity of each eligible (row, product) cell with the rule behind it.

    ``have`` marks each row's antecedent products. The propensity of B is the highest
    smoothed confidence ``(both + m * base_B) / (n_A + m)`` over the row's products A
    (never B itself); a row with no product gets the base rate ``base_B``.

    Returns a frame ``_row, _product, propensity, because_of, evidence`` (positions).
    """
    b = basket.to_numpy(dtype="int64")
    names = list(basket.columns)
    n = len(b)
    co = b.T @ b
    n_a = np.diag(co).astype("float64")
    base = n_a / n
    with np.errstate(invalid="ignore", divide="ignore"):
        conf_s = (co + m * base[None, :]) / (n_a[:, None] + m)  # [A, B]
        lift = (co / n_a[:, None]) / base[None, :]
    np.fill_diagonal(conf_s, -np.inf)
    conf_s = np.where(n_a[:, None] > 0, conf_s, -np.inf)  # no rule from an unseen A
    r_idx, p_idx = np.nonzero(eligible)
    cand = np.where(have[r_idx][:, :, None], conf_s[None, :, :], -np.inf)  # [cell, A, B]
    cand = cand[np.arange(len(r_idx)), :, p_idx]  # [cell, A]
    best_a = cand.argmax(axis=1)
    best = cand[np.arange(len(r_idx)), best_a]
    use_rule = np.isfinite(best)
    prop = np.where(use_rule, best, base[p_idx])
    verb = "bought" if basis == "won" else "had a deal for"
    evidence, because = [], []
    for a, p, rule in zip(best_a, p_idx, use_rule, strict=True):
        if rule:
            both = int(co[a, p])
            evidence.append(
                f"{both:,} of {int(n_a[a]):,} accounts that {verb} {names[a]} also {verb} "
                f"{names[p]} ({both / n_a[a]:.0%}, lift {lift[a, p]:.1f})"
            )
            because.append(names[a])
        else:
            evidence.append(
                f"{int(n_a[p]):,} of {n:,} accounts {verb} {names[p]} (base rate {base[p]:.0%})"
            )
            because.append(None)
    return pd.DataFrame(
        {
            "_row": r_idx,
            "_product": p_idx,
            "propensity": prop,
            "because_of": pd.Series(because, dtype="str"),
            "evidence": pd.Series(evidence, dtype="str"),
        }
    )


def _won_basket(ds: Dataset, index, products) -> np.ndarray:
    opps = ds.opportunities
    rows = opps.loc[opps["status"].eq(schema.WON)].dropna(subset=["account", "product"])
    return (
        pd.crosstab(rows["account"], rows["product"])
        .gt(0)
        .reindex(index=index, columns=products, fill_value=False)
        .to_numpy()
    )


def _open_basket(ds: Dataset, index, products) -> np.ndarray:
    opps = ds.opportunities
    rows = opps.loc[opps["status"].eq(schema.OPEN)].dropna(subset=["account", "product"])
    return (
        pd.crosstab(rows["account"], rows["product"])
        .gt(0)
        .reindex(index=index, columns=products, fill_value=False)
        .to_numpy()
    )


def compute_white_space(
    data: Dataset, *, as_of, basis: str = "won", prior_strength: float = 10.0
) -> pd.DataFrame:
    """Account x product white space: what each account has not bought, and its value.

    For every account with a deal and every product, ``status`` is ``"owned"`` (a won
    deal by ``as_of``), ``"open deal"`` (being sold now) or ``"white space"``. For the
    cells that are not owned:

    - **propensity** = the highest smoothed confidence ``(both + m * base_B) / (n_A + m)``
      over the products A the account has (``m = prior_strength``; ``base_B`` = share of
      accounts having B; "has" = won, or any deal with ``basis="any"``), so a rule seen
      on few accounts is pulled towards the base rate; an account with no product gets
      the base rate ``base_B``.
    - **expected_value** = propensity x average won deal of the product (all won deals
      up to ``as_of``); with ``basis="any"`` the propensity is that of a *deal*, so it is
      also multiplied by the product's win rate.
    - **because_of**, **evidence**: the rule behind the propensity, in words.

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
    basis : {"won", "any"}, default "won"
    prior_strength : float, default 10

    Returns
    -------
    DataFrame
        ``account, product, status, propensity, expected_value, because_of, evidence``
        (``because_of`` missing for the base rate; propensity, value and evidence missing
        where owned), sorted by account and expected value (largest first).

    Raises
    ------
    InsufficientDataError
        As :func:`compute_affinity` (needs purchases by at least two accounts).

    Examples
    --------
    >>> ws = compute_white_space(ds, as_of="2025-12-31")  # doctest: +SKIP
    >>> ws[ws["status"] == "white space"].nlargest(5, "expected_value")  # doctest: +SKIP
    """
    ds, ts = _prepare(data, as_of)
    _non_negative(prior_strength, "prior_strength")
    basket = _baskets(ds, ts, basis)
    _affinity(basket)  # same checks and messages
    accounts = sorted(ds.opportunities["account"].dropna().astype("str").unique())
    products = list(basket.columns)
    have = basket.reindex(index=accounts, fill_value=False).to_numpy()
    owned = _won_basket(ds, accounts, products)
    in_open = _open_basket(ds, accounts, products)
    recs = _recommend(basket, have, ~owned, float(prior_strength), basis)
    value = _product_value(ds, products, basis)
    acc_idx, prod_idx = np.indices(owned.shape)
    out = pd.DataFrame(
        {
            "account": pd.Series(np.asarray(accounts, dtype=object)[acc_idx.ravel()], dtype="str"),
            "product": pd.Series(np.asarray(products, dtype=object)[prod_idx.ravel()], dtype="str"),
            "status": pd.Series(
                np.where(owned, "owned", np.where(in_open, "open deal", "white space")).ravel(),
                dtype="str",
            ),
        }
    )
    flat = recs["_row"].to_numpy() * len(products) + recs["_product"].to_numpy()
    for col in ("propensity", "because_of", "evidence"):
        out[col] = recs[col].set_axis(flat).reindex(out.index)
    out["expected_value"] = out["propensity"] * value[prod_idx.ravel()]
    out = out[
        ["account", "product", "status", "propensity", "expected_value", "because_of", "evidence"]
    ]
    out = out.sort_values(
        ["account", "expected_value", "product"],
        ascending=[True, False, True],
        na_position="last",
        kind="stable",
    )
    return out.reset_index(drop=True)


def summarise_white_space(white_space: pd.DataFrame) -> pd.DataFrame:
    """White space per product: who owns it, who is being sold it, what is left and its value.

    Parameters
    ----------
    white_space : DataFrame
        From :func:`compute_white_space`.

    Returns
    -------
    DataFrame
        ``product, owned, open_deal, white_space, avg_propensity, expected_value`` (counts
        of accounts; mean propensity and summed expected value over white-space
        accounts), largest expected value first.

    Raises
    ------
    ValueError
        When ``white_space`` lacks the columns of :func:`compute_white_space`.

    Examples
    --------
    >>> summarise_white_space(compute_white_space(ds, as_of="2025-12-31"))  # doctest: +SKIP
    """
    needed = {"product", "status", "propensity", "expected_value"}
    if not needed <= set(white_space.columns):
        raise ValueError("white_space must be the output of compute_white_space")
    ws = white_space
    counts = pd.crosstab(ws["product"], ws["status"]).reindex(
        columns=["owned", "open deal", "white space"], fill_value=0
    )
    free = ws.loc[ws["status"].eq("white space")]
    agg = free.groupby("product").agg(
        avg_propensity=("propensity", "mean"), expected_value=("expected_value", "sum")
    )
    out = counts.rename(columns={"open deal": "open_deal", "white space": "white_space"}).join(agg)
    out["expected_value"] = out["expected_value"].fillna(0.0)
    out = out.astype({"owned": "int64", "open_deal": "int64", "white_space": "int64"})
    out = out.rename_axis("product").reset_index()
    out.columns.name = None
    out["product"] = out["product"].astype("str")
    return out.sort_values(["expected_value", "product"], ascending=[False, True]).reset_index(
        drop=True
    )


def compute_next_best(
    data: Dataset,
    *,
    as_of,
    per: str = "account",
    top_n: int = 3,
    basis: str = "won",
    prior_strength: float = 10.0,
) -> pd.DataFrame:
    """Next-best products per account or per open deal, with the evidence.

    - ``per="account"``: the account's white-space products (not owned, no open deal)
      ranked by expected value (see :func:`compute_white_space`).
    - ``per="deal"``: for each open deal, products to offer alongside it: the deal's own
      product counts as had (the prospect is buying it) next to what the account already
      has; products owned or already in an open deal of the account are left out.
      Propensity and expected value as in :func:`compute_white_space`.

    Parameters
    ----------
    data : Dataset
    as_of : str, date or Timestamp
    per : {"account", "deal"}, default "account"
    top_n : int, default 3
        Recommendations per account (or deal).
    basis : {"won", "any"}, default "won"
    prior_strength : float, default 10

    Returns
    -------
    DataFrame
        ``per="account"``: ``account, rank, product, propensity, expected_value,
        because_of, evidence``; ``per="deal"``: ``opportunity_id, account, deal_product,
        stage, rank, product, propensity, expected_value, because_of, evidence``.
        Accounts (deals) are ordered by their best expected value, largest first.

    Raises
    ------
    InsufficientDataError
        As :func:`compute_affinity`, or when there is no open deal (``per="deal"``).
    ValueError
        For an unknown ``per`` or ``top_n < 1``.

    Examples
    --------
    >>> compute_next_best(ds, as_of="2025-12-31", per="deal", top_n=2)  # doctest: +SKIP
    """
    _check_choice(per, "per", ("account", "deal"))
    if int(top_n) < 1:
        raise ValueError(f"top_n={top_n!r} must be at least 1")
    top_n = int(top_n)
    key = "account" if per == "account" else "opportunity_id"
    if per == "account":
        ws = compute_white_space(data, as_of=as_of, basis=basis, prior_strength=prior_strength)
        out = ws.loc[ws["status"].eq("white space") & ws["expected_value"].notna()]
        head = ["account"]
    else:
        ds, ts = _prepare(data, as_of)
        _non_negative(prior_strength, "prior_strength")
        basket = _baskets(ds, ts, basis)
        _affinity(basket)
        products = list(basket.columns)
        opps = ds.opportunities
        deals = opps.loc[opps["status"].eq(schema.OPEN)].dropna(subset=["account", "product"])
        deals = deals.loc[_isin(deals["product"], products)].reset_index(drop=True)
        if deals.empty:
            raise InsufficientDataError(
                f"no deal with an account and a product is open on {ts.date()}, so there is "
                "no deal to recommend add-ons for"
            )
        accounts = deals["account"]
        have = basket.reindex(index=accounts, fill_value=False).to_numpy().copy()
        have[np.arange(len(deals)), deals["product"].map(products.index).to_numpy()] = True
        skip = _won_basket(ds, accounts, products) | _open_basket(ds, accounts, products)
        recs = _recommend(basket, have, ~skip, float(prior_strength), basis)
        value = _product_value(ds, products, basis)
        rows = deals.iloc[recs["_row"].to_numpy()].reset_index(drop=True)
        out = pd.DataFrame(
            {
                "opportunity_id": rows["opportunity_id"].astype("str"),
                "account": rows["account"].astype("str"),
                "deal_product": rows["product"].astype("str"),
                "stage": rows["stage"].astype("str"),
                "product": pd.Series(
                    np.asarray(products, dtype=object)[recs["_product"]], dtype="str"
                ),
                "propensity": recs["propensity"],
                "expected_value": recs["propensity"] * value[recs["_product"].to_numpy()],
                "because_of": recs["because_of"],
                "evidence": recs["evidence"],
            }
        )
        out = out.loc[out["expected_value"].notna()]
        head = ["opportunity_id", "account", "deal_product", "stage"]
    out = out.sort_values([key, "expected_value", "product"], ascending=[True, False, True])
    out = out.groupby(key, sort=False).head(top_n).copy()
    out["rank"] = (out.groupby(key, sort=False).cumcount() + 1).astype("int64")
    best = out.groupby(key)["expected_value"].transform("max")
    out = out.assign(_best=best).sort_values(["_best", key, "rank"], ascending=[False, True, True])
    cols = [*head, "rank", "product", "propensity", "expected_value", "because_of", "evidence"]
    return out[cols].reset_index(drop=True)


# --------------------------------------------------------------------------- narrative


def describe_scorecard(card: pd.DataFrame, *, group_by: str, currency: str = "") -> str:
    """A short Markdown narrative led by the scorecard's numbers.

    Parameters
    ----------
    card : DataFrame
        From :func:`compute_scorecard` (an ``All`` row, if present, gives the totals).
    group_by : str
        Its grouping column.
    currency : str, optional
        Shown after money amounts.

    Returns
    -------
    str
        Markdown bullet points.
    """
    rows = card.loc[card[group_by].ne("All")] if "All" in set(card[group_by]) else card
    closed = rows["won"] + rows["lost"]
    won, n_closed = int(rows["won"].sum()), int(closed.sum())
    lines = []
    start, end = card.attrs.get("period", (None, None))
    span = f" ({start:%Y-%m-%d} – {end:%Y-%m-%d})" if start is not None else ""
    if n_closed:
        lo, hi = wilson_interval(won, n_closed)
        lines.append(
            f"In the period{span}, **{won:,} of {n_closed:,}** closed deals were won "
            f"(**{won / n_closed:.0%}**, 95 % interval {lo:.0%}–{hi:.0%}), bringing "
            f"**{_money(rows['won_revenue'].sum(), currency)}**."
        )
    else:
        lines.append(f"No deal was won or lost in the period{span}.")
    if rows["won_revenue"].sum() > 0:
        top = rows.iloc[0]
        lines.append(
            f"**{top[group_by]}** brings the most won revenue: "
            f"{_money(top['won_revenue'], currency)} ({_pct(top['revenue_share'])} of the total)."
        )
    ok = rows.loc[closed >= 20]
    if len(ok) >= 2:
        best = ok.loc[ok["win_rate"].idxmax()]
        worst = ok.loc[ok["win_rate"].idxmin()]
        lines.append(
            f"Best win rate: **{best[group_by]}** {_pct(best['win_rate'])} "
            f"({_pct(best['win_rate_low'])}–{_pct(best['win_rate_high'])}, "
            f"{int(best['won'] + best['lost']):,} closed); lowest: **{worst[group_by]}** "
            f"{_pct(worst['win_rate'])} ({_pct(worst['win_rate_low'])}–"
            f"{_pct(worst['win_rate_high'])}, {int(worst['won'] + worst['lost']):,} closed)."
        )
    chg = rows.loc[
        rows["win_rate_change"].notna()
        & (closed >= 20)
        & (rows["won_prev"] + rows["lost_prev"] >= 20)
    ]
    if len(chg):
        mover = chg.loc[chg["win_rate_change"].abs().idxmax()]
        word = "rose" if mover["win_rate_change"] > 0 else "fell"
        lines.append(
            f"Biggest change against the previous period: **{mover[group_by]}** win rate "
            f"{word} from {_pct(mover['win_rate_prev'])} to {_pct(mover['win_rate'])} "
            f"({mover['win_rate_change'] * 100:+.0f} pts)."
        )
    if rows["weighted_pipeline"].notna().any() and rows["open_pipeline"].sum() > 0:
        big = rows.loc[rows["weighted_pipeline"].idxmax()]
        lines.append(
            f"Open pipeline {_money(rows['open_pipeline'].sum(), currency)} in "
            f"{int(rows['open'].sum()):,} deals, worth "
            f"{_money(rows['weighted_pipeline'].sum(), currency)} weighted by win rates "
            f"learned from history; the largest is **{big[group_by]}** "
            f"({_money(big['weighted_pipeline'], currency)})."
        )
    if rows["discount"].notna().any():
        d = rows.loc[rows["discount"].notna()]
        deep = d.loc[d["discount"].idxmax()]
        lines.append(
            f"Deepest average discount off list price: **{deep[group_by]}** "
            f"{_pct(deep['discount'], 1)}."
        )
    lines += card.attrs.get("notes", [])
    return "\n".join(f"- {line}" for line in lines)


def describe_sensitivity(sens: pd.DataFrame, *, horizon_days: int, currency: str = "") -> str:
    """Markdown: the three what-if moves worth most, and what could not be computed."""
    ranked = sens.loc[sens["revenue_change"].notna()]
    lines = []
    for _, r in ranked.head(3).iterrows():
        lines.append(
            f"**{r['product']}, {r['scenario']}**: {_money(r['revenue_change'], currency)} "
            f"more over {horizon_days} days ({r['change_pct']:+.1%} on its baseline)."
        )
    skipped = sens.loc[sens["revenue_change"].isna()]
    if len(skipped):
        reasons = skipped.groupby("note")["product"].apply(lambda s: ", ".join(sorted(set(s))))
        for note, prods in reasons.items():
            lines.append(f"Not computed for {prods}: {note}.")
    return "\n".join(f"- {line}" for line in lines)


def describe_discount_effect(effect: pd.DataFrame) -> str:
    """Markdown: where discounting goes with winning, and where it does not."""
    lines = []
    for _, r in effect.iterrows():
        if r["verdict"] == "too few deals":
            lines.append(f"**{r['product']}**: too few closed deals ({r['closed']}) to tell.")
            continue
        lines.append(
            f"**{r['product']}**: {r['verdict']} — each 10 discount points go with a win rate "
            f"{r['slope_per_10pts'] * 100:+.1f} pts (95 % interval "
            f"{r['slope_low'] * 100:+.1f} to {r['slope_high'] * 100:+.1f}; "
            f"{r['closed']:,} closed deals)."
        )
    return "\n".join(f"- {line}" for line in lines)


def describe_affinity(aff: pd.DataFrame, *, top: int = 3, min_both: int = 5) -> str:
    """Markdown: the strongest product pairs across accounts.

    Pairs whose lift is above 1 even at the low end of the confidence interval
    (``lift_low > 1``) are reported as clear; otherwise the highest lifts seen on at least
    ``min_both`` accounts are reported as not clearly above chance.
    """
    n = int(aff["accounts"].iloc[0]) if len(aff) else 0
    lines = [f"{n:,} accounts have at least one product."]
    clear = aff.loc[aff["lift_low"] > 1].head(top)
    weak = aff.loc[(aff["lift"] > 1) & (aff["both"] >= min_both)].head(top)
    for _, r in (clear if len(clear) else weak).iterrows():
        lines.append(
            f"Buyers of **{r['antecedent']}** also bought **{r['consequent']}** in "
            f"{_pct(r['confidence'])} of cases ({int(r['both']):,} of "
            f"{int(r['antecedent_accounts']):,} accounts) against a "
            f"{_pct(r['base_rate'])} base rate: lift "
            f"{r['lift']:.1f}" + ("." if len(clear) else " (not clearly above chance).")
        )
    if clear.empty and weak.empty:
        lines.append("No pair of products is bought together more often than chance.")
    return "\n".join(f"- {line}" for line in lines)


def describe_white_space(summary: pd.DataFrame, *, currency: str = "") -> str:
    """Markdown: where the white space is worth most."""
    lines = []
    total = summary["expected_value"].sum()
    lines.append(
        f"The white space (account × product not bought and not in an open deal) is worth "
        f"**{_money(total, currency)}** in expected value."
    )
    for _, r in summary.head(3).iterrows():
        lines.append(
            f"**{r['product']}**: {int(r['white_space']):,} accounts without it "
            f"(average propensity {_pct(r['avg_propensity'])}), "
            f"{_money(r['expected_value'], currency)} expected."
        )
    return "\n".join(f"- {line}" for line in lines)
