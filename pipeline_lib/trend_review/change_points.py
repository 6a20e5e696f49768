"""Change points: periods where a trend metric changed level (permutation tests, BH)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special
from scipy import stats as st

from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..stats import benjamini_hochberg
from ._common import PERIODS, _check_choice, _no_closed, _segments, _snap
from .trends import _period_frame, _won_deals

__all__ = ["compute_change_points"]


_METRICS = {
    # name: (kind, label)
    "win_rate": ("binomial", "win rate"),
    "cycle_days": ("gaussian", "sales cycle (days)"),
    "avg_won_amount": ("gaussian", "average won deal"),
    "created": ("poisson", "deals created"),
}


def _xlogy(x, y):
    return special.xlogy(x, np.where(x > 0, y, 1.0))


def _split_stats(kind: str, a, b, c, min_size: int) -> np.ndarray:
    """Likelihood-ratio statistic of one change after each split (along the last axis).

    ``kind`` binomial: a = successes, b = trials; poisson: a = counts, b = exposure;
    gaussian (common variance): a = n, b = sum, c = sum of squares.
    """
    ca, cb, cc = (np.cumsum(x, axis=-1) for x in (a, b, c))
    ta, tb, tc = ca[..., -1:], cb[..., -1:], cc[..., -1:]
    la, lb, lc = ca[..., :-1], cb[..., :-1], cc[..., :-1]
    ra, rb, rc = ta - la, tb - lb, tc - lc
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "binomial":

            def ll(k, n):
                return _xlogy(k, k / n) + _xlogy(n - k, (n - k) / n)

            stat = 2 * (ll(la, lb) + ll(ra, rb) - ll(ta, tb))
        elif kind == "poisson":

            def ll(k, e):
                return _xlogy(k, k / e) - k

            stat = 2 * (ll(la, lb) + ll(ra, rb) - ll(ta, tb))
        else:

            def rss(n, s, ss):
                return np.where(n > 0, ss - s**2 / np.where(n > 0, n, 1), 0.0)

            r0 = rss(ta, tb, tc)
            r1 = rss(la, lb, lc) + rss(ra, rb, rc)
            stat = ta * np.log(r0 / r1)
            stat = np.where((la < 2) | (ra < 2), 0.0, stat)
    stat = np.nan_to_num(stat, nan=0.0, posinf=0.0, neginf=0.0)
    n = a.shape[-1]
    pos = np.arange(1, n)
    ok = (pos >= min_size) & (n - pos >= min_size)
    return np.where(ok, stat, 0.0)


# Above this many deal values, the Gaussian metrics' permutation null is drawn from its
# normal large-sample form (see ``_Series._normal_null``); below it, deals are shuffled.
_EXACT_SHUFFLE_MAX = 20_000


class _Series:
    """One metric over consecutive periods, with what its permutation test needs."""

    def __init__(self, kind, a, b, c=None, values=None, codes=None):
        self.kind, self.a, self.b = kind, np.asarray(a, float), np.asarray(b, float)
        self.c = np.zeros(len(self.a)) if c is None else np.asarray(c, float)
        self.values, self.codes = values, codes

    def part(self, lo, hi) -> _Series:
        if self.kind != "gaussian":
            return _Series(self.kind, self.a[lo:hi], self.b[lo:hi])
        keep = (self.codes >= lo) & (self.codes < hi)
        return _Series(
            "gaussian",
            self.a[lo:hi],
            self.b[lo:hi],
            self.c[lo:hi],
            self.values[keep],
            self.codes[keep] - lo,
        )

    def null(self, n_perm: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n_perm`` draws of (a, b, c) with no change: deals' outcomes permuted."""
        if self.kind == "binomial":
            total = int(self.a.sum())
            a = rng.multivariate_hypergeometric(self.b.astype("int64"), total, size=n_perm)
            return a.astype(float), np.broadcast_to(self.b, a.shape), np.zeros(a.shape)
        if self.kind == "poisson":
            share = self.b / self.b.sum()
            a = rng.multinomial(int(self.a.sum()), share, size=n_perm).astype(float)
            return a, np.broadcast_to(self.b, a.shape), np.zeros(a.shape)
        n_perm = max(99, n_perm // 4)  # every deal is shuffled: fewer draws suffice
        if len(self.values) > _EXACT_SHUFFLE_MAX:
            return self._normal_null(n_perm, rng)
        return self._shuffle_null(n_perm, rng)

    def _shuffle_null(self, n_perm: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Period sums of the Gaussian metrics with the deals' values really shuffled."""
        t = len(self.a)
        m = len(self.values)
        codes = rng.permuted(np.broadcast_to(self.codes, (n_perm, m)), axis=1)
        s = np.empty((n_perm, t))
        for r in range(n_perm):  # row by row: no n_perm × m copy of the values
            s[r] = np.bincount(codes[r], weights=self.values, minlength=t)
        # the statistic needs only the total sum of squares, the same in every shuffle
        return np.broadcast_to(self.a, s.shape), s, np.broadcast_to(self.c, s.shape)

    def _normal_null(self, n_perm: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Large-sample draws of the shuffled period sums (their exact mean and covariance).

        Shuffling ``m`` deal values over periods of sizes ``n_i`` gives period sums with
        mean ``n_i μ`` and covariance ``σ² m/(m-1) (diag(n) - n nᵀ/m)`` (sampling without
        replacement; ``μ``, ``σ²`` of all values). With thousands of deals per period the
        sums are normal to a close approximation, so they are drawn directly — O(periods)
        per draw instead of O(deals). The statistic needs only the period sums: the total
        sum of squares is the same in every shuffle.
        """
        n = self.a
        m = n.sum()
        mu = self.values.mean()
        sd = self.values.std() * np.sqrt(m / (m - 1))
        x = rng.standard_normal((n_perm, len(n))) * np.sqrt(n)
        y = x - np.outer(x.sum(axis=1), n / m)
        s = n * mu + sd * y
        return np.broadcast_to(n, s.shape), s, np.broadcast_to(self.c, s.shape)

    def pooled(self, lo, hi) -> float:
        a, b = self.a[lo:hi], self.b[lo:hi]
        if self.kind == "binomial":
            return a.sum() / b.sum() if b.sum() > 0 else np.nan
        if self.kind == "poisson":
            return a.sum() / len(a) if len(a) else np.nan  # deals per period
        return b.sum() / a.sum() if a.sum() > 0 else np.nan  # mean of deal values


def _test_split(series: _Series, min_size, n_perm, rng):
    n = len(series.a)
    if n < 2 * min_size:
        return None
    stat = _split_stats(series.kind, series.a, series.b, series.c, min_size)
    best = int(np.argmax(stat))
    if stat[best] <= 0:
        return None
    null = _split_stats(series.kind, *series.null(n_perm, rng), min_size).max(axis=1)
    p = (1 + int((null >= stat[best] - 1e-9).sum())) / (n_perm + 1)
    if p <= 1 / (n_perm + 1):  # beyond every draw: resolve further with the χ² bound
        p = min(p, float(min(1.0, (stat > 0).sum() * st.chi2.sf(stat[best], 1))))
    return best + 1, float(p)


def _find_changes(series: _Series, *, alpha, min_size, max_changes, n_perm, rng):
    """Binary segmentation: [(index, p_value)] of significant changes, and all tests' p."""
    found, tested = [], []
    stack = [(0, len(series.a))]
    while stack and len(found) < max_changes:
        lo, hi = stack.pop(0)
        res = _test_split(series.part(lo, hi), min_size, n_perm, rng)
        if res is None:
            continue
        k, p = res
        tested.append(p)
        if p <= alpha:
            found.append((lo + k, p))
            stack += [(lo, lo + k), (lo + k, hi)]
    return sorted(found), tested


@memoized(copy=False)
def _rows_by_value(won: pd.DataFrame, col: str) -> dict:
    """Positions of the rows of ``won`` per value of ``col`` (missing values left out)."""
    return won.groupby(col, sort=False).indices


def _won_of(won: pd.DataFrame, col: str, value) -> pd.DataFrame:
    """``won[won[col] == value]`` (the columns of :func:`_make_series`), grouped once."""
    rows = _rows_by_value(won, col).get(value)
    rows = np.sort(rows) if rows is not None else np.array([], dtype=np.intp)
    return won[["period", "cycle", "amount"]].take(rows)  # what _make_series reads


def _make_series(metric: str, f: pd.DataFrame, won) -> _Series:
    """The series of ``metric``; ``won`` is the won deals, or a function giving them."""
    kind = _METRICS[metric][0]
    if metric == "win_rate":
        return _Series(kind, f["won"], f["closed"])
    if metric == "created":
        return _Series(kind, f["created"], f["days"])
    if callable(won):
        won = won()
    name, col = ("cycle", "cycle") if metric == "cycle_days" else ("amount", "amount")
    codes = pd.Index(f["period"]).get_indexer(won["period"])
    vals = won[col].to_numpy(float)
    keep = (codes >= 0) & ~np.isnan(vals)
    return _Series(kind, f[f"n_{name}"], f[f"sum_{name}"], f[f"ss_{name}"], vals[keep], codes[keep])


@memoized()
def compute_change_points(
    ds: Dataset,
    *,
    as_of,
    period: str = "quarter",
    metrics=("win_rate", "cycle_days", "avg_won_amount", "created"),
    by=None,
    basis: str = "close",
    alpha: float = 0.05,
    min_size: int = 2,
    max_changes: int = 2,
    n_perm: int = 1999,
    seed: int = 0,
) -> pd.DataFrame:
    """Periods where a trend metric changed level (change-point detection).

    For each series (metric, and segment with ``by``) over the *complete* periods, the
    best single split maximises a likelihood-ratio statistic — binomial for the win rate
    (won of closed), Poisson for deals created (per day of the period), Gaussian with a
    common variance for the cycle days and amounts of individual won deals. Its p-value
    is a permutation test with ``n_perm`` draws (a quarter as many for the Gaussian
    metrics): the deals' outcomes (won/lost, creation dates, values) are shuffled across
    periods, keeping each period's number of deals, so the maximum over all splits is
    accounted for. Above 20,000 won deals in a series the shuffled period sums of the
    Gaussian metrics are drawn from their exact mean and covariance under shuffling
    (normal large-sample form), which keeps the test fast at scale. Significant splits
    (``p <= alpha``)
    are searched again on each side (binary segmentation, at most ``max_changes`` per
    series, segments of at least ``min_size`` periods). When the observed statistic
    beats every draw, the smaller Bonferroni bound over the splits of its χ²₁
    approximation is reported instead of ``1 / (n_perm + 1)``. ``q_value`` is the
    Benjamini–Hochberg adjustment over every split test run in the call, so scanning many
    segments does not inflate false alarms; changes with ``q_value <= alpha`` are kept.
    The test assumes deals are independent; seasonal swings larger than chance can
    show up as changes.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    period : {"month", "quarter", "year"}, default "quarter"
    metrics : sequence of {"win_rate", "cycle_days", "avg_won_amount", "created"}
    by : str or sequence of str, optional
        Test every value of each column separately (e.g. ``("product", "team")``).
    basis : {"close", "created"}, default "close"
        Period of a closed deal: its close date, or its creation date (cohorts: shows
        when a change started, but young cohorts hold only their fast closers).
    alpha : float, default 0.05
    min_size : int, default 2
    max_changes : int, default 2
    n_perm : int, default 1999
    seed : int, default 0

    Returns
    -------
    DataFrame
        One row per change: ``segment_column, segment, metric, metric_label, period,
        period_start, before, after, change, p_value, q_value`` (``period`` = first period
        after the change; ``before``/``after`` = pooled level between neighbouring
        changes; volume in deals per period). ``segment_column``/``segment`` are
        ``"all"`` without ``by``.

    Raises
    ------
    InsufficientDataError
        When no deal is closed or fewer than ``2 * min_size`` complete periods exist.
    ValueError
        For a bad ``period``, ``basis`` or metric.

    Examples
    --------
    >>> compute_change_points(ds, as_of="2025-12-31", by="product")  # doctest: +SKIP
    """
    _check_choice("period", period, PERIODS)
    _check_choice("basis", basis, ("close", "created"))
    for m in metrics:
        _check_choice("metrics", m, _METRICS)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha={alpha!r} must lie between 0 and 1")
    ds, ts = _snap(ds, as_of)
    opps = ds.opportunities
    _no_closed(opps)
    cols = _segments(opps, by)
    rng = np.random.default_rng(seed)
    base = _period_frame(opps, ts, period, basis=basis)
    base = base[base["complete"]].reset_index(drop=True)
    if len(base) < 2 * min_size:
        raise InsufficientDataError(
            f"change points need at least {2 * min_size} complete {period}s of data; "
            f"there are {len(base)} — use a shorter period or a later as_of"
        )
    won = _won_deals(opps, period, basis)
    series = [("all", "all", base, won)]
    for col in cols:
        f = _period_frame(opps, ts, period, [col], basis=basis)
        f = f[f["complete"]]
        for value, g in f.groupby(col, sort=True):
            # the won deals of the segment, only for the metrics that need them
            def won_in(col=col, value=value):
                return _won_of(won, col, value)

            series.append((col, value, g.reset_index(drop=True), won_in))
    rows, all_p = [], []
    for col, value, f, w in series:
        for metric in metrics:
            s = _make_series(metric, f, w)
            found, tested = _find_changes(
                s, alpha=alpha, min_size=min_size, max_changes=max_changes, n_perm=n_perm, rng=rng
            )
            all_p += tested
            cuts = [0, *[k for k, _ in found], len(s.a)]
            for j, (k, p) in enumerate(found):
                before = s.pooled(cuts[j], k)
                after = s.pooled(k, cuts[j + 2])
                rows.append(
                    {
                        "segment_column": col,
                        "segment": value,
                        "metric": metric,
                        "metric_label": _METRICS[metric][1],
                        "period": str(f["period"].iloc[k]),
                        "period_start": f["period_start"].iloc[k],
                        "before": before,
                        "after": after,
                        "change": after - before,
                        "p_value": p,
                    }
                )
    cols_out = [
        "segment_column",
        "segment",
        "metric",
        "metric_label",
        "period",
        "period_start",
        "before",
        "after",
        "change",
        "p_value",
        "q_value",
    ]
    if not rows:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in cols_out})
        text = ("segment_column", "segment", "metric", "metric_label", "period")
        return empty.astype({c: "str" for c in text}).astype({"period_start": "datetime64[ns]"})
    out = pd.DataFrame(rows)
    q_all = benjamini_hochberg(np.array(all_p))
    lookup = dict(zip(all_p, q_all, strict=True))
    out["q_value"] = out["p_value"].map(lookup)
    out = out[out["q_value"] <= alpha]
    out = out.sort_values(["p_value", "segment_column"], kind="stable", ignore_index=True)
    return out[cols_out]
