"""Shared fixtures: seeded randomness, closed figures, small file writers."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import yaml

matplotlib.use("Agg")


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
