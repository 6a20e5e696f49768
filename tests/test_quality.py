"""Data-quality summaries and headline KPIs on a tiny hand-checked data set."""

from __future__ import annotations

import math

import pytest

from pipeline_lib import quality
from pipeline_lib.dataset import load_dataset

OPPS = (
    "opportunity_id,stage,created_date,close_date,amount\n"
    "A,Won,2025-01-01,2025-01-31,100\n"  # cycle 30
    "B,Won,2025-02-01,2025-03-12,300\n"  # cycle 39
    "C,Won,2025-03-01,2025-03-11,\n"  # won, no amount, cycle 10
    "D,Lost,2025-01-01,2025-02-01,50\n"
    "E,Open,2025-03-01,2025-06-01,1000\n"
    "F,Open,2025-03-05,2025-06-01,\n"
    "G,Won,2023-01-01,2023-02-01,999\n"  # outside the window
    "A,Won,2025-01-01,2025-01-31,100\n"  # duplicate -> rejected
)


@pytest.fixture
def ds(write_file, write_config):
    write_file("o.csv", OPPS)
    cfg = write_config(
        {
            "stages": {"open": ["Open"], "won": ["Won"], "lost": ["Lost"]},
            "tables": {"opportunities": {"path": "o.csv"}},
        }
    )
    return load_dataset(cfg, as_of=None)


def test_headline_kpis_by_hand(ds):
    k = quality.compute_headline_kpis(ds, as_of="2025-03-31", window_days=365).set_index("metric")
    assert k.loc["open pipeline", "value"] == 1000.0
    assert k.loc["open pipeline", "n"] == 2 and k.loc["open pipeline", "skipped"] == 1
    assert k.loc["won revenue", "value"] == 400.0
    assert k.loc["won revenue", "n"] == 3 and k.loc["won revenue", "skipped"] == 1
    assert k.loc["win rate", "value"] == pytest.approx(0.75)
    assert k.loc["win rate", "n"] == 4
    # Wilson 95 % for 3/4: (0.3006, 0.9544)
    assert k.loc["win rate", "ci_low"] == pytest.approx(0.3006, abs=1e-4)
    assert k.loc["win rate", "ci_high"] == pytest.approx(0.9544, abs=1e-4)
    assert k.loc["average won deal", "value"] == 200.0
    assert k.loc["median sales cycle", "value"] == 30.0


def test_kpis_as_of_earlier_date_do_not_see_the_future(ds):
    k = quality.compute_headline_kpis(ds, as_of="2025-02-15", window_days=60).set_index("metric")
    # closed in (2024-12-17, 2025-02-15]: A won, D lost; B (closed 03-12) is open then
    assert k.loc["win rate", "value"] == 0.5
    assert k.loc["open pipeline", "n"] == 1  # B
    assert k.loc["open pipeline", "value"] == 300.0


def test_kpis_with_nothing_closed(ds):
    k = quality.compute_headline_kpis(ds, as_of="2024-06-30", window_days=30).set_index("metric")
    assert k.loc["win rate", "n"] == 0 and math.isnan(k.loc["win rate", "value"])
    text = quality.describe_quality(quality.compute_load_summary(ds), k.reset_index())
    assert "No deals closed" in text


def test_load_summary_and_reasons(ds):
    s = quality.compute_load_summary(ds).set_index("table")
    assert (s.loc["opportunities", "read"], s.loc["opportunities", "loaded"]) == (8, 7)
    assert s.loc["opportunities", "rejected"] == 1
    assert s.loc["opportunities", "warned_rows"] == 2  # C and F miss an amount
    r = quality.compute_reject_reasons(ds)
    assert r.to_dict("records") == [
        {
            "table": "opportunities",
            "column": "opportunity_id",
            "reason": "duplicate opportunity_id",
            "rows": 1,
            "example_rows": "9",
        }
    ]
    cov = quality.compute_table_coverage(ds).set_index("table")
    assert bool(cov.loc["opportunities", "present"]) and not bool(cov.loc["leads", "present"])
    assert "not available" in cov.loc["leads", "without_it"]


def test_window_must_be_positive(ds):
    with pytest.raises(ValueError, match="window_days"):
        quality.compute_headline_kpis(ds, as_of="2025-03-31", window_days=0)
