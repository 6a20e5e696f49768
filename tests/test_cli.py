"""Tests of the ``pipeline-workbench`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pipeline_lib import config
from pipeline_lib.cli import main


def _notebook(path: Path, *body: str) -> Path:
    params = new_code_cell("x: int = 1  # how many")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        cells=[new_markdown_cell(f"# {path.stem}"), params, *map(new_code_cell, body)]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path):
    _notebook(tmp_path / "good.ipynb", 'print("x is", x)')
    _notebook(tmp_path / "bad.ipynb", 'raise RuntimeError(f"nope {x}")')
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"x": 3}), encoding="utf-8")
    return tmp_path


def _run(project: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--params",
        str(project / "params.yaml"),
        "--reports-dir",
        str(project / "reports"),
        "--workers",
        "2",
        "--timeout",
        "60",
        *extra,
    ]


@pytest.mark.slow
def test_run_all_ok_exits_0(project, capsys):
    code = main(_run(project, "--notebook", str(project / "good.ipynb")))
    out = capsys.readouterr().out
    assert code == 0
    assert "[ok] good" in out
    (run_dir,) = [p for p in (project / "reports").iterdir() if p.name != "latest"]
    assert f"report: {run_dir / 'index.html'}" in out
    assert (project / "reports" / "latest").resolve() == run_dir


@pytest.mark.slow
def test_run_with_failing_notebook_exits_1(project, capsys):
    code = main(_run(project, "--notebook", str(project / "bad.ipynb")))
    captured = capsys.readouterr()
    assert code == 1
    assert "RuntimeError: nope 3" in captured.out
    assert "report: " in captured.out and "Traceback" not in captured.out + captured.err
    assert not (project / "reports" / "latest").exists()


@pytest.mark.parametrize(
    ("params", "extra", "message"),
    [
        ({"x": 3, "typo": 1}, (), "typo"),
        ({"x": 3}, ("--notebook", "no_such_notebook"), "no_such_notebook"),
        (None, (), "parameters file not found"),
    ],
)
def test_config_errors_exit_2_without_traceback(project, capsys, params, extra, message):
    path = project / "params.yaml"
    if params is None:
        path.unlink()
    else:
        path.write_text(yaml.safe_dump(params), encoding="utf-8")
    nb = extra or ("--notebook", str(project / "good.ipynb"))
    code = main(_run(project, *nb))
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: ") and message in captured.err
    assert "Traceback" not in captured.err
    assert not (project / "reports").exists() or not any((project / "reports").iterdir())


@pytest.mark.parametrize("argv", [["run", "--workers", "0"], ["run", "--bogus"], ["nope"], []])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("run", ["--params", "--notebook", "--reports-dir", "--workers", "--timeout"]),
        ("demo", ["--out", "--n-opportunities", "--seed", "--force"]),
    ],
)
def test_help_documents_every_option(command, options, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out
    assert main(["--help"]) == 0
    assert command in capsys.readouterr().out


def test_run_arguments_are_passed_through(monkeypatch, tmp_path, capsys):
    import pipeline_lib.report as report

    seen = {}

    def fake_run_reports(params_path, **kwargs):
        seen.update(kwargs, params_path=params_path)
        run_dir = tmp_path / "r"
        return report.RunResult(run_dir=run_dir, results=(), ok=True, latest=None)

    monkeypatch.setattr(report, "run_reports", fake_run_reports)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--params", "p.yaml", "--notebook", "00_data_quality"]) == 0
    assert seen["params_path"] == tmp_path / "p.yaml"  # relative to the current directory
    assert seen["notebooks"] == ["00_data_quality"]
    assert seen["reports_dir"] == config.REPORTS_DIR
    assert seen["workers"] is None and seen["timeout"] == 600
    assert seen["started_at"] is not None


@pytest.mark.parametrize(("generated", "word"), [(True, "generated"), (False, "is current")])
def test_demo_calls_ensure_demo(monkeypatch, tmp_path, capsys, generated, word):
    calls = []

    def ensure_demo(out_dir=config.DEMO_DIR, *, n_opportunities=5000, seed=42, force=False):
        calls.append((out_dir, n_opportunities, seed, force))
        return generated

    fake = types.ModuleType("pipeline_lib.demo")
    fake.ensure_demo = ensure_demo
    monkeypatch.setitem(sys.modules, "pipeline_lib.demo", fake)
    argv = ["demo", "--out", str(tmp_path), "--n-opportunities", "50", "--seed", "7", "--force"]
    assert main(argv) == 0
    assert calls == [(tmp_path, 50, 7, True)]
    assert word in capsys.readouterr().out


def test_python_dash_m_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline_lib", "run", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0
    assert "--reports-dir" in proc.stdout
