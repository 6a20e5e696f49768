"""Source configs, presets and messy exports -> canonical tables (hand-checked answers)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from pipeline_lib import sources
from pipeline_lib.dataset import load_dataset
from pipeline_lib.errors import (
    MissingColumnError,
    SourceConfigError,
    UnknownStageError,
    UnreadableFileError,
)

BOM = "\ufeff"

SALESFORCE = (
    BOM + "Opportunity ID,Opportunity Name,Account Name,Opportunity Owner,Stage,Amount,"
    "Probability (%),Close Date,Created Date,Lead Source,Product Name,Next Step\n"
    '006A,Deal A,Acme,Ann,Closed Won,"USD 485,000.00",100,3/15/2025,1/10/2025,Web,Widget-Pro,\n'
    "006B,Deal B,Beta,Bob,closed lost,,0,4/2/2025,2/1/2025,Partner,Gadget,\n"
    '006C,Deal C,,Ann,PROSPECTING,"USD 1,200.50",10,12/31/2025,11/20/2025,Web,Widget Pro,call them\n'
    '006A,Deal A dup,Acme,Ann,Closed Won,"USD 1.00",100,3/15/2025,1/10/2025,Web,Widget Pro,\n'
    "\n"
    '"Grand Totals (4 records)"\n'
    "\n"
    "Confidential Information - Do Not Distribute\n"
    "Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved.\n"
)


def _sf_config(write_file, write_config, text=SALESFORCE, **extra):
    write_file("exports/opps.csv", text)
    opp = {
        "preset": "salesforce",
        "path": "exports/opps.csv",
        "columns": {"product": "Product Name"},
        "values": {"product": {"Widget-Pro": "Widget Pro"}},
    }
    opp.update(extra)
    return write_config({"tables": {"opportunities": opp}})


def _plain_config(write_config, **top):
    """Config for a plain `d.csv` with columns id, stage, created, closed, amount[, currency]."""
    return write_config(
        {
            **top,
            "stages": {"open": ["open"], "won": ["won"], "lost": ["lost"]},
            "tables": {
                "opportunities": {
                    "path": "d.csv",
                    "columns": {
                        "opportunity_id": "id",
                        "created_date": "created",
                        "close_date": "closed",
                    },
                }
            },
        }
    )


def test_salesforce_report_with_bom_footer_currency_strings_and_mixed_case(
    write_file, write_config
):
    ds = load_dataset(_sf_config(write_file, write_config), as_of=None)
    opps = ds.opportunities
    assert list(opps["opportunity_id"]) == ["006A", "006B", "006C"]
    assert list(opps["stage"]) == ["Closed Won", "Closed Lost", "Prospecting"]
    assert list(opps["status"]) == ["won", "lost", "open"]
    np.testing.assert_array_equal(opps["amount"].to_numpy(), [485000.0, np.nan, 1200.5])
    np.testing.assert_allclose(opps["probability"], [1.0, 0.0, 0.1])
    assert list(opps["close_date"]) == list(
        pd.to_datetime(["2025-03-15", "2025-04-02", "2025-12-31"])
    )
    assert list(opps["created_date"]) == list(
        pd.to_datetime(["2025-01-10", "2025-02-01", "2025-11-20"])
    )
    assert list(opps["product"]) == ["Widget Pro", "Gadget", "Widget Pro"]
    assert opps["account"].isna().tolist() == [False, False, True]
    # an unmapped column is kept under its source name
    assert opps["Next Step"].tolist()[2] == "call them"

    # every row read is loaded or rejected, with its line number and reason
    counts = ds.counts.set_index("table").loc["opportunities"]
    assert (counts["read"], counts["loaded"], counts["rejected"]) == (7, 3, 4)
    rej = ds.rejects.sort_values("row")
    assert rej["row"].tolist() == [5, 7, 9, 10]
    assert rej["reason"].iloc[0] == "duplicate opportunity_id (first seen at row 2)"
    assert set(rej["reason"].iloc[1:]) == {"report footer line"}

    w = ds.warnings
    assert set(zip(w["key"], w["column"], strict=True)) >= {("006B", "amount"), ("006C", "account")}


def test_hubspot_utf16_tab_export_and_wide_stage_history(write_file, write_config):
    text = (
        "Record ID\tDeal Name\tDeal Stage\tPipeline\tAmount\tClose Date\tCreate Date\tDeal owner\t"
        'Date entered "Appointment Scheduled (Sales Pipeline)"\tDate entered "Closed Won (Sales Pipeline)"\n'
        "101\tX\tClosed Won\tSales Pipeline\t1000\t2025-03-01 10:00\t2025-01-05 09:00\tAnn\t"
        "2025-01-05 09:00\t2025-03-01 10:00\n"
        "102\tY\tAppointment Scheduled\tSales Pipeline\t500.5\t2025-06-30\t2025-02-01\tBob\t2025-02-01\t\n"
    )
    write_file("deals.tsv", "\ufeff" + text, encoding="utf-16-le")
    cfg = write_config(
        {
            "tables": {
                "opportunities": {"preset": "hubspot", "path": "deals.tsv"},
                "stage_history": {"wide_from": "opportunities"},
            }
        }
    )
    ds = load_dataset(cfg, as_of=None)
    opps = ds.opportunities
    assert list(opps["opportunity_id"]) == ["101", "102"]
    assert list(opps["status"]) == ["won", "open"]
    assert list(opps["amount"]) == [1000.0, 500.5]
    assert list(opps["owner"]) == ["Ann", "Bob"]
    hist = ds.stage_history[["opportunity_id", "stage", "entered_at"]]
    expected = pd.DataFrame(
        {
            "opportunity_id": ["101", "101", "102"],
            "stage": ["Appointment Scheduled", "Closed Won", "Appointment Scheduled"],
            "entered_at": pd.to_datetime(["2025-01-05", "2025-03-01", "2025-02-01"]),
        }
    )
    pd.testing.assert_frame_equal(hist.reset_index(drop=True), expected, check_dtype=False)


def test_pipedrive_semicolon_decimal_comma_dayfirst_and_status_column(write_file, write_config):
    text = (
        "Deal - ID;Deal - Title;Deal - Value;Deal - Currency of Value;Deal - Stage;Deal - Status;"
        "Deal - Deal created;Deal - Won time;Deal - Lost time;Deal - Expected close date;Deal - Owner\n"
        "1;A;1 234,56 €;EUR;Proposal Made;Won;05.01.2025;20.02.2025;;28.02.2025;Ann\n"
        "2;B;99,90;EUR;Qualified;Lost;13.01.2025;;03.02.2025;;Bob\n"
        "3;C;2 000,00;EUR;Demo Scheduled;Open;01.02.2025;;;15.03.2025;Ann\n"
    )
    write_file("pd.csv", text)
    cfg = write_config(
        {
            "base_currency": "EUR",
            "tables": {"opportunities": {"preset": "pipedrive", "path": "pd.csv"}},
        }
    )
    opps = load_dataset(cfg, as_of=None).opportunities
    assert list(opps["status"]) == ["won", "lost", "open"]
    assert list(opps["stage"]) == ["Won", "Lost", "Demo Scheduled"]
    assert opps["last_open_stage"].tolist()[:2] == ["Proposal Made", "Qualified"]
    np.testing.assert_allclose(opps["amount"], [1234.56, 99.9, 2000.0])
    assert list(opps["created_date"]) == list(
        pd.to_datetime(["2025-01-05", "2025-01-13", "2025-02-01"])
    )
    # close date: the first filled of won time / lost time / expected close date
    assert list(opps["close_date"]) == list(
        pd.to_datetime(["2025-02-20", "2025-02-03", "2025-03-15"])
    )


def test_leads_and_deals_in_two_files_linked_by_key_with_excel_and_sql(
    tmp_path, write_file, write_config
):
    write_file(
        "leads.csv",
        "Lead ID;First Contact;Channel;MQL Date\nL1;31.01.2025;Web;05.02.2025\nL2;01.02.2025;;\n"
        "L3;n/a;Events;\n",
    )
    write_file(
        "deals.csv",
        "id,stage,created,closed,value,lead,product\n"
        "O1,Won,2025-02-10,2025-03-01,100,L1,Widget-Pro\n"
        "O2,Open,2025-02-15,2025-04-01,50,L9,Gadget\n",
    )
    pd.DataFrame({"Product": ["Widget Pro"], "List Price": [120.0]}).to_excel(
        tmp_path / "products.xlsx", sheet_name="Products", index=False
    )
    with sqlite3.connect(tmp_path / "crm.sqlite") as con:
        con.execute("create table quotas (period_start text, quota real, team text)")
        con.execute(
            "insert into quotas values ('2025-01-01', 1000, 'East'), ('2025-02-01', 1200, 'East')"
        )
    cfg = write_config(
        {
            "stages": {"open": ["Open"], "won": ["Won"], "lost": ["Lost"]},
            "values": {"product": {"Widget-Pro": "Widget Pro"}},
            "tables": {
                "opportunities": {
                    "path": "deals.csv",
                    "columns": {
                        "opportunity_id": "id",
                        "stage": "stage",
                        "created_date": "created",
                        "close_date": "closed",
                        "amount": "value",
                        "lead_id": "lead",
                        "product": "product",
                    },
                },
                "leads": {
                    "path": "leads.csv",
                    "columns": {
                        "lead_id": "Lead ID",
                        "created_date": "First Contact",
                        "source": "Channel",
                        "mql_date": "MQL Date",
                    },
                    "milestones": ["mql_date"],
                },
                "products": {
                    "path": "products.xlsx",
                    "sheet": "Products",
                    "columns": {"product": "Product", "list_price": "List Price"},
                },
                "targets": {
                    "format": "sql",
                    "url": "sqlite:///crm.sqlite",
                    "query": "select period_start as period, quota as target, team from quotas",
                },
            },
        }
    )
    ds = load_dataset(cfg, as_of=None)
    leads = ds.leads
    assert list(leads["lead_id"]) == ["L1", "L2", "L3"]
    assert leads["created_date"].tolist()[:2] == list(pd.to_datetime(["2025-01-31", "2025-02-01"]))
    assert pd.isna(leads["created_date"].iloc[2])
    assert leads["mql_date"].iloc[0] == pd.Timestamp("2025-02-05")
    assert ds.milestones == ("mql_date",)
    assert list(ds.opportunities["product"]) == ["Widget Pro", "Gadget"]
    assert ds.table("products")["list_price"].tolist() == [120.0]
    targets = ds.table("targets")
    assert targets["target"].tolist() == [1000.0, 1200.0]
    assert targets["period"].tolist() == list(pd.to_datetime(["2025-01-01", "2025-02-01"]))

    issues = set(zip(ds.warnings["table"], ds.warnings["key"], ds.warnings["column"], strict=True))
    assert ("opportunities", "O2", "lead_id") in issues  # L9 is in no lead file
    assert ("opportunities", "O2", "product") in issues  # Gadget is not a product
    assert ("opportunities", "O1", "product") not in issues  # the alias matched
    assert ("leads", "L3", "created_date") in issues  # "n/a" loaded, flagged
    assert ("leads", "L2", "source") in issues
    counts = ds.counts.set_index("table")
    assert (counts["read"] == counts["loaded"] + counts["rejected"]).all()
    assert counts.loc["leads", "loaded"] == 3


def test_salesforce_opportunity_history_preset_rejects_orphans(write_file, write_config):
    write_file(
        "hist.csv",
        BOM
        + "Opportunity ID,Opportunity Name,From Stage,To Stage,Amount,Close Date,Last Modified\n"
        '006A,Deal A,,Prospecting,"USD 100.00",2/15/2025,1/10/2025\n'
        '006A,Deal A,Prospecting,Closed Won,"USD 485,000.00",3/15/2025,3/15/2025\n'
        '999,Ghost,,Prospecting,"USD 5.00",2/15/2025,1/10/2025\n',
    )
    cfg = _sf_config(write_file, write_config)
    import yaml

    data = yaml.safe_load(cfg.read_text())
    data["tables"]["stage_history"] = {"preset": "salesforce_history", "path": "hist.csv"}
    cfg.write_text(yaml.safe_dump(data))
    ds = load_dataset(cfg, as_of=None)
    hist = ds.stage_history
    assert hist["stage"].tolist() == ["Prospecting", "Closed Won"]
    assert hist["amount"].tolist() == [100.0, 485000.0]
    rej = ds.rejects[ds.rejects["table"] == "stage_history"]
    assert rej["row"].tolist() == [4]
    assert rej["reason"].tolist() == ["no opportunity with this id"]
    c = ds.counts.set_index("table").loc["stage_history"]
    assert (c["read"], c["loaded"], c["rejected"]) == (3, 2, 1)


def test_currency_conversion_and_missing_rate(write_file, write_config):
    write_file(
        "d.csv",
        "id,stage,created,closed,amount,currency\n"
        "1,won,2025-01-01,2025-02-01,100,EUR\n"
        "2,won,2025-01-01,2025-02-01,100,USD\n"
        "3,lost,2025-01-01,2025-02-01,100,JPY\n",
    )
    cfg = _plain_config(write_config, currency_rates={"EUR": 1.1})
    ds = load_dataset(cfg, as_of=None)
    np.testing.assert_allclose(ds.opportunities["amount"], [110.0, 100.0, np.nan])
    assert ds.opportunities["amount_original"].tolist() == [100.0, 100.0, 100.0]
    w = ds.warnings
    assert w.loc[w["column"] == "amount", "key"].tolist() == ["3"]


# ------------------------------------------------------------------ clear errors


def test_missing_required_column_names_file_column_and_fix(write_file, write_config):
    text = SALESFORCE.replace(",Close Date,", ",Closing,")
    cfg = _sf_config(write_file, write_config, text=text)
    with pytest.raises(MissingColumnError) as err:
        load_dataset(cfg, as_of=None)
    msg = str(err.value)
    assert "opps.csv" in msg and "close_date" in msg and "'Close Date'" in msg
    assert "tables.opportunities.columns" in msg


def test_explicit_mapping_to_absent_header_is_an_error(write_file, write_config):
    cfg = _sf_config(write_file, write_config, columns={"team": "Owner Role"})
    with pytest.raises(MissingColumnError, match="Owner Role"):
        load_dataset(cfg, as_of=None)
    cfg = _sf_config(write_file, write_config, columns={"product": "Product Nmae"})
    with pytest.raises(MissingColumnError, match="Did you mean 'Product Name'"):
        load_dataset(cfg, as_of=None)


def test_unknown_stage_names_value_file_and_fix(write_file, write_config):
    text = SALESFORCE.replace("closed lost", "Closed Maybe")
    cfg = _sf_config(write_file, write_config, text=text)
    with pytest.raises(UnknownStageError) as err:
        load_dataset(cfg, as_of=None)
    msg = str(err.value)
    assert "'Closed Maybe' (1 rows)" in msg and "opps.csv" in msg and "'Stage'" in msg
    assert "stages.aliases" in msg and "row 3" in msg


def test_stage_alias_maps_a_source_stage(write_file, write_config):
    text = SALESFORCE.replace("closed lost", "Lost - No Budget")
    write_file("exports/opps.csv", text)
    cfg = write_config(
        {
            "stages": {
                "open": ["Prospecting"],
                "won": ["Closed Won"],
                "lost": ["Closed Lost"],
                "aliases": {"Lost - No Budget": "Closed Lost"},
            },
            "tables": {"opportunities": {"preset": "salesforce", "path": "exports/opps.csv"}},
        }
    )
    assert load_dataset(cfg, as_of=None).opportunities["status"].tolist() == ["won", "lost", "open"]


def test_unreadable_file_is_a_clear_error(write_config):
    cfg = write_config({"tables": {"opportunities": {"preset": "salesforce", "path": "nope.csv"}}})
    with pytest.raises(UnreadableFileError, match="nope.csv"):
        load_dataset(cfg, as_of=None)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"tables": {}}, "opportunities"),
        ({"tables": {"opportunities": {"path": "x.csv", "colums": {}}}}, "colums"),
        ({"tables": {"opportunities": {"path": "x.csv", "preset": "zoho"}}}, "zoho"),
        ({"tables": {"opportunities": {"path": "x.csv"}}}, "stages"),
        (
            {"tables": {"opportunities": {"path": "x.csv"}, "deals": {"path": "x.csv"}}},
            "unknown table",
        ),
        ({"tables": {"opportunities": {"path": "x.csv", "format": "xml"}}}, "xml"),
        (
            {"stages": {"open": ["a"], "won": ["b"]}, "tables": {"opportunities": {"path": "x"}}},
            "lost",
        ),
    ],
)
def test_config_errors(write_config, config, match):
    with pytest.raises(SourceConfigError, match=match):
        sources.load_source_config(write_config(config))


def test_missing_config_file():
    with pytest.raises(SourceConfigError, match="not found"):
        sources.load_source_config("/nonexistent/source.yaml")


def test_day_order_of_an_undecided_date_column_follows_the_file(write_file, write_config):
    write_file(
        "d.csv",
        "id,stage,created,closed,amount\n"
        "1,won,31/01/2025,03/02/2025,1\n"  # created decides day-first; closed cannot alone
        "2,lost,13/01/2025,04/02/2025,1\n",
    )
    cfg = _plain_config(write_config)
    ds = load_dataset(cfg, as_of=None)
    assert list(ds.opportunities["close_date"]) == list(
        pd.to_datetime(["2025-02-03", "2025-02-04"])
    )
    how = ds.parse_notes.set_index("column")["how"]
    assert how["created_date"].startswith("day-first (from values like")
    assert how["close_date"] == "day-first, as decided by the other date columns of this file"


def test_columns_and_parse_notes_come_in_a_fixed_order(write_file, write_config):
    # canonical columns in schema order, then the config's own in its order (the same on
    # every run, whatever the hash seed)
    write_file("o.csv", "id,stage,created,closed,amount\nO1,Won,2025-01-02,2025-02-01,5\n")
    write_file(
        "l.csv",
        "SQL,Lead,First,MQL,Channel\n2025-01-20,L1,2025-01-05,2025-01-10,Web\n",
    )
    cfg = write_config(
        {
            "stages": {"open": ["Open"], "won": ["Won"], "lost": ["Lost"]},
            "tables": {
                "opportunities": {
                    "path": "o.csv",
                    "columns": {
                        "close_date": "closed",
                        "opportunity_id": "id",
                        "created_date": "created",
                    },
                },
                "leads": {
                    "path": "l.csv",
                    "columns": {
                        "sql_date": "SQL",
                        "lead_id": "Lead",
                        "created_date": "First",
                        "source": "Channel",
                        "mql_date": "MQL",
                    },
                    "milestones": ["mql_date", "sql_date"],
                },
            },
        }
    )
    ds = load_dataset(cfg, as_of=None)
    assert list(ds.leads.columns) == [
        "lead_id",
        "created_date",
        "source",
        "sql_date",
        "mql_date",
        "_row",
    ]
    notes = ds.parse_notes
    assert notes.loc[notes["table"] == "leads", "column"].tolist() == [
        "created_date",
        "sql_date",
        "mql_date",
    ]
    assert notes.loc[notes["table"] == "opportunities", "column"].tolist() == [
        "created_date",
        "close_date",
    ]


def test_an_unreadable_later_table_is_still_reported(write_file, write_config):
    # tables are read one ahead in a thread: its errors surface as before
    write_file("o.csv", "id,stage,created,closed,amount\nO1,Won,2025-01-02,2025-02-01,5\n")
    cfg = write_config(
        {
            "stages": {"open": ["Open"], "won": ["Won"], "lost": ["Lost"]},
            "tables": {
                "opportunities": {
                    "path": "o.csv",
                    "columns": {
                        "opportunity_id": "id",
                        "created_date": "created",
                        "close_date": "closed",
                    },
                },
                "leads": {"path": "missing.csv"},
            },
        }
    )
    with pytest.raises(UnreadableFileError, match=r"missing\.csv: file not found"):
        load_dataset(cfg, as_of=None)


def test_validate_table_checks_the_rules_and_names_the_failure():
    from pipeline_lib import schema
    from pipeline_lib.errors import DataValidationError

    good = pd.DataFrame(
        {
            "opportunity_id": pd.Series(["A", "B"], dtype="str"),
            "stage": pd.Series(["Won", "Open"], dtype="str"),
            "status": pd.Series(["won", "open"], dtype="str"),
            "amount": [1.0, np.nan],
            "probability": [1.0, 0.2],
        }
    )
    assert schema.validate_table("opportunities", good) is good
    bad = {
        "status": good.assign(status=pd.Series(["won", "maybe"], dtype="str")),
        "opportunity_id": good.assign(opportunity_id=pd.Series(["A", "A"], dtype="str")),
        "probability": good.assign(probability=[1.0, 1.5]),
        "amount": good.assign(amount=pd.Series(["1", "2"], dtype="str")),
    }
    for column, frame in bad.items():
        with pytest.raises(DataValidationError, match=f"column '{column}'"):
            schema.validate_table("opportunities", frame)
