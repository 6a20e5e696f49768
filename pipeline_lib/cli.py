"""Command line: ``pipeline-workbench`` / ``python -m pipeline_lib``.

A thin argparse layer over :func:`pipeline_lib.report.run_reports` and
:func:`pipeline_lib.demo.ensure_demo`. Exit codes: 0 success, 1 a notebook failed,
2 a usage or configuration error (printed as ``error: <message>``, no traceback).
Paths given on the command line are taken relative to the current directory.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from . import config
from .errors import PipelineError

__all__ = ["build_parser", "main"]

_PROG = "pipeline-workbench"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _user_path(text: str) -> Path:
    """A path typed by the user: relative to the current directory."""
    return Path(text).expanduser().resolve()


def _notebook_arg(text: str) -> str | Path:
    """A bare name (``00_data_quality``) stays a name; anything path-like is a path."""
    if "/" in text or "\\" in text or (text.endswith(".ipynb") and Path(text).is_file()):
        return _user_path(text)
    return text


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``pipeline-workbench`` command."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Sales Pipeline Workbench: run the report notebooks, prepare demo data.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="execute the notebooks into a dated HTML report folder",
        description=(
            "Execute the parameterised notebooks with Papermill into "
            "REPORTS_DIR/<YYYY-MM-DD_HHMMSS>/ (executed notebooks, code-free HTML, "
            "index.html, manifest.json) and, when every notebook succeeded, point "
            "REPORTS_DIR/latest at it. Exit status: 0 all ok, 1 a notebook failed, "
            "2 usage or configuration error."
        ),
    )
    run.add_argument(
        "--params",
        type=_user_path,
        default=config.DEFAULT_PARAMS,
        metavar="PATH",
        help="parameters YAML: top-level keys for every notebook, optional 'notebooks:' "
        "per-notebook overrides (default: %(default)s)",
    )
    run.add_argument(
        "--notebook",
        dest="notebooks",
        action="append",
        type=_notebook_arg,
        metavar="NAME",
        help="notebook to run, by name (e.g. 00_data_quality, from "
        f"{config.NOTEBOOKS_DIR}) or path; repeat for several (default: all, sorted)",
    )
    run.add_argument(
        "--reports-dir",
        type=_user_path,
        default=config.REPORTS_DIR,
        metavar="DIR",
        help="folder receiving the dated run folders and the 'latest' link (default: %(default)s)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="notebooks executed in parallel, one kernel each (default: number of CPUs)",
    )
    run.add_argument(
        "--timeout",
        type=_positive_int,
        default=600,
        metavar="S",
        help="seconds a single cell may run before its notebook fails (default: %(default)s)",
    )
    run.set_defaults(handler=_cmd_run)

    demo = commands.add_parser(
        "demo",
        help="generate the synthetic demo data set (if missing or outdated)",
        description=(
            "Generate the synthetic demo CRM data set, or report that the existing one "
            "is current. Exit status: 0 success, 2 error."
        ),
    )
    demo.add_argument(
        "--out",
        type=_user_path,
        default=config.DEMO_DIR,
        metavar="DIR",
        help="folder of the demo data (default: %(default)s)",
    )
    demo.add_argument(
        "--n-opportunities",
        type=_positive_int,
        default=5000,
        metavar="N",
        help="number of opportunities to generate (default: %(default)s)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=42,
        metavar="S",
        help="random seed; the same seed gives the same data (default: %(default)s)",
    )
    demo.add_argument(
        "--force",
        action="store_true",
        help="regenerate even when the existing data is current",
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from .report import run_reports

    result = run_reports(
        args.params,
        notebooks=args.notebooks,
        reports_dir=args.reports_dir,
        workers=args.workers,
        timeout=args.timeout,
        started_at=datetime.now(),
    )
    n_failed = sum(r.status != "ok" for r in result.results)
    total = sum(r.seconds for r in result.results)
    if result.ok:
        print(f"{len(result.results)} notebook(s) ok ({total:.1f} s of notebook time)")
        print(f"latest -> {result.run_dir.name}")
    else:
        print(f"{n_failed} of {len(result.results)} notebook(s) failed; 'latest' was not updated")
        for r in result.results:
            if r.status != "ok":
                print(f"  {r.name}: {r.error} (see {r.executed})")
    print(f"report: {result.index}")
    return 0 if result.ok else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import ensure_demo

    generated = ensure_demo(
        args.out, n_opportunities=args.n_opportunities, seed=args.seed, force=args.force
    )
    if generated:
        print(f"generated demo data in {args.out}")
    else:
        print(f"demo data in {args.out} is current (use --force to regenerate)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 1 when a notebook failed, 2 on a usage or configuration error.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): return, don't exit
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
