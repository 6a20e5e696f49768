"""Prospect strength: the probability that each open deal is won, learned from history.

Everything is point-in-time. The data are first cut to ``as_of`` (:meth:`Dataset.snapshot`),
so a deal closed after ``as_of`` is an open deal like any other and never teaches the model.
Training examples are the deals that were open on regular *cut dates* before ``as_of``,
described as they were on that date (stage, amount, expected close date, time in stage and
close-date pushes from the stage history), and labelled by how they ended (won or lost) on
or before ``as_of``. Open deals are scored with exactly the same features taken on
``as_of``.

Three models are compared on a time-based split (trained on deals closed before the split
date, tested on the deals open after it): a regularised logistic regression, gradient
boosting (:class:`~sklearn.ensemble.HistGradientBoostingClassifier`) and the naive-Bayes
frequency baseline CRMs ship. The best by AUC is calibrated and refitted on everything.
With too few closed deals the model falls back to shrunken stage x product win rates.

At scale: the history is arranged once per Dataset for point-in-time look-ups (memoised);
beyond 40,000 examples a seeded sample, stratified by cut date and outcome, is learned
from (``max_examples``); the candidate fits and the calibrations run in parallel (threads,
or a Dask cluster: :mod:`pipeline_lib.parallel`), and so do the predictions of large
batches. None of it changes a result.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import stats as _st
from sklearn.base import BaseEstimator, ClassifierMixin
from threadpoolctl import threadpool_limits

from . import schema
from .dataset import Dataset, to_timestamp
from .errors import InsufficientDataError
from .memo import memoized
from .parallel import configured, task_context
from .stats import wilson_interval

__all__ = [
    "CATEGORICAL_FEATURES",
    "NUMERIC_FEATURES",
    "FEATURE_LABELS",
    "WinModel",
    "compute_deal_features",
    "compute_training_examples",
    "compute_stage_product_rates",
    "compute_calibration_curve",
    "compute_classifier_metrics",
    "fit_win_model",
    "score_open_deals",
]

#: Categorical features, when the data hold them.
CATEGORICAL_FEATURES = (
    "stage",
    "product",
    "family",
    "owner",
    "team",
    "source",
    "industry",
    "region",
)
#: Numeric features, when the data hold them.
NUMERIC_FEATURES = (
    "log_amount",
    "log_employees",
    "age_days",
    "days_in_stage",
    "pushes",
    "days_to_close",
)
#: How each feature is named in the factors of a scored deal.
FEATURE_LABELS = {
    "stage": "stage",
    "product": "product",
    "family": "product family",
    "owner": "owner",
    "team": "team",
    "source": "source",
    "industry": "industry",
    "region": "region",
    "log_amount": "amount",
    "log_employees": "account size",
    "age_days": "age",
    "days_in_stage": "time in stage",
    "pushes": "close-date pushes",
    "days_to_close": "days to expected close",
}
_HISTORY_FEATURES = ("stage", "days_in_stage", "pushes")
_MISSING = "(missing)"
_MODEL_NAMES = {
    "logistic": "logistic regression (L2)",
    "boosting": "gradient boosting",
    "naive_bayes": "naive Bayes (CRM-style baseline)",
}


# --------------------------------------------------------------------------- features


def _positions(values: pd.Series, universe) -> np.ndarray:
    """Position of each value in ``universe`` (distinct values): -1 when absent/missing."""
    try:  # Arrow's hash look-up: no Python string objects (3-6x faster at 1M rows)
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.index_in(pa.array(values), value_set=pa.array(universe))
        return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype="int64")
    except (ImportError, TypeError, ValueError, NotImplementedError, ArithmeticError):
        return pd.Index(universe).get_indexer(pd.Index(values)).astype("int64")


@dataclass(frozen=True)
class _History:
    """A stage history arranged for point-in-time look-ups (built by :func:`_history`).

    Each row's deal is known by its position in the opportunities table (``code``). Only
    rows of a known deal with an ``entered_at`` are kept, sorted by deal then
    ``entered_at`` (rows of a deal entered at the same moment keep their order). ``key``
    numbers them so that, sorted, it runs by deal then time: one binary search finds,
    for many (deal, date) pairs at once, the deal's last row entered strictly before the
    date.
    """

    code: np.ndarray  # deal of each row: position in the opportunities
    times: np.ndarray  # distinct entered_at values (int64 ns), ascending
    key: np.ndarray  # code * (len(times) + 1) + rank of entered_at among times
    stages: np.ndarray  # stage names (object); a row's stage is stages[stage_code]
    stage_code: np.ndarray  # -1 when the row has no stage
    amount: np.ndarray | None  # float64, when the history records amounts
    close_date: np.ndarray | None  # datetime64, when the history records expected close dates
    pushes: np.ndarray  # float64: times the deal's expected close moved later, so far
    stage_start: np.ndarray  # datetime64[ns]: when the row's run in its stage began

    def last_before(self, deals: np.ndarray, end) -> np.ndarray:
        """Per deal (position in the opportunities), its last row entered strictly
        before ``end`` (one date or one per deal); -1 when there is none."""
        deals = np.asarray(deals, dtype="int64")
        end = np.broadcast_to(np.asarray(end).astype("datetime64[ns]").view("int64"), deals.shape)
        rank = np.searchsorted(self.times, end, side="left")  # distinct times before end
        pos = np.searchsorted(self.key, deals * (len(self.times) + 1) + rank, side="left") - 1
        ok = pos >= 0
        ok[ok] = self.code[pos[ok]] == deals[ok]
        return np.where(ok, pos, -1)


@memoized(copy=False)
def _history(ds: Dataset) -> _History | None:
    """The stage history of ``ds`` arranged for look-ups, with the close-date pushes and
    the start of the current stage run on every row (None without a history).

    Both depend only on the deal's earlier rows, so the row found for any date gives the
    state as it was known on that date. Built once per Dataset (memoised).
    """
    hist = ds.stage_history
    if hist is None or hist.empty:
        return None
    code = _positions(hist["opportunity_id"], ds.opportunities["opportunity_id"])
    t = hist["entered_at"].to_numpy(dtype="datetime64[ns]")
    keep = np.flatnonzero((code >= 0) & ~np.isnat(t))
    code, t = code[keep], t[keep].view("int64")
    times = np.sort(pd.unique(t))  # few distinct times: hashing beats sorting them all
    key = code * (len(times) + 1) + np.searchsorted(times, t)
    if len(key) and not (key[1:] >= key[:-1]).all():  # histories often come in order
        # by deal then time, ties in table order: made unique by the row number, the keys
        # sort with the (faster) default algorithm as a stable sort would
        n = len(key)
        fits = int(key.max()) < (np.iinfo("int64").max - n) // n
        order = np.argsort(key * n + np.arange(n)) if fits else np.argsort(key, kind="stable")
        code, t, key, keep = code[order], t[order], key[order], keep[order]
    rows = keep
    stage_code, stages = pd.factorize(hist["stage"])
    stage_code = stage_code[rows]
    amount = hist["amount"].to_numpy(dtype="float64")[rows] if "amount" in hist else None
    close = None
    if "close_date" in hist:  # in its own unit: the snapshot's dates keep theirs
        close = hist["close_date"].to_numpy()
        close = (close if close.dtype.kind == "M" else close.astype("datetime64[ns]"))[rows]
    n = len(code)
    idx = np.arange(n)
    same = np.zeros(n, dtype=bool)
    same[1:] = code[1:] == code[:-1]
    pushed = np.zeros(n, dtype=bool)
    if close is not None:
        pushed[1:] = same[1:] & (close[1:] > close[:-1])  # NaT compares False
    prev = np.concatenate([[-1], stage_code[:-1]])
    new_stage = ~same | (stage_code != prev) | (stage_code < 0) | (prev < 0)  # NA: new run
    cum = np.cumsum(pushed)
    deal_start = np.maximum.accumulate(np.where(same, 0, idx)) if n else idx
    run_start = np.maximum.accumulate(np.where(new_stage, idx, 0)) if n else idx
    return _History(
        code=code,
        times=times,
        key=key,
        stages=np.asarray(stages, dtype=object),
        stage_code=stage_code,
        amount=amount,
        close_date=close,
        pushes=(cum - cum[deal_start]).astype("float64") if n else np.zeros(0),
        stage_start=t[run_start].view("datetime64[ns]"),
    )


def _days(later, earlier) -> np.ndarray:
    """Whole days from ``earlier`` to ``later`` (floored; NaN when either is missing)."""
    delta = pd.Series(pd.to_datetime(later)) - pd.Series(pd.to_datetime(earlier))
    return delta.dt.days.astype("float64").to_numpy()


def _lookup(keys: pd.Series, table: pd.DataFrame, key: str, cols) -> dict[str, np.ndarray]:
    """``keys.map(table.drop_duplicates(key).set_index(key)[col]).to_numpy()`` per col."""
    t = table.drop_duplicates(key)
    at = _positions(keys, t[key])
    out = {}
    for col in cols:
        values = t[col].to_numpy()
        if values.dtype.kind in "iub":
            values = values.astype("float64")
        if not len(values):
            out[col] = np.full(len(keys), np.nan)
        else:
            out[col] = np.where(at >= 0, values[np.maximum(at, 0)], np.nan)
    return out


def _deal_features(rows: pd.DataFrame, end, hist: _History | None, pos, ds: Dataset):
    """Features of the deals in ``rows`` (as known on their date) at ``end`` (the end of
    that day: one date or one per row); ``pos`` is each row's last history row before
    ``end`` (:meth:`_History.last_before`)."""
    end = np.broadcast_to(np.asarray(end).astype("datetime64[ns]"), (len(rows),))
    out = pd.DataFrame({"opportunity_id": rows["opportunity_id"].to_numpy()})
    for col in ("stage", "product", "owner", "team", "source"):
        if col in rows:
            out[col] = rows[col].to_numpy()
    products, accounts = ds.table("products"), ds.table("accounts")
    if products is not None and "product" in rows and "family" in products:
        out["family"] = _lookup(rows["product"], products, "product", ["family"])["family"]
    if accounts is not None and "account" in rows:
        cols = [c for c in ("industry", "region", "employees") if c in accounts]
        acc = _lookup(rows["account"], accounts, "account", cols)
        for col in ("industry", "region"):
            if col in acc:
                out[col] = acc[col]
        if "employees" in acc:
            emp = pd.Series(acc["employees"]).astype("float64")
            out["log_employees"] = np.log1p(emp.clip(lower=0)).to_numpy()
    amount = rows["amount"].astype("float64")
    out["log_amount"] = np.log1p(amount.clip(lower=0)).to_numpy()
    out["age_days"] = _days(end, rows["created_date"].to_numpy())
    out["days_to_close"] = _days(rows["close_date"].to_numpy(), end)
    if hist is not None:
        found = pos >= 0
        at = np.where(found, pos, 0)
        start = np.where(found, hist.stage_start[at], np.datetime64("NaT"))
        out["days_in_stage"] = _days(end, start)
        out["pushes"] = np.where(found, hist.pushes[at], np.nan)
    return out


def _cut_dates(first: pd.Timestamp, as_of: pd.Timestamp, every_days: int) -> pd.DatetimeIndex:
    """Cut dates every ``every_days`` days, ending the day before ``as_of``."""
    n = int((as_of - first).days // every_days)
    if n < 1:
        return pd.DatetimeIndex([])
    return pd.DatetimeIndex([as_of - pd.Timedelta(days=every_days * k) for k in range(n, 0, -1)])


def _snapshot(ds: Dataset, ts: pd.Timestamp) -> Dataset:
    """``ds`` as known at the end of ``ts``: ``ds`` itself when it is that snapshot already
    (a snapshot of a snapshot on the same date shows the same deals, stages, amounts and
    dates, and taking one costs a pass over every table)."""
    return ds if ds.as_of is not None and ds.as_of == ts else ds.snapshot(ts)


def _check_as_of(ds: Dataset, as_of) -> tuple[Dataset, pd.Timestamp]:
    ts = to_timestamp(as_of)
    if not isinstance(ds, Dataset):
        raise ValueError(f"ds must be a Dataset (from dataset.load_dataset), got {type(ds)}")
    return _snapshot(ds, ts), ts


@dataclass(frozen=True)
class _Examples:
    """The (closed deal, cut date) pairs where the deal was open, before features."""

    base: Dataset  # the data as of as_of
    cuts: pd.DatetimeIndex
    hist: _History | None
    deal: np.ndarray  # position of the deal in base.opportunities
    cut: np.ndarray  # position of the cut in ``cuts``
    pos: np.ndarray  # last history row before the end of the cut (-1: none)
    won: np.ndarray  # 1 won, 0 lost

    def subset(self, keep: np.ndarray) -> _Examples:
        return replace(
            self, deal=self.deal[keep], cut=self.cut[keep], pos=self.pos[keep], won=self.won[keep]
        )

    def then(self, col: str) -> np.ndarray:
        """``col`` of each pair as known on its cut: the value of the deal's last history
        row before the end of the cut, or its final value where that is missing."""
        final = self.base.opportunities[col].take(self.deal).reset_index(drop=True)
        history = None if self.hist is None else getattr(self.hist, col)
        if history is None:
            return final.to_numpy()
        found = self.pos >= 0
        then = pd.Series(history[np.where(found, self.pos, 0)])
        return final.where(~(found & then.notna().to_numpy()), then).to_numpy()

    def rows(self) -> pd.DataFrame:
        """The deals as :meth:`Dataset.snapshot` shows them on each pair's cut date: the
        stage, amount and expected close date of their last stage-history row before the
        end of the cut (the final amount/close date where the row lacks one); without
        such a row, in the last open stage."""
        opps = self.base.opportunities
        cols = ["opportunity_id", "created_date"]
        cols += [c for c in ("product", "owner", "team", "source", "account") if c in opps]
        rows = opps[cols].take(self.deal).reset_index(drop=True)
        last_open = self.base.stages.open[-1] if self.base.stages.open else pd.NA
        stage = np.full(len(rows), last_open, dtype=object)
        if self.hist is not None:
            found = self.pos >= 0
            code = self.hist.stage_code[np.where(found, self.pos, 0)]
            named = found & (code >= 0)
            stage[named] = self.hist.stages[code[named]]
            stage[found & (code < 0)] = np.nan
        rows.insert(1, "stage", stage)
        rows["amount"] = self.then("amount")
        rows["close_date"] = self.then("close_date")
        rows["cut"] = self.cuts.to_numpy()[self.cut]
        return rows


def _examples(ds: Dataset, as_of, every_days: int) -> _Examples:
    """Every (closed deal, cut date) pair where the deal was open on the cut, vectorised.

    A deal is present on a cut when created before the end of the cut (or with no created
    date), open when it closed after it and its stage then (see :meth:`_Examples.rows`)
    is an open one.
    """
    if not isinstance(every_days, int | np.integer) or every_days < 1:
        raise ValueError(f"every_days={every_days!r} must be a positive integer")
    base, ts = _check_as_of(ds, as_of)
    opps = base.opportunities
    won = opps["status"].eq(schema.WON).to_numpy(dtype=bool)
    closed = np.flatnonzero(won | opps["status"].eq(schema.LOST).to_numpy(dtype=bool))
    if not len(closed):
        raise InsufficientDataError(
            f"no deal was won or lost on or before {ts.date()}: win probabilities need "
            "closed deals to learn from; load more history or choose a later as_of"
        )
    cuts = _cut_dates(opps["created_date"].min(), ts, every_days)
    ends = (cuts + pd.Timedelta(days=1)).to_numpy(dtype="datetime64[ns]").view("int64")
    created = opps["created_date"].to_numpy(dtype="datetime64[ns]")[closed]
    close = opps["close_date"].to_numpy(dtype="datetime64[ns]")[closed]
    # present: created before the end of the cut; open: closed on or after that end
    lo = np.where(np.isnat(created), 0, np.searchsorted(ends, created.view("int64"), "right"))
    hi = np.where(np.isnat(close), 0, np.searchsorted(ends, close.view("int64"), "right"))
    n = np.maximum(hi - lo, 0)
    deal = np.repeat(closed, n)
    cut = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(lo, n)
    hist = _history(base)
    pos = np.full(len(deal), -1) if hist is None else hist.last_before(deal, ends[cut])
    # the stage on the cut must be an open one
    last_open = base.stages.open[-1] if base.stages.open else None
    open_last = last_open is not None and base.stages.status_of(last_open) == schema.OPEN
    is_open = np.full(len(deal), open_last)
    if hist is not None:
        status = np.array([base.stages.status_of(s) == schema.OPEN for s in hist.stages] + [False])
        found = pos >= 0
        is_open[found] = status[hist.stage_code[pos[found]]]  # code -1: no stage, not open
    ex = _Examples(base, cuts, hist, deal, cut, pos, won[deal].astype("int64"))
    ex = ex.subset(np.flatnonzero(is_open))
    if not len(ex.deal):
        raise InsufficientDataError(
            f"no closed deal was open on any cut date before {ts.date()} "
            f"(every {every_days} days): the history is too short to learn from"
        )
    return ex


def _sample(strata: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Positions (ascending) of a seeded random sample of about ``size`` rows in which
    every stratum keeps the same share of its rows (rounded to the nearest row)."""
    rng = np.random.default_rng(seed)
    _, inv = np.unique(strata, return_inverse=True)
    inv = inv.reshape(-1)
    counts = np.bincount(inv)
    quota = np.floor(counts * (size / len(strata)) + 0.5).astype("int64")
    order = np.argsort(inv + rng.random(len(strata)))  # by stratum, randomly within
    rank = np.empty(len(strata), dtype="int64")
    rank[order] = np.arange(len(strata)) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.flatnonzero(rank < quota[inv])


def _open_deals(ds: Dataset, as_of) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """(the deals open at the end of ``as_of``, their features, as_of)."""
    snap, ts = _check_as_of(ds, as_of)
    opps = snap.opportunities
    at = np.flatnonzero(opps["status"].eq(schema.OPEN).to_numpy(dtype=bool))
    rows = opps.take(at)
    hist = _history(snap)
    end = np.datetime64(ts + pd.Timedelta(days=1), "ns")
    pos = None if hist is None else hist.last_before(at, end)
    feats = _deal_features(rows, end, hist, pos, snap)
    if snap.stage_history is None and "stage" in feats:
        feats = feats.drop(columns="stage")  # see compute_training_examples
    return rows.reset_index(drop=True), feats.reset_index(drop=True), ts


def compute_deal_features(ds: Dataset, *, as_of) -> pd.DataFrame:
    """Features of every deal open at the end of ``as_of``, as known then.

    Parameters
    ----------
    ds : Dataset
        The data (it is cut to ``as_of`` first; it is not modified).
    as_of : str, date or Timestamp
        The date the deals are described on.

    Returns
    -------
    DataFrame
        ``opportunity_id`` and the features the data allow: categorical ``stage,
        product, family`` (from products), ``owner, team, source, industry, region``
        (from accounts); numeric ``log_amount`` (log(1 + amount)), ``log_employees``,
        ``age_days`` (days since created), ``days_to_close`` (expected close date minus
        ``as_of``; negative when overdue), and with a stage history ``days_in_stage``
        (days since the current stage was entered) and ``pushes`` (how many times the
        expected close date moved later).

    Examples
    --------
    >>> compute_deal_features(ds, as_of="2025-12-31").columns[:3].tolist()  # doctest: +SKIP
    ['opportunity_id', 'stage', 'product']
    """
    return _open_deals(ds, as_of)[1]


def compute_training_examples(
    ds: Dataset,
    *,
    as_of,
    every_days: int = 14,
    max_examples: int | None = None,
    seed: int = 0,
    features: bool = True,
) -> pd.DataFrame:
    """Labelled examples: deals open on past cut dates, described as they were then.

    Cut dates run every ``every_days`` days back from ``as_of``. On each, the data are
    seen as of that day (:meth:`Dataset.snapshot`); every deal open then and closed
    (won or lost) on or before ``as_of`` becomes one example. Deals still open on
    ``as_of``, and deals closed after it, never appear.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
        Nothing after the end of this day is used.
    every_days : int, default 14
        Days between cut dates.
    max_examples : int, optional
        Keep at most about this many examples: a seeded random sample in which every
        (cut date, outcome) stratum keeps the same share of its examples. All examples
        when omitted or when there are fewer.
    seed : int, default 0
        Seed of that sample.
    features : bool, default True
        False leaves the features out (``cut, opportunity_id`` and the outcome columns
        only): much faster when only the dates are needed.

    Returns
    -------
    DataFrame
        ``cut`` (the date the features describe), the columns of
        :func:`compute_deal_features`, ``won`` (1 won, 0 lost), ``close_date`` (actual)
        and ``expected_close`` (as known on ``cut``), in the order (deal, cut).
        ``attrs``: ``n_available`` (examples before sampling), ``n_deals`` and
        ``n_won_deals`` (closed deals among them, and those won).

    Raises
    ------
    ValueError
        When ``every_days`` or ``max_examples`` is not a positive integer.
    InsufficientDataError
        When no deal has closed on or before ``as_of``.
    """
    if max_examples is not None and (
        isinstance(max_examples, bool)
        or not isinstance(max_examples, int | np.integer)
        or max_examples < 1
    ):
        raise ValueError(f"max_examples={max_examples!r} must be a positive integer or None")
    ex = _examples(ds, as_of, every_days)
    first = np.ones(len(ex.deal), dtype=bool)  # pairs run deal by deal
    first[1:] = ex.deal[1:] != ex.deal[:-1]
    attrs = {
        "n_available": len(ex.deal),
        "n_deals": int(first.sum()),
        "n_won_deals": int(ex.won[first].sum()),
    }
    if max_examples is not None and len(ex.deal) > max_examples:
        ex = ex.subset(_sample(ex.cut * 2 + ex.won, max_examples, seed))
    if not features:
        opps = ex.base.opportunities
        f = pd.DataFrame(
            {
                "cut": ex.cuts.to_numpy()[ex.cut],
                "opportunity_id": opps["opportunity_id"].take(ex.deal).reset_index(drop=True),
                "expected_close": ex.then("close_date"),
                "won": ex.won,
                "close_date": opps["close_date"].to_numpy()[ex.deal],
            }
        )
        f.attrs.update(attrs)
        return f
    rows = ex.rows()
    end = rows["cut"].to_numpy(dtype="datetime64[ns]") + np.timedelta64(1, "D")
    f = _deal_features(rows, end, ex.hist, ex.pos, ex.base)
    f.insert(0, "cut", rows["cut"].to_numpy())
    f["expected_close"] = rows["close_date"].to_numpy()
    f["won"] = ex.won
    f["close_date"] = ex.base.opportunities["close_date"].to_numpy()[ex.deal]
    if ex.base.stage_history is None and "stage" in f:
        f = f.drop(columns="stage")  # a best-effort snapshot stage would leak the outcome
    f.attrs.update(attrs)
    return f


# --------------------------------------------------------------------------- models


class _FrequencyNB(ClassifierMixin, BaseEstimator):
    """Naive-Bayes win probability from per-feature frequency tables (a CRM classic).

    Categorical features come as integer codes (:func:`_prepare`). Numeric features are
    cut into quantile bins (fitted on the training data), a missing number being a bin
    of its own; every value's win and loss frequencies are Laplace-smoothed.
    """

    def __init__(self, categorical=(), numeric=(), alpha: float = 1.0, bins: int = 5):
        self.categorical = categorical
        self.numeric = numeric
        self.alpha = alpha
        self.bins = bins

    def _codes(self, X: pd.DataFrame) -> dict:
        out = {}
        for c in self.categorical:
            out[c] = X[c].to_numpy(dtype="int64")
        for c in self.numeric:
            v = X[c].to_numpy(dtype="float64")
            b = np.searchsorted(self.edges_[c], v, side="right")
            out[c] = np.where(np.isnan(v), -1, b)
        return out

    def fit(self, X, y, sample_weight=None):
        y = np.asarray(y)
        self.classes_ = np.array([0, 1])
        self.edges_ = {}
        for c in self.numeric:
            v = X[c].to_numpy(dtype="float64")
            v = v[~np.isnan(v)]
            qs = np.linspace(0, 1, self.bins + 1)[1:-1]
            self.edges_[c] = np.unique(np.quantile(v, qs)) if len(v) else np.array([])
        codes = self._codes(X)
        n1, n0 = float((y == 1).sum()), float((y == 0).sum())
        self.prior_ = np.log((n1 + self.alpha) / (n0 + self.alpha))
        self.tables_ = {}
        for c, vals in codes.items():
            t = pd.crosstab(vals, y).reindex(columns=[0, 1], fill_value=0)
            k = len(t) + 1
            ll = np.log((t[1] + self.alpha) / (n1 + self.alpha * k)) - np.log(
                (t[0] + self.alpha) / (n0 + self.alpha * k)
            )
            self.tables_[c] = (pd.Index(t.index), ll.to_numpy(dtype="float64"))
        return self

    def predict_proba(self, X):
        logit = np.full(len(X), self.prior_)
        for c, vals in self._codes(X).items():
            values, ll = self.tables_[c]
            at = values.get_indexer(vals)  # -1: a value not seen in training adds nothing
            logit = logit + np.where(at >= 0, ll[np.maximum(at, 0)], 0.0)
        p = 1.0 / (1.0 + np.exp(-logit))
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _candidates(cat: list[str], num: list[str], seed: int) -> dict:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    logistic = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "cat",
                            OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5),
                            cat,
                        ),
                        (
                            "num",
                            make_pipeline(
                                SimpleImputer(strategy="median", add_indicator=True),
                                StandardScaler(),
                            ),
                            num,
                        ),
                    ]
                ),
            ),
            ("model", LogisticRegression(C=0.3, max_iter=2000)),
        ]
    )
    boosting = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        (
                            "cat",
                            OrdinalEncoder(
                                handle_unknown="use_encoded_value",
                                unknown_value=np.nan,
                                encoded_missing_value=np.nan,
                            ),
                            cat,
                        ),
                        ("num", "passthrough", num),
                    ]
                ),
            ),
            (
                "model",
                HistGradientBoostingClassifier(
                    categorical_features=list(range(len(cat))),
                    learning_rate=0.1,
                    max_iter=80,
                    max_leaf_nodes=15,
                    min_samples_leaf=40,
                    l2_regularization=1.0,
                    early_stopping=False,
                    random_state=seed,
                ),
            ),
        ]
    )
    return {
        "logistic": logistic,
        "boosting": boosting,
        "naive_bayes": _FrequencyNB(categorical=tuple(cat), numeric=tuple(num)),
    }


def _text(col: pd.Series) -> np.ndarray:
    """Categories as text, a missing value being the category ``(missing)``."""
    return col.astype("object").where(col.notna(), _MISSING).astype(str).to_numpy()


def _distinct_text(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code of each value, the text of each code): :func:`_text` of every distinct value
    only; code -1 is a missing value."""
    codes, uniques = pd.factorize(col)
    return codes, _text(pd.Series(np.asarray(uniques, dtype=object), dtype=object))


def _vocabulary(frame: pd.DataFrame, cat) -> dict[str, pd.Index]:
    """The categories of each categorical feature, sorted as text."""
    out = {}
    for c in cat:
        codes, texts = _distinct_text(frame[c])
        seen = set(texts) | ({_MISSING} if (codes < 0).any() else set())
        out[c] = pd.Index(sorted(seen), dtype="object")
    return out


def _prepare(frame: pd.DataFrame, cat, num, bounds: dict | None, vocabulary: dict) -> pd.DataFrame:
    """Model input: each category as its position in ``vocabulary`` (-1 for one not seen
    in training; missing is the category ``(missing)``), numbers clipped to ``bounds``
    (the training 1st-99th percentiles) so that unusual values do not extrapolate.

    The vocabulary is sorted as text, so the encoders of the models order and group the
    codes exactly as they would the text (the same fit), without handling strings.
    """
    X = pd.DataFrame(index=frame.index)
    for c in cat:
        codes, texts = _distinct_text(frame[c])
        known = np.append(vocabulary[c].get_indexer(texts), vocabulary[c].get_indexer([_MISSING]))
        X[c] = known[codes]  # code -1 (missing) takes the last entry
    for c in num:
        lo, hi = (bounds or {}).get(c, (None, None))
        X[c] = frame[c].astype("float64").clip(lower=lo, upper=hi)
    return X


def _auc_interval(auc: float, n_pos: int, n_neg: int, confidence: float = 0.95):
    """Hanley & McNeil (1982) normal interval of an AUC."""
    if not (n_pos and n_neg) or np.isnan(auc):
        return np.nan, np.nan
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
        n_pos * n_neg
    )
    z = _st.norm.ppf(0.5 + confidence / 2)
    half = z * np.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def compute_classifier_metrics(y, p, *, base_rate: float, model: str = "") -> pd.DataFrame:
    """AUC and Brier score of probabilities ``p`` against outcomes ``y``, with intervals.

    Definitions: AUC = probability that a random won example scores above a random lost
    one (95 % interval by Hanley & McNeil); Brier = mean of (p - y)^2 (95 % normal
    interval); ``brier_base`` = Brier of always predicting ``base_rate``;
    ``brier_skill`` = 1 - brier / brier_base (above 0: better than the base rate).

    Parameters
    ----------
    y : array-like of 0/1
    p : array-like of float in [0, 1]
    base_rate : float
        The reference probability (the training win rate).
    model : str
        Label of the row.

    Returns
    -------
    DataFrame
        One row: ``model, n, won, auc, auc_low, auc_high, brier, brier_low, brier_high,
        brier_base, brier_skill``.

    Raises
    ------
    ValueError
        When ``y`` and ``p`` differ in length.

    Examples
    --------
    >>> m = compute_classifier_metrics([0, 1], [0.2, 0.6], base_rate=0.5)
    >>> float(m["auc"].iloc[0]), round(float(m["brier"].iloc[0]), 2)
    (1.0, 0.1)
    """
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    if y.shape != p.shape:
        raise ValueError(f"y and p must have the same length ({len(y)} vs {len(p)})")
    n_pos, n = int(y.sum()), len(y)
    if 0 < n_pos < n:
        from sklearn.metrics import roc_auc_score

        auc = float(roc_auc_score(y, p))
    else:
        auc = np.nan
    lo, hi = _auc_interval(auc, n_pos, n - n_pos)
    err = (p - y) ** 2
    brier = float(err.mean()) if n else np.nan
    se = float(err.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
    base = float(((base_rate - y) ** 2).mean()) if n else np.nan
    return pd.DataFrame(
        {
            "model": [model],
            "n": [n],
            "won": [n_pos],
            "auc": [auc],
            "auc_low": [lo],
            "auc_high": [hi],
            "brier": [brier],
            "brier_low": [brier - 1.96 * se],
            "brier_high": [brier + 1.96 * se],
            "brier_base": [base],
            "brier_skill": [1 - brier / base if base else np.nan],
        }
    )


def compute_calibration_curve(y, p, *, bins: int = 8, model: str = "") -> pd.DataFrame:
    """Observed win rate against predicted probability, in quantile bins.

    Parameters
    ----------
    y : array-like of 0/1
    p : array-like of float
    bins : int, default 8
        At most this many bins of (about) equal count.
    model : str
        Label of the rows.

    Returns
    -------
    DataFrame
        ``model, bin, n, won, mean_predicted, observed, ci_low, ci_high`` (observed =
        won / n in the bin; 95 % Wilson interval).

    Examples
    --------
    >>> c = compute_calibration_curve([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], bins=2)
    >>> c["observed"].tolist()
    [0.0, 1.0]
    """
    if bins < 1:
        raise ValueError(f"bins={bins!r} must be at least 1")
    frame = pd.DataFrame({"y": np.asarray(y, dtype="float64"), "p": np.asarray(p, "float64")})
    ranks = frame["p"].rank(method="first")
    frame["bin"] = np.ceil(ranks * bins / max(len(frame), 1)).astype("int64") - 1
    g = frame.groupby("bin", sort=True)
    out = pd.DataFrame(
        {
            "n": g.size(),
            "won": g["y"].sum().astype("int64"),
            "mean_predicted": g["p"].mean(),
        }
    ).reset_index()
    out["observed"] = out["won"] / out["n"]
    lo, hi = wilson_interval(out["won"].to_numpy(), out["n"].to_numpy())
    out["ci_low"], out["ci_high"] = lo, hi
    out.insert(0, "model", model)
    return out


def compute_stage_product_rates(
    examples: pd.DataFrame, *, strength: float = 20.0, confidence: float = 0.95
) -> pd.DataFrame:
    """Win rate per stage x product, shrunk towards the stage rate (then the overall rate).

    Counts are deals, not examples: a deal counts once in each (stage, product) cell it
    was seen in. With ``won`` wins out of ``n`` deals in a cell, a stage rate
    ``p_stage = (won_s + k p_all) / (n_s + k)`` and ``k = strength``, the cell's rate is
    ``(won + k p_stage) / (n + k)``; its interval is the matching Beta posterior interval.

    Parameters
    ----------
    examples : DataFrame
        From :func:`compute_training_examples` (``opportunity_id, won`` and ``stage``
        and/or ``product`` when present).
    strength : float, default 20
        Pseudo-deals of the prior (larger = more shrinkage).
    confidence : float, default 0.95

    Returns
    -------
    DataFrame
        ``stage, product`` (those present), ``n, won, raw_rate, win_rate, ci_low,
        ci_high``.

    Raises
    ------
    ValueError
        When ``strength`` is not positive.

    Examples
    --------
    >>> ex = pd.DataFrame({"opportunity_id": ["a", "b"], "stage": ["S", "S"],
    ...                    "product": ["P", "Q"], "won": [1, 0]})
    >>> compute_stage_product_rates(ex, strength=2)["win_rate"].round(3).tolist()
    [0.667, 0.333]
    """
    if not strength > 0:
        raise ValueError(f"strength={strength!r} must be positive")
    keys = [c for c in ("stage", "product") if c in examples.columns]
    ex = examples.copy()
    for c in keys:
        ex[c] = ex[c].astype("object").where(ex[c].notna(), _MISSING).astype(str)
    deals = ex.drop_duplicates(["opportunity_id", *keys])
    p_all = deals.drop_duplicates("opportunity_id")["won"].mean()
    if not keys:
        n, w = len(deals), int(deals["won"].sum())
        cells = pd.DataFrame({"n": [n], "won": [w], "prior": [p_all]})
    else:
        cells = deals.groupby(keys).agg(n=("won", "size"), won=("won", "sum")).reset_index()
        if len(keys) == 2:
            st = deals.groupby("stage").agg(n=("won", "size"), won=("won", "sum"))
            p_stage = (st["won"] + strength * p_all) / (st["n"] + strength)
            cells["prior"] = cells["stage"].map(p_stage)
        else:
            cells["prior"] = p_all
    a = cells["won"] + strength * cells["prior"]
    b = cells["n"] - cells["won"] + strength * (1 - cells["prior"])
    cells["raw_rate"] = cells["won"] / cells["n"]
    cells["win_rate"] = a / (a + b)
    tail = (1 - confidence) / 2
    cells["ci_low"] = _st.beta.ppf(tail, a, b)
    cells["ci_high"] = _st.beta.ppf(1 - tail, a, b)
    cells["won"] = cells["won"].astype("int64")
    return cells.drop(columns="prior")


@dataclass(frozen=True)
class WinModel:
    """A fitted win-probability model and how it was chosen.

    Attributes
    ----------
    method : str
        ``"<model> (calibrated)"`` or ``"stage x product rates"`` (the fallback).
    as_of : Timestamp
        Nothing after this day was used.
    categorical, numeric : tuple of str
        The features used.
    estimator : object or None
        The calibrated scikit-learn estimator (None for the fallback).
    rates : DataFrame or None
        The fallback's rates (:func:`compute_stage_product_rates`).
    comparison : DataFrame
        Test-period metrics per candidate (:func:`compute_classifier_metrics` rows plus
        ``chosen``); empty for the fallback.
    calibration : DataFrame
        Test-period calibration curves (:func:`compute_calibration_curve` rows).
    base_rate : float
        Share of training examples won.
    reference : dict
        The typical value of each feature (most frequent category, median number):
        factors are measured against it.
    n_closed, n_examples : int
        Closed deals that were open on a cut date, and the (deal, cut date) examples
        learned from (a sample of all of them beyond ``max_examples``).
    split_date : Timestamp or None
        Training deals closed on or before it; test examples are cut after it.
    notes : tuple of str
        What was done and why (fallbacks, features left out, sampling).
    bounds : dict
        Feature -> (low, high): numbers are clipped to the training 1st-99th percentiles.
    vocabulary : dict
        Feature -> the categories seen in training (sorted), which the model knows by
        position.
    """

    method: str
    as_of: pd.Timestamp
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    estimator: object | None
    rates: pd.DataFrame | None
    comparison: pd.DataFrame
    calibration: pd.DataFrame
    base_rate: float
    reference: dict
    n_closed: int
    n_examples: int
    split_date: pd.Timestamp | None = None
    notes: tuple[str, ...] = field(default=())
    bounds: dict = field(default_factory=dict)
    vocabulary: dict = field(default_factory=dict)

    @property
    def fallback(self) -> bool:
        """True when the model is the shrunken stage x product rates."""
        return self.estimator is None

    def predict(self, features: pd.DataFrame, *, n_jobs: int = 1) -> np.ndarray:
        """Win probabilities of rows shaped like :func:`compute_deal_features`.

        ``n_jobs`` threads share large inputs (-1: all cores); every row's probability
        is computed on its own, so the result does not depend on it.
        """
        if self.estimator is not None:
            X = _prepare(features, self.categorical, self.numeric, self.bounds, self.vocabulary)
            return self._predict_prepared(X, n_jobs)
        return _rate_lookup(self.rates, features, self.base_rate)

    def _predict_prepared(self, X: pd.DataFrame, n_jobs: int = 1) -> np.ndarray:
        from joblib import Parallel, delayed, effective_n_jobs

        parts = min(effective_n_jobs(n_jobs), len(X) // _ROWS_PER_THREAD) if n_jobs != 1 else 1
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore")
            if parts <= 1:
                return self.estimator.predict_proba(X)[:, 1]
            bounds = np.linspace(0, len(X), parts + 1).astype("int64")
            me = os.getpid()
            chunks = Parallel(n_jobs=parts, backend="threading")(
                delayed(_predict_chunk)(self.estimator, X.iloc[a:b], me)
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            )
            return np.concatenate(chunks)


#: Fewest rows worth a thread of their own when predicting.
_ROWS_PER_THREAD = 20_000


def _predict_chunk(estimator, X: pd.DataFrame, caller: int) -> np.ndarray:
    with task_context(caller):  # one OpenMP thread in this thread too
        return estimator.predict_proba(X)[:, 1]


def _rate_lookup(rates: pd.DataFrame, features: pd.DataFrame, base_rate: float) -> np.ndarray:
    keys = [c for c in ("stage", "product") if c in rates.columns]
    if not keys:
        return np.full(len(features), float(rates["win_rate"].iloc[0]))
    f = pd.DataFrame(index=range(len(features)))
    for c in keys:
        col = features[c] if c in features else pd.Series(np.nan, index=features.index)
        f[c] = col.astype("object").where(col.notna(), _MISSING).astype(str).to_numpy()
    merged = f.merge(rates[[*keys, "win_rate"]], on=keys, how="left")
    if "stage" in keys and len(keys) == 2:  # unseen product: the stage's pooled rate
        st = rates.groupby("stage").apply(
            lambda g: np.average(g["win_rate"], weights=g["n"]), include_groups=False
        )
        merged["win_rate"] = merged["win_rate"].fillna(merged["stage"].map(st))
    return merged["win_rate"].fillna(base_rate).to_numpy(dtype="float64")


def _usable(frame: pd.DataFrame, cols) -> list[str]:
    return [c for c in cols if c in frame and frame[c].notna().any() and frame[c].nunique() > 1]


def _split_date(examples: pd.DataFrame, test_share: float) -> pd.Timestamp:
    closes = examples.drop_duplicates("opportunity_id")["close_date"].sort_values()
    return pd.Timestamp(closes.iloc[int(np.floor((1 - test_share) * (len(closes) - 1)))])


def _calibrated(estimator, X, y, groups, seed):
    from sklearn.base import clone
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GroupKFold

    codes = pd.factorize(pd.Series(groups))[0]
    folds = list(GroupKFold(n_splits=2, shuffle=True, random_state=seed).split(X, y, codes))
    method = "isotonic" if len(y) >= 2000 else "sigmoid"
    model = CalibratedClassifierCV(clone(estimator), method=method, cv=folds)
    model.fit(X, y)  # warnings: silenced by the caller (see parallel.task_context)
    return model


def _fit_candidate(estimator, X_train, y_train, X_test, caller: int):
    """One task of the model comparison: fit a candidate, predict the test period."""
    with task_context(caller):
        estimator.fit(X_train, y_train)
        return estimator, estimator.predict_proba(X_test)[:, 1]


def _calibrate_task(estimator, X, y, groups, seed, X_test, caller: int):
    """One task of the calibration: calibrate ``estimator`` on ``X`` (and predict
    ``X_test`` when given)."""
    with task_context(caller):
        model = _calibrated(estimator, X, y, groups, seed)
        return model, None if X_test is None else model.predict_proba(X_test)[:, 1]


def _fan_out(calls: list, n_jobs: int) -> list:
    """Run joblib ``calls`` in order (threads here, or the active joblib backend)."""
    from joblib import Parallel

    with configured():
        return Parallel(n_jobs=n_jobs, prefer="threads")(calls)


def fit_win_model(
    ds: Dataset,
    *,
    as_of,
    every_days: int = 14,
    test_share: float = 0.25,
    min_closed: int = 150,
    min_per_class: int = 25,
    strength: float = 20.0,
    seed: int = 0,
    max_examples: int | None = 40_000,
    n_jobs: int = -1,
) -> WinModel:
    """Learn win probabilities from the deals closed on or before ``as_of``.

    1. Training examples come from :func:`compute_training_examples` (no deal closed
       after ``as_of`` is ever seen, and every feature is as it was on its cut date).
       Beyond ``max_examples`` a seeded random sample of them is learned from, in which
       every (cut date, outcome) stratum keeps the same share (said in ``notes``): more
       examples of the same deals add little to the model but cost time in proportion.
       The default keeps every example of up to about 12,000 closed deals (the 5,000
       deals of the demo data give about 16,000 examples, 10,000 about 32,000; 1,000,000
       give 3.2 million).
    2. Time-based split: training deals closed on or before the split date (chosen so
       that about ``test_share`` of the closed deals close after it); test examples are
       cut after it. Examples in between are left out so the test never leaks.
    3. Logistic regression (L2, C = 0.3), gradient boosting and the naive-Bayes
       frequency baseline are fitted on the training part and compared on the test part
       (:func:`compute_classifier_metrics`, :func:`compute_calibration_curve`).
    4. The best by AUC is calibrated (sigmoid, or isotonic with 2,000+ examples; 2-fold
       cross-validation grouped by deal); the calibrated version is tested too, then
       refitted on all examples.

    With fewer than ``min_closed`` closed deals (or ``min_per_class`` wins or losses, or
    a test period without both outcomes) it falls back to
    :func:`compute_stage_product_rates` and says so in ``notes``.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    every_days : int, default 14
        Days between training cut dates.
    test_share : float, default 0.25
        Share of closed deals (the most recent) held out for the comparison.
    min_closed, min_per_class : int
        Below these the fallback rates are used.
    strength : float, default 20
        Shrinkage of the fallback rates.
    seed : int, default 0
        Seed of the gradient boosting, the calibration folds and the sample.
    max_examples : int or None, default 40,000
        Most training examples learned from (None: all).
    n_jobs : int, default -1
        Parallel workers for the candidate fits and the calibrations (-1: all cores; 1:
        no parallelism). They run in threads unless a joblib backend is set
        (``joblib.parallel_config``, e.g. Dask: see :mod:`pipeline_lib.parallel`); the
        model is the same either way.

    Returns
    -------
    WinModel

    Raises
    ------
    ValueError
        When ``test_share`` is not in (0, 1).
    InsufficientDataError
        When no deal has closed by ``as_of``, or every closed deal was won (or lost).

    Examples
    --------
    >>> model = fit_win_model(ds, as_of="2025-12-31")  # doctest: +SKIP
    >>> model.comparison[["model", "auc", "brier"]]  # doctest: +SKIP
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share={test_share!r} must be between 0 and 1")
    ts = to_timestamp(as_of)
    ex = compute_training_examples(
        ds, as_of=ts, every_days=every_days, max_examples=max_examples, seed=seed
    )
    outcomes = ex.drop_duplicates("opportunity_id")["won"]
    if outcomes.nunique() < 2:
        seen, missing = ("won", "lost") if outcomes.iloc[0] == 1 else ("lost", "won")
        which = (
            f"the only deal closed by {ts.date()} (and open on a past cut date) was"
            if len(outcomes) == 1
            else f"all {len(outcomes):,} deals closed by {ts.date()} (and open on a past cut "
            "date) were"
        )
        raise InsufficientDataError(
            f"{which} {seen}: win probabilities need {missing} deals too, to learn what tells "
            "the two apart; load more history or choose a later as_of"
        )
    # one thread per fit: OpenMP threads fighting for busy cores slow boosting tenfold
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fit(ex, ds, ts, test_share, min_closed, min_per_class, strength, seed, n_jobs)


def _fit(ex, ds, ts, test_share, min_closed, min_per_class, strength, seed, n_jobs) -> WinModel:
    """The body of :func:`fit_win_model` once the training examples are built."""
    notes = []
    cat = _usable(ex, CATEGORICAL_FEATURES)
    num = _usable(ex, NUMERIC_FEATURES)
    if ds.stage_history is None:
        notes.append(
            "No stage history: stage, time in stage and close-date pushes are not used "
            "(a deal's stage on past dates cannot be known without it)."
        )
    n_closed, n_won = ex.attrs["n_deals"], ex.attrs["n_won_deals"]
    if len(ex) < ex.attrs["n_available"]:
        notes.append(
            f"Learnt from a random sample of {len(ex):,} of the {ex.attrs['n_available']:,} "
            "examples (deal x cut date), every cut date and outcome keeping the same share "
            f"(seed {seed}): more examples of the same deals would add little."
        )
    base_rate = float(ex["won"].mean())
    reference = {c: ex[c].mode(dropna=True).iloc[0] for c in cat}
    reference.update({c: float(ex[c].median()) for c in num})
    bounds = {c: (float(ex[c].quantile(0.01)), float(ex[c].quantile(0.99))) for c in num}
    split = _split_date(ex, test_share)
    train = ex.loc[ex["close_date"] <= split]
    test = ex.loc[ex["cut"] > split]
    reason = None
    if n_closed < min_closed or min(n_won, n_closed - n_won) < min_per_class:
        reason = (
            f"only {n_closed:,} closed deals ({n_won:,} won) were open on a cut date "
            f"before {ts.date()}; a model needs {min_closed:,} with {min_per_class} of each "
            "outcome"
        )
    elif test["won"].nunique() < 2 or train["won"].nunique() < 2:
        reason = "the time-based test period does not hold both won and lost deals"
    if reason is not None:
        rates = compute_stage_product_rates(ex, strength=strength)
        keys = " x ".join(c for c in ("stage", "product") if c in rates) or "overall"
        notes.insert(
            0,
            f"Too little history for a model ({reason}): win probabilities are {keys} "
            f"win rates shrunk towards the broader rate ({strength:g} pseudo-deals).",
        )
        return WinModel(
            method=f"{keys} rates (fallback)",
            as_of=ts,
            categorical=tuple(cat),
            numeric=tuple(num),
            estimator=None,
            rates=rates,
            comparison=pd.DataFrame(),
            calibration=pd.DataFrame(),
            base_rate=base_rate,
            reference=reference,
            n_closed=n_closed,
            n_examples=len(ex),
            split_date=None,
            notes=tuple(notes),
            bounds=bounds,
        )

    from joblib import delayed

    vocab = _vocabulary(ex, cat)
    X_train, X_test = (
        _prepare(train, cat, num, bounds, vocab),
        _prepare(test, cat, num, bounds, vocab),
    )
    y_train = train["won"].to_numpy()
    train_rate = float(train["won"].mean())
    candidates = _candidates(cat, num, seed)
    me = os.getpid()
    fits = _fan_out(
        [delayed(_fit_candidate)(est, X_train, y_train, X_test, me) for est in candidates.values()],
        n_jobs,
    )
    rows, curves, fitted = [], [], {}
    for key, (est, p) in zip(candidates, fits, strict=True):
        fitted[key] = est
        name = _MODEL_NAMES[key]
        rows.append(compute_classifier_metrics(test["won"], p, base_rate=train_rate, model=name))
        curves.append(compute_calibration_curve(test["won"], p, model=name))
    comparison = pd.concat(rows, ignore_index=True)
    keys = list(fitted)
    best = keys[int(comparison["auc"].fillna(-1).to_numpy().argmax())]
    best_name = f"{_MODEL_NAMES[best]} (calibrated)"
    # calibrated on the training part (tested), and on everything (the final model)
    (_, p), (final, _) = _fan_out(
        [
            delayed(_calibrate_task)(
                fitted[best], X_train, y_train, train["opportunity_id"].to_numpy(), seed, X_test, me
            ),
            delayed(_calibrate_task)(
                fitted[best],
                _prepare(ex, cat, num, bounds, vocab),
                ex["won"].to_numpy(),
                ex["opportunity_id"].to_numpy(),
                seed,
                None,
                me,
            ),
        ],
        n_jobs,
    )
    comparison = pd.concat(
        [
            comparison,
            compute_classifier_metrics(test["won"], p, base_rate=train_rate, model=best_name),
        ],
        ignore_index=True,
    )
    curves.append(compute_calibration_curve(test["won"], p, model=best_name))
    comparison["chosen"] = comparison["model"].eq(best_name)
    comparison["n_train"] = len(train)
    notes.append(
        f"Compared on {len(test):,} examples (deal x cut date) cut after {split.date()}, "
        f"trained on {len(train):,} from deals closed by then; examples of the same deal "
        "are correlated, so the intervals are somewhat optimistic."
    )
    return WinModel(
        method=best_name,
        as_of=ts,
        categorical=tuple(cat),
        numeric=tuple(num),
        estimator=final,
        rates=None,
        comparison=comparison,
        calibration=pd.concat(curves, ignore_index=True),
        base_rate=base_rate,
        reference=reference,
        n_closed=n_closed,
        n_examples=len(ex),
        split_date=split,
        notes=tuple(notes),
        bounds=bounds,
        vocabulary=vocab,
    )


# --------------------------------------------------------------------------- scoring


def _describe(feature: str, value) -> str:
    label = FEATURE_LABELS.get(feature, feature)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return f"{label} unknown"
    if feature in ("log_amount", "log_employees"):
        shown = float(np.expm1(value))
        return f"{label} {shown:,.0f}"
    if feature == "age_days":
        return f"{label} {value:,.0f} days"
    if feature == "days_in_stage":
        return f"{value:,.0f} days in stage"
    if feature == "pushes":
        return f"{value:,.0f} close-date push{'es' if value != 1 else ''}"
    if feature == "days_to_close":
        return f"{-value:,.0f} days overdue" if value < 0 else f"closes in {value:,.0f} days"
    return f"{label} {value}"


def _factors(
    model: WinModel, feats: pd.DataFrame, p: np.ndarray, top: int, n_jobs: int = 1
) -> list[str]:
    """Top factors per deal: the change in probability when a feature is set to typical."""
    cols = [c for c in (*model.categorical, *model.numeric) if c in feats]
    if model.fallback:
        cols = [c for c in ("stage", "product") if c in feats and c in model.rates]
    if not cols or top < 1 or feats.empty:
        return [""] * len(feats)
    cols = [c for c in cols if model.reference.get(c) is not None]
    if not cols:
        return [""] * len(feats)
    # one batch: every deal once per feature, with that feature set to its typical value
    if model.fallback:
        alt = pd.concat([feats.assign(**{c: model.reference[c]}) for c in cols], ignore_index=True)
        p_alt = model.predict(alt)
    else:  # the model input is prepared once; each block swaps in one typical value
        feat_cols = (*model.categorical, *model.numeric)
        prep = (model.categorical, model.numeric, model.bounds, model.vocabulary)
        X = _prepare(feats, *prep)
        typical = _prepare(pd.DataFrame({c: [model.reference[c]] for c in feat_cols}), *prep)
        # a deal whose value is the typical one already keeps its probability (the same
        # input gives the same output): only the others are predicted again
        p_alt = np.repeat(p[None, :], len(cols), axis=0)
        blocks, where = [], []
        for j, c in enumerate(cols):
            value = typical[c].iloc[0]
            change = np.flatnonzero(X[c].to_numpy() != value)
            if len(change):
                blocks.append(X.iloc[change].assign(**{c: value}))
                where.append((j, change))
        if blocks:
            pred = model._predict_prepared(pd.concat(blocks, ignore_index=True), n_jobs)
            starts = np.cumsum([0] + [len(change) for _, change in where])
            for (j, change), a in zip(where, starts[:-1], strict=True):
                p_alt[j, change] = pred[a : a + len(change)]
    deltas = p[:, None] - p_alt.reshape(len(cols), len(feats)).T
    order = np.argsort(-np.abs(deltas), axis=1)[:, :top]  # the largest changes first
    picked = np.take_along_axis(deltas, order, axis=1)
    shown = np.abs(picked) >= 0.005
    parts = np.full(order.shape, "", dtype=object)
    for j, c in enumerate(cols):  # feature by feature: the deals where it is a top factor
        deal, slot = np.nonzero(shown & (order == j))
        if len(deal):
            values = feats[c].to_numpy()[deal]
            points = picked[deal, slot] * 100
            parts[deal, slot] = [
                f"{_describe(c, v)} ({pt:+.0f} pts)" for v, pt in zip(values, points, strict=True)
            ]
    return ["; ".join(p for p in row if p) for row in parts.tolist()]


def score_open_deals(
    ds: Dataset,
    *,
    as_of,
    model: WinModel | None = None,
    top_factors: int = 3,
    max_factor_deals: int | None = 20_000,
    n_jobs: int = -1,
    **fit_options,
) -> pd.DataFrame:
    """Win probability, expected value and top factors of every deal open on ``as_of``.

    A factor is the change in the deal's win probability (in percentage points) when
    that feature is replaced by its typical value (most frequent category, median
    number) and everything else is kept: positive factors raise the deal's chance.
    Factors cost one prediction per deal and feature: they are worked out for the
    ``max_factor_deals`` deals of most expected value (all deals of most CRMs; a
    million-deal history has about 45,000 open ones), and are missing for the others.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    model : WinModel, optional
        A model from :func:`fit_win_model` with the same ``as_of``; fitted when omitted
        (``fit_options`` are passed on).
    top_factors : int, default 3
    max_factor_deals : int or None, default 20,000
        Deals (most expected value first) whose factors are worked out; None: all.
    n_jobs : int, default -1
        Threads for the predictions (-1: all cores), also passed on when fitting.

    Returns
    -------
    DataFrame
        One row per open deal, most expected value first: ``opportunity_id, name,
        product, stage, owner, team`` (those present), ``amount, close_date`` (expected),
        ``win_probability, expected_value`` (amount x win_probability), ``factors``
        (missing beyond ``max_factor_deals``). ``attrs["factors_for"]``: how many deals
        have their factors worked out.

    Raises
    ------
    ValueError
        When ``model`` was fitted for another ``as_of``, or ``max_factor_deals`` is not
        a positive integer.
    InsufficientDataError
        When no deal is open on ``as_of`` or none has closed before it.

    Examples
    --------
    >>> score_open_deals(ds, as_of="2025-12-31").head()  # doctest: +SKIP
    """
    ts = to_timestamp(as_of)
    if max_factor_deals is not None and (
        isinstance(max_factor_deals, bool)
        or not isinstance(max_factor_deals, int | np.integer)
        or max_factor_deals < 1
    ):
        raise ValueError(
            f"max_factor_deals={max_factor_deals!r} must be a positive integer or None"
        )
    if model is None:
        model = fit_win_model(ds, as_of=ts, n_jobs=n_jobs, **fit_options)
    elif model.as_of != ts:
        raise ValueError(
            f"model was fitted as of {model.as_of.date()}, not as_of={ts.date()}: "
            "refit it with fit_win_model(ds, as_of=as_of)"
        )
    opps, feats, _ = _open_deals(ds, ts)  # row i of feats describes row i of opps
    if feats.empty:
        raise InsufficientDataError(f"no deal is open on {ts.date()}: nothing to score")
    p = model.predict(feats, n_jobs=n_jobs)
    out = pd.DataFrame({"opportunity_id": feats["opportunity_id"]})
    for c in ("name", "product", "stage", "owner", "team"):
        if c in opps:
            out[c] = opps[c].to_numpy()
    out["amount"] = opps["amount"].astype("float64").to_numpy()
    out["close_date"] = opps["close_date"].to_numpy()
    out["win_probability"] = p
    out["expected_value"] = out["amount"] * out["win_probability"]
    order = out.sort_values(
        ["expected_value", "opportunity_id"], ascending=[False, True], na_position="last"
    ).index.to_numpy()
    out = out.loc[order].reset_index(drop=True)
    top = order if max_factor_deals is None else order[:max_factor_deals]
    factors = np.full(len(out), np.nan, dtype=object)  # each deal's factors are its own:
    factors[: len(top)] = _factors(  # worked out for the first deals only, in their order
        model, feats.iloc[top].reset_index(drop=True), p[top], top_factors, n_jobs
    )
    out["factors"] = factors
    out.attrs["factors_for"] = len(top)
    return out
