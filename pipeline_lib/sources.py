"""Source configs: from raw CRM exports to canonical tables, with every row accounted for.

A source config (YAML, format documented in ``data/sources/README.md``) names each
table's file, sheet or SQL query, maps source headers to canonical columns (optionally
through a CRM preset), maps source values (stages, product aliases) and sets parsing
options. :func:`load_tables` reads every table and returns canonical frames plus three
ledgers: *rejects* (rows that could not be used, with file, row, column and reason),
*warnings* (rows loaded with a data-quality problem) and *counts* (read = loaded +
rejected, per table).
"""

from __future__ import annotations

import difflib
import re
import threading
import weakref
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from . import io, parsing, schema
from .config import resolve_path
from .errors import MissingColumnError, SourceConfigError, UnknownStageError
from .presets import HUBSPOT_DATE_ENTERED, PRESET_STAGES, PRESETS

__all__ = [
    "StageConfig",
    "TableSpec",
    "SourceConfig",
    "LoadResult",
    "WARNING_COLUMNS",
    "COUNT_COLUMNS",
    "NOTE_COLUMNS",
    "REJECT_COLUMNS",
    "load_source_config",
    "load_tables",
]

REJECT_COLUMNS = ("table", "file", "row", "column", "reason", "value")
WARNING_COLUMNS = ("table", "file", "row", "key", "column", "issue", "value")
COUNT_COLUMNS = ("table", "file", "read", "loaded", "rejected")
NOTE_COLUMNS = ("table", "file", "column", "source", "how")

_FORMATS = ("csv", "tsv", "excel", "parquet", "sql")
_PARSE_KEYS = ("encoding", "sep", "decimal", "dayfirst")
_TABLE_KEYS = {
    "preset",
    "path",
    "format",
    "sheet",
    "query",
    "url",
    "columns",
    "values",
    "parse",
    "milestones",
    "wide_from",
}
_TOP_KEYS = {"base_currency", "currency_rates", "parse", "stages", "tables", "values", "name"}

#: Columns whose missing value makes a row unusable (rejected); other missing values warn.
_KEY_COLUMNS = {
    "opportunities": ("opportunity_id", "stage"),
    "stage_history": ("opportunity_id", "stage", "entered_at"),
    "leads": ("lead_id",),
    "products": ("product",),
    "accounts": ("account",),
    "targets": ("period", "target"),
    "lead_costs": ("period", "source", "cost"),
}
_UNIQUE_KEY = {
    "opportunities": "opportunity_id",
    "leads": "lead_id",
    "products": "product",
    "accounts": "account",
}
#: Load order: tables that others are checked against come first.
_ORDER = (
    "opportunities",
    "stage_history",
    "leads",
    "products",
    "accounts",
    "targets",
    "lead_costs",
)


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class StageConfig:
    """Canonical stages in pipeline order and how source stage names map onto them."""

    open: tuple[str, ...]
    won: tuple[str, ...]
    lost: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def order(self) -> tuple[str, ...]:
        """All canonical stages: open stages in order, then won, then lost."""
        return self.open + self.won + self.lost

    def status_of(self, stage: str) -> str:
        """``open``, ``won`` or ``lost`` for a canonical stage."""
        if stage in self.won:
            return schema.WON
        if stage in self.lost:
            return schema.LOST
        return schema.OPEN

    def _lookup(self) -> dict[str, str]:
        table = {parsing.normalize_key(s): s for s in self.order}
        for alias, target in self.aliases.items():
            table[parsing.normalize_key(str(alias))] = target
        return table


@dataclass(frozen=True)
class TableSpec:
    """How one canonical table is read: where from, which columns, which values."""

    name: str
    path: Path | None = None
    format: str | None = None
    sheet: str | int | None = None
    query: str | None = None
    url: str | None = None
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    explicit: frozenset[str] = frozenset()
    values: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    parse: Mapping[str, object] = field(default_factory=dict)
    milestones: tuple[str, ...] = ()
    wide_from: str | None = None
    preset: str | None = None


@dataclass(frozen=True)
class SourceConfig:
    """A parsed source config."""

    path: Path
    stages: StageConfig
    tables: Mapping[str, TableSpec]
    base_currency: str = "USD"
    currency_rates: Mapping[str, float] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


@dataclass(frozen=True)
class LoadResult:
    """Canonical tables plus the rejects, warnings and read counts of one load."""

    tables: dict[str, pd.DataFrame]
    rejects: pd.DataFrame
    warnings: pd.DataFrame
    counts: pd.DataFrame
    parse_notes: pd.DataFrame


def _cfg_error(path: Path, where: str, message: str) -> SourceConfigError:
    return SourceConfigError(f"{path}: {where}: {message}")


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def load_source_config(path: str | Path) -> SourceConfig:
    """Read and check a YAML source config.

    Parameters
    ----------
    path : str or Path
        The YAML file; relative paths are taken from the project root. Paths inside the
        file are relative to the file's own folder.

    Returns
    -------
    SourceConfig

    Raises
    ------
    SourceConfigError
        When the file is missing or malformed, names an unknown table, key, preset or
        format, or defines no stages (and no preset supplies them).

    Examples
    --------
    >>> cfg = load_source_config("data/sources/demo.yaml")  # doctest: +SKIP
    >>> cfg.stages.won
    ('Closed Won',)
    """
    path = resolve_path(path)
    if not path.is_file():
        raise SourceConfigError(
            f"{path}: source config not found — pass the path of a YAML file "
            "(see data/sources/README.md for the format)"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise _cfg_error(path, "YAML", f"cannot be parsed ({exc})") from None
    if not isinstance(raw, dict):
        raise _cfg_error(path, "top level", "expected a mapping of settings")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise _cfg_error(
            path, "top level", f"unknown keys {sorted(unknown)}; allowed {sorted(_TOP_KEYS)}"
        )
    tables_raw = raw.get("tables") or {}
    if "opportunities" not in tables_raw:
        raise _cfg_error(path, "tables", "the required table 'opportunities' is not configured")
    base_parse = _check_parse(path, "parse", raw.get("parse") or {})
    global_values = raw.get("values") or {}

    tables: dict[str, TableSpec] = {}
    for name, spec in tables_raw.items():
        tables[name] = _table_spec(path, name, spec or {}, base_parse, global_values)

    stages = _stage_config(path, raw.get("stages"), tables)
    rates = {str(k).upper(): float(v) for k, v in (raw.get("currency_rates") or {}).items()}
    return SourceConfig(
        path=path,
        stages=stages,
        tables=tables,
        base_currency=str(raw.get("base_currency", "USD")).upper(),
        currency_rates=rates,
    )


def _check_parse(path: Path, where: str, parse: dict) -> dict:
    unknown = set(parse) - set(_PARSE_KEYS)
    if unknown:
        raise _cfg_error(
            path, where, f"unknown parse options {sorted(unknown)}; allowed {list(_PARSE_KEYS)}"
        )
    return dict(parse)


def _table_spec(
    path: Path, name: str, spec: dict, base_parse: dict, global_values: dict
) -> TableSpec:
    where = f"tables.{name}"
    if name not in schema.TABLES:
        raise _cfg_error(path, where, f"unknown table; expected one of {sorted(schema.TABLES)}")
    unknown = set(spec) - _TABLE_KEYS
    if unknown:
        raise _cfg_error(
            path, where, f"unknown keys {sorted(unknown)}; allowed {sorted(_TABLE_KEYS)}"
        )
    preset = spec.get("preset")
    columns: dict[str, tuple[str, ...]] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise _cfg_error(
                path,
                f"{where}.preset",
                f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}",
            )
        columns.update({k: tuple(v) for k, v in PRESETS[preset].items()})
    explicit = {str(k): tuple(_as_list(v)) for k, v in (spec.get("columns") or {}).items()}
    columns.update(explicit)
    fmt = spec.get("format")
    if fmt is not None and fmt not in _FORMATS:
        raise _cfg_error(
            path, f"{where}.format", f"unknown format {fmt!r}; expected one of {list(_FORMATS)}"
        )
    wide_from = spec.get("wide_from")
    if wide_from is not None and (name != "stage_history" or wide_from != "opportunities"):
        raise _cfg_error(
            path,
            f"{where}.wide_from",
            "only `stage_history: {wide_from: opportunities}` is supported",
        )
    if fmt == "sql":
        if not spec.get("url") or not spec.get("query"):
            raise _cfg_error(path, where, "format sql needs both `url:` and `query:`")
    elif wide_from is None and not spec.get("path"):
        raise _cfg_error(path, where, "needs `path:` (or `format: sql` with `url:` and `query:`)")
    milestones = tuple(_as_list(spec.get("milestones")))
    for m in milestones:
        if not m.endswith(schema.LEAD_MILESTONE_SUFFIX):
            raise _cfg_error(path, f"{where}.milestones", f"milestone {m!r} must end in '_date'")
        if m not in columns:
            raise _cfg_error(
                path, f"{where}.milestones", f"milestone {m!r} is not mapped under columns"
            )
    values = {str(k): dict(v) for k, v in global_values.items()}
    for col, mapping in (spec.get("values") or {}).items():
        values.setdefault(str(col), {}).update(mapping or {})
    parse = {**base_parse, **_check_parse(path, f"{where}.parse", spec.get("parse") or {})}
    url = spec.get("url")
    if url and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rel = url[len("sqlite:///") :]
        if rel and rel != ":memory:":
            url = "sqlite:///" + str((path.parent / rel).resolve())
    return TableSpec(
        name=name,
        path=(path.parent / spec["path"]).resolve() if spec.get("path") else None,
        format=fmt,
        sheet=spec.get("sheet"),
        query=spec.get("query"),
        url=url,
        columns=columns,
        explicit=frozenset(explicit),
        values=values,
        parse=parse,
        milestones=milestones,
        wide_from=wide_from,
        preset=preset,
    )


def _stage_config(path: Path, raw, tables: Mapping[str, TableSpec]) -> StageConfig:
    if raw is None:
        preset = tables["opportunities"].preset
        if preset not in PRESET_STAGES:
            raise _cfg_error(
                path,
                "stages",
                "no `stages:` block and no CRM preset to take them from — list your stages "
                "as `stages: {open: [...], won: [...], lost: [...]}`",
            )
        raw = PRESET_STAGES[preset]
    if not isinstance(raw, dict):
        raise _cfg_error(path, "stages", "expected a mapping with open, won and lost")
    unknown = set(raw) - {"open", "won", "lost", "aliases"}
    if unknown:
        raise _cfg_error(
            path, "stages", f"unknown keys {sorted(unknown)}; allowed open, won, lost, aliases"
        )
    stages = StageConfig(
        open=tuple(_as_list(raw.get("open"))),
        won=tuple(_as_list(raw.get("won"))),
        lost=tuple(_as_list(raw.get("lost"))),
        aliases={str(k): str(v) for k, v in (raw.get("aliases") or {}).items()},
    )
    if not stages.won or not stages.lost:
        raise _cfg_error(path, "stages", "needs at least one `won` and one `lost` stage")
    keys = [parsing.normalize_key(s) for s in stages.order]
    if len(set(keys)) != len(keys):
        raise _cfg_error(path, "stages", "a stage is listed twice")
    bad = sorted(set(stages.aliases.values()) - set(stages.order))
    if bad:
        raise _cfg_error(
            path, "stages.aliases", f"aliases point at stages that are not listed: {bad}"
        )
    return stages


# --------------------------------------------------------------------------- loading


class _Ledger:
    """Collects rejects and warnings as lists of small frames, concatenated once."""

    def __init__(self) -> None:
        self.rejects: list[pd.DataFrame] = []
        self.warnings: list[pd.DataFrame] = []
        self.counts: list[dict] = []
        self.notes: list[dict] = []

    def reject(self, table, file, rows, column, reason, values) -> None:
        if len(rows):
            self.rejects.append(
                pd.DataFrame(
                    {
                        "table": table,
                        "file": file,
                        "row": np.asarray(rows, dtype="int64"),
                        "column": _text(column),
                        "reason": _text(reason),
                        "value": _text(values),
                    }
                )
            )

    def warn(self, table, file, rows, keys, column, issue, values) -> None:
        if len(rows):
            self.warnings.append(
                pd.DataFrame(
                    {
                        "table": table,
                        "file": file,
                        "row": np.asarray(rows, dtype="int64"),
                        "key": _text(keys),
                        "column": _text(column),
                        "issue": _text(issue),
                        "value": _text(values),
                    }
                )
            )

    @staticmethod
    def _frame(parts: list[pd.DataFrame], columns) -> pd.DataFrame:
        if not parts:
            out = pd.DataFrame({c: pd.Series(dtype="str") for c in columns})
            out["row"] = out["row"].astype("int64")
            return out
        out = pd.concat(parts, ignore_index=True)[list(columns)]
        text = [c for c in columns if c != "row"]
        return out.astype({c: "str" for c in text}).astype({"row": "int64"})


def _text(values) -> np.ndarray | str:
    """Values as a plain array of text (no index, so frames never align by accident)."""
    if values is None:
        return pd.NA
    if isinstance(values, str):
        return values
    s = pd.Series(np.asarray(values, dtype=object))
    return s.astype("str").where(s.notna(), pd.NA).str.slice(0, 200).to_numpy(dtype=object)


def load_tables(config: SourceConfig, *, progress: bool = False) -> LoadResult:
    """Read every table of a source config into canonical frames.

    Parameters
    ----------
    config : SourceConfig
        From :func:`load_source_config`.
    progress : bool, default False
        Show a progress bar over the tables (useful for large exports).

    Returns
    -------
    LoadResult
        ``tables`` (canonical frames, validated), ``rejects`` (columns ``table, file,
        row, column, reason, value``), ``warnings`` (``table, file, row, key, column,
        issue, value``), ``counts`` (``table, file, read, loaded, rejected`` with
        ``read == loaded + rejected`` on every line) and ``parse_notes`` (``table, file,
        column, source, how``: how dates and numbers were read, e.g. day-first decided
        from the values). Inputs are never modified.

    Raises
    ------
    UnreadableFileError
        A configured file is missing, empty or cannot be decoded.
    MissingColumnError
        A required column is not in the file (the message lists the headers present).
    UnknownStageError
        A stage value is not mapped by the config (the message lists them).
    """
    ledger = _Ledger()
    tables: dict[str, pd.DataFrame] = {}
    raw_cache: dict[str, io.RawTable] = {}  # only raw tables another table is made from
    wide_sources = {s.wide_from for s in config.tables.values() if s.wide_from}
    names = [n for n in _ORDER if n in config.tables]
    to_read = [n for n in names if not config.tables[n].wide_from]
    iterator = names
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(names, desc="loading tables", unit="table")
    # Files are read one ahead in a thread (pyarrow and pandas readers release the GIL),
    # so the next table is read while this one is parsed and checked.
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pipeline-read")
    pending: dict[str, Future] = {}

    def read_ahead() -> None:
        if to_read:
            nxt = to_read.pop(0)
            pending[nxt] = reader.submit(_read_raw, config, config.tables[nxt])

    try:
        read_ahead()
        for name in iterator:
            spec = config.tables[name]
            if spec.wide_from:
                frame = _wide_history(config, spec, raw_cache[spec.wide_from], ledger, tables)
            else:
                raw = pending.pop(name).result()
                read_ahead()
                if name in wide_sources:
                    raw_cache[name] = raw
                frame = _load_one(config, spec, raw, ledger, tables)
                del raw
            tables[name] = schema.validate_table(name, frame)
    finally:
        reader.shutdown(wait=False, cancel_futures=True)
    _cross_checks(tables, ledger)
    counts = pd.DataFrame(ledger.counts, columns=list(COUNT_COLUMNS))
    return LoadResult(
        tables=tables,
        rejects=_Ledger._frame(ledger.rejects, REJECT_COLUMNS),
        warnings=_Ledger._frame(ledger.warnings, WARNING_COLUMNS),
        counts=counts,
        parse_notes=pd.DataFrame(ledger.notes, columns=list(NOTE_COLUMNS)).astype("str"),
    )


def _read_raw(config: SourceConfig, spec: TableSpec) -> io.RawTable:
    return io.read_table(
        spec.path,
        format=spec.format,
        encoding=spec.parse.get("encoding", "auto"),
        sep=spec.parse.get("sep", "auto"),
        sheet=spec.sheet,
        query=spec.query,
        url=spec.url,
        base=config.base_dir,
    )


def _resolve_columns(
    config: SourceConfig, spec: TableSpec, raw: io.RawTable
) -> dict[str, list[str]]:
    """Canonical column -> the source headers present for it (in priority order)."""
    headers = [c for c in raw.frame.columns if c != "_row"]
    by_key = {parsing.normalize_key(h): h for h in headers}
    found: dict[str, list[str]] = {}
    # canonical columns in schema order, then the config's own (a set's order would
    # change from one run to the next)
    canonical = dict.fromkeys([*schema.columns_of(spec.name), *spec.columns])
    for col in canonical:
        wanted = spec.columns.get(col, ())
        present = [
            by_key[parsing.normalize_key(w)] for w in wanted if parsing.normalize_key(w) in by_key
        ]
        if not wanted and parsing.normalize_key(col) in by_key:
            present = [by_key[parsing.normalize_key(col)]]  # already canonical (e.g. Parquet)
        if present:
            found[col] = present
        elif col in spec.explicit:
            raise MissingColumnError(
                f"{raw.file}: column {_fmt_alts(wanted)} (mapped to {col!r} in {config.path}) "
                f"is not in the file.{_did_you_mean(wanted, headers)} Headers present: {headers}. "
                f"Fix: correct tables.{spec.name}.columns.{col} in the source config."
            )
    missing = [c for c in schema.required_columns(spec.name) if c not in found]
    if spec.name == "opportunities" and "stage" not in found and "status" in found:
        missing.remove("stage")
    if missing:
        details = "; ".join(
            f"{c!r} (looked for {_fmt_alts(spec.columns.get(c, (c,)))})"
            f"{_did_you_mean(spec.columns.get(c, (c,)), headers)}"
            for c in missing
        )
        raise MissingColumnError(
            f"{raw.file}: required column(s) missing for table {spec.name!r}: {details}. "
            f"Headers present: {headers}. Fix: map them under tables.{spec.name}.columns "
            f"in {config.path} (canonical name: source header)."
        )
    return found


def _did_you_mean(wanted, headers) -> str:
    close = [
        m for w in wanted for m in difflib.get_close_matches(str(w), headers, n=1, cutoff=0.75)
    ]
    return f" Did you mean {close[0]!r}?" if close else ""


def _fmt_alts(names) -> str:
    names = list(names)
    return repr(names[0]) if len(names) == 1 else " or ".join(repr(n) for n in names)


def _coalesce(frame: pd.DataFrame, headers: list[str]) -> pd.Series:
    out = frame[headers[0]]
    for h in headers[1:]:
        out = out.where(out.notna() & (out.astype("str").str.strip() != ""), frame[h])
    return out


def _load_one(config, spec: TableSpec, raw: io.RawTable, ledger: _Ledger, tables) -> pd.DataFrame:
    name, file = spec.name, raw.file
    found = _resolve_columns(config, spec, raw)
    src = raw.frame
    rows = src["_row"].to_numpy()
    used = {h for hs in found.values() for h in hs}
    n_read = raw.n_read
    read_rejected = raw.rejects["row"].nunique() if len(raw.rejects) else 0
    ledger.reject(
        name,
        file,
        raw.rejects["row"],
        raw.rejects["column"],
        raw.rejects["reason"],
        raw.rejects["value"],
    )

    out: dict[str, pd.Series] = {}
    problems: dict[str, tuple[pd.Series, str, pd.Series]] = {}  # column -> (mask, issue, raw)
    raw_cols = {col: _coalesce(src, headers) for col, headers in found.items()}
    kinds = {
        col: schema.kind_of(name, col) or ("date" if col in spec.milestones else "text")
        for col in found
    }
    day_orders = _day_orders(spec, raw_cols, kinds)
    for col, headers in found.items():
        raw_col, kind = raw_cols[col], kinds[col]
        parsed, invalid, issue, currency, note = _parse_column(
            kind, raw_col, spec, day_orders.get(col, ("auto", None))
        )
        if note:
            ledger.notes.append(
                {
                    "table": name,
                    "file": file,
                    "column": col,
                    "source": " / ".join(headers),
                    "how": note,
                }
            )
        if col in spec.values and kind in ("text", "id"):
            parsed = _alias(parsed, spec.values[col])
        out[col] = parsed
        if currency is not None and currency.notna().any():
            out.setdefault("_currency_parsed", currency)
        if invalid is not None and invalid.any():
            problems[col] = (invalid, issue, raw_col)
    frame = pd.DataFrame(out, index=src.index, copy=False)  # copy-on-write guards `src`

    # unknown columns are kept under their source name
    for h in src.columns:
        if h == "_row" or h in used:
            continue
        target = h if h not in frame.columns else f"{h} (source)"
        frame[target] = parsing.clean_text(src[h]) if _is_text(src[h]) else src[h]

    if name == "opportunities" or name == "stage_history":
        frame = _apply_stages(config, spec, raw, frame, found)

    keep = np.ones(len(frame), dtype=bool)
    keys = frame[_UNIQUE_KEY[name]] if name in _UNIQUE_KEY and _UNIQUE_KEY[name] in frame else None
    # unusable rows: a key value missing (or unparseable)
    for col in _KEY_COLUMNS.get(name, ()):
        if col not in frame:
            continue
        bad = frame[col].isna().to_numpy() & keep
        if bad.any():
            raw_vals = problems[col][2][bad] if col in problems else pd.Series([pd.NA] * bad.sum())
            reason = f"{col} is missing" if col not in problems else f"{col}: {problems[col][1]}"
            ledger.reject(name, file, rows[bad], col, reason, raw_vals)
            keep &= ~bad
    if keys is not None and parsing._has_duplicates(keys, missing=False):
        dup = keys.duplicated(keep="first").to_numpy() & keep & keys.notna().to_numpy()
        if dup.any():
            first_row = (
                pd.Series(rows, index=frame.index).groupby(keys.to_numpy()).transform("first")
            )
            ledger.reject(
                name,
                file,
                rows[dup],
                _UNIQUE_KEY[name],
                "duplicate "
                + _UNIQUE_KEY[name]
                + " (first seen at row "
                + first_row[dup].astype("int64").astype("str")
                + ")",
                keys[dup],
            )
            keep &= ~dup
    # usable rows with a problem value: loaded, value set missing, warned
    for col, (mask, issue, raw_col) in problems.items():
        if col in _KEY_COLUMNS.get(name, ()):
            continue
        m = mask.to_numpy() & keep
        ledger.warn(
            name, file, rows[m], keys[m] if keys is not None else None, col, issue, raw_col[m]
        )
    if not keep.all():
        frame = frame.loc[keep]
    kept_rows = rows[keep]

    if name == "opportunities":
        frame = _convert_currency(config, frame, file, kept_rows, ledger)
    frame = frame.drop(columns=["_currency_parsed"], errors="ignore")
    warned = {col: mask.to_numpy()[keep] for col, (mask, _, _) in problems.items()}
    _row_warnings(name, frame, file, kept_rows, ledger, already=warned)

    ledger.counts.append(
        {
            "table": name,
            "file": file,
            "read": n_read,
            "loaded": len(frame),
            "rejected": n_read - len(frame),
        }
    )
    assert n_read - len(frame) == read_rejected + (~keep).sum(), "reconciliation broken"
    frame = frame.reset_index(drop=True)
    frame.insert(len(frame.columns), "_row", kept_rows)
    return _order_columns(name, frame)


def _order_columns(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    canon = [c for c in schema.columns_of(name) if c in frame.columns]
    rest = [c for c in frame.columns if c not in canon]
    return frame[canon + rest]


def _is_text(values: pd.Series) -> bool:
    return values.dtype == "str" or values.dtype == object


def _day_orders(spec: TableSpec, raw_cols, kinds) -> dict[str, tuple[object, str | None]]:
    """Per date column: the ``dayfirst`` to parse it with, and a note when the file decided.

    The config's setting wins; else a column decides for itself from its values; a
    column whose values cannot tell follows the file's other date columns when they agree.
    """
    dates = [c for c, k in kinds.items() if k == "date"]
    opt = spec.parse.get("dayfirst", "auto")
    if opt != "auto":
        return {c: (bool(opt), None) for c in dates}
    own = {
        c: parsing.detect_dayfirst(raw_cols[c]) if _is_text(raw_cols[c]) else None for c in dates
    }
    votes = {d for d in own.values() if d is not None}
    if len(votes) != 1:
        return {c: ("auto", None) for c in dates}
    hint = votes.pop()
    note = f"{'day' if hint else 'month'}-first, as decided by the other date columns of this file"
    return {
        c: (hint, note) if own[c] is None and _is_text(raw_cols[c]) else ("auto", None)
        for c in dates
    }


def _parse_column(kind, values: pd.Series, spec: TableSpec, day_order=("auto", None)):
    """Parse one raw column; returns (values, invalid mask or None, issue, currency, note)."""
    decimal = spec.parse.get("decimal", "auto")
    if kind in ("id", "text", "stage", "status"):
        if not _is_text(values):
            values = values.astype("str").where(values.notna(), pd.NA)
            if kind == "id":  # ids that a database or spreadsheet stored as numbers
                values = values.str.replace(r"\.0$", "", regex=True)
        return parsing.clean_text(values), None, "", None, ""
    if kind == "date":
        day, decided_by_file = day_order
        res = parsing.parse_date(values, dayfirst=day)
        return res.values, res.invalid, "not a date", None, decided_by_file or _configured(res.note)
    if kind == "amount":
        res = parsing.parse_amount(values, decimal=decimal)
        return res.values, res.invalid, "not an amount", res.currency, _configured(res.note)
    if kind == "percent":
        res = parsing.parse_percent(values, decimal=decimal)
        return res.values, res.invalid, "not a percentage in 0–100 %", None, _configured(res.note)
    res = parsing.parse_number(values, decimal=decimal)
    return res.values, res.invalid, "not a number", None, _configured(res.note)


def _configured(note: str) -> str:
    return note.replace("(as requested)", "(set in the source config)")


def _alias(values: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    lookup = {parsing.normalize_key(str(k)): str(v) for k, v in mapping.items()}
    return _map_distinct(
        values, lambda v: lookup.get(parsing.normalize_key(v), v) if isinstance(v, str) else v
    )


def _map_distinct(values: pd.Series, func, *, na_action: str | None = "ignore") -> pd.Series:
    """``values.map(func).astype("str")``, calling ``func`` once per distinct value.

    Missing values stay missing (``na_action="ignore"``) or become ``func(nan)``
    (``na_action=None``, as :meth:`pandas.Series.map` does); ``None`` results are missing.
    """
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    results = [func(v) for v in uniq]
    missing = (codes < 0).any()
    if (
        parsing._is_arrow_text(values)
        and not (na_action is None and missing)
        and all(type(r) is str and r == v for r, v in zip(results, uniq, strict=True))
    ):  # every value maps to itself (stages already canonical): no new column
        return pd.Series(values.array, index=values.index, name=values.name, dtype="str")
    if na_action is None and missing:
        codes = np.where(codes < 0, len(results), codes)
        results.append(func(np.nan))
    out = pd.Series(results, dtype=object).astype("str").array.take(codes, allow_fill=True)
    return pd.Series(out, index=values.index, name=values.name, dtype="str")


def _str_distinct(values: pd.Series, func) -> pd.Series:
    """``func(values)`` for a vectorised text function (``.str`` methods), worked out on
    the distinct values only."""
    if not parsing._is_arrow_text(values):
        return func(values)
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    done = func(pd.Series(uniq.array, dtype="str"))
    out = pd.array(done, dtype="str").take(codes, allow_fill=True)
    return pd.Series(out, index=values.index, name=values.name, dtype="str")


def _map_stages(config: SourceConfig, values: pd.Series, file: str, column: str, rows) -> pd.Series:
    lookup = config.stages._lookup()
    mapped = _map_distinct(
        values, lambda v: lookup.get(parsing.normalize_key(v)) if isinstance(v, str) else None
    )
    unknown = values[mapped.isna() & values.notna()]
    if len(unknown):
        counts = unknown.value_counts()
        listed = ", ".join(f"{v!r} ({n} rows)" for v, n in counts.head(10).items())
        first = int(
            np.asarray(rows)[np.flatnonzero((mapped.isna() & values.notna()).to_numpy())[0]]
        )
        raise UnknownStageError(
            f"{file}: column {column!r} has stage(s) the source config does not know: {listed} "
            f"(first at row {first}). Known stages: {list(config.stages.order)}. "
            "Fix: add them to stages.open/won/lost, or map them under stages.aliases "
            f"in {config.path}."
        )
    return mapped


def _apply_stages(config, spec, raw, frame, found) -> pd.DataFrame:
    frame = frame.copy(deep=False)  # copy-on-write: the caller's frame is never changed
    rows = raw.frame["_row"].to_numpy()
    stage_header = found.get("stage", ["stage"])[0]
    if "stage" in frame:
        frame["stage"] = _map_stages(config, frame["stage"], raw.file, stage_header, rows)
    if spec.name != "opportunities":
        return frame
    if "status" in frame:  # a separate status column (Pipedrive): Open / Won / Lost
        status = _str_distinct(frame["status"], lambda s: s.str.strip().str.casefold())
        bad = status.notna() & ~status.isin(schema.STATUSES)
        if bad.any():
            raise UnknownStageError(
                f"{raw.file}: column {found['status'][0]!r} has values "
                f"{sorted(frame['status'][bad].unique())[:10]}; "
                "expected Open, Won or Lost. Fix: map the status column to the right header."
            )
        derived = (
            _map_distinct(frame["stage"], config.stages.status_of, na_action=None)
            if "stage" in frame
            else None
        )
        if derived is not None:
            status = status.where(status.notna(), derived)
        frame["status"] = status.astype("str").where(status.notna(), pd.NA)
        if "stage" in frame:
            # A closed deal whose stage column holds the last open stage: keep that stage
            # as `last_open_stage`, set the canonical won/lost stage.
            closed_open = frame["status"].isin([schema.WON, schema.LOST]) & frame["stage"].isin(
                config.stages.open
            )
            frame["last_open_stage"] = frame["stage"].where(closed_open, pd.NA)
            frame.loc[frame["status"] == schema.WON, "stage"] = config.stages.won[0]
            frame.loc[frame["status"] == schema.LOST, "stage"] = config.stages.lost[0]
            frame.loc[frame["stage"].isna() & frame["status"].eq(schema.OPEN), "stage"] = pd.NA
    else:
        frame["status"] = _map_distinct(frame["stage"], config.stages.status_of)
    return frame


def _convert_currency(config, frame, file, rows, ledger) -> pd.DataFrame:
    cur = (
        frame["currency"]
        if "currency" in frame
        else pd.Series(pd.NA, index=frame.index, dtype="str")
    )
    if "_currency_parsed" in frame:
        cur = cur.where(cur.notna(), frame["_currency_parsed"])
    cur = cur.str.strip().str.upper()
    foreign = cur.notna() & (cur != config.base_currency) & frame["amount"].notna()
    if not foreign.any():
        if cur.notna().any():
            frame = frame.assign(currency=cur)
        return frame
    rate = cur.map(config.currency_rates).astype("float64")
    no_rate = foreign & rate.isna()
    converted = frame["amount"] * rate.where(foreign, 1.0)
    frame = frame.assign(
        amount_original=frame["amount"],
        currency=cur,
        amount=converted.where(~no_rate, np.nan),
    )
    m = no_rate.to_numpy()
    ledger.warn(
        "opportunities",
        file,
        rows[m],
        frame["opportunity_id"][m],
        "amount",
        f"currency has no rate to {config.base_currency}; amount left missing (add currency_rates)",
        cur[m],
    )
    return frame


def _row_warnings(
    name: str, frame: pd.DataFrame, file: str, rows, ledger: _Ledger, *, already
) -> None:
    """Data-quality warnings on loaded rows (missing values analyses will skip)."""
    if name == "opportunities":
        key = frame["opportunity_id"]
        amount_missing = frame["amount"].isna()
        if "amount_original" in frame:  # already warned: a currency without a rate
            amount_missing &= frame["amount_original"].isna()
        checks = [
            ("amount", amount_missing, "amount missing: skipped by revenue analyses"),
            ("amount", frame["amount"] < 0, "negative amount"),
            (
                "created_date",
                frame["created_date"].isna(),
                "created date missing: skipped by cycle and cohort analyses",
            ),
            (
                "close_date",
                frame["close_date"].isna(),
                "close date missing: skipped by period analyses",
            ),
            (
                "close_date",
                frame["close_date"] < frame["created_date"],
                "close date before created date: skipped by cycle analyses",
            ),
        ]
        if "account" in frame:
            checks.append(("account", frame["account"].isna(), "account missing"))
    elif name == "leads":
        key = frame["lead_id"]
        checks = [
            (
                "created_date",
                frame["created_date"].isna(),
                "created date missing: skipped by cohort analyses",
            ),
            (
                "source",
                frame["source"].isna(),
                "source missing: counted as '(unknown)' by source analyses",
            ),
        ]
    else:
        return
    for col, mask, issue in checks:
        m = mask.fillna(False).to_numpy(dtype=bool)
        if col in already:  # an unparseable value was warned as such already
            m = m & ~already[col]
        if m.any():
            ledger.warn(name, file, rows[m], key[m], col, issue, frame[col][m])


def _wide_history(config, spec, raw: io.RawTable, ledger: _Ledger, tables) -> pd.DataFrame:
    """HubSpot-style stage history: one ``Date entered "<Stage> (<Pipeline>)"`` column per stage."""
    pattern = re.compile(HUBSPOT_DATE_ENTERED)
    cols = {h: pattern.match(h).group("stage") for h in raw.frame.columns if pattern.match(h)}
    if not cols:
        raise MissingColumnError(
            f"{raw.file}: stage_history.wide_from=opportunities needs columns like "
            f"'Date entered \"<Stage> (<Pipeline>)\"', none found. Fix: include them in the export "
            "or remove stage_history from the source config."
        )
    opp_found = _resolve_columns(config, config.tables["opportunities"], raw)
    ids = parsing.clean_text(_coalesce(raw.frame, opp_found["opportunity_id"]))
    loaded_ids = tables["opportunities"]["opportunity_id"]
    parts = []
    for header, stage in cols.items():
        res = parsing.parse_date(raw.frame[header], dayfirst=spec.parse.get("dayfirst", "auto"))
        part = pd.DataFrame({"opportunity_id": ids, "stage": stage, "entered_at": res.values})
        parts.append(part[part["entered_at"].notna() & parsing._isin(ids, loaded_ids)])
    long = pd.concat(parts, ignore_index=True)
    long["stage"] = _map_stages(
        config, long["stage"], raw.file, "Date entered columns", np.zeros(len(long))
    )
    long = long.sort_values(["opportunity_id", "entered_at"], kind="stable", ignore_index=True)
    ledger.counts.append(
        {
            "table": "stage_history",
            "file": raw.file + " (Date entered columns)",
            "read": len(long),
            "loaded": len(long),
            "rejected": 0,
        }
    )
    return long


#: (id of a stage history, id of its opportunities) -> (weak refs to both, positions)
_POSITIONS: dict[tuple[int, int], tuple[weakref.ref, weakref.ref, np.ndarray | None]] = {}
_POSITIONS_SIZE = 8
_positions_lock = threading.Lock()


def _hist_positions(hist: pd.DataFrame, opps: pd.DataFrame) -> np.ndarray | None:
    """For each stage-history row, the position of its deal in ``opps`` (-1: none).

    ``None`` when the opportunity ids are not unique or some are missing (then a position
    cannot stand for an id). Tables are never modified in place, so the answer is kept per
    pair of table objects (weakly, a few pairs): every snapshot and filter of the same
    Dataset reuses the one look-up of millions of ids.
    """
    key = (id(hist), id(opps))
    with _positions_lock:
        entry = _POSITIONS.get(key)
    if entry is not None and entry[0]() is hist and entry[1]() is opps:
        return entry[2]
    hist_ids, opp_ids = hist["opportunity_id"], opps["opportunity_id"]
    if opp_ids.isna().any() or parsing._has_duplicates(opp_ids):
        pos = None
    elif parsing._is_arrow_text(hist_ids) and parsing._is_arrow_text(opp_ids):
        found = pc.index_in(
            pa.array(hist_ids.array), value_set=pa.array(opp_ids.array), skip_nulls=True
        )
        pos = np.asarray(found.fill_null(-1), dtype=np.int64)
    else:
        pos = pd.Index(opp_ids).get_indexer(hist_ids).astype(np.int64)
    _remember_positions(hist, opps, pos)
    return pos


def _remember_positions(hist: pd.DataFrame, opps: pd.DataFrame, pos: np.ndarray | None) -> None:
    if pos is not None:
        pos.flags.writeable = False
    with _positions_lock:
        for k in [k for k, e in _POSITIONS.items() if e[0]() is None or e[1]() is None]:
            del _POSITIONS[k]
        while len(_POSITIONS) >= _POSITIONS_SIZE:
            del _POSITIONS[next(iter(_POSITIONS))]
        _POSITIONS[(id(hist), id(opps))] = (weakref.ref(hist), weakref.ref(opps), pos)


def _cross_checks(tables: dict[str, pd.DataFrame], ledger: _Ledger) -> None:
    """Links between tables: history for unknown deals is rejected; dangling links warn."""
    opps = tables["opportunities"]
    links = (  # opportunities column -> the table and column it should be found in
        ("lead_id", "leads", "lead_id", "lead_id not found in the leads table"),
        ("product", "products", "product", "product not in the products table (alias it?)"),
        ("account", "accounts", "account", "account not in the accounts table (alias it?)"),
    )
    links = tuple(link for link in links if link[1] in tables and link[0] in opps)
    checks_history = "stage_history" in tables and "_row" in tables["stage_history"]
    # the look-ups (millions of ids) run side by side: arrow releases the GIL
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pipeline-links") as pool:
        if checks_history:
            positions = pool.submit(_hist_positions, tables["stage_history"], opps)
        linked = [
            pool.submit(parsing._isin, opps[col], tables[table][key])
            for col, table, key, _ in links
        ]
    if checks_history:
        hist = tables["stage_history"]
        pos = positions.result()
        if pos is None:
            found = parsing._isin(hist["opportunity_id"], opps["opportunity_id"])
        else:
            found = pos >= 0
        orphan = pd.Series(~found, index=hist.index)
        if orphan.any():
            file = next(c["file"] for c in ledger.counts if c["table"] == "stage_history")
            ledger.reject(
                "stage_history",
                file,
                hist["_row"][orphan],
                "opportunity_id",
                "no opportunity with this id",
                hist["opportunity_id"][orphan],
            )
            for c in ledger.counts:
                if c["table"] == "stage_history":
                    c["loaded"] -= int(orphan.sum())
                    c["rejected"] += int(orphan.sum())
            tables["stage_history"] = hist.loc[~orphan].reset_index(drop=True)
            if pos is not None:  # what snapshots of the loaded data will ask for
                _remember_positions(tables["stage_history"], opps, pos[found])
    file_of = {c["table"]: c["file"] for c in ledger.counts}
    for (col, _, _, issue), found in zip(links, linked, strict=True):
        m = opps[col].notna().to_numpy() & ~found.result()
        ledger.warn(
            "opportunities",
            file_of["opportunities"],
            opps["_row"][m],
            opps["opportunity_id"][m],
            col,
            issue,
            opps[col][m],
        )
