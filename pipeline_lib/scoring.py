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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as _st
from sklearn.base import BaseEstimator, ClassifierMixin
from threadpoolctl import threadpool_limits

from . import schema
from .dataset import Dataset, to_timestamp
from .errors import InsufficientDataError
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


def _history_state(hist: pd.DataFrame | None) -> pd.DataFrame | None:
    """Per stage-history row: the cumulative close-date pushes and when the stage began.

    Both depend only on the deal's earlier rows, so cutting the result at any date gives
    the state as it was known on that date.
    """
    if hist is None or hist.empty:
        return None
    h = hist.sort_values(["opportunity_id", "entered_at"], kind="stable")
    h = h.loc[h["entered_at"].notna(), ["opportunity_id", "stage", "entered_at"]].assign(
        close_date=h.get("close_date", pd.NaT)
    )
    same = h["opportunity_id"].eq(h["opportunity_id"].shift())
    pushed = same & (h["close_date"] > h["close_date"].shift())
    new_stage = ~same | h["stage"].ne(h["stage"].shift())
    run = new_stage.cumsum()
    return h.assign(
        pushes=pushed.astype("int64").groupby(h["opportunity_id"]).cumsum(),
        stage_start=h["entered_at"].groupby(run).transform("first"),
    )


def _asof_rows(left: pd.DataFrame, table: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """For each ``left`` row (``opportunity_id``, ``end``): ``cols`` of the last ``table``
    row of that deal entered strictly before ``end`` (missing when there is none)."""
    if table is None or table.empty:
        out = pd.DataFrame({c: pd.Series(np.nan, index=left.index) for c in cols})
        return out.assign(_found=False)
    t = table.loc[table["entered_at"].notna(), ["opportunity_id", "entered_at", *cols]]
    t = t.sort_values("entered_at", kind="stable")
    t = t.assign(_found=True, entered_at=t["entered_at"].astype("datetime64[ns]"))
    lk = left[["opportunity_id", "end"]].assign(
        _pos=np.arange(len(left)), end=left["end"].astype("datetime64[ns]")
    )
    merged = pd.merge_asof(
        lk.sort_values("end", kind="stable"),
        t,
        left_on="end",
        right_on="entered_at",
        by="opportunity_id",
        allow_exact_matches=False,
        direction="backward",
    ).sort_values("_pos")
    merged.index = left.index
    return merged[[*cols, "_found"]]


def _deal_features(opps: pd.DataFrame, state: pd.DataFrame | None, cuts, ds: Dataset):
    """Features of the deals in ``opps`` (rows as known on their cut) at the end of ``cuts``.

    ``cuts`` is one date or one date per row.
    """
    end = pd.Series(pd.to_datetime(cuts), index=opps.index) + pd.Timedelta(days=1)
    out = pd.DataFrame({"opportunity_id": opps["opportunity_id"].to_numpy()})
    for col in ("stage", "product", "owner", "team", "source"):
        if col in opps:
            out[col] = opps[col].to_numpy()
    products, accounts = ds.table("products"), ds.table("accounts")
    if products is not None and "product" in opps and "family" in products:
        fam = products.drop_duplicates("product").set_index("product")["family"]
        out["family"] = opps["product"].map(fam).to_numpy()
    if accounts is not None and "account" in opps:
        acc = accounts.drop_duplicates("account").set_index("account")
        for col in ("industry", "region"):
            if col in acc:
                out[col] = opps["account"].map(acc[col]).to_numpy()
        if "employees" in acc:
            emp = opps["account"].map(acc["employees"]).astype("float64")
            out["log_employees"] = np.log1p(emp.clip(lower=0)).to_numpy()
    amount = opps["amount"].astype("float64")
    out["log_amount"] = np.log1p(amount.clip(lower=0)).to_numpy()
    out["age_days"] = (end - opps["created_date"]).dt.days.astype("float64").to_numpy()
    out["days_to_close"] = (opps["close_date"] - end).dt.days.astype("float64").to_numpy()
    if state is not None:
        left = pd.DataFrame({"opportunity_id": opps["opportunity_id"], "end": end})
        last = _asof_rows(left, state, ["stage_start", "pushes"])
        out["days_in_stage"] = (end - last["stage_start"]).dt.days.astype("float64").to_numpy()
        out["pushes"] = last["pushes"].astype("float64").to_numpy()
    return out


def _open_at_cuts(base: Dataset, deals: pd.DataFrame, cuts: pd.DatetimeIndex) -> pd.DataFrame:
    """Rows of ``deals`` as :meth:`Dataset.snapshot` shows them on each cut they were open.

    Vectorised equivalent of ``base.snapshot(cut).opportunities`` over many cuts: a deal is
    present when created before the end of the cut (or with no created date), open when it
    closed after it; its stage, amount and expected close date are those of its last
    stage-history row before the end of the cut (the final amount/close date where the row
    lacks one); without such a row it is placed in the last open stage.
    """
    pairs = deals.assign(_k=1).merge(pd.DataFrame({"cut": cuts, "_k": 1}), on="_k")
    pairs = pairs.drop(columns="_k")
    end = pairs["cut"] + pd.Timedelta(days=1)
    keep = ~(pairs["created_date"] >= end) & (pairs["close_date"] >= end)
    pairs = pairs.loc[keep].reset_index(drop=True)
    end = pairs["cut"] + pd.Timedelta(days=1)
    hist = base.stage_history
    cols = [c for c in ("stage", "amount", "close_date") if hist is not None and c in hist]
    then = _asof_rows(pairs.assign(end=end), hist, cols)
    found = then["_found"].eq(True)
    last_open = base.stages.open[-1] if base.stages.open else pd.NA
    pairs["stage"] = then["stage"].where(found, last_open) if cols else last_open
    for col in ("amount", "close_date"):
        if col in cols:
            pairs[col] = pairs[col].where(~(found & then[col].notna()), then[col])
    status = pairs["stage"].map(base.stages.status_of, na_action="ignore")
    return pairs.loc[status.eq(schema.OPEN)].reset_index(drop=True)


def _cut_dates(first: pd.Timestamp, as_of: pd.Timestamp, every_days: int) -> pd.DatetimeIndex:
    """Cut dates every ``every_days`` days, ending the day before ``as_of``."""
    n = int((as_of - first).days // every_days)
    if n < 1:
        return pd.DatetimeIndex([])
    return pd.DatetimeIndex([as_of - pd.Timedelta(days=every_days * k) for k in range(n, 0, -1)])


def _check_as_of(ds: Dataset, as_of) -> tuple[Dataset, pd.Timestamp]:
    ts = to_timestamp(as_of)
    if not isinstance(ds, Dataset):
        raise ValueError(f"ds must be a Dataset (from dataset.load_dataset), got {type(ds)}")
    return ds.snapshot(ts), ts


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
    snap, ts = _check_as_of(ds, as_of)
    opps = snap.opportunities
    opps = opps.loc[opps["status"].eq(schema.OPEN)]
    feats = _deal_features(opps, _history_state(snap.stage_history), ts, snap)
    if snap.stage_history is None and "stage" in feats:
        feats = feats.drop(columns="stage")  # see compute_training_examples
    return feats.reset_index(drop=True)


def compute_training_examples(ds: Dataset, *, as_of, every_days: int = 14) -> pd.DataFrame:
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

    Returns
    -------
    DataFrame
        ``cut`` (the date the features describe), the columns of
        :func:`compute_deal_features`, ``won`` (1 won, 0 lost), ``close_date`` (actual)
        and ``expected_close`` (as known on ``cut``).

    Raises
    ------
    ValueError
        When ``every_days`` is not a positive integer.
    InsufficientDataError
        When no deal has closed on or before ``as_of``.
    """
    if not isinstance(every_days, int | np.integer) or every_days < 1:
        raise ValueError(f"every_days={every_days!r} must be a positive integer")
    base, ts = _check_as_of(ds, as_of)
    opps = base.opportunities
    closed = opps.loc[opps["status"].isin([schema.WON, schema.LOST])]
    if closed.empty:
        raise InsufficientDataError(
            f"no deal was won or lost on or before {ts.date()}: win probabilities need "
            "closed deals to learn from; load more history or choose a later as_of"
        )
    outcome = closed.set_index("opportunity_id")
    cuts = _cut_dates(opps["created_date"].min(), ts, every_days)
    rows = _open_at_cuts(base, closed.drop(columns="status"), cuts)
    if rows.empty:
        raise InsufficientDataError(
            f"no closed deal was open on any cut date before {ts.date()} "
            f"(every {every_days} days): the history is too short to learn from"
        )
    f = _deal_features(rows, _history_state(base.stage_history), rows["cut"], base)
    f.insert(0, "cut", rows["cut"].to_numpy())
    f["expected_close"] = rows["close_date"].to_numpy()
    ex = f
    ids = ex["opportunity_id"]
    ex["won"] = ids.map(outcome["status"]).eq(schema.WON).astype("int64")
    ex["close_date"] = ids.map(outcome["close_date"])
    if base.stage_history is None and "stage" in ex:
        ex = ex.drop(columns="stage")  # a best-effort snapshot stage would leak the outcome
    return ex


# --------------------------------------------------------------------------- models


class _FrequencyNB(ClassifierMixin, BaseEstimator):
    """Naive-Bayes win probability from per-feature frequency tables (a CRM classic).

    Numeric features are cut into quantile bins (fitted on the training data); every
    value's win and loss frequencies are Laplace-smoothed.
    """

    def __init__(self, categorical=(), numeric=(), alpha: float = 1.0, bins: int = 5):
        self.categorical = categorical
        self.numeric = numeric
        self.alpha = alpha
        self.bins = bins

    def _codes(self, X: pd.DataFrame) -> dict:
        out = {}
        for c in self.categorical:
            out[c] = X[c].astype("object").where(X[c].notna(), _MISSING).astype(str).to_numpy()
        for c in self.numeric:
            v = X[c].to_numpy(dtype="float64")
            b = np.searchsorted(self.edges_[c], v, side="right").astype(str)
            out[c] = np.where(np.isnan(v), _MISSING, b)
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
            self.tables_[c] = ll.to_dict()
        return self

    def predict_proba(self, X):
        logit = np.full(len(X), self.prior_)
        for c, vals in self._codes(X).items():
            table = self.tables_[c]
            logit = logit + np.array([table.get(v, 0.0) for v in vals])
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


def _prepare(frame: pd.DataFrame, cat, num, bounds: dict | None = None) -> pd.DataFrame:
    """Model input: categories as text (missing as a category), numbers clipped to
    ``bounds`` (the training 1st-99th percentiles) so that unusual values do not
    extrapolate."""
    X = pd.DataFrame(index=frame.index)
    for c in cat:
        X[c] = frame[c].astype("object").where(frame[c].notna(), _MISSING).astype(str)
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
        Closed deals and (deal, cut date) examples learned from.
    split_date : Timestamp or None
        Training deals closed on or before it; test examples are cut after it.
    notes : tuple of str
        What was done and why (fallbacks, features left out).
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

    @property
    def fallback(self) -> bool:
        """True when the model is the shrunken stage x product rates."""
        return self.estimator is None

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Win probabilities of rows shaped like :func:`compute_deal_features`."""
        if self.estimator is not None:
            X = _prepare(features, self.categorical, self.numeric, self.bounds)
            with warnings.catch_warnings(), threadpool_limits(limits=1):
                warnings.simplefilter("ignore")
                return self.estimator.predict_proba(X)[:, 1]
        return _rate_lookup(self.rates, features, self.base_rate)


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return model


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
) -> WinModel:
    """Learn win probabilities from the deals closed on or before ``as_of``.

    1. Training examples come from :func:`compute_training_examples` (no deal closed
       after ``as_of`` is ever seen, and every feature is as it was on its cut date).
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

    Returns
    -------
    WinModel

    Raises
    ------
    ValueError
        When ``test_share`` is not in (0, 1).
    InsufficientDataError
        When no deal has closed by ``as_of``.

    Examples
    --------
    >>> model = fit_win_model(ds, as_of="2025-12-31")  # doctest: +SKIP
    >>> model.comparison[["model", "auc", "brier"]]  # doctest: +SKIP
    """
    if not 0 < test_share < 1:
        raise ValueError(f"test_share={test_share!r} must be between 0 and 1")
    ts = to_timestamp(as_of)
    ex = compute_training_examples(ds, as_of=ts, every_days=every_days)
    # one thread per fit: OpenMP threads fighting for busy cores slow boosting tenfold
    with threadpool_limits(limits=1):
        return _fit(ex, ds, ts, test_share, min_closed, min_per_class, strength, seed)


def _fit(ex, ds, ts, test_share, min_closed, min_per_class, strength, seed) -> WinModel:
    """The body of :func:`fit_win_model` once the training examples are built."""
    notes = []
    cat = _usable(ex, CATEGORICAL_FEATURES)
    num = _usable(ex, NUMERIC_FEATURES)
    if ds.stage_history is None:
        notes.append(
            "No stage history: stage, time in stage and close-date pushes are not used "
            "(a deal's stage on past dates cannot be known without it)."
        )
    deals = ex.drop_duplicates("opportunity_id")
    n_closed, n_won = len(deals), int(deals["won"].sum())
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

    X_train, X_test = _prepare(train, cat, num, bounds), _prepare(test, cat, num, bounds)
    train_rate = float(train["won"].mean())
    rows, curves, fitted = [], [], {}
    for key, est in _candidates(cat, num, seed).items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X_train, train["won"].to_numpy())
            p = est.predict_proba(X_test)[:, 1]
        fitted[key] = est
        name = _MODEL_NAMES[key]
        rows.append(compute_classifier_metrics(test["won"], p, base_rate=train_rate, model=name))
        curves.append(compute_calibration_curve(test["won"], p, model=name))
    comparison = pd.concat(rows, ignore_index=True)
    keys = list(fitted)
    best = keys[int(comparison["auc"].fillna(-1).to_numpy().argmax())]
    best_name = f"{_MODEL_NAMES[best]} (calibrated)"
    cal = _calibrated(
        fitted[best], X_train, train["won"].to_numpy(), train["opportunity_id"].to_numpy(), seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = cal.predict_proba(X_test)[:, 1]
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
    final = _calibrated(
        fitted[best],
        _prepare(ex, cat, num, bounds),
        ex["won"].to_numpy(),
        ex["opportunity_id"].to_numpy(),
        seed,
    )
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


def _factors(model: WinModel, feats: pd.DataFrame, p: np.ndarray, top: int) -> list[str]:
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
    alt = pd.concat([feats.assign(**{c: model.reference[c]}) for c in cols], ignore_index=True)
    p_alt = model.predict(alt).reshape(len(cols), len(feats)).T
    deltas = p[:, None] - p_alt
    out = []
    for i in range(len(feats)):
        order = np.argsort(-np.abs(deltas[i]))[:top]
        parts = [
            f"{_describe(cols[j], feats[cols[j]].iloc[i])} ({deltas[i, j] * 100:+.0f} pts)"
            for j in order
            if abs(deltas[i, j]) >= 0.005
        ]
        out.append("; ".join(parts))
    return out


def score_open_deals(
    ds: Dataset, *, as_of, model: WinModel | None = None, top_factors: int = 3, **fit_options
) -> pd.DataFrame:
    """Win probability, expected value and top factors of every deal open on ``as_of``.

    A factor is the change in the deal's win probability (in percentage points) when
    that feature is replaced by its typical value (most frequent category, median
    number) and everything else is kept: positive factors raise the deal's chance.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    model : WinModel, optional
        A model from :func:`fit_win_model` with the same ``as_of``; fitted when omitted
        (``fit_options`` are passed on).
    top_factors : int, default 3

    Returns
    -------
    DataFrame
        One row per open deal, most expected value first: ``opportunity_id, name,
        product, stage, owner, team`` (those present), ``amount, close_date`` (expected),
        ``win_probability, expected_value`` (amount x win_probability), ``factors``.

    Raises
    ------
    ValueError
        When ``model`` was fitted for another ``as_of``.
    InsufficientDataError
        When no deal is open on ``as_of`` or none has closed before it.

    Examples
    --------
    >>> score_open_deals(ds, as_of="2025-12-31").head()  # doctest: +SKIP
    """
    ts = to_timestamp(as_of)
    if model is None:
        model = fit_win_model(ds, as_of=ts, **fit_options)
    elif model.as_of != ts:
        raise ValueError(
            f"model was fitted as of {model.as_of.date()}, not as_of={ts.date()}: "
            "refit it with fit_win_model(ds, as_of=as_of)"
        )
    feats = compute_deal_features(ds, as_of=ts)
    if feats.empty:
        raise InsufficientDataError(f"no deal is open on {ts.date()}: nothing to score")
    p = model.predict(feats)
    snap = ds.snapshot(ts).opportunities.set_index("opportunity_id")
    ids = feats["opportunity_id"]
    out = pd.DataFrame({"opportunity_id": ids})
    for c in ("name", "product", "stage", "owner", "team"):
        if c in snap:
            out[c] = ids.map(snap[c]).to_numpy()
    out["amount"] = ids.map(snap["amount"]).astype("float64").to_numpy()
    out["close_date"] = ids.map(snap["close_date"]).to_numpy()
    out["win_probability"] = p
    out["expected_value"] = out["amount"] * out["win_probability"]
    out["factors"] = _factors(model, feats, p, top_factors)
    return out.sort_values(
        ["expected_value", "opportunity_id"], ascending=[False, True], na_position="last"
    ).reset_index(drop=True)
