"""Run the parameterised notebooks with Papermill and publish them as HTML reports.

One call to :func:`run_reports` is one *run*: every selected notebook is executed with
the parameters of one YAML file into a dated folder ``reports/<YYYY-MM-DD_HHMMSS>/``
holding, per notebook, the executed ``<stem>.ipynb`` and a code-free ``<stem>.html``,
plus ``index.html`` (what ran, how long, what failed) and ``manifest.json`` (parameters,
versions and fingerprints of the input files). When every notebook succeeded,
``reports/latest`` is pointed at the new folder; otherwise it keeps pointing at the
previous good run.

The parameters file
-------------------
Top-level keys are parameters for every notebook; an optional ``notebooks`` mapping
holds per-notebook overrides keyed by notebook stem::

    source: data/sources/demo.yaml
    as_of: "2025-12-31"
    notebooks:
      02_forecast:
        horizon_months: 6

Each notebook receives only the parameters its ``parameters`` cell declares, so one file
can serve notebooks with different parameters. A top-level key that no notebook declares,
an override for an unknown notebook, or an override a notebook does not declare is a
:class:`~pipeline_lib.errors.ReportError` (a typo must not pass silently).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import platform
import re
import time
import uuid
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import nbformat
import yaml

from . import config
from .errors import ReportError

__all__ = [
    "NotebookResult",
    "RunResult",
    "load_params",
    "notebook_parameters",
    "run_reports",
    "export_html",
]

#: Key of the per-notebook override section in a parameters file.
_OVERRIDES_KEY = "notebooks"
_LATEST = "latest"
_STAMP_FORMAT = "%Y-%m-%d_%H%M%S"
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(?P<text>.+?)\s*#*\s*$")


@dataclass(frozen=True)
class NotebookResult:
    """Outcome of one notebook in a run.

    Attributes
    ----------
    name : str
        Notebook stem, e.g. ``"00_data_quality"``.
    status : str
        ``"ok"`` or ``"failed"``.
    seconds : float
        Wall time of execution plus HTML export.
    executed : Path
        The executed notebook in the run folder (kept on failure, with the error marked).
    html : Path or None
        The HTML report, or None when the notebook failed.
    error : str or None
        ``"<ExceptionName>: <message>"`` when the notebook failed.
    """

    name: str
    status: str
    seconds: float
    executed: Path
    html: Path | None
    error: str | None


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
    """

    run_dir: Path
    results: tuple[NotebookResult, ...]
    ok: bool
    latest: Path | None

    @property
    def index(self) -> Path:
        """Path of the run's ``index.html``."""
        return self.run_dir / "index.html"


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
        found = sorted(config.NOTEBOOKS_DIR.glob("*.ipynb"))
        if not found:
            raise ReportError(f"no notebooks found in {config.NOTEBOOKS_DIR}")
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


def export_html(
    executed_nb_path: str | Path, html_path: str | Path, *, title: str | None = None
) -> Path:
    """Write a code-free HTML report of an executed notebook.

    Code cells' inputs and all prompts are excluded; ``stderr`` stream outputs
    (warnings, log lines) are dropped from a copy of the notebook (the ``.ipynb`` on disk
    keeps them); images stay embedded as base64.

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
            cell.outputs = [
                out
                for out in cell.outputs
                if not (out.get("output_type") == "stream" and out.get("name") == "stderr")
            ]
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


# --------------------------------------------------------------------------- running


def _error_message(exc: BaseException) -> str:
    """``"<ename>: <evalue>"`` for a notebook error, first line only for anything else."""
    ename = getattr(exc, "ename", None)
    if ename is not None:
        evalue = str(getattr(exc, "evalue", "") or "")
        return f"{ename}: {evalue}" if evalue else str(ename)
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _run_one(job: _Job, run_dir: Path, *, kernel_name: str, timeout: int | None) -> NotebookResult:
    import papermill

    executed = run_dir / f"{job.name}.ipynb"
    html_path = run_dir / f"{job.name}.html"
    start = time.perf_counter()
    try:
        # The kernel's working directory is set through nbclient's ``resources`` rather
        # than papermill's ``cwd=``: the latter os.chdir()s the whole process, which races
        # when notebooks run in parallel threads.
        papermill.execute_notebook(
            str(job.path),
            str(executed),
            parameters=job.parameters,
            kernel_name=kernel_name,
            execution_timeout=timeout,
            progress_bar=False,
            log_output=False,
            resources={"metadata": {"path": str(job.path.parent)}},
        )
    except Exception as exc:  # any failure is recorded in the run, not raised
        seconds = time.perf_counter() - start
        return NotebookResult(job.name, "failed", seconds, executed, None, _error_message(exc))
    try:
        export_html(executed, html_path)
    except Exception as exc:
        seconds = time.perf_counter() - start
        message = f"HTML export failed: {_error_message(exc)}"
        return NotebookResult(job.name, "failed", seconds, executed, None, message)
    return NotebookResult(job.name, "ok", time.perf_counter() - start, executed, html_path, None)


def _make_run_dir(reports_dir: Path, started_at: datetime) -> Path:
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create reports folder {reports_dir}: {exc}") from exc
    stamp = started_at.strftime(_STAMP_FORMAT)
    for n in range(1, 1000):
        run_dir = reports_dir / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise ReportError(f"cannot create run folder {run_dir}: {exc}") from exc
        return run_dir
    raise ReportError(f"too many runs named {stamp} in {reports_dir}")


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


def _versions() -> dict[str, str]:
    from . import __version__

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "pipeline_lib": __version__,
        "pandas": dist("pandas"),
        "papermill": dist("papermill"),
        "nbconvert": dist("nbconvert"),
        "python": platform.python_version(),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _input_fingerprints(jobs: list[_Job]) -> dict[str, dict[str, Any]]:
    """sha256 and size of every parameter value that names an existing file."""
    inputs: dict[str, dict[str, Any]] = {}
    for job in jobs:
        for value in _strings(job.parameters):
            if value in inputs or not value.strip():
                continue
            try:
                path = config.resolve_path(value)
                if not path.is_file():
                    continue
                inputs[value] = {
                    "path": str(path),
                    "sha256": _sha256(path),
                    "size": path.stat().st_size,
                }
            except (OSError, ValueError):  # not a usable path (too long, NUL byte, ...)
                continue
    return inputs


def _write_manifest(
    run_dir: Path,
    *,
    started_at: datetime,
    finished_at: datetime,
    params_path: Path,
    jobs: list[_Job],
    results: tuple[NotebookResult, ...],
    ok: bool,
) -> Path:
    by_name = {r.name: r for r in results}
    manifest = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished_at.isoformat(timespec="seconds"),
        "ok": ok,
        "params_file": str(params_path),
        "notebooks": {
            job.name: {
                "source": str(job.path),
                "parameters": job.parameters,
                "status": by_name[job.name].status,
                "seconds": round(by_name[job.name].seconds, 3),
                "error": by_name[job.name].error,
                "executed": by_name[job.name].executed.name,
                "html": by_name[job.name].html.name if by_name[job.name].html else None,
            }
            for job in jobs
        },
        "versions": _versions(),
        "inputs": _input_fingerprints(jobs),
    }
    path = run_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
    return path


_INDEX_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 60rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: .25rem; }
p.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid #ddd;
         vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.status { font-weight: 600; border-radius: .25rem; padding: .1rem .45rem; }
.ok { color: #155724; background: #d4edda; }
.failed { color: #721c24; background: #f8d7da; }
td.error { font-family: ui-monospace, monospace; font-size: .85rem; color: #721c24;
           white-space: pre-wrap; }
"""


def _write_index(
    run_dir: Path,
    *,
    started_at: datetime,
    params_path: Path,
    results: tuple[NotebookResult, ...],
    ok: bool,
) -> Path:
    e = html.escape
    rows = []
    for r in results:
        target = r.html if r.html is not None else r.executed
        link_text = r.name if r.html is not None else f"{r.name} (executed notebook)"
        rows.append(
            "<tr>"
            f'<td><a href="{e(target.name)}">{e(link_text)}</a></td>'
            f'<td><span class="status {e(r.status)}">{e(r.status)}</span></td>'
            f'<td class="num">{r.seconds:.1f} s</td>'
            f'<td class="error">{e(r.error or "")}</td>'
            "</tr>"
        )
    n_failed = sum(r.status != "ok" for r in results)
    summary = "all notebooks succeeded" if ok else f"{n_failed} of {len(results)} failed"
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sales Pipeline Workbench reports {e(run_dir.name)}</title>
<style>{_INDEX_CSS}</style>
</head>
<body>
<h1>Sales Pipeline Workbench reports</h1>
<p class="meta">Run {e(started_at.isoformat(sep=" ", timespec="seconds"))} &middot;
parameters {e(str(params_path))} &middot;
<span class="status {"ok" if ok else "failed"}">{e(summary)}</span> &middot;
<a href="manifest.json">manifest.json</a></p>
<table>
<thead><tr><th>Notebook</th><th>Status</th><th>Time</th><th>Error</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
</body>
</html>
"""
    path = run_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def run_reports(
    params_path: str | Path = config.DEFAULT_PARAMS,
    *,
    notebooks: Iterable[str | Path] | None = None,
    reports_dir: str | Path = config.REPORTS_DIR,
    workers: int | None = None,
    timeout: int | None = 600,
    started_at: datetime | None = None,
    kernel_name: str = "python3",
) -> RunResult:
    """Execute notebooks with one parameters file and publish the run as HTML.

    Parameters
    ----------
    params_path : str or Path
        The parameters YAML (see the module docstring); relative paths are taken
        against the project root. Relative paths inside its values are passed on
        unchanged (the notebooks resolve them against the project root).
    notebooks : iterable of str or Path, optional
        Notebook names (``"00_data_quality"``, taken from ``config.NOTEBOOKS_DIR``) or
        paths (relative ones against the project root); default every
        ``config.NOTEBOOKS_DIR/*.ipynb``, sorted.
    reports_dir : str or Path
        Parent of the dated run folders and of the ``latest`` link (relative paths
        are taken against the project root).
    workers : int, optional
        Notebooks run at once (each in its own kernel); default ``os.cpu_count()``.
    timeout : int or None
        Seconds one cell may run before the notebook fails; None for no limit.
    started_at : datetime, optional
        Run timestamp naming the folder; default the time of the call.
    kernel_name : str
        Jupyter kernel to execute with.

    Returns
    -------
    RunResult
        ``ok`` is False when any notebook failed; ``latest`` is then None and the
        previous ``latest`` link is left as it was.

    Raises
    ------
    ReportError
        On a configuration problem (parameters file, unknown notebook or parameter,
        unwritable reports folder), before any notebook runs.
    """
    if started_at is None:
        started_at = datetime.now()
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ReportError(f"workers must be at least 1, got {workers}")
    if timeout is not None and timeout <= 0:
        raise ReportError(f"timeout must be a positive number of seconds, got {timeout}")
    params_path = config.resolve_path(params_path)
    reports_dir = config.resolve_path(reports_dir)

    params = load_params(params_path)
    jobs = _plan(params, params_path, _resolve_notebooks(notebooks))
    run_dir = _make_run_dir(reports_dir, started_at)

    finished: dict[str, NotebookResult] = {}
    with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = [
            pool.submit(_run_one, job, run_dir, kernel_name=kernel_name, timeout=timeout)
            for job in jobs
        ]
        for future in as_completed(futures):
            result = future.result()
            finished[result.name] = result
            line = f"[{result.status}] {result.name} {result.seconds:.1f} s"
            print(line + (f": {result.error}" if result.error else ""), flush=True)
    results = tuple(finished[job.name] for job in jobs)
    ok = all(r.status == "ok" for r in results)

    _write_manifest(
        run_dir,
        started_at=started_at,
        finished_at=datetime.now(),
        params_path=params_path,
        jobs=jobs,
        results=results,
        ok=ok,
    )
    _write_index(run_dir, started_at=started_at, params_path=params_path, results=results, ok=ok)
    latest = _publish(reports_dir, run_dir) if ok else None
    return RunResult(run_dir=run_dir, results=results, ok=ok, latest=latest)
