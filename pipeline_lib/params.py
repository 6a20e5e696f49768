"""The parameters of a run: the parameters file, what each notebook declares, the plan.

A parameters file's top-level keys are parameters for every notebook; an optional
``notebooks`` mapping holds per-notebook overrides keyed by notebook stem. Each notebook
receives only the parameters its ``parameters`` cell declares (read with
:func:`papermill.inspect_notebook`), so one file can serve notebooks with different
parameters. :func:`plan_jobs` rejects a key that no notebook declares, an override for
an unknown notebook and an override a notebook does not declare.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import config
from .errors import ReportError

__all__ = ["Job", "load_params", "notebook_parameters", "resolve_notebooks", "plan_jobs"]

#: Key of the per-notebook override section in a parameters file.
_OVERRIDES_KEY = "notebooks"


@dataclass(frozen=True)
class Job:
    """One notebook to execute in a run.

    Attributes
    ----------
    name : str
        Notebook stem; names the executed notebook and HTML in the run folder.
    path : Path
        The source notebook.
    parameters : dict
        The parameters injected into it (only those its ``parameters`` cell declares).
    """

    name: str
    path: Path
    parameters: dict[str, Any]


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


def resolve_notebooks(notebooks: Iterable[str | Path] | None) -> list[Path]:
    """Turn notebook names or paths into notebook paths, checked and unique.

    Parameters
    ----------
    notebooks : iterable of str or Path, or None
        Names (``"00_data_quality"``, taken from ``config.NOTEBOOKS_DIR``) or paths
        (relative ones against the project root); None for the published notebooks,
        ``config.NOTEBOOKS_DIR/NN_name.ipynb``, sorted.

    Returns
    -------
    list of Path
        Absolute notebook paths, in the order given.

    Raises
    ------
    ReportError
        If a notebook is missing, none is selected, or two share a stem.
    """
    if notebooks is None:
        # The published notebooks (NN_name.ipynb), the same set Voila serves.
        from .dashboards import published_notebooks

        found = [p.resolve() for p in published_notebooks(config.NOTEBOOKS_DIR)]
        if not found:
            raise ReportError(
                f"no published notebooks (NN_name.ipynb) found in {config.NOTEBOOKS_DIR}"
            )
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


def plan_jobs(params: Mapping[str, Any], params_path: Path, nb_paths: list[Path]) -> list[Job]:
    """Give each notebook the parameters it declares; reject parameters nobody declares.

    The check runs against the selected notebooks and their sibling notebooks, so a
    shared file still works when only some notebooks are run. Siblings that cannot be
    inspected are ignored (they are not run).

    Parameters
    ----------
    params : mapping
        A parameters file as read by :func:`load_params`.
    params_path : Path
        Its path (named in error messages).
    nb_paths : list of Path
        The notebooks to run (from :func:`resolve_notebooks`).

    Returns
    -------
    list of Job
        One per notebook, in the order of ``nb_paths``.

    Raises
    ------
    ReportError
        On a parameter no notebook declares, an override for an unknown notebook or an
        override the notebook does not declare.
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
        jobs.append(Job(path.stem, path, {k: merged[k] for k in merged if k in declared[path]}))
    return jobs
