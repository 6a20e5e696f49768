"""Column parsers: text cleaning, numbers, amounts, percentages, dates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandas.testing import assert_series_equal

from pipeline_lib import parsing
from pipeline_lib.parsing import (
    ParseResult,
    clean_text,
    detect_dayfirst,
    detect_decimal,
    normalize_key,
    parse_amount,
    parse_date,
    parse_number,
    parse_percent,
)

NAN = np.nan


def text(*values) -> pd.Series:
    return pd.Series(list(values), dtype="str")


def dates(*values) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values)), dtype="datetime64[ns]")


# --------------------------------------------------------------------------- text


def test_clean_text():
    raw = pd.Series(
        ["  Acme\u00a0Corp ", "\u200bZoë\u200d", "", "   ", None, "a\u202fb"],
        index=[5, 6, 7, 8, 9, 10],
    )
    got = clean_text(raw)
    expected = pd.Series(
        ["Acme Corp", "Zoë", None, None, None, "a b"], index=raw.index, dtype="str"
    )
    assert_series_equal(got, expected)
    assert raw.tolist()[0] == "  Acme\u00a0Corp "  # input untouched


def test_clean_text_of_typed_values():
    got = clean_text(pd.Series([1.0, 2.5, None, 7]))
    assert got.tolist()[:2] == ["1", "2.5"]
    assert got.isna().tolist() == [False, False, True, False]
    assert got.dtype == "str"


def test_normalize_key():
    assert normalize_key("  Closed   WON ") == "closed won"
    assert normalize_key("Proposal/Price\u00a0Quote") == "proposal/price quote"
    assert normalize_key("STRASSE") == normalize_key("straße")


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1,234.56", "1,234"], "."),
        (["1.234,56"], ","),
        (["12,5"], ","),
        (["0,750"], ","),  # a leading zero is never a thousands group
        (["1,234"], None),  # comma + exactly 3 digits alone cannot tell
        (["1.234"], None),
        (["1234.5"], "."),
        (["1,234,567"], "."),
        (["1.234.567"], ","),
        (["1 234,56 €", "EUR 1.200,00"], ","),
        (["100", "200"], None),
        (["1,234.56", "1,5", "2,5"], ","),  # the majority wins
    ],
)
def test_detect_decimal(values, expected):
    assert detect_decimal(text(*values)) == expected


def test_detect_decimal_of_a_typed_column_is_undecided():
    assert detect_decimal(pd.Series([1.5, 2.5])) is None


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1234.5", 1234.5),
        ("1,234.56", 1234.56),
        ("1.234,56", 1234.56),
        ("1 234,56", 1234.56),
        ("1\u00a0234,56", 1234.56),  # NBSP as thousands separator
        ("1\u202f234,56", 1234.56),  # narrow NBSP
        ("(1,200.00)", -1200.0),
        ("-5", -5.0),
        ("12,5", 12.5),
        ("0,75", 0.75),
        ("1,234", 1234.0),  # undecided column: comma + 3 digits is thousands
        ("  42  ", 42.0),
    ],
)
def test_parse_number_single_values(raw, value):
    result = parse_number(text(raw))
    assert result.values.tolist() == [value]
    assert result.invalid.tolist() == [False]


def test_parse_number_invalid_and_empty():
    raw = text("n/a", "abc", "=1+2", "", None, "1.2.3,4,5", "7")
    result = parse_number(raw)
    assert isinstance(result, ParseResult)
    expected = pd.Series([NAN] * 6 + [7.0])
    assert_series_equal(result.values, expected)
    assert result.invalid.tolist() == [True, True, True, False, False, True, False]
    assert result.currency is None
    assert result.values.dtype == "float64"


def test_parse_number_decides_per_column():
    # "1,234" alone is ambiguous; next to "12,5" the column uses a decimal comma
    result = parse_number(text("1,234", "12,5"))
    assert result.values.tolist() == [1.234, 12.5]
    assert "decimal comma" in result.note and "12,5" in result.note
    result = parse_number(text("1,234", "1,234.5"))
    assert result.values.tolist() == [1234.0, 1234.5]
    assert "decimal point" in result.note


def test_parse_number_explicit_decimal_marks_contradictions_invalid():
    result = parse_number(text("1.234", "12,5", "1,234.5"), decimal=",")
    assert_series_equal(result.values, pd.Series([1234.0, 12.5, NAN]))
    assert result.invalid.tolist() == [False, False, True]
    result = parse_number(text("1.234", "12,5"), decimal=".")
    assert result.invalid.tolist() == [False, True]
    with pytest.raises(ValueError, match="decimal"):
        parse_number(text("1"), decimal=";")


def test_parse_number_mixed_column_reads_the_majority():
    result = parse_number(text("1,5", "2,5", "1,234.56"))
    assert result.values.tolist()[:2] == [1.5, 2.5]
    assert result.invalid.tolist() == [False, False, True]
    assert "mixed decimal marks" in result.note


def test_parse_number_typed_pass_through():
    ints = pd.Series([1, 2, 3], index=[10, 11, 12], name="n")
    result = parse_number(ints)
    assert_series_equal(result.values, pd.Series([1.0, 2.0, 3.0], index=ints.index, name="n"))
    assert not result.invalid.any()
    nullable = parse_number(pd.Series([1, None], dtype="Int64"))
    assert nullable.values.tolist()[0] == 1.0 and np.isnan(nullable.values[1])
    assert nullable.invalid.tolist() == [False, False]
    mixed = parse_number(pd.Series(["1,5", 2.5, None, "x"], dtype=object))
    assert_series_equal(mixed.values, pd.Series([1.5, 2.5, NAN, NAN]))
    assert mixed.invalid.tolist() == [False, False, False, True]


def test_parsers_keep_the_index_and_do_not_mutate():
    raw = pd.Series(["1,5", None, "x"], index=["a", "b", "c"], dtype="str", name="amt")
    before = raw.copy()
    result = parse_amount(raw)
    assert result.values.index.tolist() == ["a", "b", "c"]
    assert result.invalid.index.tolist() == ["a", "b", "c"]
    assert result.currency.index.tolist() == ["a", "b", "c"]
    assert result.values.name == "amt"
    assert_series_equal(raw, before)


# --------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("raw", "value", "currency"),
    [
        ("USD 485,000.00", 485000.0, "USD"),
        ("1 234,56 €", 1234.56, "EUR"),
        ("1\u00a0234,56\u00a0€", 1234.56, "EUR"),
        ("$1,200", 1200.0, "USD"),
        ("€ 99,90", 99.9, "EUR"),
        ("EUR 1.200,00", 1200.0, "EUR"),
        ("£5", 5.0, "GBP"),
        ("¥100", 100.0, "JPY"),
        ("100 CHF", 100.0, "CHF"),
        ("-$1,200", -1200.0, "USD"),
        ("($1,200.00)", -1200.0, "USD"),
        ("1200", 1200.0, None),
    ],
)
def test_parse_amount_currencies(raw, value, currency):
    result = parse_amount(text(raw))
    assert result.values.tolist() == [value]
    assert result.invalid.tolist() == [False]
    if currency is None:
        assert result.currency.isna().all()
    else:
        assert result.currency.tolist() == [currency]


def test_parse_amount_column():
    result = parse_amount(text("USD 485,000.00", "$1,200", None, "abc", "USD"))
    assert_series_equal(result.values, pd.Series([485000.0, 1200.0, NAN, NAN, NAN]))
    assert result.invalid.tolist() == [False, False, False, True, True]
    assert result.currency.dtype == "str"
    assert result.currency.tolist()[:2] == ["USD", "USD"]
    assert result.currency.isna().tolist() == [False, False, True, True, True]


def test_parse_amount_typed_pass_through():
    result = parse_amount(pd.Series([10, 20.5]))
    assert result.values.tolist() == [10.0, 20.5]
    assert result.currency.isna().all()


def test_parse_number_does_not_accept_currency():
    assert parse_number(text("$5", "5")).invalid.tolist() == [True, False]


# --------------------------------------------------------------------------- percentages


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["40%", "40", "75"], [0.4, 0.4, 0.75]),  # a plain value above 1: 0-100 scale
        (["0.4", "0.25", "1"], [0.4, 0.25, 1.0]),  # none above 1: 0-1 scale
        (["40%", "0.4"], [0.4, 0.4]),
        (["40,5 %", "10 %"], [0.405, 0.1]),
        (["100%", "0%"], [1.0, 0.0]),
    ],
)
def test_parse_percent(values, expected):
    result = parse_percent(text(*values))
    assert result.values.tolist() == pytest.approx(expected)
    assert not result.invalid.any()


def test_parse_percent_out_of_range_and_junk():
    result = parse_percent(text("150%", "-5", "50", "high", None))
    assert_series_equal(result.values, pd.Series([NAN, NAN, 0.5, NAN, NAN]))
    assert result.invalid.tolist() == [True, True, False, True, False]
    assert "0-100" in result.note


def test_parse_percent_typed():
    assert parse_percent(pd.Series([40, 60])).values.tolist() == [0.4, 0.6]
    assert parse_percent(pd.Series([0.4, 0.6])).values.tolist() == [0.4, 0.6]


# --------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["31/01/2024", "01/02/2024"], True),
        (["12/31/2024", "01/02/2024"], False),
        (["01/02/2024", "03/04/2024"], None),  # every field <= 12
        (["31/01/2024", "12/31/2024"], None),  # contradicting values: a mixed column
        (["2024-12-31"], None),  # ISO never decides
        (["31.12.2024"], True),
    ],
)
def test_detect_dayfirst(values, expected):
    assert detect_dayfirst(text(*values)) is expected


def test_detect_dayfirst_of_typed_column():
    assert detect_dayfirst(dates("2024-01-31")) is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2024-12-31", "2024-12-31"),
        ("2024-12-31 14:05:00", "2024-12-31"),
        ("2024-12-31T10:00:00Z", "2024-12-31"),
        ("2024-12-31T23:30:00-05:00", "2025-01-01"),  # to UTC, then the date
        ("2025-01-01T01:00:00+02:00", "2024-12-31"),
        ("31/12/2024", "2024-12-31"),
        ("12/31/2024", "2024-12-31"),
        ("31.12.2024", "2024-12-31"),
        ("31-12-2024", "2024-12-31"),
        ("31/12/24", "2024-12-31"),
        ("31/12/99", "1999-12-31"),
        ("Dec 31, 2024", "2024-12-31"),
        ("31-Dec-2024", "2024-12-31"),
        ("31 December 2024", "2024-12-31"),
        ("December 31 2024 10:15 PM", "2024-12-31"),
        ("Tue, 31 Dec 2024", "2024-12-31"),
        ("2024/12/31", "2024-12-31"),
        ("45291", "2023-12-31"),  # Excel serial
        ("45291.75", "2023-12-31"),
        ("2024-Q2", "2024-04-01"),
        ("2024-07", "2024-07-01"),
    ],
)
def test_parse_date_formats(raw, expected):
    result = parse_date(text(raw))
    assert_series_equal(result.values, dates(expected))
    assert result.invalid.tolist() == [False]


def test_parse_date_invalid_and_empty():
    result = parse_date(text("31/02/2024", "soon", "2024-13-01", None, "", "29/02/2024"))
    assert_series_equal(result.values, dates(None, None, None, None, None, "2024-02-29"))
    assert result.invalid.tolist() == [True, True, True, False, False, False]


def test_parse_date_dayfirst_auto_and_explicit():
    raw = text("01/02/2024", "03/04/2024")
    auto = parse_date(raw)
    assert_series_equal(auto.values, dates("2024-01-02", "2024-03-04"))
    assert "month-first assumed" in auto.note
    day = parse_date(raw, dayfirst=True)
    assert_series_equal(day.values, dates("2024-02-01", "2024-04-03"))
    assert parse_date(text("31/01/2024", "01/02/2024")).note == (
        "day-first (from values like 31/01/2024)"
    )
    with pytest.raises(ValueError, match="dayfirst"):
        parse_date(raw, dayfirst="yes")


def test_parse_date_mixed_column_marks_the_minority_invalid():
    result = parse_date(text("31/01/2024", "28/02/2024", "01/03/2024", "12/31/2024"))
    assert_series_equal(result.values, dates("2024-01-31", "2024-02-28", "2024-03-01", None))
    assert result.invalid.tolist() == [False, False, False, True]
    assert "mixed day order" in result.note


def test_parse_date_excel_serials_only_for_an_all_numeric_column():
    assert_series_equal(
        parse_date(text("45291", "45292")).values, dates("2023-12-31", "2024-01-01")
    )
    mixed = parse_date(text("45291", "2024-01-05"))
    assert mixed.invalid.tolist() == [True, False]
    numbers = parse_date(pd.Series([45291, 45292.5, None, 5]))
    assert_series_equal(numbers.values, dates("2023-12-31", "2024-01-01", None, None))
    assert numbers.invalid.tolist() == [False, False, False, True]


def test_parse_date_typed_pass_through():
    aware = pd.Series(pd.to_datetime(["2024-12-31 23:30", None]).tz_localize("America/New_York"))
    result = parse_date(aware)
    assert_series_equal(result.values, dates("2025-01-01", None))
    assert result.invalid.tolist() == [False, False]
    naive = pd.Series(pd.to_datetime(["2024-05-06 13:00"]).astype("datetime64[us]"))
    assert_series_equal(parse_date(naive).values, dates("2024-05-06"))


def test_parse_date_object_column_of_python_dates():
    import datetime as dt

    raw = pd.Series([dt.date(2024, 1, 2), dt.datetime(2024, 3, 4, 5, 6), None], dtype=object)
    assert_series_equal(parse_date(raw).values, dates("2024-01-02", "2024-03-04", None))


def test_parse_date_on_many_repeated_values():
    rng = np.random.default_rng(0)
    days = pd.date_range("2015-01-01", periods=2000).strftime("%d/%m/%Y").to_numpy()
    raw = pd.Series(days[rng.integers(0, len(days), 300_000)], dtype="str")
    result = parse_date(raw)
    assert not result.invalid.any()
    assert result.values.iloc[0] == pd.Timestamp(pd.to_datetime(raw.iloc[0], dayfirst=True))


@pytest.mark.parametrize(
    "raw",
    [
        pd.Series([], dtype="str"),
        pd.Series([None, None], dtype="str"),
        pd.Series(["", "  "], dtype="str"),
        pd.Series([None, None], dtype=object),
        pd.Series([np.nan, np.nan]),
    ],
)
@pytest.mark.parametrize("parse", [parse_number, parse_amount, parse_percent, parse_date])
def test_empty_columns(parse, raw):
    result = parse(raw)
    assert len(result.values) == len(raw)
    assert result.values.isna().all()
    assert not result.invalid.any()


def test_dates_outside_the_representable_range_are_invalid():
    assert parse_date(text("3000-01-01", "01/01/3000", "2024-01-01")).invalid.tolist() == [
        True,
        True,
        False,
    ]


# --------------------------------------------------------------------------- fast paths
# Large columns skip work when they can (already clean text, typed dates at midnight,
# sorted ids); the answers must be those of the general path.

_ODD = ["a", "b", "x y", " ", "\t", "\x0b", "\x1c", "\x1f", "\u00a0", "\u200b", "\u3000", "é", ""]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(st.sampled_from(_ODD), max_size=3).map("".join))))
def test_clean_text_equals_the_value_by_value_cleaning(values):
    raw = pd.Series(values, dtype="str", index=range(10, 10 + len(values)), name="c")
    expected = parsing._clean_str_series(raw).rename("c")
    assert_series_equal(clean_text(raw), expected)
    assert raw.tolist() == pd.Series(values, dtype="str").tolist()  # input untouched


def test_clean_text_of_clean_text_keeps_the_values():
    raw = pd.Series(["Acme", "Beta Ltd", None, "Zoë"], dtype="str", index=[3, 1, 2, 0], name="n")
    assert_series_equal(clean_text(raw), raw)
    # a control character Series.str.strip removes is still stripped
    assert clean_text(text("a\x1c", "b")).tolist() == ["a", "b"]


def test_parse_date_typed_midnights_pass_through():
    raw = dates("2024-01-31", None, "2025-12-31").rename("d")
    result = parse_date(raw)
    assert_series_equal(result.values, raw)
    assert result.invalid.tolist() == [False, False, False]
    assert result.note == "already dates"
    # times are dropped and out-of-range years are invalid, as before
    raw = pd.Series(
        pd.to_datetime(["2024-01-31 13:05", "1677-12-31", "2262-01-01"], format="ISO8601")
    )
    result = parse_date(raw)
    assert result.values.tolist()[0] == pd.Timestamp("2024-01-31")
    assert result.invalid.tolist() == [False, True, True]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", " a"]))),
    st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d", "e"]))),
)
def test_isin_and_duplicates_agree_with_pandas(values, allowed):
    s, a = pd.Series(values, dtype="str"), pd.Series(allowed, dtype="str")
    assert parsing._isin(s, a).tolist() == s.isin(a).tolist()
    assert parsing._isin(s, pd.concat([a] * 3)).tolist() == s.isin(a).tolist()  # larger set
    assert parsing._has_duplicates(s) == s.duplicated().any()
    assert parsing._has_duplicates(s, missing=False) == (s.duplicated() & s.notna()).any()


def test_sorted_ids_have_no_duplicates():
    ids = pd.Series([f"L{i:04d}" for i in range(50)], dtype="str")
    assert not parsing._has_duplicates(ids)
    assert parsing._has_duplicates(pd.concat([ids, ids.iloc[[7]]], ignore_index=True))
