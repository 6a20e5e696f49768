"""Tests of the reports folder housekeeping: the run lock and pruning old runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline_lib.errors import ReportError, RunLockedError
from pipeline_lib.publishing import prune, run_lock


def _ignore(line: str) -> None:
    """A ``note`` callback that drops the line."""


def _fake_run(reports: Path, name: str) -> Path:
    run = reports / name
    run.mkdir(parents=True)
    (run / "manifest.json").write_text("{}", encoding="utf-8")
    return run


def test_prune_keeps_newest_runs_and_latest_target(tmp_path):
    reports = tmp_path / "reports"
    names = [
        "2025-01-01_000000",
        "2025-01-02_000000",
        "2025-01-02_000000-2",
        "2025-01-02_000000-10",  # suffix 10 sorts after 2 (numeric, not text order)
        "2025-01-03_000000",
        "2025-01-04_000000",
    ]
    runs = {n: _fake_run(reports, n) for n in names}
    (reports / "latest").symlink_to("2025-01-02_000000")
    (reports / "2020-01-01_000000").mkdir()  # no manifest: not a run folder, never touched
    (reports / "notes").mkdir()
    removed = prune(reports, keep=2, current=runs["2025-01-04_000000"], note=_ignore)
    assert sorted(p.name for p in removed) == [
        "2025-01-01_000000",
        "2025-01-02_000000-10",
        "2025-01-02_000000-2",
    ]
    assert sorted(p.name for p in reports.iterdir()) == [
        "2020-01-01_000000",
        "2025-01-02_000000",  # latest's target survives although it is old
        "2025-01-03_000000",
        "2025-01-04_000000",
        "latest",
        "notes",
    ]


def test_prune_never_deletes_the_current_run(tmp_path):
    reports = tmp_path / "reports"
    old = _fake_run(reports, "2000-01-01_000000")  # a run started with an old timestamp
    _fake_run(reports, "2025-01-01_000000")
    assert prune(reports, keep=1, current=old, note=_ignore) == ()


def test_lock_refuses_a_second_run_and_names_the_holder(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    params = tmp_path / "p.yaml"
    with run_lock(reports, params_path=params):
        holder = json.loads((reports / ".lock").read_text(encoding="utf-8"))
        assert holder["pid"] == os.getpid() and holder["params_file"] == str(params)
        with pytest.raises(RunLockedError) as info, run_lock(reports, params_path=params):
            pass
        message = str(info.value)
        assert f"pid {os.getpid()}" in message and holder["started_at"] in message
        assert "another report run is in progress" in message
        assert info.value.holder["pid"] == os.getpid()
        assert isinstance(info.value, ReportError)
    # released: the next run gets it, and the lock file no longer names a holder
    assert (reports / ".lock").read_text(encoding="utf-8") == ""
    with run_lock(reports, params_path=params):
        pass
