"""Read a table as it is: no typing, row numbers kept, lines that cannot be rows rejected.

:func:`read_table` reads CSV/TSV text (any encoding, any common separator), Excel sheets,
Parquet files and SQL queries into a :class:`RawTable`. Text sources come back as text
(dtype ``str``, missing for empty cells) with a ``_row`` column holding the line (or
spreadsheet row) where each record starts, so a user can open the file and find it; turning
text into numbers and dates is :mod:`pipeline_lib.parsing`'s job. Report titles above the
header, blank lines, report footers (``Grand Totals``, confidentiality and copyright lines),
rows whose field count does not match the header and lines opening a quote that is never
closed are handled here: every record read is either a row of ``frame`` or a line of
``rejects``, so ``n_read == len(frame) + rejects["row"].nunique()``. Cells of any length are
read (a pasted e-mail is data), and NUL padding at the end of a file is ignored.
"""

from __future__ import annotations

import codecs
import csv
import io as _io
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from .config import PROJECT_ROOT, resolve_path
from .errors import SourceConfigError, UnreadableFileError
from .parsing import _cell_text, normalize_key

__all__ = ["RawTable", "REJECT_COLUMNS", "read_table", "empty_rejects"]

#: Columns of every rejects table, in order.
REJECT_COLUMNS = ("file", "row", "column", "reason", "value")

FOOTER_REASON = "report footer line"
UNCLOSED_QUOTE_REASON = (
    "a quoted field opened on this line is never closed: line rejected, reading resumed "
    "on the next line (fix the quote)"
)

_FORMATS = ("csv", "tsv", "excel", "parquet", "sql")
_EXTENSIONS = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".xls": "excel",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_SEPARATORS = (",", ";", "\t", "|")
_SEP_ALIASES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
_VALUE_MAX = 200
_CHUNK = 100_000
_SNIFF_CHARS = 65_536
_HEADER_SAMPLE = 200

# A "Grand Totals" / "Total" row, recognised by its first filled-in cell.
_TOTAL_RE = re.compile(
    r"^(?:grand\s+)?(?:sub-?)?totals?(?:\s*\(.*\))?\s*:?$|^grand\s+totals?\b.*$", re.IGNORECASE
)
_TOTAL_FIRST_CHARS = frozenset("TtGgSs")
# Lines a report tool writes below the data.
_FOOTER_RE = re.compile(
    r"^(?:confidential|copyright\b|©|\(c\)\s|all rights reserved|generated\s+(?:by|on|at)\b"
    r"|filtered\s+by\b|report\s+(?:generated|run|printed|created)\b|(?:printed|run|exported)"
    r"\s+(?:by|on|at)\b)",
    re.IGNORECASE,
)


@dataclass(frozen=True, eq=False)
class RawTable:
    """A table read as it is.

    Attributes
    ----------
    frame : DataFrame
        Columns are the source headers (BOM and whitespace stripped, duplicates made unique
        as ``"Name"``, ``"Name.1"``) plus the int column ``"_row"``: the 1-based line where
        the record starts (text), the spreadsheet row (Excel) or the position (Parquet, SQL).
        Text sources hold text only (dtype ``str``, missing for empty cells); Parquet and SQL
        keep their native dtypes.
    rejects : DataFrame
        Columns exactly :data:`REJECT_COLUMNS`; ``column`` is missing for whole-row problems
        and ``value`` is the raw line (or cells), truncated to 200 characters.
    file : str
        Display name: the path, or ``"sql:<url with the password masked>"``.
    n_read : int
        Records read: ``len(frame)`` plus the number of distinct rejected rows.
    encoding : str or None
        Encoding used for text files.
    sep : str or None
        Separator used for text files.
    """

    frame: pd.DataFrame
    rejects: pd.DataFrame
    file: str
    n_read: int
    encoding: str | None = None
    sep: str | None = None


def empty_rejects() -> pd.DataFrame:
    """An empty rejects table with the columns of :data:`REJECT_COLUMNS`.

    Returns
    -------
    DataFrame
        Zero rows; ``row`` is ``int64``, the other columns ``str``.

    Examples
    --------
    >>> tuple(empty_rejects().columns) == REJECT_COLUMNS
    True
    """
    return pd.DataFrame(
        {
            "file": pd.Series(dtype="str"),
            "row": pd.Series(dtype="int64"),
            "column": pd.Series(dtype="str"),
            "reason": pd.Series(dtype="str"),
            "value": pd.Series(dtype="str"),
        }
    )


def read_table(
    path: str | Path | None = None,
    *,
    format: str | None = None,
    encoding: str = "auto",
    sep: str = "auto",
    sheet: str | int | None = None,
    query: str | None = None,
    url: str | None = None,
    base: str | Path | None = None,
) -> RawTable:
    """Read one source table as it is.

    Parameters
    ----------
    path : str or Path, optional
        The file (not needed for ``format="sql"``).
    format : {"csv", "tsv", "excel", "parquet", "sql"}, optional, keyword-only
        Inferred when omitted: from ``url``/``query`` (sql) or the extension (``.csv``/
        ``.txt`` csv, ``.tsv``/``.tab`` tsv, ``.xlsx``/``.xlsm``/``.xls`` excel,
        ``.parquet``/``.pq`` parquet).
    encoding : str, keyword-only
        ``"auto"`` (BOM, UTF-16 without BOM, strict UTF-8, else cp1252 — or, for a file
        that is mostly UTF-8 with a few stray bytes, UTF-8 with those bytes read as
        cp1252) or a codec name.
    sep : str, keyword-only
        ``"auto"`` (sniffed among ``,`` ``;`` tab ``|`` outside quotes) or the separator.
    sheet : str or int, optional, keyword-only
        Excel sheet name or 0-based position (default: the first sheet).
    query : str, optional, keyword-only
        SQL query (``format="sql"``).
    url : str, optional, keyword-only
        SQLAlchemy database URL (``format="sql"``).
    base : str or Path, optional, keyword-only
        Directory that relative paths and relative sqlite URLs are resolved against
        (default: the project root).

    Returns
    -------
    RawTable
        The frame, the rejected records and how many records were read.

    Raises
    ------
    UnreadableFileError
        The file is missing, a directory, empty (no header line), cannot be decoded with
        the encoding asked for, is not a valid Excel/Parquet file, the sheet does not exist,
        or the database URL/query fails.
    SourceConfigError
        An option is invalid (unknown format, separator or codec; sql without url/query).

    Examples
    --------
    >>> t = read_table("exports/opportunities.csv", base="data/raw")  # doctest: +SKIP
    >>> t.frame.columns[-1], t.n_read == len(t.frame) + t.rejects["row"].nunique()  # doctest: +SKIP
    ('_row', True)
    """
    fmt = _resolve_format(path, format, url, query)
    if fmt == "sql":
        return _read_sql(url, query, base)
    if path is None:
        raise SourceConfigError(f"no path given for a {fmt} table — set `path:` to the file")
    p = resolve_path(path, base=base)
    name = str(p)
    _check_file(p, base)
    if fmt == "excel":
        return _read_excel(p, name, sheet)
    if fmt == "parquet":
        return _read_parquet(p, name)
    delimiter = _check_sep(sep, name)
    if delimiter is None and fmt == "tsv":
        delimiter = "\t"
    return _read_text(p, name, encoding, delimiter)


# --------------------------------------------------------------------------- options & files


def _resolve_format(path, format: str | None, url: str | None, query: str | None) -> str:
    if format is not None:
        fmt = str(format).strip().lower()
        fmt = {"xlsx": "excel", "xls": "excel", "pq": "parquet", "txt": "csv"}.get(fmt, fmt)
        if fmt not in _FORMATS:
            raise SourceConfigError(
                f"{path or url}: unknown format {format!r} — use one of {', '.join(_FORMATS)}"
            )
        return fmt
    if path is None and (url is not None or query is not None):
        return "sql"
    if path is None:
        raise SourceConfigError("no path given — set `path:` (or `url:` and `query:` for sql)")
    ext = Path(str(path)).suffix.lower()
    if ext not in _EXTENSIONS:
        raise SourceConfigError(
            f"{path}: cannot tell the format from the extension {ext or '(none)'!r} — "
            f"set `format:` to one of {', '.join(_FORMATS)}"
        )
    return _EXTENSIONS[ext]


def _check_sep(sep: str, name: str) -> str | None:
    if sep is None or sep == "auto":
        return None
    s = _SEP_ALIASES.get(str(sep).lower(), sep)
    if not isinstance(s, str) or len(s) != 1 or s in '"\r\n':
        raise SourceConfigError(
            f"{name}: invalid separator {sep!r} — use auto, ',', ';', '\\t' or '|'"
        )
    return s


def _check_file(p: Path, base) -> None:
    where = Path(base) if base is not None else PROJECT_ROOT
    if not p.exists():
        raise UnreadableFileError(
            f"{p}: file not found — check the path (relative paths are resolved against {where})"
        )
    if p.is_dir():
        raise UnreadableFileError(f"{p}: is a directory, not a file — point `path` to the file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise UnreadableFileError(f"{p}: cannot be read ({exc.strerror}) — check it") from None
    if size == 0:
        raise UnreadableFileError(f"{p}: the file is empty (0 bytes) — export it again")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------- text files


def _decode(data: bytes, encoding: str, name: str) -> tuple[str, str]:
    """Decode ``data``; return the text (without BOM) and the encoding used."""
    if encoding is None or str(encoding).lower() == "auto":
        return _decode_auto(data, name)
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise SourceConfigError(
            f"{name}: unknown encoding {encoding!r} — use auto or a codec such as utf-8, "
            "cp1252, latin-1, utf-16"
        ) from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(
            f"{name}: cannot be decoded as {encoding} (byte 0x{data[exc.start]:02x} at "
            f"position {exc.start}) — set `encoding: auto` or the file's real encoding "
            "(e.g. cp1252, utf-16)"
        ) from None
    return text.removeprefix("\ufeff"), encoding


def _decode_auto(data: bytes, name: str) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError:
            data = data[3:]
    for bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return _decode_utf16(data[2:], enc, name)
    sample = data[:4096]
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    # UTF-16 text puts its NULs on one side of each byte pair; NUL padding on both.
    if odd + even > len(sample) // 4 and 4 * min(odd, even) <= max(odd, even):
        enc = "utf-16-le" if odd >= even else "utf-16-be"
        return _decode_utf16(data, enc, name)
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Mostly UTF-8 with a few stray cp1252 bytes (a file edited in an old editor): keep
    # the UTF-8 characters and read only the stray bytes as cp1252, instead of turning
    # every "é" of the file into "Ã©".
    loose = data.decode("utf-8", errors="replace")
    bad = loose.count("\ufffd")
    if len(loose) - len(loose.encode("ascii", errors="ignore")) - bad > bad:
        return data.decode("utf-8", errors=_STRAY_BYTES), "utf-8+cp1252"
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _stray_bytes_as_cp1252(err: UnicodeDecodeError) -> tuple[str, int]:
    """Codec error handler: bytes that are not UTF-8 are read as cp1252 (else latin-1)."""
    chunk = err.object[err.start : err.end]
    return "".join(_CP1252[b] for b in chunk), err.end


def _cp1252_char(b: int) -> str:
    try:
        return bytes([b]).decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined
        return chr(b)


_CP1252 = [_cp1252_char(b) for b in range(256)]
_STRAY_BYTES = "pipeline_lib.stray-cp1252"
codecs.register_error(_STRAY_BYTES, _stray_bytes_as_cp1252)


def _decode_utf16(data: bytes, enc: str, name: str) -> tuple[str, str]:
    try:
        return data.decode(enc).removeprefix("\ufeff"), enc
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(
            f"{name}: looks like {enc.upper()} but byte {exc.start} cannot be decoded "
            "(truncated or corrupt file) — export it again or set `encoding:`"
        ) from None


def _sniff_sep(text: str) -> str:
    """The candidate separator that splits the first records into the most consistent,
    widest rows (counting only separators outside quotes)."""
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS:
        cut = max(sample.rfind("\n"), sample.rfind("\r"))
        sample = sample[: cut + 1] if cut > 0 else sample
    best, best_score = ",", (0.0, 0)
    for cand in _SEPARATORS:
        counts: list[int] = []
        for rec in csv.reader(_io.StringIO(sample, newline=""), delimiter=cand):
            if any(f.strip() for f in rec):
                counts.append(len(rec))
            if len(counts) >= 50:
                break
        tally = Counter(c for c in counts if c > 1)
        if not tally:
            continue
        width = max(tally, key=lambda c: (tally[c], c))
        score = (tally[width] / len(counts), width)  # share of records with that width
        if score > best_score:
            best, best_score = cand, score
    return best


def _read_text(p: Path, name: str, encoding: str, delimiter: str | None) -> RawTable:
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UnreadableFileError(f"{name}: cannot be read ({exc.strerror}) — check it") from None
    text, used = _decode(data, encoding, name)
    text = text.rstrip("\x00\x1a")  # NUL padding of a truncated copy, DOS end-of-file mark
    if not text or text.isspace():  # (strip() would copy a big file)
        raise UnreadableFileError(
            f"{name}: the file has no header line (it is blank) — export it again"
        )
    sep = delimiter or _sniff_sep(text)
    if csv.field_size_limit() < len(text):  # a long cell (notes, a pasted e-mail) is data
        csv.field_size_limit(len(text))
    same_bytes = used == "utf-8" and not data.endswith((b"\x00", b"\x1a"))
    regular = _read_regular(text, sep, data if same_bytes else None)
    if regular is not None:  # a plain well-formed file: parsed by pyarrow, in C
        return RawTable(regular, empty_rejects(), name, len(regular), used, sep)
    unclosed: list[int] = []  # lines whose quoted field is never closed

    def records() -> Iterator[tuple[int, int, list[str]]]:
        base, rest = 0, text  # `rest` starts after line `base` of the file
        while True:
            reader = csv.reader(_io.StringIO(rest, newline=""), delimiter=sep)
            prev, last = 0, None
            try:
                for rec in reader:
                    if last is not None:
                        yield last
                    start, prev = prev + 1, reader.line_num
                    last = (base + start, base + prev, rec)
            except csv.Error as exc:
                raise UnreadableFileError(
                    f"{name}: line {base + reader.line_num + 1}: {exc} — check the quotes "
                    "on that line"
                ) from None
            if last is None:
                return
            cut = _unclosed_quote(rest, last[0] - base, sep) if last[1] > last[0] else None
            if cut is None:
                yield last
                return
            # A quote opened on that line runs to the end of the file: reject the line,
            # read on from the next one instead of swallowing the rest into one cell.
            unclosed.append(last[0])
            base, rest = last[0], rest[cut:]

    def raw_lines(rejected: list[tuple[int, int, list[str]]]) -> list[str]:
        return _line_texts(text, [(s, e) for s, e, _ in rejected])

    frame, rejects = _assemble(records(), name=name, raw_value=raw_lines)
    if unclosed:
        extra = _rejects_frame(
            name,
            unclosed,
            [UNCLOSED_QUOTE_REASON] * len(unclosed),
            _line_texts(text, [(r, r) for r in unclosed]),
        )
        rejects = pd.concat([rejects, extra], ignore_index=True)
        rejects = rejects.sort_values("row", kind="stable", ignore_index=True)
    return RawTable(frame, rejects, name, _n_read(frame, rejects), used, sep)


def _unclosed_quote(text: str, line: int, sep: str) -> int | None:
    """Where line ``line + 1`` of ``text`` starts, when the record that starts on line
    ``line`` (and runs to the end of ``text``) ends inside a quoted field; else None."""
    starts = [0]
    for m in re.finditer(r"\r\n|\r|\n", text):
        starts.append(m.end())
        if len(starts) > line:
            break
    if len(starts) <= line:
        return None
    record = text[starts[line - 1] :]
    try:
        for _ in csv.reader(_io.StringIO(record, newline=""), delimiter=sep, strict=True):
            pass
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return starts[line]
    return None


def _line_texts(text: str, spans: list[tuple[int, int]]) -> list[str]:
    """The physical lines ``start..end`` (1-based, inclusive) of ``text`` for each span."""
    if not spans:
        return []
    last = max(e for _, e in spans)
    wanted = {n for s, e in spans for n in range(s, min(e, s + 20) + 1)}
    found: dict[int, str] = {}
    pos, line = 0, 0
    for line, m in enumerate(re.finditer(r"\r\n|\r|\n", text), start=1):  # noqa: B007
        if line in wanted:
            found[line] = text[pos : m.start()]
        pos = m.end()
        if line >= last:
            break
    else:
        found.setdefault(line + 1, text[pos:])
    out = []
    for s, e in spans:
        joined = "\n".join(found.get(n, "") for n in range(s, min(e, s + 20) + 1))
        out.append(joined[:_VALUE_MAX])
    return out


def _blank_to_missing(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Empty cells as missing: the same strings under a validity bitmap (no copy)."""
    none = pa.scalar(None, pa.large_string())
    chunks = []
    for chunk in col.chunks:
        if chunk.offset or not len(chunk):
            chunks.append(pc.if_else(pc.equal(chunk, ""), none, chunk))
            continue
        filled = pc.fill_null(pc.greater(pc.binary_length(chunk), 0), False)
        if chunk.null_count:
            filled = pc.and_(filled, chunk.is_valid())
        _, offsets, data = chunk.buffers()
        bitmap = filled.buffers()[1]
        chunks.append(pa.Array.from_buffers(pa.large_string(), len(chunk), [bitmap, offsets, data]))
    return pa.chunked_array(chunks, pa.large_string())


def _read_regular(text: str, sep: str, raw: bytes | None = None) -> pd.DataFrame | None:
    """The frame of a plainly well-formed text file, parsed by pyarrow; ``None`` otherwise.

    ``raw``, when given, is ``text`` encoded in UTF-8 (the file's own bytes).

    Well-formed: the header on line 1, every other line one record of the header's width
    with at least two cells filled in, no total line. Those are exactly the rows
    :func:`_assemble` accepts as they are, numbered by their line, so the frame is the
    same; any other file (title lines, blank lines, a record over several lines, ragged
    rows, footers, one column, ...) is left to the record-by-record reader.
    """
    head = text
    cut = -1
    for _ in range(2 * _HEADER_SAMPLE):  # the first lines are enough to check the header
        cut = text.find("\n", cut + 1)
        if cut < 0:
            break
    if cut >= 0:
        head = text[: cut + 1]
    reader = csv.reader(_io.StringIO(head, newline=""), delimiter=sep)
    sample: list[tuple[int, int, list[str]]] = []
    prev = 0
    try:
        for rec in reader:
            start, prev = prev + 1, reader.line_num
            if _nonempty(rec):
                sample.append((start, prev, rec))
    except csv.Error:
        return None
    if head is not text:
        sample = sample[:-1]  # the last record may run on below the cut
    if not sample or sample[0][:2] != (1, 1) or _header_index(sample[:_HEADER_SAMPLE]) != 0:
        return None
    fields = sample[0][2]
    columns = _header_names(fields, [f for _, _, f in sample[1:_HEADER_SAMPLE]])
    width = len(columns)
    if width < 2 or width != len(fields):
        return None
    keys = [f"c{j}" for j in range(width)]
    try:
        if raw is None:
            raw = text.encode("utf-8")
        table = pa_csv.read_csv(
            pa.BufferReader(raw),
            read_options=pa_csv.ReadOptions(skip_rows=1, column_names=keys),
            parse_options=pa_csv.ParseOptions(
                delimiter=sep,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=True,
                ignore_empty_lines=False,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(keys, pa.large_string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, UnicodeError):
        return None
    n = table.num_rows
    lines = raw.count(b"\n") + (not raw.endswith((b"\n", b"\r")))
    if raw.find(b"\r") >= 0:
        lines += raw.count(b"\r") - raw.count(b"\r\n")
    del raw
    if lines != n + 1:  # a blank line or a record over several lines
        return None
    cols = table.columns
    filled = np.full(n, width, dtype=np.int64)
    for col in cols:
        filled -= np.asarray(pc.equal(col, ""), dtype=np.int64)
    if (filled <= 1).any():  # blank, a single cell (a footer?): the full reader decides
        return None
    initial = pc.utf8_slice_codeunits(cols[0], 0, 1)
    odd = [c for c in pc.unique(initial).to_pylist() if c in _TOTAL_FIRST_CHARS]
    if odd:  # "Total ..." lines start like this
        firsts = pc.filter(cols[0], pc.is_in(initial, value_set=pa.array(odd, pa.large_string())))
        if any(_TOTAL_RE.match(v.strip()) for v in pc.unique(firsts).to_pylist()):
            return None
    blank = [c for c in pc.unique(initial).to_pylist() if not c or c.isspace()]
    if blank:  # rows starting with a blank cell: judged one by one, if only a few
        mask = np.asarray(pc.is_in(initial, value_set=pa.array(blank, pa.large_string())))
        if mask.sum() > _HEADER_SAMPLE:
            return None
        for i in np.flatnonzero(mask):
            if _TOTAL_RE.match(_first_filled([col[int(i)].as_py() for col in cols])):
                return None
    data = {
        name: pd.array(_blank_to_missing(col), dtype="str")
        for name, col in zip(columns, cols, strict=True)
    }
    frame = pd.DataFrame(data, columns=columns)
    frame["_row"] = np.arange(2, n + 2, dtype=np.int64)
    return frame


# --------------------------------------------------------------------------- records -> table


def _nonempty(fields: list[str]) -> int:
    return sum(1 for f in fields if f.strip())


def _first_filled(fields: list[str]) -> str:
    for f in fields:
        if f.strip():
            return f.strip()
    return ""


def _header_index(sample: list[tuple[int, int, list[str]]]) -> int:
    """Index of the header: the first record with the typical width of the records that
    have at least two filled-in cells (title lines above it are skipped)."""
    wide = [len(f) for _, _, f in sample if _nonempty(f) >= 2]
    tally = Counter(wide or [len(f) for _, _, f in sample])
    typical = max(tally, key=lambda c: (tally[c], c))
    for i, (_, _, f) in enumerate(sample):
        if len(f) == typical and (typical == 1 or _nonempty(f) >= 2):
            return i
    for i, (_, _, f) in enumerate(sample):
        if _nonempty(f) >= 2:
            return i
    return 0


def _unique_names(names: Iterable[str]) -> list[str]:
    seen = {"_row"}
    out = []
    for name in names:
        cand, k = name, 0
        while cand in seen:
            k += 1
            cand = f"{name}.{k}"
        seen.add(cand)
        out.append(cand)
    return out


def _clean_header(raw: Iterable[object]) -> list[str]:
    return [str(h).replace("\ufeff", "").strip() for h in raw]


def _header_names(fields: list[str], following: list[list[str]]) -> list[str]:
    names = _clean_header(fields)
    # Drop trailing unnamed columns when the rows below leave them empty too.
    while len(names) > 1 and names[-1] == "":
        k = len(names) - 1
        if any(len(f) > k and f[k].strip() for f in following):
            break
        names.pop()
    return _unique_names(n if n else f"Unnamed: {i}" for i, n in enumerate(names))


def _chunk_frame(flat: list[str], columns: list[str]) -> pd.DataFrame:
    """Columns of text from the row-major list of cells; ``""`` becomes missing."""
    width = len(columns)
    data = {}
    for j, name in enumerate(columns):
        arr = pa.array(flat[j::width], type=pa.large_string())
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.large_string()), arr)
        data[name] = pd.array(arr, dtype="str")
    return pd.DataFrame(data, columns=columns)


def _assemble(
    records: Iterator[tuple[int, int, list[str]]],
    *,
    name: str,
    where: str | None = None,
    raw_value: Callable[[list[tuple[int, int, list[str]]]], list[str]],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Header detection, blank/title/footer/ragged handling; returns (frame, rejects)."""
    sample: list[tuple[int, int, list[str]]] = []
    for rec in records:
        if _nonempty(rec[2]):
            sample.append(rec)
            if len(sample) >= _HEADER_SAMPLE:
                break
    if not sample:
        raise UnreadableFileError(
            f"{where or name}: no header line (only blank lines) — export the data again"
        )
    h = _header_index(sample)
    columns = _header_names(sample[h][2], [f for _, _, f in sample[h + 1 :]])
    width = len(columns)

    chunks: list[pd.DataFrame] = []
    flat: list[str] = []  # accepted cells, row-major
    starts: list[int] = []
    row_chunks: list[np.ndarray] = []
    rejected: list[tuple[int, int, list[str]]] = []
    reasons: list[str] = []
    pending: list[tuple[int, int, list[str]]] = []

    def flush() -> None:
        chunks.append(_chunk_frame(flat, columns))
        row_chunks.append(np.asarray(starts, dtype=np.int64))
        flat.clear()
        starts.clear()

    def accept(rec) -> None:
        start, _, fields = rec
        n = len(fields)
        if n != width:
            if n > width and not any(f.strip() for f in fields[width:]):
                fields = fields[:width]
            else:
                rejected.append(rec)
                reasons.append(f"row has {_plural(n, 'field')}, header has {width}")
                return
        flat.extend(fields)
        starts.append(start)
        if len(starts) >= _CHUNK:
            flush()

    def process(rec) -> None:
        fields = rec[2]
        filled = len(fields) - fields.count("")
        if filled <= 1:
            filled = _nonempty(fields)
            if filled == 0:
                return  # blank line
        first = fields[0][:1]
        if (not first or first in _TOTAL_FIRST_CHARS or first.isspace()) and _TOTAL_RE.match(
            _first_filled(fields)
        ):
            rejected.append(rec)
            reasons.append(FOOTER_REASON)
            return
        # A footer line ("Copyright (c) ..., inc. All rights reserved.") may hold a comma
        # and so split into a few fields: judge it by its first cell unless it is a full row.
        if (filled == 1 or len(fields) != width) and _FOOTER_RE.match(_first_filled(fields)):
            rejected.append(rec)
            reasons.append(FOOTER_REASON)
            return
        if filled == 1 and width > 1:
            pending.append(rec)  # a footer if nothing but footers follows
            return
        if pending:
            for p in pending:
                accept(p)
            pending.clear()
        accept(rec)

    for rec in sample[h + 1 :]:
        process(rec)
    for rec in records:
        # Fast path for the common record: right width, 2+ cells, not a total line.
        fields = rec[2]
        if len(fields) == width and not pending and width - fields.count("") > 1:
            first = fields[0][:1]
            if first and first not in _TOTAL_FIRST_CHARS and not first.isspace():
                flat.extend(fields)
                starts.append(rec[0])
                if len(starts) >= _CHUNK:
                    flush()
                continue
        process(rec)
    for rec in pending:
        rejected.append(rec)
        reasons.append(FOOTER_REASON)
    if starts or not chunks:
        flush()

    frame = pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]
    frame["_row"] = np.concatenate(row_chunks) if row_chunks else np.array([], dtype=np.int64)
    order = np.argsort([r[0] for r in rejected], kind="stable")
    rejected = [rejected[i] for i in order]
    reasons = [reasons[i] for i in order]
    rejects = _rejects_frame(name, [r[0] for r in rejected], reasons, raw_value(rejected))
    return frame, rejects


def _rejects_frame(name: str, rows: list[int], reasons: list[str], values: list[str]):
    if not rows:
        return empty_rejects()
    return pd.DataFrame(
        {
            "file": pd.Series([name] * len(rows), dtype="str"),
            "row": pd.Series(rows, dtype="int64"),
            "column": pd.Series([None] * len(rows), dtype="str"),
            "reason": pd.Series(reasons, dtype="str"),
            "value": pd.Series([v[:_VALUE_MAX] for v in values], dtype="str"),
        }
    )


def _n_read(frame: pd.DataFrame, rejects: pd.DataFrame) -> int:
    return len(frame) + int(rejects["row"].nunique())


# --------------------------------------------------------------------------- excel


def _read_excel(p: Path, name: str, sheet: str | int | None) -> RawTable:
    try:
        book = pd.ExcelFile(p)
    except ImportError as exc:
        raise UnreadableFileError(
            f"{name}: cannot open this Excel format ({exc}) — save the workbook as .xlsx"
        ) from None
    except Exception as exc:  # zip/xml errors of a corrupt or mislabelled file
        raise UnreadableFileError(
            f"{name}: not a readable Excel workbook ({type(exc).__name__}: {exc}) — "
            "open it in Excel and save it again as .xlsx"
        ) from None
    with book:
        target = _pick_sheet(book.sheet_names, sheet, name)
        raw = pd.read_excel(
            book, sheet_name=target, header=None, dtype=object, keep_default_na=False
        )
    if raw.empty:
        raise UnreadableFileError(
            f"{name}: sheet {target!r} is empty (no header line) — choose another `sheet:`"
        )
    cells = raw.to_numpy(dtype=object)

    def records() -> Iterator[tuple[int, int, list[str]]]:
        for i, row in enumerate(cells, start=1):
            yield i, i, [t if (t := _cell_text(v)) is not None else "" for v in row]

    def joined(rejected: list[tuple[int, int, list[str]]]) -> list[str]:
        out = []
        for _, _, fields in rejected:
            last = max((k for k, f in enumerate(fields) if f.strip()), default=-1)
            out.append(", ".join(fields[: last + 1]))
        return out

    where = f"{name} (sheet {target!r})"
    frame, rejects = _assemble(records(), name=name, where=where, raw_value=joined)
    return RawTable(frame, rejects, name, _n_read(frame, rejects))


def _pick_sheet(names: list[str], sheet: str | int | None, name: str) -> str:
    if sheet is None:
        return names[0]
    if isinstance(sheet, int) and not isinstance(sheet, bool):
        if 0 <= sheet < len(names):
            return names[sheet]
    elif str(sheet) in names:
        return str(sheet)
    else:
        matches = [n for n in names if normalize_key(n) == normalize_key(str(sheet))]
        if len(matches) == 1:
            return matches[0]
    raise UnreadableFileError(
        f"{name}: no sheet {sheet!r} — the workbook has sheets {names}; set `sheet:` to one of them"
    )


# --------------------------------------------------------------------------- parquet & sql


def _native_table(df: pd.DataFrame, name: str) -> RawTable:
    df = df.reset_index(drop=True)
    df.columns = _unique_names(_clean_header(df.columns))
    df["_row"] = np.arange(1, len(df) + 1, dtype=np.int64)
    return RawTable(df, empty_rejects(), name, len(df))


def _read_parquet(p: Path, name: str) -> RawTable:
    try:
        df = pd.read_parquet(p, engine="pyarrow")
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise UnreadableFileError(
            f"{name}: not a readable Parquet file ({type(exc).__name__}: {exc}) — export it again"
        ) from None
    return _native_table(df, name)


def _mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def _read_sql(url: str | None, query: str | None, base) -> RawTable:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    if not url:
        raise SourceConfigError("sql table without `url:` — give a SQLAlchemy database URL")
    masked = "sql:" + _mask_url(url)
    if not query or not str(query).strip():
        raise SourceConfigError(f"{masked}: sql table without `query:` — give the SELECT to run")
    try:
        u = make_url(url)
    except ArgumentError:
        raise UnreadableFileError(
            f"{masked}: not a valid database URL — use e.g. sqlite:///crm.db or "
            "postgresql://user:password@host/db"
        ) from None
    database = u.database or ""
    if u.drivername.startswith("sqlite") and database not in ("", ":memory:"):
        if database.startswith("file:"):
            pass  # a sqlite URI filename: left to sqlite
        else:
            db = resolve_path(database, base=base)
            if not db.is_file():
                where = Path(base) if base is not None else PROJECT_ROOT
                raise UnreadableFileError(
                    f"{masked}: database file {db} not found — check the url (relative sqlite "
                    f"paths are resolved against {where})"
                )
            u = u.set(database=str(db))
    display = "sql:" + u.render_as_string(hide_password=True)
    engine = None
    try:
        engine = create_engine(u)
        with engine.connect() as conn:
            df = pd.read_sql(text(query), conn)
    except NoSuchModuleError as exc:
        raise UnreadableFileError(
            f"{display}: no database driver for this URL ({exc}) — install the driver package"
        ) from None
    except (SQLAlchemyError, ImportError, pd.errors.DatabaseError) as exc:
        root = exc.__cause__ if isinstance(exc.__cause__, SQLAlchemyError) else exc
        message = str(getattr(root, "orig", None) or root).splitlines()[0]
        raise UnreadableFileError(
            f"{display}: query failed: {message} — check the query {str(query).strip()!r} "
            "and the url"
        ) from None
    finally:
        if engine is not None:
            engine.dispose()
    return _native_table(df, display)
