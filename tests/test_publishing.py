"""Tests of the reports folder housekeeping: the run lock and pruning old runs."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline_lib.errors import ReportError, RunLockedError
from pipeline_lib.publishing import (
    ReportWriteError,
    explain_write_failure,
    is_write_failure,
    prepare_latest,
    prune,
    publish,
    remove_leftovers,
    run_lock,
    switch_latest,
)


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


# --------------------------------------------------------------------------- write failures


@pytest.mark.parametrize(
    ("code", "what", "advice"),
    [
        (errno.ENOSPC, "the disk is full", "--keep"),
        (errno.EDQUOT, "quota", "raise the quota"),
        (errno.EFBIG, "ulimit -f", "ulimit -f"),
        (errno.EROFS, "the file system is read-only", "Remount it read-write"),
        (errno.EACCES, "the folder is read-only for", "--reports-dir"),
        (errno.EPERM, "the folder is read-only for", "--reports-dir"),
        (errno.EIO, os.strerror(errno.EIO), "Fix the cause"),
        (None, "an input/output error", "Fix the cause"),
    ],
)
def test_write_failures_are_explained(code, what, advice):
    said, todo = explain_write_failure(code)
    assert what in said and advice in todo and todo.endswith("run again.")


def test_report_write_error_from_an_os_error():
    exc = ReportWriteError.from_os_error(
        OSError(errno.EROFS, "Read-only file system", "/r/.lock"), doing="open /r/.lock"
    )
    assert isinstance(exc, ReportError)
    assert str(exc) == "cannot open /r/.lock: Read-only file system"
    assert exc.errno == errno.EROFS and exc.path == Path("/r/.lock")
    assert is_write_failure(OSError(errno.ENOSPC, "full"))
    assert not is_write_failure(OSError(errno.ENOENT, "missing"))
    assert not is_write_failure(ValueError("not an OSError"))


def test_an_unopenable_lock_file_is_a_write_error(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    reports.mkdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(reports / ".lock"))

    monkeypatch.setattr(os, "open", read_only)
    with (
        pytest.raises(ReportWriteError, match="cannot open the lock file") as info,
        run_lock(reports, params_path=tmp_path / "p.yaml"),
    ):
        pass
    assert info.value.errno == errno.EROFS


def test_the_lock_works_and_is_released_when_its_file_cannot_be_written(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    reports.mkdir()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    monkeypatch.setattr(os, "ftruncate", full)
    with (  # who holds the lock is written best effort
        run_lock(reports, params_path=tmp_path / "p.yaml"),
        pytest.raises(RunLockedError, match="its details are not written yet"),
        run_lock(reports, params_path=tmp_path / "p.yaml"),
    ):
        pass
    with run_lock(reports, params_path=tmp_path / "p.yaml"):  # released
        pass


def test_switch_latest_failure_removes_the_temporary_link(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    _fake_run(reports, "2025-01-01_000000")
    link = prepare_latest(reports, "2025-01-01_000000")
    assert link.is_symlink() and link.name.startswith(".latest-")

    def refused(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(ReportWriteError, match="cannot update"):
        switch_latest(reports, link)
    assert sorted(p.name for p in reports.iterdir()) == ["2025-01-01_000000"]
    monkeypatch.undo()
    latest = publish(reports, reports / "2025-01-01_000000")
    assert os.readlink(latest) == "2025-01-01_000000"
    assert sorted(p.name for p in reports.iterdir()) == ["2025-01-01_000000", "latest"]


def test_prune_sets_a_run_aside_before_deleting_it(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    _fake_run(reports, "2025-01-01_000000")
    current = _fake_run(reports, "2025-01-02_000000")
    notes = []

    def fails(path, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(shutil, "rmtree", fails)
    removed = prune(reports, keep=1, current=current, note=notes.append)
    monkeypatch.undo()
    # out of view at once (hidden), even though the deletion failed; the next run retries
    assert removed == (reports / "2025-01-01_000000",)
    names = sorted(p.name for p in reports.iterdir())
    assert names[0].startswith(".pruned-2025-01-01_000000-") and names[1:] == ["2025-01-02_000000"]
    assert "the next run retries" in notes[0]
    remove_leftovers(reports, note=notes.append)
    assert sorted(p.name for p in reports.iterdir()) == ["2025-01-02_000000"]


def test_remove_leftovers_clears_unfinished_runs_and_temporary_links(tmp_path):
    reports = tmp_path / "reports"
    keep = _fake_run(reports, "2025-01-01_000000")
    (reports / ".run-2025-01-02_000000-abcd").mkdir()
    (reports / ".pruned-2024-01-01_000000-abcd").mkdir()
    (reports / ".latest-0123").symlink_to("2025-01-01_000000")
    (reports / ".run-not-a-folder").symlink_to("2025-01-01_000000")  # a link: not ours
    notes = []
    remove_leftovers(reports, note=notes.append)
    assert sorted(p.name for p in reports.iterdir()) == [".run-not-a-folder", keep.name]
    assert notes == [
        "removed the unfinished folder of an interrupted run: .run-2025-01-02_000000-abcd"
    ]
