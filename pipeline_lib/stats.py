"""Small statistical helpers shared by the analyses (intervals for rates)."""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

__all__ = [
    "benjamini_hochberg",
    "kaplan_meier",
    "km_quantiles",
    "proportion_diff_interval",
    "wilson_interval",
]


def wilson_interval(successes, n, *, confidence: float = 0.95):
    """Wilson score interval for a binomial proportion (vectorised).

    Parameters
    ----------
    successes, n : int or array-like
        Successes and trials; ``n == 0`` gives ``nan`` bounds.
    confidence : float, default 0.95
        Two-sided confidence level.

    Returns
    -------
    (low, high) : tuple of float or ndarray

    Raises
    ------
    ValueError
        When ``confidence`` is not in (0, 1) or successes exceed trials.

    Examples
    --------
    >>> low, high = wilson_interval(8, 10)
    >>> round(float(low), 3), round(float(high), 3)
    (0.49, 0.943)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} must be between 0 and 1")
    k = np.asarray(successes, dtype="float64")
    n = np.asarray(n, dtype="float64")
    if np.any(k > n) or np.any(k < 0):
        raise ValueError("successes must lie between 0 and n")
    z = _st.norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        low, high = centre - half, centre + half
    low = np.where(n > 0, np.clip(low, 0, 1), np.nan)
    high = np.where(n > 0, np.clip(high, 0, 1), np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def kaplan_meier(durations, observed, *, at, confidence: float = 0.95):
    """Kaplan–Meier estimate of the share that has had the event by each time in ``at``.

    Right-censored data: an item with ``observed`` False is known only to have gone
    ``duration`` without the event (e.g. a lead not yet converted, ``duration`` = its age
    today). Events at a time are counted before censorings at the same time. The share
    with the event by ``t`` is ``1 - S(t)``, ``S(t) = prod over event times u <= t of
    (1 - d_u / n_u)`` (``d_u`` events at ``u``, ``n_u`` items with duration >= ``u``). The
    interval is Greenwood's variance on the log(-log S) scale. Beyond the largest
    duration the estimate is undefined (``nan``).

    Parameters
    ----------
    durations : array-like of float
        Time to the event, or to censoring; non-negative, no missing values.
    observed : array-like of bool
        True where the event happened at ``duration``.
    at : array-like of float
        Times at which to report the estimate.
    confidence : float, default 0.95
        Two-sided confidence level of the interval.

    Returns
    -------
    DataFrame
        One row per ``at``: ``time``; ``at_risk`` (items with duration >= time);
        ``events`` (events at or before time); ``share`` (1 - S(time)); ``low``,
        ``high`` (interval of ``share``).

    Raises
    ------
    ValueError
        When lengths differ, a duration is missing or negative, or ``confidence`` is
        not in (0, 1).

    Examples
    --------
    >>> km = kaplan_meier([10, 25, 100, 100, 20, 20], [1, 1, 0, 0, 0, 0], at=[30])
    >>> round(float(km["share"].iloc[0]), 4)  # 1 - (5/6)(2/3)
    0.4444
    """
    import pandas as pd

    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} must be between 0 and 1")
    t = np.asarray(durations, dtype="float64")
    e = np.asarray(observed, dtype=bool)
    at = np.atleast_1d(np.asarray(at, dtype="float64"))
    if t.shape != e.shape:
        raise ValueError("durations and observed must have the same length")
    if np.isnan(t).any() or (t < 0).any():
        raise ValueError("durations must be non-negative numbers without missing values")
    times = np.unique(t[e])
    n_risk = len(t) - np.searchsorted(np.sort(t), times, side="left")
    d = np.bincount(np.searchsorted(times, t[e]), minlength=len(times)).astype("float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - d / n_risk)
        green = np.cumsum(np.where(n_risk > d, d / (n_risk * (n_risk - d)), np.inf))
    # step function evaluated at `at`
    idx = np.searchsorted(times, at, side="right") - 1
    s_at = np.where(idx >= 0, surv[np.maximum(idx, 0)] if len(times) else 1.0, 1.0)
    g_at = np.where(idx >= 0, green[np.maximum(idx, 0)] if len(times) else 0.0, 0.0)
    z = _st.norm.ppf(0.5 + confidence / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(s_at)
        c = z * np.sqrt(g_at) / np.abs(log_s)
        s_low = np.where((s_at > 0) & (s_at < 1), s_at ** np.exp(c), s_at)
        s_high = np.where((s_at > 0) & (s_at < 1), s_at ** np.exp(-c), s_at)
    beyond = at > (t.max() if len(t) else -np.inf)
    events_at = np.where(idx >= 0, np.cumsum(d)[np.maximum(idx, 0)] if len(times) else 0, 0)
    sorted_t = np.sort(t)
    out = pd.DataFrame(
        {
            "time": at,
            "at_risk": (len(t) - np.searchsorted(sorted_t, at, side="left")).astype("int64"),
            "events": events_at.astype("int64"),
            "share": np.where(beyond, np.nan, 1.0 - s_at),
            "low": np.where(beyond, np.nan, 1.0 - s_high),
            "high": np.where(beyond, np.nan, 1.0 - s_low),
        }
    )
    return out


def proportion_diff_interval(k1, n1, k2, n2, *, confidence: float = 0.95):
    """Newcombe's hybrid score interval for ``k2/n2 - k1/n1`` (vectorised).

    Built from the two Wilson intervals (Newcombe 1998, method 10); it stays inside
    [-1, 1] and behaves well with small counts. ``n == 0`` on either side gives ``nan``.

    Parameters
    ----------
    k1, n1 : int or array-like
        Successes and trials of the first (reference) group.
    k2, n2 : int or array-like
        Successes and trials of the second group.
    confidence : float, default 0.95
        Two-sided confidence level.

    Returns
    -------
    (low, high) : tuple of float or ndarray
        Bounds of ``p2 - p1``.

    Examples
    --------
    >>> low, high = proportion_diff_interval(10, 100, 30, 100)
    >>> round(float(low), 3), round(float(high), 3)
    (0.09, 0.306)
    """
    k1, n1, k2, n2 = (np.asarray(x, dtype="float64") for x in (k1, n1, k2, n2))
    l1, u1 = (np.asarray(x) for x in wilson_interval(k1, n1, confidence=confidence))
    l2, u2 = (np.asarray(x) for x in wilson_interval(k2, n2, confidence=confidence))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = k1 / n1, k2 / n2
        d = p2 - p1
        low = d - np.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
        high = d + np.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def benjamini_hochberg(pvalues):
    """Benjamini–Hochberg adjusted p-values (q-values) controlling the false discovery rate.

    ``q_(i) = min over j >= i of p_(j) * m / j`` for the p-values sorted ascending
    (``m`` = number of non-missing p-values), capped at 1. Rejecting every test with
    ``q <= alpha`` keeps the expected share of false discoveries at most ``alpha``.
    Missing p-values stay missing and do not count in ``m``.

    Parameters
    ----------
    pvalues : array-like of float

    Returns
    -------
    ndarray of float
        Adjusted p-values in the input order.

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.5]).round(3).tolist()
    [0.04, 0.053, 0.053, 0.5]
    """
    p = np.asarray(pvalues, dtype="float64")
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError("p-values must lie between 0 and 1")
    vals = p[ok]
    order = np.argsort(vals, kind="stable")
    ranked = vals[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(q, 1.0)
    out[ok] = adjusted
    return out


def km_quantiles(durations, observed, *, quantiles=(0.5, 0.75, 0.9)):
    """Quantiles of a right-censored duration from the Kaplan–Meier curve.

    The ``q`` quantile is the smallest observed event time ``t`` with ``S(t) <= 1 - q``,
    ``S(t) = prod over event times u <= t of (1 - d_u / n_u)``. When the curve never
    falls that low (too much censoring), the quantile is ``nan``: it is longer than
    anything seen so far.

    Parameters
    ----------
    durations : array-like of float
        Time to the event or to censoring; non-negative, no missing values.
    observed : array-like of bool
        True where the event happened at ``duration``.
    quantiles : sequence of float, default (0.5, 0.75, 0.9)
        Each in (0, 1).

    Returns
    -------
    ndarray of float
        One value per quantile.

    Raises
    ------
    ValueError
        When lengths differ, a duration is missing or negative, or a quantile is not
        in (0, 1).

    Examples
    --------
    >>> km_quantiles([1, 2, 3, 4], [True, True, False, True], quantiles=(0.5, 0.9)).tolist()
    [2.0, 4.0]
    """
    t = np.asarray(durations, dtype="float64")
    e = np.asarray(observed, dtype=bool)
    q = np.asarray(quantiles, dtype="float64")
    if t.shape != e.shape:
        raise ValueError("durations and observed must have the same length")
    if np.isnan(t).any() or (t < 0).any():
        raise ValueError("durations must be non-negative numbers without missing values")
    if ((q <= 0) | (q >= 1)).any():
        raise ValueError(f"quantiles={tuple(quantiles)!r} must each lie between 0 and 1")
    if not e.any():
        return np.full(q.shape, np.nan)
    times, d = np.unique(t[e], return_counts=True)
    n_risk = len(t) - np.searchsorted(np.sort(t), times, side="left")
    surv = np.cumprod(1.0 - d / n_risk)
    idx = np.searchsorted(-surv, -(1.0 - q) - 1e-12, side="left")
    return np.where(idx < len(times), times[np.minimum(idx, len(times) - 1)], np.nan)
