"""Turn raw text cells into typed values, one column at a time.

Every ``parse_*`` function takes a whole column (a :class:`pandas.Series`) and returns a
:class:`ParseResult`: the typed values on the same index, a boolean mask of the cells that
were filled in but could not be read, and a one-line note saying which reading was chosen
(decimal comma or point, day-first or month-first, ...). Decisions are taken per column from
the values themselves, so ``"1,234"`` in a column that also holds ``"12,5"`` reads 1.234 and
``"01/02/2024"`` in a column that also holds ``"31/01/2024"`` reads 1 February.

Inputs may be text (``str``/``object`` dtype, missing for empty cells) or already typed
(numeric or datetime dtype, as Parquet, SQL and Excel give): typed numbers pass through as
``float64``, typed datetimes as tz-naive ``datetime64[ns]`` at midnight.

The work is done on the *unique* values of a column and mapped back, so a column of a
million rows with a few thousand distinct values costs a few thousand parses.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._arrowtools import isin as _isin  # noqa: F401  (dataset and sources use it)

__all__ = [
    "ParseResult",
    "clean_text",
    "normalize_key",
    "detect_decimal",
    "parse_number",
    "parse_amount",
    "parse_percent",
    "detect_dayfirst",
    "parse_date",
]


@dataclass(frozen=True, eq=False)
class ParseResult:
    """The outcome of parsing one column.

    Attributes
    ----------
    values : Series
        Parsed values on the same index as the input (``float64`` or ``datetime64[ns]``).
    invalid : Series
        ``bool``; True where the input cell was filled in but could not be parsed.
    currency : Series or None
        Amounts only: the ISO currency code found in each cell (missing where none).
    note : str
        Human-readable decision, e.g. ``"day-first (from values like 31/01/2024)"``.
    """

    values: pd.Series
    invalid: pd.Series
    currency: pd.Series | None = None
    note: str = ""


# --------------------------------------------------------------------------- text helpers

_ZERO_WIDTH = "[\u200b\u200c\u200d\u2060\ufeff\u00ad]"
_ODD_SPACES = "[\u00a0\u202f\u2007\u2009]"


def _cell_text(x: object) -> str | None:
    """Plain text of one cell as a person would type it; ``None`` for a missing cell."""
    if x is None or x is pd.NA or x is pd.NaT:
        return None
    if isinstance(x, str):
        return x
    if isinstance(x, bool | np.bool_):
        return "TRUE" if x else "FALSE"
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        if math.isnan(x):
            return None
        if float(x).is_integer() and abs(x) < 1e15:
            return str(int(x))
        return repr(float(x))
    if isinstance(x, np.datetime64):
        if np.isnat(x):
            return None
        x = pd.Timestamp(x)
    if isinstance(x, _dt.datetime):
        if x.tzinfo is None and x.time() == _dt.time(0):
            return x.date().isoformat()
        return x.isoformat(sep=" ")
    if isinstance(x, _dt.date | _dt.time):
        return x.isoformat()
    if isinstance(x, _decimal.Decimal):
        return str(x)
    if isinstance(x, bytes):
        return x.decode("utf-8", errors="replace")
    return str(x)


def _clean_str_series(s: pd.Series) -> pd.Series:
    s = s.astype("str")
    s = s.str.replace(_ZERO_WIDTH, "", regex=True)
    s = s.str.replace(_ODD_SPACES, " ", regex=True)
    s = s.str.strip()
    return s.where(s != "")


def _factorize_clean(values: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Codes into the cleaned distinct texts of ``values`` (-1 for empty/missing)."""
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    if isinstance(uniq.dtype, pd.StringDtype):
        texts = pd.Series(uniq, dtype="str")
    else:
        texts = pd.Series([_cell_text(v) for v in uniq], dtype="str")
    cleaned = _clean_str_series(texts)
    codes2, uniq2 = pd.factorize(cleaned, use_na_sentinel=True)
    codes, codes2 = np.asarray(codes), np.asarray(codes2)
    final = np.full(len(codes), -1, dtype=np.intp)
    filled = codes >= 0
    final[filled] = codes2[codes[filled]]
    return final, pd.Series(uniq2, dtype="str")


def _counts(codes: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(codes[codes >= 0], minlength=n)


def _take(arr: np.ndarray | pd.api.extensions.ExtensionArray, codes: np.ndarray, fill):
    """Map per-unique results back to rows; ``fill`` where the code is -1."""
    if isinstance(arr, np.ndarray):
        if len(arr) == 0:
            return np.full(len(codes), fill, dtype=arr.dtype)
        out = arr[np.where(codes >= 0, codes, 0)]
        out[codes < 0] = fill
        return out
    return arr.take(codes, allow_fill=True)


def clean_text(values: pd.Series) -> pd.Series:
    """Strip a text column and turn empty cells into missing values.

    Non-breaking and narrow spaces become plain spaces, zero-width characters and BOMs are
    dropped, surrounding whitespace is stripped, and ``""`` becomes missing.

    Parameters
    ----------
    values : Series
        Text (or typed) cells; typed values are first written as plain text.

    Returns
    -------
    Series
        dtype ``str``, same index and name as ``values``.

    Examples
    --------
    >>> clean_text(pd.Series([" a\\u00a0b ", "", None])).tolist()
    ['a b', nan, nan]
    """
    if _is_arrow_text(values) and _already_clean(values):
        return pd.Series(values.array, index=values.index, name=values.name, dtype="str")
    codes, uniq = _factorize_clean(values)
    arr = pd.array(uniq, dtype="str")
    out = _take(arr, codes, None)
    return pd.Series(out, index=values.index, name=values.name, dtype="str")


def _is_arrow_text(values: pd.Series | pd.Index) -> bool:
    """True for the pandas ``str`` dtype backed by pyarrow."""
    dtype = values.dtype
    return (
        isinstance(dtype, pd.StringDtype)
        and dtype.storage == "pyarrow"
        and dtype.na_value is np.nan
    )


#: Characters :func:`clean_text` drops or replaces (RE2 syntax for pyarrow).
_UNCLEAN_CHARS = _ZERO_WIDTH[:-1] + _ODD_SPACES[1:]


def _ascii_stripped() -> np.ndarray:
    """Which byte values ``utf8_trim_whitespace`` (``Series.str.strip``) strips, < 128."""
    probe = pa.array([f"{chr(b)}x{chr(b)}" for b in range(128)], type=pa.large_string())
    kept = np.asarray(pc.binary_length(pc.utf8_trim_whitespace(probe)))
    table = np.zeros(256, dtype=bool)
    table[:128] = kept != 3
    return table


_STRIPPED = _ascii_stripped()


def _ascii_clean(arr: pa.Array | pa.ChunkedArray) -> bool | None:
    """:func:`_already_clean` for plain-ASCII text, read off the arrow buffers: no empty
    cell, no strippable first or last character. ``None`` when a cell is not ASCII."""
    for chunk in arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]:
        if len(chunk) == 0:
            continue
        _, offsets_buf, data_buf = chunk.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int64)
        offsets = offsets[chunk.offset : chunk.offset + len(chunk) + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else None
        if data is None or offsets[-1] == offsets[0]:
            data = np.zeros(1, dtype=np.uint8)
        elif data[offsets[0] : offsets[-1]].max() >= 0x80:
            return None
        first, last = offsets[:-1], offsets[1:] - 1
        filled = first <= last
        if not filled.all():
            valid = np.asarray(chunk.is_valid()) if chunk.null_count else True
            if (valid & ~filled).any():
                return False  # an empty cell
            first, last = first[filled], last[filled]
        if _STRIPPED[data[first]].any() or _STRIPPED[data[last]].any():
            return False
    return True


def _already_clean(values: pd.Series) -> bool:
    """True when :func:`clean_text` would change nothing in an arrow text column: no
    empty cell, no zero-width or odd space, nothing to strip (one vectorised pass instead
    of hashing every distinct value)."""
    arr = pa.array(values.array)
    ascii_clean = _ascii_clean(arr)
    if ascii_clean is not None:
        return ascii_clean
    # some text is not ASCII: the general (slower) checks
    lengths = pc.binary_length(arr)
    if pc.any(pc.equal(lengths, 0)).as_py():
        return False
    if pc.any(pc.match_substring_regex(arr, _UNCLEAN_CHARS)).as_py():
        return False
    # the same strip as ``Series.str.strip`` on this dtype; it only ever shortens
    trimmed = pc.binary_length(pc.utf8_trim_whitespace(arr))
    return pc.all(pc.equal(trimmed, lengths)).as_py() is not False


def _has_duplicates(values: pd.Series, *, missing: bool = True) -> bool:
    """True when a value repeats (``missing=False``: a filled-in value repeats).

    Ids usually come sorted: a column that strictly increases has no repeat, found in one
    pass instead of hashing every value.
    """
    if _is_arrow_text(values) and len(values) > 1:
        arr = pa.array(values.array)
        if arr.null_count == 0 and pc.all(pc.greater(arr[1:], arr[:-1])).as_py():
            return False
    if missing:
        return bool(values.duplicated().any())
    return bool((values.duplicated() & values.notna()).any())


def normalize_key(value: str) -> str:
    """Casefold ``value`` and collapse its whitespace, for case-insensitive matching.

    Parameters
    ----------
    value : str
        A label such as a stage or a header.

    Returns
    -------
    str
        The matching key.

    Examples
    --------
    >>> normalize_key("  Closed   WON ")
    'closed won'
    """
    text = re.sub(_ZERO_WIDTH, "", str(value))
    return " ".join(text.casefold().split())


def _is_typed_number(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
        values.dtype
    )


def _n(count: int) -> str:
    return f"{count} value" if count == 1 else f"{count} values"


def _check_decimal(decimal: object) -> None:
    if not isinstance(decimal, str) or decimal not in ("auto", ".", ","):
        raise ValueError(f'decimal must be "auto", "." or ",", got {decimal!r}')


def _check_dayfirst(dayfirst: object) -> bool | str:
    if isinstance(dayfirst, bool | np.bool_):
        return bool(dayfirst)
    if dayfirst == "auto":
        return "auto"
    raise ValueError(f'dayfirst must be "auto", True or False, got {dayfirst!r}')


# --------------------------------------------------------------------------- numbers

_CURRENCY_SYMBOLS = {"US$": "USD", "$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_SYM = "|".join(re.escape(s) for s in sorted(_CURRENCY_SYMBOLS, key=len, reverse=True))
_CUR_PREFIX = re.compile(rf"^(?:(?P<code>[A-Z]{{3}})(?![A-Za-z])|(?P<sym>{_SYM}))\s*(?P<rest>.*)$")
_CUR_SUFFIX = re.compile(
    rf"^(?P<rest>.*?)\s*(?:(?<![A-Za-z])(?P<code>[A-Z]{{3}})|(?P<sym>{_SYM}))$"
)
_MINUS = "-\u2212\u2013"


def _core_pattern(dec: str) -> re.Pattern:
    thousands = "," if dec == "." else "."
    d = re.escape(dec)
    seps = f"[{re.escape(thousands)} '\u2019]"
    grouped = rf"\d{{1,3}}(?P<s>{seps})\d{{3}}(?:(?P=s)\d{{3}})*"
    exponent = r"(?:[eE][+-]?\d+)?" if dec == "." else ""
    return re.compile(rf"^(?:(?:{grouped}|\d+)(?:{d}\d*)?|{d}\d+){exponent}$")


_CORE = {".": _core_pattern("."), ",": _core_pattern(",")}


def _fast_pattern(dec: str, allow_currency: bool) -> str:
    """A regex (no back-references, so pyarrow runs it) for the common simple shapes."""
    thousands, d = (",", r"\.") if dec == "." else (r"\.", ",")
    grouped = rf"[0-9]{{1,3}}(?:{thousands}[0-9]{{3}})+|[0-9]{{1,3}}(?: [0-9]{{3}})+"
    num = rf"(?:{grouped}|[0-9]+)(?:{d}[0-9]+)?"
    if not allow_currency:
        return rf"[+-]?{num}"
    cur = r"(?:[A-Z]{3}|US\$|[$€£¥])"
    return rf"[+-]?(?:{cur} *{num}|{num} *{cur}|{num})"


def _number_from_text(text: str, dec: str, allow_currency: bool) -> tuple[float, str | None]:
    """Read one cleaned cell; NaN when it is not a number."""
    t = text
    sign = None
    paren = False
    currency = None
    while t:
        if len(t) >= 2 and t[0] == "(" and t[-1] == ")" and not paren:
            paren, t = True, t[1:-1].strip()
        elif t[0] in _MINUS + "+" and sign is None:
            sign, t = t[0], t[1:].lstrip()
        elif t[-1] in _MINUS and sign is None and len(t) > 1:
            sign, t = "-", t[:-1].rstrip()
        elif (
            allow_currency
            and currency is None
            and (m := _CUR_PREFIX.match(t) or _CUR_SUFFIX.match(t))
        ):
            currency = m["code"] or _CURRENCY_SYMBOLS[m["sym"]]
            t = m["rest"].strip()
        else:
            break
    if not t or not _CORE[dec].match(t):
        return math.nan, currency
    drop = "," if dec == "." else "."
    plain = t.replace(drop, "").replace(" ", "").replace("'", "").replace("\u2019", "")
    value = float(plain.replace(",", "."))
    if not math.isfinite(value):
        return math.nan, currency
    if paren or (sign is not None and sign != "+"):
        value = -value
    return value, currency


def _decimal_votes(uniq: pd.Series, counts: np.ndarray) -> dict[str, tuple[int, str | None]]:
    """Rows voting for a decimal point / comma, with an example value for each."""
    votes: dict[str, tuple[int, str | None]] = {".": (0, None), ",": (0, None)}
    if len(uniq) == 0:
        return votes
    core = uniq.str.replace(r"[^0-9.,]", "", regex=True)

    def full(pattern: str) -> np.ndarray:
        return core.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)

    has_digit = core.str.contains(r"[0-9]").fillna(False).to_numpy(dtype=bool)
    comma = (
        full(r"[0-9.]*\.[0-9.]*,[0-9]*")  # "1.234,56": the last mark is a comma
        | full(r"[0-9]*(?:\.[0-9]*){2,}")  # "1.234.567": repeated dots are thousands
        | (full(r"[0-9]*,[0-9]*") & ~full(r"[1-9][0-9]{0,2},[0-9]{3}"))  # "12,5" but not "1,234"
    )
    dot = (
        full(r"[0-9,]*,[0-9,]*\.[0-9]*")
        | full(r"[0-9]*(?:,[0-9]*){2,}")
        | (full(r"[0-9]*\.[0-9]*") & ~full(r"[1-9][0-9]{0,2}\.[0-9]{3}"))
    )
    vote = np.full(len(core), "", dtype=object)
    vote[has_digit & comma] = ","
    vote[has_digit & dot] = "."
    for mark in (".", ","):
        hit = vote == mark
        if hit.any():
            votes[mark] = (int(counts[hit].sum()), str(uniq.iloc[int(np.argmax(hit))]))
    return votes


def detect_decimal(values: pd.Series) -> str | None:
    """Decide the decimal mark of a column of numbers written as text.

    A value with both ``.`` and ``,`` is decided by the last one; a mark repeated in one
    value is a thousands separator; a single mark followed by exactly three digits after
    one to three digits (``"1,234"``) cannot tell; any other single mark is the decimal
    mark (``"12,5"``, ``"0,750"``). When values disagree the majority wins.

    Parameters
    ----------
    values : Series
        Text cells (typed numeric columns cannot tell: ``None``).

    Returns
    -------
    str or None
        ``"."``, ``","``, or ``None`` when the column alone cannot tell.

    Examples
    --------
    >>> detect_decimal(pd.Series(["1.234", "12,5"]))
    ','
    >>> detect_decimal(pd.Series(["1,234"])) is None
    True
    """
    if _is_typed_number(values) or pd.api.types.is_datetime64_any_dtype(values.dtype):
        return None
    codes, uniq = _factorize_clean(values)
    votes = _decimal_votes(uniq, _counts(codes, len(uniq)))
    dot, comma = votes["."][0], votes[","][0]
    if dot == comma:
        return None
    return "." if dot > comma else ","


def _resolve_decimal(uniq: pd.Series, counts: np.ndarray, decimal: str) -> tuple[str, str]:
    """The decimal mark to use and the note explaining it."""
    if decimal != "auto":
        name = "decimal comma" if decimal == "," else "decimal point"
        return decimal, f"{name} (as requested)"
    votes = _decimal_votes(uniq, counts)
    (dot, dot_ex), (comma, comma_ex) = votes["."], votes[","]
    if dot and comma:
        dec = "." if dot >= comma else ","
        name = "decimal point" if dec == "." else "decimal comma"
        minority = min(dot, comma)
        return dec, (
            f"mixed decimal marks ({_n(dot)} like {dot_ex}, {comma} like {comma_ex}): "
            f"read with a {name}; up to {_n(minority)} that contradict it marked invalid"
        )
    if comma:
        return ",", f"decimal comma (from values like {comma_ex})"
    if dot:
        return ".", f"decimal point (from values like {dot_ex})"
    has_ambiguous = bool(uniq.str.contains(r"[0-9],[0-9]{3}(?:[^0-9]|$)", regex=True).any())
    if has_ambiguous:
        return (
            ".",
            "decimal point assumed: no value decides it (values like 1,234 read as thousands)",
        )
    return ".", ""


def _parse_numeric_uniques(
    uniq: pd.Series, dec: str, allow_currency: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Float value (NaN when unreadable) and currency code (None) of each distinct text."""
    n = len(uniq)
    out = np.full(n, np.nan)
    cur = np.full(n, None, dtype=object)
    if n == 0:
        return out, cur
    fast = uniq.str.fullmatch(_fast_pattern(dec, allow_currency)).fillna(False)
    fast = fast.to_numpy(dtype=bool)
    if fast.any():
        txt = uniq[fast]
        digits = txt.str.replace(r"[^0-9" + re.escape(dec) + "]", "", regex=True)
        if dec == ",":
            digits = digits.str.replace(",", ".", regex=False)
        num = pd.to_numeric(digits, errors="coerce").to_numpy(dtype=float)
        negative = txt.str.startswith("-").to_numpy(dtype=bool)
        out[fast] = np.where(negative, -num, num)
        if allow_currency:
            marks = txt.str.replace(r"[^A-Z$€£¥]", "", regex=True)
            marks = marks.where(marks != "").replace(_CURRENCY_SYMBOLS)
            cur[fast] = marks.to_numpy(dtype=object, na_value=None)
    texts = uniq.tolist()
    for i in np.flatnonzero(~fast):
        out[i], cur[i] = _number_from_text(texts[i], dec, allow_currency)
    out[~np.isfinite(out)] = np.nan
    cur[np.isnan(out)] = None
    return out, cur


def _numeric_passthrough(values: pd.Series, note: str) -> ParseResult:
    out = pd.Series(
        values.to_numpy(dtype=float, na_value=np.nan), index=values.index, name=values.name
    )
    invalid = pd.Series(~np.isfinite(out.to_numpy()) & out.notna().to_numpy(), index=values.index)
    out = out.where(~invalid.to_numpy())
    return ParseResult(out.astype("float64"), invalid.rename(values.name), None, note)


def _mixed_object_numbers(values: pd.Series) -> np.ndarray | None:
    """In an object column, the positions holding real numbers (not text), else None."""
    if values.dtype != object:
        return None
    is_num = np.fromiter(
        (
            isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool)
            for v in values.to_numpy()
        ),
        dtype=bool,
        count=len(values),
    )
    return is_num if is_num.any() else None


def _parse_numeric(values: pd.Series, decimal: str, allow_currency: bool) -> ParseResult:
    _check_decimal(decimal)
    if _is_typed_number(values):
        res = _numeric_passthrough(values, "already numeric")
        if allow_currency:
            cur = pd.Series(pd.NA, index=values.index, name=values.name, dtype="str")
            return ParseResult(res.values, res.invalid, cur, res.note)
        return res
    typed = _mixed_object_numbers(values)
    text_values = values.where(~typed) if typed is not None else values
    codes, uniq = _factorize_clean(text_values)
    dec, note = _resolve_decimal(uniq, _counts(codes, len(uniq)), decimal)
    vals_u, cur_u = _parse_numeric_uniques(uniq, dec, allow_currency)
    vals = _take(vals_u, codes, np.nan)
    invalid = (codes >= 0) & np.isnan(vals)
    if typed is not None:
        nums = values.to_numpy()[typed].astype(float)
        vals[typed] = np.where(np.isfinite(nums), nums, np.nan)
        invalid[typed] = ~np.isfinite(nums)
    result = pd.Series(vals, index=values.index, name=values.name, dtype="float64")
    mask = pd.Series(invalid, index=values.index, name=values.name, dtype=bool)
    currency = None
    if allow_currency:
        if typed is None:  # per distinct text, then taken as text (no Python objects)
            cur = pd.array(cur_u, dtype="str").take(codes, allow_fill=True)
        else:
            cur = _take(cur_u, codes, None)
            cur[typed] = None
        currency = pd.Series(cur, index=values.index, name=values.name, dtype="str")
    return ParseResult(result, mask, currency, note)


def parse_number(values: pd.Series, *, decimal: str = "auto") -> ParseResult:
    """Parse a column of plain numbers.

    Accepts ``"1234.5"``, ``"1,234.56"``, ``"1.234,56"``, ``"1 234,56"`` (space, NBSP or
    narrow NBSP as thousands separator), ``"(1,200.00)"`` (negative), ``"-5"``, ``"12,5"``.
    Currency marks are not accepted here (see :func:`parse_amount`).

    Parameters
    ----------
    values : Series
        Text cells, or a numeric column (passed through as ``float64``).
    decimal : {"auto", ".", ","}, keyword-only
        The decimal mark; ``"auto"`` decides per column with :func:`detect_decimal` and, when
        the column cannot tell, reads ``","`` followed by exactly three digits as thousands.

    Returns
    -------
    ParseResult
        ``values`` as ``float64``; ``invalid`` True for filled-in cells that are not numbers.

    Raises
    ------
    ValueError
        When ``decimal`` is not one of the allowed options.

    Examples
    --------
    >>> parse_number(pd.Series(["1.234,56", "12,5", "n/a", None])).values.tolist()
    [1234.56, 12.5, nan, nan]
    """
    return _parse_numeric(values, decimal, allow_currency=False)


def parse_amount(values: pd.Series, *, decimal: str = "auto") -> ParseResult:
    """Parse a column of money amounts, keeping the currency written in each cell.

    Like :func:`parse_number`, plus a three-letter code before or after the number
    (``"USD 485,000.00"``, ``"1 234,56 EUR"``) or a symbol (``$`` USD, ``€`` EUR, ``£`` GBP,
    ``¥`` JPY): ``"€ 99,90"``, ``"$1,200"``, ``"1 234,56 €"``.

    Parameters
    ----------
    values : Series
        Text cells, or a numeric column (passed through as ``float64``).
    decimal : {"auto", ".", ","}, keyword-only
        The decimal mark, as in :func:`parse_number`.

    Returns
    -------
    ParseResult
        ``values`` as ``float64`` and ``currency`` (dtype ``str``; missing where no code).

    Raises
    ------
    ValueError
        When ``decimal`` is not one of the allowed options.

    Examples
    --------
    >>> r = parse_amount(pd.Series(["USD 485,000.00", "$1,200"]))
    >>> r.values.tolist(), r.currency.tolist()
    ([485000.0, 1200.0], ['USD', 'USD'])
    >>> parse_amount(pd.Series(["1 234,56 €"])).values.tolist()
    [1234.56]
    """
    return _parse_numeric(values, decimal, allow_currency=True)


def parse_percent(values: pd.Series, *, decimal: str = "auto") -> ParseResult:
    """Parse a column of probabilities into [0, 1].

    ``"40%"``, ``"40"`` and ``"0.4"`` all read 0.4: values with a ``%`` sign are divided by
    100; the others are on the 0-100 scale when any of them is above 1 (decided per column,
    typed numeric columns included), else on the 0-1 scale. Values outside [0, 1] after
    scaling are invalid.

    Parameters
    ----------
    values : Series
        Text cells (``"40,5 %"`` with a decimal comma works) or a numeric column.
    decimal : {"auto", ".", ","}, keyword-only
        The decimal mark, as in :func:`parse_number`.

    Returns
    -------
    ParseResult
        ``values`` as ``float64`` in [0, 1].

    Raises
    ------
    ValueError
        When ``decimal`` is not one of the allowed options.

    Examples
    --------
    >>> parse_percent(pd.Series(["40%", "40", "75"])).values.tolist()
    [0.4, 0.4, 0.75]
    """
    _check_decimal(decimal)
    if _is_typed_number(values):
        base = _numeric_passthrough(values, "")
        pct = np.zeros(len(values), dtype=bool)
    else:
        codes, uniq = _factorize_clean(values)
        pct_u = uniq.str.endswith("%").to_numpy(dtype=bool)
        stripped = uniq.str.replace(r" *%$", "", regex=True)
        dec, note = _resolve_decimal(stripped, _counts(codes, len(uniq)), decimal)
        vals_u, _ = _parse_numeric_uniques(stripped, dec, allow_currency=False)
        vals = _take(vals_u, codes, np.nan)
        pct = _take(pct_u, codes, False)
        base = ParseResult(
            pd.Series(vals, index=values.index, name=values.name),
            pd.Series((codes >= 0) & np.isnan(vals), index=values.index, name=values.name),
            None,
            note,
        )
    vals = base.values.to_numpy(dtype=float, copy=True)
    invalid = base.invalid.to_numpy(dtype=bool, copy=True)
    plain = ~pct & ~np.isnan(vals)
    hundred = bool((vals[plain] > 1).any())
    vals[pct] = vals[pct] / 100
    if hundred:
        vals[plain] = vals[plain] / 100
    out_of_range = ~np.isnan(vals) & ((vals < 0) | (vals > 1))
    vals[out_of_range] = np.nan
    invalid |= out_of_range
    notes = [base.note] if base.note else []
    if hundred:
        notes.append("0-100 scale (a value without % is above 1)")
    elif plain.any():
        notes.append("0-1 scale (no value without % is above 1)")
    if pct.any():
        notes.append("values with % divided by 100")
    return ParseResult(
        pd.Series(vals, index=values.index, name=values.name, dtype="float64"),
        pd.Series(invalid, index=values.index, name=values.name, dtype=bool),
        None,
        "; ".join(notes),
    )


# --------------------------------------------------------------------------- dates

_TIME = r"(?:[ T]+[0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?(?: *[AaPp]\.?[Mm]\.?)?)?"
_WEEKDAY = r"(?i)^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,? +"
_RE_ISO = (
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[T ][0-9]{1,2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?)?"
    r" *(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)
_RE_YMD = rf"(?P<y>[0-9]{{4}})[/.](?P<m>[0-9]{{1,2}})[/.](?P<d>[0-9]{{1,2}}){_TIME}"
_RE_NUMERIC = (
    rf"(?P<a>[0-9]{{1,2}})(?P<s1>[/.-])(?P<b>[0-9]{{1,2}})(?P<s2>[/.-])"
    rf"(?P<y>[0-9]{{4}}|[0-9]{{2}}){_TIME}"
)
_RE_DAY_MON = (
    rf"(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?[ ./-]*(?P<mon>[A-Za-z]{{3,9}})\.?[ ./,-]*"
    rf"(?P<y>[0-9]{{4}}|[0-9]{{2}}){_TIME}"
)
_RE_MON_DAY = (
    rf"(?P<mon>[A-Za-z]{{3,9}})\.?[ ./-]*(?P<d>[0-9]{{1,2}})(?:st|nd|rd|th)?,?[ ./-]+"
    rf"(?P<y>[0-9]{{4}}|[0-9]{{2}}){_TIME}"
)
_RE_MON_YEAR = r"(?P<mon>[A-Za-z]{3,9})\.?[ ./-]*(?P<y>[0-9]{4})"
_RE_YEAR_MONTH = r"(?P<y>[0-9]{4})[-/.](?P<m>[0-9]{1,2})"
_RE_MONTH_YEAR = r"(?P<m>[0-9]{1,2})[-/.](?P<y>[0-9]{4})"
_RE_QUARTER = r"(?:(?P<y1>[0-9]{4}) *-? *[Qq](?P<q1>[1-4])|[Qq](?P<q2>[1-4]) *-? *(?P<y2>[0-9]{4}))"
_RE_SERIAL = r"[0-9]+(?:\.[0-9]+)?"
_RE_YYYYMMDD = r"(?P<y>(?:19|20|21)[0-9]{2})(?P<m>[0-9]{2})(?P<d>[0-9]{2})"

_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_SERIAL_MIN, _SERIAL_MAX = 20000, 80000
_EXCEL_EPOCH = pd.Timestamp("1899-12-30")
_MIN_YEAR, _MAX_YEAR = 1678, 2261  # datetime64[ns] range


def _month_number(token: str) -> float:
    t = token.lower()
    for i, name in enumerate(_MONTHS, start=1):
        if t[:3] == name[:3] and (name.startswith(t) or t == "sept"):
            return float(i)
    return math.nan


def _year4(y: pd.Series) -> np.ndarray:
    """Four-digit years; two-digit ones pivot like ``%y`` (69-99 -> 19xx, 00-68 -> 20xx)."""
    digits = y.str.len().to_numpy()
    num = pd.to_numeric(y).to_numpy(dtype=float)
    two = digits == 2
    num[two] = np.where(num[two] >= 69, 1900 + num[two], 2000 + num[two])
    return num


def _from_parts(year, month, day) -> np.ndarray:
    """``datetime64[ns]`` from float arrays of parts; NaT where the parts are not a date."""
    year, month, day = (np.asarray(a, dtype=float) for a in (year, month, day))
    ok = (
        ~np.isnan(year)
        & ~np.isnan(month)
        & ~np.isnan(day)
        & (year >= _MIN_YEAR)
        & (year <= _MAX_YEAR)
    )
    out = np.full(len(year), np.datetime64("NaT"), dtype="datetime64[ns]")
    if ok.any():
        parts = pd.DataFrame({"year": year[ok], "month": month[ok], "day": day[ok]})
        out[ok] = pd.to_datetime(parts, errors="coerce").to_numpy(dtype="datetime64[ns]")
    return out


def _to_naive_ns(stamps: pd.Series) -> np.ndarray:
    """tz-naive (UTC) ``datetime64[ns]`` at midnight; out-of-range stamps become NaT."""
    s = pd.Series(stamps)
    if getattr(s.dtype, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    years = s.dt.year
    s = s.where((years >= _MIN_YEAR) & (years <= _MAX_YEAR))
    return s.dt.normalize().to_numpy(dtype="datetime64[ns]")


def _dmy_parts(uniq: pd.Series) -> pd.DataFrame:
    """For numeric day/month/year texts: the two leading fields ``a``, ``b`` and year."""
    parts = uniq.str.extract(rf"^{_RE_NUMERIC}$")
    return parts.where(parts["s1"] == parts["s2"])


def _dayfirst_votes(uniq: pd.Series, counts: np.ndarray) -> tuple[int, int, str | None, str | None]:
    parts = _dmy_parts(uniq)
    a = pd.to_numeric(parts["a"]).to_numpy(dtype=float)
    b = pd.to_numeric(parts["b"]).to_numpy(dtype=float)
    day_first = (a > 12) & (b <= 12)
    month_first = (b > 12) & (a <= 12)
    ex_df = str(uniq.iloc[int(np.argmax(day_first))]) if day_first.any() else None
    ex_mf = str(uniq.iloc[int(np.argmax(month_first))]) if month_first.any() else None
    return int(counts[day_first].sum()), int(counts[month_first].sum()), ex_df, ex_mf


def _strip_weekday(uniq: pd.Series) -> pd.Series:
    return uniq.str.replace(_WEEKDAY, "", regex=True)


def detect_dayfirst(values: pd.Series) -> bool | None:
    """Tell from the values whether numeric dates are written day-first.

    Only dates written with numbers in the order ``a/b/year`` count: a value with ``a > 12``
    says day-first, one with ``b > 12`` says month-first.

    Parameters
    ----------
    values : Series
        Text cells (typed date or number columns cannot tell: ``None``).

    Returns
    -------
    bool or None
        True or False when the values decide it; ``None`` when no value decides it (all
        fields <= 12, or no such dates) and also when values contradict each other (a mixed
        column: :func:`parse_date` then reads the majority order and marks the others
        invalid).

    Examples
    --------
    >>> detect_dayfirst(pd.Series(["31/01/2024", "01/02/2024"]))
    True
    >>> detect_dayfirst(pd.Series(["01/02/2024"])) is None
    True
    """
    if values.dtype != object and not isinstance(values.dtype, pd.StringDtype):
        return None
    codes, uniq = _factorize_clean(values)
    uniq = _strip_weekday(uniq)
    n_df, n_mf, _, _ = _dayfirst_votes(uniq, _counts(codes, len(uniq)))
    if n_df and not n_mf:
        return True
    if n_mf and not n_df:
        return False
    return None


def _resolve_dayfirst(uniq: pd.Series, counts: np.ndarray, dayfirst) -> tuple[bool, str]:
    if dayfirst == "auto":
        n_df, n_mf, ex_df, ex_mf = _dayfirst_votes(uniq, counts)
        if n_df and n_mf:
            first = n_df > n_mf
            order = "day-first" if first else "month-first"
            return first, (
                f"mixed day order ({_n(n_df)} like {ex_df}, {n_mf} like {ex_mf}): "
                f"read {order}; the {_n(min(n_df, n_mf))} that contradict it marked invalid"
            )
        if n_df:
            return True, f"day-first (from values like {ex_df})"
        if n_mf:
            return False, f"month-first (from values like {ex_mf})"
        has_numeric = bool(_dmy_parts(uniq)["a"].notna().any())
        if has_numeric:
            return (
                False,
                "month-first assumed: no value has a day above 12 (pass dayfirst=True if not)",
            )
        return False, ""
    return bool(dayfirst), ("day-first" if dayfirst else "month-first") + " (as requested)"


def _parse_date_uniques(uniq: pd.Series, counts: np.ndarray, dayfirst) -> tuple[np.ndarray, str]:
    """Dates (NaT when unreadable) of each distinct cleaned text, and the note."""
    n = len(uniq)
    out = np.full(n, np.datetime64("NaT"), dtype="datetime64[ns]")
    if n == 0:
        return out, ""
    uniq = _strip_weekday(uniq)
    todo = np.ones(n, dtype=bool)
    notes: list[str] = []

    def take(pattern: str) -> tuple[np.ndarray, pd.DataFrame | None]:
        hit = todo & uniq.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)
        if not hit.any():
            return hit, None
        todo[hit] = False
        sub = uniq[hit]
        if re.search(r"\(\?P<", pattern):
            return hit, sub.str.extract(rf"^{pattern}$")
        return hit, pd.DataFrame({"text": sub})

    serial = uniq.str.fullmatch(_RE_SERIAL).fillna(False).to_numpy(dtype=bool)
    if serial.all():
        days = pd.to_numeric(uniq).to_numpy(dtype=float)
        in_range = (days >= _SERIAL_MIN) & (days <= _SERIAL_MAX)
        if in_range.all():
            out[:] = (_EXCEL_EPOCH + pd.to_timedelta(np.floor(days), unit="D")).to_numpy(
                dtype="datetime64[ns]"
            )
            return out, "Excel serial day numbers (e.g. 45291 is 2023-12-31)"

    hit, _ = take(_RE_ISO)
    if hit.any():
        stamps = pd.to_datetime(uniq[hit], format="ISO8601", utc=True, errors="coerce")
        out[hit] = _to_naive_ns(stamps)
        if uniq[hit].str.contains(r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)$", regex=True).any():
            notes.append("ISO dates (times with an offset converted to UTC)")
        else:
            notes.append("ISO dates")

    hit, parts = take(_RE_YMD)
    if parts is not None:
        out[hit] = _from_parts(
            _year4(parts["y"]), pd.to_numeric(parts["m"]), pd.to_numeric(parts["d"])
        )

    numeric_parts = _dmy_parts(uniq)
    numeric = numeric_parts["a"].notna().to_numpy(dtype=bool) & todo
    if numeric.any():
        first, note = _resolve_dayfirst(uniq[numeric], counts[numeric], dayfirst)
        if note:
            notes.append(note)
        hit, parts = numeric, numeric_parts[numeric]
        todo[hit] = False
        a, b = pd.to_numeric(parts["a"]), pd.to_numeric(parts["b"])
        day, month = (a, b) if first else (b, a)
        out[hit] = _from_parts(_year4(parts["y"]), month, day)

    for pattern in (_RE_DAY_MON, _RE_MON_DAY, _RE_MON_YEAR):
        hit, parts = take(pattern)
        if parts is None:
            continue
        tokens = parts["mon"].unique()
        month = parts["mon"].map({t: _month_number(t) for t in tokens}).astype(float)
        day = pd.to_numeric(parts["d"]) if "d" in parts else np.ones(len(parts))
        out[hit] = _from_parts(_year4(parts["y"]), month, day)

    for pattern in (_RE_YEAR_MONTH, _RE_MONTH_YEAR):
        hit, parts = take(pattern)
        if parts is not None:
            out[hit] = _from_parts(
                _year4(parts["y"]), pd.to_numeric(parts["m"]), np.ones(len(parts))
            )

    hit, parts = take(_RE_QUARTER)
    if parts is not None:
        year = parts["y1"].fillna(parts["y2"])
        quarter = pd.to_numeric(parts["q1"].fillna(parts["q2"]))
        out[hit] = _from_parts(_year4(year), (quarter - 1) * 3 + 1, np.ones(len(parts)))

    hit, parts = take(_RE_YYYYMMDD)
    if parts is not None:
        out[hit] = _from_parts(
            _year4(parts["y"]), pd.to_numeric(parts["m"]), pd.to_numeric(parts["d"])
        )
    return out, "; ".join(notes)


_DAY_NS = 86_400 * 10**9
_FIRST_NS = pd.Timestamp(f"{_MIN_YEAR}-01-01").value
_AFTER_LAST_NS = pd.Timestamp(f"{_MAX_YEAR + 1}-01-01").value


def _midnights_in_range(values: pd.Series) -> bool:
    """True for tz-naive ``datetime64[ns]`` dates at midnight within the supported years:
    :func:`_to_naive_ns` would give them back unchanged."""
    if values.dtype != np.dtype("datetime64[ns]"):
        return False
    stamps = values.to_numpy().view(np.int64)
    if not len(stamps):
        return True
    if stamps.min() == np.iinfo(np.int64).min:  # NaT
        stamps = stamps[stamps != np.iinfo(np.int64).min]
        if not len(stamps):
            return True
    in_range = stamps.min() >= _FIRST_NS and stamps.max() < _AFTER_LAST_NS
    return bool(in_range and not (stamps % _DAY_NS).any())


def _datetime_passthrough(values: pd.Series) -> ParseResult:
    filled = values.notna().to_numpy()
    if _midnights_in_range(values):  # typed dates as Parquet gives them: nothing to do
        return ParseResult(
            values.copy(deep=False),
            pd.Series(np.zeros(len(values), dtype=bool), index=values.index, name=values.name),
            None,
            "already dates",
        )
    out = _to_naive_ns(values)
    invalid = filled & np.isnat(out)
    return ParseResult(
        pd.Series(out, index=values.index, name=values.name, dtype="datetime64[ns]"),
        pd.Series(invalid, index=values.index, name=values.name, dtype=bool),
        None,
        "already dates",
    )


def parse_date(values: pd.Series, *, dayfirst: bool | str = "auto") -> ParseResult:
    """Parse a column of dates into tz-naive ``datetime64[ns]`` at midnight.

    Reads ISO dates and date-times (``"2024-12-31"``, ``"2024-12-31 14:05:00"``,
    ``"2024-12-31T10:00:00Z"``; offsets are converted to UTC before the time is dropped),
    numeric dates ``31/12/2024``, ``12/31/2024``, ``31.12.2024``, ``31-12-2024``, ``31/12/24``
    (two-digit years pivot like ``%y``), month names (``"Dec 31, 2024"``, ``"31-Dec-2024"``,
    ``"31 December 2024"``, ``"Dec 2024"``), ``2024/12/31``, months ``2024-12`` / ``12/2024``,
    quarters ``2024-Q4`` (first day), ``20241231``, and Excel serial day numbers (``"45291"``)
    when the whole column is numbers between 20000 and 80000.

    Parameters
    ----------
    values : Series
        Text cells, a datetime column (tz-aware ones are converted to UTC), or a numeric
        column of Excel serial day numbers.
    dayfirst : {"auto", True, False}, keyword-only
        Order of numeric dates. ``"auto"`` decides from the column (see
        :func:`detect_dayfirst`); a mixed column is read in the majority order and the
        contradicting values are marked invalid; an undecided column is read month-first and
        the note says so. Callers that know the order from other columns of the same file
        pass a bool.

    Returns
    -------
    ParseResult
        ``values`` as ``datetime64[ns]``; ``invalid`` True for filled-in cells that are not
        dates (including impossible ones such as 31/02/2024).

    Raises
    ------
    ValueError
        When ``dayfirst`` is not ``"auto"``, True or False.

    Examples
    --------
    >>> parse_date(pd.Series(["31/01/2024", "01/02/2024"])).values.dt.strftime("%Y-%m-%d").tolist()
    ['2024-01-31', '2024-02-01']
    """
    dayfirst = _check_dayfirst(dayfirst)
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _datetime_passthrough(values)
    if _is_typed_number(values):
        days = values.to_numpy(dtype=float, na_value=np.nan)
        filled = ~np.isnan(days)
        ok = filled & (days >= _SERIAL_MIN) & (days <= _SERIAL_MAX)
        out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[ns]")
        out[ok] = (_EXCEL_EPOCH + pd.to_timedelta(np.floor(days[ok]), unit="D")).to_numpy(
            dtype="datetime64[ns]"
        )
        return ParseResult(
            pd.Series(out, index=values.index, name=values.name, dtype="datetime64[ns]"),
            pd.Series(filled & ~ok, index=values.index, name=values.name, dtype=bool),
            None,
            "Excel serial day numbers",
        )
    codes, uniq = _factorize_clean(values)
    out_u, note = _parse_date_uniques(uniq, _counts(codes, len(uniq)), dayfirst)
    out = _take(out_u, codes, np.datetime64("NaT"))
    invalid = (codes >= 0) & np.isnat(out)
    return ParseResult(
        pd.Series(out, index=values.index, name=values.name, dtype="datetime64[ns]"),
        pd.Series(invalid, index=values.index, name=values.name, dtype=bool),
        None,
        note,
    )
