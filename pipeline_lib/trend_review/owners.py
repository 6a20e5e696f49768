"""Owner (or team) win rates with empirical-Bayes shrinkage."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, special
from scipy import stats as st

from .. import schema
from ..dataset import Dataset
from ..errors import InsufficientDataError
from ..memo import memoized
from ..stats import wilson_interval
from ._common import _closed, _snap

__all__ = ["compute_owner_performance"]


def _fit_beta_binomial(k: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Maximum marginal likelihood (alpha, beta) of a beta-binomial; pooled fallback."""
    keep = n > 0
    k, n = k[keep].astype(float), n[keep].astype(float)
    pooled = k.sum() / n.sum()
    if len(k) < 2 or pooled in (0.0, 1.0):
        strength = 1e4
        return pooled * strength, (1 - pooled) * strength

    def nll(x):
        mu = special.expit(x[0])
        s = np.exp(x[1])
        a, b = mu * s, (1 - mu) * s
        return -np.sum(special.betaln(k + a, n - k + b) - special.betaln(a, b))

    x0 = np.array([special.logit(pooled), np.log(20.0)])
    res = optimize.minimize(
        nll, x0, method="L-BFGS-B", bounds=[(-10, 10), (np.log(0.5), np.log(1e4))]
    )
    mu, s = special.expit(res.x[0]), float(np.exp(res.x[1]))
    return mu * s, (1 - mu) * s


@memoized()
def compute_owner_performance(
    ds: Dataset, *, as_of, by: str = "owner", window_days: int = 365
) -> pd.DataFrame:
    """Win rate per owner (or team) with empirical-Bayes shrinkage, so tiny samples do not top it.

    Deals closed in the ``window_days`` days ending on ``as_of``. The raw win rate has a
    95 % Wilson interval. The **shrunk win rate** is the posterior mean under a
    beta-binomial model: owners' true rates ~ Beta(α, β), fitted by maximum marginal
    likelihood over all owners (empirical Bayes); an owner with *k* wins of *n* gets
    (k + α) / (n + α + β), with a 95 % credible interval from Beta(k + α, n − k + β). An
    owner with 3 deals is pulled strongly towards the team-wide rate; one with 300
    barely moves. Rows are ranked by the shrunk rate.

    Parameters
    ----------
    ds : Dataset
    as_of : str, date or Timestamp
    by : str, default "owner"
        Column to rank (``"owner"`` or ``"team"``...).
    window_days : int, default 365

    Returns
    -------
    DataFrame
        ``rank, <by>, team (when by is owner and team exists), won, closed, win_rate,
        ci_low, ci_high, shrunk_win_rate, shrunk_low, shrunk_high, won_amount``;
        ``attrs["prior"]`` = (α, β).

    Raises
    ------
    InsufficientDataError
        When the column is missing or no deal closed in the window.
    ValueError
        When ``window_days`` is not positive.
    """
    if window_days <= 0:
        raise ValueError(f"window_days={window_days!r} must be a positive number of days")
    ds, ts = _snap(ds, as_of)
    opps = ds.opportunities
    if by not in opps or opps[by].isna().all():
        raise InsufficientDataError(
            f"the opportunities have no {by!r} values; map that column in the source config"
        )
    used = list(
        dict.fromkeys([by, "status", "close_date", "amount", *(["team"] if "team" in opps else [])])
    )
    closed = _closed(opps[used], ts - pd.Timedelta(days=window_days - 1), ts)  # lean take
    closed = closed[closed[by].notna()]
    if closed.empty:
        raise InsufficientDataError(
            f"no deal with an {by} closed in the {window_days} days to {ts.date()}"
        )
    is_won = closed["status"].eq(schema.WON)
    g = closed.assign(_won=is_won, _amt=closed["amount"].where(is_won, 0.0)).groupby(by)
    t = g.agg(won=("_won", "sum"), closed=("_won", "size"), won_amount=("_amt", "sum"))
    if by == "owner" and "team" in closed:
        t.insert(0, "team", g["team"].agg(lambda s: s.mode().iloc[0] if s.notna().any() else pd.NA))
    t = t.reset_index()
    k, n = t["won"].to_numpy(float), t["closed"].to_numpy(float)
    a, b = _fit_beta_binomial(k, n)
    low, high = wilson_interval(k, n)
    t["win_rate"] = k / n
    t["ci_low"], t["ci_high"] = low, high
    t["shrunk_win_rate"] = (k + a) / (n + a + b)
    t["shrunk_low"] = st.beta.ppf(0.025, k + a, n - k + b)
    t["shrunk_high"] = st.beta.ppf(0.975, k + a, n - k + b)
    t["won"], t["closed"] = t["won"].astype("int64"), t["closed"].astype("int64")
    t = t.sort_values(["shrunk_win_rate", "closed"], ascending=False, ignore_index=True)
    t.insert(0, "rank", np.arange(1, len(t) + 1))
    cols = ["rank", by, *(["team"] if "team" in t and by != "team" else [])]
    cols += ["won", "closed", "win_rate", "ci_low", "ci_high"]
    cols += ["shrunk_win_rate", "shrunk_low", "shrunk_high", "won_amount"]
    out = t[cols]
    out.attrs["prior"] = (a, b)
    return out
