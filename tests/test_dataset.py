"""as_of snapshots: exact with stage history, best effort (and said so) without."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline_lib.dataset import load_dataset, to_timestamp

OPPS = (
    "opportunity_id,stage,created_date,close_date,amount,lost_reason\n"
    "O1,Won,2025-01-01,2025-03-01,150,\n"
    "O2,Lost,2025-02-20,2025-02-25,80,Price\n"
    "O3,Proposal,2025-03-10,2025-05-01,60,\n"
    "O4,Lost,,2025-01-15,10,Timing\n"
)
HIST = (
    "opportunity_id,stage,entered_at,amount,close_date\n"
    "O1,Prospecting,2025-01-01,100,2025-02-15\n"
    "O1,Proposal,2025-02-01,120,2025-02-20\n"
    "O1,Won,2025-03-01,150,2025-03-01\n"
    "O2,Prospecting,2025-02-20,80,2025-03-31\n"
    "O2,Lost,2025-02-25,,\n"
)
STAGES = {"open": ["Prospecting", "Proposal"], "won": ["Won"], "lost": ["Lost"]}


@pytest.fixture
def config(write_file, write_config):
    def _make(with_history: bool):
        write_file("opps.csv", OPPS)
        tables = {"opportunities": {"path": "opps.csv"}}
        if with_history:
            write_file("hist.csv", HIST)
            tables["stage_history"] = {"path": "hist.csv"}
        return write_config({"stages": STAGES, "tables": tables})

    return _make


def _by_id(ds):
    return ds.opportunities.set_index("opportunity_id")


def test_snapshot_with_history_is_exact(config):
    ds = load_dataset(config(True), as_of=None)
    snap = ds.snapshot("2025-02-10")
    o = _by_id(snap)
    # O2 and O3 were created after as_of; O4 has no created date and is kept
    assert sorted(o.index) == ["O1", "O4"]
    assert o.loc["O1", "stage"] == "Proposal" and o.loc["O1", "status"] == "open"
    assert o.loc["O1", "amount"] == 120.0
    assert o.loc["O1", "close_date"] == pd.Timestamp("2025-02-20")
    assert bool(o.loc["O1", "snapshot_exact"])
    assert o.loc["O4", "status"] == "lost"  # closed before as_of: unchanged
    assert snap.stage_history["entered_at"].max() <= pd.Timestamp("2025-02-10")
    assert snap.as_of == pd.Timestamp("2025-02-10")
    # the original dataset is untouched
    assert _by_id(ds).loc["O1", "status"] == "won" and len(ds.opportunities) == 4


def test_snapshot_on_close_day_sees_the_close(config):
    o = _by_id(load_dataset(config(True), as_of="2025-02-25"))
    assert o.loc["O2", "status"] == "lost"
    assert o.loc["O1", "status"] == "open"
    o = _by_id(load_dataset(config(True), as_of="2025-02-24"))
    assert o.loc["O2", "status"] == "open" and o.loc["O2", "stage"] == "Prospecting"
    assert pd.isna(o.loc["O2", "lost_reason"])  # not known yet
    assert o.loc["O2", "close_date"] == pd.Timestamp("2025-03-31")  # expected then


def test_snapshot_without_history_is_best_effort_and_says_so(config):
    snap = load_dataset(config(False), as_of="2025-02-10")
    o = _by_id(snap)
    assert o.loc["O1", "status"] == "open"
    assert o.loc["O1", "stage"] == "Proposal"  # the last open stage
    assert not bool(o.loc["O1", "snapshot_exact"])
    assert o.loc["O1", "amount"] == 150.0  # final amount kept as the expected one
    assert any("best effort" in n for n in snap.notes)


def test_as_of_is_required_and_checked():
    with pytest.raises(ValueError, match="as_of"):
        to_timestamp(None)
    with pytest.raises(ValueError, match="not a date"):
        to_timestamp("yesterday-ish")
    assert to_timestamp("2025-12-31T23:00:00+02:00") == pd.Timestamp("2025-12-31")


def test_filter_by_date_range_and_segment(config, write_file, write_config):
    ds = load_dataset(config(True), as_of=None)
    # created 2025-01-01 (O1), 2025-02-20 (O2), 2025-03-10 (O3), missing (O4)
    f = ds.filter(start="2025-02-01", end="2025-03-10")
    assert sorted(f.opportunities["opportunity_id"]) == ["O2", "O3"]  # both bounds inclusive
    assert set(f.stage_history["opportunity_id"]) == {"O2"}  # O3 has no history rows
    assert "Filtered to created_date 2025-02-01 to 2025-03-10: 2 opportunities." in f.notes
    g = ds.filter(stage=["Won", "Lost"])
    assert sorted(g.opportunities["opportunity_id"]) == ["O1", "O2", "O4"]
    assert ds.filter(stage=None) is ds  # nothing active: the same dataset
    assert len(ds.opportunities) == 4  # the original is untouched
    with pytest.raises(ValueError, match="no such column"):
        ds.filter(team="EMEA")


def test_filter_applies_to_leads_by_their_own_columns(write_file, write_config):
    write_file("opps.csv", OPPS)
    write_file(
        "leads.csv",
        "lead_id,created_date,source\nL1,2025-01-05,Web\nL2,2025-02-05,Event\nL3,2025-03-05,Web\n",
    )
    path = write_config(
        {
            "stages": STAGES,
            "tables": {"opportunities": {"path": "opps.csv"}, "leads": {"path": "leads.csv"}},
        }
    )
    ds = load_dataset(path, as_of=None)
    f = ds.filter(start="2025-02-01")
    assert sorted(f.leads["lead_id"]) == ["L2", "L3"]
    # leads have no 'stage' column: a stage filter leaves them whole
    assert len(ds.filter(stage="Won").leads) == 3
