"""The benchmark harness (benchmarks/run.py): a tiny run end to end, and its summaries.

Timings are never asserted (speed lives in benchmarks/README.md); these tests check that
the harness runs, writes the JSON it documents, that the DuckDB reference agrees with our
functions, and that the README's generated section is rewritten without touching the rest.
"""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from pipeline_lib.config import PROJECT_ROOT

BENCH = PROJECT_ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import _reference  # noqa: E402
import _report  # noqa: E402
import _tasks  # noqa: E402

_spec = importlib.util.spec_from_file_location("benchmarks_run", BENCH / "run.py")
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


@pytest.mark.slow
def test_tiny_run_writes_results_and_the_reference_agrees(tmp_path):
    out, readme = tmp_path / "results.json", tmp_path / "README.md"
    readme.write_text(
        f"# Benchmarks\n\nHand-written intro.\n\n{_report.START}\nold\n{_report.END}\n\n"
        "## Before/after\n\nKept as written.\n",
        encoding="utf-8",
    )
    status = run.main(
        [
            "--scales",
            "300",
            "--repeat",
            "1",
            "--tasks",
            "ref.funnel_by_source.ours,ref.funnel_by_source.duckdb",
            "--out",
            str(out),
            "--readme",
            str(readme),
            "--data-dir",
            str(tmp_path / "data"),
            "--timeout",
            "120",
        ]
    )
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert status == 0, [e.get("error") for e in doc["results"]]
    assert doc["schema"] == run.SCHEMA_VERSION
    assert {"date", "command", "git", "machine", "options", "scales", "results"} <= set(doc)
    assert {"cpu_model", "cores", "ram_gb", "python", "packages"} <= set(doc["machine"])
    assert {"pandas", "numpy", "duckdb"} <= set(doc["machine"]["packages"])
    assert doc["command"].startswith("python benchmarks/run.py --scales 300")
    assert doc["scales"]["300"]["n_opportunities"] == 300
    assert doc["scales"]["300"]["rows"]["opportunities"] == 300
    assert [(e["task"], e["scale"]) for e in doc["results"]] == [
        ("ref.funnel_by_source.ours", "300"),
        ("ref.funnel_by_source.duckdb", "300"),
    ]
    for e in doc["results"]:
        assert e["status"] == "ok" and e["repeats"] == 1 and e["ok_repeats"] == 1
        assert set(e["seconds"]) == {"median", "min", "max"}
        assert e["seconds"]["min"] <= e["seconds"]["median"] <= e["seconds"]["max"]
        assert e["peak_rss_mb"]["max"] >= e["setup_rss_mb"]["max"] > 0
    # the DuckDB SQL counts the same leads at each funnel step as compute_funnel
    (ref,) = doc["reference"]
    assert ref["aggregate"] == "funnel_by_source" and ref["agree"] is True
    assert ref["ratio"] == pytest.approx(ref["ours"] / ref["duckdb"])
    ours = next(e for e in doc["results"] if e["task"] == "ref.funnel_by_source.ours")
    assert (
        sum(row["lead"] for row in ours["digest"].values())
        == (doc["scales"]["300"]["rows"]["leads"])
    )
    text = readme.read_text(encoding="utf-8")
    assert "Hand-written intro." in text and "Kept as written." in text and "\nold\n" not in text
    assert "| `ref.funnel_by_source.ours` |" in text and "| funnel_by_source | 300 |" in text
    # --render rewrites the README from the JSON alone
    readme.write_text("# B\n", encoding="utf-8")
    assert run.main(["--render", "--out", str(out), "--readme", str(readme)]) == 0
    assert _report.START in readme.read_text(encoding="utf-8")


def test_scales_and_task_selection():
    assert [run.parse_scale(s) for s in ("10k", "100k", "1M", "2500", "1.5k")] == [
        10_000,
        100_000,
        1_000_000,
        2_500,
        1_500,
    ]
    for bad in ("ten", "10x", "50"):
        with pytest.raises(ValueError, match="--scales"):
            run.parse_scale(bad)
    assert _tasks.select("load") == ["load_csv", "load_parquet"]
    assert _tasks.select("ref.time_in_stage") == [
        "ref.time_in_stage.ours",
        "ref.time_in_stage.duckdb",
        "ref.time_in_stage.duckdb_parquet",
    ]
    assert _tasks.select("scoring,load_csv") == ["load_csv", "scoring"]  # canonical order
    assert _tasks.select(None) == list(_tasks.TASKS)
    with pytest.raises(ValueError, match="unknown task or group 'nope'"):
        _tasks.select("nope")
    # data tasks at every scale, the 100-segment forecast once, demo tasks once
    assert run.plan(["quality", "forecast_100_serial", "report_suite"], ["10k", "100k"]) == [
        ("quality", "10k"),
        ("forecast_100_serial", "10k"),
        ("quality", "100k"),
        ("report_suite", "demo"),
    ]


def _entry(task, scale, seconds=None, status="ok", peak=100.0, error=None):
    e = {"task": task, "scale": scale, "status": status, "ok_repeats": 1}
    if seconds is not None:
        e["seconds"] = {"median": seconds, "min": seconds, "max": seconds}
        e["peak_rss_mb"] = {"median": peak, "max": peak}
    if error:
        e["error"] = error
    return e


def test_growth_reference_and_targets_from_a_synthetic_run():
    scales = {"100k": {"n_opportunities": 100_000}, "1M": {"n_opportunities": 1_000_000}}
    digest = {"Web": {"lead": 10, "mql": 5, "sql": 3, "opportunity": 2, "won": 1}}
    results = [
        _entry("load_parquet", "100k", 0.5),
        _entry("load_parquet", "1M", 4.0, peak=9000.0),
        _entry("scoring", "100k", 10.0),
        _entry("scoring", "1M", None, status="timeout", error="timeout: longer than 900 s"),
        {**_entry("ref.funnel_by_source.ours", "1M", 2.0), "digest": digest},
        {**_entry("ref.funnel_by_source.duckdb", "1M", 0.5), "digest": digest},
        _entry("forecast_100_serial", "100k", 100.0),
        _entry("forecast_100_parallel", "100k", 55.0),
    ]
    grow = {(g["task"], g["to"]): g for g in _report.growth(results, scales, timeout=900)}
    assert grow[("load_parquet", "1M")]["per_10x"] == pytest.approx(8.0)
    assert grow[("scoring", "1M")]["per_10x_at_least"] == pytest.approx(90.0)
    (ref,) = _report.reference_summary(results)
    assert ref["ratio"] == pytest.approx(4.0) and ref["agree"] is True
    doc = {
        "results": results,
        "scales": scales,
        "machine": {"cores": 2},
        "reference": [ref],
        "forecast_speedup": _report.forecast_speedup(results),
        "growth": list(grow.values()),
    }
    status = {t["target"]: t["status"] for t in _report.targets(doc)}
    assert status["Load from Parquet at 1M ≤ 5 s"] == "pass"
    assert status["scoring core computations at 1M ≤ 10 s"] == "FAIL"
    assert status["quality core computations at 1M ≤ 10 s"] == "not measured"
    assert status["Peak memory at 1M ≤ 8 GB"] == "FAIL"  # 9000 MB > 8 GB
    assert status["10× more data costs ≤ 12× more time"] == "FAIL"  # scoring timed out
    assert status["funnel_by_source: ours within 3× of DuckDB"] == "FAIL"  # 4x
    assert status["Forecasting 100 segments in parallel ≥ 1.6× faster than serially"] == "pass"
    assert status["Full report suite on the default demo ≤ 60 s"] == "not measured"


def test_reference_comparison_names_what_differs():
    ours = {"Won": {"visits": 3, "median_days": 2.0}}
    assert _reference.compare("time_in_stage", ours, {"Won": {"visits": 3, "median_days": 2.0}})[0]
    ok, detail = _reference.compare(
        "time_in_stage", ours, {"Won": {"visits": 4, "median_days": 2.0}}
    )
    assert not ok and "Won.visits: ours 3, reference 4" in detail
    ok, detail = _reference.compare("time_in_stage", ours, {"Lost": {"visits": 3}})
    assert not ok and "groups differ" in detail


def test_merge_keeps_earlier_results_and_row_counts():
    def entry(task, scale, seconds):
        return {"task": task, "scale": scale, "status": "ok", "seconds": {"median": seconds}}

    old = {
        "schema": 1,
        "date": "d1",
        "command": "c1",
        "git": {"commit": "abc"},
        "scales": {"1M": {"n_opportunities": 1_000_000, "rows": {"leads": 4}}},
        "results": [entry("load_parquet", "1M", 3.0), entry("quality", "1M", 0.2)],
    }
    new = {  # a later run of one task, which needed no data: no row counts
        "schema": 1,
        "options": {},
        "scales": {"1M": {"n_opportunities": 1_000_000}},
        "results": [entry("quality", "1M", 0.1)],
    }
    merged = _report.merge(old, new)
    assert merged["scales"]["1M"]["rows"] == {"leads": 4}
    got = {(e["task"], e["scale"]): e["seconds"]["median"] for e in merged["results"]}
    assert got == {("load_parquet", "1M"): 3.0, ("quality", "1M"): 0.1}
    kept = next(e for e in merged["results"] if e["task"] == "load_parquet")
    assert kept["measured"] == {"date": "d1", "commit": "abc"}
    assert merged["history"] == [{"date": "d1", "command": "c1", "commit": "abc"}]
