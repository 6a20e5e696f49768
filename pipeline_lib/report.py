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
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import platform
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
import yaml

from . import config
from .errors import PipelineError, ReportError

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

#: Environment variable set for every kernel the runner starts (read by ``widgets``).
MODE_VARIABLE = "PIPELINE_WORKBENCH_MODE"
#: Its value in a report run.
REPORT_MODE = "report"
#: Run folders kept by default (the newest ones, plus the one ``latest`` points to).
DEFAULT_KEEP = 10

#: Key of the per-notebook override section in a parameters file.
_OVERRIDES_KEY = "notebooks"
_LATEST = "latest"
_LOCK_NAME = ".lock"
_BUILD_PREFIX = ".run-"
_MANIFEST = "manifest.json"
_STAMP_FORMAT = "%Y-%m-%d_%H%M%S"
_RUN_NAME_RE = re.compile(r"^(?P<stamp>\d{4}-\d{2}-\d{2}_\d{6})(?:-(?P<n>\d+))?$")
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ARROW_RE = re.compile(r"^\s*-*>\s*\d+\s?(?P<code>.*)$")
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: Seconds between interrupting a notebook that ran out of time and killing its kernel.
_KILL_GRACE = 10.0
#: Package versions recorded in the manifest (distribution names).
_VERSIONED = (
    "pandas",
    "numpy",
    "scipy",
    "scikit-learn",
    "prophet",
    "matplotlib",
    "seaborn",
    "papermill",
    "nbconvert",
    "nbclient",
    "ipykernel",
    "voila",
)


class RunLockedError(ReportError):
    """Another run holds the lock of the reports folder.

    Attributes
    ----------
    lock_path : Path
        The lock file.
    holder : dict
        What the holder wrote into the lock file (``pid``, ``started_at``, ``host``,
        ``params_file``); empty when it could not be read.
    """

    def __init__(self, message: str, *, lock_path: Path, holder: Mapping[str, Any]):
        super().__init__(message)
        self.lock_path = lock_path
        self.holder = dict(holder)


@dataclass(frozen=True)
class NotebookResult:
    """Outcome of one notebook in a run.

    Attributes
    ----------
    name : str
        Notebook stem, e.g. ``"00_data_quality"``.
    status : str
        ``"ok"``, ``"failed"`` (a cell raised, the kernel died or the HTML export
        failed) or ``"timeout"`` (stopped after ``timeout`` seconds).
    seconds : float
        Wall time of execution plus HTML export.
    executed : Path
        The executed notebook in the run folder (kept on failure, with the error marked).
    html : Path or None
        The HTML report, or None when the notebook did not succeed.
    error : str or None
        One line, ``"<ExceptionName>: <message>"`` (``"Timeout: ..."`` for a timeout),
        when the notebook did not succeed.
    cell : int or None
        Execution count of the cell that failed or was running at the timeout, as
        Jupyter shows it (``In [cell]``); None when unknown or on success.
    source_line : str or None
        The line of that cell being executed when it failed, when the traceback
        names it.
    """

    name: str
    status: str
    seconds: float
    executed: Path
    html: Path | None
    error: str | None
    cell: int | None = None
    source_line: str | None = None

    @property
    def ok(self) -> bool:
        """True when the notebook ran and its HTML report was written."""
        return self.status == "ok"

    def describe_failure(self) -> str:
        """A few human lines saying which notebook failed, where, and why ("" if ok)."""
        if self.ok:
            return ""
        where = f"cell In [{self.cell}]" if self.cell is not None else "cell unknown"
        if self.source_line:
            where += f": {self.source_line}"
        return (
            f"{self.name}: {self.status} at {where}\n"
            f"    {self.error}\n"
            f"    executed notebook, error marked: {self.executed}"
        )


@dataclass(frozen=True)
class RunResult:
    """Outcome of a whole run.

    Attributes
    ----------
    run_dir : Path
        The dated run folder.
    results : tuple of NotebookResult
        One per notebook, in notebook order.
    ok : bool
        True when every notebook succeeded.
    latest : Path or None
        ``reports_dir/latest`` when it was pointed at this run, else None.
    pruned : tuple of Path
        Old run folders deleted at the end of this run.
    """

    run_dir: Path
    results: tuple[NotebookResult, ...]
    ok: bool
    latest: Path | None
    pruned: tuple[Path, ...] = field(default=())

    @property
    def index(self) -> Path:
        """Path of the run's ``index.html``."""
        return self.run_dir / "index.html"

    @property
    def manifest(self) -> Path:
        """Path of the run's ``manifest.json``."""
        return self.run_dir / _MANIFEST

    @property
    def failed(self) -> tuple[NotebookResult, ...]:
        """The notebooks that did not succeed."""
        return tuple(r for r in self.results if not r.ok)


@dataclass(frozen=True)
class _Job:
    name: str
    path: Path
    parameters: dict[str, Any]


# --------------------------------------------------------------------------- parameters


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and check a parameters YAML file.

    Parameters
    ----------
    path : str or Path
        The YAML file (relative paths are taken against the project root).

    Returns
    -------
    dict
        The top-level mapping. Every key except ``notebooks`` is a parameter for every
        notebook; ``notebooks``, if present, maps notebook stems to override mappings.

    Raises
    ------
    ReportError
        If the file is missing, is not valid YAML, or is not shaped as described.
    """
    path = config.resolve_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"parameters file not found: {path}") from None
    except OSError as exc:
        raise ReportError(f"cannot read parameters file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ReportError(f"parameters file {path} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ReportError(
            f"parameters file {path} must be a mapping of parameter names to values, "
            f"got {type(data).__name__}"
        )
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise ReportError(f"parameters file {path}: parameter names must be text, got {bad_keys}")
    overrides = data.get(_OVERRIDES_KEY)
    if overrides is None:
        data.pop(_OVERRIDES_KEY, None)
        return data
    if not isinstance(overrides, dict):
        raise ReportError(
            f"parameters file {path}: '{_OVERRIDES_KEY}' must map notebook names to "
            f"parameter overrides, got {type(overrides).__name__}"
        )
    for stem, section in overrides.items():
        if section is None:
            overrides[stem] = {}
        elif not isinstance(section, dict):
            raise ReportError(
                f"parameters file {path}: overrides for notebook '{stem}' must be a mapping, "
                f"got {type(section).__name__}"
            )
    return data


def notebook_parameters(nb_path: str | Path) -> dict[str, dict[str, Any]]:
    """Return the parameters a notebook declares in its ``parameters``-tagged cell.

    Parameters
    ----------
    nb_path : str or Path
        The notebook.

    Returns
    -------
    dict
        Parameter name -> ``{"name", "inferred_type_name", "default", "help"}`` as
        reported by :func:`papermill.inspect_notebook`; empty when there is no
        parameters cell.

    Raises
    ------
    ReportError
        If the notebook cannot be read or inspected.
    """
    import papermill

    nb_path = Path(nb_path)
    if not nb_path.is_file():
        raise ReportError(f"notebook not found: {nb_path}")
    try:
        return papermill.inspect_notebook(nb_path)
    except Exception as exc:  # papermill raises a mix of ValueError, JSON and IO errors
        raise ReportError(f"cannot inspect parameters of notebook {nb_path}: {exc}") from exc


def _resolve_notebooks(notebooks: Iterable[str | Path] | None) -> list[Path]:
    """Turn names (``00_data_quality``) or paths into notebook paths, checked and unique."""
    if notebooks is None:
        # The published notebooks (NN_name.ipynb), the same set Voila serves.
        from .dashboards import published_notebooks

        found = [p.resolve() for p in published_notebooks(config.NOTEBOOKS_DIR)]
        if not found:
            raise ReportError(
                f"no published notebooks (NN_name.ipynb) found in {config.NOTEBOOKS_DIR}"
            )
        return found
    if isinstance(notebooks, str | Path):
        notebooks = [notebooks]
    paths: list[Path] = []
    for item in notebooks:
        p = Path(item).expanduser()
        if p.suffix != ".ipynb":
            p = p.with_name(p.name + ".ipynb")
        p = config.NOTEBOOKS_DIR / p if len(p.parts) == 1 else config.resolve_path(p)
        if not p.is_file():
            available = sorted(q.stem for q in config.NOTEBOOKS_DIR.glob("*.ipynb"))
            raise ReportError(
                f"notebook {str(item)!r} not found (looked for {p}); "
                f"notebooks in {config.NOTEBOOKS_DIR}: {', '.join(available) or 'none'}"
            )
        paths.append(p.resolve())
    if not paths:
        raise ReportError("no notebooks selected")
    stems = [p.stem for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ReportError(
            f"notebook names must be unique in a run (their outputs share one folder): "
            f"{', '.join(duplicates)}"
        )
    return paths


def _plan(params: Mapping[str, Any], params_path: Path, nb_paths: list[Path]) -> list[_Job]:
    """Give each notebook the parameters it declares; reject parameters nobody declares.

    The check runs against the selected notebooks and their sibling notebooks, so a
    shared file still works when only some notebooks are run. Siblings that cannot be
    inspected are ignored (they are not run).
    """
    declared = {p: set(notebook_parameters(p)) for p in nb_paths}
    known: dict[str, set[str]] = {p.stem: names for p, names in declared.items()}
    for folder in sorted({p.parent for p in nb_paths}):
        for sibling in sorted(folder.glob("*.ipynb")):
            if sibling.stem in known:
                continue
            try:
                known[sibling.stem] = set(notebook_parameters(sibling))
            except ReportError:
                continue
    everything = set().union(*known.values())

    shared = {k: v for k, v in params.items() if k != _OVERRIDES_KEY}
    unknown = sorted(set(shared) - everything)
    if unknown:
        raise ReportError(
            f"{params_path}: parameter(s) {', '.join(unknown)} not declared by any notebook "
            f"(known parameters: {', '.join(sorted(everything)) or 'none'})"
        )
    overrides = params.get(_OVERRIDES_KEY) or {}
    for stem, section in overrides.items():
        if stem not in known:
            raise ReportError(
                f"{params_path}: overrides for unknown notebook {stem!r} "
                f"(notebooks: {', '.join(sorted(known))})"
            )
        undeclared = sorted(set(section) - known[stem])
        if undeclared:
            raise ReportError(
                f"{params_path}: notebook {stem!r} does not declare parameter(s) "
                f"{', '.join(undeclared)} (it declares: {', '.join(sorted(known[stem])) or 'none'})"
            )

    jobs = []
    for path in nb_paths:
        merged = {**shared, **overrides.get(path.stem, {})}
        jobs.append(_Job(path.stem, path, {k: merged[k] for k in merged if k in declared[path]}))
    return jobs


# --------------------------------------------------------------------------- HTML


def _first_heading(nb: nbformat.NotebookNode) -> str | None:
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            match = _HEADING_RE.match(line)
            if match:
                return match.group("text")
    return None


def _report_output(output: Mapping[str, Any]) -> bool:
    """Whether an output belongs in the HTML report (no stderr, no live widgets)."""
    if output.get("output_type") == "stream":
        return output.get("name") != "stderr"
    return _WIDGET_MIME not in (output.get("data") or {})


def export_html(
    executed_nb_path: str | Path, html_path: str | Path, *, title: str | None = None
) -> Path:
    """Write a code-free HTML report of an executed notebook.

    Code cells' inputs and all prompts are excluded; ``stderr`` stream outputs
    (warnings, log lines) and live widget views (which need a kernel) are dropped from a
    copy of the notebook (the ``.ipynb`` on disk keeps them); images stay embedded as
    base64 and nothing is fetched from the network, so the page opens offline.

    Parameters
    ----------
    executed_nb_path : str or Path
        The executed notebook.
    html_path : str or Path
        Where to write the HTML.
    title : str, optional
        Page title; default the notebook's first markdown heading, else its stem.

    Returns
    -------
    Path
        ``html_path``.

    Raises
    ------
    ReportError
        If the notebook cannot be read or the HTML cannot be written.
    """
    from nbconvert import HTMLExporter

    executed_nb_path, html_path = Path(executed_nb_path), Path(html_path)
    try:
        nb = nbformat.read(executed_nb_path, as_version=4)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read executed notebook {executed_nb_path}: {exc}") from exc
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if _report_output(out)]
    title = title or _first_heading(nb) or executed_nb_path.stem
    nb.metadata["title"] = title

    exporter = HTMLExporter(
        extra_template_basedirs=[str(_TEMPLATES)],
        template_name="report",  # lab, minus every script fetched from a CDN
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    try:
        html_path.write_text(body, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write HTML report {html_path}: {exc}") from exc
    return html_path


# --------------------------------------------------------------------------- kernels


class _Watch:
    """The kernel of one notebook: its deadline, and how to stop it.

    ``attach`` is called from the kernel manager once the kernel process exists. At the
    deadline the kernel's process group gets SIGINT (a ``KeyboardInterrupt`` in the
    running cell, which Papermill records and marks), then SIGKILL ``_KILL_GRACE``
    seconds later if it is still there. ``cancel`` (an interrupted run) kills at once.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.timed_out = False
        self.cancelled = False
        self._stopped = False
        self._km: Any = None
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def start(self) -> None:
        if self.timeout is not None:
            self._later(self.timeout, self._expire)

    def attach(self, km: Any) -> None:
        with self._lock:
            self._km = km
            doomed = self.timed_out or self.cancelled
        if doomed:
            self._signal("SIGKILL")

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
        self._signal("SIGKILL")

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._km = None
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        with self._lock:
            if self._stopped:
                return
            self._timers.append(timer)
        timer.start()

    def _expire(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self.timed_out = True
        self._signal("SIGINT")
        self._later(_KILL_GRACE, lambda: self._signal("SIGKILL"))

    def _signal(self, name: str) -> None:
        with self._lock:
            km = self._km
        provisioner = getattr(km, "provisioner", None)
        pid = getattr(provisioner, "pid", None)
        if pid is None:
            return
        sig = getattr(signal, name, signal.SIGTERM)
        pgid = getattr(provisioner, "pgid", None)
        try:
            # jupyter_client starts each kernel in its own session: the group holds the
            # kernel and anything it spawned (never the runner itself).
            if pgid is not None and hasattr(os, "killpg") and pgid != os.getpgid(0):
                os.killpg(pgid, sig)
            else:
                os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class _Watches:
    """Every live :class:`_Watch` of a run, so an interrupt can stop all kernels."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[_Watch] = set()
        self._cancelled = False

    def new(self, timeout: float | None) -> _Watch:
        watch = _Watch(timeout)
        with self._lock:
            watch.cancelled = self._cancelled
            self._live.add(watch)
        return watch

    def discard(self, watch: _Watch) -> None:
        with self._lock:
            self._live.discard(watch)

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled = True
            live = list(self._live)
        for watch in live:
            watch.cancel()


def _kernel_manager_class(watch: _Watch) -> type:
    """A kernel manager that marks the kernel as a report kernel and reports its process.

    The kernel gets ``PIPELINE_WORKBENCH_MODE=report`` in its environment and, when
    pyzmq and the kernelspec support it, CurveZMQ transport encryption (ipykernel then
    has no reason to print its "running over TCP without encryption" warning on the
    operator's console).
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    encrypt = zmq.has("curve") and "transport_encryption" in AsyncKernelManager.class_trait_names()

    class ReportKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if encrypt:
                self.transport_encryption = "auto"

        async def _async_start_kernel(self, **kw: Any) -> None:
            kw["env"] = {**os.environ, **(kw.get("env") or {}), MODE_VARIABLE: REPORT_MODE}
            await super()._async_start_kernel(**kw)
            watch.attach(self)

        start_kernel = _async_start_kernel

    return ReportKernelManager


# --------------------------------------------------------------------------- one notebook


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _error_message(exc: BaseException) -> str:
    """``"<ename>: <first line of evalue>"`` for a notebook error, likewise for others."""
    ename = getattr(exc, "ename", None)
    if ename is not None:
        evalue = _first_line(getattr(exc, "evalue", "") or "")
        return f"{ename}: {evalue}" if evalue else str(ename)
    message = _first_line(str(exc))
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _failing_line(traceback: Iterable[str] | None) -> str | None:
    """The notebook line a traceback points at (``----> 3 code``) in its cell frame."""
    for frame in traceback or ():
        text = _ANSI_RE.sub("", frame)
        if "Cell In[" not in text and "Input In [" not in text:
            continue
        for line in text.splitlines():
            match = _ARROW_RE.match(line)
            if match and match.group("code").strip():
                return match.group("code").strip()
        return None
    return None


def _mark_error(executed: Path, ename: str, evalue: str) -> BaseException | None:
    """Record an error that produced no cell output (dead kernel) the way Papermill does.

    The last cell that started gets an error output, then Papermill's own marker cells
    are added and the notebook is saved. Returns Papermill's error, or None when the
    notebook cannot be read or no cell had started.
    """
    from papermill.exceptions import PapermillExecutionError
    from papermill.execute import raise_for_execution_errors

    try:
        nb = nbformat.read(executed, as_version=4)
    except (OSError, ValueError):
        return None
    started = [
        c
        for c in nb.cells
        if c.cell_type == "code" and (c.metadata.get("papermill") or {}).get("start_time")
    ]
    if not started:
        return None
    cell = started[-1]
    cell.outputs.append(
        nbformat.v4.new_output(
            "error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]
        )
    )
    cell.metadata.setdefault("papermill", {}).update(exception=True, status="failed")
    nb.metadata.setdefault("papermill", {})["exception"] = True
    try:
        raise_for_execution_errors(nb, str(executed))
    except PapermillExecutionError as marked:
        return marked
    except OSError:
        return None
    return None


def _explain_interrupt(executed: Path, timeout: float | None) -> None:
    """Say in the executed notebook that the runner, not a user, interrupted the cell."""
    try:
        nb = nbformat.read(executed, as_version=4)
        for cell in nb.cells:
            for output in cell.get("outputs", []):
                if (
                    output.get("output_type") == "error"
                    and output.get("ename") == "KeyboardInterrupt"
                ):
                    output["evalue"] = (
                        f"stopped by the report runner after {timeout:g} s (time limit)"
                    )
        nbformat.write(nb, executed)
    except (OSError, ValueError):
        pass


def _failure(
    job: _Job, executed: Path, exc: BaseException | None, *, watch: _Watch, seconds: float
) -> NotebookResult:
    from papermill.exceptions import PapermillExecutionError

    timeout_message = (
        f"Timeout: the notebook was still running after {watch.timeout:g} s and was stopped"
    )
    if exc is not None and not isinstance(exc, PapermillExecutionError):
        if watch.timed_out:
            ename, evalue = "Timeout", timeout_message.removeprefix("Timeout: ")
        else:
            ename, evalue = type(exc).__name__, _first_line(str(exc)) or "the kernel stopped"
        exc = _mark_error(executed, ename, evalue) or exc
    cell = line = None
    if isinstance(exc, PapermillExecutionError):
        cell = exc.exec_count
        line = _failing_line(exc.traceback)
        if watch.timed_out and exc.ename == "KeyboardInterrupt":
            _explain_interrupt(executed, watch.timeout)
    if watch.timed_out:
        return NotebookResult(
            job.name, "timeout", seconds, executed, None, timeout_message, cell, line
        )
    message = _error_message(exc) if exc is not None else "unknown error"
    return NotebookResult(job.name, "failed", seconds, executed, None, message, cell, line)


def _run_one(
    job: _Job,
    build_dir: Path,
    *,
    kernel_name: str,
    timeout: float | None,
    watches: _Watches,
    progress: _Progress,
) -> NotebookResult:
    import papermill

    executed = build_dir / f"{job.name}.ipynb"
    html_path = build_dir / f"{job.name}.html"
    progress.started(job.name)
    start = time.perf_counter()
    watch = watches.new(timeout)
    error: BaseException | None = None
    try:
        watch.start()
        # The kernel's working directory is set through nbclient's ``resources`` rather
        # than papermill's ``cwd=``: the latter os.chdir()s the whole process, which races
        # when notebooks run in parallel threads. The time limit is enforced by ``watch``
        # for the whole notebook, not per cell.
        papermill.execute_notebook(
            str(job.path),
            str(executed),
            parameters=job.parameters,
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=False,
            resources={"metadata": {"path": str(job.path.parent)}},
            kernel_manager_class=_kernel_manager_class(watch),
        )
    except Exception as exc:  # any failure is recorded in the run, not raised
        error = exc
    finally:
        watch.stop()
        watches.discard(watch)
    if error is not None or watch.timed_out:
        return _failure(job, executed, error, watch=watch, seconds=time.perf_counter() - start)
    try:
        export_html(executed, html_path)
    except Exception as exc:
        seconds = time.perf_counter() - start
        message = f"HTML export failed: {_error_message(exc)}"
        return NotebookResult(job.name, "failed", seconds, executed, None, message)
    return NotebookResult(job.name, "ok", time.perf_counter() - start, executed, html_path, None)


# --------------------------------------------------------------------------- progress


class _Progress:
    """One line per notebook started/finished on stderr; a tqdm bar as well on a terminal."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled
        self._lock = threading.Lock()
        self._stream = sys.stderr
        self._bar = None
        if enabled and getattr(self._stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc="notebooks", unit="nb", file=self._stream, leave=False
            )

    def _emit(self, text: str) -> None:
        if not self.enabled:
            return
        line = f"{datetime.now():%H:%M:%S} {text}"
        if self._bar is not None:
            self._bar.write(line, file=self._stream)
        else:
            print(line, file=self._stream, flush=True)

    def note(self, text: str) -> None:
        with self._lock:
            self._emit(text)

    def started(self, name: str) -> None:
        with self._lock:
            self._emit(f"[start] {name}")

    def finished(self, result: NotebookResult) -> None:
        with self._lock:
            self.done += 1
            text = (
                f"[{result.status}] {result.name} {result.seconds:.1f} s ({self.done}/{self.total})"
            )
            if result.error:
                text += f": {result.error}"
            self._emit(text)
            if self._bar is not None:
                self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _execute(
    jobs: list[_Job],
    build_dir: Path,
    *,
    workers: int,
    kernel_name: str,
    timeout: float | None,
    progress: _Progress,
) -> tuple[NotebookResult, ...]:
    """Run every job; on an interrupt kill every kernel before re-raising."""
    watches = _Watches()
    pool = ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="report")
    futures: list[Future] = []
    finished: dict[str, NotebookResult] = {}

    def work(job: _Job) -> NotebookResult:
        result = _run_one(
            job,
            build_dir,
            kernel_name=kernel_name,
            timeout=timeout,
            watches=watches,
            progress=progress,
        )
        progress.finished(result)  # before this worker picks up the next notebook
        return result

    try:
        futures.extend(pool.submit(work, job) for job in jobs)
        for future in as_completed(futures):
            result = future.result()
            finished[result.name] = result
    except BaseException:
        for future in futures:
            future.cancel()
        watches.cancel_all()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return tuple(finished[job.name] for job in jobs)


# --------------------------------------------------------------------------- run folders


@contextlib.contextmanager
def _run_lock(reports_dir: Path, *, params_path: Path) -> Iterator[Path | None]:
    """Hold ``reports_dir/.lock`` exclusively for the duration of a run.

    The holder writes its pid, host, start time and parameters file into the lock file
    so that a refused run can say who holds it. The file itself is never deleted
    (deleting a flock'ed file would let two runs lock two different files).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: runs are not locked
        yield None
        return
    path = reports_dir / _LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ReportError(f"cannot open the lock file {path}: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(path)
            raise RunLockedError(
                _locked_message(reports_dir, path, holder), lock_path=path, holder=holder
            ) from None
        except OSError as exc:
            raise ReportError(
                f"cannot lock {path}: {exc} (the reports folder must be on a local file system)"
            ) from exc
        info = {
            "pid": os.getpid(),
            "host": platform.node(),
            "started_at": datetime.now().isoformat(sep=" ", timespec="seconds"),
            "params_file": str(params_path),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _lock_holder(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _locked_message(reports_dir: Path, path: Path, holder: Mapping[str, Any]) -> str:
    if holder.get("pid"):
        who = f"pid {holder['pid']}"
        if holder.get("host"):
            who += f" on {holder['host']}"
        if holder.get("started_at"):
            who += f", started {holder['started_at']}"
        if holder.get("params_file"):
            who += f", parameters {holder['params_file']}"
    else:
        who = "its details are not written yet"
    return (
        f"another report run is in progress in {reports_dir} ({who}); nothing was run. "
        f"Wait for it to finish and try again (its lock, {path}, is released when that "
        "process exits)."
    )


def _run_name(reports_dir: Path, started_at: datetime) -> str:
    """The dated folder name of a new run: ``<stamp>``, or ``<stamp>-<n>`` if taken."""
    stamp = started_at.strftime(_STAMP_FORMAT)
    for n in range(1, 1000):
        name = stamp if n == 1 else f"{stamp}-{n}"
        if not os.path.lexists(reports_dir / name):
            return name
    raise ReportError(f"too many runs named {stamp} in {reports_dir}")


def _remove_leftovers(reports_dir: Path, progress: _Progress) -> None:
    """Delete what crashed runs left behind (only ever called under the lock)."""
    for path in sorted(reports_dir.iterdir()):
        if path.name.startswith(_BUILD_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            progress.note(f"removed the unfinished folder of an interrupted run: {path.name}")
        elif path.name.startswith(f".{_LATEST}-") and path.is_symlink():
            path.unlink(missing_ok=True)


def _run_folders(reports_dir: Path) -> list[Path]:
    """Run folders in ``reports_dir``, oldest first (dated name and a manifest)."""
    runs = []
    for path in reports_dir.iterdir():
        match = _RUN_NAME_RE.match(path.name)
        if match and path.is_dir() and not path.is_symlink() and (path / _MANIFEST).is_file():
            runs.append((match["stamp"], int(match["n"] or 1), path))
    return [path for *_, path in sorted(runs)]


def _prune(reports_dir: Path, *, keep: int, current: Path, progress: _Progress) -> tuple[Path, ...]:
    """Delete run folders beyond the ``keep`` newest; never ``latest``'s nor ``current``."""
    runs = _run_folders(reports_dir)
    if len(runs) <= keep:
        return ()
    protected = {current.resolve()}
    latest = reports_dir / _LATEST
    if latest.is_symlink():
        protected.add(latest.resolve())
    removed = []
    for path in runs[:-keep]:
        if path.resolve() in protected:
            continue
        try:
            shutil.rmtree(path)
        except OSError as exc:
            progress.note(f"warning: could not delete the old run {path}: {exc}")
            continue
        removed.append(path)
    return tuple(removed)


def _publish(reports_dir: Path, run_dir: Path) -> Path:
    """Point ``reports_dir/latest`` at ``run_dir`` atomically (relative symlink)."""
    latest = reports_dir / _LATEST
    tmp = reports_dir / f".{_LATEST}-{uuid.uuid4().hex}"
    try:
        os.symlink(run_dir.name, tmp, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(
            f"the run succeeded ({run_dir}) but {latest} could not be updated: {exc}"
        ) from exc
    return latest


# --------------------------------------------------------------------------- manifest


def _versions() -> dict[str, str]:
    from . import __version__

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "pipeline_lib": __version__,
        **{name: dist(name) for name in _VERSIONED},
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {
        "path": str(path),
        "sha256": _sha256(path),
        "size": stat.st_size,
        "mtime": datetime.fromtimestamp(stat.st_mtime).astimezone().isoformat(timespec="seconds"),
    }


def _display_path(path: Path) -> str:
    try:
        return str(path.relative_to(config.PROJECT_ROOT))
    except ValueError:
        return str(path)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _existing_file(value: str) -> Path | None:
    if not value.strip() or "\n" in value:
        return None
    try:
        path = config.resolve_path(value)
        return path if path.is_file() else None
    except (OSError, ValueError):  # not a usable path (too long, NUL byte, ...)
        return None


def _table_source(spec: Any) -> tuple[str, Path | None, str | None]:
    """``(key, file or None, url)`` of one table of a source config; key "" if derived."""
    if spec.path is not None:
        return _display_path(spec.path), spec.path, None
    if spec.url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(spec.url)
        except ArgumentError:
            return "sql:<invalid url>", None, None
        shown = url.render_as_string(hide_password=True)
        database = url.database or ""
        is_file = database not in ("", ":memory:") and not database.startswith("file:")
        if url.drivername.startswith("sqlite") and is_file:
            db = Path(database)
            return _display_path(db), db, shown
        return f"sql:{shown}", None, shown
    return "", None, None


def _input_fingerprints(jobs: list[_Job]) -> dict[str, dict[str, Any]]:
    """Fingerprint every file a run reads, keyed by its path (relative to the project).

    A parameter value naming an existing file is an input. When it is a source config
    (read with :func:`pipeline_lib.sources.load_source_config`), every table file it
    names is an input too; a sqlite database file is fingerprinted like any file, other
    database URLs are recorded without their password. Each file gets ``sha256``,
    ``size`` and ``mtime``; ``used_by`` lists the notebooks, ``tables`` the canonical
    tables read from it.
    """
    from .sources import load_source_config

    inputs: dict[str, dict[str, Any]] = {}

    def add(key: str, make: Callable[[], dict[str, Any]], used_by: str, table: str | None):
        entry = inputs.get(key)
        if entry is None:
            try:
                entry = make()
            except OSError as exc:
                entry = {"error": f"cannot read: {exc}"}
            entry.setdefault("used_by", [])
            inputs[key] = entry
        if used_by not in entry["used_by"]:
            entry["used_by"].append(used_by)
        if table is not None and table not in entry.setdefault("tables", []):
            entry["tables"].append(table)

    for job in jobs:
        for value in _strings(job.parameters):
            path = _existing_file(value)
            if path is None:
                continue
            source = None
            if path.suffix.lower() in (".yaml", ".yml"):
                try:
                    source = load_source_config(path)
                except PipelineError:
                    source = None  # not a source config (or a broken one: the notebook says)
            kind = "source config" if source is not None else "file"
            add(
                _display_path(path),
                lambda p=path, k=kind: {"kind": k, **_fingerprint(p)},
                job.name,
                None,
            )
            if source is None:
                continue
            for name, spec in source.tables.items():
                key, file, url = _table_source(spec)
                if not key:
                    continue  # derived from another table (e.g. wide stage history)
                if file is not None:

                    def make(f=file, u=url) -> dict[str, Any]:
                        if not f.is_file():
                            return {"kind": "table", "path": str(f), "error": "file not found"}
                        entry = {"kind": "table", **_fingerprint(f)}
                        if u:
                            entry["url"] = u
                        return entry

                else:

                    def make(u=url) -> dict[str, Any]:
                        return {
                            "kind": "database",
                            "url": u,
                            "note": "a database server: its contents are not fingerprinted",
                        }

                add(key, make, job.name, name)
    return inputs


def _write_manifest(
    build_dir: Path,
    *,
    run_name: str,
    started_at: datetime,
    finished_at: datetime,
    seconds: float,
    params_path: Path,
    jobs: list[_Job],
    results: tuple[NotebookResult, ...],
    ok: bool,
    inputs: dict[str, dict[str, Any]],
    settings: dict[str, Any],
) -> Path:
    by_name = {r.name: r for r in results}
    manifest = {
        "run": run_name,
        "status": "ok" if ok else "failed",
        "ok": ok,
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished_at.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "host": platform.node(),
        "params_file": str(params_path),
        "params_sha256": _sha256(params_path),
        "settings": settings,
        "notebooks": {
            job.name: {
                "source": str(job.path),
                "source_sha256": _sha256(job.path),
                "parameters": job.parameters,
                "status": by_name[job.name].status,
                "seconds": round(by_name[job.name].seconds, 3),
                "error": by_name[job.name].error,
                "cell": by_name[job.name].cell,
                "source_line": by_name[job.name].source_line,
                "executed": by_name[job.name].executed.name,
                "html": by_name[job.name].html.name if by_name[job.name].html else None,
            }
            for job in jobs
        },
        "versions": _versions(),
        "inputs": inputs,
    }
    path = build_dir / _MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- index page

_INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 60rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
p.meta { color: #666; margin-top: 0; }
p.note { background: #fff3cd; color: #664d03; padding: .5rem .75rem; border-radius: .25rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #ddd;
         vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.status { font-weight: 600; border-radius: .25rem; padding: .1rem .45rem; }
.ok { color: #155724; background: #d4edda; }
.failed, .timeout { color: #721c24; background: #f8d7da; }
td.error { font-family: ui-monospace, monospace; font-size: .85rem; color: #721c24;
           white-space: pre-wrap; }
"""


def _write_index(
    build_dir: Path,
    *,
    run_name: str,
    started_at: datetime,
    params_path: Path,
    results: tuple[NotebookResult, ...],
    ok: bool,
    previous: str | None,
) -> Path:
    e = html.escape
    rows = []
    for r in results:
        target = r.html if r.html is not None else r.executed
        link_text = r.name if r.html is not None else f"{r.name} (executed notebook)"
        error = r.error or ""
        if r.cell is not None:
            error += f"\nat cell In [{r.cell}]" + (f": {r.source_line}" if r.source_line else "")
        rows.append(
            "<tr>"
            f'<td><a href="{e(target.name)}">{e(link_text)}</a></td>'
            f'<td><span class="status {e(r.status)}">{e(r.status)}</span></td>'
            f'<td class="num">{r.seconds:.1f} s</td>'
            f'<td class="error">{e(error)}</td>'
            "</tr>"
        )
    n_failed = sum(not r.ok for r in results)
    summary = "all notebooks succeeded" if ok else f"{n_failed} of {len(results)} failed"
    note = ""
    if not ok:
        note = (
            f'<p class="note">This run was not published. The published report is still '
            f'<a href="../{_LATEST}/index.html">{e(previous)}</a>.</p>'
            if previous
            else '<p class="note">This run was not published (no run has succeeded yet).</p>'
        )
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sales Pipeline Workbench reports {e(run_name)}</title>
<style>{_INDEX_CSS}</style>
</head>
<body>
<h1>Sales Pipeline Workbench reports</h1>
<p class="meta">Run {e(run_name)}, started {e(started_at.isoformat(sep=" ", timespec="seconds"))}
&middot; parameters {e(str(params_path))} &middot;
<span class="status {"ok" if ok else "failed"}">{e(summary)}</span> &middot;
<a href="{_MANIFEST}">{_MANIFEST}</a></p>
{note}
<table>
<thead><tr><th>Notebook</th><th>Status</th><th>Time</th><th>Error</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body>
</html>
"""
    path = build_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the run


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
    if workers < 1:
        raise ReportError(f"workers must be at least 1, got {workers}")
    if timeout is not None and timeout <= 0:
        raise ReportError(f"timeout must be a positive number of seconds or None, got {timeout}")
    if keep is not None and keep < 0:
        raise ReportError(f"keep must be 0 (keep every run) or more, got {keep}")
    params_path = config.resolve_path(params_path)
    reports_dir = config.resolve_path(reports_dir)

    params = load_params(params_path)
    jobs = _plan(params, params_path, _resolve_notebooks(notebooks))
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create reports folder {reports_dir}: {exc}") from exc

    with _run_lock(reports_dir, params_path=params_path):
        bar = _Progress(len(jobs), enabled=progress)
        try:
            _remove_leftovers(reports_dir, bar)
            run_name = _run_name(reports_dir, started_at)
            build_dir = reports_dir / f"{_BUILD_PREFIX}{run_name}-{uuid.uuid4().hex[:8]}"
            try:
                build_dir.mkdir()
            except OSError as exc:
                raise ReportError(f"cannot create run folder {build_dir}: {exc}") from exc
            try:
                inputs = _input_fingerprints(jobs)
                results = _execute(
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
        latest_link = reports_dir / _LATEST
        previous = os.readlink(latest_link) if latest_link.is_symlink() else None
        _write_manifest(
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
        _write_index(
            build_dir,
            run_name=run_name,
            started_at=started_at,
            params_path=params_path,
            results=results,
            ok=ok,
            previous=previous,
        )
        run_dir = reports_dir / run_name
        try:
            os.rename(build_dir, run_dir)
        except OSError as exc:
            raise ReportError(
                f"cannot move the finished run {build_dir} to {run_dir}: {exc}"
            ) from exc
        results = tuple(
            replace(
                r,
                executed=run_dir / r.executed.name,
                html=run_dir / r.html.name if r.html is not None else None,
            )
            for r in results
        )
        latest = _publish(reports_dir, run_dir) if ok else None
        pruned = _prune(reports_dir, keep=keep, current=run_dir, progress=bar) if keep else ()
    return RunResult(run_dir=run_dir, results=results, ok=ok, latest=latest, pruned=pruned)
