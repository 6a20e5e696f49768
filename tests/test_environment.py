"""environment.yml (conda) and pyproject.toml (pip) declare the same dependencies."""

from __future__ import annotations

import re
import tomllib

import yaml

from pipeline_lib.config import PROJECT_ROOT

# pip name -> conda-forge name, where they differ
_CONDA_NAME: dict[str, str] = {"duckdb": "python-duckdb"}


def _split(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", spec)
    return m.group(1).lower(), m.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    specs = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["dev"]
    return {_CONDA_NAME.get(n, n): v for n, v in map(_split, specs)}


def _environment() -> tuple[dict[str, str], list]:
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    deps, pip = {}, []
    for d in env["dependencies"]:
        if isinstance(d, dict):
            pip = d["pip"]
            continue
        name, bound = _split(d)
        if name not in ("python", "pip"):
            deps[name] = bound
    return deps, pip


def test_same_dependencies_and_lower_bounds():
    assert _environment()[0] == _pyproject()


def test_environment_installs_the_package_and_uses_conda_forge():
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    assert env["dependencies"][-1] == {"pip": ["-e ."]}
    py = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    requires = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]
    assert py == "python" + requires
