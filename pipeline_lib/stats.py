"""Small statistical helpers shared by the analyses (intervals for rates)."""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

__all__ = ["wilson_interval"]


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
