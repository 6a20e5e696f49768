"""Data quality: what was loaded, what was rejected and why, and the headline KPIs.

Everything here is computed from a :class:`~pipeline_lib.dataset.Dataset`; nothing
reads files or draws.
"""

from __future__ import annotations

import pandas as pd

from . import schema
from .dataset import Dataset, to_timestamp
from .stats import wilson_interval

__all__ = [
    "TABLE_USES",
    "compute_load_summary",
    "compute_reject_reasons",
    "compute_warning_summary",
    "compute_table_coverage",
    "compute_headline_kpis",
    "describe_quality",
]

#: What each optional table enables, and what is lost without it.
TABLE_USES = {
    "opportunities": ("every analysis: pipeline, win rates, forecasts", "nothing works without it"),
    "stage_history": (
        "time in stage, stage conversion, pushed deals, exact as-of snapshots",
        "stage timing and pushes cannot be measured; snapshots are best effort",
    ),
    "leads": (
        "lead funnel, leads per win, cohort conversion",
        "lead-generation yield is not available",
    ),
    "products": (
        "list prices and discounts, product families",
        "discount analysis is not available",
    ),
    "accounts": (
        "segments by industry/region/size, white space",
        "account segments are not available",
    ),
    "targets": (
        "attainment and probability of reaching quota",
        "forecasts are shown without a target",
    ),
    "lead_costs": ("cost per lead, per win, return on spend", "cost and return are not available"),
}


def compute_load_summary(dataset: Dataset) -> pd.DataFrame:
    """Rows read, loaded, rejected and warned, per table.

    Parameters
    ----------
    dataset : Dataset
        As returned by :func:`~pipeline_lib.dataset.load_dataset` (the counts are those
        of the load, before any ``as_of`` snapshot).

    Returns
    -------
    DataFrame
        One row per loaded table: ``table, read, loaded, rejected, warned_rows,
        rejected_pct``; ``read == loaded + rejected`` on every row. ``warned_rows`` counts
        loaded rows with at least one data-quality warning.

    Examples
    --------
    >>> compute_load_summary(ds)  # doctest: +SKIP
    """
    counts = dataset.counts.groupby("table", sort=False)[["read", "loaded", "rejected"]].sum()
    warned = (
        dataset.warnings.drop_duplicates(["table", "file", "row"]).groupby("table").size()
        if len(dataset.warnings)
        else pd.Series(dtype="int64")
    )
    out = counts.assign(warned_rows=warned.reindex(counts.index).fillna(0).astype("int64"))
    out["rejected_pct"] = (100 * out["rejected"] / out["read"].where(out["read"] > 0)).round(2)
    return out.reset_index()


def _reason_family(reason: pd.Series) -> pd.Series:
    # "duplicate opportunity_id (first seen at row 12)" -> "duplicate opportunity_id"
    return reason.str.replace(r"\s*\(first seen at row \d+\)", "", regex=True)


def compute_reject_reasons(dataset: Dataset, *, examples: int = 3) -> pd.DataFrame:
    """Rejected rows grouped by table, column and reason.

    Returns
    -------
    DataFrame
        ``table, column, reason, rows, example_rows`` (the first ``examples`` row
        numbers, as text), most frequent first. Empty when nothing was rejected.
    """
    cols = ["table", "column", "reason", "rows", "example_rows"]
    rej = dataset.rejects
    if rej.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "rows" else "str") for c in cols})
    rej = rej.assign(
        reason=_reason_family(rej["reason"]), column=rej["column"].fillna("(whole row)")
    )
    grouped = rej.groupby(["table", "column", "reason"], sort=False)
    out = grouped.agg(
        rows=("row", "size"),
        example_rows=("row", lambda r: ", ".join(str(x) for x in r.head(examples))),
    ).reset_index()
    return out.sort_values(["rows", "table"], ascending=[False, True], ignore_index=True)[cols]


def compute_warning_summary(dataset: Dataset) -> pd.DataFrame:
    """Loaded rows with data-quality warnings, grouped by table, column and issue.

    Returns
    -------
    DataFrame
        ``table, column, issue, rows``, most frequent first.
    """
    w = dataset.warnings
    if w.empty:
        return pd.DataFrame(
            {"table": [], "column": [], "issue": [], "rows": pd.Series(dtype="int64")}
        ).astype({"table": "str", "column": "str", "issue": "str"})
    out = w.groupby(["table", "column", "issue"], sort=False).size().rename("rows").reset_index()
    return out.sort_values("rows", ascending=False, ignore_index=True)


def compute_table_coverage(dataset: Dataset) -> pd.DataFrame:
    """Which tables are present and what each enables.

    Returns
    -------
    DataFrame
        ``table, present, rows, enables, without_it`` for every canonical table.
    """
    rows = []
    for table in schema.TABLES:
        enables, without = TABLE_USES[table]
        present = dataset.has(table)
        rows.append(
            {
                "table": table,
                "present": present,
                "rows": len(dataset.tables[table]) if present else 0,
                "enables": enables,
                "without_it": "" if present else without,
            }
        )
    return pd.DataFrame(rows)


def compute_headline_kpis(dataset: Dataset, *, as_of, window_days: int = 365) -> pd.DataFrame:
    """Headline KPIs as known on ``as_of``.

    Definitions (the window is the ``window_days`` days ending on ``as_of``):

    - **open pipeline**: sum of ``amount`` of deals open on ``as_of``; ``n`` = open deals,
      ``skipped`` = open deals with no amount.
    - **won revenue**: sum of ``amount`` of deals won with ``close_date`` in the window.
    - **win rate**: won / (won + lost) among deals closed in the window, with a 95 %
      Wilson interval; ``n`` = closed deals.
    - **average won deal**: won revenue / won deals with an amount.
    - **median sales cycle**: median days from ``created_date`` to ``close_date`` of deals
      won in the window; deals with a missing or inconsistent date are skipped.

    Parameters
    ----------
    dataset : Dataset
        Loaded data; it is snapshotted at ``as_of`` unless it already is.
    as_of : str, date or Timestamp
        The date the KPIs are computed for.
    window_days : int, default 365
        Length of the trailing window for won revenue, win rate and cycle.

    Returns
    -------
    DataFrame
        ``metric, value, unit, n, skipped, ci_low, ci_high, definition``.

    Raises
    ------
    ValueError
        When ``as_of`` is not a date or ``window_days`` is not positive.
    """
    ts = to_timestamp(as_of)
    if window_days <= 0:
        raise ValueError(f"window_days={window_days!r} must be a positive number of days")
    ds = dataset if dataset.as_of == ts else dataset.snapshot(ts)
    opps = ds.opportunities
    start = ts - pd.Timedelta(days=window_days)
    in_window = (opps["close_date"] > start) & (opps["close_date"] <= ts)
    open_ = opps[opps["status"] == schema.OPEN]
    won = opps[(opps["status"] == schema.WON) & in_window]
    lost = opps[(opps["status"] == schema.LOST) & in_window]
    n_closed = len(won) + len(lost)
    low, high = wilson_interval(len(won), n_closed)
    cycle = (won["close_date"] - won["created_date"]).dt.days
    valid_cycle = cycle[cycle.notna() & (cycle >= 0)]
    won_amount = won["amount"].dropna()
    cur = ds.base_currency
    window = f"closed {start.date() + pd.Timedelta(days=1)} – {ts.date()}"
    rows = [
        (
            "open pipeline",
            open_["amount"].sum(),
            cur,
            len(open_),
            int(open_["amount"].isna().sum()),
            None,
            None,
            f"sum of amount of deals open on {ts.date()}",
        ),
        (
            "won revenue",
            won_amount.sum(),
            cur,
            len(won),
            len(won) - len(won_amount),
            None,
            None,
            f"sum of amount of deals won, {window}",
        ),
        (
            "win rate",
            len(won) / n_closed if n_closed else float("nan"),
            "share",
            n_closed,
            0,
            low,
            high,
            f"won / (won + lost), {window}; 95 % Wilson interval",
        ),
        (
            "average won deal",
            won_amount.mean() if len(won_amount) else float("nan"),
            cur,
            len(won_amount),
            len(won) - len(won_amount),
            None,
            None,
            f"won revenue / won deals, {window}",
        ),
        (
            "median sales cycle",
            valid_cycle.median() if len(valid_cycle) else float("nan"),
            "days",
            len(valid_cycle),
            len(cycle) - len(valid_cycle),
            None,
            None,
            f"median days created → closed of deals won, {window}",
        ),
    ]
    cols = ["metric", "value", "unit", "n", "skipped", "ci_low", "ci_high", "definition"]
    out = pd.DataFrame(rows, columns=cols)
    return out.astype(
        {
            "value": "float64",
            "n": "int64",
            "skipped": "int64",
            "ci_low": "float64",
            "ci_high": "float64",
        }
    )


def describe_quality(summary: pd.DataFrame, kpis: pd.DataFrame, *, notes=()) -> str:
    """A short Markdown narrative led by the numbers of the load and the KPIs.

    Parameters
    ----------
    summary : DataFrame
        From :func:`compute_load_summary`.
    kpis : DataFrame
        From :func:`compute_headline_kpis`.
    notes : iterable of str
        Snapshot notes (``Dataset.notes``), appended as they are.

    Returns
    -------
    str
    """
    read, loaded, rejected = (int(summary[c].sum()) for c in ("read", "loaded", "rejected"))
    k = kpis.set_index("metric")
    lines = [
        f"**{read:,} rows read, {loaded:,} loaded, {rejected:,} rejected** "
        f"({100 * rejected / read if read else 0:.2f} %) across {len(summary)} table(s); "
        f"{int(summary['warned_rows'].sum()):,} loaded rows carry a data-quality warning.",
    ]
    wr = k.loc["win rate"]
    if wr["n"] > 0:
        won, pipe = k.loc["won revenue"], k.loc["open pipeline"]
        lines.append(
            f"Win rate **{wr['value']:.1%}** "
            f"(95 % interval {wr['ci_low']:.1%}–{wr['ci_high']:.1%}, "
            f"{int(wr['n']):,} closed deals); won revenue **{won['value']:,.0f} {won['unit']}**; "
            f"open pipeline **{pipe['value']:,.0f} {pipe['unit']}** in {int(pipe['n']):,} deals."
        )
    else:
        lines.append("No deals closed in the KPI window, so there is no win rate to report.")
    lines.extend(notes)
    return "\n\n".join(lines)
