"""The manifest of a run: parameters, fingerprints of the input files, versions, timings.

``manifest.json`` in each run folder says what ran with which parameters, how long it
took and how it ended, and pins what the reports were made from: the sha256 of the
parameters file and of every notebook, the sha256, size and mtime of every input file
(a parameter naming an existing file and, for a source config, every table file it
names), and the versions of Python, ``pipeline_lib`` and the main libraries.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from . import config
from .errors import PipelineError
from .params import Job
from .publishing import ReportWriteError
from .results import MANIFEST_NAME, NotebookResult

__all__ = ["input_fingerprints", "write_manifest"]

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


def _sha256_or_none(path: Path) -> str | None:
    """The sha256 of a file the run read, or None when it is gone or unreadable now."""
    try:
        return _sha256(path)
    except OSError:
        return None


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


def input_fingerprints(jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """Fingerprint every file a run reads, keyed by its path (relative to the project).

    A parameter value naming an existing file is an input. When it is a source config
    (read with :func:`pipeline_lib.sources.load_source_config`), every table file it
    names is an input too; a sqlite database file is fingerprinted like any file, other
    database URLs are recorded without their password. Each file gets ``sha256``,
    ``size`` and ``mtime``; ``used_by`` lists the notebooks, ``tables`` the canonical
    tables read from it.

    Parameters
    ----------
    jobs : list of Job
        The notebooks of the run, with their parameters.

    Returns
    -------
    dict
        Input key (a path relative to the project when under it, ``sql:<url>`` for a
        database server) -> its entry; an entry that could not be read has ``error``.
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


def _notebook_entry(job: Job, result: NotebookResult) -> dict[str, Any]:
    return {
        "source": str(job.path),
        "source_sha256": _sha256_or_none(job.path),
        "parameters": job.parameters,
        "status": result.status,
        "seconds": round(result.seconds, 3),
        "error": result.error,
        "cell": result.cell,
        "source_line": result.source_line,
        "executed": result.executed.name,
        "html": result.html.name if result.html else None,
    }


def write_manifest(
    build_dir: Path,
    *,
    run_name: str,
    started_at: datetime,
    finished_at: datetime,
    seconds: float,
    params_path: Path,
    jobs: list[Job],
    results: tuple[NotebookResult, ...],
    ok: bool,
    inputs: dict[str, dict[str, Any]],
    settings: dict[str, Any],
) -> Path:
    """Write the run's ``manifest.json`` into ``build_dir`` and return its path.

    Parameters
    ----------
    build_dir : Path
        The run folder being built.
    run_name : str
        The run's dated folder name.
    started_at, finished_at : datetime
        When the run started and finished.
    seconds : float
        Measured wall time of the run.
    params_path : Path
        The parameters file (its sha256 is recorded).
    jobs : list of Job
        The notebooks run (their sources' sha256 and parameters are recorded).
    results : tuple of NotebookResult
        Their outcomes.
    ok : bool
        Whether every notebook succeeded.
    inputs : dict
        From :func:`input_fingerprints`.
    settings : dict
        The run options (workers, timeout, keep, kernel, notebooks).

    Returns
    -------
    Path
        The manifest written.

    Raises
    ------
    ReportWriteError
        If it cannot be written.
    """
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
        "params_sha256": _sha256_or_none(params_path),
        "settings": settings,
        "notebooks": {job.name: _notebook_entry(job, by_name[job.name]) for job in jobs},
        "versions": _versions(),
        "inputs": inputs,
    }
    path = build_dir / MANIFEST_NAME
    try:
        path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ReportWriteError.from_os_error(exc, doing=f"write {path}", path=path) from exc
    return path
