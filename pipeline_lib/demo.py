"""Deterministic demo data: a believable B2B business and its messy CRM-style exports.

:func:`generate_demo` builds *clean* canonical tables (see :mod:`pipeline_lib.schema`) of a
software/hardware vendor over about three years. The story built in, so that analyses find
real signal:

* six lead sources with clearly different lead -> opportunity yields, lags and costs per lead
  (Referral converts best, Web worst; Events leads are the most expensive);
* seven products with different list prices, discount habits, win rates and cycle lengths;
  on ``Widget Pro`` heavier discounts clearly raise the win rate, on ``Enterprise Platform``
  they do not;
* three teams (SMB, Mid-Market, Enterprise) of four reps each, differing in win rate and cycle;
* accounts that buy several products (buyers of ``Analytics Suite`` often add
  ``Data Connector``, buyers of ``Widget Pro`` add ``Premium Support``);
* quarter-end seasonality in close dates;
* a change of trend midway: from the first of the month nearest the middle of the date range
  (2024-07-01 by default) a competitor launch cuts the win rate of ``Analytics Suite`` deals by
  about 12 points and makes ``Competitor`` its main lost reason;
* lost reasons that shift over time (``No Budget`` grows, ``Timing`` shrinks);
* deals still open at ``end``, whose expected close dates were often pushed later.

:func:`write_demo` writes the same data as the messy exports a real team would have (a
Salesforce report with its footer, a UTF-16 HubSpot companies export, a ``;``-separated
marketing export with day-first dates, an Excel sheet and a SQLite database). Those exports are
the only place the demo's quirks live; ``data/sources/demo.yaml`` reads them.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from . import config, exports, schema

__all__ = [
    "GENERATOR_VERSION",
    "DEMO_FILES",
    "DEMO_START",
    "DEMO_END",
    "HUBSPOT_STAGES",
    "PIPEDRIVE_STAGES",
    "generate_demo",
    "write_demo",
    "ensure_demo",
    "to_hubspot_export",
    "to_pipedrive_export",
]

#: Bumped whenever the generated data or the export format changes (forces regeneration).
GENERATOR_VERSION = "1"

#: First and last day of the demo data set.
DEMO_START = "2023-01-01"
DEMO_END = config.DEMO_AS_OF

#: Files written by :func:`write_demo` (besides the manifest ``demo.json``).
DEMO_FILES = (
    "opportunities.csv",
    "opportunity_history.csv",
    "leads.csv",
    "lead_costs.csv",
    "products.xlsx",
    "accounts.tsv",
    "crm.sqlite",
)

_MANIFEST = "demo.json"

# --------------------------------------------------------------------------- the business

_OPEN_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
)
_WON, _LOST = "Closed Won", "Closed Lost"
_STAGES = (*_OPEN_STAGES, _WON, _LOST)
_N_OPEN = len(_OPEN_STAGES)
_PROPOSAL = _OPEN_STAGES.index("Proposal/Price Quote")
#: Probability a CRM types for each stage of ``_STAGES``.
_STAGE_PROB = np.array([0.10, 0.20, 0.40, 0.60, 0.80, 1.00, 0.00])

#: Our stage -> HubSpot default "Sales Pipeline" stage label.
HUBSPOT_STAGES = {
    "Prospecting": "Appointment Scheduled",
    "Qualification": "Qualified To Buy",
    "Needs Analysis": "Presentation Scheduled",
    "Proposal/Price Quote": "Decision Maker Bought-In",
    "Negotiation/Review": "Contract Sent",
    "Closed Won": "Closed Won",
    "Closed Lost": "Closed Lost",
}

#: Our open stage -> Pipedrive default pipeline stage (won/lost live in ``Deal - Status``).
PIPEDRIVE_STAGES = {
    "Prospecting": "Qualified",
    "Qualification": "Contact Made",
    "Needs Analysis": "Demo Scheduled",
    "Proposal/Price Quote": "Proposal Made",
    "Negotiation/Review": "Negotiations Started",
}

# name, family, list price, discount options (%), their weights,
# base win rate, win-rate gain per discount point, mean cycle (days)
_PRODUCTS = (
    ("Widget Pro", "Widgets", 12_000.0, (0, 5, 10, 15, 20, 25, 30),
     (0.15, 0.15, 0.20, 0.20, 0.15, 0.10, 0.05), 0.30, 0.012, 50),
    ("Widget Lite", "Widgets", 4_800.0, (0, 5, 10), (0.5, 0.3, 0.2), 0.42, 0.004, 30),
    ("Analytics Suite", "Software", 60_000.0, (0, 5, 10, 15, 20, 25),
     (0.10, 0.15, 0.25, 0.25, 0.15, 0.10), 0.36, 0.004, 80),
    ("Data Connector", "Software", 18_000.0, (0, 5, 10, 15), (0.3, 0.3, 0.25, 0.15),
     0.40, 0.004, 45),
    ("Enterprise Platform", "Software", 240_000.0, (0, 10, 15, 20, 25, 30, 35, 40),
     (0.05, 0.10, 0.15, 0.20, 0.20, 0.15, 0.10, 0.05), 0.24, 0.0, 140),
    ("Implementation Services", "Services", 35_000.0, (0, 5, 10), (0.6, 0.25, 0.15),
     0.48, 0.003, 40),
    ("Premium Support", "Services", 9_600.0, (0, 5), (0.8, 0.2), 0.55, 0.004, 25),
)  # fmt: skip
_PRODUCT_NAMES = tuple(p[0] for p in _PRODUCTS)
#: The product spelled differently in the Salesforce export (alias fixed by demo.yaml).
_PRODUCT_ALIAS = {"Widget Pro": "Widget-Pro"}
_TREND_PRODUCT = _PRODUCT_NAMES.index("Analytics Suite")
_TREND_DROP = 0.12

# product mix of an account's first deal, per segment (SMB, Mid-Market, Enterprise)
_SEGMENT_MIX = np.array(
    [
        [0.30, 0.35, 0.05, 0.08, 0.00, 0.07, 0.15],
        [0.25, 0.12, 0.18, 0.15, 0.04, 0.12, 0.14],
        [0.12, 0.03, 0.22, 0.15, 0.20, 0.18, 0.10],
    ]
)
# product affinity: row = product already bought, columns = the product bought next
_AFFINITY = np.array(
    [
        [0.00, 0.15, 0.05, 0.05, 0.00, 0.15, 0.60],
        [0.55, 0.00, 0.05, 0.05, 0.00, 0.05, 0.30],
        [0.05, 0.00, 0.00, 0.60, 0.05, 0.25, 0.05],
        [0.05, 0.05, 0.60, 0.00, 0.05, 0.15, 0.10],
        [0.02, 0.00, 0.25, 0.13, 0.00, 0.50, 0.10],
        [0.10, 0.02, 0.15, 0.10, 0.03, 0.00, 0.60],
        [0.45, 0.15, 0.10, 0.10, 0.02, 0.18, 0.00],
    ]
)
_AFFINITY_SHARE = 0.55  # share of an account's later deals that follow the affinity

_TEAMS = ("SMB", "Mid-Market", "Enterprise")
_SEGMENT_SHARE = (0.45, 0.35, 0.20)
_TEAM_WIN = np.array([0.06, 0.0, -0.06])
_TEAM_CYCLE = np.array([0.7, 1.0, 1.5])
_REPS = (
    ("Olivia Bennett", "Marcus Webb", "Priya Nair", "Tom Kowalski"),
    ("Sofia Alvarez", "Daniel Okafor", "Hannah Schulz", "Kevin Tran"),
    ("Elena Rossi", "James Whitfield", "Aiko Tanaka", "Robert Lindqvist"),
)
_REP_WIN = np.array(
    [[0.05, 0.01, -0.02, -0.05], [0.03, 0.0, -0.01, -0.06], [0.06, 0.0, -0.03, -0.04]]
)

_SOURCES = ("Web", "Paid Search", "Events", "Referral", "Partner", "Outbound")
_SRC_SHARE = np.array([0.26, 0.20, 0.12, 0.12, 0.12, 0.18])  # of opportunities
_SRC_LEAD_SHARE = np.array([1.0, 1.0, 1.0, 1.0, 0.6, 0.5])  # opportunities that come from a lead
_SRC_YIELD = np.array([0.135, 0.17, 0.25, 0.45, 0.35, 0.25])  # lead -> opportunity
_SRC_LAG = np.array([40.0, 25.0, 55.0, 12.0, 20.0, 8.0])  # mean days lead -> opportunity
_SRC_CPL = np.array([35.0, 120.0, 260.0, 50.0, 90.0, 70.0])  # cost per lead at start
_SRC_CPL_GROWTH = np.array([0.05, 0.35, 0.10, 0.0, 0.05, 0.10])  # over the whole range
_SRC_WIN = np.array([-0.02, -0.05, 0.0, 0.10, 0.05, -0.08])
_SRC_MQL = np.array([0.25, 0.30, 0.45, 0.60, 0.50, 0.40])  # non-converting leads reaching MQL
_SRC_SQL = np.array([0.30, 0.35, 0.40, 0.50, 0.45, 0.40])  # ... and then SQL
_CAMPAIGNS = (
    ("Website", "Blog", "Newsletter"),
    ("Google Ads - Brand", "Google Ads - Generic", "Bing Ads"),
    ("Trade Show", "Webinar", "Roadshow"),
    ("Customer Referral",),
    ("Partner Program",),
    ("SDR Outreach", "Account-Based Campaign"),
)

_LOST_REASONS = ("Price", "Competitor", "No Budget", "Timing", "No Decision")
_REASON_BASE = np.array([0.24, 0.20, 0.16, 0.20, 0.20])
_REASON_TREND = np.array([0.2, 0.0, 1.0, -0.6, 0.0])  # log-weight change over the range
_LOSS_AT = np.array([0.22, 0.26, 0.22, 0.18, 0.12])  # last open stage reached by lost deals
_SKIP = np.array([0.05, 0.08, 0.15, 0.0, 0.10])  # chance a stage is skipped

_INDUSTRIES = (
    "Software", "Manufacturing", "Financial Services", "Healthcare",
    "Retail", "Logistics", "Education", "Energy",
)  # fmt: skip
_INDUSTRY_SHARE = (0.20, 0.18, 0.14, 0.12, 0.10, 0.10, 0.08, 0.08)
_INDUSTRY_WORDS = (
    ("Software", "Systems", "Digital", "Labs"),
    ("Manufacturing", "Industries", "Works", "Components"),
    ("Capital", "Financial", "Partners", "Insurance"),
    ("Health", "Medical", "Care", "Pharma"),
    ("Retail", "Stores", "Brands", "Goods"),
    ("Logistics", "Freight", "Transport", "Shipping"),
    ("Learning", "Academy", "Education", "Institute"),
    ("Energy", "Power", "Solar", "Utilities"),
)
_REGIONS = ("North America", "EMEA", "APAC", "LATAM")
_REGION_SHARE = (0.50, 0.30, 0.15, 0.05)
_LEGAL = (("Inc", "LLC", "Corp"), ("Ltd", "GmbH", "SA", "BV"), ("Pte Ltd", "Pty Ltd", "KK"),
          ("SA de CV", "Ltda", "SA"))  # fmt: skip
_NAME_HEADS = (
    "North", "Blue", "Bright", "Silver", "Red", "Green", "Stone", "Iron", "Clear", "Sun",
    "Star", "High", "Oak", "Pine", "River", "Lake", "Summit", "Eagle", "Fox", "Wolf",
    "Bear", "Cedar", "Maple", "Golden", "Crystal", "Rapid", "Swift", "True", "Prime", "Nova",
    "Apex", "Vertex", "Quantum", "Atlas", "Orion", "Bold", "Wise", "Urban", "Metro", "Coral",
)  # fmt: skip
_NAME_TAILS = (
    "wind", "water", "field", "stone", "bridge", "gate", "point", "ridge", "wood", "brook",
    "dale", "ford", "haven", "light", "peak", "port", "vale", "view", "way", "line",
    "crest", "spring", "tree", "wave", "rock", "hill", "land", "shore", "mark", "path",
)  # fmt: skip
_EMPLOYEES = ((5, 200), (200, 2000), (2000, 60000))  # per segment, log-uniform


# --------------------------------------------------------------------------- small helpers


def _day(value) -> int:
    """Days since 1970-01-01 of a date-like value."""
    return int(np.datetime64(pd.Timestamp(value).date(), "D").astype(np.int64))


def _to_datetime(days: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Day numbers -> ``datetime64[ns]`` (NaT where ``valid`` is False)."""
    out = np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[ns]")
    if valid is not None:
        out[~valid] = np.datetime64("NaT")
    return out


def _month_index(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of day numbers."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def _month_start_day(months: np.ndarray) -> np.ndarray:
    """First day (day number) of months since 1970-01."""
    return np.asarray(months).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)


def _text(values, codes: np.ndarray) -> pd.Series:
    """``values[codes]`` as a ``str`` Series (missing where ``codes`` < 0)."""
    codes = np.asarray(codes, dtype=np.int64)
    out = pd.Series(list(values), dtype="str").take(np.maximum(codes, 0))
    out = out.reset_index(drop=True)
    if (codes < 0).any():
        out = out.where(pd.Series(codes >= 0))
    return out


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    """Zero-padded identifiers ``prefix`` + ``numbers`` as a ``str`` Series."""
    digits = pd.Series(np.asarray(numbers, dtype=np.int64)).astype("str").str.zfill(width)
    return (prefix + digits).astype("str")


def _sample_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One category per row of a (n, k) probability matrix."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), probs.shape[1] - 1)


def _growth_days(rng: np.random.Generator, n: int, d0: int, d1: int, growth: float) -> np.ndarray:
    """``n`` day numbers in [d0, d1], density growing linearly by ``growth`` over the range."""
    u = rng.random(n)
    t = (np.sqrt(1.0 + 2.0 * growth * u * (1.0 + growth / 2.0)) - 1.0) / growth
    return d0 + np.minimum(np.floor(t * (d1 - d0 + 1)), d1 - d0).astype(np.int64)


def _weekday(days: np.ndarray) -> np.ndarray:
    """Monday = 0 ... Sunday = 6."""
    return (days + 3) % 7


def _to_business_day(days: np.ndarray, *, back: bool) -> np.ndarray:
    """Move weekend days to Friday (``back``) or to the nearest business day."""
    wd = _weekday(days)
    if back:
        return days - np.where(wd == 5, 1, 0) - np.where(wd == 6, 2, 0)
    return days - np.where(wd == 5, 1, 0) + np.where(wd == 6, 1, 0)


# --------------------------------------------------------------------------- generator


def generate_demo(
    *,
    n_opportunities: int = 5000,
    seed: int = 42,
    start: str = DEMO_START,
    end: str = DEMO_END,
) -> dict[str, pd.DataFrame]:
    """Generate the clean canonical tables of a believable B2B business.

    Fully vectorised and deterministic: the same arguments always give identical frames.
    One million opportunities (about four million stage events and 4.4 million leads) take
    a few tens of seconds.

    Parameters
    ----------
    n_opportunities : int, default 5000
        Number of deals. Leads are about 4.4 times as many, accounts about a third.
    seed : int, default 42
        Seed of the ``numpy.random.Generator``.
    start, end : str
        First and last day of the business history (ISO dates). Every date lies in
        ``[start, end]`` except the expected close dates of deals still open at ``end``.

    Returns
    -------
    dict of str to DataFrame
        Canonical tables with exactly the columns and dtypes of :mod:`pipeline_lib.schema`
        (text ``str``, dates ``datetime64[ns]`` at midnight, amounts ``float64``):

        ``opportunities``
            opportunity_id, stage, status, created_date, close_date (actual when closed,
            expected when open), amount, name, product, account, owner, team, source,
            lead_id (missing for deals not from a lead), probability (by stage),
            lost_reason (lost deals only), currency (``USD``).
        ``stage_history``
            opportunity_id, stage, entered_at, amount, close_date: one row per stage
            entered, the first at created_date, the last the current stage.
        ``leads``
            lead_id, created_date, source, campaign, segment, and the milestone dates
            mql_date, sql_date. Deals link to leads by ``opportunities.lead_id``.
        ``products``
            product, family, list_price (a closed deal's amount is its list price less a
            discount; open deals before the quote may still show the list price).
        ``accounts``
            account, industry, region, employees.
        ``targets``
            period (first of month), target (monthly quota), team.
        ``lead_costs``
            period (first of month), source, cost (monthly spend).

    Examples
    --------
    >>> tables = generate_demo(n_opportunities=300, seed=1)
    >>> sorted(tables)
    ['accounts', 'lead_costs', 'leads', 'opportunities', 'products', 'stage_history', 'targets']
    >>> len(tables["opportunities"])
    300
    """
    n = int(n_opportunities)
    if n < 1:
        raise ValueError(f"n_opportunities must be at least 1, got {n_opportunities!r}")
    d0, d1 = _day(start), _day(end)
    if d1 - d0 < 180:
        raise ValueError(f"the demo needs at least 180 days between start and end ({start}..{end})")
    rng = np.random.default_rng(seed)
    mid = (d0 + d1) // 2
    change_day = int(_month_start_day(_month_index(np.array([mid + 15])))[0])

    acc = _gen_accounts(rng, max(1, round(n / 3)))
    opp = _gen_opportunities(rng, n, d0, d1, change_day, acc)
    hist = _gen_history(rng, opp, d1)
    leads, lead_of_opp = _gen_leads(rng, opp, acc, d0, d1)

    opportunities = _opportunities_frame(rng, opp, hist, acc, leads, lead_of_opp)
    tables = {
        "opportunities": opportunities,
        "stage_history": _history_frame(hist, opportunities),
        "leads": leads["frame"],
        "products": pd.DataFrame(
            {
                "product": pd.Series(_PRODUCT_NAMES, dtype="str"),
                "family": pd.Series([p[1] for p in _PRODUCTS], dtype="str"),
                "list_price": np.array([p[2] for p in _PRODUCTS], dtype=np.float64),
            }
        ),
        "accounts": acc["frame"],
        "targets": _gen_targets(rng, opp, d0, d1),
        "lead_costs": _gen_lead_costs(rng, leads, d0, d1),
    }
    return tables


def _gen_accounts(rng: np.random.Generator, n_acc: int) -> dict:
    seg = rng.choice(3, size=n_acc, p=_SEGMENT_SHARE)
    lo = np.array([e[0] for e in _EMPLOYEES], dtype=np.float64)[seg]
    hi = np.array([e[1] for e in _EMPLOYEES], dtype=np.float64)[seg]
    employees = np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi)))).astype(np.float64)
    industry = rng.choice(len(_INDUSTRIES), size=n_acc, p=_INDUSTRY_SHARE)
    region = rng.choice(len(_REGIONS), size=n_acc, p=_REGION_SHARE)
    head = rng.integers(0, len(_NAME_HEADS), n_acc)
    tail = rng.integers(0, len(_NAME_TAILS), n_acc)
    word = rng.integers(0, 4, n_acc)
    n_legal = np.array([len(x) for x in _LEGAL])
    legal = np.floor(rng.random(n_acc) * n_legal[region]).astype(np.int64)
    legal_flat = [w for group in _LEGAL for w in group]
    legal_off = np.concatenate([[0], np.cumsum(n_legal)[:-1]])
    words_flat = [w for group in _INDUSTRY_WORDS for w in group]
    name = (
        _text(_NAME_HEADS, head)
        + _text(_NAME_TAILS, tail)
        + " "
        + _text(words_flat, industry * 4 + word)
        + " "
        + _text(legal_flat, legal_off[region] + legal)
    )
    dup = name.duplicated().to_numpy()
    if dup.any():  # make names unique: "Bluewater Logistics Inc 2"
        k = name.groupby(name, sort=False).cumcount().to_numpy()
        name = name.where(~dup, name + " " + pd.Series(k + 1).astype("str"))
    # the account's rep: four per team
    rep = seg * 4 + rng.integers(0, 4, n_acc)
    weight = rng.lognormal(0.0, 0.6, n_acc) * np.array([0.8, 1.0, 1.4])[seg]
    frame = pd.DataFrame(
        {
            "account": name.astype("str"),
            "industry": _text(_INDUSTRIES, industry),
            "region": _text(_REGIONS, region),
            "employees": employees,
        }
    )
    return {"n": n_acc, "seg": seg, "rep": rep, "weight": weight, "frame": frame}


def _quarter_bounds(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = _month_index(days)
    q = m - m % 3
    return _month_start_day(q), _month_start_day(q + 3) - 1


def _gen_opportunities(
    rng: np.random.Generator, n: int, d0: int, d1: int, change_day: int, acc: dict
) -> dict:
    created = np.sort(_to_business_day(_growth_days(rng, n, d0, d1, 0.8), back=False))
    created = np.clip(created, d0, d1)

    # accounts: every account gets a deal first, the rest go by account weight
    n_acc = acc["n"]
    if n >= n_acc:
        p = acc["weight"] / acc["weight"].sum()
        account = np.concatenate([np.arange(n_acc), rng.choice(n_acc, size=n - n_acc, p=p)])
        account = rng.permutation(account)
    else:
        account = rng.choice(n_acc, size=n, replace=False)
    seg = acc["seg"][account]
    rep = acc["rep"][account]

    # products: the account's first deal from its segment mix, later ones often by affinity
    anchor = _sample_rows(rng, _SEGMENT_MIX[acc["seg"]])
    _, first_idx = np.unique(account, return_index=True)  # deals are in created order
    is_first = np.zeros(n, dtype=bool)
    is_first[first_idx] = True
    follow = _sample_rows(rng, _AFFINITY[anchor[account]])
    fresh = _sample_rows(rng, _SEGMENT_MIX[seg])
    product = np.where(
        is_first, anchor[account], np.where(rng.random(n) < _AFFINITY_SHARE, follow, fresh)
    )

    # source, and whether the deal came from a lead
    source = rng.choice(len(_SOURCES), size=n, p=_SRC_SHARE)
    has_lead = rng.random(n) < _SRC_LEAD_SHARE[source]

    # discount habits and amount
    discount = np.zeros(n)
    disc_mean = np.zeros(len(_PRODUCTS))
    for i, (_name, _fam, _price, options, weights, *_rest) in enumerate(_PRODUCTS):
        mask = product == i
        w = np.asarray(weights) / np.sum(weights)
        disc_mean[i] = np.dot(options, w)
        discount[mask] = rng.choice(np.asarray(options, dtype=np.float64), size=mask.sum(), p=w)
    list_price = np.array([p[2] for p in _PRODUCTS])
    amount = np.round(list_price[product] * (1.0 - discount / 100.0), 2)

    # outcome
    base = np.array([p[5] for p in _PRODUCTS])
    slope = np.array([p[6] for p in _PRODUCTS])
    team_rep = rep - seg * 4
    p_win = (
        base[product]
        + _TEAM_WIN[seg]
        + _REP_WIN[seg, team_rep]
        + _SRC_WIN[source]
        + slope[product] * (discount - disc_mean[product])
        - _TREND_DROP * ((product == _TREND_PRODUCT) & (created >= change_day))
    )
    won = rng.random(n) < np.clip(p_win, 0.03, 0.92)

    # cycle length and close date, with quarter-end seasonality
    cycle_mean = np.array([p[7] for p in _PRODUCTS])[product] * _TEAM_CYCLE[seg]
    cycle_mean = cycle_mean * np.where(won, 1.0, 0.75)
    cycle = np.maximum(1, np.round(rng.gamma(2.5, cycle_mean / 2.5))).astype(np.int64)
    close = created + cycle
    q_start, q_end = _quarter_bounds(close)
    u = rng.random(n)
    pull = (close - q_start < 21) & (u < np.where(won, 0.35, 0.10))
    pulled = q_start - 1 - rng.integers(0, 6, n)
    close = np.where(pull & (pulled >= created), pulled, close)
    q_start, q_end = _quarter_bounds(close)
    push = ~pull & (rng.random(n) < np.where(won, 0.30, 0.12))
    close = np.where(push, np.maximum(close, q_end - rng.integers(0, 8, n)), close)
    close = np.maximum(_to_business_day(close, back=True), created)
    is_open = close > d1

    # path through the stages: won deals walk (almost) all, lost deals drop out
    loss_at = rng.choice(_N_OPEN, size=n, p=_LOSS_AT)
    stage_idx = np.arange(_N_OPEN)
    skip = rng.random((n, _N_OPEN)) < _SKIP
    reach = np.where(won[:, None], True, stage_idx[None, :] <= loss_at[:, None])
    visited = reach & ~skip
    last = np.where(won, _PROPOSAL, loss_at)
    visited[np.arange(n), last] = True  # won deals always quote; lost deals reach their stage
    return {
        "n": n,
        "created": created,
        "close": close,
        "is_open": is_open,
        "won": won,
        "visited": visited,
        "loss_at": loss_at,
        "account": account,
        "is_first": is_first,
        "seg": seg,
        "rep": rep,
        "product": product,
        "source": source,
        "has_lead": has_lead,
        "discount": discount,
        "amount": amount,
        "list_price": list_price[product],
        "cycle_nominal": np.round(cycle_mean * 0.85).astype(np.int64),
        "change_day": change_day,
        "d0": d0,
        "d1": d1,
    }


def _gen_history(rng: np.random.Generator, opp: dict, d1: int) -> dict:
    n = opp["n"]
    created, close, visited = opp["created"], opp["close"], opp["visited"]
    span = close - created
    w = rng.gamma(2.0, 1.0, (n, _N_OPEN)) * visited
    frac = (np.cumsum(w, axis=1) - w) / w.sum(axis=1, keepdims=True)
    entry = created[:, None] + np.floor(frac * span[:, None]).astype(np.int64)
    valid = visited & (entry <= d1)
    last_col = _N_OPEN - 1 - np.argmax(valid[:, ::-1], axis=1)

    # expected close date as typed at each change: optimistic first, pushed later
    exp0 = created + opp["cycle_nominal"]
    snap = rng.random(n) < 0.5  # reps like month ends
    month_end = _month_start_day(_month_index(exp0) + 1) - 1
    exp0 = np.where(snap, month_end, exp0)
    push = (rng.random((n, _N_OPEN)) < 0.25) * rng.choice([30, 61], size=(n, _N_OPEN))
    push = push * visited
    first_col = np.argmax(visited, axis=1)
    push[np.arange(n), first_col] = 0
    expected = np.maximum(exp0[:, None] + np.cumsum(push, axis=1), entry + 7)
    is_open = opp["is_open"]
    expected = np.where(is_open[:, None], expected, np.minimum(expected, d1))
    rows = np.arange(n)
    current = expected[rows, last_col]
    refreshed = np.maximum(current, close)  # most reps keep open deals' dates in the future
    current = np.where(rng.random(n) < 0.8, refreshed, current)
    expected[rows[is_open], last_col[is_open]] = current[is_open]
    opp_close = np.where(is_open, current, close)

    # amount per change: deals that got to a quote sometimes started at list price
    at_list = (rng.random(n) < 0.5) & visited[:, _PROPOSAL]
    amounts = np.where(
        at_list[:, None] & (np.arange(_N_OPEN)[None, :] < _PROPOSAL),
        opp["list_price"][:, None],
        opp["amount"][:, None],
    )

    # flatten: open-stage events, then the closing event of closed deals
    closed = ~is_open
    o_idx, col = np.nonzero(valid)
    c_idx = np.nonzero(closed)[0]
    ev_opp = np.concatenate([o_idx, c_idx])
    ev_stage = np.concatenate([col, np.where(opp["won"][c_idx], 5, 6)])
    ev_day = np.concatenate([entry[o_idx, col], close[c_idx]])
    ev_amount = np.concatenate([amounts[o_idx, col], opp["amount"][c_idx]])
    ev_close = np.concatenate([expected[o_idx, col], close[c_idx]])
    order = np.lexsort((ev_stage, ev_opp))
    stage_now = np.where(is_open, last_col, np.where(opp["won"], 5, 6))
    amount_now = np.where(is_open, amounts[rows, last_col], opp["amount"])
    return {
        "opp": ev_opp[order],
        "stage": ev_stage[order],
        "day": ev_day[order],
        "amount": ev_amount[order],
        "close": ev_close[order],
        "stage_now": stage_now,
        "amount_now": amount_now,
        "opp_close": opp_close,
        "valid": valid,
    }


def _gen_leads(rng: np.random.Generator, opp: dict, acc: dict, d0: int, d1: int):
    n_src = len(_SOURCES)
    conv_opp = np.nonzero(opp["has_lead"])[0]
    conv_src = opp["source"][conv_opp]
    n_conv = np.bincount(conv_src, minlength=n_src)
    n_total = np.maximum(n_conv, np.round(n_conv / _SRC_YIELD).astype(np.int64))
    n_other = n_total - n_conv

    # converted leads: first contact some days before the deal, milestones in between
    oc = opp["created"][conv_opp]
    lag = np.round(rng.gamma(2.0, _SRC_LAG[conv_src] / 2.0)).astype(np.int64)
    room = oc - d0  # deals at the very start had their first contact shortly before
    lag = np.where(lag > room, np.floor(rng.random(len(oc)) * (room + 1)), lag).astype(np.int64)
    c_created = oc - lag
    span = oc - c_created
    f1 = rng.uniform(0.05, 0.6, len(conv_opp))
    f2 = f1 + (1.0 - f1) * rng.uniform(0.3, 1.0, len(conv_opp))
    c_mql = c_created + np.floor(f1 * span).astype(np.int64)
    c_sql = c_created + np.floor(f2 * span).astype(np.int64)
    c_seg = opp["seg"][conv_opp]

    # the others: some reach MQL, fewer SQL
    o_src = np.repeat(np.arange(n_src), n_other)
    m = len(o_src)
    o_created = _growth_days(rng, m, d0, d1, 0.8)
    o_mql = o_created + np.round(rng.gamma(1.5, 5.0, m)).astype(np.int64)
    o_has_mql = (rng.random(m) < _SRC_MQL[o_src]) & (o_mql <= d1)
    o_sql = o_mql + np.round(rng.gamma(1.5, 8.0, m)).astype(np.int64)
    o_has_sql = o_has_mql & (rng.random(m) < _SRC_SQL[o_src]) & (o_sql <= d1)
    o_seg = rng.choice(3, size=m, p=_SEGMENT_SHARE)

    src = np.concatenate([conv_src, o_src])
    created = np.concatenate([c_created, o_created])
    mql = np.concatenate([c_mql, o_mql])
    sql = np.concatenate([c_sql, o_sql])
    has_mql = np.concatenate([np.ones(len(conv_opp), bool), o_has_mql])
    has_sql = np.concatenate([np.ones(len(conv_opp), bool), o_has_sql])
    seg = np.concatenate([c_seg, o_seg])
    n_camp = np.array([len(c) for c in _CAMPAIGNS])
    camp_off = np.concatenate([[0], np.cumsum(n_camp)[:-1]])
    campaign = camp_off[src] + np.floor(rng.random(len(src)) * n_camp[src]).astype(np.int64)

    # lead ids in order of first contact
    order = np.argsort(created, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    lead_of_opp = np.full(opp["n"], -1, dtype=np.int64)
    lead_of_opp[conv_opp] = rank[: len(conv_opp)]
    width = max(7, len(str(len(order))))
    frame = pd.DataFrame(
        {
            "lead_id": _ids("L", np.arange(1, len(order) + 1), width),
            "created_date": _to_datetime(created[order]),
            "source": _text(_SOURCES, src[order]),
            "campaign": _text([c for group in _CAMPAIGNS for c in group], campaign[order]),
            "segment": _text(_TEAMS, seg[order]),
            "mql_date": _to_datetime(mql[order], has_mql[order]),
            "sql_date": _to_datetime(sql[order], has_sql[order]),
        }
    )
    leads = {"frame": frame, "src": src[order], "created": created[order], "width": width}
    return leads, lead_of_opp


def _opportunities_frame(rng, opp, hist, acc, leads, lead_of_opp) -> pd.DataFrame:
    n = opp["n"]
    stage_now = hist["stage_now"]
    status = np.where(opp["is_open"], 0, np.where(opp["won"], 1, 2))
    account = acc["frame"]["account"].take(opp["account"]).reset_index(drop=True)
    product = _text(_PRODUCT_NAMES, opp["product"])
    lead_id = leads["frame"]["lead_id"].take(np.maximum(lead_of_opp, 0)).reset_index(drop=True)
    lead_id = lead_id.where(pd.Series(lead_of_opp >= 0))
    lost = status == 2
    reason = np.full(n, -1)
    reason[lost] = _lost_reasons(rng, opp, lost)
    reps = [r for team in _REPS for r in team]
    return pd.DataFrame(
        {
            "opportunity_id": _ids("006", np.arange(1, n + 1), 12),
            "stage": _text(_STAGES, stage_now),
            "status": _text(schema.STATUSES, status),
            "created_date": _to_datetime(opp["created"]),
            "close_date": _to_datetime(hist["opp_close"]),
            "amount": hist["amount_now"].astype(np.float64),
            "name": account + " - " + product,
            "product": product,
            "account": account,
            "owner": _text(reps, opp["rep"]),
            "team": _text(_TEAMS, opp["seg"]),
            "source": _text(_SOURCES, opp["source"]),
            "lead_id": lead_id.astype("str"),
            "probability": _STAGE_PROB[stage_now],
            "lost_reason": _text(_LOST_REASONS, reason),
            "currency": pd.Series(np.full(n, "USD"), dtype="str"),
        }
    )


def _lost_reasons(rng: np.random.Generator, opp: dict, lost: np.ndarray) -> np.ndarray:
    t = (opp["close"][lost] - opp["d0"]) / max(1, opp["d1"] - opp["d0"])
    k = opp["loss_at"][lost]
    w = _REASON_BASE[None, :] * np.exp(np.minimum(t, 1.0)[:, None] * _REASON_TREND[None, :])
    late = (k >= _PROPOSAL)[:, None]
    early = (k <= 1)[:, None]
    w = w * np.where(late, [1.8, 1.3, 1.0, 0.7, 1.0], 1.0)
    w = w * np.where(early, [1.0, 1.0, 1.3, 1.3, 0.7], 1.0)
    hit = (opp["product"][lost] == _TREND_PRODUCT) & (opp["created"][lost] >= opp["change_day"])
    w[:, 1] *= np.where(hit, 4.0, 1.0)
    return _sample_rows(rng, w)


def _history_frame(hist: dict, opportunities: pd.DataFrame) -> pd.DataFrame:
    ids = opportunities["opportunity_id"].take(hist["opp"]).reset_index(drop=True)
    return pd.DataFrame(
        {
            "opportunity_id": ids,
            "stage": _text(_STAGES, hist["stage"]),
            "entered_at": _to_datetime(hist["day"]),
            "amount": hist["amount"].astype(np.float64),
            "close_date": _to_datetime(hist["close"]),
        }
    )


def _gen_targets(rng: np.random.Generator, opp: dict, d0: int, d1: int) -> pd.DataFrame:
    months = np.arange(_month_index(np.array([d0]))[0], _month_index(np.array([d1]))[0] + 1)
    years = months // 12
    won = opp["won"] & ~opp["is_open"]
    won_year = _month_index(opp["close"][won]) // 12
    y0 = years.min()
    n_years = years.max() - y0 + 1
    n_teams = len(_TEAMS)
    total = np.zeros((n_years, n_teams))
    np.add.at(total, (won_year - y0, opp["seg"][won]), opp["amount"][won])
    months_in_year = np.bincount(years - y0, minlength=n_years)
    per_month = total / np.maximum(months_in_year, 1)[:, None]
    fallback = max(per_month.mean(), 1000.0)
    per_month = np.where(per_month > 0, per_month, fallback)
    plan = rng.uniform(1.0, 1.2, (n_years, n_teams))  # quotas are a stretch
    season = np.array([0.85, 0.95, 1.20])[months % 3]
    target = per_month[years - y0] * plan[years - y0] * season[:, None]
    target = np.round(target, -2)
    n_m = len(months)
    return pd.DataFrame(
        {
            "period": _to_datetime(np.repeat(_month_start_day(months), n_teams)),
            "target": target.ravel().astype(np.float64),
            "team": _text(_TEAMS, np.tile(np.arange(n_teams), n_m)),
        }
    )


def _gen_lead_costs(rng: np.random.Generator, leads: dict, d0: int, d1: int) -> pd.DataFrame:
    m0, m1 = _month_index(np.array([d0]))[0], _month_index(np.array([d1]))[0]
    n_m, n_src = m1 - m0 + 1, len(_SOURCES)
    month = _month_index(leads["created"]) - m0
    count = np.bincount(month * n_src + leads["src"], minlength=n_m * n_src).reshape(n_m, n_src)
    t = np.arange(n_m)[:, None] / max(1, n_m - 1)
    cpl = _SRC_CPL[None, :] * (1.0 + _SRC_CPL_GROWTH[None, :] * t)
    cost = np.round(count * cpl * rng.lognormal(0.0, 0.12, (n_m, n_src)), 2)
    return pd.DataFrame(
        {
            "period": _to_datetime(np.repeat(_month_start_day(np.arange(m0, m1 + 1)), n_src)),
            "source": _text(_SOURCES, np.tile(np.arange(n_src), n_m)),
            "cost": cost.ravel().astype(np.float64),
        }
    )


# --------------------------------------------------------------------------- CRM-style exports

_SF_FOOTER = (
    "Confidential Information - Do Not Distribute",
    "Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved.",
)
_NEXT_STEP = {
    "Prospecting": "Discovery call",
    "Qualification": "Confirm budget and timeline",
    "Needs Analysis": "Product demo",
    "Proposal/Price Quote": "Send proposal",
    "Negotiation/Review": "Legal review",
}
_PIPELINE = "Sales Pipeline"


def _us_date(dates: pd.Series) -> pd.Series:
    """``M/D/YYYY`` (no zero padding), empty where missing."""
    d = pd.Series(dates).reset_index(drop=True)
    ok = d.notna()
    out = pd.Series("", index=d.index, dtype="str")
    v = d[ok]
    out[ok] = (
        v.dt.month.astype("str") + "/" + v.dt.day.astype("str") + "/" + v.dt.year.astype("str")
    )
    return out


def _strftime(dates: pd.Series, fmt: str) -> pd.Series:
    """``dates`` formatted with ``fmt``, empty where missing."""
    return pd.Series(dates).reset_index(drop=True).dt.strftime(fmt).fillna("").astype("str")


def _money(values: pd.Series, prefix: str = "USD ") -> pd.Series:
    """``USD 1,234.00``, empty where missing."""
    v = pd.Series(values, dtype="float64").reset_index(drop=True)
    out = v.map(lambda x: "" if np.isnan(x) else f"{prefix}{x:,.2f}")
    return out.astype("str")


def _euro(values: pd.Series) -> pd.Series:
    """``1 234,56 €`` (space thousands separator, decimal comma)."""
    v = pd.Series(values, dtype="float64").reset_index(drop=True).map("{:,.2f}".format)
    return v.str.replace(",", " ").str.replace(".", ",") + " €"


def _percent_text(values: pd.Series) -> pd.Series:
    """Probability in [0, 1] -> ``"40"``."""
    v = pd.Series(values, dtype="float64").reset_index(drop=True)
    return (v * 100).round().astype("Int64").astype("str").fillna("").astype("str")


def _pick(rng: np.random.Generator, mask: np.ndarray, share: float) -> np.ndarray:
    """Positions of about ``share`` of the rows where ``mask`` holds (at least one, if any)."""
    where = np.nonzero(mask)[0]
    if len(where) == 0:
        return where
    k = min(len(where), max(1, round(share * len(where))))
    return np.sort(rng.choice(where, size=k, replace=False))


def _salesforce_opportunities(tables: dict, rng: np.random.Generator) -> pd.DataFrame:
    o = tables["opportunities"].reset_index(drop=True)
    n = len(o)
    is_open = (o["status"] == schema.OPEN).to_numpy()
    is_lost = (o["status"] == schema.LOST).to_numpy()
    amount = o["amount"].to_numpy(copy=True)
    amount[_pick(rng, is_lost, 0.02)] = np.nan
    account = o["account"].copy()
    account.iloc[_pick(rng, is_open, 0.05)] = np.nan
    stage = o["stage"].copy()
    odd = _pick(rng, np.ones(n, bool), 0.03)
    upper = rng.random(len(odd)) < 0.5
    stage.iloc[odd[upper]] = stage.iloc[odd[upper]].str.upper()
    stage.iloc[odd[~upper]] = stage.iloc[odd[~upper]].str.lower()
    created = o["created_date"].copy()
    blank_created = _pick(rng, is_open, 0.0)[:1]
    created.iloc[blank_created] = pd.NaT
    close = o["close_date"]
    quarter = close.dt.quarter.astype("str")
    frame = pd.DataFrame(
        {
            "Opportunity ID": o["opportunity_id"],
            "Opportunity Name": o["name"],
            "Account Name": account.fillna(""),
            "Opportunity Owner": o["owner"],
            "Owner Role": o["team"],
            "Stage": stage,
            "Amount": _money(amount),
            "Expected Revenue": _money(amount * o["probability"].to_numpy()),
            "Probability (%)": _percent_text(o["probability"]),
            "Close Date": _us_date(close),
            "Created Date": _us_date(created),
            "Lead Source": o["source"].fillna(""),
            "Type": pd.Series(
                np.where(o["account"].duplicated(), "Existing Business", "New Business"),
                dtype="str",
            ),
            "Next Step": o["stage"].map(_NEXT_STEP).fillna("").astype("str"),
            "Fiscal Period": "Q" + quarter + "-" + close.dt.year.astype("str"),
            "Product Name": o["product"].replace(_PRODUCT_ALIAS),
            "Lead ID": o["lead_id"].fillna(""),
            "Loss Reason": o["lost_reason"].fillna(""),
        }
    ).astype("str")
    # one row exported twice, and one row without its id
    dup = int(rng.integers(0, n))
    blank = frame.iloc[[int(rng.integers(0, n))]].copy()
    blank["Opportunity ID"] = ""
    at = int(rng.integers(0, n + 1))
    parts = [frame.iloc[: dup + 1], frame.iloc[[dup]], frame.iloc[dup + 1 :]]
    frame = pd.concat(parts, ignore_index=True)
    return pd.concat([frame.iloc[:at], blank, frame.iloc[at:]], ignore_index=True)


def _salesforce_history(tables: dict, end: str, rng: np.random.Generator) -> pd.DataFrame:
    h = tables["stage_history"].reset_index(drop=True)
    o = tables["opportunities"]
    name = h["opportunity_id"].map(pd.Series(o["name"].to_numpy(), index=o["opportunity_id"]))
    same = h["opportunity_id"].eq(h["opportunity_id"].shift())
    from_stage = h["stage"].shift().where(same, "")
    nxt = h["entered_at"].shift(-1).where(h["opportunity_id"].eq(h["opportunity_id"].shift(-1)))
    is_closed = h["stage"].isin([_WON, _LOST])
    stop = nxt.fillna(pd.Timestamp(end)).where(~is_closed | nxt.notna(), h["entered_at"])
    duration = (stop - h["entered_at"]).dt.days
    prob = h["stage"].map(dict(zip(_STAGES, _STAGE_PROB, strict=True)))
    frame = pd.DataFrame(
        {
            "Opportunity ID": h["opportunity_id"],
            "Opportunity Name": name.fillna(""),
            "From Stage": from_stage.fillna(""),
            "To Stage": h["stage"],
            "Amount": _money(h["amount"]),
            "Probability (%)": _percent_text(prob),
            "Close Date": _us_date(h["close_date"]),
            "Stage Duration": duration.astype("str"),
            "Last Modified": _us_date(h["entered_at"]),
        }
    ).astype("str")
    orphan = frame.iloc[[int(rng.integers(0, len(frame)))]].copy()
    orphan["Opportunity ID"] = "006" + "9" * 12  # a deal deleted since: in no opportunity
    orphan["Opportunity Name"] = "Deleted Opportunity"
    at = int(rng.integers(0, len(frame) + 1))
    return pd.concat([frame.iloc[:at], orphan, frame.iloc[at:]], ignore_index=True)


#: How the exports' CSV files are laid out (besides separator and encoding).
_CSV_STYLE = {"lineterminator": "\n", "quoting": csv.QUOTE_MINIMAL}


def _write_table(
    frame: pd.DataFrame, path: Path, *, sep: str = ";", encoding: str = "utf-8"
) -> int:
    """Write ``frame`` as a delimited text export; returns its row count."""
    exports.write_csv(frame, path, sep=sep, encoding=encoding, **_CSV_STYLE)
    return len(frame)


def _write_salesforce_csv(frame: pd.DataFrame, path: Path) -> int:
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        exports.write_csv(frame, f, **_CSV_STYLE)
        writer = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        f.write("\n")
        writer.writerow([f"Grand Totals ({len(frame)} records)"])
        f.write("\n")
        for line in _SF_FOOTER:  # not CSV rows: written as Salesforce does, unquoted
            f.write(line + "\n")
    return len(frame)


def _marketing_leads(tables: dict, rng: np.random.Generator) -> pd.DataFrame:
    lead = tables["leads"].reset_index(drop=True)
    n = len(lead)
    channel = lead["source"].copy()
    channel.iloc[_pick(rng, np.ones(n, bool), 0.01)] = np.nan
    first = _strftime(lead["created_date"], "%d.%m.%Y")
    if n:
        first.iloc[int(rng.integers(0, n))] = "n/a"
    return pd.DataFrame(
        {
            "Lead ID": lead["lead_id"],
            "First Contact": first,
            "Channel": channel.fillna(""),
            "Campaign": lead["campaign"].fillna(""),
            "Segment": lead["segment"].fillna(""),
            "MQL Date": _strftime(lead["mql_date"], "%d.%m.%Y"),
            "SQL Date": _strftime(lead["sql_date"], "%d.%m.%Y"),
        }
    ).astype("str")


def _write_exports(tables: dict, folder: Path, *, seed: int, end: str) -> dict[str, int]:
    rng = np.random.default_rng([abs(int(seed)), 20251231])
    rows: dict[str, int] = {}

    rows["opportunities.csv"] = _write_salesforce_csv(
        _salesforce_opportunities(tables, rng), folder / "opportunities.csv"
    )
    rows["opportunity_history.csv"] = _write_salesforce_csv(
        _salesforce_history(tables, end, rng), folder / "opportunity_history.csv"
    )

    rows["leads.csv"] = _write_table(_marketing_leads(tables, rng), folder / "leads.csv")

    lc = tables["lead_costs"]
    costs = pd.DataFrame(
        {
            "Month": _strftime(lc["period"], "%d/%m/%Y"),
            "Channel": lc["source"].reset_index(drop=True),
            "Spend": _euro(lc["cost"]),
        }
    )
    rows["lead_costs.csv"] = _write_table(costs, folder / "lead_costs.csv")

    p = tables["products"]
    products = pd.DataFrame(
        {"Product": p["product"], "Family": p["family"], "List Price": p["list_price"]}
    )
    exports.write_excel({"Products": products}, folder / "products.xlsx")
    rows["products.xlsx"] = len(products)

    a = tables["accounts"]
    accounts = pd.DataFrame(
        {
            "Company name": a["account"],
            "Industry": a["industry"],
            "Region": a["region"],
            "Number of Employees": a["employees"].round().astype("Int64"),
        }
    )
    rows["accounts.tsv"] = _write_table(
        accounts, folder / "accounts.tsv", sep="\t", encoding="utf-16"
    )

    t = tables["targets"]
    quotas = list(
        zip(
            _strftime(t["period"], "%Y-%m-%d"),
            t["team"].fillna("").astype("str"),
            t["target"].astype("float64"),
            strict=True,
        )
    )
    con = sqlite3.connect(folder / "crm.sqlite")
    try:
        con.execute("create table quotas (period_start TEXT, team TEXT, quota REAL)")
        con.executemany("insert into quotas values (?, ?, ?)", quotas)
        con.commit()
    finally:
        con.close()
    rows["crm.sqlite"] = len(quotas)
    return rows


def write_demo(out_dir, *, n_opportunities: int = 5000, seed: int = 42) -> Path:
    """Generate the demo business and write it as messy CRM-style exports.

    Everything is built in a temporary sibling folder that is renamed into place at the
    end, so an interrupted run never leaves a partial demo; an existing folder is replaced.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write (relative paths are taken from the project root).
    n_opportunities : int, default 5000
        Number of deals (see :func:`generate_demo`).
    seed : int, default 42
        Random seed.

    Returns
    -------
    Path
        The absolute folder written. It holds ``demo.json`` (``generator_version``,
        ``n_opportunities``, ``seed``, ``start``, ``end`` and ``files``: file -> data rows)
        and the files of :data:`DEMO_FILES`:

        ``opportunities.csv``
            Salesforce Opportunities report (UTF-8 with BOM, comma, ``M/D/YYYY``
            dates, ``USD 1,234.00`` amounts, Salesforce footer).
        ``opportunity_history.csv``
            Salesforce Opportunity History report (same style).
        ``leads.csv``
            Marketing export: ``;``-separated, ``DD.MM.YYYY`` dates.
        ``lead_costs.csv``
            ``;``-separated monthly spend, ``DD/MM/YYYY`` months, ``1 234,56 €`` amounts.
        ``products.xlsx``
            Sheet ``Products``.
        ``accounts.tsv``
            HubSpot companies export: UTF-16 with BOM, tab-separated.
        ``crm.sqlite``
            Table ``quotas(period_start, team, quota)``.

    Examples
    --------
    >>> folder = write_demo(tmp_path / "demo", n_opportunities=300)  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
    ['accounts.tsv', 'crm.sqlite', 'demo.json', 'lead_costs.csv', 'leads.csv', ...]
    """
    out = config.resolve_path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tables = generate_demo(n_opportunities=n_opportunities, seed=seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)
        files = _write_exports(tables, tmp, seed=seed, end=DEMO_END)
        manifest = {
            "generator_version": GENERATOR_VERSION,
            "n_opportunities": int(n_opportunities),
            "seed": int(seed),
            "start": DEMO_START,
            "end": DEMO_END,
            "files": files,
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, replacing (then deleting) whatever was there."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(out, old)
        except FileNotFoundError:  # another process moved it first
            old = None
    try:
        os.rename(tmp, out)
    except OSError:
        if not out.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent run put the same demo in place
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _is_current(out: Path, n_opportunities: int, seed: int) -> bool:
    try:
        manifest = json.loads((out / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return False
    expected = {
        "generator_version": GENERATOR_VERSION,
        "n_opportunities": int(n_opportunities),
        "seed": int(seed),
        "start": DEMO_START,
        "end": DEMO_END,
    }
    if any(manifest.get(k) != v for k, v in expected.items()):
        return False
    listed = set(manifest["files"])
    return set(DEMO_FILES) <= listed and all((out / f).is_file() for f in listed)


def ensure_demo(
    out_dir=config.DEMO_DIR,
    *,
    n_opportunities: int = 5000,
    seed: int = 42,
    force: bool = False,
) -> bool:
    """Make sure a current demo folder exists; regenerate it only when needed.

    The folder is (re)written by :func:`write_demo` when it or its manifest is missing, a
    listed file is missing, or the manifest's parameters or generator version differ.

    Parameters
    ----------
    out_dir : str or Path, default ``config.DEMO_DIR``
        Demo folder (relative paths are taken from the project root).
    n_opportunities : int, default 5000
        Number of deals.
    seed : int, default 42
        Random seed.
    force : bool, default False
        Regenerate even when the folder is current.

    Returns
    -------
    bool
        True when the demo was (re)generated, False when the folder was already current.

    Examples
    --------
    >>> ensure_demo()  # doctest: +SKIP
    False
    """
    out = config.resolve_path(out_dir)
    if not force and _is_current(out, n_opportunities, seed):
        return False
    write_demo(out, n_opportunities=n_opportunities, seed=seed)
    return True


# --------------------------------------------------------------------------- other CRMs


def _deal_clock(ids: pd.Series) -> np.ndarray:
    """A deterministic time of day (minutes, 08:00-17:59) per deal, for timestamped exports."""
    codes = pd.util.hash_pandas_object(pd.Series(ids).reset_index(drop=True), index=False)
    return 8 * 60 + (codes.to_numpy() % np.uint64(540)).astype(np.int64)


def _stamp(dates: pd.Series, minutes, fmt: str) -> pd.Series:
    d = pd.Series(dates).reset_index(drop=True)
    return _strftime(d + pd.to_timedelta(np.asarray(minutes), unit="min"), fmt)


def _require(tables: dict, *names: str) -> None:
    missing = [t for t in names if t not in tables]
    if missing:
        raise ValueError(f"tables must include {', '.join(missing)} (as from generate_demo)")


def _stage_entries(tables: dict, ids: pd.Series) -> pd.DataFrame:
    """Wide table: first entry date per deal (rows, in ``ids`` order) and stage (columns)."""
    h = tables["stage_history"]
    wide = h.groupby(["opportunity_id", "stage"], sort=False)["entered_at"].min().unstack()
    return wide.reindex(index=ids.to_numpy(), columns=list(_STAGES)).reset_index(drop=True)


def to_hubspot_export(tables: dict) -> pd.DataFrame:
    """The deals as a HubSpot deal export would show them.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Canonical tables with at least ``opportunities`` and ``stage_history``
        (as from :func:`generate_demo`).

    Returns
    -------
    DataFrame
        One row per deal, HubSpot headers: ``Record ID`` (= opportunity_id), ``Deal Name``,
        ``Deal Stage`` (HubSpot labels, see :data:`HUBSPOT_STAGES`), ``Pipeline``
        (``Sales Pipeline``), ``Amount`` (float), ``Currency``, ``Close Date``,
        ``Create Date``, ``Deal owner``, ``Deal probability`` (0-1 float),
        ``Closed lost reason``, ``Original Traffic Source`` (our source names),
        ``Associated Company``, then ``Date entered "<HubSpot stage> (Sales Pipeline)"`` for
        each of the seven stages. Timestamps are text ``YYYY-MM-DD HH:MM`` with a
        deterministic time of day; empty text where missing.

    Examples
    --------
    >>> deals = to_hubspot_export(generate_demo(n_opportunities=300))
    >>> deals["Deal Stage"].isin(list(HUBSPOT_STAGES.values())).all()
    np.True_
    """
    _require(tables, "opportunities", "stage_history")
    o = tables["opportunities"].reset_index(drop=True)
    ids = o["opportunity_id"]
    clock = _deal_clock(ids)
    code = {s: i for i, s in enumerate(_STAGES)}
    entries = _stage_entries(tables, ids)
    fmt = "%Y-%m-%d %H:%M"
    first_code = entries.notna().to_numpy().argmax(axis=1)
    stage_code = o["stage"].map(code).fillna(0).astype(np.int64).to_numpy()
    closed = o["status"].isin([schema.WON, schema.LOST]).to_numpy()
    close_minutes = clock + np.where(closed, 7 * stage_code, 0)
    frame = pd.DataFrame(
        {
            "Record ID": ids,
            "Deal Name": o["name"],
            "Deal Stage": o["stage"].map(HUBSPOT_STAGES).astype("str"),
            "Pipeline": pd.Series([_PIPELINE] * len(o), dtype="str"),
            "Amount": o["amount"].astype("float64"),
            "Currency": o["currency"].fillna("USD") if "currency" in o else "USD",
            "Close Date": _stamp(o["close_date"], close_minutes, fmt),
            "Create Date": _stamp(o["created_date"], clock + 7 * first_code, fmt),
            "Deal owner": o["owner"],
            "Deal probability": o["probability"].astype("float64"),
            "Closed lost reason": o["lost_reason"],
            "Original Traffic Source": o["source"],
            "Associated Company": o["account"],
        }
    )
    for i, stage in enumerate(_STAGES):
        col = f'Date entered "{HUBSPOT_STAGES[stage]} ({_PIPELINE})"'
        frame[col] = _stamp(entries[stage], clock + 7 * i, fmt)
    return frame


def to_pipedrive_export(tables: dict) -> pd.DataFrame:
    """The deals as a Pipedrive deals export would show them.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Canonical tables with at least ``opportunities`` and ``stage_history``
        (as from :func:`generate_demo`).

    Returns
    -------
    DataFrame
        One row per deal, Pipedrive headers: ``Deal - ID`` (= opportunity_id),
        ``Deal - Title``, ``Deal - Value`` (float), ``Deal - Currency of Value``,
        ``Deal - Probability`` (integer percent), ``Deal - Organization``, ``Deal - Owner``,
        ``Deal - Pipeline``, ``Deal - Stage`` (Pipedrive default stage names, see
        :data:`PIPEDRIVE_STAGES`; for closed deals the last open stage reached),
        ``Deal - Status`` (``Open`` / ``Won`` / ``Lost``), ``Deal - Deal created``
        (``YYYY-MM-DD HH:MM:SS``), ``Deal - Expected close date`` (``YYYY-MM-DD``),
        ``Deal - Won time``, ``Deal - Lost time`` (``YYYY-MM-DD HH:MM:SS``, closed deals
        only), ``Deal - Lost reason``, ``Deal - Source channel``, ``Deal - Product name``.
        Text is empty where missing.

    Examples
    --------
    >>> deals = to_pipedrive_export(generate_demo(n_opportunities=300))
    >>> sorted(deals["Deal - Status"].unique())
    ['Lost', 'Open', 'Won']
    """
    _require(tables, "opportunities", "stage_history")
    o = tables["opportunities"].reset_index(drop=True)
    ids = o["opportunity_id"]
    h = tables["stage_history"]
    open_rows = h[h["stage"].isin(_OPEN_STAGES)]
    last_open = open_rows.groupby("opportunity_id", sort=False)["stage"].last()
    stage = o["stage"].where(o["stage"].isin(_OPEN_STAGES), ids.map(last_open))
    clock = _deal_clock(ids)
    fmt = "%Y-%m-%d %H:%M:%S"
    status = o["status"].map({schema.OPEN: "Open", schema.WON: "Won", schema.LOST: "Lost"})
    close_stamp = _stamp(o["close_date"], clock + 30, fmt)
    return pd.DataFrame(
        {
            "Deal - ID": ids,
            "Deal - Title": o["name"],
            "Deal - Value": o["amount"].astype("float64"),
            "Deal - Currency of Value": o["currency"].fillna("USD") if "currency" in o else "USD",
            "Deal - Probability": (o["probability"] * 100).round().astype("Int64"),
            "Deal - Organization": o["account"],
            "Deal - Owner": o["owner"],
            "Deal - Pipeline": pd.Series([_PIPELINE] * len(o), dtype="str"),
            "Deal - Stage": stage.map(PIPEDRIVE_STAGES).astype("str"),
            "Deal - Status": status.astype("str"),
            "Deal - Deal created": _stamp(o["created_date"], clock, fmt),
            "Deal - Expected close date": _strftime(o["close_date"], "%Y-%m-%d"),
            "Deal - Won time": close_stamp.where(status == "Won", ""),
            "Deal - Lost time": close_stamp.where(status == "Lost", ""),
            "Deal - Lost reason": o["lost_reason"],
            "Deal - Source channel": o["source"],
            "Deal - Product name": o["product"],
        }
    )
