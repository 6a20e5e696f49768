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


def test_product_potential_report_reads_well(run):
    html = (run.run_dir / "01_product_potential.html").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Product potential" in text
    assert re.search(r"[\d,]+ of [\d,]+ closed deals were won", text)  # narrative with numbers
    assert "Scorecard per product" in text
    assert "What-if per product and lever, ranked" in text
    assert "accounts that bought" in text  # recommendations carry their evidence
    assert "Not available here" not in text and "This section failed" not in text
    assert "bar.show(" not in html  # no code in the report
    assert "WARNING" not in html and "Traceback" not in html
    assert html.count("<img") >= 6  # map, weights, what-if, discount bands, affinity, ...


def test_lead_yield_report_reads_well(run):
    html = (run.run_dir / "02_lead_generation_yield.html").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Lead-generation yield" in text
    assert re.search(r"[\d,]+ leads as of 2025-12-31", text)  # narrative led by numbers
    assert re.search(r"leads per win", text)
    assert "Kaplan–Meier" in text  # censoring-aware cohorts
    assert re.search(r"wins by 2026-06-30 need about [\d,]+ new leads", text)  # the calculator
    assert "of won revenue by 2026-06-30" in text  # the revenue target set in ci.yaml
    assert "Cost and return by source" in text
    assert "Stale leads most worth a follow-up" in text
    assert "Not available here" not in text and "This section failed" not in text
    assert "bar.show(" not in html  # no code in the report
    assert "WARNING" not in html and "Traceback" not in html
    assert html.count("<img") >= 8  # funnel, conversion, heatmap, curves, lags, plan, mix, ...


def test_trend_review_report_reads_well(run):
    html = (run.run_dir / "04_trend_review.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", html)
    assert "Trend review" in text and "Findings" in text
    assert "Review window" in text  # the findings summary at the top
    assert "Stage funnel and time in stage" in text
    assert "The identity end = start + created" in text  # the pipeline flow section
    assert "Velocity = opportunities" in text
    assert "This section failed" not in text
    assert "bar.show(" not in html  # no code in the report
    assert "WARNING" not in html and "Traceback" not in html
    assert html.count("<img") >= 8  # funnel, durations, bottlenecks, flow, pushes, velocity, ...


def test_sales_forecast_report_reads_well(run):
    html = (run.run_dir / "03_sales_forecast.html").read_text(encoding="utf-8")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "Sales forecast and prospect strength" in text
    assert re.search(r"Next 3 months \(\w+ \d{4} – \w+ \d{4}\):\*?\*? ?[\d,]+ USD", text)
    assert "the back-test winner" in text and "Back-test accuracy" in text
    assert re.search(r"chance of reaching it is [\d]+%", text)  # P(target)
    assert re.search(r"[\d,]+ open deals worth [\d,]+ USD", text)
    assert "pts)" in text  # the top factors of each scored deal
    assert "Win models on the time-based test period" in text
    assert "Not available here" not in text and "This section failed" not in text
    assert "bar.show(" not in html  # no code in the report
    assert "cmdstanpy" not in html and "WARNING" not in html and "Traceback" not in html
    assert "Forecasting:" not in text and "it/s" not in text  # no progress bar
    assert html.count("<img") >= 4  # history+forecast, segments, fan chart, calibration
