"""Faults under the report runner (issue 9): the previous good report survives them all.

Each slow test starts from a good run (one real run per module, copied into the test's
own project: a ``reports/`` folder with a dated run and ``latest`` pointing at it), then
injects one fault into a second run of ``python -m pipeline_lib run``, then checks

* the exit status and the message (what happened, what to do, never a traceback),
* that ``reports/latest`` still points at the good run and its files are unchanged,
* that nothing is half-published: no new run folder unless it is a complete record of a
  failed run (manifest ``status: failed``, index "not published"), no temporary
  ``latest`` link, an unfinished run folder at most as a hidden ``.run-*`` leftover,
* that the lock is released and no kernel process is left behind,
* and that a rerun (once the cause is gone) succeeds and clears any leftover.

Faults: a kernel that dies (SIGKILL, ``os._exit``), a notebook hanging past its
timeout, a full reports folder (``RLIMIT_FSIZE``: writes fail with EFBIG; and, where
``mount`` is permitted, a tiny tmpfs: ENOSPC), a read-only reports folder (EACCES with
the runner's DAC override capability dropped, since the tests run as root; EROFS with a
read-only bind mount where permitted), each before the run and in the middle of it, and
an interrupt (SIGINT to the process group as Ctrl-C sends it, SIGTERM to every process
of the run as ``systemctl stop`` sends it), and the runner itself killed (SIGKILL: no
handler runs; the next run clears what it left). The fast tests at the end inject an
interrupt or a full disk at each step of finishing and publishing a run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import write_notebook

from pipeline_lib import kernels, publishing, report
from pipeline_lib.cli import main
from pipeline_lib.publishing import run_lock
from pipeline_lib.results import NotebookResult

EXIT_FAILED = 1
EXIT_UNWRITABLE = 4
EXIT_INTERRUPTED = 130

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2


# --------------------------------------------------------------------------- helpers


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Project:
    """A tmp project: notebooks, a parameters file, a reports folder with a good run."""

    root: Path

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def pid_file(self) -> Path:
        return self.root / "kernels.pid"

    def notebook(self, name: str, *body: str) -> Path:
        """A notebook whose first cell records its kernel's pid, then ``body``."""
        record = f"import os\nwith open({str(self.pid_file)!r}, 'a') as fh:\n    fh.write(f'{{os.getpid()}}\\n')"
        return write_notebook(self.root / f"{name}.ipynb", record, *body)

    def argv(self, *notebooks: Path, timeout: int = 120) -> list[str]:
        nbs = [a for nb in notebooks for a in ("--notebook", str(nb))]
        return [
            "run",
            "--params",
            str(self.params),
            "--reports-dir",
            str(self.reports),
            "--workers",
            "2",
            "--timeout",
            str(timeout),
            *nbs,
        ]

    def kernel_pids(self) -> list[int]:
        if not self.pid_file.exists():
            return []
        return [int(line) for line in self.pid_file.read_text().split()]

    def snapshot(self) -> tuple[str, dict[str, tuple[str, int]]]:
        """Where ``latest`` points and the sha256 and mtime of every file there."""
        target = os.readlink(self.reports / "latest")
        run = self.reports / target
        files = {
            str(p.relative_to(run)): (_sha256(p), p.stat().st_mtime_ns)
            for p in sorted(run.rglob("*"))
            if p.is_file()
        }
        return target, files


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """One real good run; each test copies its reports folder."""
    root = tmp_path_factory.mktemp("good")
    project = Project(root)
    project.params.write_text(yaml.safe_dump({"x": 3}), encoding="utf-8")
    nb = write_notebook(root / "good.ipynb", 'print("x is", x)')
    assert main([*project.argv(nb), "--quiet"]) == 0
    return project.reports


@pytest.fixture
def project(tmp_path, good_run) -> Project:
    project = Project(tmp_path)
    project.params.write_text(yaml.safe_dump({"x": 3}), encoding="utf-8")
    write_notebook(tmp_path / "good.ipynb", 'print("x is", x)')
    shutil.copytree(good_run, project.reports, symlinks=True)
    return project


@pytest.fixture
def previous(project) -> tuple[str, dict[str, tuple[str, int]]]:
    """The good run before the fault."""
    target, files = project.snapshot()
    assert {"index.html", "manifest.json", "good.html", "good.ipynb"} <= set(files)
    return target, files


def assert_previous_intact(project: Project, previous) -> None:
    assert (project.reports / "latest").is_symlink()
    assert project.snapshot() == previous  # same target, same bytes, untouched files


def new_entries(project: Project, previous) -> tuple[list[Path], list[Path]]:
    """(new dated folders, hidden leftovers) after a faulty run; asserts nothing else."""
    target, _ = previous
    dated, hidden = [], []
    for path in project.reports.iterdir():
        if path.name in (".lock", "latest", target):
            continue
        assert not path.name.startswith(".latest"), f"temporary latest link left: {path}"
        if path.name.startswith(".run-"):
            hidden.append(path)
        else:
            dated.append(path)
    return dated, hidden


def assert_nothing_published(project: Project, previous, *, leftover_ok: bool = False) -> None:
    """No new run folder at all; at most a hidden unfinished one when it cannot be removed."""
    dated, hidden = new_entries(project, previous)
    assert dated == []
    if not leftover_ok:
        assert hidden == []
    for path in hidden:  # never a complete run: it was stopped before being renamed
        assert not (path / "manifest.json").exists() or not (path / "index.html").exists()


def assert_failed_run_recorded(project: Project, previous) -> Path:
    """A failed run keeps one dated folder, marked failed and not published."""
    dated, hidden = new_entries(project, previous)
    assert hidden == []
    (run,) = dated
    manifest = json.loads((run / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["status"] == "failed" and manifest["ok"] is False
    page = (run / "index.html").read_text(encoding="utf-8")
    assert "This run was not published" in page and previous[0] in page
    return run


def assert_lock_released(project: Project, *, by_the_system: bool = False) -> None:
    """The lock is free; a runner that exited cleanly also cleared its details."""
    if not by_the_system:
        assert (project.reports / ".lock").read_text(encoding="utf-8") == ""
    with run_lock(project.reports, params_path=project.params):
        pass


def assert_kernels_gone(pids) -> None:
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid) if isinstance(pid, int) else pid)
    _, alive = psutil.wait_procs(procs, timeout=20)
    alive = [p for p in alive if _status(p) not in (None, psutil.STATUS_ZOMBIE)]
    assert not alive, f"processes of the run still alive: {alive}"


def _status(proc: psutil.Process) -> str | None:
    try:
        return proc.status()
    except psutil.NoSuchProcess:
        return None


def rerun_succeeds(project: Project, capsys, *notebooks: Path) -> None:
    """The same run again, fault removed: exit 0, latest moves, leftovers are cleared."""
    capsys.readouterr()
    code = main(project.argv(*(notebooks or (project.root / "good.ipynb",))))
    out, err = capsys.readouterr()
    assert code == 0, err
    latest = project.reports / "latest"
    run = latest.resolve()
    assert f"latest -> {run.name}" in out
    assert json.loads((run / "manifest.json").read_text(encoding="utf-8"))["status"] == "ok"
    assert (run / "index.html").is_file()
    names = [p.name for p in project.reports.iterdir()]
    assert not [n for n in names if n.startswith((".run-", ".latest"))], names
    assert_lock_released(project)


def run_cli(
    project: Project,
    argv: list[str],
    *,
    preexec_fn: Callable[[], None] | None = None,
    until: Callable[[], bool] | None = None,
    then: Callable[[subprocess.Popen, list[psutil.Process]], None] | None = None,
) -> tuple[int, str, list[psutil.Process]]:
    """Run ``python -m pipeline_lib`` in a subprocess; every process it started is returned.

    ``until``/``then``: once ``until()`` holds, ``then(proc, its_children)`` is called
    (used to send signals).
    """
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "IPYTHONDIR": str(project.root / ".ipython")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline_lib", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=project.root,
        preexec_fn=preexec_fn,
        start_new_session=True,
    )
    seen: dict[int, psutil.Process] = {}
    try:
        parent = psutil.Process(proc.pid)
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(psutil.Error):
                for child in parent.children(recursive=True):
                    seen.setdefault(child.pid, child)
            if until is not None and until():
                then(proc, list(seen.values()))
                until = None
            time.sleep(0.1)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, output, list(seen.values())


def _as_root() -> bool:
    return os.geteuid() == 0


def _drop_dac_override() -> None:
    """preexec_fn: root without CAP_DAC_OVERRIDE obeys file permissions like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture(scope="module")
def obey_permissions() -> Callable[[], None] | None:
    """A preexec_fn under which chmod 0o555 really makes a folder read-only."""
    if not _as_root():
        return None
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, tempfile; d = tempfile.mkdtemp(); os.chmod(d, 0o555)\n"
            "try:\n    open(os.path.join(d, 'x'), 'w')\nexcept PermissionError:\n    print('denied')",
        ],
        preexec_fn=_drop_dac_override,
        capture_output=True,
        text=True,
        check=False,
    )
    if "denied" not in probe.stdout:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here: {probe.stderr.strip()[-300:]}")
    return _drop_dac_override


# mount(2) and umount2(2) called directly (no util-linux, no /run/mount lock); the same
# source runs in the tests and in a notebook's kernel. Each returns 0 or an errno.
MOUNTS = """
import ctypes, os

_libc = ctypes.CDLL(None, use_errno=True)
_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MNT_DETACH = 1, 32, 4096, 2


def _call(rc):
    return ctypes.get_errno() if rc != 0 else 0


def mount_tmpfs(path, options):
    return _call(_libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", 0, options.encode()))


def remount_tmpfs(path, options):
    return _call(_libc.mount(None, os.fsencode(path), None, _MS_REMOUNT, options.encode()))


def read_only_bind(path):
    # path mounted over itself, read-only: EROFS for everyone, root included
    p = os.fsencode(path)
    err = _call(_libc.mount(p, p, None, _MS_BIND, None))
    if err == 0:
        err = _call(_libc.mount(None, p, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None))
        if err:
            _libc.umount2(p, _MNT_DETACH)
    return err


def unmount(path):
    return _call(_libc.umount2(os.fsencode(path), _MNT_DETACH))
"""
_mounts: dict = {}
exec(MOUNTS, _mounts)


def _mount_permitted() -> bool:
    return _as_root() and sys.platform.startswith("linux")


@contextlib.contextmanager
def tmpfs_reports(project: Project, size: str) -> Iterator[None]:
    """The project's reports folder on a tmpfs of ``size`` (holding the good run)."""
    saved = project.root / "reports.saved"
    project.reports.rename(saved)
    project.reports.mkdir()
    err = _mounts["mount_tmpfs"](project.reports, f"size={size}") if _mount_permitted() else -1
    if err:
        pytest.skip(f"mounting a tmpfs is not permitted here ({err}); the RLIMIT variant runs")
    try:
        shutil.copytree(saved, project.reports, symlinks=True, dirs_exist_ok=True)
        yield
    finally:
        _mounts["unmount"](project.reports)


def assert_clean_message(output: str) -> None:
    assert "Traceback" not in output and 'File "' not in output


# --------------------------------------------------------------------------- kernel death


@pytest.mark.slow
def test_kernel_death_fails_the_notebook_keeps_latest_and_a_rerun_succeeds(
    project, previous, capsys
):
    killed = project.notebook("killed", "import signal\nos.kill(os.getpid(), signal.SIGKILL)")
    exits = project.notebook("exits", 'print("bye")', "os._exit(3)")
    code = main(project.argv(killed, exits))
    out, err = capsys.readouterr()
    assert code == EXIT_FAILED
    assert_clean_message(out + err)
    assert (
        f"FAILED: 2 of 2 notebook(s) did not succeed; 'latest' still points at {previous[0]} (unchanged)"
        in err
    )
    # where it died (In [1] parameters, [2] injected, [3] pid, [4] the kill) and how
    assert "killed: failed at cell In [4]" in err
    assert "the kernel died while running this cell (killed by signal 9, SIGKILL" in err
    assert "exits: failed at cell In [5]" in err
    assert "the kernel died while running this cell (it exited with status 3)" in err
    assert_previous_intact(project, previous)
    run = assert_failed_run_recorded(project, previous)
    marked = (run / "killed.ipynb").read_text(encoding="utf-8")
    assert "papermill-error-cell" in marked and "SIGKILL" in marked
    assert_lock_released(project)
    assert_kernels_gone(project.kernel_pids())
    rerun_succeeds(project, capsys)


@pytest.mark.slow
def test_a_kernel_that_dies_while_starting_says_why(project, previous, monkeypatch):
    # a kernelspec whose process writes a reason on stderr and exits: its words reach the
    # result, not the operator's console
    spec = project.root / "share" / "jupyter" / "kernels" / "broken"
    spec.mkdir(parents=True)
    boom = "import sys; sys.stderr.write('boom: this kernel cannot start\\n'); sys.exit(3)"
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", boom, "{connection_file}"],
                "display_name": "Broken",
                "language": "python",
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("JUPYTER_PATH", str(project.root / "share" / "jupyter"))
    result = report.run_reports(
        project.params,
        notebooks=[project.root / "good.ipynb"],
        reports_dir=project.reports,
        kernel_name="broken",
        progress=False,
    )
    assert not result.ok and result.latest is None
    (failed,) = result.failed
    assert failed.error == (
        "DeadKernelError: the kernel died before running the first cell "
        "(it exited with status 3); its last output: boom: this kernel cannot start"
    )
    assert_previous_intact(project, previous)
    assert_failed_run_recorded(project, previous)
    assert_lock_released(project)


# --------------------------------------------------------------------------- hang


@pytest.mark.slow
def test_hang_past_the_timeout_is_stopped_and_a_rerun_succeeds(
    project, previous, capsys, monkeypatch
):
    monkeypatch.setattr(kernels, "_KILL_GRACE", 1.0)
    hangs = project.notebook("hangs", "import time\ntime.sleep(600)")
    start = time.monotonic()
    code = main(project.argv(hangs, timeout=6))
    out, err = capsys.readouterr()
    assert code == EXIT_FAILED
    assert time.monotonic() - start < 120  # stopped, not waited for
    assert_clean_message(out + err)
    assert "hangs: timeout at" in err
    assert "Timeout: the notebook was still running after 6 s and was stopped" in err
    assert f"'latest' still points at {previous[0]} (unchanged)" in err
    assert_previous_intact(project, previous)
    assert_failed_run_recorded(project, previous)
    assert_lock_released(project)
    assert_kernels_gone(project.kernel_pids())
    rerun_succeeds(project, capsys)


# --------------------------------------------------------------------------- disk full


def _limit_file_size(limit: int) -> Callable[[], None]:
    def limit_writes() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG

    return limit_writes


BIG_OUTPUT = 'print("y" * 1_500_000)'  # ~1.5 MB in the executed notebook


@pytest.mark.slow
def test_disk_full_file_size_limit_publishes_nothing_and_a_rerun_succeeds(
    project, previous, capsys
):
    big = project.notebook("big", BIG_OUTPUT)
    good = project.root / "good.ipynb"
    code, output, procs = run_cli(
        project, project.argv(big, good), preexec_fn=_limit_file_size(1_000_000)
    )
    assert code == EXIT_UNWRITABLE, output
    assert_clean_message(output)
    assert f"error: cannot write the report into {project.reports}" in output
    assert "a file would exceed the file size limit of this process (ulimit -f)" in output
    assert f"the previous report is unchanged (latest -> {previous[0]})" in output
    assert "run again" in output
    assert_previous_intact(project, previous)
    assert_nothing_published(project, previous)
    assert_lock_released(project)
    assert_kernels_gone(procs)
    rerun_succeeds(project, capsys, big, good)  # the limit lifted


@pytest.mark.slow
def test_disk_full_tmpfs_publishes_nothing_and_a_rerun_succeeds(project, previous, capsys):
    big = project.notebook("big", BIG_OUTPUT)
    good = project.root / "good.ipynb"
    with tmpfs_reports(project, "1m"):
        code = main(project.argv(big, good))
        out, err = capsys.readouterr()
        assert code == EXIT_UNWRITABLE, err
        assert_clean_message(out + err)
        assert f"error: cannot write the report into {project.reports}: the disk is full" in err
        assert f"the previous report is unchanged (latest -> {previous[0]})" in err
        assert "Free some space" in err
        assert_previous_intact(project, previous)
        assert_nothing_published(project, previous)
        assert_lock_released(project)
        assert_kernels_gone(project.kernel_pids())
        assert _mounts["remount_tmpfs"](project.reports, "size=32m") == 0  # space freed
        rerun_succeeds(project, capsys, big, good)


# --------------------------------------------------------------------------- read-only


@pytest.mark.slow
def test_read_only_reports_folder_permissions(project, previous, capsys, obey_permissions):
    good = project.root / "good.ipynb"
    reports = project.reports
    # 1. read-only before the run: nothing runs
    reports.chmod(0o555)
    try:
        code, output, procs = run_cli(project, project.argv(good), preexec_fn=obey_permissions)
    finally:
        reports.chmod(0o755)
    assert code == EXIT_UNWRITABLE, output
    assert_clean_message(output)
    assert f"error: cannot write the report into {reports}: the folder is read-only for" in output
    assert "Nothing ran" in output
    assert f"the previous report is unchanged (latest -> {previous[0]})" in output
    assert "--reports-dir" in output
    assert not project.kernel_pids()
    assert_previous_intact(project, previous)
    assert_nothing_published(project, previous)
    assert_lock_released(project)
    # 2. made read-only in the middle of the run (the notebook does it)
    flips = project.notebook("flips", f"os.chmod({str(reports)!r}, 0o555)")
    try:
        code, output, procs = run_cli(
            project, project.argv(flips, good), preexec_fn=obey_permissions
        )
    finally:
        reports.chmod(0o755)
    assert code == EXIT_UNWRITABLE, output
    assert_clean_message(output)
    assert f"error: cannot write the report into {reports}: the folder is read-only for" in output
    assert f"the previous report is unchanged (latest -> {previous[0]})" in output
    assert_previous_intact(project, previous)
    assert_nothing_published(project, previous, leftover_ok=True)
    assert_lock_released(project)
    assert_kernels_gone(procs)
    rerun_succeeds(project, capsys, flips, good)


@pytest.mark.slow
def test_read_only_reports_folder_mount(project, previous, capsys):
    good = project.root / "good.ipynb"
    reports = project.reports
    # 1. read-only file system before the run
    err = _mounts["read_only_bind"](reports) if _mount_permitted() else -1
    if err:
        pytest.skip(f"mount is not permitted here ({err}); the permissions variant runs")
    try:
        code = main(project.argv(good))
        out, err = capsys.readouterr()
    finally:
        _mounts["unmount"](reports)
    assert code == EXIT_UNWRITABLE, err
    assert_clean_message(out + err)
    assert f"error: cannot write the report into {reports}: the file system is read-only" in err
    assert "Nothing ran" in err and "Remount it read-write" in err
    assert f"the previous report is unchanged (latest -> {previous[0]})" in err
    assert_previous_intact(project, previous)
    assert_nothing_published(project, previous)
    assert_lock_released(project)
    # 2. remounted read-only in the middle of the run (the notebook does it)
    remount = project.notebook(
        "remount",
        MOUNTS,
        f"assert read_only_bind({str(reports)!r}) == 0",
        'print("still running")',
    )
    try:
        code = main(project.argv(remount, good))
        out, err = capsys.readouterr()
    finally:
        _mounts["unmount"](reports)
    assert code == EXIT_UNWRITABLE, err
    assert_clean_message(out + err)
    assert f"error: cannot write the report into {reports}: the file system is read-only" in err
    assert f"the previous report is unchanged (latest -> {previous[0]})" in err
    assert_previous_intact(project, previous)
    assert_nothing_published(project, previous, leftover_ok=True)
    assert_lock_released(project)
    assert_kernels_gone(project.kernel_pids())
    rerun_succeeds(project, capsys)


# --------------------------------------------------------------------------- interrupts


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_interrupt_kills_the_kernels_publishes_nothing_and_a_rerun_succeeds(
    project, previous, capsys, how
):
    hangs = project.notebook("hangs", "import time\ntime.sleep(600)")
    good = project.root / "good.ipynb"

    def send(proc: subprocess.Popen, children: list[psutil.Process]) -> None:
        if how == "SIGINT":  # Ctrl-C: the terminal signals the foreground process group
            os.killpg(proc.pid, signal.SIGINT)
        else:  # systemctl stop: SIGTERM to every process of the service
            for p in [psutil.Process(proc.pid), *children]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGTERM)

    code, output, procs = run_cli(
        project,
        project.argv(hangs, good),
        until=lambda: (
            bool(project.kernel_pids()) and (project.reports / ".lock").stat().st_size > 0
        ),
        then=send,
    )
    assert code == EXIT_INTERRUPTED, output
    assert_clean_message(output)
    assert (
        "interrupted: every kernel was stopped and the unfinished run removed; nothing was "
        "published and the previous report is unchanged" in output
    )
    assert procs, "the run started no kernel"
    assert_kernels_gone(procs)
    assert_previous_intact(project, previous)
    assert_nothing_published(project, previous)
    assert_lock_released(project)
    rerun_succeeds(project, capsys)


@pytest.mark.slow
def test_a_killed_runner_leaves_only_a_hidden_leftover_that_the_rerun_clears(
    project, previous, capsys
):
    # kill -9 (or the out-of-memory killer) on the runner: no handler runs at all
    hangs = project.notebook("hangs", "import time\ntime.sleep(600)")
    code, output, procs = run_cli(
        project,
        project.argv(hangs),
        until=lambda: bool(project.kernel_pids()),
        then=lambda proc, children: proc.kill(),
    )
    assert code == -signal.SIGKILL
    assert procs
    assert_kernels_gone(procs)  # a kernel leaves when its parent goes (ipykernel's poller)
    assert_previous_intact(project, previous)
    assert_nothing_published(project, previous, leftover_ok=True)
    assert_lock_released(project, by_the_system=True)  # flock: freed when the process died
    rerun_succeeds(project, capsys)


# --------------------------------------------------------------------------- finishing a run
# Fast: the notebooks are not executed (execute_jobs is replaced), so a fault can be
# injected at each step between the last notebook finishing and ``latest`` switching.


def _fake_execute(jobs, build_dir, **kwargs):
    results = []
    for job in jobs:
        executed = build_dir / f"{job.name}.ipynb"
        shutil.copyfile(job.path, executed)
        html = build_dir / f"{job.name}.html"
        html.write_text("<html></html>", encoding="utf-8")
        results.append(NotebookResult(job.name, "ok", 0.1, executed, html, None))
    return tuple(results)


FINISHING_STEPS = [
    (report, "write_manifest"),
    (report, "write_index"),
    (publishing, "prepare_latest"),
    (publishing, "move_into_place"),
    (publishing, "switch_latest"),
]


def _raiser(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.mark.parametrize(("module", "step"), FINISHING_STEPS, ids=[s for _, s in FINISHING_STEPS])
@pytest.mark.parametrize(
    "fault",
    [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")],
    ids=["interrupt", "disk-full"],
)
def test_a_fault_while_finishing_the_run_publishes_nothing(
    project, previous, monkeypatch, module, step, fault
):
    monkeypatch.setattr(report, "execute_jobs", _fake_execute)
    good = project.root / "good.ipynb"
    expected = (
        KeyboardInterrupt if isinstance(fault, KeyboardInterrupt) else report.ReportWriteError
    )
    with pytest.MonkeyPatch.context() as mp, pytest.raises(expected) as info:
        mp.setattr(module, step, _raiser(fault))
        report.run_reports(
            project.params, notebooks=[good], reports_dir=project.reports, progress=False
        )
    if expected is report.ReportWriteError:
        message = str(info.value)
        assert message.startswith(
            f"cannot write the report into {project.reports}: the disk is full"
        )
        assert f"the previous report is unchanged (latest -> {previous[0]})" in message
    assert_previous_intact(project, previous)
    assert_nothing_published(project, previous)
    assert_lock_released(project)
    result = report.run_reports(
        project.params, notebooks=[good], reports_dir=project.reports, progress=False
    )
    assert result.ok and os.readlink(project.reports / "latest") == result.run_dir.name


def test_an_interrupt_once_latest_is_switched_keeps_the_published_run(project, monkeypatch):
    monkeypatch.setattr(report, "execute_jobs", _fake_execute)
    switch = publishing.switch_latest

    def switch_then_interrupt(*args, **kwargs):
        switch(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(publishing, "switch_latest", switch_then_interrupt)
    good = project.root / "good.ipynb"
    result = report.run_reports(
        project.params,
        notebooks=[good],
        reports_dir=project.reports,
        progress=False,
        started_at=datetime(2030, 1, 1),
    )
    assert result.ok and result.latest == project.reports / "latest"
    assert os.readlink(result.latest) == result.run_dir.name == "2030-01-01_000000"
    assert (result.run_dir / "manifest.json").is_file()


def test_an_interrupt_while_pruning_keeps_the_published_run_and_prunes_later(project):
    good = project.root / "good.ipynb"
    old = project.snapshot()[0]

    def interrupted_rmtree(path, *args, **kwargs):
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "execute_jobs", _fake_execute)
        mp.setattr(publishing.shutil, "rmtree", interrupted_rmtree)
        result = report.run_reports(
            project.params, notebooks=[good], reports_dir=project.reports, progress=False, keep=1
        )
    assert result.ok and os.readlink(result.latest) == result.run_dir.name
    assert result.pruned == ()
    # the old run was set aside (hidden) before deletion: never a half-deleted run folder
    assert not (project.reports / old).exists()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "execute_jobs", _fake_execute)
        again = report.run_reports(
            project.params, notebooks=[good], reports_dir=project.reports, progress=False, keep=1
        )
    assert sorted(p.name for p in project.reports.iterdir()) == [
        ".lock",
        again.run_dir.name,
        "latest",
    ]
