"""as_of snapshots: exact with stage history, best effort (and said so) without."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from pipeline_lib.dataset import Dataset, load_dataset, to_timestamp
from pipeline_lib.sources import StageConfig

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


# --------------------------------------------------------------------------- at scale
# Snapshots and filters use the cached position of each history row's deal and group
# maxima instead of sorting; these compare them with the plain definition.


def _random_dataset(seed: int, *, repeat_an_id: bool) -> Dataset:
    rng = np.random.default_rng(seed)
    n = 25
    ids = [f"O{i:02d}" for i in range(n)]
    if repeat_an_id:
        ids[5] = ids[4]  # two deals with one id: positions cannot stand for ids
    created = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 60, n), unit="D")
    stage = rng.choice(["Prospecting", "Proposal", "Won", "Lost"], n)
    opps = pd.DataFrame(
        {
            "opportunity_id": pd.Series(ids, dtype="str"),
            "stage": pd.Series(stage, dtype="str"),
            "status": pd.Series(
                np.select([stage == "Won", stage == "Lost"], ["won", "lost"], "open"), dtype="str"
            ),
            "created_date": created,
            "close_date": created + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
            "amount": rng.integers(1, 9, n) * 10.0,
            "lost_reason": pd.Series(np.where(stage == "Lost", "Price", None), dtype="str"),
        }
    )
    m = 90  # history rows: ties on a day, missing amounts/dates, ids of no deal
    hist = pd.DataFrame(
        {
            "opportunity_id": pd.Series(rng.choice([*ids, "ORPHAN"], m), dtype="str"),
            "stage": pd.Series(
                rng.choice(["Prospecting", "Proposal", "Won", "Lost"], m), dtype="str"
            ),
            "entered_at": pd.Timestamp("2025-01-01")
            + pd.to_timedelta(rng.integers(0, 120, m) // 7 * 7, unit="D"),
            "amount": np.where(rng.random(m) < 0.3, np.nan, rng.integers(1, 9, m) * 10.0),
            "close_date": pd.Series(
                pd.Timestamp("2025-03-01") + pd.to_timedelta(rng.integers(0, 90, m), unit="D")
            ).where(rng.random(m) > 0.3),
        }
    )
    empty = pd.DataFrame()
    stages = StageConfig(open=("Prospecting", "Proposal"), won=("Won",), lost=("Lost",))
    return Dataset(
        tables={"opportunities": opps, "stage_history": hist},
        rejects=empty,
        warnings=empty,
        counts=empty,
        stages=stages,
    )


def _expected_opportunities(ds: Dataset, as_of: str) -> pd.DataFrame:
    """The definition: last history row per deal after a stable sort by id and date."""
    end = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    opps = ds.opportunities.loc[~(ds.opportunities["created_date"] >= end)]
    hist = ds.stage_history.loc[ds.stage_history["entered_at"] < end]
    closed_later = opps["status"].isin(["won", "lost"]) & (opps["close_date"] >= end)
    last = (
        hist.sort_values(["opportunity_id", "entered_at"], kind="stable")
        .groupby("opportunity_id", sort=False)
        .last()
    )
    ids = opps["opportunity_id"]
    has_hist = ids.isin(last.index)
    redo = has_hist & (closed_later | opps["status"].eq("open"))
    opps = opps.assign(
        snapshot_exact=True, stage=opps["stage"].where(~redo, ids.map(last["stage"]))
    )
    for col in ("amount", "close_date"):
        then = ids.map(last[col])
        opps[col] = opps[col].where(~(redo & then.notna()), then)
    guess = closed_later & ~has_hist
    opps.loc[guess, "stage"] = "Proposal"
    opps.loc[guess, "snapshot_exact"] = False
    status = opps["stage"].map(ds.stages.status_of, na_action="ignore")
    opps["status"] = status.where(status.notna(), opps["status"]).astype("str")
    opps["lost_reason"] = opps["lost_reason"].where(~closed_later, pd.NA)
    return opps.reset_index(drop=True)


@pytest.mark.parametrize("repeat_an_id", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_snapshot_matches_the_sort_and_group_definition(seed, repeat_an_id):
    ds = _random_dataset(seed, repeat_an_id=repeat_an_id)
    for as_of in ("2025-01-20", "2025-02-15", "2025-03-31", "2025-12-31"):
        for _ in range(2):  # the second time from the cached positions
            snap = ds.snapshot(as_of)
            assert_frame_equal(snap.opportunities, _expected_opportunities(ds, as_of))
    # a copy of the same data (new table objects) gives the same answer
    copy = replace(ds, tables={k: v.copy() for k, v in ds.tables.items()})
    assert_frame_equal(
        copy.snapshot("2025-02-15").opportunities, ds.snapshot("2025-02-15").opportunities
    )


@pytest.mark.parametrize("repeat_an_id", [False, True])
def test_filter_keeps_the_history_of_the_deals_kept(repeat_an_id):
    ds = _random_dataset(4, repeat_an_id=repeat_an_id)
    f = ds.filter(stage=["Won", "Proposal"])
    hist = ds.stage_history
    expected = hist.loc[hist["opportunity_id"].isin(f.opportunities["opportunity_id"])]
    assert_frame_equal(f.stage_history, expected.reset_index(drop=True))
    assert "ORPHAN" not in set(f.stage_history["opportunity_id"])
    # snapshots of the filtered data (positions carried over by the filter) are those of
    # a copy that works them out afresh
    fresh = replace(f, tables={k: v.copy() for k, v in f.tables.items()})
    for as_of in ("2025-02-15", "2025-12-31"):
        assert_frame_equal(f.snapshot(as_of).opportunities, fresh.snapshot(as_of).opportunities)
        assert_frame_equal(f.snapshot(as_of).opportunities, _expected_opportunities(fresh, as_of))


def test_filter_splits_lead_spend_by_the_columns_it_has():
    # spend: Web Jan 100, Web Apr 50, Event Jan 40; the deals have source and team
    costs = pd.DataFrame(
        {
            "period": pd.to_datetime(["2025-01-01", "2025-04-01", "2025-01-01"]),
            "source": pd.Series(["Web", "Web", "Event"], dtype="str"),
            "cost": [100.0, 50.0, 40.0],
        }
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": pd.Series(["O1", "O2"], dtype="str"),
            "stage": pd.Series(["Won", "Lost"], dtype="str"),
            "status": pd.Series(["won", "lost"], dtype="str"),
            "created_date": pd.to_datetime(["2025-01-10", "2025-04-10"]),
            "close_date": pd.to_datetime(["2025-02-01", "2025-05-01"]),
            "amount": [1.0, 2.0],
            "source": pd.Series(["Web", "Event"], dtype="str"),
            "team": pd.Series(["EMEA", "US"], dtype="str"),
        }
    )
    empty = pd.DataFrame()
    stages = StageConfig(open=("Open",), won=("Won",), lost=("Lost",), aliases={})
    ds = Dataset(
        tables={"opportunities": opps, "lead_costs": costs},
        rejects=empty,
        warnings=empty,
        counts=empty,
        stages=stages,
    )
    web = ds.filter(source="Web").table("lead_costs")
    assert web["cost"].tolist() == [100.0, 50.0] and "not_split_by" not in web.attrs
    q1 = ds.filter(start="2025-01-01", end="2025-03-31").table("lead_costs")
    assert q1["cost"].tolist() == [100.0, 40.0]  # periods by their first day
    # no team column in the spend: kept whole, marked and said
    emea = ds.filter(source=["Web", "Event"], team="EMEA")
    assert emea.table("lead_costs")["cost"].sum() == 190.0
    assert emea.table("lead_costs").attrs["not_split_by"] == ("team",)
    assert any("not recorded per team" in n for n in emea.notes)
    # the mark survives a further filter and a snapshot
    again = emea.filter(source="Web").snapshot("2025-02-28").table("lead_costs")
    assert again["cost"].tolist() == [100.0] and again.attrs["not_split_by"] == ("team",)
    assert costs["cost"].tolist() == [100.0, 50.0, 40.0] and costs.attrs == {}  # untouched
