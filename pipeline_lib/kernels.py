"""The kernels of a run: report mode, encrypted transport, time limits, stopping.

Every kernel the runner starts sees ``PIPELINE_WORKBENCH_MODE=report`` (the filter bar
of :mod:`pipeline_lib.widgets` is then invisible) and talks to the runner over
CurveZMQ-encrypted Unix sockets (TCP on systems without them) when the kernel supports
it. A :class:`KernelWatch` holds one
notebook's time limit: when it runs out the kernel is interrupted (a
``KeyboardInterrupt`` in the running cell, so the executed notebook shows where it hung)
and, if it is still alive ten seconds later, killed with its whole process group.
:class:`KernelWatches` holds every live watch of a run, so an interrupted run can kill
all its kernels at once.

What a kernel process writes to its own stdout and stderr outside its cells (before
ipykernel captures them for the notebook, e.g. why it could not start, and after, e.g.
tracebacks of a kernel shut down mid-output) goes to a temporary file rather than to the
operator's console; :meth:`KernelWatch.log_tail` reads its end, which the runner quotes
for a kernel that died.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from typing import IO, Any

__all__ = [
    "MODE_VARIABLE",
    "REPORT_MODE",
    "KernelWatch",
    "KernelWatches",
    "kernel_manager_class",
]

#: Environment variable set for every kernel the runner starts (read by ``widgets``).
MODE_VARIABLE = "PIPELINE_WORKBENCH_MODE"
#: Its value in a report run.
REPORT_MODE = "report"
#: Whether kernels talk over Unix sockets (POSIX) rather than TCP ports of localhost.
_IPC = os.name == "posix"
#: Seconds between interrupting a notebook that ran out of time and killing its kernel.
_KILL_GRACE = 10.0


class KernelWatch:
    """The kernel of one notebook: its deadline, and how to stop it.

    ``attach`` is called from the kernel manager once the kernel process exists. At the
    deadline the kernel's process group gets SIGINT (a ``KeyboardInterrupt`` in the
    running cell, which Papermill records and marks), then SIGKILL ``_KILL_GRACE``
    seconds later if it is still there. ``cancel`` (an interrupted run) kills at once.
    :meth:`exit_status` says how the kernel process ended (a kernel that died).

    Parameters
    ----------
    timeout : float or None
        Seconds from ``start`` to the interrupt; None for no limit.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.timed_out = False
        self.cancelled = False
        self._stopped = False
        self._km: Any = None
        self._process: Any = None
        self._log: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def start(self) -> None:
        if self.timeout is not None:
            self._later(self.timeout, self._expire)

    def attach(self, km: Any) -> None:
        with self._lock:
            self._km = km
            self._process = getattr(getattr(km, "provisioner", None), "process", None)
            doomed = self.timed_out or self.cancelled
        if doomed:
            self._signal("SIGKILL")

    def exit_status(self) -> int | None:
        """The kernel process's exit status (negative: killed by that signal), or None.

        None while it runs, or when the process is unknown (not a local kernel).
        """
        with self._lock:
            process = self._process
        poll = getattr(process, "poll", None)
        try:
            return poll() if poll is not None else None
        except OSError:
            return None

    def open_log(self) -> IO[bytes] | None:
        """The temporary file for the kernel process's own stdout and stderr.

        None when no temporary file can be made (the kernel then inherits the runner's).
        """
        with self._lock:
            if self._log is None:
                try:  # kept open for the kernel's lifetime; closed by close_log
                    self._log = tempfile.TemporaryFile(prefix="pipeline-kernel-")  # noqa: SIM115
                except OSError:
                    return None
            return self._log

    def log_tail(self, *, lines: int = 20, limit: int = 16384) -> str:
        """The last ``lines`` lines the kernel process wrote itself ("" when none)."""
        with self._lock:
            log = self._log
        if log is None:
            return ""
        try:
            size = os.fstat(log.fileno()).st_size
            data = os.pread(log.fileno(), min(limit, size), max(0, size - limit))
        except (OSError, ValueError):
            return ""
        text = data.decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:]).strip()

    def close_log(self) -> None:
        """Close (and so delete) the temporary file."""
        with self._lock:
            log, self._log = self._log, None
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()

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


class KernelWatches:
    """Every live :class:`KernelWatch` of a run, so an interrupt can stop all kernels.

    ``new`` makes a watch (already cancelled when the run was), ``discard`` forgets a
    finished one, ``cancel_all`` kills every live kernel and dooms those still starting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[KernelWatch] = set()
        self._cancelled = False

    def new(self, timeout: float | None) -> KernelWatch:
        watch = KernelWatch(timeout)
        with self._lock:
            watch.cancelled = self._cancelled
            self._live.add(watch)
        return watch

    def discard(self, watch: KernelWatch) -> None:
        with self._lock:
            self._live.discard(watch)

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled = True
            live = list(self._live)
        for watch in live:
            watch.cancel()


def kernel_manager_class(watch: KernelWatch) -> type:
    """A kernel manager that marks the kernel as a report kernel and reports its process.

    The kernel gets ``PIPELINE_WORKBENCH_MODE=report`` in its environment, its own
    stdout and stderr go to the watch's temporary file (:meth:`KernelWatch.open_log`)
    instead of the operator's console, and,
    when pyzmq and the kernelspec support it, it uses CurveZMQ transport encryption
    (ipykernel then has no reason to warn about running over TCP without encryption).

    Parameters
    ----------
    watch : KernelWatch
        Told about the kernel (``attach``) once its process exists.

    Returns
    -------
    type
        A subclass of :class:`jupyter_client.manager.AsyncKernelManager`, for
        Papermill's ``kernel_manager_class``.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    encrypt = zmq.has("curve") and "transport_encryption" in AsyncKernelManager.class_trait_names()

    class ReportKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if encrypt:
                self.transport_encryption = "auto"
            self._socket_dir: str | None = None
            if _IPC:
                # Unix sockets in a folder of this kernel's own, not TCP ports: a TCP
                # port is picked free, released, then bound by the kernel, and another
                # process starting a kernel in between (parallel runs, a second
                # scheduled job) can take it; the kernel then dies with "Address
                # already in use" before running a cell.
                self._socket_dir = tempfile.mkdtemp(prefix="pw-kernel-")
                self.transport = "ipc"
                self.ip = os.path.join(self._socket_dir, "k")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if self._socket_dir is not None and not restart:
                shutil.rmtree(self._socket_dir, ignore_errors=True)
                self._socket_dir = None

        cleanup_resources = _async_cleanup_resources

        async def _async_start_kernel(self, **kw: Any) -> None:
            kw["env"] = {**os.environ, **(kw.get("env") or {}), MODE_VARIABLE: REPORT_MODE}
            log = watch.open_log()
            if log is not None:
                kw.setdefault("stdout", log)
                kw.setdefault("stderr", log)
            await super()._async_start_kernel(**kw)
            watch.attach(self)

        start_kernel = _async_start_kernel

    return ReportKernelManager
