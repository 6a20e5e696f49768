"""Discounts: each deal's price against list, and whether discounting goes with winning.

There is no quantity column in the canonical data, so **every deal is taken as one unit
of its product at its list price**: ``discount = 1 - amount / list_price`` (products
table). A deal whose amount exceeds the list price is flagged ``above_list`` and left out
of every discount figure. See :mod:`pipeline_lib.product_potential`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

from .. import schema
from .._arrowtools import index_in
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..stats import wilson_interval
from ._common import (
    _check_choice,
    _closed_within,
    _has_values,
    _need_column,
    _positive,
    _prepare,
)

__all__ = [
    "DISCOUNT_BANDS",
    "compute_deal_discounts",
    "compute_discount_effect",
    "compute_band_win_rates",
]

#: Default lower edges of the discount bands (share of list price).
DISCOUNT_BANDS = (0.0, 0.05, 0.10, 0.20, 0.30)


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
    return _deal_discounts(ds).copy()


@memoized(copy=False)
def _deal_discounts(ds: Dataset) -> pd.DataFrame:
    """:func:`compute_deal_discounts` of a prepared dataset, once per dataset (callers
    never modify it)."""
    _need_column(ds, "product", "the discount analysis")
    products = ds.table("products")
    if not _has_values(products, "list_price"):
        raise InsufficientDataError(
            "the discount analysis needs list prices: add a products table with a "
            "'list_price' column to the source config"
        )
    opps = ds.opportunities
    prices = products.dropna(subset=["product"]).drop_duplicates("product")
    pos = index_in(opps["product"], pd.Index(prices["product"]))
    list_price = prices["list_price"].to_numpy(dtype="float64", na_value=np.nan)
    price = pd.Series(np.full(len(opps), np.nan), index=opps.index)
    price[pos >= 0] = list_price[pos[pos >= 0]]
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
        clear effect"``, ``"too few deals"``, ``"all won"``, ``"all lost"`` (one outcome
        only: no slope). Sorted by slope (largest first).

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
    keep = _closed_within(d, ts, history_days) & d["discount"].notna()
    d = d.loc[keep, ["product", "status", "amount", "list_price", "discount"]]
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
            if np.unique(won).size < 2:  # one outcome only: the slope cannot be estimated
                row["verdict"] = "all won" if won.all() else "all lost"
                rows.append(row)
                continue
            fit = _st.linregress(x, won)
            slope, se, p = fit.slope * 0.1, fit.stderr * 0.1, fit.pvalue
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
        d = _discount_bands(ds, ts, bands=bands, history_days=history_days)
    else:
        d = _size_bands(ds, ts, n_bands=n_bands, history_days=history_days)
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


def _discount_bands(ds: Dataset, ts, *, bands, history_days) -> pd.DataFrame:
    """Closed deals with a discount, each with its discount band."""
    edges = [float(b) for b in bands]
    if not edges or any(b2 <= b1 for b1, b2 in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"bands={bands!r} must be increasing lower edges, e.g. (0, 0.1)")
    d = _closed_discounts(ds, ts, history_days)
    idx = np.searchsorted(np.asarray(edges), d["discount"].to_numpy(), side="right") - 1
    d = d.assign(band_order=np.maximum(idx, 0))
    highs = [*edges[1:], None]
    order = d["band_order"].to_numpy()
    labels = [_band_label(lo, hi) for lo, hi in zip(edges, highs, strict=True)]
    d["band"] = np.asarray(labels, dtype=object)[order]
    d["band_low"] = np.asarray(edges, dtype="float64")[order]
    d["band_high"] = np.asarray([np.nan if h is None else h for h in highs], dtype="float64")[order]
    return d


def _size_bands(ds: Dataset, ts, *, n_bands, history_days) -> pd.DataFrame:
    """Closed deals with an amount, each with its deal-size band within its product."""
    if int(n_bands) < 1:
        raise ValueError(f"n_bands={n_bands!r} must be at least 1")
    _need_column(ds, "product", "deal-size bands per product")
    opps = ds.opportunities
    closed = _closed_within(opps, ts, history_days) & opps["amount"].notna()
    d = opps.loc[closed & opps["product"].notna(), ["opportunity_id", "product", "amount"]]
    if d.empty:
        raise InsufficientDataError(
            "no won or lost deal has an amount and a product, so deal-size bands cannot be formed"
        )
    rows = np.flatnonzero((closed & opps["product"].notna()).to_numpy())
    d = d.assign(won=opps["status"].iloc[rows].eq(schema.WON).to_numpy())
    try:
        d["discount"] = _deal_discounts(ds)["discount"].to_numpy()[rows]
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
        g["band"] = np.asarray(names, dtype=object)[g["band_order"].to_numpy()]
        lims = g.groupby("band_order")["amount"].agg(["min", "max"])
        g["band_low"] = g["band_order"].map(lims["min"])
        g["band_high"] = g["band_order"].map(lims["max"])
        parts.append(g)
    return pd.concat(parts)
