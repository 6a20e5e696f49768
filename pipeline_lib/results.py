"""What a report run produced: :class:`NotebookResult` per notebook, :class:`RunResult`.

Also the names of the files every run folder holds (``index.html``, ``manifest.json``),
shared by the modules that write and recognise run folders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NotebookResult", "RunResult", "INDEX_NAME", "MANIFEST_NAME"]

#: The run's summary page, in the run folder.
INDEX_NAME = "index.html"
#: The run's record (parameters, fingerprints, versions, timings), in the run folder.
MANIFEST_NAME = "manifest.json"


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
        return self.run_dir / INDEX_NAME

    @property
    def manifest(self) -> Path:
        """Path of the run's ``manifest.json``."""
        return self.run_dir / MANIFEST_NAME

    @property
    def failed(self) -> tuple[NotebookResult, ...]:
        """The notebooks that did not succeed."""
        return tuple(r for r in self.results if not r.ok)
