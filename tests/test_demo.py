"""The demo generator: deterministic, canonical, consistent, with its story and its exports."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3

import numpy as np
import pandas as pd
import pytest

from pipeline_lib import demo, schema

OPEN_STAGES = [
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
]
STAGES = [*OPEN_STAGES, "Closed Won", "Closed Lost"]
START, END = pd.Timestamp(demo.DEMO_START), pd.Timestamp(demo.DEMO_END)
FOOTER = [
    "",
    '"Grand Totals ({n} records)"',
    "",
    "Confidential Information - Do Not Distribute",
    "Copyright (c) 2000-2025 salesforce.com, inc. All rights reserved.",
]


@pytest.fixture(scope="module")
def small():
    return demo.generate_demo(n_opportunities=400, seed=7)


@pytest.fixture(scope="module")
def big():
    """Large enough for the built-in story to show clearly (well under a second)."""
    return demo.generate_demo(n_opportunities=30_000, seed=11)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("written") / "demo"
    demo.write_demo(folder, n_opportunities=400, seed=7)
    return folder


# --------------------------------------------------------------------------- determinism, size


def test_same_seed_gives_identical_tables_and_other_seed_differs(small):
    again = demo.generate_demo(n_opportunities=400, seed=7)
    assert list(again) == list(small)
    for name in small:
        pd.testing.assert_frame_equal(again[name], small[name])
    other = demo.generate_demo(n_opportunities=400, seed=8)
    assert not other["opportunities"].equals(small["opportunities"])
    assert not other["leads"].equals(small["leads"])


@pytest.mark.parametrize("n", [300, 1500])
def test_sizes_scale_with_n_opportunities(n):
    t = demo.generate_demo(n_opportunities=n, seed=3)
    assert len(t["opportunities"]) == n
    assert 3.8 <= len(t["leads"]) / n <= 5.0
    assert 3.0 <= len(t["stage_history"]) / n <= 5.0
    assert len(t["accounts"]) == round(n / 3)
    assert len(t["products"]) == 7
    assert len(t["targets"]) == 36 * 3  # 36 months x 3 teams
    assert len(t["lead_costs"]) == 36 * 6  # 36 months x 6 sources


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="n_opportunities"):
        demo.generate_demo(n_opportunities=0)
    with pytest.raises(ValueError, match="180 days"):
        demo.generate_demo(start="2025-01-01", end="2025-02-01")


# --------------------------------------------------------------------------- canonical shape


def test_every_table_has_canonical_columns_and_dtypes(small):
    assert set(small) == set(schema.TABLES)
    for name, frame in small.items():
        expected = list(schema.columns_of(name))
        if name == "leads":
            expected += ["mql_date", "sql_date"]
        assert list(frame.columns) == expected, name
        empty = schema.empty_table(name)
        for col in frame.columns:
            want = empty[col].dtype if col in empty else np.dtype("datetime64[ns]")
            assert frame[col].dtype == want, (name, col, frame[col].dtype)
            if want == np.dtype("datetime64[ns]"):
                d = frame[col].dropna()
                assert (d == d.dt.normalize()).all(), (name, col)
        assert frame.index.equals(pd.RangeIndex(len(frame)))
        schema.validate_table(name, frame)
        for col in schema.required_columns(name):
            if col != "source":  # leads.source may be blank in exports; clean here
                assert frame[col].notna().all(), (name, col)


# --------------------------------------------------------------------------- invariants


def test_opportunity_invariants(small):
    o = small["opportunities"]
    assert o["opportunity_id"].is_unique
    assert (o["close_date"] >= o["created_date"]).all()
    assert o["created_date"].between(START, END).all()
    closed = o["status"] != "open"
    assert o.loc[closed, "close_date"].between(START, END).all()
    status_of = {s: "open" for s in OPEN_STAGES} | {"Closed Won": "won", "Closed Lost": "lost"}
    assert (o["stage"].map(status_of) == o["status"]).all()
    prob = dict(zip(STAGES, [0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 0.0], strict=True))
    assert (o["stage"].map(prob) == o["probability"]).all()
    assert o["lost_reason"].notna().eq(o["status"] == "lost").all()
    assert set(o["lost_reason"].dropna()) <= {
        "Price",
        "Competitor",
        "No Budget",
        "Timing",
        "No Decision",
    }
    assert (o["amount"] > 0).all() and (o["currency"] == "USD").all()
    assert (o["name"] == o["account"] + " - " + o["product"]).all()
    assert set(o["account"]) <= set(small["accounts"]["account"])
    assert set(o["product"]) <= set(small["products"]["product"])
    assert o.groupby("team")["owner"].nunique().eq(4).all() and o["owner"].nunique() == 12
    # open deals exist, were created in the last months, and some are expected after `end`
    is_open = o["status"] == "open"
    assert is_open.sum() > 0
    assert (o.loc[is_open, "created_date"] > END - pd.Timedelta(days=450)).all()
    assert (o.loc[is_open, "close_date"] > END).any()


def test_stage_history_invariants(small):
    o = small["opportunities"].set_index("opportunity_id")
    h = small["stage_history"]
    assert set(h["opportunity_id"]) == set(o.index)
    g = h.groupby("opportunity_id", sort=False)
    first, last = g.head(1).set_index("opportunity_id"), g.tail(1).set_index("opportunity_id")
    assert (first["entered_at"] == o.loc[first.index, "created_date"]).all()
    assert (last["stage"] == o.loc[last.index, "stage"]).all()
    assert (last["amount"] == o.loc[last.index, "amount"]).all()
    assert (last["close_date"] == o.loc[last.index, "close_date"]).all()
    closed = last["stage"].isin(["Closed Won", "Closed Lost"])
    assert (last.loc[closed, "entered_at"] == o.loc[last.index[closed], "close_date"]).all()
    # stages move forward in time and in pipeline order, one closing row at most, at the end
    order = h["stage"].map({s: i for i, s in enumerate(STAGES)})
    same = h["opportunity_id"].eq(h["opportunity_id"].shift())
    assert (order.diff()[same] > 0).all()
    assert (h["entered_at"].diff()[same] >= pd.Timedelta(0)).all()
    assert h["entered_at"].between(START, END).all()
    closed_ids = o.index[o["status"] != "open"]
    hc = h[h["opportunity_id"].isin(closed_ids)]
    assert hc["close_date"].between(START, END).all()
    assert (h["close_date"] >= h["entered_at"]).all()
    # some deals skip a stage; lost deals drop out at different stages
    won_ids = o.index[o["status"] == "won"]
    assert (h[h["opportunity_id"].isin(won_ids)].groupby("opportunity_id").size() < 6).any()
    lost = h[h["opportunity_id"].isin(o.index[o["status"] == "lost"])]
    dropped = lost[lost["stage"] != "Closed Lost"].groupby("opportunity_id")["stage"].last()
    assert dropped.nunique() == 5
    # some open deals had their expected close date pushed later
    ho = h[h["opportunity_id"].isin(o.index[o["status"] == "open"])]
    pushed = ho.groupby("opportunity_id")["close_date"].agg(lambda s: s.iloc[-1] > s.iloc[0])
    assert pushed.any()


def test_leads_link_and_milestones(small):
    o, lead = small["opportunities"], small["leads"]
    assert lead["lead_id"].is_unique
    linked = o.dropna(subset=["lead_id"]).merge(lead, on="lead_id", suffixes=("", "_lead"))
    assert len(linked) == o["lead_id"].notna().sum() and o["lead_id"].dropna().is_unique
    assert (linked["created_date_lead"] <= linked["created_date"]).all()
    assert (linked["source_lead"] == linked["source"]).all()
    assert (linked["sql_date"] <= linked["created_date"]).all()
    assert 0.7 < o["lead_id"].notna().mean() < 0.95
    assert set(o.loc[o["lead_id"].isna(), "source"]) == {"Outbound", "Partner"}
    assert lead["created_date"].between(START, END).all()
    for col in ("mql_date", "sql_date"):
        d = lead[col].dropna()
        assert d.between(START, END).all()
    assert (lead["mql_date"] >= lead["created_date"]).where(lead["mql_date"].notna(), True).all()
    assert lead["sql_date"].isna().ge(lead["mql_date"].isna()).all()  # no SQL without MQL
    assert (lead["sql_date"] >= lead["mql_date"]).where(lead["sql_date"].notna(), True).all()
    assert lead["lead_id"].is_monotonic_increasing and lead["created_date"].is_monotonic_increasing


def test_targets_and_lead_costs_are_monthly(small):
    t, c = small["targets"], small["lead_costs"]
    assert (t["period"].dt.day == 1).all() and (c["period"].dt.day == 1).all()
    assert set(t["team"]) == {"SMB", "Mid-Market", "Enterprise"}
    assert (t["target"] > 0).all() and (c["cost"] >= 0).all()
    assert set(c["source"]) == set(small["leads"]["source"])
    assert not t.duplicated(["period", "team"]).any()
    assert not c.duplicated(["period", "source"]).any()


# --------------------------------------------------------------------------- the story


def test_story_sources_differ_in_yield_and_cost(big):
    o, lead, costs = big["opportunities"], big["leads"], big["lead_costs"]
    yields = lead["lead_id"].isin(o["lead_id"]).groupby(lead["source"]).mean()
    assert yields["Referral"] > 2.5 * yields["Web"]
    assert yields.max() - yields.min() > 0.25
    assert 4.2 < len(lead) / len(o) < 4.7
    cpl = costs.groupby("source")["cost"].sum() / lead.groupby("source").size()
    assert cpl["Events"] > 5 * cpl["Web"]


def test_story_products_teams_and_discounts(big):
    o = big["opportunities"]
    closed = o[o["status"] != "open"].assign(won=lambda d: d["status"] == "won")
    by_product = closed.groupby("product")["won"].mean()
    assert by_product.max() - by_product.min() > 0.25
    by_team = closed.groupby("team")["won"].mean()
    assert by_team["SMB"] - by_team["Enterprise"] > 0.08
    cycle = (closed["close_date"] - closed["created_date"]).dt.days.groupby(closed["team"]).median()
    assert cycle["Enterprise"] > 1.5 * cycle["SMB"]
    price = big["products"].set_index("product")["list_price"]
    closed = closed.assign(discount=1 - closed["amount"] / closed["product"].map(price))
    assert closed["discount"].between(0, 0.41).all()

    def gain(product):  # win rate of heavily vs lightly discounted deals
        d = closed[closed["product"] == product]
        heavy = d["discount"] >= d["discount"].median()
        return d.loc[heavy, "won"].mean() - d.loc[~heavy, "won"].mean()

    assert gain("Widget Pro") > 0.1
    assert abs(gain("Enterprise Platform")) < 0.06


def test_story_account_affinity(big):
    o = big["opportunities"]
    bought = pd.crosstab(o["account"], o["product"]) > 0
    assert (bought.sum(axis=1) > 1).mean() > 0.5
    with_suite = bought["Analytics Suite"]
    p_given = bought.loc[with_suite, "Data Connector"].mean()
    assert p_given > 1.4 * bought.loc[~with_suite, "Data Connector"].mean()


def test_story_quarter_end_seasonality(big):
    o = big["opportunities"]
    closes = o.loc[o["status"] != "open", "close_date"]
    month_in_quarter = (closes.dt.month - 1) % 3
    share = month_in_quarter.value_counts(normalize=True)
    assert share[2] > 1.4 * share[0] and share[2] > 1.4 * share[1]


def test_story_trend_change_midway(big):
    o = big["opportunities"]
    closed = o[o["status"] != "open"].assign(won=lambda d: d["status"] == "won")
    after = closed["created_date"] >= "2024-07-01"
    rates = closed.groupby(["product", after])["won"].mean().unstack()
    drop = rates[False] - rates[True]
    assert drop["Analytics Suite"] > 0.07
    assert (drop.drop("Analytics Suite").abs() < 0.05).all()
    lost = o[(o["status"] == "lost") & (o["product"] == "Analytics Suite")]
    competitor = (lost["lost_reason"] == "Competitor").groupby(lost["created_date"] >= "2024-07-01")
    assert competitor.mean()[True] > competitor.mean()[False] + 0.15


def test_story_lost_reasons_shift_over_time(big):
    o = big["opportunities"]
    lost = o[o["status"] == "lost"]
    share = pd.crosstab(lost["close_date"].dt.year, lost["lost_reason"], normalize="index")
    assert share.loc[2025, "No Budget"] > share.loc[2023, "No Budget"] + 0.05
    assert share.loc[2025, "Timing"] < share.loc[2023, "Timing"] - 0.03


# --------------------------------------------------------------------------- exports


def _sf_rows(path):
    """Parsed data rows and the raw footer lines of a Salesforce report."""
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8-sig").split("\n")
    assert lines[-1] == ""
    lines = lines[:-1]
    body, footer = lines[:-5], lines[-5:]
    rows = list(csv.reader(io.StringIO("\n".join(body))))
    return rows[0], rows[1:], footer


def test_manifest_lists_every_file_with_its_rows(written):
    manifest = json.loads((written / "demo.json").read_text())
    assert manifest == {
        "generator_version": demo.GENERATOR_VERSION,
        "n_opportunities": 400,
        "seed": 7,
        "start": "2023-01-01",
        "end": "2025-12-31",
        "files": manifest["files"],
    }
    assert list(manifest["files"]) == list(demo.DEMO_FILES)
    assert sorted(p.name for p in written.iterdir()) == sorted([*demo.DEMO_FILES, "demo.json"])
    assert manifest["files"]["opportunities.csv"] == 402  # + 1 duplicate + 1 without id
    assert not list(written.parent.glob(".demo.*"))  # no temporary folders left


def test_salesforce_opportunities_report(written, small):
    header, rows, footer = _sf_rows(written / "opportunities.csv")
    assert header == [
        "Opportunity ID", "Opportunity Name", "Account Name", "Opportunity Owner", "Owner Role",
        "Stage", "Amount", "Expected Revenue", "Probability (%)", "Close Date", "Created Date",
        "Lead Source", "Type", "Next Step", "Fiscal Period", "Product Name", "Lead ID",
        "Loss Reason",
    ]  # fmt: skip
    assert footer == [line.format(n=len(rows)) for line in FOOTER]
    df = pd.DataFrame(rows, columns=header)
    o = small["opportunities"]
    assert len(df) == len(o) + 2
    ids = df["Opportunity ID"]
    assert (ids == "").sum() == 1
    dup = df[ids.duplicated(keep=False) & (ids != "")]
    assert len(dup) == 2 and dup.iloc[0].equals(dup.iloc[1])
    assert set(ids[ids != ""]) == set(o["opportunity_id"])
    df = df[ids != ""].drop_duplicates().set_index("Opportunity ID").loc[o["opportunity_id"]]
    assert df["Amount"].str.fullmatch(r"(USD \d{1,3}(,\d{3})*\.\d{2})?").all()
    assert df["Close Date"].str.fullmatch(r"\d{1,2}/\d{1,2}/\d{4}").all()
    assert df["Probability (%)"].isin(["0", "10", "20", "40", "60", "80", "100"]).all()
    assert (df["Owner Role"].to_numpy() == o["team"].to_numpy()).all()
    lost = (o["status"] == "lost").to_numpy()
    blank_amount = (df["Amount"] == "").to_numpy()
    assert blank_amount.any() and not blank_amount[~lost].any()
    is_open = (o["status"] == "open").to_numpy()
    blank_account = (df["Account Name"] == "").to_numpy()
    assert blank_account.any() and not blank_account[~is_open].any()
    blank_created = (df["Created Date"] == "").to_numpy()
    assert blank_created.sum() == 1 and blank_created[is_open].sum() == 1
    stage = df["Stage"]
    odd = ~stage.isin(STAGES)
    assert 0 < odd.mean() < 0.06 and stage[odd].str.lower().isin([s.lower() for s in STAGES]).all()
    assert "Widget-Pro" in set(df["Product Name"]) and "Widget Pro" not in set(df["Product Name"])
    parsed = pd.to_datetime(df["Close Date"], format="%m/%d/%Y")
    assert (parsed.to_numpy() == o["close_date"].to_numpy()).all()


def test_salesforce_history_report(written, small):
    header, rows, footer = _sf_rows(written / "opportunity_history.csv")
    assert header == [
        "Opportunity ID", "Opportunity Name", "From Stage", "To Stage", "Amount",
        "Probability (%)", "Close Date", "Stage Duration", "Last Modified",
    ]  # fmt: skip
    assert footer == [line.format(n=len(rows)) for line in FOOTER]
    df = pd.DataFrame(rows, columns=header)
    h = small["stage_history"]
    assert len(df) == len(h) + 1
    orphans = set(df["Opportunity ID"]) - set(small["opportunities"]["opportunity_id"])
    assert len(orphans) == 1
    df = df[~df["Opportunity ID"].isin(orphans)].reset_index(drop=True)
    assert (df["To Stage"] == h["stage"]).all()
    assert df["Amount"].str.fullmatch(r"USD \d{1,3}(,\d{3})*\.\d{2}").all()
    entered = pd.to_datetime(df["Last Modified"], format="%m/%d/%Y")
    assert (entered.to_numpy() == h["entered_at"].to_numpy()).all()
    assert df["Stage Duration"].astype(int).ge(0).all()


def test_leads_export(written, small):
    raw = (written / "leads.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8")
    assert text.split("\n")[0] == "Lead ID;First Contact;Channel;Campaign;Segment;MQL Date;SQL Date"
    df = pd.read_csv(io.StringIO(text), sep=";", dtype=str, keep_default_na=False)
    assert len(df) == len(small["leads"])
    assert (df["First Contact"] == "n/a").sum() == 1
    good = df["First Contact"] != "n/a"
    assert df.loc[good, "First Contact"].str.fullmatch(r"\d{2}\.\d{2}\.\d{4}").all()
    assert 0 < (df["Channel"] == "").mean() < 0.03
    first = pd.to_datetime(df.loc[good, "First Contact"], format="%d.%m.%Y")
    assert (first.to_numpy() == small["leads"]["created_date"][good.to_numpy()].to_numpy()).all()


def test_lead_costs_export(written, small):
    lines = (written / "lead_costs.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "Month;Channel;Spend"
    assert len(lines) - 1 == len(small["lead_costs"])
    month, channel, spend = lines[1].split(";")
    assert month == "01/01/2023" and channel == "Web"
    pattern = re.compile(r"\d{2}/\d{2}/\d{4};[A-Za-z ]+;\d{1,3}( \d{3})*,\d{2} €")
    assert all(pattern.fullmatch(line) for line in lines[1:])
    big = max(
        lines[1:], key=lambda s: float(s.split(";")[2][:-2].replace(" ", "").replace(",", "."))
    )
    assert " " in big.split(";")[2][:-2]  # thousands separated by a space


def test_products_accounts_and_quotas_exports(written, small):
    products = pd.read_excel(written / "products.xlsx", sheet_name="Products")
    assert list(products.columns) == ["Product", "Family", "List Price"]
    assert list(products["Product"]) == list(small["products"]["product"])
    assert "Widget Pro" in set(products["Product"])
    assert pd.api.types.is_numeric_dtype(products["List Price"])
    assert (products["List Price"] == small["products"]["list_price"]).all()

    raw = (written / "accounts.tsv").read_bytes()
    assert raw[:2] in (b"\xff\xfe", b"\xfe\xff")
    text = raw.decode("utf-16")
    assert text.split("\n")[0] == "Company name\tIndustry\tRegion\tNumber of Employees"
    accounts = pd.read_csv(io.StringIO(text), sep="\t")
    assert list(accounts["Company name"]) == list(small["accounts"]["account"])
    assert (accounts["Number of Employees"] == small["accounts"]["employees"]).all()

    con = sqlite3.connect(written / "crm.sqlite")
    try:
        cols = [(r[1], r[2]) for r in con.execute("pragma table_info(quotas)")]
        quotas = con.execute("select period_start, team, quota from quotas").fetchall()
    finally:
        con.close()
    assert cols == [("period_start", "TEXT"), ("team", "TEXT"), ("quota", "REAL")]
    assert len(quotas) == len(small["targets"])
    assert quotas[0][0] == "2023-01-01" and quotas[0][1] == "SMB"


def test_demo_yaml_reads_exactly_the_demo_files():
    import yaml

    from pipeline_lib import config

    cfg = yaml.safe_load((config.SOURCES_DIR / "demo.yaml").read_text(encoding="utf-8"))
    assert cfg["stages"]["open"] == OPEN_STAGES
    tables = cfg["tables"]
    assert set(tables) == set(schema.TABLES)
    paths = {t["path"] for t in tables.values() if "path" in t}
    assert paths == {f"../demo/{f}" for f in demo.DEMO_FILES if f != "crm.sqlite"}
    assert tables["targets"]["url"] == "sqlite:///../demo/crm.sqlite"
    assert tables["opportunities"]["values"]["product"] == {"Widget-Pro": "Widget Pro"}


# --------------------------------------------------------------------------- ensure_demo


def test_ensure_demo_skips_current_and_regenerates_when_needed(tmp_path):
    folder = tmp_path / "demo"
    assert demo.ensure_demo(folder, n_opportunities=300, seed=1) is True
    manifest = folder / "demo.json"
    stamp = manifest.stat().st_mtime_ns
    assert demo.ensure_demo(folder, n_opportunities=300, seed=1) is False
    assert manifest.stat().st_mtime_ns == stamp

    (folder / "leads.csv").unlink()
    assert demo.ensure_demo(folder, n_opportunities=300, seed=1) is True
    assert (folder / "leads.csv").exists()

    assert demo.ensure_demo(folder, n_opportunities=300, seed=2) is True
    assert json.loads(manifest.read_text())["seed"] == 2
    assert demo.ensure_demo(folder, n_opportunities=300, seed=2, force=True) is True

    data = json.loads(manifest.read_text())
    data["generator_version"] = "0"
    manifest.write_text(json.dumps(data))
    assert demo.ensure_demo(folder, n_opportunities=300, seed=2) is True
    manifest.unlink()
    assert demo.ensure_demo(folder, n_opportunities=300, seed=2) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # nothing left beside it


def test_a_crash_never_leaves_a_partial_demo(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    folder = tmp_path / "demo"
    monkeypatch.setattr(demo, "_write_exports", boom)
    with pytest.raises(RuntimeError):
        demo.ensure_demo(folder, n_opportunities=300, seed=1)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    demo.write_demo(folder, n_opportunities=300, seed=1)
    before = (folder / "opportunities.csv").read_bytes()
    monkeypatch.setattr(demo, "_write_exports", boom)
    with pytest.raises(RuntimeError):
        demo.ensure_demo(folder, n_opportunities=300, seed=2)
    assert (folder / "opportunities.csv").read_bytes() == before  # the old demo is intact
    assert json.loads((folder / "demo.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


# --------------------------------------------------------------------------- other CRMs


def test_hubspot_export(small):
    deals = demo.to_hubspot_export(small)
    o = small["opportunities"]
    stage_cols = [f'Date entered "{demo.HUBSPOT_STAGES[s]} (Sales Pipeline)"' for s in STAGES]
    assert list(deals.columns) == [
        "Record ID", "Deal Name", "Deal Stage", "Pipeline", "Amount", "Currency", "Close Date",
        "Create Date", "Deal owner", "Deal probability", "Closed lost reason",
        "Original Traffic Source", "Associated Company", *stage_cols,
    ]  # fmt: skip
    assert len(deals) == len(o)
    assert (deals["Deal Stage"] == o["stage"].map(demo.HUBSPOT_STAGES)).all()
    assert demo.HUBSPOT_STAGES["Prospecting"] == "Appointment Scheduled"
    assert demo.HUBSPOT_STAGES["Negotiation/Review"] == "Contract Sent"
    for col in ("Close Date", "Create Date", *stage_cols):
        filled = deals[col][deals[col] != ""]
        assert filled.str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}").all(), col
    created = pd.to_datetime(deals["Create Date"]).dt.normalize()
    assert (created.to_numpy() == o["created_date"].to_numpy()).all()
    first_entry = pd.to_datetime(deals[stage_cols[0]].replace("", None)).dropna()
    assert len(first_entry) > 0.8 * len(o)
    won = o["status"] == "won"
    won_at = pd.to_datetime(deals.loc[won, stage_cols[5]]).dt.normalize()
    assert (won_at.to_numpy() == o.loc[won, "close_date"].to_numpy()).all()


def test_pipedrive_export(small):
    deals = demo.to_pipedrive_export(small)
    o = small["opportunities"]
    assert list(deals.columns) == [
        "Deal - ID", "Deal - Title", "Deal - Value", "Deal - Currency of Value",
        "Deal - Probability", "Deal - Organization", "Deal - Owner", "Deal - Pipeline",
        "Deal - Stage", "Deal - Status", "Deal - Deal created", "Deal - Expected close date",
        "Deal - Won time", "Deal - Lost time", "Deal - Lost reason", "Deal - Source channel",
        "Deal - Product name",
    ]  # fmt: skip
    status = o["status"].map({"open": "Open", "won": "Won", "lost": "Lost"})
    assert (deals["Deal - Status"] == status).all()
    assert deals["Deal - Stage"].isin(list(demo.PIPEDRIVE_STAGES.values())).all()
    is_open = o["status"] == "open"
    assert (
        deals.loc[is_open, "Deal - Stage"] == o.loc[is_open, "stage"].map(demo.PIPEDRIVE_STAGES)
    ).all()
    h = small["stage_history"]
    last_open = h[h["stage"].isin(OPEN_STAGES)].groupby("opportunity_id")["stage"].last()
    expected = o["opportunity_id"].map(last_open).map(demo.PIPEDRIVE_STAGES)
    assert (deals["Deal - Stage"] == expected).all()
    assert ((deals["Deal - Won time"] != "") == (o["status"] == "won")).all()
    assert ((deals["Deal - Lost time"] != "") == (o["status"] == "lost")).all()
    won_time = deals["Deal - Won time"][o["status"] == "won"]
    assert won_time.str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}").all()
