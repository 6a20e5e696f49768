"""Canonical tables and columns, and their validation (pandera).

Analyses only ever see these names. Each column has a *kind* that tells the loader
how to parse it from raw text:

``id``      text identifier, stripped (``"00123"`` stays ``"00123"``)
``text``    free text, stripped; empty becomes missing
``date``    calendar date (``datetime64[ns]``, tz-naive, midnight)
``amount``  money or a plain number (``float64``); currency strings accepted
``number``  plain number (``float64``)
``percent`` probability in [0, 1]; ``"40%"``, ``"40"`` and ``"0.4"`` all read 0.4
``stage``   a pipeline stage, mapped through the source config's ``stages`` block
``status``  ``open`` / ``won`` / ``lost`` (derived from the stage unless mapped)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from .errors import DataValidationError
from .parsing import _has_duplicates

__all__ = [
    "Column",
    "TABLES",
    "REQUIRED_TABLES",
    "STATUSES",
    "OPEN",
    "WON",
    "LOST",
    "columns_of",
    "required_columns",
    "kind_of",
    "empty_table",
    "validate_table",
]

OPEN, WON, LOST = "open", "won", "lost"
STATUSES = (OPEN, WON, LOST)


@dataclass(frozen=True)
class Column:
    """One canonical column: its name, kind, and whether a source must provide it."""

    name: str
    kind: str
    required: bool = False
    description: str = ""


_C = Column

#: Canonical tables -> their columns, in display order.
TABLES: dict[str, tuple[Column, ...]] = {
    "opportunities": (
        _C("opportunity_id", "id", True, "unique deal identifier"),
        _C("stage", "stage", True, "canonical stage name"),
        _C("status", "status", False, "open / won / lost, derived from stage by the config"),
        _C("created_date", "date", True, "date the deal was created"),
        _C("close_date", "date", True, "actual close date when closed, expected when open"),
        _C("amount", "amount", True, "deal value in the base currency"),
        _C("name", "text", False, "deal name"),
        _C("product", "text", False, "product or service sold"),
        _C("account", "text", False, "customer account"),
        _C("owner", "text", False, "sales rep"),
        _C("team", "text", False, "sales team"),
        _C("source", "text", False, "lead source / channel"),
        _C("lead_id", "id", False, "link to the leads table"),
        _C("probability", "percent", False, "win probability typed into the CRM"),
        _C("lost_reason", "text", False, "why a lost deal was lost"),
        _C("currency", "text", False, "currency of the amount as exported"),
    ),
    "stage_history": (
        _C("opportunity_id", "id", True, "deal identifier"),
        _C("stage", "stage", True, "stage entered"),
        _C("entered_at", "date", True, "when the stage was entered"),
        _C("amount", "amount", False, "amount as it was at that change"),
        _C("close_date", "date", False, "expected close date as it was at that change"),
    ),
    "leads": (
        _C("lead_id", "id", True, "unique lead identifier"),
        _C("created_date", "date", True, "first contact"),
        _C("source", "text", True, "channel or origin (may be blank)"),
        _C("campaign", "text", False, "campaign"),
        _C("segment", "text", False, "segment"),
    ),
    "products": (
        _C("product", "text", True, "product name"),
        _C("family", "text", False, "product family"),
        _C("list_price", "amount", False, "list price per deal"),
    ),
    "accounts": (
        _C("account", "text", True, "account name"),
        _C("industry", "text", False, "industry / sector"),
        _C("region", "text", False, "region"),
        _C("employees", "number", False, "company size"),
    ),
    "targets": (
        _C("period", "date", True, "first day of the target period"),
        _C("target", "amount", True, "quota for the period"),
        _C("team", "text", False, "team the quota belongs to (blank: whole company)"),
    ),
    "lead_costs": (
        _C("period", "date", True, "first day of the spend period"),
        _C("source", "text", True, "lead source"),
        _C("cost", "amount", True, "spend in the period"),
    ),
}

REQUIRED_TABLES = ("opportunities",)

#: Lead milestone columns are free-form (``<name>_date``); the source config orders them.
LEAD_MILESTONE_SUFFIX = "_date"


def columns_of(table: str) -> tuple[str, ...]:
    """Canonical column names of ``table`` in display order."""
    _check_table(table)
    return tuple(c.name for c in TABLES[table])


def required_columns(table: str) -> tuple[str, ...]:
    """Columns a source must provide for ``table``."""
    _check_table(table)
    return tuple(c.name for c in TABLES[table] if c.required)


def kind_of(table: str, column: str) -> str | None:
    """Kind of a canonical column, or ``None`` for a non-canonical (kept) column."""
    _check_table(table)
    for c in TABLES[table]:
        if c.name == column:
            return c.kind
    if table == "leads" and column.endswith(LEAD_MILESTONE_SUFFIX):
        return "date"
    return None


_DTYPES = {
    "id": "str",
    "text": "str",
    "stage": "str",
    "status": "str",
    "date": "datetime64[ns]",
    "amount": "float64",
    "number": "float64",
    "percent": "float64",
}


def empty_table(table: str) -> pd.DataFrame:
    """An empty frame with the canonical columns and dtypes of ``table``."""
    _check_table(table)
    return pd.DataFrame({c.name: pd.Series(dtype=_DTYPES[c.kind]) for c in TABLES[table]})


def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {sorted(TABLES)}")


def _pandera_schema(table: str, frame: pd.DataFrame) -> pa.DataFrameSchema:
    cols: dict[str, pa.Column] = {}
    for c in TABLES[table]:
        if c.name not in frame.columns:
            continue
        checks = []
        if c.kind == "status":
            checks.append(pa.Check.isin(STATUSES))
        if c.kind == "percent":
            checks.append(pa.Check.in_range(0.0, 1.0))
        if c.kind in ("amount", "number", "percent"):
            dtype = "float64"
        elif c.kind == "date":
            dtype = "datetime64[ns]"
        else:
            dtype = None  # text: str or object, checked below
        nullable = not (c.required and c.kind in ("id", "stage"))
        cols[c.name] = pa.Column(dtype, checks=checks, nullable=nullable, coerce=False)
    unique = _UNIQUE.get(table)
    return pa.DataFrameSchema(cols, strict=False, unique=unique, name=table)


_UNIQUE = {
    "opportunities": ["opportunity_id"],
    "leads": ["lead_id"],
    "products": ["product"],
    "accounts": ["account"],
}


def _passes(table: str, frame: pd.DataFrame) -> bool:
    """The rules of :func:`_pandera_schema`, vectorised: True when the frame surely passes.

    pandera checks row by row in places and takes seconds on millions of rows; a frame
    this quick check doubts goes through pandera, which words the failures.
    """
    for c in TABLES[table]:
        if c.name not in frame.columns:
            continue
        values = frame[c.name]
        if c.kind in ("amount", "number", "percent") and values.dtype != np.float64:
            return False
        if c.kind == "date" and values.dtype != np.dtype("datetime64[ns]"):
            return False
        if c.required and c.kind in ("id", "stage") and values.isna().any():
            return False
        if c.kind == "status" and not (values.isna() | values.isin(STATUSES)).all():
            return False
        if c.kind == "percent" and ((values < 0) | (values > 1)).any():
            return False
    unique = _UNIQUE.get(table)
    if unique is None:
        return True
    return unique[0] in frame.columns and not _has_duplicates(frame[unique[0]])


def validate_table(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Validate a canonical table and return it unchanged.

    Parameters
    ----------
    table : str
        One of :data:`TABLES`.
    frame : DataFrame
        The loaded table with canonical column names.

    Returns
    -------
    DataFrame
        ``frame`` itself (not a copy) when valid.

    Raises
    ------
    MissingColumnError
        Never here; the loader checks required columns first with file context.
    DataValidationError
        When a column has the wrong dtype, a value outside its domain, or an id repeats;
        the message lists the first failures.
    """
    if _passes(table, frame):
        return frame
    schema = _pandera_schema(table, frame)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        failures = exc.failure_cases.head(10)
        lines = [
            f"  column {r.column!r}: {r.check} (e.g. {r.failure_case!r})"
            for r in failures.itertuples()
        ]
        raise DataValidationError(
            f"table {table!r} failed validation:\n" + "\n".join(lines)
        ) from None
    return frame
