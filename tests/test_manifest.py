"""Tests of the run manifest: fingerprints of the files a run reads."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

from pipeline_lib import config
from pipeline_lib.manifest import input_fingerprints
from pipeline_lib.params import Job


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_input_fingerprints_follow_source_configs(tmp_path, write_config):
    (tmp_path / "opps.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (tmp_path / "crm.sqlite").write_bytes(b"not really sqlite")
    source = write_config(
        {
            "stages": {"open": ["Open"], "won": ["Won"], "lost": ["Lost"]},
            "tables": {
                "opportunities": {"path": "opps.csv"},
                "targets": {"format": "sql", "url": "sqlite:///crm.sqlite", "query": "select 1"},
                "lead_costs": {
                    "format": "sql",
                    "url": "postgresql://bob:s3cret@db.example/crm",
                    "query": "select 1",
                },
                "stage_history": {"wide_from": "opportunities"},
            },
        },
        "src.yaml",
    )
    plain = write_config({"not": "a source config"}, "plain.yaml")
    jobs = [
        Job("nb1", tmp_path / "nb1.ipynb", {"source_config": str(source), "as_of": "2025-12-31"}),
        Job("nb2", tmp_path / "nb2.ipynb", {"source_config": str(source), "n": 3}),
        Job("nb3", tmp_path / "nb3.ipynb", {"extra": "pyproject.toml", "more": [str(plain)]}),
    ]
    inputs = input_fingerprints(jobs)
    assert set(inputs) == {
        str(source),
        str(tmp_path / "opps.csv"),
        str(tmp_path / "crm.sqlite"),
        "sql:postgresql://bob:***@db.example/crm",
        "pyproject.toml",  # relative values are taken against the project root
        str(plain),
    }
    config_entry = inputs[str(source)]
    assert config_entry["kind"] == "source config"
    assert config_entry["sha256"] == _digest(source)
    assert config_entry["used_by"] == ["nb1", "nb2"]
    opps = inputs[str(tmp_path / "opps.csv")]
    assert opps["kind"] == "table" and opps["tables"] == ["opportunities"]
    assert opps["size"] == 8 and opps["sha256"] == _digest(tmp_path / "opps.csv")
    mtime = (tmp_path / "opps.csv").stat().st_mtime
    assert datetime.fromisoformat(opps["mtime"]).timestamp() == pytest.approx(mtime, abs=1)
    db = inputs[str(tmp_path / "crm.sqlite")]
    assert db["tables"] == ["targets"] and db["sha256"] == _digest(tmp_path / "crm.sqlite")
    server = inputs["sql:postgresql://bob:***@db.example/crm"]
    assert server["kind"] == "database" and "sha256" not in server
    assert "s3cret" not in json.dumps(inputs)  # the password is never written
    pyproject = config.PROJECT_ROOT / "pyproject.toml"
    assert inputs["pyproject.toml"]["path"] == str(pyproject)
    assert inputs["pyproject.toml"]["sha256"] == _digest(pyproject)
    assert inputs[str(plain)]["kind"] == "file"


def test_input_fingerprints_record_missing_table_files(tmp_path, write_config):
    source = write_config(
        {
            "stages": {"open": ["Open"], "won": ["Won"], "lost": ["Lost"]},
            "tables": {"opportunities": {"path": "gone.csv"}},
        },
        "src.yaml",
    )
    inputs = input_fingerprints([Job("nb", tmp_path / "nb.ipynb", {"s": str(source)})])
    assert inputs[str(tmp_path / "gone.csv")]["error"] == "file not found"


def _manifest_args(tmp_path: Path) -> dict:
    from pipeline_lib.results import NotebookResult

    nb = tmp_path / "nb.ipynb"
    nb.write_text("{}", encoding="utf-8")
    params = tmp_path / "p.yaml"
    params.write_text("x: 1\n", encoding="utf-8")
    job = Job("nb", nb, {"x": 1})
    result = NotebookResult("nb", "ok", 1.0, tmp_path / "nb.ipynb", tmp_path / "nb.html", None)
    when = datetime(2025, 1, 1)
    return {
        "run_name": "2025-01-01_000000",
        "started_at": when,
        "finished_at": when,
        "seconds": 1.0,
        "params_path": params,
        "jobs": [job],
        "results": (result,),
        "ok": True,
        "inputs": {},
        "settings": {},
    }


def test_manifest_survives_inputs_that_vanished_during_the_run(tmp_path):
    from pipeline_lib.manifest import write_manifest

    args = _manifest_args(tmp_path)
    args["params_path"].unlink()
    args["jobs"][0].path.unlink()
    path = write_manifest(tmp_path, **args)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    assert manifest["params_sha256"] is None
    assert manifest["notebooks"]["nb"]["source_sha256"] is None


def test_manifest_that_cannot_be_written_is_a_write_error(tmp_path, monkeypatch):
    import errno

    from pipeline_lib.manifest import write_manifest
    from pipeline_lib.publishing import ReportWriteError

    args = _manifest_args(tmp_path)

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(ReportWriteError, match="No space left on device") as info:
        write_manifest(tmp_path, **args)
    assert info.value.errno == errno.ENOSPC
    assert info.value.path == tmp_path / "manifest.json"
