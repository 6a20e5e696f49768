"""Executing the notebooks of a run with Papermill, in parallel, and recording outcomes.

:func:`execute_jobs` runs each notebook in its own kernel (a thread per notebook, at
most ``workers`` at once) into the run folder, exports the HTML of those that succeed
and returns one :class:`~pipeline_lib.results.NotebookResult` each. A failure is
recorded, not raised: the executed notebook keeps the error marked by Papermill (also
when the kernel died or was stopped at its time limit, which produce no cell output of
their own), and the result names the cell and line; for a kernel that died, how it ended
(the signal that killed it, or its exit status). A run folder that cannot be written
(disk full, read-only, no permission) is not a notebook failure: it raises
:class:`~pipeline_lib.publishing.ReportWriteError` and stops the run. On an interrupt or
such an error every kernel is killed before the exception propagates. :class:`Progress`
prints a line per notebook started and finished on stderr.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

import nbformat

from .html_export import export_html
from .kernels import KernelWatch, KernelWatches, kernel_manager_class
from .params import Job
from .publishing import ReportWriteError, is_write_failure
from .results import NotebookResult

__all__ = ["Progress", "execute_jobs"]

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ARROW_RE = re.compile(r"^\s*-*>\s*\d+\s?(?P<code>.*)$")


class Progress:
    """One line per notebook started/finished on stderr; a tqdm bar as well on a terminal.

    Parameters
    ----------
    total : int
        Notebooks in the run.
    enabled : bool
        False to print nothing at all.
    """

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


def execute_jobs(
    jobs: list[Job],
    build_dir: Path,
    *,
    workers: int,
    kernel_name: str,
    timeout: float | None,
    progress: Progress,
) -> tuple[NotebookResult, ...]:
    """Run every job; on an interrupt kill every kernel before re-raising.

    Parameters
    ----------
    jobs : list of Job
        The notebooks, with their parameters.
    build_dir : Path
        The run folder receiving ``<name>.ipynb`` and ``<name>.html``.
    workers : int
        Notebooks run at once.
    kernel_name : str
        Jupyter kernel to execute with.
    timeout : float or None
        Seconds one notebook may run; None for no limit.
    progress : Progress
        Told when each notebook starts and finishes.

    Returns
    -------
    tuple of NotebookResult
        One per job, in job order.

    Raises
    ------
    ReportWriteError
        When the run folder cannot be written (every kernel is killed first).
    KeyboardInterrupt
        When interrupted (every kernel is killed first).
    """
    watches = KernelWatches()
    pool = ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="report")
    futures: list[Future] = []
    finished: dict[str, NotebookResult] = {}

    def work(job: Job) -> NotebookResult:
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


def _mark_error(
    executed: Path, ename: str, evalue: str, *, details: str = ""
) -> BaseException | None:
    """Record an error that produced no cell output (dead kernel) the way Papermill does.

    The last cell that started gets an error output (``details``, e.g. what the kernel
    process wrote before dying, below the message), then Papermill's own marker cells
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
    if cell.execution_count is None:
        # It died before replying, so Jupyter never numbered it; cells run in order and
        # each execution takes the next number, so it is the last number used plus one.
        counts = [c.execution_count or 0 for c in nb.cells if c.cell_type == "code"]
        cell.execution_count = max(counts, default=0) + 1
    traceback = [f"{ename}: {evalue}"]
    if details:
        traceback += ["", "What the kernel process wrote last:", details]
    cell.outputs.append(
        nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=traceback)
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


def _death(status: int | None, *, when: str = "while running this cell") -> str:
    """How a kernel that died ended, in words, from its exit status."""
    text = f"the kernel died {when}"
    if status is None:
        return text
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = "an unknown signal"
        hint = ": often the out-of-memory killer" if -status == signal.SIGKILL else ""
        return f"{text} (killed by signal {-status}, {name}{hint})"
    return f"{text} (it exited with status {status})"


def _kernel_died(exc: BaseException) -> bool:
    """Whether nbclient says the kernel process died (while running, or while starting)."""
    from nbclient.exceptions import DeadKernelError

    if isinstance(exc, DeadKernelError):
        return True
    return isinstance(exc, RuntimeError) and str(exc).startswith("Kernel died")


def _failure(
    job: Job, executed: Path, exc: BaseException | None, *, watch: KernelWatch, seconds: float
) -> NotebookResult:
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    timeout_message = (
        f"Timeout: the notebook was still running after {watch.timeout:g} s and was stopped"
    )
    if exc is not None and not isinstance(exc, PapermillExecutionError):
        details = ""
        if watch.timed_out:
            ename, evalue = "Timeout", timeout_message.removeprefix("Timeout: ")
        elif watch.cancelled:
            ename, evalue = "Stopped", "the run was stopped before this notebook finished"
        elif _kernel_died(exc):
            ename, evalue = "DeadKernelError", _death(watch.exit_status())
            details = watch.log_tail()
        else:
            ename, evalue = type(exc).__name__, _first_line(str(exc)) or "the kernel stopped"
        marked = _mark_error(executed, ename, evalue, details=details)
        if marked is None and ename == "DeadKernelError":
            # no cell had started: it died while starting, say so and how
            last = _first_line("\n".join(reversed(details.splitlines())))
            evalue = _death(watch.exit_status(), when="before running the first cell")
            exc = DeadKernelError(evalue + (f"; its last output: {last}" if last else ""))
        else:
            exc = marked or exc
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


def _write_failure(exc: BaseException, executed: Path) -> ReportWriteError | None:
    """The run-level error for an exception that says the run folder cannot be written.

    Papermill writes the executed notebook after every cell; an OSError escaping it is
    the runner's own I/O (errors of the notebook's code arrive as
    ``PapermillExecutionError``). A write failure without a file name is that write.
    """
    if isinstance(exc, ReportWriteError):
        return exc
    if not is_write_failure(exc):
        return None
    path = Path(exc.filename) if getattr(exc, "filename", None) else executed
    return ReportWriteError.from_os_error(exc, doing=f"write {path}", path=path)


def _run_one(
    job: Job,
    build_dir: Path,
    *,
    kernel_name: str,
    timeout: float | None,
    watches: KernelWatches,
    progress: Progress,
) -> NotebookResult:
    executed = build_dir / f"{job.name}.ipynb"
    html_path = build_dir / f"{job.name}.html"
    progress.started(job.name)
    start = time.perf_counter()
    watch = watches.new(timeout)
    try:
        return _execute(job, executed, html_path, kernel_name, watch, watches, start)
    finally:
        watch.close_log()


def _execute(
    job: Job,
    executed: Path,
    html_path: Path,
    kernel_name: str,
    watch: KernelWatch,
    watches: KernelWatches,
    start: float,
) -> NotebookResult:
    import papermill

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
            kernel_manager_class=kernel_manager_class(watch),
        )
    except Exception as exc:  # a notebook's failure is recorded in the run, not raised
        error = exc
    finally:
        watch.stop()
        watches.discard(watch)
    if error is not None and not watch.cancelled:
        unwritable = _write_failure(error, executed)
        if unwritable is not None:
            raise unwritable from error
    if error is not None or watch.timed_out:
        return _failure(job, executed, error, watch=watch, seconds=time.perf_counter() - start)
    try:
        export_html(executed, html_path)
    except ReportWriteError:
        raise
    except Exception as exc:
        seconds = time.perf_counter() - start
        message = f"HTML export failed: {_error_message(exc)}"
        return NotebookResult(job.name, "failed", seconds, executed, None, message)
    return NotebookResult(job.name, "ok", time.perf_counter() - start, executed, html_path, None)
