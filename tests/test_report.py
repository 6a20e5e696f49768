"""Tests of the Papermill report runner on tiny notebooks written into tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pipeline_lib import config
from pipeline_lib.errors import PipelineError, ReportError
from pipeline_lib.report import (
    NotebookResult,
    RunResult,
    export_html,
    load_params,
    notebook_parameters,
    run_reports,
)

pytestmark = pytest.mark.slow

T0 = datetime(2025, 3, 4, 5, 6, 7)
T1 = datetime(2025, 3, 5, 8, 0, 0)


def write_notebook(path: Path, params_src: str, *body: str, heading: str | None = None) -> Path:
    """Write a notebook: optional markdown heading, a parameters cell, then code cells."""
    cells = [new_markdown_cell(f"# {heading}\n\nSome prose.")] if heading else []
    params = new_code_cell(params_src)
    params.metadata["tags"] = ["parameters"]
    cells += [params, *(new_code_cell(src) for src in body)]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two good notebooks and one failing notebook in one folder, plus an input file."""
    root = tmp_path_factory.mktemp("project")
    nbs = root / "notebooks"
    nbs.mkdir()
    source = root / "source.yaml"
    source.write_text("tables: {}\n", encoding="utf-8")
    write_notebook(
        nbs / "a_summary.ipynb",
        'x: int = 1  # how many\nsource: str = ""  # source config',
        'import textwrap\nprint("printed-value", x * 10)',
        'import sys, warnings\nprint("stderr-noise", file=sys.stderr)\nwarnings.warn("warn-noise")',
        "{'answer': x + 1}",
        heading="Summary Report",
    )
    write_notebook(
        nbs / "b_detail.ipynb",
        "x: int = 1  # how many\ny: str = 'default'  # label",
        'import os\nprint(f"detail x={x} y={y}")\nprint("cwd=" + os.getcwd())',
        heading="Detail",
    )
    write_notebook(
        nbs / "c_broken.ipynb",
        "x: int = 1  # how many",
        'print("before failure")',
        'raise ValueError(f"boom {x}")',
        heading="Broken",
    )
    params = write_yaml(
        root / "params.yaml",
        {"x": 2, "y": "shared", "source": str(source), "notebooks": {"b_detail": {"x": 7}}},
    )
    return {"root": root, "nbs": nbs, "params": params, "source": source}


@pytest.fixture(scope="module")
def runs(project):
    """An all-ok run, then a failing run (same timestamp) into the same reports folder."""
    reports = project["root"] / "reports"
    nbs = project["nbs"]
    good = run_reports(
        project["params"],
        notebooks=[nbs / "a_summary.ipynb", nbs / "b_detail.ipynb"],
        reports_dir=reports,
        workers=2,
        timeout=60,
        started_at=T0,
    )
    bad = run_reports(
        project["params"],
        notebooks=[nbs / "c_broken.ipynb", nbs / "b_detail.ipynb"],
        reports_dir=reports,
        workers=2,
        timeout=60,
        started_at=T0,
    )
    return {"reports": reports, "good": good, "bad": bad}


# --------------------------------------------------------------------------- no kernel


def test_load_params_reads_globals_and_overrides(tmp_path):
    path = write_yaml(tmp_path / "p.yaml", {"a": 1, "notebooks": {"nb": {"a": 2}, "other": None}})
    assert load_params(path) == {"a": 1, "notebooks": {"nb": {"a": 2}, "other": {}}}
    (tmp_path / "empty.yaml").write_text("", encoding="utf-8")
    assert load_params(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- 1\n- 2\n", "must be a mapping"),
        ("a: [1,\n", "not valid YAML"),
        ("notebooks: [a, b]\n", "'notebooks' must map"),
        ("notebooks:\n  nb: 3\n", "overrides for notebook 'nb'"),
    ],
)
def test_load_params_rejects_bad_files(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ReportError, match=message):
        load_params(path)


def test_load_params_missing_file(tmp_path):
    with pytest.raises(ReportError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    assert issubclass(ReportError, PipelineError)


def test_notebook_parameters(project):
    declared = notebook_parameters(project["nbs"] / "b_detail.ipynb")
    assert set(declared) == {"x", "y"}
    assert declared["x"]["help"] == "how many"
    assert declared["x"]["inferred_type_name"] == "int"
    with pytest.raises(ReportError, match="not found"):
        notebook_parameters(project["nbs"] / "missing.ipynb")


def test_unknown_parameter_is_an_error(project, tmp_path):
    params = write_yaml(tmp_path / "p.yaml", {"x": 1, "tpyo": 3})
    with pytest.raises(ReportError, match="tpyo"):
        run_reports(params, notebooks=[project["nbs"] / "b_detail.ipynb"], reports_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [params]  # nothing ran, no run folder


def test_parameter_of_a_sibling_notebook_is_accepted_when_running_a_subset(project, tmp_path):
    # "source" is declared only by a_summary; running b_detail alone must not reject it.
    from pipeline_lib.report import _plan

    nb = project["nbs"] / "b_detail.ipynb"
    (job,) = _plan(load_params(project["params"]), project["params"], [nb])
    assert job.parameters == {"x": 7, "y": "shared"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"nope": {"x": 1}}, "unknown notebook 'nope'"), ({"b_detail": {"source": "s"}}, "source")],
)
def test_bad_overrides_are_errors(project, tmp_path, overrides, message):
    params = write_yaml(tmp_path / "p.yaml", {"x": 1, "notebooks": overrides})
    with pytest.raises(ReportError, match=message):
        run_reports(params, notebooks=[project["nbs"] / "b_detail.ipynb"], reports_dir=tmp_path)


def test_unknown_notebook_name_is_an_error(project, tmp_path):
    with pytest.raises(ReportError, match="not found"):
        run_reports(project["params"], notebooks=["no_such_notebook"], reports_dir=tmp_path)


def test_input_fingerprints_resolve_relative_values_against_project_root(tmp_path):
    from pipeline_lib.report import _input_fingerprints, _Job

    extra = tmp_path / "extra.csv"
    extra.write_text("a,b\n1,2\n", encoding="utf-8")
    params = {"source": "pyproject.toml", "as_of": "2025-12-31", "n": 3, "files": [str(extra)]}
    inputs = _input_fingerprints([_Job("nb", tmp_path / "nb.ipynb", params)])
    assert set(inputs) == {"pyproject.toml", str(extra)}
    pyproject = config.PROJECT_ROOT / "pyproject.toml"
    assert inputs["pyproject.toml"]["path"] == str(pyproject)
    assert inputs["pyproject.toml"]["size"] == pyproject.stat().st_size
    assert inputs["pyproject.toml"]["sha256"] == hashlib.sha256(pyproject.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- real runs


def test_ok_run_writes_everything_and_publishes_latest(runs, project):
    good: RunResult = runs["good"]
    reports = runs["reports"]
    assert good.ok
    assert good.run_dir == reports / "2025-03-04_050607"
    assert [r.name for r in good.results] == ["a_summary", "b_detail"]
    for r in good.results:
        assert isinstance(r, NotebookResult)
        assert r.status == "ok" and r.error is None and r.seconds > 0
        assert r.executed == good.run_dir / f"{r.name}.ipynb" and r.executed.is_file()
        assert r.html == good.run_dir / f"{r.name}.html" and r.html.is_file()
    assert (good.run_dir / "index.html").is_file()
    assert good.index == good.run_dir / "index.html"


def test_parameters_filtered_per_notebook_with_overrides(runs, project):
    manifest = json.loads((runs["good"].run_dir / "manifest.json").read_text())
    nbs = manifest["notebooks"]
    assert nbs["a_summary"]["parameters"] == {"x": 2, "source": str(project["source"])}
    assert nbs["b_detail"]["parameters"] == {"x": 7, "y": "shared"}
    executed = nbformat.read(runs["good"].run_dir / "b_detail.ipynb", as_version=4)
    text = "".join(
        o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "detail x=7 y=shared\n" in text
    # each kernel runs in its notebook's folder; the runner's own cwd is untouched
    assert f"cwd={project['nbs']}\n" in text
    assert Path.cwd() != project["nbs"]


def test_html_has_outputs_but_no_code_and_no_stderr(runs):
    page = (runs["good"].run_dir / "a_summary.html").read_text(encoding="utf-8")
    assert "printed-value 20" in page  # stdout output
    assert "answer" in page  # execute_result
    assert "Summary Report" in page  # markdown heading
    assert "<title>Summary Report</title>" in page
    for code in ('print("printed-value"', "print(&quot;printed-value", "import textwrap"):
        assert code not in page
    assert "stderr-noise" not in page and "warn-noise" not in page
    # the report opens offline: no script is fetched from anywhere
    assert "<script src=" not in page and "cdnjs" not in page
    # the executed notebook itself keeps the stderr output
    assert "stderr-noise" in (runs["good"].run_dir / "a_summary.ipynb").read_text()


def test_manifest_records_run(runs, project):
    manifest = json.loads((runs["good"].run_dir / "manifest.json").read_text())
    assert manifest["started_at"] == "2025-03-04T05:06:07"
    assert manifest["finished_at"] and manifest["ok"] is True
    assert manifest["params_file"] == str(project["params"])
    assert set(manifest["versions"]) >= {"pipeline_lib", "pandas", "papermill", "python"}
    entry = manifest["notebooks"]["a_summary"]
    assert entry["status"] == "ok" and entry["error"] is None and entry["seconds"] > 0
    data = project["source"].read_bytes()
    assert manifest["inputs"] == {
        str(project["source"]): {
            "path": str(project["source"]),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
        }
    }


def test_index_lists_notebooks(runs):
    page = (runs["good"].run_dir / "index.html").read_text(encoding="utf-8")
    assert 'href="a_summary.html"' in page and 'href="b_detail.html"' in page
    assert "<style>" in page and "http" not in page  # inline CSS, no external assets


def test_failed_run_keeps_executed_notebook_and_previous_latest(runs):
    bad: RunResult = runs["bad"]
    reports = runs["reports"]
    assert not bad.ok and bad.latest is None
    assert bad.run_dir == reports / "2025-03-04_050607-2"  # same timestamp: suffixed
    broken, detail = bad.results
    assert broken.status == "failed" and broken.html is None
    assert broken.error == "ValueError: boom 2"
    assert broken.executed.is_file()
    executed = broken.executed.read_text(encoding="utf-8")
    assert "boom 2" in executed and "papermill-error-cell" in executed
    assert detail.status == "ok"
    # latest still points at the good run, through a relative link
    latest = reports / "latest"
    assert latest.is_symlink()
    assert os.readlink(latest) == "2025-03-04_050607"
    assert latest.resolve() == runs["good"].run_dir
    assert runs["good"].latest == latest
    page = (bad.run_dir / "index.html").read_text(encoding="utf-8")
    assert 'href="c_broken.ipynb"' in page and "ValueError: boom 2" in page and "failed" in page
    manifest = json.loads((bad.run_dir / "manifest.json").read_text())
    assert manifest["ok"] is False
    assert manifest["notebooks"]["c_broken"]["error"] == "ValueError: boom 2"


def test_progress_lines_printed(project, tmp_path, capsys):
    result = run_reports(
        project["params"],
        notebooks=[project["nbs"] / "b_detail.ipynb"],
        reports_dir=tmp_path / "reports",
        workers=2,
        timeout=60,
        started_at=T1,
    )
    assert result.ok and result.latest == tmp_path / "reports" / "latest"
    out = capsys.readouterr().out
    assert out.startswith("[ok] b_detail ") and out.rstrip().endswith(" s")
    # publishing a second good run replaces the link atomically
    again = run_reports(
        project["params"],
        notebooks=[project["nbs"] / "b_detail.ipynb"],
        reports_dir=tmp_path / "reports",
        workers=1,
        timeout=60,
        started_at=T1.replace(hour=9),
    )
    assert os.readlink(again.latest) == "2025-03-05_090000"
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "2025-03-05_080000",
        "2025-03-05_090000",
        "latest",
    ]


def test_timeout_fails_the_notebook(tmp_path):
    nb = write_notebook(tmp_path / "slow.ipynb", "x: int = 1", "import time\ntime.sleep(60)")
    params = write_yaml(tmp_path / "p.yaml", {"x": 1})
    result = run_reports(
        params, notebooks=[nb], reports_dir=tmp_path / "reports", timeout=1, started_at=T1
    )
    (slow,) = result.results
    assert not result.ok and slow.status == "failed"
    assert slow.error.startswith("CellTimeoutError: ") and "\n" not in slow.error
    assert slow.seconds < 30 and slow.executed.is_file()
    assert not (tmp_path / "reports" / "latest").exists()


def test_export_html_title_override(runs, tmp_path):
    out = export_html(runs["good"].run_dir / "b_detail.ipynb", tmp_path / "x.html", title="Custom")
    assert out == tmp_path / "x.html"
    assert "<title>Custom</title>" in out.read_text(encoding="utf-8")


def test_default_paths_come_from_config():
    import inspect

    sig = inspect.signature(run_reports)
    assert sig.parameters["params_path"].default == config.DEFAULT_PARAMS
    assert sig.parameters["reports_dir"].default == config.REPORTS_DIR
