"""The reports folder: the run lock, run folders, leftovers, pruning and ``latest``.

A run is built aside in a hidden folder ``reports/.run-<stamp>-<id>/`` and renamed to its
dated name, ``reports/<YYYY-MM-DD_HHMMSS>/`` (``-2``, ``-3``... when the name is taken),
when every notebook has finished. When every notebook succeeded, ``reports/latest`` (a
relative symlink) is switched to it atomically: a temporary link ``.latest-<id>`` is
made first (:func:`prepare_latest`, before the rename, so a folder that cannot take a
new link fails before anything is renamed), then renamed over ``latest``
(:func:`switch_latest`).

A run holds an exclusive lock on ``reports/.lock`` (``fcntl.flock``, released by the
operating system even if the process dies); a second run on the same reports folder
fails at once with :class:`~pipeline_lib.errors.RunLockedError` naming the holder's pid
and start time. Under the lock a run removes the leftovers of crashed runs (hidden
``.run-*`` folders, ``.pruned-*`` folders and ``.latest-*`` links) and, at the end,
prunes old run folders: the ``keep`` newest dated folders are kept, whatever their
status, plus the folder ``latest`` points to; anything that is not a run folder (no dated
name or no ``manifest.json``) is never touched. A pruned folder is first renamed to a
hidden ``.pruned-*`` name, so an interrupted deletion never leaves half a run folder in
view.

A file or folder of the reports that cannot be written (disk full, quota, file size
limit, read-only file system, no permission) raises :class:`ReportWriteError`, which
carries the operating system's error number; :func:`explain_write_failure` says in
words what it means and what to do.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import json
import os
import platform
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .errors import ReportError, RunLockedError
from .results import MANIFEST_NAME

__all__ = [
    "DEFAULT_KEEP",
    "LATEST_NAME",
    "ReportWriteError",
    "WRITE_ERRNOS",
    "explain_write_failure",
    "is_write_failure",
    "run_lock",
    "run_name",
    "make_build_dir",
    "move_into_place",
    "remove_leftovers",
    "prune",
    "prepare_latest",
    "switch_latest",
    "publish",
    "latest_target",
]

#: Run folders kept by default (the newest ones, plus the one ``latest`` points to).
DEFAULT_KEEP = 10
#: The link to the last run that fully succeeded, in the reports folder.
LATEST_NAME = "latest"
#: Error numbers that mean "this place cannot be written" rather than a bug.
WRITE_ERRNOS = frozenset(
    {_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG, _errno.EROFS, _errno.EACCES, _errno.EPERM}
)

_LOCK_NAME = ".lock"
_BUILD_PREFIX = ".run-"
_PRUNED_PREFIX = ".pruned-"
_STAMP_FORMAT = "%Y-%m-%d_%H%M%S"
_RUN_NAME_RE = re.compile(r"^(?P<stamp>\d{4}-\d{2}-\d{2}_\d{6})(?:-(?P<n>\d+))?$")


class ReportWriteError(ReportError):
    """A file or folder of the reports could not be written.

    Raised for a full disk, an exhausted quota, the file size limit, a read-only file
    system or a missing permission, with the operating system's reason.
    :func:`pipeline_lib.report.run_reports` re-raises it with a message saying what
    happened to the run and to the previous report, and what to do (the command line
    exits with status 4).

    Parameters
    ----------
    message : str
        What could not be done and why.
    path : Path, optional
        The file or folder that could not be written.
    errno : int, optional
        The operating system's error number (``errno.ENOSPC``, ...).
    strerror : str, optional
        The operating system's text for it.

    Examples
    --------
    >>> exc = ReportWriteError.from_os_error(
    ...     OSError(28, "No space left on device"), doing="write /r/x.html", path="/r/x.html"
    ... )
    >>> str(exc), exc.errno
    ('cannot write /r/x.html: No space left on device', 28)
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        errno: int | None = None,
        strerror: str | None = None,
    ) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None
        self.errno = errno
        self.strerror = strerror

    @classmethod
    def from_os_error(
        cls, exc: OSError, *, doing: str, path: str | Path | None = None
    ) -> ReportWriteError:
        """``cannot <doing>: <reason>`` from an OSError (``path`` defaults to its file)."""
        if path is None and exc.filename:
            path = os.fsdecode(exc.filename)
        strerror = exc.strerror or str(exc) or type(exc).__name__
        return cls(f"cannot {doing}: {strerror}", path=path, errno=exc.errno, strerror=strerror)


@contextlib.contextmanager
def _write_errors(
    doing: str, *, path: str | Path | None = None, cleanup: Callable[[], object] | None = None
) -> Iterator[None]:
    """Raise an OSError of the block as :class:`ReportWriteError` ``cannot <doing>: ...``.

    ``cleanup`` (if given) runs first; an OSError of its own is ignored.
    """
    try:
        yield
    except OSError as exc:
        if cleanup is not None:
            with contextlib.suppress(OSError):
                cleanup()
        raise ReportWriteError.from_os_error(exc, doing=doing, path=path) from exc


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is an OSError saying a place cannot be written (:data:`WRITE_ERRNOS`)."""
    return isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS


def _user() -> str:
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError, TypeError):
        return "this user" if uid is None else f"uid {uid}"


def explain_write_failure(errno: int | None) -> tuple[str, str]:
    """What a write failure means and what to do, as ``(what, advice)``.

    Parameters
    ----------
    errno : int or None
        The operating system's error number.

    Returns
    -------
    tuple of str
        ``what`` completes "cannot write ...: <what>"; ``advice`` is a sentence.

    Examples
    --------
    >>> explain_write_failure(28)[0]
    'the disk is full'
    """
    if errno == _errno.ENOSPC:
        return (
            "the disk is full",
            "Free some space there (or keep fewer old runs with --keep) and run again.",
        )
    if errno == _errno.EDQUOT:
        return (
            "the disk quota is used up",
            "Free some space or raise the quota, and run again.",
        )
    if errno == _errno.EFBIG:
        return (
            "a file would exceed the file size limit of this process (ulimit -f)",
            "Raise the limit (ulimit -f) or make the notebook's output smaller, and run again.",
        )
    if errno == _errno.EROFS:
        return (
            "the file system is read-only",
            "Remount it read-write, or choose another folder with --reports-dir, and run again.",
        )
    if errno in (_errno.EACCES, _errno.EPERM):
        return (
            f"the folder is read-only for {_user()}",
            "Make it writable for that user, or choose another folder with --reports-dir, "
            "and run again.",
        )
    return (
        os.strerror(errno) if errno else "an input/output error",
        "Fix the cause and run again.",
    )


@contextlib.contextmanager
def run_lock(reports_dir: Path, *, params_path: Path) -> Iterator[Path | None]:
    """Hold ``reports_dir/.lock`` exclusively for the duration of a run.

    The holder writes its pid, host, start time and parameters file into the lock file
    so that a refused run can say who holds it (best effort: on a full disk the file
    stays empty). The file itself is never deleted (deleting a flock'ed file would let
    two runs lock two different files). The lock is released when the block ends,
    however it ends.

    Parameters
    ----------
    reports_dir : Path
        The reports folder (must exist).
    params_path : Path
        The parameters file of the run, written into the lock file.

    Yields
    ------
    Path or None
        The lock file; None where ``fcntl`` is missing (not POSIX: runs are not locked).

    Raises
    ------
    RunLockedError
        If another run holds the lock.
    ReportWriteError
        If the lock file cannot be opened for writing (read-only folder, full disk).
    ReportError
        If the lock file cannot be locked (e.g. on a network file system).
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: runs are not locked
        yield None
        return
    path = reports_dir / _LOCK_NAME
    with _write_errors(f"open the lock file {path}"):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
        with contextlib.suppress(OSError):  # who holds it is a courtesy, not a need
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
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


def run_name(reports_dir: Path, started_at: datetime) -> str:
    """The dated folder name of a new run: ``<stamp>``, or ``<stamp>-<n>`` if taken.

    Raises
    ------
    ReportError
        If 999 runs already carry this timestamp.
    """
    stamp = started_at.strftime(_STAMP_FORMAT)
    for n in range(1, 1000):
        name = stamp if n == 1 else f"{stamp}-{n}"
        if not os.path.lexists(reports_dir / name):
            return name
    raise ReportError(f"too many runs named {stamp} in {reports_dir}")


def make_build_dir(reports_dir: Path, name: str) -> Path:
    """Create the hidden folder ``.run-<name>-<id>`` a run is built in.

    Raises
    ------
    ReportWriteError
        If it cannot be created.
    """
    build_dir = reports_dir / f"{_BUILD_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    with _write_errors(f"create the run folder {build_dir}", path=build_dir):
        build_dir.mkdir()
    return build_dir


def move_into_place(build_dir: Path, run_dir: Path) -> None:
    """Rename a finished run's build folder to its dated name.

    Raises
    ------
    ReportWriteError
        If the rename fails.
    """
    with _write_errors(f"rename the finished run {build_dir} to {run_dir.name}", path=run_dir):
        os.rename(build_dir, run_dir)


def remove_leftovers(reports_dir: Path, *, note: Callable[[str], None]) -> None:
    """Delete what crashed runs left behind (only ever called under the lock).

    Hidden ``.run-*`` folders (unfinished runs), ``.pruned-*`` folders (old runs whose
    deletion was interrupted) and ``.latest-*`` links (a link switch that did not
    complete).

    Parameters
    ----------
    reports_dir : Path
        The reports folder.
    note : callable
        Told, in a line of text, about each unfinished run folder removed.

    Raises
    ------
    ReportWriteError
        If the reports folder cannot be listed.
    """
    with _write_errors(f"list {reports_dir}"):
        entries = sorted(reports_dir.iterdir())
    for path in entries:
        if path.is_symlink():
            if path.name.startswith(f".{LATEST_NAME}-"):
                with contextlib.suppress(OSError):
                    path.unlink()
        elif path.name.startswith(_BUILD_PREFIX) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            note(f"removed the unfinished folder of an interrupted run: {path.name}")
        elif path.name.startswith(_PRUNED_PREFIX) and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def _run_folders(reports_dir: Path) -> list[Path]:
    """Run folders in ``reports_dir``, oldest first (dated name and a manifest)."""
    runs = []
    for path in reports_dir.iterdir():
        match = _RUN_NAME_RE.match(path.name)
        if match and path.is_dir() and not path.is_symlink() and (path / MANIFEST_NAME).is_file():
            runs.append((match["stamp"], int(match["n"] or 1), path))
    return [path for *_, path in sorted(runs)]


def prune(
    reports_dir: Path, *, keep: int, current: Path, note: Callable[[str], None]
) -> tuple[Path, ...]:
    """Delete run folders beyond the ``keep`` newest; never ``latest``'s nor ``current``.

    Each folder is first renamed to a hidden ``.pruned-*`` name, then deleted: an
    interrupted deletion leaves a hidden leftover (removed by the next run), never half a
    run folder among the runs.

    Parameters
    ----------
    reports_dir : Path
        The reports folder.
    keep : int
        Run folders to keep (at least 1).
    current : Path
        The folder of the run that just finished (kept whatever its date).
    note : callable
        Told, in a line of text, about a folder that could not be deleted.

    Returns
    -------
    tuple of Path
        The folders deleted (by their run folder name).
    """
    runs = _run_folders(reports_dir)
    if len(runs) <= keep:
        return ()
    protected = {current.resolve()}
    latest = reports_dir / LATEST_NAME
    if latest.is_symlink():
        protected.add(latest.resolve())
    removed = []
    for path in runs[:-keep]:
        if path.resolve() in protected:
            continue
        aside = reports_dir / f"{_PRUNED_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(path, aside)
        except OSError as exc:
            note(f"warning: could not delete the old run {path}: {exc}")
            continue
        removed.append(path)
        try:
            shutil.rmtree(aside)
        except OSError as exc:
            note(
                f"warning: could not delete all of the old run {path.name} ({exc}); "
                f"the next run retries"
            )
    return tuple(removed)


def prepare_latest(reports_dir: Path, run_name: str) -> Path:
    """Make the temporary link ``.latest-<id>`` -> ``run_name`` for :func:`switch_latest`.

    Made before the run folder gets its dated name (the link may dangle until then).

    Returns
    -------
    Path
        The temporary link.

    Raises
    ------
    ReportWriteError
        If the link cannot be made.
    """
    tmp = reports_dir / f".{LATEST_NAME}-{uuid.uuid4().hex}"
    with _write_errors(f"create the link {tmp} for {LATEST_NAME}", path=tmp):
        os.symlink(run_name, tmp, target_is_directory=True)
    return tmp


def switch_latest(reports_dir: Path, link: Path) -> Path:
    """Rename the temporary ``link`` over ``reports_dir/latest`` (atomic).

    Returns
    -------
    Path
        The ``latest`` link.

    Raises
    ------
    ReportWriteError
        If the link cannot be replaced (the temporary link is then removed).
    """
    latest = reports_dir / LATEST_NAME
    with _write_errors(f"update {latest}", path=latest, cleanup=link.unlink):
        os.replace(link, latest)
    return latest


def publish(reports_dir: Path, run_dir: Path) -> Path:
    """Point ``reports_dir/latest`` at ``run_dir`` atomically (relative symlink).

    :func:`prepare_latest` then :func:`switch_latest`.

    Returns
    -------
    Path
        The ``latest`` link.

    Raises
    ------
    ReportWriteError
        If the link cannot be replaced.
    """
    return switch_latest(reports_dir, prepare_latest(reports_dir, run_dir.name))


def latest_target(reports_dir: Path) -> str | None:
    """The run folder name ``reports_dir/latest`` points to, or None when there is none."""
    latest = reports_dir / LATEST_NAME
    try:
        return os.readlink(latest) if latest.is_symlink() else None
    except OSError:
        return None
