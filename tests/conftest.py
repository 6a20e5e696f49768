"""Shared fixtures and helpers: seeded randomness, closed figures, small file writers,
Datasets built straight from tables, small notebooks.

The plain helpers (not fixtures) are imported by the test modules with
``from conftest import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pipeline_lib.dataset import Dataset
from pipeline_lib.sources import StageConfig

matplotlib.use("Agg")

#: The stages of the generated demo data (:mod:`pipeline_lib.demo`).
DEMO_STAGES = StageConfig(
    open=(
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
    ),
    won=("Closed Won",),
    lost=("Closed Lost",),
)
#: One stage per outcome, for hand-made deals.
SIMPLE_STAGES = StageConfig(open=("Open",), won=("Won",), lost=("Lost",), aliases={})


def make_dataset(tables: dict, stages: StageConfig = DEMO_STAGES) -> Dataset:
    """A Dataset straight from canonical tables (no files, no rejects, warnings or counts)."""
    empty = pd.DataFrame()
    return Dataset(tables=tables, rejects=empty, warnings=empty, counts=empty, stages=stages)


def four_deals(**segments: list) -> Dataset:
    """Deals A won, B lost, C open, D won, created on the 1st of January to April 2025.

    Teams East, West, East, West; ``segments`` adds columns (four values each), e.g.
    ``product=["P", "Q", "P", "R"]``. Stages: :data:`SIMPLE_STAGES`.
    """
    opps = pd.DataFrame(
        {
            "opportunity_id": ["A", "B", "C", "D"],
            "stage": ["Won", "Lost", "Open", "Won"],
            "status": ["won", "lost", "open", "won"],
            "created_date": pd.to_datetime(
                ["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01"]
            ),
            "team": ["East", "West", "East", "West"],
            **segments,
        }
    )
    return make_dataset({"opportunities": opps}, SIMPLE_STAGES)


def write_notebook(
    path: Path, *body: str, params: str = "x: int = 1  # how many", heading: str | None = None
) -> Path:
    """A notebook at ``path``: a heading (markdown; default ``# <stem>``, ``""`` for none),
    a parameters cell ``params``, then a code cell per ``body``."""
    title = f"# {path.stem}" if heading is None else heading
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    cells = [new_markdown_cell(title)] if title else []
    nb = new_notebook(cells=[*cells, cell, *map(new_code_cell, body)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(autouse=True)
def _seed_and_close():
    np.random.seed(0)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def write_file(tmp_path):
    """Write text (or bytes) into tmp_path/name with a chosen encoding; returns the path."""

    def _write(name: str, content, *, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode(encoding))
        return path

    return _write


@pytest.fixture
def write_config(tmp_path):
    """Write a YAML source config into tmp_path and return its path."""

    def _write(config: dict, name: str = "source.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        return path

    return _write


@pytest.fixture(scope="module")
def demo_tables():
    """The generated demo's canonical tables, 700 opportunities (seed 11); do not modify."""
    from pipeline_lib import demo

    return demo.generate_demo(n_opportunities=700, seed=11)


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory):
    """A small generated demo data set and a copy of the demo source config pointing at it."""
    from pipeline_lib import config, demo

    root = tmp_path_factory.mktemp("demo_root")
    demo.write_demo(root / "demo", n_opportunities=400, seed=7)
    (root / "sources").mkdir()
    src = config.SOURCES_DIR / "demo.yaml"
    (root / "sources" / "demo.yaml").write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    return root / "sources" / "demo.yaml"


os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
