"""A catalogue of bad inputs (issue 9), one test each, through a real source config.

Each test states the precise outcome: a row *rejected* (ledger ``rejects``: row, column,
reason), a row *loaded with a warning* (ledger ``warnings``: row, key, column, issue), or
a *clear error* naming the file, the column and the fix. Nothing is silently dropped:
``read == loaded + rejected`` wherever the file loads. Lower-level behaviour has its own
tests (``test_io.py``, ``test_sources.py``, ``test_parsing.py``); these point at what a
user sees for each kind of bad input.
"""

from __future__ import annotations

import numpy as np
import openpyxl
import pandas as pd
import pytest

from pipeline_lib import quality
from pipeline_lib.dataset import load_dataset
from pipeline_lib.errors import UnknownStageError, UnreadableFileError
from pipeline_lib.io import UNCLOSED_QUOTE_REASON

HEADER = "Deal ID,Stage,Created,Closed,Amount,Deal Name,Account,Owner"
STAGES = {"open": ["Prospecting", "Negotiation"], "won": ["Closed Won"], "lost": ["Closed Lost"]}
COLUMNS = {
    "opportunity_id": "Deal ID",
    "stage": "Stage",
    "created_date": "Created",
    "close_date": "Closed",
    "amount": "Amount",
    "name": "Deal Name",
    "account": "Account",
    "owner": "Owner",
}


@pytest.fixture
def source(write_file, write_config):
    """Write ``content`` as the opportunities export and return its source config."""

    def _source(content, *, name="crm.csv", table=None, **top):
        if content is not None:
            write_file(name, content)
        spec = {"path": name, "columns": dict(COLUMNS), **(table or {})}
        return write_config({**top, "stages": STAGES, "tables": {"opportunities": spec}})

    return _source


def row(i, stage="Closed Won", created="2025-01-10", closed="2025-02-10", amount="100", **kw):
    cells = [
        kw.get("id", f"D{i}"),
        stage,
        created,
        closed,
        amount,
        kw.get("name", f"Deal {i}"),
        kw.get("account", "Acme"),
        kw.get("owner", "Ann"),
    ]
    return ",".join(cells) + "\n"


def counts(ds) -> tuple[int, int, int]:
    c = ds.counts.set_index("table").loc["opportunities"]
    assert c["read"] == c["loaded"] + c["rejected"]
    return int(c["read"]), int(c["loaded"]), int(c["rejected"])


def rejects(ds) -> list[tuple]:
    return [
        (int(r.row), None if pd.isna(r.column) else r.column, r.reason)
        for r in ds.rejects.sort_values("row").itertuples()
    ]


def warnings(ds, column=None) -> list[tuple]:
    w = ds.warnings.sort_values(["row", "column"])
    if column is not None:
        w = w[w["column"] == column]
    return [
        (int(r.row), r.key, r.column, r.issue, None if pd.isna(r.value) else r.value)
        for r in w.itertuples()
    ]


# --------------------------------------------------------------------------- 1. empty file


def test_empty_file_is_a_clear_error(source):
    cfg = source(b"")
    with pytest.raises(UnreadableFileError) as err:
        load_dataset(cfg, as_of=None)
    msg = str(err.value)
    assert "crm.csv" in msg and "the file is empty (0 bytes)" in msg and "export it again" in msg
    # blank lines, or only the NUL padding of a truncated copy: no header line either
    cfg = source(b"\r\n\n   \n\x00\x00\x00\x00")
    with pytest.raises(UnreadableFileError, match=r"crm\.csv: the file has no header line"):
        load_dataset(cfg, as_of=None)


# --------------------------------------------------------------------------- 2. header only


def test_header_only_loads_an_empty_table(source):
    ds = load_dataset(source(HEADER + "\n"), as_of="2025-12-31")
    opps = ds.opportunities
    assert len(opps) == 0 and counts(ds) == (0, 0, 0) and ds.rejects.empty
    assert opps["created_date"].dtype == "datetime64[ns]" and opps["amount"].dtype == "float64"
    kpis = quality.compute_headline_kpis(ds, as_of="2025-12-31").set_index("metric")
    assert kpis.loc["open pipeline", "value"] == 0 and kpis.loc["open pipeline", "n"] == 0
    assert np.isnan(kpis.loc["win rate", "value"]) and kpis.loc["win rate", "n"] == 0


# --------------------------------------------------------------------------- 3. duplicate ids


def test_duplicated_opportunity_ids_keep_the_first_and_reject_the_others(source):
    text = (
        HEADER
        + "\n"
        + row(1)
        + row(2)
        + row(3, stage="Closed Lost", id="D1")
        + row(4, id=" D1 ")  # ids are stripped: still D1
    )
    ds = load_dataset(source(text), as_of=None)
    assert counts(ds) == (4, 2, 2)
    assert ds.opportunities["opportunity_id"].tolist() == ["D1", "D2"]
    assert ds.opportunities.loc[0, "status"] == "won"  # the first D1 wins
    reason = "duplicate opportunity_id (first seen at row 2)"
    assert rejects(ds) == [(4, "opportunity_id", reason), (5, "opportunity_id", reason)]
    assert ds.rejects["value"].tolist() == ["D1", "D1"]


# --------------------------------------------------------------------------- 4. amounts


def test_negative_or_non_numeric_amounts_load_with_warnings(source):
    text = (
        HEADER
        + "\n"
        + row(1, amount="-100")
        + row(2, amount='"(1,200.00)"')  # accounting negative
        + row(3, amount="abc")
        + row(4, amount="n/a")
        + row(5, amount="")
        + row(6, amount="250")
    )
    ds = load_dataset(source(text), as_of="2025-12-31")
    assert counts(ds) == (6, 6, 0)  # usable for win rates: loaded, not rejected
    amounts = ds.opportunities.set_index("opportunity_id")["amount"]
    assert amounts["D1"] == -100 and amounts["D2"] == -1200 and amounts["D6"] == 250
    assert amounts[["D3", "D4", "D5"]].isna().all()
    assert warnings(ds, "amount") == [
        (2, "D1", "amount", "negative amount", "-100.0"),
        (3, "D2", "amount", "negative amount", "-1200.0"),
        (4, "D3", "amount", "not an amount", "abc"),
        (5, "D4", "amount", "not an amount", "n/a"),
        (6, "D5", "amount", "amount missing: skipped by revenue analyses", None),
    ]
    kpis = quality.compute_headline_kpis(ds, as_of="2025-12-31").set_index("metric")
    assert kpis.loc["won revenue", "skipped"] == 3  # the three won deals without an amount


# --------------------------------------------------------------------------- 5. close < created


def test_close_date_before_created_date_loads_with_a_warning(source):
    text = HEADER + "\n" + row(1, created="2025-03-01", closed="2025-02-01") + row(2)
    ds = load_dataset(source(text), as_of=None)
    assert counts(ds) == (2, 2, 0)
    assert warnings(ds) == [
        (
            2,
            "D1",
            "close_date",
            "close date before created date: skipped by cycle analyses",
            "2025-02-01",
        )
    ]


# --------------------------------------------------------------------------- 6. after as_of


def test_dates_after_as_of_are_hidden_or_reopened_with_notes(source):
    text = (
        HEADER
        + "\n"
        + row(1, created="2025-01-10", closed="2025-02-10")  # won before as_of
        + row(2, created="2025-05-01", closed="2025-08-01")  # won after as_of: open then
        + row(3, stage="Prospecting", created="2025-09-01", closed="2099-01-01")  # later
    )
    cfg = source(text)
    full = load_dataset(cfg, as_of=None)
    ds = load_dataset(cfg, as_of="2025-06-30")
    assert counts(ds) == counts(full) == (3, 3, 0)  # the load keeps everything
    opps = ds.opportunities.set_index("opportunity_id")
    assert list(opps.index) == ["D1", "D2"]
    assert opps.loc["D1", "status"] == "won"
    assert (opps.loc["D2", "status"], opps.loc["D2", "stage"]) == ("open", "Negotiation")
    assert ds.notes == (
        "1 deal(s) closed after 2025-06-30 are shown open as of then.",
        "1 deal(s) created after 2025-06-30 are not shown (they did not exist yet).",
        "1 deal(s) closed after 2025-06-30 have no stage history: shown open in the last "
        "open stage (Negotiation) with their final amount and close date as expected "
        "values (best effort).",
    )
    assert not opps["snapshot_exact"]["D2"] and opps["snapshot_exact"]["D1"]


# --------------------------------------------------------------------------- 7. unknown stage


def test_stages_the_config_does_not_know_are_a_clear_error_with_the_fix(source):
    text = HEADER + "\n" + row(1) + row(2, stage="Closed Maybe") + row(3, stage="Closed Maybe")
    text += row(4, stage="On Hold")
    cfg = source(text)
    with pytest.raises(UnknownStageError) as err:
        load_dataset(cfg, as_of=None)
    msg = str(err.value)
    assert "crm.csv: column 'Stage'" in msg
    assert "'Closed Maybe' (2 rows), 'On Hold' (1 rows)" in msg and "(first at row 3)" in msg
    assert "Known stages: ['Prospecting', 'Negotiation', 'Closed Won', 'Closed Lost']" in msg
    assert "stages.aliases" in msg and str(cfg) in msg


def test_the_fix_named_for_unknown_stages_works(write_file, write_config):
    write_file("crm.csv", HEADER + "\n" + row(1, stage="Closed Maybe") + row(2, stage="On Hold"))
    cfg = write_config(
        {
            "stages": {
                **STAGES,
                "aliases": {"Closed Maybe": "Negotiation", "On hold": "Prospecting"},
            },
            "tables": {"opportunities": {"path": "crm.csv", "columns": dict(COLUMNS)}},
        }
    )
    ds = load_dataset(cfg, as_of=None)
    assert ds.opportunities["stage"].tolist() == ["Negotiation", "Prospecting"]


# --------------------------------------------------------------------------- 8. currencies


def test_mixed_currencies_without_a_rate_load_with_amount_missing_and_a_warning(source):
    text = (
        HEADER
        + "\n"
        + row(1, amount='"USD 1,000.00"')
        + row(2, amount='"EUR 1,000.00"')
        + row(3, amount='"1,234.56 €"')
        + row(4, amount="GBP 10")
    )
    ds = load_dataset(source(text, currency_rates={"EUR": 1.1}), as_of=None)
    assert counts(ds) == (4, 4, 0)
    opps = ds.opportunities.set_index("opportunity_id")
    assert opps["currency"].tolist() == ["USD", "EUR", "EUR", "GBP"]
    np.testing.assert_allclose(opps["amount"], [1000.0, 1100.0, 1358.016, np.nan])
    assert opps.loc["D4", "amount_original"] == 10.0  # the raw value is kept
    issue = "currency has no rate to USD; amount left missing (add currency_rates)"
    assert warnings(ds, "amount") == [(5, "D4", "amount", issue, "GBP")]


# --------------------------------------------------------------------------- 9. non-UTF-8


def test_non_utf8_text_is_decoded_not_garbled(source, write_file):
    names = ["Café Müller", "Señor “Q1” – deal"]
    text = HEADER + "\n" + row(1, name=names[0]) + row(2, name=names[1])
    # a cp1252 (Windows Excel) export
    ds = load_dataset(source(text.encode("cp1252")), as_of=None)
    assert ds.opportunities["name"].tolist() == names
    # a UTF-8 export with one line saved by a cp1252 editor: UTF-8 text stays right
    mixed = (text + row(3, name="Zoë")).encode("utf-8")
    mixed = mixed.replace("Zoë".encode(), "Zoë".encode("cp1252"))
    ds = load_dataset(source(mixed), as_of=None)
    assert ds.opportunities["name"].tolist() == [*names, "Zoë"]
    # an encoding forced in the config that does not fit: a clear error with the fix
    cfg = source(text.encode("cp1252"), table={"parse": {"encoding": "utf-8"}})
    with pytest.raises(UnreadableFileError) as err:
        load_dataset(cfg, as_of=None)
    msg = str(err.value)
    assert "crm.csv: cannot be decoded as utf-8 (byte 0xe9 at position" in msg
    assert "set `encoding: auto` or the file's real encoding" in msg


# --------------------------------------------------------------------------- 10. formulas


def test_formula_like_cells_from_a_crm_export_stay_literal_text(source):
    link = '=HYPERLINK("http://x","click")'
    text = (
        HEADER
        + "\n"
        + row(1, name='"=HYPERLINK(""http://x"",""click"")"', account="@SUM(A1)", owner="+1+1")
        + row(2, amount="=1+1", name="-2+3", account="-12.5", owner="=cmd|' /C calc'!A0")
        + row(3, amount="-2+3")
    )
    ds = load_dataset(source(text), as_of=None)
    assert counts(ds) == (3, 3, 0)
    opps = ds.opportunities.set_index("opportunity_id")
    assert opps.loc["D1", ["name", "account", "owner"]].tolist() == [link, "@SUM(A1)", "+1+1"]
    assert opps.loc["D2", ["name", "account", "owner"]].tolist() == [
        "-2+3",
        "-12.5",
        "=cmd|' /C calc'!A0",
    ]
    # never evaluated: "=1+1" and "-2+3" are not amounts (not 2 and 1)
    assert opps.loc[["D2", "D3"], "amount"].isna().all()
    assert warnings(ds, "amount") == [
        (3, "D2", "amount", "not an amount", "=1+1"),
        (4, "D3", "amount", "not an amount", "-2+3"),
    ]


def test_formula_like_cells_in_a_workbook_are_never_evaluated(source, tmp_path):
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Deals"
    ws.append(HEADER.split(","))
    ws.append(["D1", "Closed Won", "2025-01-10", "2025-02-10", 100, "x", "Acme", "Ann"])
    ws.append(["D2", "Closed Won", "2025-01-10", "2025-02-10", "=1+1", "y", "Acme", "Ann"])
    text_cell = ws.cell(row=2, column=6, value='=HYPERLINK("http://x","click")')
    text_cell.data_type = "s"  # stored as text, as a CRM export writes it
    book.save(tmp_path / "crm.xlsx")
    cfg = source(None, name="crm.xlsx", table={"sheet": "Deals"})
    ds = load_dataset(cfg, as_of=None)
    opps = ds.opportunities.set_index("opportunity_id")
    assert opps.loc["D1", "name"] == '=HYPERLINK("http://x","click")'
    # a real formula is not computed by the loader: with no value saved by Excel it is empty
    assert np.isnan(opps.loc["D2", "amount"])
    assert warnings(ds, "amount") == [
        (3, "D2", "amount", "amount missing: skipped by revenue analyses", None)
    ]


# --------------------------------------------------------------------------- 11. empty column


@pytest.mark.parametrize(
    "column, outcome",
    [
        ("Account", ("warn", "account", "account missing")),
        ("Amount", ("warn", "amount", "amount missing: skipped by revenue analyses")),
        (
            "Created",
            ("warn", "created_date", "created date missing: skipped by cycle and cohort analyses"),
        ),
        ("Stage", ("reject", "stage", "stage is missing")),
        ("Deal ID", ("reject", "opportunity_id", "opportunity_id is missing")),
    ],
)
def test_a_column_that_is_entirely_empty(source, column, outcome):
    frame = pd.DataFrame([row(i).strip().split(",") for i in (1, 2, 3)], columns=HEADER.split(","))
    frame[column] = ""
    ds = load_dataset(source(frame.to_csv(index=False)), as_of=None)
    kind, canonical, message = outcome
    if kind == "warn":  # usable rows: loaded, the value missing, each row warned
        assert counts(ds) == (3, 3, 0)
        assert ds.opportunities[canonical].isna().all()
        assert [(r, k, i) for r, k, _, i, _ in warnings(ds, canonical)] == [
            (2, "D1", message),
            (3, "D2", message),
            (4, "D3", message),
        ]
    else:  # a key column: no row is usable, each is rejected with the reason
        assert counts(ds) == (3, 0, 3)
        assert rejects(ds) == [(r, canonical, message) for r in (2, 3, 4)]


# --------------------------------------------------------------------------- 12. sheet missing


def test_a_workbook_sheet_that_is_missing_is_a_clear_error(source, tmp_path):
    book = openpyxl.Workbook()
    book.active.title = "Deals"
    book.active.append(HEADER.split(","))
    book.active.append(["D1", "Closed Won", "2025-01-10", "2025-02-10", 100, "x", "A", "B"])
    book.create_sheet("Notes")
    book.save(tmp_path / "crm.xlsx")
    cfg = source(None, name="crm.xlsx", table={"sheet": "Opportunities"})
    with pytest.raises(UnreadableFileError) as err:
        load_dataset(cfg, as_of=None)
    msg = str(err.value)
    assert "crm.xlsx: no sheet 'Opportunities'" in msg
    assert "the workbook has sheets ['Deals', 'Notes']; set `sheet:` to one of them" in msg
    with pytest.raises(UnreadableFileError, match=r"sheet 'Notes' is empty \(no header line\)"):
        load_dataset(source(None, name="crm.xlsx", table={"sheet": "Notes"}), as_of=None)
    ds = load_dataset(source(None, name="crm.xlsx", table={"sheet": "deals"}), as_of=None)
    assert counts(ds) == (1, 1, 0)  # sheet names match case-insensitively


# --------------------------------------------------------------------------- found by issue 9


def test_a_one_megabyte_cell_is_data_not_an_unreadable_file(source):
    notes = "x" * 1_000_000
    text = HEADER + "\n" + row(1, name=notes) + row(2)
    ds = load_dataset(source(text), as_of=None)
    assert counts(ds) == (2, 2, 0)
    assert len(ds.opportunities.loc[0, "name"]) == 1_000_000


def test_an_unclosed_quote_rejects_its_line_and_reading_resumes(source):
    text = (
        HEADER
        + "\n"
        + row(1)
        + 'D2,Closed Won,2025-01-10,2025-02-10,100,"Deal 2 big one,Acme,Ann\n'
        + row(3)
        + row(4)
    )
    ds = load_dataset(source(text), as_of=None)
    assert counts(ds) == (4, 3, 1)
    assert ds.opportunities["opportunity_id"].tolist() == ["D1", "D3", "D4"]
    assert rejects(ds) == [(3, None, UNCLOSED_QUOTE_REASON)]
    assert ds.rejects["value"].iloc[0].startswith("D2,Closed Won,2025-01-10,")


def test_nul_padding_after_the_data_is_not_mistaken_for_utf16(source):
    text = (HEADER + "\n" + row(1) + row(2)).encode() + b"\x00" * 4000
    ds = load_dataset(source(text), as_of=None)
    assert counts(ds) == (2, 2, 0) and ds.rejects.empty
