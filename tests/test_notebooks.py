"""Every published notebook runs end to end through the runner on a small demo data set."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from pipeline_lib import config, report

NOTEBOOKS = sorted(config.NOTEBOOKS_DIR.glob("*.ipynb"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(small_demo, tmp_path_factory):
    """One runner pass over every notebook with params/ci.yaml, on the small demo."""
    tmp = tmp_path_factory.mktemp("nbrun")
    params = yaml.safe_load((config.PARAMS_DIR / "ci.yaml").read_text())
    params["source_config"] = str(small_demo)
    params_path = tmp / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    return report.run_reports(params_path, reports_dir=tmp / "reports", workers=2, timeout=600)


def test_every_notebook_succeeds(run):
    failed = {r.name: r.error for r in run.results if r.status != "ok"}
    assert not failed, failed
    assert {r.name for r in run.results} == {p.stem for p in NOTEBOOKS}
    assert run.latest is not None and (run.latest / "index.html").exists()


def test_data_quality_report_reads_well(run):
    html = (run.run_dir / "00_data_quality.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", html)
    assert "Data quality" in text
    assert re.search(r"[\d,]+ rows read, [\d,]+ loaded, [\d,]+ rejected", text)
    assert "report footer line" in text  # the demo exports carry Salesforce footers
    assert "Win rate" in text
    assert "day-first (set in the source config)" in text  # how the leads dates were read
    assert "load_dataset(" not in html  # no code in the report
    assert "cmdstanpy" not in html and "WARNING" not in html  # no log noise
    assert "<img" in html  # the figures are embedded


def test_manifest_records_parameters(run, small_demo):
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["ok"] is True
    text = json.dumps(manifest)
    assert str(small_demo) in text
