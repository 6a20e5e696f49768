"""Run the parameterised notebooks with Papermill and publish them as HTML reports.

One call to :func:`run_reports` is one *run*: every selected notebook is executed with
the parameters of one YAML file, in parallel (one kernel per notebook), into a dated
folder ``reports/<YYYY-MM-DD_HHMMSS>/`` holding, per notebook, the executed
``<stem>.ipynb`` and a code-free ``<stem>.html``, plus ``index.html`` (what ran, how
long, what failed) and ``manifest.json`` (parameters, fingerprints of the input files,
package versions, timings, status).

Publishing
----------
The run is built aside in a hidden folder ``reports/.run-<stamp>-<id>/`` and renamed to
its dated name when every notebook has finished. When every notebook succeeded,
``reports/latest`` (a relative symlink) is switched to it atomically (a new link renamed
over the old one); otherwise ``latest`` keeps pointing at the previous good run, and the
failed run's folder keeps each failed executed notebook with the error marked by
Papermill.

What a run leaves when it does not succeed
------------------------------------------
Whatever happens, ``latest`` and the run it points to are never modified, and no
folder that is not a complete run ever carries a dated name:

* a notebook fails, times out or its kernel dies: the run's dated folder is kept as the
  record of a *failed* run (``manifest.json`` says ``"status": "failed"``, ``index.html``
  says it was not published and links the published report);
* interrupted (Ctrl-C, SIGTERM; ``KeyboardInterrupt``): every kernel is killed and the
  unfinished run is removed;
* the reports folder cannot be written (disk full, quota, file size limit, read-only,
  no permission): every kernel is killed, the unfinished run is removed and
  :class:`~pipeline_lib.publishing.ReportWriteError` is raised saying what happened and
  what to do.

An unfinished run that cannot be removed (a folder that became read-only) stays as a
hidden ``.run-*`` folder, never shown as a run, and the next run removes it. An
interrupt that arrives once ``latest`` has been switched no longer stops anything: the
run is complete and published (an interrupted pruning resumes at the next run).

Timeouts
--------
``timeout`` limits the wall time of one notebook (kernel start included). When it runs
out the kernel is interrupted (a ``KeyboardInterrupt`` in the running cell, so the
executed notebook shows where it hung) and, if it is still alive ten seconds later,
killed with its whole process group. The notebook's status is then ``"timeout"``.

Concurrency and housekeeping
----------------------------
A run holds an exclusive lock on ``reports/.lock`` (``fcntl.flock``, released by the
operating system even if the process dies); a second run on the same reports folder
fails at once with :class:`RunLockedError` naming the holder's pid and start time.
Under the lock a run also removes the leftovers of crashed runs (hidden ``.run-*``
folders) and, at the end, prunes old run folders: the ``keep`` newest dated folders
are kept, whatever their status, plus the folder ``latest`` points to; anything that
is not a run folder (no dated name or no ``manifest.json``) is never touched.

Kernels started by the runner see the environment variable
``PIPELINE_WORKBENCH_MODE=report`` (the filter bar of :mod:`pipeline_lib.widgets` is then
invisible) and talk to the runner over CurveZMQ-encrypted sockets when the kernel
supports it (so ipykernel has nothing to warn about on the console).

The parameters file
-------------------
Top-level keys are parameters for every notebook; an optional ``notebooks`` mapping
holds per-notebook overrides keyed by notebook stem::

    source_config: data/sources/demo.yaml
    as_of: "2025-12-31"
    notebooks:
      03_sales_forecast:
        horizon_months: 6

Each notebook receives only the parameters its ``parameters`` cell declares, so one file
can serve notebooks with different parameters. A top-level key that no notebook declares,
an override for an unknown notebook, or an override a notebook does not declare is a
:class:`~pipeline_lib.errors.ReportError` (a typo must not pass silently).

The work is split over one module per job: :mod:`~pipeline_lib.params` (the parameters
file and the plan), :mod:`~pipeline_lib.execution` (Papermill, in parallel),
:mod:`~pipeline_lib.kernels` (report mode, time limits), :mod:`~pipeline_lib.html_export`
(the HTML pages), :mod:`~pipeline_lib.manifest` and :mod:`~pipeline_lib.publishing`
(lock, run folders, pruning, ``latest``). This module ties them together in
:func:`run_reports`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from . import config, publishing
from .errors import ReportError, RunLockedError
from .execution import Progress, execute_jobs
from .html_export import export_html, write_index
from .kernels import MODE_VARIABLE, REPORT_MODE
from .manifest import input_fingerprints, write_manifest
from .params import Job, load_params, notebook_parameters, plan_jobs, resolve_notebooks
from .publishing import DEFAULT_KEEP, LATEST_NAME, ReportWriteError
from .results import NotebookResult, RunResult

__all__ = [
    "NotebookResult",
    "RunResult",
    "RunLockedError",
    "ReportWriteError",
    "MODE_VARIABLE",
    "REPORT_MODE",
    "DEFAULT_KEEP",
    "load_params",
    "notebook_parameters",
    "run_reports",
    "export_html",
]


def run_reports(
    params_path: str | Path = config.DEFAULT_PARAMS,
    *,
    notebooks: Iterable[str | Path] | None = None,
    reports_dir: str | Path = config.REPORTS_DIR,
    workers: int | None = None,
    timeout: float | None = 600,
    keep: int | None = DEFAULT_KEEP,
    started_at: datetime | None = None,
    kernel_name: str = "python3",
    progress: bool = True,
) -> RunResult:
    """Execute notebooks with one parameters file and publish the run as HTML.

    See the module docstring for the folder layout, publishing, the lock and pruning.

    Parameters
    ----------
    params_path : str or Path
        The parameters YAML (see the module docstring); relative paths are taken
        against the project root. Relative paths inside its values are passed on
        unchanged (the notebooks resolve them against the project root).
    notebooks : iterable of str or Path, optional
        Notebook names (``"00_data_quality"``, taken from ``config.NOTEBOOKS_DIR``) or
        paths (relative ones against the project root); default the published
        notebooks, ``config.NOTEBOOKS_DIR/NN_name.ipynb``, sorted (scratch notebooks
        with other names are run only when named).
    reports_dir : str or Path
        Parent of the dated run folders, of the ``latest`` link and of the ``.lock``
        file (relative paths are taken against the project root).
    workers : int, optional
        Notebooks run at once (each in its own kernel); default ``os.cpu_count()``.
    timeout : float or None
        Seconds one notebook may run (kernel start to last cell) before it is stopped
        and reported as ``"timeout"``; None for no limit.
    keep : int or None
        Run folders kept after this run: the ``keep`` newest, plus the one ``latest``
        points to (and this run); 0 or None keeps every run.
    started_at : datetime, optional
        Run timestamp naming the folder; default the time of the call.
    kernel_name : str
        Jupyter kernel to execute with.
    progress : bool
        Print a line per notebook started and finished to stderr (plus a progress bar
        when stderr is a terminal).

    Returns
    -------
    RunResult
        ``ok`` is False when any notebook failed or timed out; ``latest`` is then None
        and the previous ``latest`` link is left as it was.

    Raises
    ------
    RunLockedError
        Another run holds the lock of ``reports_dir``; nothing ran.
    ReportWriteError
        The reports folder cannot be written (disk full, quota, file size limit,
        read-only, no permission), before or during the run: every kernel is killed,
        the unfinished run removed, ``latest`` left as it was; the message says what
        happened and what to do.
    ReportError
        On a configuration problem (parameters file, unknown notebook or parameter),
        before any notebook runs.
    KeyboardInterrupt
        When interrupted: every kernel is killed, the unfinished run folder removed
        and ``latest`` left as it was.

    Examples
    --------
    >>> result = run_reports("notebooks/params/ci.yaml", workers=2)  # doctest: +SKIP
    >>> result.ok, result.latest
    (True, PosixPath('.../reports/latest'))
    """
    clock = time.perf_counter()
    if started_at is None:
        started_at = datetime.now()
    if workers is None:
        workers = os.cpu_count() or 1
    _check_options(workers=workers, timeout=timeout, keep=keep)
    params_path = config.resolve_path(params_path)
    reports_dir = config.resolve_path(reports_dir)

    jobs = plan_jobs(load_params(params_path), params_path, resolve_notebooks(notebooks))
    state = _Attempt()
    try:
        try:
            reports_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportWriteError.from_os_error(
                exc, doing=f"create the reports folder {reports_dir}", path=reports_dir
            ) from exc
        with publishing.run_lock(reports_dir, params_path=params_path):
            return _run_locked(
                jobs,
                state,
                reports_dir=reports_dir,
                params_path=params_path,
                started_at=started_at,
                clock=clock,
                workers=workers,
                timeout=timeout,
                keep=keep,
                kernel_name=kernel_name,
                progress=progress,
            )
    except ReportWriteError as exc:
        raise _unwritable(exc, reports_dir, state) from exc


class _Attempt:
    """How far a run got, for the message of a run that could not be written."""

    def __init__(self) -> None:
        self.ran = False
        self.leftover: Path | None = None


def _run_locked(
    jobs: list[Job],
    state: _Attempt,
    *,
    reports_dir: Path,
    params_path: Path,
    started_at: datetime,
    clock: float,
    workers: int,
    timeout: float | None,
    keep: int | None,
    kernel_name: str,
    progress: bool,
) -> RunResult:
    """The run itself, under the lock: build, finish, publish, prune."""
    bar = Progress(len(jobs), enabled=progress)
    build_dir: Path | None = None
    run_dir: Path | None = None  # set once the build folder carries its dated name
    link: Path | None = None
    latest: Path | None = None
    try:
        publishing.remove_leftovers(reports_dir, note=bar.note)
        run_name = publishing.run_name(reports_dir, started_at)
        build_dir = publishing.make_build_dir(reports_dir, run_name)
        inputs = input_fingerprints(jobs)
        state.ran = True
        results = execute_jobs(
            jobs,
            build_dir,
            workers=workers,
            kernel_name=kernel_name,
            timeout=timeout,
            progress=bar,
        )
        bar.close()
        ok = all(r.ok for r in results)
        write_manifest(
            build_dir,
            run_name=run_name,
            started_at=started_at,
            finished_at=datetime.now(),
            seconds=time.perf_counter() - clock,
            params_path=params_path,
            jobs=jobs,
            results=results,
            ok=ok,
            inputs=inputs,
            settings={
                "workers": workers,
                "timeout": timeout,
                "keep": keep,
                "kernel": kernel_name,
                "notebooks": [job.name for job in jobs],
            },
        )
        write_index(
            build_dir,
            run_name=run_name,
            started_at=started_at,
            params_path=params_path,
            results=results,
            ok=ok,
            previous=publishing.latest_target(reports_dir),
        )
        # The new link is made before the rename: a folder that cannot take it fails
        # while the run is still hidden. Then rename, then switch (atomic).
        link = publishing.prepare_latest(reports_dir, run_name) if ok else None
        publishing.move_into_place(build_dir, reports_dir / run_name)
        run_dir = reports_dir / run_name
        if link is not None:
            latest = publishing.switch_latest(reports_dir, link)
    except BaseException as exc:
        published = (
            isinstance(exc, KeyboardInterrupt)
            and link is not None
            and run_dir is not None
            and publishing.latest_target(reports_dir) == run_dir.name
        )
        if not published:  # nothing of this run may stay in view
            state.leftover = _discard(link, run_dir, build_dir)
            if isinstance(exc, OSError):  # the runner's own I/O, not wrapped on the way
                raise ReportWriteError.from_os_error(exc, doing="write the run") from exc
            raise
        latest = reports_dir / LATEST_NAME  # interrupted just after the switch: complete
        bar.note("interrupted after the run was published: the run is complete")
    finally:
        bar.close()
    assert run_dir is not None
    results = tuple(_moved(r, run_dir) for r in results)
    pruned: tuple[Path, ...] = ()
    if keep:
        try:
            pruned = publishing.prune(reports_dir, keep=keep, current=run_dir, note=bar.note)
        except KeyboardInterrupt:
            bar.note(
                "interrupted while deleting old runs: the run is complete; the next run prunes"
            )
    return RunResult(run_dir=run_dir, results=results, ok=ok, latest=latest, pruned=pruned)


def _discard(link: Path | None, run_dir: Path | None, build_dir: Path | None) -> Path | None:
    """Remove an unfinished run (and its temporary link); return what could not be removed.

    A run already renamed to its dated name is first renamed back to its hidden name, so
    that whatever cannot be deleted is never shown as a run.
    """
    if link is not None:
        with contextlib.suppress(OSError):
            link.unlink()
    if build_dir is None:
        return None
    if run_dir is not None:
        try:
            os.rename(run_dir, build_dir)
        except OSError:
            build_dir = run_dir
    shutil.rmtree(build_dir, ignore_errors=True)
    return build_dir if os.path.lexists(build_dir) else None


def _unwritable(exc: ReportWriteError, reports_dir: Path, state: _Attempt) -> ReportWriteError:
    """``exc`` again, with what became of the run and the previous report, and advice."""
    what, advice = publishing.explain_write_failure(exc.errno)
    inside = exc.path is None or exc.path == reports_dir or reports_dir in exc.path.parents
    where = f"cannot write the report into {reports_dir}" if inside else "cannot write the report"
    previous = publishing.latest_target(reports_dir)
    kept = (
        f"the previous report is unchanged ({LATEST_NAME} -> {previous})"
        if previous is not None
        else "there is no previous report"
    )
    if not state.ran:
        outcome = f"Nothing ran; {kept}."
    elif state.leftover is None:
        outcome = f"The unfinished run was removed; nothing was published and {kept}."
    else:
        outcome = (
            f"The unfinished run could not be removed ({state.leftover.name}: hidden, never "
            f"shown as a run, removed by the next run); nothing was published and {kept}."
        )
    return ReportWriteError(
        f"{where}: {what} [{exc}]. {outcome} {advice}",
        path=exc.path,
        errno=exc.errno,
        strerror=exc.strerror,
    )


def _check_options(*, workers: int, timeout: float | None, keep: int | None) -> None:
    if workers < 1:
        raise ReportError(f"workers must be at least 1, got {workers}")
    if timeout is not None and timeout <= 0:
        raise ReportError(f"timeout must be a positive number of seconds or None, got {timeout}")
    if keep is not None and keep < 0:
        raise ReportError(f"keep must be 0 (keep every run) or more, got {keep}")


def _moved(result: NotebookResult, run_dir: Path) -> NotebookResult:
    """``result`` with its files in ``run_dir`` (the build folder was renamed)."""
    return replace(
        result,
        executed=run_dir / result.executed.name,
        html=run_dir / result.html.name if result.html is not None else None,
    )
