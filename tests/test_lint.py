"""ruff is clean on the package, the tests and the notebooks; notebooks carry no outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_lib.config import NOTEBOOKS_DIR, PROJECT_ROOT


def _ruff() -> str:
    exe = Path(sys.executable).with_name("ruff")
    found = str(exe) if exe.exists() else shutil.which("ruff")
    if not found:
        pytest.fail("ruff is not installed: `pip install -e .[dev]`")
    return found


def test_ruff_check():
    res = subprocess.run(
        [_ruff(), "check", "pipeline_lib", "tests", "notebooks"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_format():
    res = subprocess.run(
        [_ruff(), "format", "--check", "pipeline_lib", "tests", "notebooks"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("path", sorted(NOTEBOOKS_DIR.glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_committed_clean(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in code)
    sources = ["".join(c["source"]) for c in code]
    assert not any(
        line.lstrip().startswith(("def ", "class ")) for s in sources for line in s.splitlines()
    )
