"""Tests of the ``pipeline-workbench`` command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml
from conftest import write_notebook

from pipeline_lib import config
from pipeline_lib.cli import main


@pytest.fixture
def project(tmp_path):
    write_notebook(tmp_path / "good.ipynb", 'print("x is", x)')
    write_notebook(tmp_path / "bad.ipynb", 'raise RuntimeError(f"nope {x}")')
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
    captured = capsys.readouterr()
    assert code == 0
    assert "[start] good" in captured.err and "[ok] good" in captured.err  # progress: stderr
    (run_dir,) = [p for p in (project / "reports").iterdir() if p.name not in ("latest", ".lock")]
    assert f"report: {run_dir / 'index.html'}" in captured.out
    assert f"latest -> {run_dir.name}" in captured.out
    assert (project / "reports" / "latest").resolve() == run_dir


@pytest.mark.slow
def test_quiet_run_prints_nothing_on_success(project, capsys):
    code = main(_run(project, "--notebook", str(project / "good.ipynb"), "--quiet"))
    captured = capsys.readouterr()
    assert code == 0 and captured.out == "" and captured.err == ""
    assert (project / "reports" / "latest").is_symlink()


@pytest.mark.slow
def test_run_with_failing_notebook_exits_1_and_says_where(project, capsys):
    assert main(_run(project, "--notebook", str(project / "good.ipynb"), "-q")) == 0
    before = os.readlink(project / "reports" / "latest")
    code = main(_run(project, "--notebook", str(project / "bad.ipynb"), "--quiet"))
    captured = capsys.readouterr()
    assert code == 1
    err = captured.err
    assert err.startswith("FAILED: 1 of 1 notebook(s) did not succeed")
    assert f"'latest' still points at {before} (unchanged)" in err
    # which notebook, which cell (In [1] parameters, [2] injected, [3] body), which line
    assert 'bad: failed at cell In [3]: raise RuntimeError(f"nope {x}")' in err
    assert "RuntimeError: nope 3" in err
    (failed_run,) = [
        p for p in (project / "reports").iterdir() if p.name not in ("latest", ".lock", before)
    ]
    assert f"executed notebook, error marked: {failed_run / 'bad.ipynb'}" in err
    assert f"report of this run: {failed_run / 'index.html'}" in err
    assert "Traceback" not in captured.out + err
    assert os.readlink(project / "reports" / "latest") == before


def test_run_refused_while_another_run_holds_the_lock_exits_3(project, capsys):
    from pipeline_lib.publishing import run_lock

    reports = project / "reports"
    reports.mkdir()
    with run_lock(reports, params_path=project / "params.yaml"):
        code = main(_run(project, "--notebook", str(project / "good.ipynb")))
    captured = capsys.readouterr()
    assert code == 3
    assert captured.err.startswith("error: another report run is in progress")
    assert f"pid {os.getpid()}" in captured.err and "Traceback" not in captured.err
    assert sorted(p.name for p in reports.iterdir()) == [".lock"]  # nothing ran


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


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--workers", "0"],
        ["run", "--keep", "-1"],
        ["run", "--timeout", "soon"],
        ["run", "--bogus"],
        ["nope"],
        [],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "options"),
    [
        (
            "run",
            [
                "--params",
                "--notebook",
                "--reports-dir",
                "--workers",
                "--timeout",
                "--keep",
                "--quiet",
            ],
        ),
        ("demo", ["--out", "--n-opportunities", "--seed", "--force"]),
        ("dashboards", ["--params", "--port", "--ip", "--staging-dir"]),
    ],
)
def test_help_documents_every_option(command, options, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    for option in options:
        assert option in out
    if command == "run":
        # each option shows its default; the epilog has examples and every exit status
        assert " ".join(out.split()).count("(default: ") >= 7
        assert "examples:" in out and "exit status:" in out
        for code in ("0 ", "1 ", "2 ", "3 ", "130 "):
            assert f"\n  {code}" in out
        assert "papermill --help-notebook" in out and ".lock" in out
    assert main(["--help"]) == 0
    top = capsys.readouterr().out
    assert command in top and "exit status:" in top


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
    assert seen["keep"] == 10 and seen["progress"] is True
    assert seen["started_at"] is not None
    seen.clear()
    assert main(["run", "--timeout", "0", "--keep", "0", "--quiet"]) == 0
    assert seen["timeout"] is None and seen["keep"] == 0 and seen["progress"] is False


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


@pytest.mark.slow
def test_sigterm_stops_the_run_kills_the_kernel_and_publishes_nothing(project):
    pid_file = project / "kernel.pid"
    write_notebook(
        project / "hangs.ipynb",
        f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(300)",
    )
    reports = project / "reports"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline_lib",
            *_run(project, "--notebook", str(project / "hangs.ipynb")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        for _ in range(1200):  # until the kernel runs the hanging cell
            if pid_file.exists() and pid_file.read_text():
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        kernel_pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    # ipykernel's "running over TCP without encryption" warning never reaches the console
    assert "without encryption" not in err and "IPKernelApp" not in err
    assert sorted(p.name for p in reports.iterdir()) == [".lock"]  # no run folder, no latest
    for _ in range(100):  # the kernel is gone (killed with its process group)
        try:
            os.kill(kernel_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"kernel {kernel_pid} still alive after the run was stopped")


def test_dashboards_command_reports_a_bad_parameter_file(tmp_path, capsys):
    code = main(
        ["dashboards", "--params", str(tmp_path / "missing.yaml"), "--staging-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "error: parameters file not found" in err and "Traceback" not in err


def _fake_server(monkeypatch) -> list:
    """Record the commands ``dashboards`` would start instead of starting a server."""
    import pipeline_lib.dashboards as dashboards

    started = []

    class Server:  # a server that has already stopped
        def __init__(self, command, env=None):
            started.append((list(command), env))

        def wait(self, timeout=None):
            return 0

        poll = wait

    monkeypatch.setattr(dashboards.subprocess, "Popen", Server)
    return started


def test_dashboards_command_passes_server_options_to_the_server(monkeypatch, tmp_path, capsys):
    started = _fake_server(monkeypatch)
    staging = tmp_path / "served"
    argv = [
        "dashboards",
        "--staging-dir",
        str(staging),
        "--WorkbenchKernelManager.max_kernels=30",
        "--port=8870",
        "--VoilaExecutor.timeout=300",
    ]
    assert main(argv) == 0
    ((command, env),) = started
    folder = command.index(str(staging))
    assert command[folder + 1 :] == [
        f"--Voila.config_file_paths={config.NOTEBOOKS_DIR}",
        "--no-browser",
        "--port=8870",  # one of the command's own options
        "--WorkbenchKernelManager.max_kernels=30",  # the server options, in their order
        "--VoilaExecutor.timeout=300",
    ]
    assert env["PIPELINE_WORKBENCH_MODE"] == "dashboard"
    served = sorted(p.name for p in staging.iterdir())
    assert served and all(name[:2].isdigit() for name in served)  # published notebooks only
    assert f"serving {len(served)} dashboard(s)" in capsys.readouterr().err


def test_dashboards_command_without_server_options_adds_none(monkeypatch, tmp_path):
    started = _fake_server(monkeypatch)
    assert main(["dashboards", "--staging-dir", str(tmp_path / "served")]) == 0
    ((command, _),) = started
    assert command[-2:] == [f"--Voila.config_file_paths={config.NOTEBOOKS_DIR}", "--no-browser"]


@pytest.mark.parametrize(
    ("argv", "unknown"),
    [
        (["dashboards", "--bogus"], "--bogus"),
        # a server option needs its value after '=': '--Class.trait value' is refused
        (
            ["dashboards", "--WorkbenchKernelManager.max_kernels", "30"],
            "--WorkbenchKernelManager.max_kernels 30",
        ),
        (
            ["run", "--WorkbenchKernelManager.max_kernels=30"],
            "--WorkbenchKernelManager.max_kernels=30",
        ),
        (["export", "--as-of", "2025-12-31", "--out", "x.csv", "--Foo.bar=1"], "--Foo.bar=1"),
    ],
)
def test_unknown_options_are_usage_errors(monkeypatch, capsys, argv, unknown):
    started = _fake_server(monkeypatch)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: unrecognized arguments: {unknown}" in err and "Traceback" not in err
    assert ("--Class.trait=value" in err) == (argv[0] == "dashboards")  # the hint
    assert started == []
