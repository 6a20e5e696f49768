"""CSV / Excel writing: formula injection neutralised, text kept exact, CLI export."""

from __future__ import annotations

import csv
import io

import numpy as np
import openpyxl
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from pipeline_lib import exports
from pipeline_lib.cli import main
from pipeline_lib.dataset import load_dataset
from pipeline_lib.exports import (
    EXCEL_CELL_LIMIT,
    neutralize_formulas,
    write_csv,
    write_excel,
    write_load_tables,
)

HYPERLINK = '=HYPERLINK("http://x","click")'
# cell written -> what a spreadsheet must receive
CASES = {
    HYPERLINK: "'" + HYPERLINK,
    "+1+1": "'+1+1",
    "@SUM(A1)": "'@SUM(A1)",
    "-2+3": "'-2+3",
    "\tstarts with a tab": "'\tstarts with a tab",
    "\r=1": "'\r=1",
    "-12.5": "-12.5",  # a plain number stays as it is
    "+7": "+7",
    "-1,234.50": "-1,234.50",
    "-5%": "-5%",
    "Acme = best": "Acme = best",  # only the first character counts
    "'=already quoted": "'=already quoted",
}


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": pd.Series(list(CASES), dtype="str"),
            "number": np.linspace(-12.5, 10, len(CASES)),
            "when": pd.date_range("2025-01-01", periods=len(CASES), freq="D"),
        }
    )


# --------------------------------------------------------------------------- the rule


def test_neutralize_prefixes_formula_like_text_only():
    df = frame()
    out = neutralize_formulas(df)
    assert out["text"].tolist() == list(CASES.values())
    assert_frame_equal(out[["number", "when"]], df[["number", "when"]])
    assert out.dtypes.equals(df.dtypes)


def test_neutralize_does_not_mutate_and_handles_missing_object_and_names():
    df = frame()
    df.loc[3, "text"] = None
    df["mixed"] = pd.Series(["=x", 1, None, pd.Timestamp("2025-01-01")] + ["ok"] * 8, dtype=object)
    df = df.rename(columns={"number": "=total"})
    before = df.copy(deep=True)
    out = neutralize_formulas(df)
    assert_frame_equal(df, before)  # input untouched
    assert pd.isna(out.loc[3, "text"])
    assert out["mixed"].tolist()[:4] == ["'=x", 1, None, pd.Timestamp("2025-01-01")]
    assert list(out.columns) == ["text", "'=total", "when", "mixed"]


def test_neutralize_repeated_labels_and_string_index():
    df = pd.DataFrame([["=a", "b"], ["c", "@d"]], columns=["x", "x"], index=["+i", "+i"])
    out = neutralize_formulas(df)
    assert out.values.tolist() == [["'=a", "b"], ["c", "'@d"]]
    assert list(out.index) == ["'+i", "'+i"] and list(out.columns) == ["x", "x"]


def test_neutralize_rejects_a_non_frame():
    with pytest.raises(TypeError, match="frame must be a pandas DataFrame"):
        neutralize_formulas(["=1"])


# --------------------------------------------------------------------------- CSV


def test_csv_round_trip_keeps_exact_text_and_quotes_text_fields(tmp_path):
    df = frame()
    before = df.copy(deep=True)
    path = tmp_path / "out.csv"
    write_csv(df, path)
    assert_frame_equal(df, before)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["text", "number", "when"]
    assert [r[0] for r in rows[1:]] == list(CASES.values())
    assert rows[1][1] == "-12.5" and rows[1][2] == "2025-01-01"
    raw = path.read_text(encoding="utf-8")
    # every text field quoted: a spreadsheet splitting on ';' cannot start a cell inside one
    assert raw.splitlines()[1].startswith('"\'=HYPERLINK(""http://x"",""click"")",-12.5,')


def test_csv_field_with_separator_and_formula_stays_one_quoted_field(tmp_path):
    path = tmp_path / "out.csv"
    write_csv(pd.DataFrame({"a": ["x;=cmd|' /C calc'!A0"], "b": ["ok"]}), path, sep=",")
    assert path.read_text(encoding="utf-8").splitlines()[1] == '"x;=cmd|\' /C calc\'!A0","ok"'


def test_csv_passes_options_through(tmp_path):
    buf = io.StringIO()
    write_csv(
        pd.DataFrame({"a": ["=1", "b"]}),
        buf,
        sep=";",
        lineterminator="\n",
        quoting=csv.QUOTE_MINIMAL,
    )
    assert buf.getvalue() == "a\n'=1\nb\n"


# --------------------------------------------------------------------------- Excel


def test_excel_round_trip_text_never_a_formula_numbers_stay_numbers(tmp_path):
    df = frame()
    before = df.copy(deep=True)
    path = tmp_path / "out.xlsx"
    write_excel({"Deals": df, "Other": df.head(1)}, path)
    assert_frame_equal(df, before)
    wb = openpyxl.load_workbook(path)  # formulas would come back as "=..." with type "f"
    assert wb.sheetnames == ["Deals", "Other"]
    ws = wb["Deals"]
    assert [c.value for c in ws[1]] == ["text", "number", "when"]
    texts = [ws.cell(row=r, column=1) for r in range(2, len(CASES) + 2)]
    # an .xlsx (XML) stores line ends as LF: the CR-led cell comes back with a LF
    expected = [v.replace("\r", "\n") for v in CASES.values()]
    assert [c.value for c in texts] == expected
    assert {c.data_type for c in texts} == {"s"}
    number = ws.cell(row=2, column=2)
    assert (number.value, number.data_type) == (-12.5, "n")
    assert ws.cell(row=2, column=3).value == pd.Timestamp("2025-01-01").to_pydatetime()


def test_excel_cells_an_xlsx_cannot_hold(tmp_path):
    long = "y" * (EXCEL_CELL_LIMIT + 10)
    df = pd.DataFrame({"a": ["bell\x07nul\x00", long, "tab\tand\nnewline"]})
    path = tmp_path / "out.xlsx"
    write_excel({"s": df}, path)
    ws = openpyxl.load_workbook(path)["s"]
    assert ws["A2"].value == "bell\ufffdnul\ufffd"
    assert len(ws["A3"].value) == EXCEL_CELL_LIMIT and ws["A3"].value.endswith("…")
    assert ws["A4"].value == "tab\tand\nnewline"


@pytest.mark.parametrize(
    "sheets, match",
    [
        ({}, "non-empty mapping"),
        ({"a/b": pd.DataFrame()}, "invalid sheet name 'a/b'"),
        ({"x" * 32: pd.DataFrame()}, "invalid sheet name"),
        ({"Data": pd.DataFrame(), "data": pd.DataFrame()}, "'data' is used twice"),
        ({"Data": [1, 2]}, r"frames_by_sheet\['Data'\] must be a DataFrame"),
    ],
)
def test_excel_bad_sheets_name_the_parameter(tmp_path, sheets, match):
    with pytest.raises(ValueError, match=match):
        write_excel(sheets, tmp_path / "x.xlsx")


# --------------------------------------------------------------------------- load tables + CLI

CRM_EXPORT = (
    "Deal ID,Stage,Created,Closed,Amount,Deal Name,Account\n"
    f'D1,Won,2025-01-05,2025-02-01,100,"{HYPERLINK.replace(chr(34), chr(34) * 2)}",@SUM(A1)\n'
    "D2,Lost,2025-01-06,2025-02-02,-2+3,-12.5,+1+1\n"
    "D3,Open,2025-01-07\n"
    "D1,Won,2025-01-05,2025-02-01,100,again,Acme\n"
)


@pytest.fixture
def crm_source(write_file, write_config):
    write_file("crm.csv", CRM_EXPORT)
    return write_config(
        {
            "stages": {"open": ["Open"], "won": ["Won"], "lost": ["Lost"]},
            "tables": {
                "opportunities": {
                    "path": "crm.csv",
                    "columns": {
                        "opportunity_id": "Deal ID",
                        "stage": "Stage",
                        "created_date": "Created",
                        "close_date": "Closed",
                        "amount": "Amount",
                        "name": "Deal Name",
                        "account": "Account",
                    },
                }
            },
        }
    )


def test_write_load_tables_xlsx_and_csv(crm_source, tmp_path):
    ds = load_dataset(crm_source, as_of="2025-12-31")
    assert write_load_tables(ds, tmp_path / "q.xlsx") == [tmp_path / "q.xlsx"]
    assert openpyxl.load_workbook(tmp_path / "q.xlsx").sheetnames == [
        "counts",
        "rejects",
        "warnings",
    ]
    written = write_load_tables(ds, tmp_path / "q.csv", tables=["opportunities", "rejects"])
    assert written == [tmp_path / "q_rejects.csv", tmp_path / "q_opportunities.csv"]
    assert write_load_tables(ds, tmp_path / "one.csv", tables=["rejects"]) == [tmp_path / "one.csv"]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind
    with pytest.raises(ValueError, match="end the file name in .xlsx"):
        write_load_tables(ds, tmp_path / "q.json")
    with pytest.raises(ValueError, match="tables must name"):
        write_load_tables(ds, tmp_path / "q.csv", tables=["leads"])


def _sheet(path, name) -> list[list]:
    ws = openpyxl.load_workbook(path)[name]
    return [[c.value for c in row] for row in ws.iter_rows()]


def test_cli_export_xlsx_round_trips_with_neutralised_cells(crm_source, tmp_path, capsys):
    out = tmp_path / "quality.xlsx"
    argv = ["export", "--source", str(crm_source), "--as-of", "2025-12-31", "--out", str(out)]
    assert main([*argv, "--table", "rejects", "--table", "opportunities"]) == 0
    printed = capsys.readouterr().out
    assert "4 rows read, 2 loaded, 2 rejected" in printed and f"wrote {out}" in printed
    rejects = _sheet(out, "rejects")
    assert rejects[0] == ["table", "file", "row", "column", "reason", "value"]
    assert [r[2:5] for r in rejects[1:]] == [
        [4, None, "row has 3 fields, header has 7"],
        [5, "opportunity_id", "duplicate opportunity_id (first seen at row 2)"],
    ]
    opps = _sheet(out, "opportunities")
    head = opps[0]
    rows = {r[head.index("opportunity_id")]: dict(zip(head, r, strict=True)) for r in opps[1:]}
    assert rows["D1"]["name"] == "'" + HYPERLINK
    assert rows["D1"]["account"] == "'@SUM(A1)"
    assert rows["D2"]["name"] == "-12.5"  # a plain number: kept
    assert rows["D2"]["account"] == "'+1+1"
    assert rows["D2"]["amount"] is None  # "-2+3" was never evaluated: not an amount
    assert rows["D1"]["amount"] == 100


def test_cli_export_csv_round_trips(crm_source, tmp_path, capsys):
    out = tmp_path / "q.csv"
    argv = ["export", "--source", str(crm_source), "--as-of", "2025-12-31", "--out", str(out)]
    assert main(argv) == 0
    written = sorted(p.name for p in tmp_path.glob("q_*.csv"))
    assert written == ["q_counts.csv", "q_rejects.csv", "q_warnings.csv"]
    with open(tmp_path / "q_warnings.csv", newline="", encoding="utf-8-sig") as f:
        warnings = list(csv.DictReader(f))
    amount = [w for w in warnings if w["column"] == "amount"]
    assert [(w["key"], w["issue"], w["value"]) for w in amount] == [
        ("D2", "not an amount", "'-2+3")
    ]
    with open(tmp_path / "q_counts.csv", newline="", encoding="utf-8-sig") as f:
        counts = list(csv.DictReader(f))
    assert [(c["read"], c["loaded"], c["rejected"]) for c in counts] == [("4", "2", "2")]


@pytest.mark.parametrize(
    "extra, status, message",
    [
        (["--as-of", "2025-13-40"], 2, "--as-of='2025-13-40' is not a date"),
        (["--out", "q.json"], 2, "end the file name in .xlsx"),
        (["--out", "/no/such/folder/q.csv"], 4, "the folder /no/such/folder does not exist"),
        (["--source", "missing.yaml"], 2, "source config not found"),
        (["--table", "leads"], 2, "invalid choice: 'leads'"),
    ],
)
def test_cli_export_errors_exit_with_a_message(
    crm_source, tmp_path, monkeypatch, capsys, extra, status, message
):
    monkeypatch.chdir(tmp_path)
    args = {"--source": str(crm_source), "--as-of": "2025-12-31", "--out": "q.xlsx"}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args[flag] = value
    argv = ["export"] + [x for kv in args.items() for x in kv]
    assert main(argv) == status
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "q.xlsx").exists()


def test_cli_export_help_lists_options(capsys):
    assert main(["export", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--source", "--as-of", "--out", "--table", ".xlsx", ".csv", "formula"):
        assert option in out
    assert main(["--help"]) == 0
    assert "export" in capsys.readouterr().out


def test_demo_exports_hold_no_formula_like_cell(small_demo):
    """The demo files go through exports and none of their cells needed neutralising."""
    folder = small_demo.parent.parent / "demo"
    for name, sep, enc in [
        ("opportunities.csv", ",", "utf-8-sig"),
        ("opportunity_history.csv", ",", "utf-8-sig"),
        ("leads.csv", ";", "utf-8"),
        ("lead_costs.csv", ";", "utf-8"),
        ("accounts.tsv", "\t", "utf-16"),
    ]:
        with open(folder / name, newline="", encoding=enc) as f:
            cells = [c for row in csv.reader(f, delimiter=sep) for c in row]
        assert cells and not [c for c in cells if c.startswith("'")], name
    book = openpyxl.load_workbook(folder / "products.xlsx")
    values = [c.value for row in book["Products"].iter_rows() for c in row]
    assert not [v for v in values if isinstance(v, str) and v.startswith(("'", "="))]


def test_module_exports():
    assert set(exports.__all__) == {
        "FORMULA_PREFIXES",
        "EXCEL_CELL_LIMIT",
        "LOAD_TABLES",
        "neutralize_formulas",
        "write_csv",
        "write_excel",
        "write_load_tables",
    }
