"""What a prospect may buy: product affinity across accounts, white space, next best.

An account *has* a product when it won a deal for it (``basis="won"``) or had any deal
for it (``basis="any"``). :func:`compute_affinity` gives the association rules A → B;
:func:`compute_white_space` and :func:`compute_next_best` turn the best smoothed rule
into a propensity and an expected value for what an account (or an open deal) lacks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import schema
from .._arrowtools import index_in
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..stats import wilson_interval
from ._common import (
    _check_choice,
    _codes,
    _need_column,
    _non_negative,
    _positive,
    _prepare,
    _status,
)

__all__ = [
    "compute_affinity",
    "compute_white_space",
    "summarise_white_space",
    "compute_next_best",
]


@memoized(copy=False)
def _cells(ds: Dataset) -> tuple[np.ndarray, pd.Index, np.ndarray, pd.Index]:
    """Each deal's account and product as codes into the sorted accounts and products
    (-1 where missing), computed once per dataset and shared by every matrix below."""
    opps = ds.opportunities
    account, accounts = _codes(opps["account"])
    product, products = _codes(opps["product"])
    return account, accounts, product, products


def _matrix(ds: Dataset, rows: np.ndarray) -> np.ndarray:
    """All accounts x all products, True where one of the deals ``rows`` links them."""
    account, accounts, product, products = _cells(ds)
    rows = rows & (account >= 0) & (product >= 0)
    out = np.zeros((len(accounts), len(products)), dtype=bool)
    out[account[rows], product[rows]] = True
    return out


def _basis_rows(ds: Dataset, basis: str) -> np.ndarray:
    """The deals that make an account *have* a product: won deals, or any deal."""
    if basis == "won":
        return _status(ds.opportunities, schema.WON)
    return np.ones(len(ds.opportunities), dtype=bool)


def _baskets(ds: Dataset, ts, basis: str) -> pd.DataFrame:
    """Account x product table of booleans: the account bought (or dealt in) the product."""
    _check_choice(basis, "basis", ("won", "any"))
    _need_column(ds, "product", "product affinity")
    _need_column(ds, "account", "product affinity across accounts")
    has = _matrix(ds, _basis_rows(ds, basis))
    present = has.any(axis=1)
    if not present.any():
        raise InsufficientDataError(
            "no account has bought anything yet (no won deal with an account and a product); "
            "affinity needs purchases by several accounts, or basis='any' to count every deal"
        )
    _, accounts, _, products = _cells(ds)
    return pd.DataFrame(
        has[present],
        index=accounts[present].rename("account"),
        columns=products.astype("str").rename("product"),
    )


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


def _check_basket(basket: pd.DataFrame) -> None:
    """Affinity needs purchases by at least two accounts and of at least two products."""
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


def _affinity(basket: pd.DataFrame, *, min_accounts: int = 1) -> pd.DataFrame:
    _check_basket(basket)
    n = len(basket)
    b = basket.to_numpy(dtype="int64")
    co = b.T @ b
    names = list(basket.columns)
    ia, ib = np.nonzero(~np.eye(len(names), dtype=bool))
    n_a = co[ia, ia]
    n_b = co[ib, ib]
    both = co[ia, ib]
    out = pd.DataFrame(
        {
            "antecedent": _labels(names, ia),
            "consequent": _labels(names, ib),
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


def _labels(names, positions) -> pd.Series:
    """``names`` at integer ``positions``, as a text Series."""
    return pd.Series(np.asarray(names, dtype=object)[np.asarray(positions)], dtype="str")


def _product_value(ds: Dataset, products: list[str], basis: str) -> np.ndarray:
    """Value of one more deal per product: average won deal (x win rate for ``any``)."""
    opps = ds.opportunities
    is_won = _status(opps, schema.WON)
    won = opps.loc[is_won & opps["amount"].notna().to_numpy(), ["product", "amount"]]
    value = won.groupby("product")["amount"].mean().reindex(products)
    if basis == "any":
        closed = opps.loc[is_won | _status(opps, schema.LOST), ["product", "status"]]
        value = value * closed["status"].eq(schema.WON).groupby(closed["product"]).mean()
    return value.reindex(products).to_numpy(dtype="float64")


def _recommend(ds: Dataset, basket: pd.DataFrame, have, eligible, *, prior_strength, basis):
    """Propensity and expected value of each eligible (row, product) cell, with its rule.

    ``have`` marks each row's antecedent products. The propensity of B is the highest
    smoothed confidence ``(both + m * base_B) / (n_A + m)`` over the row's products A
    (never B itself); a row with no product gets the base rate ``base_B``. The expected
    value is the propensity times the product's value (:func:`_product_value`).

    Returns a frame ``_row, _product, propensity, expected_value, _because, _evidence``
    (``_row`` and ``_product`` are positions; ``_because`` is the position of the product
    the rule comes from, -1 for the base rate; ``_evidence`` the position of the cell's
    text in ``attrs["evidence"]``: the texts depend only on the rule, so each is written
    once).
    """
    m = float(prior_strength)
    b = basket.to_numpy(dtype="int64")
    names = list(basket.columns)
    k = len(names)
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
    best_a, best = _best_rules(have, conf_s, r_idx, p_idx)
    use_rule = np.isfinite(best)
    prop = np.where(use_rule, best, base[p_idx])
    verb = "bought" if basis == "won" else "had a deal for"
    texts = [""] * (k * k + k)  # rule A -> B at A * k + B, base rate of B at k * k + B
    for a, p in zip(*np.nonzero(np.isfinite(conf_s)), strict=True):
        both = int(co[a, p])
        texts[a * k + p] = (
            f"{both:,} of {int(n_a[a]):,} accounts that {verb} {names[a]} also {verb} "
            f"{names[p]} ({both / n_a[a]:.0%}, lift {lift[a, p]:.1f})"
        )
    for p in range(k):
        texts[k * k + p] = (
            f"{int(n_a[p]):,} of {n:,} accounts {verb} {names[p]} (base rate {base[p]:.0%})"
        )
    out = pd.DataFrame(
        {
            "_row": r_idx,
            "_product": p_idx,
            "propensity": prop,
            "expected_value": prop * _product_value(ds, names, basis)[p_idx],
            "_because": np.where(use_rule, best_a, -1),
            "_evidence": np.where(use_rule, best_a * k + p_idx, k * k + p_idx),
        },
        copy=False,  # fresh arrays
    )
    out.attrs["evidence"] = texts
    return out


def _best_rules(have: np.ndarray, conf_s: np.ndarray, r_idx: np.ndarray, p_idx: np.ndarray):
    """For each cell (row ``r_idx``, product ``p_idx``): the antecedent A with the highest
    ``conf_s[A, p]`` among the row's products (the first on ties) and that confidence
    (-inf when the row has none).

    Rows with the same products get the same answer, so it is worked out once per distinct
    set of products (few of them) and looked up per cell.
    """
    k = have.shape[1]
    if k <= 62:
        pattern = have.astype("int64") @ (np.int64(1) << np.arange(k, dtype="int64"))
        distinct, first, inverse = np.unique(pattern, return_index=True, return_inverse=True)
        if len(distinct) * k * k <= 50_000_000:
            cand = np.where(have[first][:, :, None], conf_s[None, :, :], -np.inf)  # [u, A, B]
            table_a = cand.argmax(axis=1)  # [u, B]
            table = np.take_along_axis(cand, table_a[:, None, :], axis=1)[:, 0, :]
            u = inverse.reshape(-1)[r_idx]
            return table_a[u, p_idx], table[u, p_idx]
    cand = np.where(have[r_idx], conf_s[:, p_idx].T, -np.inf)  # [cell, A]
    best_a = cand.argmax(axis=1)
    return best_a, cand[np.arange(len(r_idx)), best_a]


def _text(labels, codes: np.ndarray) -> pd.Series:
    """Text Series of ``labels[codes]`` (missing where a code is -1), by one Arrow take."""
    values = pd.Index(labels if isinstance(labels, pd.Index) else list(labels)).astype("str")
    return pd.Series(values.array.take(np.asarray(codes), allow_fill=True))


def _checked_basket(data, as_of, basis: str, prior_strength: float):
    """The dataset, ``as_of`` and basket of a recommendation, with the affinity's checks."""
    ds, ts = _prepare(data, as_of)
    _non_negative(prior_strength, "prior_strength")
    basket = _baskets(ds, ts, basis)
    _check_basket(basket)  # same checks and messages as compute_affinity
    return ds, ts, basket


_WS_STATUS = ("owned", "open deal", "white space")


@memoized(copy=False)
def _white_space(ds: Dataset, basis: str, prior_strength: float) -> pd.DataFrame:
    """Every account x product cell (columns ``_account, _product, _status`` as positions
    into the sorted accounts, products and :data:`_WS_STATUS`, then ``propensity,
    expected_value, _because, _evidence`` as in :func:`_recommend`), in the order of
    :func:`compute_white_space`; ``attrs`` holds ``accounts``, ``products`` and
    ``evidence``. Shared by :func:`compute_white_space` and :func:`compute_next_best`."""
    basket = _baskets(ds, ds.as_of, basis)
    _check_basket(basket)
    _, accounts, _, _ = _cells(ds)
    products = list(basket.columns)
    owned = _matrix(ds, _status(ds.opportunities, schema.WON))
    have = owned if basis == "won" else _matrix(ds, _basis_rows(ds, basis))
    in_open = _matrix(ds, _status(ds.opportunities, schema.OPEN))
    recs = _recommend(ds, basket, have, ~owned, prior_strength=prior_strength, basis=basis)
    n_cells = owned.size
    flat = recs["_row"].to_numpy() * len(products) + recs["_product"].to_numpy()
    expected = np.full(n_cells, np.nan)
    expected[flat] = recs["expected_value"].to_numpy()
    propensity = np.full(n_cells, np.nan)
    propensity[flat] = recs["propensity"].to_numpy()
    because = np.full(n_cells, -1)
    because[flat] = recs["_because"].to_numpy()
    evidence = np.full(n_cells, -1)
    evidence[flat] = recs["_evidence"].to_numpy()
    account, product = (a.ravel() for a in np.indices(owned.shape))
    # sorted by account, expected value (largest first, missing last), product: the cells
    # are by account then product already, so a stable sort within each account's row
    key = np.where(np.isnan(expected), np.inf, -expected).reshape(owned.shape)
    within = np.argsort(key, axis=1, kind="stable")
    order = (within + np.arange(owned.shape[0])[:, None] * owned.shape[1]).ravel()
    out = pd.DataFrame(
        {
            "_account": account[order],
            "_product": product[order],
            "_status": np.where(owned, 0, np.where(in_open, 1, 2)).ravel()[order],
            "propensity": propensity[order],
            "expected_value": expected[order],
            "_because": because[order],
            "_evidence": evidence[order],
        },
        copy=False,  # fresh arrays
    )
    out.attrs.update(
        accounts=accounts.astype("str"), products=products, evidence=recs.attrs["evidence"]
    )
    return out


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
    ds, _, _ = _checked_basket(data, as_of, basis, prior_strength)
    cells = _white_space(ds, basis, float(prior_strength))
    a = cells.attrs
    return pd.DataFrame(
        {
            "account": _text(a["accounts"], cells["_account"]),
            "product": _text(a["products"], cells["_product"]),
            "status": _text(_WS_STATUS, cells["_status"]),
            "propensity": cells["propensity"],
            "expected_value": cells["expected_value"],
            "because_of": _text(a["products"], cells["_because"]),
            "evidence": _text(a["evidence"], cells["_evidence"]),
        }
    )


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
    product, products = _codes(ws["product"])
    status = index_in(ws["status"], pd.Index(list(_WS_STATUS)))
    counted = (product >= 0) & ws["status"].notna().to_numpy()  # rows a crosstab counts
    present = np.bincount(product[counted], minlength=len(products)) > 0
    ok = (product >= 0) & (status >= 0)
    cells = np.bincount(product[ok] * 3 + status[ok], minlength=3 * len(products))
    counts = pd.DataFrame(
        cells.reshape(-1, 3)[present], index=products[present], columns=list(_WS_STATUS)
    )
    free = (product >= 0) & (status == 2)
    agg = pd.DataFrame(
        {
            "propensity": ws["propensity"].to_numpy()[free],
            "expected_value": ws["expected_value"].to_numpy()[free],
        }
    ).groupby(product[free])
    agg = agg.agg(avg_propensity=("propensity", "mean"), expected_value=("expected_value", "sum"))
    agg.index = products.take(agg.index)
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
    if per == "account":
        ds, _, _ = _checked_basket(data, as_of, basis, prior_strength)
        cells = _white_space(ds, basis, float(prior_strength))
        keep = (cells["_status"].to_numpy() == 2) & cells["expected_value"].notna().to_numpy()
        recs = cells.loc[keep]
        key = recs["_account"].to_numpy()
        pick, rank = _top(key, recs["_product"].to_numpy(), recs["expected_value"], top_n)
        recs = recs.iloc[pick]
        a = cells.attrs
        out = pd.DataFrame({"account": _text(a["accounts"], recs["_account"])})
    else:
        ds, ts, basket = _checked_basket(data, as_of, basis, prior_strength)
        products = list(basket.columns)
        opps = ds.opportunities
        account, _, product, _ = _cells(ds)
        deals = np.flatnonzero(_status(opps, schema.OPEN) & (account >= 0) & (product >= 0))
        if not len(deals):
            raise InsufficientDataError(
                f"no deal with an account and a product is open on {ts.date()}, so there is "
                "no deal to recommend add-ons for"
            )
        have = _matrix(ds, _basis_rows(ds, basis))[account[deals]]
        have[np.arange(len(deals)), product[deals]] = True
        skip = _matrix(ds, _status(opps, schema.WON)) | _matrix(ds, _status(opps, schema.OPEN))
        recs = _recommend(
            ds, basket, have, ~skip[account[deals]], prior_strength=prior_strength, basis=basis
        )
        evidence = recs.attrs["evidence"]
        recs = recs.loc[recs["expected_value"].notna().to_numpy()]
        deal_key, _ = _codes(opps["opportunity_id"].take(deals).astype("str"))
        rows = deals[recs["_row"].to_numpy()]
        key = deal_key[recs["_row"].to_numpy()]
        pick, rank = _top(key, recs["_product"].to_numpy(), recs["expected_value"], top_n)
        recs, rows = recs.iloc[pick], rows[pick]
        a = {"products": products, "evidence": evidence}
        out = pd.DataFrame(
            {
                col: opps[name].take(rows).astype("str").reset_index(drop=True)
                for col, name in (
                    ("opportunity_id", "opportunity_id"),
                    ("account", "account"),
                    ("deal_product", "product"),
                    ("stage", "stage"),
                )
            }
        )
    return out.assign(
        rank=rank,
        product=_text(a["products"], recs["_product"]),
        propensity=recs["propensity"].to_numpy(),
        expected_value=recs["expected_value"].to_numpy(),
        because_of=_text(a["products"], recs["_because"]),
        evidence=_text(a["evidence"], recs["_evidence"]),
    )


def _top(key: np.ndarray, product: np.ndarray, value: pd.Series, top_n: int):
    """The ``top_n`` most valuable products per key (ties: product order), keys ordered by
    their best value (largest first), then key: positions and ranks (from 1)."""
    value = value.to_numpy()
    order = np.lexsort((product, -value, key))
    key = key[order]
    start = np.r_[True, key[1:] != key[:-1]]
    first = np.flatnonzero(start)
    run = np.repeat(first, np.diff(np.r_[first, len(key)]))
    rank = np.arange(len(key)) - run + 1
    best = value[order][run]
    keep = rank <= top_n
    order, key, rank, best = order[keep], key[keep], rank[keep], best[keep]
    final = np.lexsort((rank, key, -best))
    return order[final], rank[final].astype("int64")
