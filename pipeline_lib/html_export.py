"""The HTML of a run: a code-free page per executed notebook and the run's index page.

:func:`export_html` renders an executed notebook with nbconvert and the ``report``
template of ``pipeline_lib/templates`` (JupyterLab's, minus every script fetched from a
CDN): no code, no prompts, no stderr, no live widgets, images embedded, so the page
opens offline. :func:`write_index` writes ``index.html``: what ran, how long, what
failed, with inline CSS and no external assets.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat

from .errors import ReportError
from .publishing import LATEST_NAME, ReportWriteError
from .results import INDEX_NAME, MANIFEST_NAME, NotebookResult

__all__ = ["export_html", "write_index"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(?P<text>.+?)\s*#*\s*$")
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


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
        If the notebook cannot be read.
    ReportWriteError
        If the HTML cannot be written (a :class:`ReportError` too).
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
        raise ReportWriteError.from_os_error(
            exc, doing=f"write the HTML report {html_path}", path=html_path
        ) from exc
    return html_path


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


def write_index(
    build_dir: Path,
    *,
    run_name: str,
    started_at: datetime,
    params_path: Path,
    results: tuple[NotebookResult, ...],
    ok: bool,
    previous: str | None,
) -> Path:
    """Write the run's ``index.html``: one row per notebook with status, time and error.

    Parameters
    ----------
    build_dir : Path
        The run folder being built.
    run_name : str
        The run's dated folder name.
    started_at : datetime
        When the run started.
    params_path : Path
        The parameters file of the run.
    results : tuple of NotebookResult
        One per notebook, in notebook order.
    ok : bool
        Whether every notebook succeeded (a failed run says it was not published).
    previous : str or None
        The run ``latest`` points to (linked from a failed run's page), if any.

    Returns
    -------
    Path
        The page written.

    Raises
    ------
    ReportWriteError
        If the page cannot be written.
    """
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
            f'<a href="../{LATEST_NAME}/{INDEX_NAME}">{e(previous)}</a>.</p>'
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
<a href="{MANIFEST_NAME}">{MANIFEST_NAME}</a></p>
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
    path = build_dir / INDEX_NAME
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ReportWriteError.from_os_error(exc, doing=f"write {path}", path=path) from exc
    return path
