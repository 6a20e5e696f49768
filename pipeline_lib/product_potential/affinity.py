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
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..stats import wilson_interval
from ._common import (
    _CLOSED,
    _check_choice,
    _isin,
    _need_column,
    _non_negative,
    _positive,
    _prepare,
)

__all__ = [
    "compute_affinity",
    "compute_white_space",
    "summarise_white_space",
    "compute_next_best",
]


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
    won = opps.loc[opps["status"].eq(schema.WON) & opps["amount"].notna()]
    value = won.groupby("product")["amount"].mean().reindex(products)
    if basis == "any":
        closed = opps.loc[_isin(opps["status"], _CLOSED)]
        value = value * closed["status"].eq(schema.WON).groupby(closed["product"]).mean()
    return value.reindex(products).to_numpy(dtype="float64")


def _recommend(ds: Dataset, basket: pd.DataFrame, have, eligible, *, prior_strength, basis):
    """Propensity and expected value of each eligible (row, product) cell, with its rule.

    ``have`` marks each row's antecedent products. The propensity of B is the highest
    smoothed confidence ``(both + m * base_B) / (n_A + m)`` over the row's products A
    (never B itself); a row with no product gets the base rate ``base_B``. The expected
    value is the propensity times the product's value (:func:`_product_value`).

    Returns a frame ``_row, _product, propensity, expected_value, because_of, evidence``
    (``_row`` and ``_product`` are positions).
    """
    m = float(prior_strength)
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
            "expected_value": prop * _product_value(ds, names, basis)[p_idx],
            "because_of": pd.Series(because, dtype="str"),
            "evidence": pd.Series(evidence, dtype="str"),
        }
    )


def _status_basket(ds: Dataset, status: str, index, products) -> np.ndarray:
    """Account (``index``) x product booleans: the account has a deal in ``status``."""
    opps = ds.opportunities
    rows = opps.loc[opps["status"].eq(status)].dropna(subset=["account", "product"])
    return (
        pd.crosstab(rows["account"], rows["product"])
        .gt(0)
        .reindex(index=index, columns=products, fill_value=False)
        .to_numpy()
    )


def _checked_basket(data, as_of, basis: str, prior_strength: float):
    """The dataset, ``as_of`` and basket of a recommendation, with the affinity's checks."""
    ds, ts = _prepare(data, as_of)
    _non_negative(prior_strength, "prior_strength")
    basket = _baskets(ds, ts, basis)
    _check_basket(basket)  # same checks and messages as compute_affinity
    return ds, ts, basket


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
    ds, _, basket = _checked_basket(data, as_of, basis, prior_strength)
    accounts = sorted(ds.opportunities["account"].dropna().astype("str").unique())
    products = list(basket.columns)
    have = basket.reindex(index=accounts, fill_value=False).to_numpy()
    owned = _status_basket(ds, schema.WON, accounts, products)
    in_open = _status_basket(ds, schema.OPEN, accounts, products)
    recs = _recommend(ds, basket, have, ~owned, prior_strength=prior_strength, basis=basis)
    acc_idx, prod_idx = np.indices(owned.shape)
    out = pd.DataFrame(
        {
            "account": _labels(accounts, acc_idx.ravel()),
            "product": _labels(products, prod_idx.ravel()),
            "status": pd.Series(
                np.where(owned, "owned", np.where(in_open, "open deal", "white space")).ravel(),
                dtype="str",
            ),
        }
    )
    flat = recs["_row"].to_numpy() * len(products) + recs["_product"].to_numpy()
    for col in ("propensity", "expected_value", "because_of", "evidence"):
        out[col] = recs[col].set_axis(flat).reindex(out.index)
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
        ds, ts, basket = _checked_basket(data, as_of, basis, prior_strength)
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
        skip = _status_basket(ds, schema.WON, accounts, products) | _status_basket(
            ds, schema.OPEN, accounts, products
        )
        recs = _recommend(ds, basket, have, ~skip, prior_strength=prior_strength, basis=basis)
        rows = deals.iloc[recs["_row"].to_numpy()].reset_index(drop=True)
        out = pd.DataFrame(
            {
                "opportunity_id": rows["opportunity_id"].astype("str"),
                "account": rows["account"].astype("str"),
                "deal_product": rows["product"].astype("str"),
                "stage": rows["stage"].astype("str"),
                "product": _labels(products, recs["_product"]),
                "propensity": recs["propensity"],
                "expected_value": recs["expected_value"],
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
