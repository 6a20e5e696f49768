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
