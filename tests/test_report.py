"""Tests of the Papermill report runner on tiny notebooks written into tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import conftest
import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pipeline_lib import config, report
from pipeline_lib.errors import PipelineError, ReportError
from pipeline_lib.report import (
    NotebookResult,
    RunLockedError,
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
    """A notebook: optional markdown heading with some prose, a parameters cell, then code."""
    title = f"# {heading}\n\nSome prose." if heading else ""
    return conftest.write_notebook(path, *body, params=params_src, heading=title)


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
    from pipeline_lib.params import plan_jobs

    nb = project["nbs"] / "b_detail.ipynb"
    (job,) = plan_jobs(load_params(project["params"]), project["params"], [nb])
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


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_failing_line_reads_the_cell_frame_of_an_ipython_traceback():
    from pipeline_lib.execution import _failing_line

    traceback = [
        "\x1b[31m---------------------------------------------------------------------------\x1b[39m",
        "\x1b[31mValueError\x1b[39m    Traceback (most recent call last)",
        "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[3]\x1b[39m\x1b[32m, line 2\x1b[39m\n"
        "\x1b[32m      1\x1b[39m y = 1\n\x1b[32m----> \x1b[39m\x1b[32m2\x1b[39m \x1b[43mf\x1b[49m(y)\n",
        "File \x1b[32m/lib.py:5\x1b[39m, in \x1b[36mf\x1b[39m\n\x1b[32m----> 5\x1b[39m raise ValueError\n",
        "\x1b[31mValueError\x1b[39m: boom",
    ]
    assert _failing_line(traceback) == "f(y)"
    assert _failing_line(["ValueError: boom"]) is None
    assert _failing_line(None) is None


def test_mode_variable_matches_the_filter_bar():
    widgets = pytest.importorskip("pipeline_lib.widgets")
    assert report.MODE_VARIABLE == widgets.MODE_VARIABLE == "PIPELINE_WORKBENCH_MODE"
    assert report.REPORT_MODE == "report"


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
    assert manifest["seconds"] > 0  # measured, not finished_at minus a fixed started_at
    assert manifest["params_file"] == str(project["params"])
    assert set(manifest["versions"]) >= {"pipeline_lib", "pandas", "papermill", "python"}
    entry = manifest["notebooks"]["a_summary"]
    assert entry["status"] == "ok" and entry["error"] is None and entry["seconds"] > 0
    assert manifest["run"] == "2025-03-04_050607" and manifest["status"] == "ok"
    assert manifest["params_sha256"] == _digest(project["params"])
    assert manifest["settings"]["workers"] == 2 and manifest["settings"]["timeout"] == 60
    assert set(manifest["versions"]) >= {
        "python",
        "pandas",
        "numpy",
        "prophet",
        "scikit-learn",
        "papermill",
        "nbconvert",
        "voila",
        "pipeline_lib",
    }
    assert manifest["versions"]["pipeline_lib"] == report_version()
    assert entry["source_sha256"] == _digest(project["nbs"] / "a_summary.ipynb")
    assert entry["executed"] == "a_summary.ipynb" and entry["html"] == "a_summary.html"
    # "source" names a file that is not a source config: fingerprinted as a plain file
    data = project["source"].read_bytes()
    (key,) = manifest["inputs"]
    assert key == str(project["source"])
    assert manifest["inputs"][key]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["inputs"][key]["size"] == len(data)
    assert manifest["inputs"][key]["used_by"] == ["a_summary"]


def report_version() -> str:
    from pipeline_lib import __version__

    return __version__


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
    # which cell (as Jupyter numbers it: parameters In [1], injected In [2], ...) and line
    assert broken.cell == 4 and broken.source_line == 'raise ValueError(f"boom {x}")'
    assert "c_broken: failed at cell In [4]: raise ValueError" in broken.describe_failure()
    assert bad.failed == (broken,)
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
    assert manifest["ok"] is False and manifest["status"] == "failed"
    assert manifest["notebooks"]["c_broken"]["error"] == "ValueError: boom 2"
    assert manifest["notebooks"]["c_broken"]["cell"] == 4
    # the index of a failed run points back at the published report
    assert 'href="../latest/index.html"' in page and "2025-03-04_050607" in page
    # nothing half-built is left behind
    assert not [p for p in reports.iterdir() if p.name.startswith(".run-")]


def test_progress_on_stderr_publish_replaces_latest_and_prunes(project, tmp_path, capsys):
    reports = tmp_path / "reports"
    result = run_reports(
        project["params"],
        notebooks=[project["nbs"] / "b_detail.ipynb"],
        reports_dir=reports,
        workers=2,
        timeout=60,
        started_at=T1,
    )
    assert result.ok and result.latest == reports / "latest" and result.pruned == ()
    captured = capsys.readouterr()
    assert captured.out == ""  # progress goes to stderr, never into reports or stdout
    lines = captured.err.splitlines()
    assert lines[0].endswith("[start] b_detail")
    assert "[ok] b_detail " in lines[1] and lines[1].endswith(" s (1/1)")
    # leftovers of a crashed run are removed by the next run
    (reports / ".run-2025-01-01_000000-dead").mkdir()
    (reports / ".latest-dead").symlink_to("nowhere")
    # publishing a second good run replaces the link atomically; keep=1 prunes the first
    again = run_reports(
        project["params"],
        notebooks=[project["nbs"] / "b_detail.ipynb"],
        reports_dir=reports,
        workers=1,
        timeout=60,
        keep=1,
        started_at=T1.replace(hour=9),
        progress=False,
    )
    assert os.readlink(again.latest) == "2025-03-05_090000"
    assert again.pruned == (reports / "2025-03-05_080000",)
    assert sorted(p.name for p in reports.iterdir()) == [".lock", "2025-03-05_090000", "latest"]
    assert capsys.readouterr().err == ""  # progress=False is silent


def test_kernels_run_in_report_mode(tmp_path):
    nb = write_notebook(
        tmp_path / "mode.ipynb",
        "x: int = 1",
        'import os\nprint("mode=" + os.environ.get("PIPELINE_WORKBENCH_MODE", "unset"))',
    )
    params = write_yaml(tmp_path / "p.yaml", {"x": 1})
    result = run_reports(params, notebooks=[nb], reports_dir=tmp_path / "r", progress=False)
    assert result.ok
    assert "mode=report" in result.results[0].executed.read_text(encoding="utf-8")
    assert "PIPELINE_WORKBENCH_MODE" not in os.environ  # the runner's own env is untouched


def test_kernels_use_unix_sockets_of_their_own_and_remove_them(tmp_path):
    # TCP ports are picked free and bound later by the kernel, so a kernel started at the
    # same moment elsewhere could take one ("Address already in use", a kernel dead
    # before its first cell); each report kernel gets its own folder of Unix sockets
    nb = write_notebook(
        tmp_path / "ipc.ipynb",
        "x: int = 1",
        "from ipykernel.kernelapp import IPKernelApp\n"
        "app = IPKernelApp.instance()\n"
        'print(f"transport={app.transport} ip={app.ip}")',
    )
    params = write_yaml(tmp_path / "p.yaml", {"x": 1})
    result = run_reports(params, notebooks=[nb], reports_dir=tmp_path / "r", progress=False)
    assert result.ok
    seen = re.findall(r"transport=(\w+) ip=([^\s\\\"]+)", result.results[0].executed.read_text())
    assert seen and seen[0][0] == "ipc"
    socket_dir = Path(seen[0][1]).parent
    assert socket_dir.name.startswith("pw-kernel-")
    assert not socket_dir.exists()  # removed with the kernel


def test_timeouts_stop_the_notebook_and_mark_it(tmp_path, monkeypatch):
    # the grace between interrupt and kill, shortened so the test stays fast
    from pipeline_lib import kernels

    monkeypatch.setattr(kernels, "_KILL_GRACE", 1.0)
    slow = write_notebook(
        tmp_path / "slow.ipynb", "x: int = 1", 'print("started")', "import time\ntime.sleep(120)"
    )
    stubborn = write_notebook(  # ignores the interrupt: must be killed
        tmp_path / "stubborn.ipynb",
        "x: int = 1",
        'print("started")',
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(120)",
    )
    params = write_yaml(tmp_path / "p.yaml", {"x": 1})
    result = run_reports(
        params,
        notebooks=[slow, stubborn],
        reports_dir=tmp_path / "reports",
        workers=2,
        timeout=12,  # whole-notebook limit; generous so a loaded machine still reaches In [4]
        started_at=T1,
        progress=False,
    )
    assert not result.ok and result.latest is None
    assert not (tmp_path / "reports" / "latest").exists()
    for r in result.results:
        assert r.status == "timeout" and r.html is None
        assert r.error == "Timeout: the notebook was still running after 12 s and was stopped"
        assert r.seconds < 60  # stopped, not waited for
        assert r.cell == 4  # In [1] parameters, In [2] injected, In [3] print, In [4] hangs
        assert "papermill-error-cell" in r.executed.read_text(encoding="utf-8")
    slow_r, stubborn_r = result.results
    assert slow_r.source_line == "time.sleep(120)"
    assert "stopped by the report runner after 12 s" in slow_r.executed.read_text(encoding="utf-8")
    marked = nbformat.read(stubborn_r.executed, as_version=4)
    errors = [o for c in marked.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert [e.ename for e in errors] == ["Timeout"]
    manifest = json.loads(result.manifest.read_text(encoding="utf-8"))
    assert manifest["notebooks"]["slow"]["status"] == "timeout"


def test_a_second_concurrent_run_is_refused(tmp_path):
    gate = tmp_path / "gate"
    nb = write_notebook(
        tmp_path / "waits.ipynb",
        "x: int = 1",
        "import pathlib, time\n"
        f"gate = pathlib.Path({str(gate)!r})\n"
        "for _ in range(600):\n"
        "    if gate.exists():\n"
        "        break\n"
        "    time.sleep(0.1)",
    )
    params = write_yaml(tmp_path / "p.yaml", {"x": 1})
    reports = tmp_path / "reports"
    outcome = {}

    def first():
        outcome["first"] = run_reports(
            params, notebooks=[nb], reports_dir=reports, timeout=120, progress=False
        )

    thread = threading.Thread(target=first)
    thread.start()
    try:
        for _ in range(600):  # until the first run holds the lock and its kernel runs
            if list(reports.glob(".run-*/waits.ipynb")):
                break
            time.sleep(0.1)
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            run_reports(params, notebooks=[nb], reports_dir=reports, progress=False)
    finally:
        gate.touch()
        thread.join(timeout=120)
    assert outcome["first"].ok  # the refused run did not disturb the first one
    assert sorted(p.name for p in reports.iterdir()) == [
        ".lock",
        outcome["first"].run_dir.name,
        "latest",
    ]


def test_widget_outputs_are_left_out_of_the_html(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("# Widgets")])
    cell = new_code_cell("bar")
    cell.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "text/plain": "HBox(children=(Dropdown(...),))",
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2},
            },
        ),
        nbformat.v4.new_output("display_data", data={"text/plain": "kept-output"}),
    ]
    nb.cells.append(cell)
    nbformat.write(nb, tmp_path / "w.ipynb")
    page = export_html(tmp_path / "w.ipynb", tmp_path / "w.html").read_text(encoding="utf-8")
    assert "kept-output" in page and "HBox" not in page and "model_id" not in page


def test_papermill_help_notebook_documents_every_published_notebook():
    papermill_bin = Path(sys.executable).parent / "papermill"
    from pipeline_lib.params import resolve_notebooks

    notebooks = resolve_notebooks(None)  # the published notebooks a run executes
    assert notebooks and all(nb.parent == config.NOTEBOOKS_DIR for nb in notebooks)
    for nb in notebooks:
        proc = subprocess.run(
            [str(papermill_bin), "--help-notebook", str(nb)],
            capture_output=True,
            text=True,
            check=False,
            cwd=config.PROJECT_ROOT,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        declared = notebook_parameters(nb)
        assert declared, f"{nb.name} has no parameters cell"
        for name, info in declared.items():
            assert f"{name}: " in proc.stdout
            assert info["help"], f"{nb.name}: parameter {name} has no '# help' comment"
            assert info["help"] in proc.stdout


def test_export_html_title_override(runs, tmp_path):
    out = export_html(runs["good"].run_dir / "b_detail.ipynb", tmp_path / "x.html", title="Custom")
    assert out == tmp_path / "x.html"
    assert "<title>Custom</title>" in out.read_text(encoding="utf-8")


def test_default_paths_come_from_config():
    import inspect

    sig = inspect.signature(run_reports)
    assert sig.parameters["params_path"].default == config.DEFAULT_PARAMS
    assert sig.parameters["reports_dir"].default == config.REPORTS_DIR


def test_report_reexports_the_runner_api():
    from pipeline_lib import errors, execution, html_export, kernels, params, publishing, results

    assert report.RunLockedError is errors.RunLockedError
    assert report.NotebookResult is results.NotebookResult
    assert report.RunResult is results.RunResult
    assert report.load_params is params.load_params
    assert report.notebook_parameters is params.notebook_parameters
    assert report.export_html is html_export.export_html
    assert report.MODE_VARIABLE is kernels.MODE_VARIABLE
    assert report.DEFAULT_KEEP == publishing.DEFAULT_KEEP == 10
    assert execution.execute_jobs.__module__ == "pipeline_lib.execution"
    assert set(report.__all__) <= set(dir(report))
