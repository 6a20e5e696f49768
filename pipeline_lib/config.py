"""Project paths and defaults, built from the package location (never the working directory)."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "PROJECT_ROOT",
    "DATA_DIR",
    "RAW_DIR",
    "DEMO_DIR",
    "SOURCES_DIR",
    "NOTEBOOKS_DIR",
    "PARAMS_DIR",
    "REPORTS_DIR",
    "DEFAULT_SOURCE",
    "DEFAULT_PARAMS",
    "DEMO_AS_OF",
    "resolve_path",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
RAW_DIR = DATA_DIR / "raw"
DEMO_DIR = DATA_DIR / "demo"
SOURCES_DIR = DATA_DIR / "sources"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
PARAMS_DIR = NOTEBOOKS_DIR / "params"
REPORTS_DIR = PROJECT_ROOT / "reports"

DEFAULT_SOURCE = SOURCES_DIR / "demo.yaml"
DEFAULT_PARAMS = PARAMS_DIR / "default.yaml"

#: The date the demo data set ends on; the default ``as_of`` of every notebook.
DEMO_AS_OF = "2025-12-31"


def resolve_path(path: str | Path, *, base: str | Path | None = None) -> Path:
    """Return ``path`` as an absolute path.

    Relative paths are taken relative to ``base`` (default: the project root), so a
    notebook, the runner and the tests resolve ``data/sources/demo.yaml`` the same way
    whatever their working directory.

    Examples
    --------
    >>> resolve_path("data/sources/demo.yaml") == DEFAULT_SOURCE
    True
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    return (Path(base) if base is not None else PROJECT_ROOT) / p
