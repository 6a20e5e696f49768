"""The :class:`Dataset` handed to every analysis, and its ``as_of`` snapshots.

A Dataset holds the canonical tables of one source config together with the load's
rejects, warnings and read counts. :meth:`Dataset.snapshot` shows the data as it was
known on a date, so a report can be reproduced and a forecast back-tested without
seeing the future.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import schema
from .config import DEFAULT_SOURCE
from .parsing import _is_arrow_text, _isin
from .sources import (
    LoadResult,
    SourceConfig,
    StageConfig,
    _hist_positions,
    _map_distinct,
    _remember_positions,
    load_source_config,
    load_tables,
)

__all__ = ["Dataset", "load_dataset", "to_timestamp"]


def to_timestamp(value, *, name: str = "as_of") -> pd.Timestamp:
    """Parse a date argument (``"2025-12-31"``, a date or a Timestamp) into a Timestamp.

    Raises
    ------
    ValueError
        When the value is missing or not a date; the message names the parameter.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError(f"{name} is required: pass a date such as '2025-12-31'")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise ValueError(
            f"{name}={value!r} is not a date; use ISO format, e.g. '2025-12-31'"
        ) from None
    if ts is pd.NaT:
        raise ValueError(f"{name}={value!r} is not a date; use ISO format, e.g. '2025-12-31'")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.normalize()


@dataclass(frozen=True)
class Dataset:
    """Canonical tables of one data source, optionally as known on ``as_of``.

    Attributes
    ----------
    tables : mapping of str to DataFrame
        Canonical tables present (``opportunities`` always). Never modify them in place.
    rejects, warnings, counts : DataFrame
        The load's ledgers (see :func:`pipeline_lib.sources.load_tables`).
    stages : StageConfig
        Canonical stages in order, won and lost stages.
    parse_notes : DataFrame
        How each date/number column was read (``table, file, column, source, how``).
    milestones : tuple of str
        Lead funnel milestone columns, in order.
    as_of : Timestamp or None
        The snapshot date; ``None`` for the data as loaded (everything known).
    source : str
        Path of the source config.
    base_currency : str
        Currency of every ``amount``.
    notes : tuple of str
        What the snapshot could and could not reconstruct.
    """

    tables: Mapping[str, pd.DataFrame]
    rejects: pd.DataFrame
    warnings: pd.DataFrame
    counts: pd.DataFrame
    stages: StageConfig
    parse_notes: pd.DataFrame | None = None
    milestones: tuple[str, ...] = ()
    as_of: pd.Timestamp | None = None
    source: str = ""
    base_currency: str = "USD"
    notes: tuple[str, ...] = field(default=())

    # -- access -----------------------------------------------------------------
    def has(self, table: str) -> bool:
        """True when the optional ``table`` was configured and loaded."""
        return table in self.tables

    def table(self, name: str) -> pd.DataFrame | None:
        """The canonical table ``name``, or ``None`` when the source does not provide it."""
        return self.tables.get(name)

    @property
    def opportunities(self) -> pd.DataFrame:
        return self.tables["opportunities"]

    @property
    def stage_history(self) -> pd.DataFrame | None:
        return self.tables.get("stage_history")

    @property
    def leads(self) -> pd.DataFrame | None:
        return self.tables.get("leads")

    # -- snapshots ----------------------------------------------------------------
    def snapshot(self, as_of) -> Dataset:
        """The data as it was known at the end of ``as_of``.

        - Opportunities created after ``as_of`` are removed (those with no created date
          are kept: they cannot be placed in time); ``notes`` say how many.
        - Deals closed after ``as_of`` are seen open, in the stage they had then, with the
          amount and expected close date they had then. With a stage history this is
          exact (the last change entered on or before ``as_of``). Without one it is best
          effort: the deal is put in the last open stage (deals close from there) and
          keeps its final amount and close date as the expected ones; the snapshot's
          ``notes`` say so and how many deals this touched.
        - Deals still open keep their stage unless the stage history shows they were in
          an earlier stage on ``as_of``.
        - Stage-history rows, leads and lead costs after ``as_of`` are removed; lead
          milestone dates after ``as_of`` become missing.

        Parameters
        ----------
        as_of : str, date or Timestamp
            The snapshot date (inclusive).

        Returns
        -------
        Dataset
            A new Dataset; this one is not modified.

        Examples
        --------
        >>> ds = load_dataset("data/sources/demo.yaml", as_of=None)  # doctest: +SKIP
        >>> ds.snapshot("2024-06-30").opportunities["status"].value_counts()  # doctest: +SKIP
        """
        ts = to_timestamp(as_of)
        end = ts + pd.Timedelta(days=1)  # everything before the end of the as_of day
        tables = dict(self.tables)
        notes = []
        opps = self.opportunities
        later = opps["created_date"] >= end
        if later.any():
            notes.append(
                f"{int(later.sum())} deal(s) created after {ts.date()} are not shown "
                "(they did not exist yet)."
            )
        kept = ~later.to_numpy()
        opps = _rows(opps, kept)
        hist = self.stage_history
        if hist is not None:
            known = (hist["entered_at"] < end).to_numpy()
            tables["stage_history"] = _rows(hist, known)
        closed_later = opps["status"].isin([schema.WON, schema.LOST]) & (opps["close_date"] >= end)
        reopened = int(closed_later.sum())
        opps = opps.assign(snapshot_exact=True)
        if hist is not None and known.any():
            has_hist, last = _last_states(hist, known, self.opportunities, kept)
            redo = has_hist & (closed_later | opps["status"].eq(schema.OPEN))
            opps = opps.assign(stage=opps["stage"].where(~redo, last["stage"]))
            for col in ("amount", "close_date"):
                if col in last:
                    then = last[col]
                    opps[col] = opps[col].where(~(redo & then.notna()), then)
            guess = closed_later & ~has_hist
        else:
            guess = closed_later
        if guess.any():
            last_open = self.stages.open[-1] if self.stages.open else pd.NA
            opps.loc[guess, "stage"] = last_open
            opps.loc[guess, "snapshot_exact"] = False
            notes.append(
                f"{int(guess.sum())} deal(s) closed after {ts.date()} have no stage history: "
                f"shown open in the last open stage ({last_open}) "
                "with their final amount and close date as expected values (best effort)."
            )
        status = _map_distinct(opps["stage"], self.stages.status_of)
        opps["status"] = status.where(status.notna(), opps["status"]).astype("str")
        if "lost_reason" in opps:
            opps["lost_reason"] = opps["lost_reason"].where(~closed_later, pd.NA)
        if reopened:
            notes.insert(
                0, f"{reopened} deal(s) closed after {ts.date()} are shown open as of then."
            )
        tables["opportunities"] = opps.reset_index(drop=True)

        leads = self.leads
        if leads is not None:
            leads = _rows(leads, ~(leads["created_date"] >= end).to_numpy())
            later_dates = {}
            for m in self.milestones:
                if m in leads:
                    after = leads[m] >= end
                    if after.any():
                        later_dates[m] = leads[m].where(~after)
            if later_dates:
                leads = leads.assign(**later_dates)
            tables["leads"] = leads.reset_index(drop=True)
        costs = self.table("lead_costs")
        if costs is not None:
            tables["lead_costs"] = costs.loc[costs["period"] < end].reset_index(drop=True)
        return replace(self, tables=tables, as_of=ts, notes=tuple(notes))

    # -- filters ------------------------------------------------------------------
    def filter(
        self,
        *,
        start=None,
        end=None,
        date_column: str | None = "created_date",
        **equals,
    ) -> Dataset:
        """The deals (and leads) inside a date range and matching segment values.

        - Opportunities are kept when ``date_column`` lies in ``[start, end]`` (both
          inclusive, whole days; a deal with no date there is dropped once a bound is
          set) and every ``column=value`` in ``equals`` matches (``value`` may be a list
          of allowed values; ``None`` means no filter on that column).
        - The stage history keeps the remaining deals' rows.
        - Leads are filtered by their own ``created_date`` range and by those ``equals``
          columns they have (e.g. ``source``); lead spend (``lead_costs``) likewise by
          the first day of its ``period`` and those columns it has. A filter on a column
          the spend lacks (e.g. ``team``) cannot split it: the spend is kept, its
          ``attrs["not_split_by"]`` names those columns and a note says so (the lead
          analyses then leave out the cost figures that would need the split). Other
          tables are kept whole.

        Parameters
        ----------
        start, end : str, date or Timestamp, optional
            Inclusive bounds on ``date_column``.
        date_column : str or None, default "created_date"
            The opportunities' date the range applies to.
        **equals
            Segment filters, e.g. ``team="EMEA"`` or ``product=["A", "B"]``.

        Returns
        -------
        Dataset
            A new Dataset (``notes`` gain a line describing the filter); this one is
            not modified.

        Raises
        ------
        ValueError
            When a filter names a column the opportunities do not have.

        Examples
        --------
        >>> ds.filter(start="2025-01-01", team="EMEA")  # doctest: +SKIP
        """
        opps = self.opportunities
        unknown = [c for c in equals if c not in opps.columns]
        if unknown:
            raise ValueError(
                f"cannot filter on {unknown}: the opportunities have no such column "
                f"(columns: {', '.join(c for c in opps.columns if not c.startswith('_'))})"
            )
        lo = None if start is None else to_timestamp(start, name="start")
        hi = None if end is None else to_timestamp(end, name="end") + pd.Timedelta(days=1)
        if (lo is not None or hi is not None) and date_column not in opps.columns:
            raise ValueError(f"date_column={date_column!r} is not a column of the opportunities")
        active = {k: v for k, v in equals.items() if v is not None}

        def _keep(frame: pd.DataFrame, date_col: str | None) -> pd.Series:
            keep = pd.Series(True, index=frame.index)
            if date_col is not None and date_col in frame.columns:
                if lo is not None:
                    keep &= frame[date_col] >= lo
                if hi is not None:
                    keep &= frame[date_col] < hi
            for col, value in active.items():
                if col in frame.columns:
                    allowed = list(value) if isinstance(value, list | tuple | set) else [value]
                    keep &= frame[col].isin(allowed)
            return keep

        if not active and lo is None and hi is None:
            return self
        tables = dict(self.tables)
        opps_kept = _keep(opps, date_column).to_numpy()
        opps = _rows(opps, opps_kept).reset_index(drop=True)
        tables["opportunities"] = opps
        hist = self.stage_history
        if hist is not None:
            pos = _hist_positions(hist, self.opportunities)
            if pos is None:
                in_opps = _isin(hist["opportunity_id"], opps["opportunity_id"])
            else:
                in_opps = np.append(opps_kept, False)[pos]  # pos -1: the appended False
            tables["stage_history"] = _rows(hist, in_opps).reset_index(drop=True)
            if pos is not None:  # the kept rows' deals in the kept deals, for snapshots
                renumbered = np.cumsum(opps_kept) - 1
                _remember_positions(
                    tables["stage_history"], opps, renumbered[pos[in_opps]].astype(np.int64)
                )
        leads = self.leads
        if leads is not None:
            kept_leads = _keep(leads, "created_date").to_numpy()
            tables["leads"] = _rows(leads, kept_leads).reset_index(drop=True)
        cost_note = None
        costs = self.table("lead_costs")
        if costs is not None:
            kept = _rows(costs, _keep(costs, "period").to_numpy()).reset_index(drop=True)
            unsplit = [c for c in active if c not in costs.columns]
            if unsplit:  # spend has no such column: it cannot be split by this filter
                before = tuple(costs.attrs.get("not_split_by", ()))
                kept.attrs = {
                    **costs.attrs,
                    "not_split_by": (*before, *(c for c in unsplit if c not in before)),
                }
                by_lead = leads is not None and any(c in leads.columns for c in unsplit)
                cost_note = (
                    f"Lead spend is not recorded per {', '.join(unsplit)}, so it cannot be "
                    "split by that filter: "
                    + (
                        "lead cost figures are left out."
                        if by_lead
                        else "cost per lead is that of all leads; cost per opportunity, "
                        "per win and return on spend are left out."
                    )
                )
            tables["lead_costs"] = kept
        parts = [f"{k} = {v}" for k, v in active.items()]
        if lo is not None or hi is not None:
            span = f"{lo.date() if lo is not None else '…'} to "
            span += f"{(hi - pd.Timedelta(days=1)).date() if hi is not None else '…'}"
            parts.insert(0, f"{date_column} {span}")
        note = f"Filtered to {'; '.join(parts)}: {len(opps):,} opportunities."
        notes = (*self.notes, note, *([cost_note] if cost_note else []))
        return replace(self, tables=tables, notes=notes)


def _rows(frame: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """``frame.loc[keep]``, or ``frame`` itself when every row is kept (no copy)."""
    return frame if keep.all() else frame.loc[keep]


def _positions(values: pd.Series, uniques: pd.Index) -> np.ndarray:
    """Position of each value in ``uniques`` (distinct values), -1 when absent or missing."""
    if _is_arrow_text(values) and _is_arrow_text(uniques):
        found = pc.index_in(pa.array(values.array), value_set=pa.array(uniques.array))
        return np.asarray(found.fill_null(-1), dtype=np.int64)
    return uniques.get_indexer(values).astype(np.int64)


def _last_states(
    hist: pd.DataFrame, known: np.ndarray, opps: pd.DataFrame, kept: np.ndarray
) -> tuple[pd.Series, dict[str, pd.Series]]:
    """What the stage-history rows ``hist[known]`` say last about the deals ``opps[kept]``.

    Returns whether those rows include the deal, and for ``stage``, ``amount`` and
    ``close_date`` the last value that is not missing among its rows ordered by
    ``entered_at`` (ties in table order, missing dates last), on the index of
    ``opps[kept]``. The same as ``h.sort_values([id, entered_at], kind="stable")
    .groupby(id).last()`` mapped onto the ids, computed with two group maxima instead of
    sorting millions of rows, on the cached deal position of each history row.
    """
    every = bool(known.all())
    rows = np.arange(len(hist)) if every else np.flatnonzero(known)

    def sub(values: np.ndarray) -> np.ndarray:
        return values if every else values[rows]

    pos = _hist_positions(hist, opps)
    if pos is not None:  # groups are the deals' positions in `opps`
        codes, n, where = sub(pos), len(opps), np.flatnonzero(kept)
    else:  # ids repeat or are missing: group by the distinct ids of the rows
        codes, uniq = pd.factorize(hist["opportunity_id"].iloc[rows], use_na_sentinel=True)
        n, where = len(uniq), _positions(opps["opportunity_id"].iloc[np.flatnonzero(kept)], uniq)
    grouped = codes >= 0
    present = np.zeros(n + 1, dtype=bool)  # slot n: "no group"
    present[codes[grouped]] = True
    where = np.where(where >= 0, where, n)
    at = sub(hist["entered_at"].to_numpy(dtype="datetime64[ns]"))
    time = at.view(np.int64)
    if np.isnat(at).any():
        time = time.copy()
        time[np.isnat(at)] = np.iinfo(np.int64).max  # sorted last, as sort_values does
    index = opps.index[kept]
    last: dict[str, pd.Series] = {}
    picks: dict[str | None, np.ndarray] = {}  # columns with no missing value share one
    for col in ("stage", "amount", "close_date"):
        if col not in hist:
            continue
        missing = sub(hist[col].isna().to_numpy())
        key = col if missing.any() else None
        if key not in picks:
            ok = grouped & ~missing if key else grouped
            if ok.all():
                c, t, r = codes, time, rows
            else:
                c, t, r = codes[ok], time[ok], rows[ok]
            latest = np.full(n + 1, np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(latest, c, t)
            top = t == latest[c]
            pick = np.full(n + 1, -1, dtype=np.int64)
            np.maximum.at(pick, c[top], r[top])
            picks[key] = pick[where]
        values = hist[col].array.take(picks[key], allow_fill=True)
        last[col] = pd.Series(values, index=index, name=col)
    return pd.Series(present[where], index=index), last


def load_dataset(source=DEFAULT_SOURCE, *, as_of, progress: bool = False) -> Dataset:
    """Load a source config into a :class:`Dataset`, as known on ``as_of``.

    Parameters
    ----------
    source : str, Path or SourceConfig, default the demo config
        A YAML source config (relative paths from the project root) or a parsed config.
    as_of : str, date, Timestamp or None
        Snapshot date (required keyword). ``None`` keeps everything loaded — say so
        explicitly; there is no hidden "today".
    progress : bool, default False
        Show a progress bar while reading tables.

    Returns
    -------
    Dataset

    Raises
    ------
    SourceConfigError, UnreadableFileError, MissingColumnError, UnknownStageError
        With messages naming the file, the column and the fix.
    """
    config = source if isinstance(source, SourceConfig) else load_source_config(source)
    result: LoadResult = load_tables(config, progress=progress)
    lead_spec = config.tables.get("leads")
    ds = Dataset(
        tables=result.tables,
        rejects=result.rejects,
        warnings=result.warnings,
        counts=result.counts,
        stages=config.stages,
        parse_notes=result.parse_notes,
        milestones=lead_spec.milestones if lead_spec is not None else (),
        source=str(config.path),
        base_currency=config.base_currency,
    )
    return ds if as_of is None else ds.snapshot(as_of)
