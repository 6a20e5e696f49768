"""The reports folder: the run lock, run folders, leftovers, pruning and ``latest``.

A run is built aside in a hidden folder ``reports/.run-<stamp>-<id>/`` and renamed to its
dated name, ``reports/<YYYY-MM-DD_HHMMSS>/`` (``-2``, ``-3``... when the name is taken),
when every notebook has finished. When every notebook succeeded, ``reports/latest`` (a
relative symlink) is switched to it atomically (a new link renamed over the old one).

A run holds an exclusive lock on ``reports/.lock`` (``fcntl.flock``, released by the
operating system even if the process dies); a second run on the same reports folder
fails at once with :class:`~pipeline_lib.errors.RunLockedError` naming the holder's pid
and start time. Under the lock a run removes the leftovers of crashed runs (hidden
``.run-*`` folders and ``.latest-*`` links) and, at the end, prunes old run folders: the
``keep`` newest dated folders are kept, whatever their status, plus the folder
``latest`` points to; anything that is not a run folder (no dated name or no
``manifest.json``) is never touched.
"""

from __future__ import annotations

import contextlib
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
    "run_lock",
    "run_name",
    "make_build_dir",
    "move_into_place",
    "remove_leftovers",
    "prune",
    "publish",
    "latest_target",
]

#: Run folders kept by default (the newest ones, plus the one ``latest`` points to).
DEFAULT_KEEP = 10
#: The link to the last run that fully succeeded, in the reports folder.
LATEST_NAME = "latest"

_LOCK_NAME = ".lock"
_BUILD_PREFIX = ".run-"
_STAMP_FORMAT = "%Y-%m-%d_%H%M%S"
_RUN_NAME_RE = re.compile(r"^(?P<stamp>\d{4}-\d{2}-\d{2}_\d{6})(?:-(?P<n>\d+))?$")


@contextlib.contextmanager
def run_lock(reports_dir: Path, *, params_path: Path) -> Iterator[Path | None]:
    """Hold ``reports_dir/.lock`` exclusively for the duration of a run.

    The holder writes its pid, host, start time and parameters file into the lock file
    so that a refused run can say who holds it. The file itself is never deleted
    (deleting a flock'ed file would let two runs lock two different files).

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
    ReportError
        If the lock file cannot be opened or locked.
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
    ReportError
        If it cannot be created.
    """
    build_dir = reports_dir / f"{_BUILD_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    try:
        build_dir.mkdir()
    except OSError as exc:
        raise ReportError(f"cannot create run folder {build_dir}: {exc}") from exc
    return build_dir


def move_into_place(build_dir: Path, run_dir: Path) -> None:
    """Rename a finished run's build folder to its dated name.

    Raises
    ------
    ReportError
        If the rename fails.
    """
    try:
        os.rename(build_dir, run_dir)
    except OSError as exc:
        raise ReportError(f"cannot move the finished run {build_dir} to {run_dir}: {exc}") from exc


def remove_leftovers(reports_dir: Path, *, note: Callable[[str], None]) -> None:
    """Delete what crashed runs left behind (only ever called under the lock).

    Parameters
    ----------
    reports_dir : Path
        The reports folder.
    note : callable
        Told, in a line of text, about each unfinished run folder removed.
    """
    for path in sorted(reports_dir.iterdir()):
        if path.name.startswith(_BUILD_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            note(f"removed the unfinished folder of an interrupted run: {path.name}")
        elif path.name.startswith(f".{LATEST_NAME}-") and path.is_symlink():
            path.unlink(missing_ok=True)


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
        The folders deleted.
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
        try:
            shutil.rmtree(path)
        except OSError as exc:
            note(f"warning: could not delete the old run {path}: {exc}")
            continue
        removed.append(path)
    return tuple(removed)


def publish(reports_dir: Path, run_dir: Path) -> Path:
    """Point ``reports_dir/latest`` at ``run_dir`` atomically (relative symlink).

    Returns
    -------
    Path
        The ``latest`` link.

    Raises
    ------
    ReportError
        If the link cannot be replaced.
    """
    latest = reports_dir / LATEST_NAME
    tmp = reports_dir / f".{LATEST_NAME}-{uuid.uuid4().hex}"
    try:
        os.symlink(run_dir.name, tmp, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(
            f"the run succeeded ({run_dir}) but {latest} could not be updated: {exc}"
        ) from exc
    return latest


def latest_target(reports_dir: Path) -> str | None:
    """The run folder name ``reports_dir/latest`` points to, or None when there is none."""
    latest = reports_dir / LATEST_NAME
    return os.readlink(latest) if latest.is_symlink() else None
