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
Papermill. A run interrupted (Ctrl-C, SIGTERM) leaves no dated folder and does not touch
``latest``.

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
from .params import load_params, notebook_parameters, plan_jobs, resolve_notebooks
from .publishing import DEFAULT_KEEP
from .results import NotebookResult, RunResult

__all__ = [
    "NotebookResult",
    "RunResult",
    "RunLockedError",
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
    ReportError
        On a configuration problem (parameters file, unknown notebook or parameter,
        unwritable reports folder), before any notebook runs; or when a successful run
        cannot be published.
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
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create reports folder {reports_dir}: {exc}") from exc

    with publishing.run_lock(reports_dir, params_path=params_path):
        bar = Progress(len(jobs), enabled=progress)
        try:
            publishing.remove_leftovers(reports_dir, note=bar.note)
            run_name = publishing.run_name(reports_dir, started_at)
            build_dir = publishing.make_build_dir(reports_dir, run_name)
            try:
                inputs = input_fingerprints(jobs)
                results = execute_jobs(
                    jobs,
                    build_dir,
                    workers=workers,
                    kernel_name=kernel_name,
                    timeout=timeout,
                    progress=bar,
                )
            except BaseException:
                shutil.rmtree(build_dir, ignore_errors=True)
                raise
        finally:
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
        run_dir = reports_dir / run_name
        publishing.move_into_place(build_dir, run_dir)
        results = tuple(_moved(r, run_dir) for r in results)
        latest = publishing.publish(reports_dir, run_dir) if ok else None
        pruned = (
            publishing.prune(reports_dir, keep=keep, current=run_dir, note=bar.note) if keep else ()
        )
    return RunResult(run_dir=run_dir, results=results, ok=ok, latest=latest, pruned=pruned)


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
