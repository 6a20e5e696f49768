"""read_table: encodings, separators, row numbers, titles, footers, ragged rows, formats."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandas.testing import assert_frame_equal, assert_series_equal

from pipeline_lib import parsing
from pipeline_lib.errors import SourceConfigError, UnreadableFileError
from pipeline_lib.io import REJECT_COLUMNS, RawTable, empty_rejects, read_table


def text_frame(columns: dict, rows: list[int]) -> pd.DataFrame:
    """Expected text frame: str columns plus the int64 ``_row`` column."""
    data = {k: pd.Series(v, dtype="str") for k, v in columns.items()}
    data["_row"] = pd.Series(rows, dtype="int64")
    return pd.DataFrame(data)


def reconciles(t: RawTable) -> bool:
    return t.n_read == len(t.frame) + t.rejects["row"].nunique()


# --------------------------------------------------------------------------- encodings


def test_utf8_with_bom(write_file):
    path = write_file("bom.csv", "\ufeffId,Name\n1,Ann\n", encoding="utf-8")
    t = read_table(path)
    assert t.encoding == "utf-8-sig"
    assert t.sep == ","
    assert_frame_equal(t.frame, text_frame({"Id": ["1"], "Name": ["Ann"]}, [2]))
    assert t.file == str(path)


def test_utf16_tab_separated_with_bom(write_file):
    content = "Id\tAccount\tAmount\r\n1\tMüller GmbH\t1.234,56\r\n2\tÅsa AB\t99\r\n"
    path = write_file("export.txt", content.encode("utf-16"))  # BOM + little endian
    t = read_table(path)
    assert t.encoding == "utf-16-le"
    assert t.sep == "\t"
    expected = {
        "Id": ["1", "2"],
        "Account": ["Müller GmbH", "Åsa AB"],
        "Amount": ["1.234,56", "99"],
    }
    assert_frame_equal(t.frame, text_frame(expected, [2, 3]))


def test_utf16_without_bom_is_detected(write_file):
    path = write_file("no_bom.tsv", "Id\tName\n1\tZoë\n".encode("utf-16-le"))
    t = read_table(path)
    assert t.encoding == "utf-16-le"
    assert t.frame["Name"].tolist() == ["Zoë"]


def test_cp1252_fallback(write_file):
    path = write_file("legacy.csv", b"Id;Account\n1;Caf\xe9 du Nord\n")
    t = read_table(path)
    assert t.encoding == "cp1252"
    assert t.sep == ";"
    assert t.frame["Account"].tolist() == ["Café du Nord"]


def test_explicit_encoding_that_does_not_fit_is_an_error(write_file):
    path = write_file("legacy.csv", b"Id;Account\n1;Caf\xe9\n")
    with pytest.raises(UnreadableFileError, match=r"legacy\.csv.*utf-8.*0xe9.*encoding"):
        read_table(path, encoding="utf-8")
    assert read_table(path, encoding="cp1252").frame["Account"].tolist() == ["Café"]


def test_unknown_codec_is_a_config_error(write_file):
    path = write_file("a.csv", "Id,Name\n1,a\n")
    with pytest.raises(SourceConfigError, match="unknown encoding"):
        read_table(path, encoding="klingon-8")


# --------------------------------------------------------------------------- separators & parsing


def test_semicolon_with_decimal_commas_and_dayfirst_dates(write_file):
    content = (
        "Opportunity ID;Amount;Close Date\n"
        "006A;1.234,56;31/01/2024\n"
        "006B;12,5;01/02/2024\n"
        "006C;;\n"
        "006D;7;\n"
    )
    t = read_table(write_file("eu.csv", content))
    assert t.sep == ";"
    assert t.frame["Amount"].tolist()[:2] == ["1.234,56", "12,5"]
    # one filled-in cell is a data row when more rows follow (a footer only at the end)
    assert t.rejects.empty
    assert t.frame["Amount"].isna().tolist() == [False, False, True, False]

    amount = parsing.parse_amount(t.frame["Amount"])
    assert_series_equal(
        amount.values, pd.Series([1234.56, 12.5, np.nan, 7.0], name="Amount"), check_index=False
    )
    assert amount.invalid.tolist() == [False, False, False, False]

    assert parsing.detect_dayfirst(t.frame["Close Date"]) is True
    dates = parsing.parse_date(t.frame["Close Date"])
    expected = pd.Series(
        pd.to_datetime(["2024-01-31", "2024-02-01", None, None]), name="Close Date"
    )
    assert_series_equal(dates.values, expected.astype("datetime64[ns]"))


def test_currency_amounts_survive_reading(write_file):
    content = 'Id,Amount USD,Amount EUR\n1,"USD 485,000.00","1\u00a0234,56 €"\n'
    t = read_table(write_file("cur.csv", content))
    assert t.frame.loc[0, "Amount USD"] == "USD 485,000.00"
    usd = parsing.parse_amount(t.frame["Amount USD"])
    eur = parsing.parse_amount(t.frame["Amount EUR"])
    assert (usd.values[0], usd.currency[0]) == (485000.0, "USD")
    assert (eur.values[0], eur.currency[0]) == (1234.56, "EUR")


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_separator_is_sniffed_outside_quotes(write_file, sep):
    other = ";" if sep == "," else ","
    rows = [["Name", "Note"], [f"a{other}b", f"x{sep}y"], ["c", "d"]]
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator="\n").writerows(rows)
    t = read_table(write_file("s.csv", buf.getvalue()))
    assert t.sep == sep
    assert t.frame["Note"].tolist() == [f"x{sep}y", "d"]


def test_explicit_separator_and_tsv_format(write_file):
    path = write_file("pipes.dat", "a|b\n1|2\n")
    t = read_table(path, format="csv", sep="|")
    assert t.frame.columns.tolist() == ["a", "b", "_row"]
    t = read_table(write_file("tabs.tsv", "a\tb\n1\t2\n"))
    assert t.sep == "\t"
    with pytest.raises(SourceConfigError, match="separator"):
        read_table(path, format="csv", sep=";;")


def test_unknown_extension_needs_a_format(write_file):
    path = write_file("data.dat", "a,b\n1,2\n")
    with pytest.raises(SourceConfigError, match=r"data\.dat.*format"):
        read_table(path)
    with pytest.raises(SourceConfigError, match="unknown format"):
        read_table(path, format="xml")


# --------------------------------------------------------------------------- structure


SALESFORCE_EXPORT = (
    '"Opportunity Report"\n'  # line 1: title
    "\n"  # line 2
    "Opportunity Name,Stage,Amount\n"  # line 3: header
    "Acme,Prospecting,100\n"  # line 4
    "Globex,Closed Won,200\n"  # line 5
    "Total,,300\n"  # line 6: a total row in the table
    "\n"  # line 7
    "Grand Totals (2 records)\n"  # line 8
    "\n"  # line 9
    '"Confidential Information - Do Not Distribute"\n'  # line 10
    '"Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved."\n'  # line 11
    "Generated by CRM Export on 2025-01-01\n"  # line 12
    "Filtered By: Stage equals Open\n"  # line 13
)


def test_title_and_footer_lines(write_file):
    t = read_table(write_file("sf.csv", SALESFORCE_EXPORT))
    expected = {
        "Opportunity Name": ["Acme", "Globex"],
        "Stage": ["Prospecting", "Closed Won"],
        "Amount": ["100", "200"],
    }
    assert_frame_equal(t.frame, text_frame(expected, [4, 5]))
    assert tuple(t.rejects.columns) == REJECT_COLUMNS
    assert t.rejects["row"].tolist() == [6, 8, 10, 11, 12, 13]
    assert set(t.rejects["reason"]) == {"report footer line"}
    assert t.rejects["column"].isna().all()
    assert t.rejects["file"].unique().tolist() == [t.file]
    assert t.rejects["value"].tolist()[:2] == ["Total,,300", "Grand Totals (2 records)"]
    assert t.n_read == 8  # 2 rows + 6 rejected lines; title and blank lines are not records
    assert reconciles(t)


def test_trailing_single_field_line_is_a_footer_but_not_in_the_middle(write_file):
    content = "Id,Name\n1,a\nstray\n2,b\nPrepared for the board\n"
    t = read_table(write_file("f.csv", content))
    assert t.frame["Id"].tolist() == ["1", "2"]
    assert t.rejects[["row", "reason"]].values.tolist() == [
        [3, "row has 1 field, header has 2"],
        [5, "report footer line"],
    ]
    assert reconciles(t)


def test_total_word_inside_a_name_is_data(write_file):
    t = read_table(write_file("acc.csv", "Account,Region\nTotal Wine & More,East\n"))
    assert t.frame["Account"].tolist() == ["Total Wine & More"]
    assert t.rejects.empty


def test_ragged_rows_are_rejected_with_their_line(write_file):
    content = "Id,Name,Amount\n1,a,10\n2,b\n3,c,30,oops\n4,d,40,,\n"
    t = read_table(write_file("r.csv", content))
    assert t.frame["Id"].tolist() == ["1", "4"]  # trailing empty fields are accepted
    assert t.frame["_row"].tolist() == [2, 5]
    assert t.rejects[["row", "reason", "value"]].values.tolist() == [
        [3, "row has 2 fields, header has 3", "2,b"],
        [4, "row has 4 fields, header has 3", "3,c,30,oops"],
    ]
    assert t.n_read == 4
    assert reconciles(t)


def test_multiline_quoted_field_keeps_row_numbers(write_file):
    content = 'Id,Notes,Amount\r\n1,"first line\r\nsecond line",10\r\n2,plain,20\r\n3,x\r\n'
    t = read_table(write_file("m.csv", content))
    assert t.frame["Notes"].tolist() == ["first line\r\nsecond line", "plain"]
    assert t.frame["_row"].tolist() == [2, 4]
    assert t.rejects["row"].tolist() == [5]


def test_blank_lines_are_skipped_and_not_counted(write_file):
    t = read_table(write_file("b.csv", "\n\nId,Name\n\n1,a\n,\n\n2,b\n\n"))
    assert t.frame["_row"].tolist() == [5, 8]
    assert t.n_read == 2
    assert t.rejects.empty


def test_headers_are_cleaned_and_made_unique(write_file):
    content = " Name ,Name,Amount,_row,\n a ,b,1,x,\n"
    t = read_table(write_file("h.csv", content))
    assert t.frame.columns.tolist() == ["Name", "Name.1", "Amount", "_row.1", "_row"]
    assert t.frame.loc[0, "Name"] == " a "  # cells are kept as they are
    assert t.frame["_row"].tolist() == [2]


def test_unnamed_column_with_data_is_kept(write_file):
    t = read_table(write_file("u.csv", "a,,c\n1,2,3\n"))
    assert t.frame.columns.tolist() == ["a", "Unnamed: 1", "c", "_row"]


# --------------------------------------------------------------------------- bad files


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UnreadableFileError, match=r"nope\.csv: file not found"):
        read_table("nope.csv", base=tmp_path)
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(UnreadableFileError, match="directory"):
        read_table(tmp_path / "dir.csv")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", "\ufeff".encode()])
def test_empty_file_is_an_error(write_file, content):
    path = write_file("empty.csv", content)
    with pytest.raises(UnreadableFileError, match=r"empty\.csv: .*(empty|no header)"):
        read_table(path)


def test_header_only_file_has_zero_rows(write_file):
    t = read_table(write_file("h.csv", "Id,Name,Amount\n"))
    assert t.frame.columns.tolist() == ["Id", "Name", "Amount", "_row"]
    assert len(t.frame) == 0
    assert t.frame["Id"].dtype == "str"
    assert t.frame["_row"].dtype == "int64"
    assert t.n_read == 0
    assert_frame_equal(t.rejects, empty_rejects())


def test_relative_path_uses_base(write_file, tmp_path):
    write_file("sub/x.csv", "a,b\n1,2\n")
    t = read_table("sub/x.csv", base=tmp_path)
    assert t.file == str(tmp_path / "sub" / "x.csv")


# --------------------------------------------------------------------------- excel


@pytest.fixture
def workbook(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Deals"
    ws["A1"] = "Pipeline report"  # row 1: title, row 2 blank
    ws.append([])
    ws.append(["Id", "Close Date", "Amount", "Probability", "Won"])  # row 3
    ws.append(["006A", dt.datetime(2024, 12, 31), 485000, 0.4, True])  # row 4
    ws.append(["006B", dt.datetime(2024, 1, 2, 14, 5), 1234.5, None, False])  # row 5
    ws.append([])
    ws.append(["Grand Totals (2 records)"])  # row 7
    wb.create_sheet("Notes")["A1"] = "nothing"
    path = tmp_path / "deals.xlsx"
    wb.save(path)
    return path


def test_excel_sheet_as_text_with_spreadsheet_rows(workbook):
    t = read_table(workbook)
    expected = {
        "Id": ["006A", "006B"],
        "Close Date": ["2024-12-31", "2024-01-02 14:05:00"],
        "Amount": ["485000", "1234.5"],
        "Probability": ["0.4", None],
        "Won": ["TRUE", "FALSE"],
    }
    assert_frame_equal(t.frame, text_frame(expected, [4, 5]))
    assert t.rejects[["row", "reason", "value"]].values.tolist() == [
        [7, "report footer line", "Grand Totals (2 records)"]
    ]
    assert t.n_read == 3
    assert reconciles(t)
    assert t.encoding is None and t.sep is None
    dates = parsing.parse_date(t.frame["Close Date"])
    assert dates.values.tolist() == [pd.Timestamp("2024-12-31"), pd.Timestamp("2024-01-02")]


def test_excel_sheet_by_name_or_position(workbook):
    assert read_table(workbook, sheet="Deals").n_read == 3
    assert read_table(workbook, sheet="deals").n_read == 3  # case-insensitive match
    notes = read_table(workbook, sheet=1)
    assert notes.frame.columns.tolist() == ["nothing", "_row"]


def test_excel_missing_sheet_names_the_sheets(workbook):
    with pytest.raises(UnreadableFileError) as info:
        read_table(workbook, sheet="Opportunities")
    message = str(info.value)
    assert "deals.xlsx" in message
    assert "'Opportunities'" in message
    assert "['Deals', 'Notes']" in message


def test_not_really_excel(write_file):
    with pytest.raises(UnreadableFileError, match=r"fake\.xlsx: not a readable Excel"):
        read_table(write_file("fake.xlsx", "a,b\n1,2\n"))


# --------------------------------------------------------------------------- parquet & sql


def test_parquet_keeps_native_dtypes(tmp_path):
    df = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "amount": [1.5, None, 3.0],
            "n": [1, 2, 3],
            "created": pd.to_datetime(["2024-01-01", "2024-02-01", None]),
        }
    )
    path = tmp_path / "deals.parquet"
    df.to_parquet(path)
    t = read_table(path)
    expected = df.copy()
    expected["_row"] = np.arange(1, 4, dtype="int64")
    assert_frame_equal(t.frame, expected)
    assert t.n_read == 3
    assert_frame_equal(t.rejects, empty_rejects())


def test_bad_parquet(write_file):
    with pytest.raises(UnreadableFileError, match=r"x\.parquet: not a readable Parquet"):
        read_table(write_file("x.parquet", "not parquet"))


@pytest.fixture
def crm_db(tmp_path):
    con = sqlite3.connect(tmp_path / "crm.db")
    con.execute("create table quotas (period_start text, quota real, team text)")
    con.executemany(
        "insert into quotas values (?, ?, ?)",
        [("2024-01-01", 1000.0, "East"), ("2024-02-01", 1200.5, None)],
    )
    con.commit()
    con.close()
    return tmp_path


def test_sqlite_through_a_relative_url(crm_db):
    t = read_table(
        url="sqlite:///crm.db",
        query="select period_start as period, quota as target, team from quotas order by 1",
        base=crm_db,
    )
    assert t.file == f"sql:sqlite:///{crm_db / 'crm.db'}"
    assert t.frame.columns.tolist() == ["period", "target", "team", "_row"]
    assert t.frame["target"].tolist() == [1000.0, 1200.5]
    assert t.frame["target"].dtype == "float64"
    assert t.frame["_row"].tolist() == [1, 2]
    assert t.n_read == 2
    assert reconciles(t)


def test_sql_errors_name_url_query_and_database_message(crm_db):
    with pytest.raises(UnreadableFileError, match=r"sql:sqlite.*no such table: nope.*select"):
        read_table(url="sqlite:///crm.db", query="select * from nope", base=crm_db)
    with pytest.raises(UnreadableFileError, match="missing.db not found"):
        read_table(url="sqlite:///missing.db", query="select 1", base=crm_db)
    with pytest.raises(UnreadableFileError) as info:
        read_table(url="postgresql+nodriver://ann:s3cret@localhost/crm", query="select 1")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(UnreadableFileError, match="not a valid database URL"):
        read_table(url="not a url", query="select 1", format="sql")
    with pytest.raises(SourceConfigError, match="query"):
        read_table(url="sqlite:///crm.db", format="sql", base=crm_db)


# --------------------------------------------------------------------------- property


_ALPHABET_SAFE = "ab1 .-\"'\n\r€é"  # no separator characters
_ALPHABET_ALL = _ALPHABET_SAFE + ",;\t|"


@st.composite
def csv_tables(draw):
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    alphabet = _ALPHABET_ALL if quoting == csv.QUOTE_ALL else _ALPHABET_SAFE
    if terminator == "\n" and quoting == csv.QUOTE_MINIMAL:
        alphabet = alphabet.replace("\r", "")  # the writer would not quote a lone \r
    n_cols = draw(st.integers(2, 4))
    cell = st.text(alphabet=alphabet, max_size=6)
    filled = st.text(alphabet="ab1", min_size=1, max_size=3)  # keeps rows non-blank
    rows = draw(
        st.lists(
            st.tuples(filled, filled, *[cell] * (n_cols - 2)).map(list), min_size=0, max_size=6
        )
    )
    sep = draw(st.sampled_from([",", ";", "\t"]))
    return [f"col{i}" for i in range(n_cols)], rows, sep, quoting, terminator


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(table=csv_tables())
def test_property_round_trip(tmp_path, table):
    header, rows, sep, quoting, terminator = table
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, quoting=quoting, lineterminator=terminator).writerows(
        [header, *rows]
    )
    path = tmp_path / "p.csv"
    path.write_bytes(buf.getvalue().encode("utf-8"))
    t = read_table(path)
    assert t.n_read == len(t.frame) + t.rejects["row"].nunique()
    assert t.sep == sep
    assert t.rejects.empty
    got = t.frame.drop(columns="_row").astype(object).where(t.frame.notna(), "")
    assert got.columns.tolist() == header
    assert got.values.tolist() == rows


def test_grand_totals_as_a_proper_row(write_file):
    content = "Owner,Stage,Amount\nAnn,Won,10\nGrand Totals (1 record),,10\n"
    t = read_table(write_file("g.csv", content))
    assert t.frame["Owner"].tolist() == ["Ann"]
    assert t.rejects[["row", "reason"]].values.tolist() == [[3, "report footer line"]]
    assert reconciles(t)


# --------------------------------------------------------------------------- fast reader
# A plainly well-formed text file is parsed by pyarrow; anything else by the record
# reader. Both must give the same table.

REGULAR = [
    'Id,Name,Amount\n1,"Acme, Inc.",10\n2,"say ""hi""",\n3,Total Wine & More,30\n',
    "Id;Name;Amount\r\n1;Straße;1,5\r\n2; spaced ;\r\n3;Sub-total ideas;3\r\n",  # CRLF, ';'
    "Id\tName\n1\t\u00a0odd\u200bspace\n2\tGrand old deal\n",
    'Id,Name,Amount\n1,"x",10\n2," Total",20',  # no final newline; quoted leading space
]
IRREGULAR = [
    "Report title\n\nId,Name\n1,a\n2,b\n",  # title and blank lines
    "Id,Name\n1,a\n\n2,b\n",  # blank line
    'Id,Name\n1,"two\nlines"\n2,b\n',  # a record over two lines
    "Id,Name\n1,a\n2,b,c\n",  # ragged
    "Id,Name\n1,a\nTotal,2\n",  # total line
    "Id,Name,Amount\n1,a,10\n,Grand Total,300\n",  # total line after a blank cell
    "Id,Name\n1,a\nConfidential\n",  # single-cell footer
    "Id\n1\n2\n",  # one column
    "Id,Name,\n1,a,\n",  # trailing unnamed column
]


def _record_reader(monkeypatch, path):
    from pipeline_lib import io as pio

    with monkeypatch.context() as m:
        m.setattr(pio, "_read_regular", lambda text, sep, raw=None: None)
        return read_table(path)


@pytest.mark.parametrize("content", REGULAR)
def test_regular_file_read_by_pyarrow_as_by_the_record_reader(write_file, monkeypatch, content):
    from pipeline_lib import io as pio

    assert pio._read_regular(content, pio._sniff_sep(content)) is not None
    path = write_file("r.csv", content)
    fast, slow = read_table(path), _record_reader(monkeypatch, path)
    assert_frame_equal(fast.frame, slow.frame)
    assert fast.rejects.empty and slow.rejects.empty and fast.n_read == slow.n_read


@pytest.mark.parametrize("content", IRREGULAR)
def test_irregular_file_is_left_to_the_record_reader(write_file, content):
    from pipeline_lib import io as pio

    assert pio._read_regular(content, pio._sniff_sep(content)) is None
