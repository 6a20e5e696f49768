"""Serve the published notebooks as Voila dashboards.

Voila serving a folder renders any notebook in it by URL, so the dashboards are served
from a staging folder that holds only the published notebooks (``NN_name.ipynb`` in
``notebooks/``), each with the parameters of a parameter file injected the way the
report runner does it. The server's settings live in ``notebooks/voila.json``: bound to
localhost, sources stripped, template and theme overrides refused, idle kernels culled,
kernels preheated, extensions that need the internet left out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

from . import config
from .errors import ReportError

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "VOILA_CONFIG",
    "published_notebooks",
    "stage_dashboards",
    "voila_command",
    "serve",
    "main",
]

#: The Voila settings file kept in the repository.
VOILA_CONFIG = config.NOTEBOOKS_DIR / "voila.json"
#: Debian's Chromium and the flags that keep it headless and off the network; the browser
#: tests and ``benchmarks/dashboard_render.py`` drive it through Playwright with these.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Where :func:`stage_dashboards` puts the served copies by default.
STAGING_DIR = config.PROJECT_ROOT / "build" / "dashboards"


def published_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The published notebooks: ``NN_name.ipynb`` directly in ``notebooks_dir``, sorted.

    Scratch notebooks (any other name, or in a subfolder) are neither run as reports
    nor served as dashboards.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else config.NOTEBOOKS_DIR
    return sorted(
        p
        for p in folder.glob("[0-9][0-9]_*.ipynb")
        if p.is_file() and not p.stem.endswith("-checkpoint")
    )


def _parameters_for(nb_path: Path, params: dict) -> dict:
    from .report import notebook_parameters

    declared = notebook_parameters(nb_path)
    merged = {k: v for k, v in params.items() if k != "notebooks"}
    merged.update((params.get("notebooks") or {}).get(nb_path.stem, {}) or {})
    return {k: v for k, v in merged.items() if k in declared}


def stage_dashboards(
    dest: str | Path = STAGING_DIR,
    *,
    notebooks_dir: str | Path | None = None,
    params_path: str | Path | None = None,
) -> list[Path]:
    """Copy the published notebooks into ``dest`` (emptied first) for Voila to serve.

    Parameters
    ----------
    dest : path, default ``build/dashboards``
        The folder Voila serves; anything already in it is removed.
    notebooks_dir : path, optional
        Where the notebooks are (default ``notebooks/``).
    params_path : path, optional
        A parameter file as the runner takes it (top-level values for every notebook,
        ``notebooks: {stem: {...}}`` overrides); its values are injected into each copy
        with papermill, as a report run would. Without one the notebooks' defaults apply.

    Returns
    -------
    list of Path
        The staged notebooks.

    Raises
    ------
    ReportError
        When there is no published notebook or the parameter file is invalid.
    """
    sources = published_notebooks(notebooks_dir)
    if not sources:
        raise ReportError(f"no published notebooks (NN_name.ipynb) in {notebooks_dir}")
    params = {}
    if params_path is not None:
        from .report import load_params

        params = load_params(params_path)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    staged = []
    for src in sources:
        target = dest / src.name
        values = _parameters_for(src, params) if params else {}
        if values:
            from papermill.iorw import load_notebook_node
            from papermill.parameterize import parameterize_notebook

            nb = load_notebook_node(str(src))  # as papermill reads it (every cell has tags)
            nb = parameterize_notebook(nb, values, report_mode=False)
            nbformat.write(nb, target)
        else:
            shutil.copyfile(src, target)
        staged.append(target)
    return staged


def voila_command(
    folder: str | Path,
    *,
    port: int | None = None,
    ip: str | None = None,
    config_file: str | Path = VOILA_CONFIG,
) -> list[str]:
    """The command line that starts Voila on ``folder`` with the repository's settings.

    ``port`` and ``ip`` override the values of the settings file (localhost:8866).
    """
    config_file = Path(config_file)
    if not config_file.is_file():
        raise ReportError(f"Voila settings file not found: {config_file}")
    argv = [
        sys.executable,
        "-m",
        "voila",
        str(folder),
        f"--Voila.config_file_paths={json.dumps([str(config_file.parent.resolve())])}",
        "--no-browser",
    ]
    if port is not None:
        argv.append(f"--port={int(port)}")
    if ip is not None:
        argv.append(f"--Voila.ip={ip}")
    return argv


def dashboard_env(environ=None) -> dict:
    """The environment of the Voila server: kernels know they serve a dashboard."""
    env = dict(os.environ if environ is None else environ)
    env["PIPELINE_WORKBENCH_MODE"] = "dashboard"
    return env


def serve(
    *,
    params_path: str | Path | None = None,
    port: int | None = None,
    ip: str | None = None,
    staging_dir: str | Path = STAGING_DIR,
) -> int:
    """Stage the published notebooks and serve them with Voila until stopped.

    Returns
    -------
    int
        Voila's exit status (0 after Ctrl-C).

    Raises
    ------
    ReportError
        When there is nothing to serve, the parameter file is invalid or the Voila
        settings file is missing.
    """
    staged = stage_dashboards(staging_dir, params_path=params_path)
    command = voila_command(staging_dir, port=port, ip=ip)
    names = ", ".join(p.stem for p in staged)
    print(f"serving {len(staged)} dashboard(s): {names}", file=sys.stderr)
    try:
        return subprocess.call(command, env=dashboard_env())
    except KeyboardInterrupt:
        return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``dashboards`` (shared by this module and :mod:`pipeline_lib.cli`)."""
    parser.add_argument("--params", help="parameter file injected into every dashboard")
    parser.add_argument("--port", type=int, help="port (default from voila.json: 8866)")
    parser.add_argument(
        "--ip", help="address to bind (default 127.0.0.1; use 0.0.0.0 only behind a proxy)"
    )
    parser.add_argument(
        "--staging-dir", default=str(STAGING_DIR), help=f"served folder (default {STAGING_DIR})"
    )


DESCRIPTION = (
    "Serve the published notebooks as Voila dashboards (settings in notebooks/voila.json: "
    "localhost only, no sources, no template override, preheated kernels, idle kernels "
    "culled)."
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline_lib.dashboards``: stage the published notebooks and serve them."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_lib.dashboards", description=DESCRIPTION
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve(
            params_path=args.params, port=args.port, ip=args.ip, staging_dir=args.staging_dir
        )
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
