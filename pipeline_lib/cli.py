"""Command line: ``pipeline-workbench`` / ``python -m pipeline_lib``.

A thin argparse layer over :func:`pipeline_lib.report.run_reports`,
:func:`pipeline_lib.demo.ensure_demo`, :func:`pipeline_lib.dashboards.serve` and
:func:`pipeline_lib.exports.write_load_tables`.
Exit codes: 0 success, 1 a notebook failed or timed out, 2 a usage or configuration
error (printed as ``error: <message>``, no traceback), 3 another run holds the lock of
the reports folder, 4 the reports folder cannot be written (disk full, read-only, no
permission: the message says which and what to do), 130 interrupted (Ctrl-C or
SIGTERM). Paths given on the command line are taken relative to the current directory.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from . import config, dashboards
from .errors import PipelineError, RunLockedError
from .publishing import DEFAULT_KEEP, ReportWriteError, latest_target

__all__ = ["build_parser", "main"]

_PROG = "pipeline-workbench"

#: Exit statuses (documented in ``--help`` and the README).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_UNWRITABLE = 4
EXIT_INTERRUPTED = 130

_EXIT_CODES = """\
exit status:
  0    every notebook succeeded; REPORTS_DIR/latest points at the new run
  1    a notebook failed or timed out: the run folder keeps its executed notebook with
       the error marked, a summary is printed, REPORTS_DIR/latest is left unchanged
  2    usage or configuration error (bad option, parameters file, unknown notebook or
       parameter); nothing ran
  3    another run holds the lock of REPORTS_DIR (its pid and start time are printed);
       nothing ran
  4    REPORTS_DIR cannot be written (disk full, quota, file size limit, read-only, no
       permission), before or during the run: kernels killed, the unfinished run
       removed, latest unchanged; the message says what happened and what to do
  130  interrupted (Ctrl-C or SIGTERM): kernels killed, no run folder kept, latest unchanged
"""

_RUN_EPILOG = f"""\
examples:
  {_PROG} run                # every notebook, notebooks/params/default.yaml
  {_PROG} run --params notebooks/params/my_crm.yaml --workers 2
  {_PROG} run --notebook 00_data_quality --notebook 03_sales_forecast --timeout 1800
  {_PROG} run --quiet --keep 30    # for cron: prints nothing unless a notebook fails
  python -m pipeline_lib run --help      # the same command without the installed script
  papermill --help-notebook notebooks/00_data_quality.ipynb    # a notebook's parameters

parameters file (YAML): top-level keys go to every notebook that declares them; a
'notebooks:' mapping holds per-notebook overrides, e.g.
  source_config: data/sources/my_crm.yaml
  as_of: "2025-12-31"
  notebooks:
    00_data_quality:
      kpi_window_days: 180

run folders: REPORTS_DIR/<YYYY-MM-DD_HHMMSS>/ holds index.html, one <notebook>.html and
executed <notebook>.ipynb per notebook, and manifest.json (parameters, input file
fingerprints, package versions, timings, status). A run is built in a hidden
REPORTS_DIR/.run-* folder and renamed when done; REPORTS_DIR/latest is switched to it
atomically only when every notebook succeeded. One run at a time per REPORTS_DIR
(lock file REPORTS_DIR/.lock). After a run, all but the --keep newest run folders
are deleted, except the one 'latest' points to.

{_EXIT_CODES}"""


_DASHBOARDS_EPILOG = f"""\
examples:
  {_PROG} dashboards --params notebooks/params/my_crm.yaml --port 8870
  {_PROG} dashboards --WorkbenchKernelManager.max_kernels=30   # at most 30 kernels
  {_PROG} dashboards --VoilaExecutor.timeout=300   # a dashboard cell may run 5 minutes

server options (--Class.trait=value) override notebooks/voila.json for this server; the
limits and their defaults are explained in the README (Dashboards).
"""


def _paragraph(text: str) -> str:
    """``text`` wrapped for a ``--help`` description (raw formatter: kept as wrapped)."""
    return textwrap.fill(text, width=88, break_on_hyphens=False)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a number of at least {minimum}, got {value}"
            )
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


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
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Sales Pipeline Workbench: run the report notebooks, prepare demo data.",
        epilog=f"Run '{_PROG} COMMAND --help' for a command's options.\n\n{_EXIT_CODES}",
        formatter_class=raw,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="execute the notebooks into a dated HTML report folder",
        description=_paragraph(
            "Execute the parameterised notebooks with Papermill, in parallel, into "
            "REPORTS_DIR/<YYYY-MM-DD_HHMMSS>/ (executed notebooks, code-free HTML, "
            "index.html, manifest.json) and, when every notebook succeeded, point "
            "REPORTS_DIR/latest at it. Progress goes to stderr, one line per notebook "
            "started and finished.",
        ),
        epilog=_RUN_EPILOG,
        formatter_class=raw,
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
        f"{config.NOTEBOOKS_DIR}) or path; repeat for several (default: every "
        "published notebook, NN_name.ipynb, sorted)",
    )
    run.add_argument(
        "--reports-dir",
        type=_user_path,
        default=config.REPORTS_DIR,
        metavar="DIR",
        help="folder receiving the dated run folders, the 'latest' link and the lock file "
        "(default: %(default)s)",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="notebooks executed in parallel, one kernel each "
        f"(default: number of CPUs, here {os.cpu_count() or 1})",
    )
    run.add_argument(
        "--timeout",
        type=_non_negative_int,
        default=600,
        metavar="S",
        help="seconds one notebook may run before it is stopped and reported as a "
        "timeout; 0 for no limit (default: %(default)s)",
    )
    run.add_argument(
        "--keep",
        type=_non_negative_int,
        default=DEFAULT_KEEP,
        metavar="N",
        help="run folders to keep: the N newest plus the one 'latest' points to; "
        "0 keeps every run (default: %(default)s)",
    )
    run.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress lines and no summary on success; failures are still reported "
        "on stderr (default: off)",
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
        help="regenerate even when the existing data is current (default: off)",
    )
    demo.set_defaults(handler=_cmd_demo)

    serve = commands.add_parser(
        "dashboards",
        help="serve the published notebooks as Voila dashboards",
        description=_paragraph(
            dashboards.DESCRIPTION + " Options of the form --Class.trait=value go to the "
            "server. Exit status: Voila's; 2 error."
        ),
        epilog=_DASHBOARDS_EPILOG,
        formatter_class=raw,
    )
    dashboards.add_arguments(serve)
    serve.set_defaults(handler=_cmd_dashboards, takes_server_options=True)

    export = commands.add_parser(
        "export",
        help="write the load's rejects and warnings (and the opportunities) as .xlsx or .csv",
        description=_paragraph(
            "Load a source config as known on --as-of and write what the data-quality "
            "report accounts for: rows read/loaded/rejected per table (counts), every "
            "rejected row with its file, row, column and reason (rejects), every loaded "
            "row with a data-quality warning (warnings) and, with --table opportunities, "
            "the canonical opportunities as loaded. The extension of --out picks the "
            "format: .xlsx writes one workbook with a sheet per table; .csv writes OUT "
            "itself for one table, else OUT_STEM_<table>.csv beside it. Cells a "
            "spreadsheet would run as formulas (starting with = + - @) are written with "
            "a leading ' (see pipeline_lib.exports). Exit status: 0 written; 2 usage, "
            "configuration or data error; 4 the output cannot be written.",
        ),
        formatter_class=raw,
    )
    export.add_argument(
        "--source",
        type=_user_path,
        default=config.DEFAULT_SOURCE,
        metavar="PATH",
        help="source config YAML (default: %(default)s)",
    )
    export.add_argument(
        "--as-of",
        required=True,
        metavar="DATE",
        help="the data as known at the end of this day, e.g. 2025-12-31 (required)",
    )
    export.add_argument(
        "--out",
        type=_user_path,
        required=True,
        metavar="FILE",
        help="output file ending in .xlsx or .csv; its folder must exist",
    )
    export.add_argument(
        "--table",
        dest="tables",
        action="append",
        choices=("counts", "rejects", "warnings", "opportunities"),
        metavar="NAME",
        help="table to write, one of counts, rejects, warnings, opportunities; repeat "
        "for several (default: counts, rejects and warnings)",
    )
    export.set_defaults(handler=_cmd_export)
    return parser


def _error(message: object, status: int) -> int:
    """Print ``error: <message>`` on stderr and return the exit status ``status``."""
    print(f"error: {message}", file=sys.stderr)
    return status


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _cmd_run(args: argparse.Namespace) -> int:
    from . import report

    # SIGTERM (systemd stop, kill) is handled like Ctrl-C: kernels killed, nothing published.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        result = report.run_reports(
            args.params,
            notebooks=args.notebooks,
            reports_dir=args.reports_dir,
            workers=args.workers,
            timeout=args.timeout or None,
            keep=args.keep,
            started_at=datetime.now(),
            progress=not args.quiet,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if result.ok:
        if not args.quiet:
            total = sum(r.seconds for r in result.results)
            print(f"{len(result.results)} notebook(s) ok ({total:.1f} s of notebook time)")
            print(f"latest -> {result.run_dir.name}")
            if result.pruned:
                names = ", ".join(p.name for p in result.pruned)
                print(f"pruned {len(result.pruned)} old run(s): {names}")
            print(f"report: {result.index}")
        return EXIT_OK
    failed = result.failed
    published = latest_target(result.run_dir.parent)
    kept = (
        f"'latest' still points at {published} (unchanged)"
        if published is not None
        else "no run has succeeded yet, so there is no 'latest' report"
    )
    lines = [f"FAILED: {len(failed)} of {len(result.results)} notebook(s) did not succeed; {kept}"]
    lines += ["  " + r.describe_failure().replace("\n", "\n  ") for r in failed]
    lines.append(f"report of this run: {result.index}")
    print("\n".join(lines), file=sys.stderr)
    return EXIT_FAILED


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


def _cmd_export(args: argparse.Namespace) -> int:
    from .dataset import load_dataset, to_timestamp
    from .exports import write_load_tables

    try:
        as_of = to_timestamp(args.as_of, name="--as-of")
    except ValueError as exc:
        return _error(exc, EXIT_USAGE)
    tables = args.tables or ["counts", "rejects", "warnings"]
    if args.out.suffix.lower() not in (".xlsx", ".csv"):
        return _error(
            f"--out {args.out}: end the file name in .xlsx (one workbook) or .csv "
            "(one file per table)",
            EXIT_USAGE,
        )
    if not args.out.parent.is_dir():
        return _error(
            f"--out {args.out}: the folder {args.out.parent} does not exist", EXIT_UNWRITABLE
        )
    ds = load_dataset(args.source, as_of=as_of)
    try:
        written = write_load_tables(ds, args.out, tables=tables)
    except OSError as exc:
        return _error(
            f"cannot write {args.out}: {exc.strerror or exc} — check that the folder "
            "exists and is writable, and that there is free space",
            EXIT_UNWRITABLE,
        )
    counts = ds.counts[["read", "loaded", "rejected"]].sum()
    print(
        f"{int(counts['read']):,} rows read, {int(counts['loaded']):,} loaded, "
        f"{int(counts['rejected']):,} rejected, {len(ds.warnings):,} warnings"
    )
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_dashboards(args: argparse.Namespace) -> int:
    from .dashboards import serve

    return serve(
        params_path=args.params,
        port=args.port,
        ip=args.ip,
        staging_dir=args.staging_dir,
        extra=args.server_options,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 1 when a notebook failed or timed out, 2 on a usage or
        configuration error, 3 when another run holds the lock, 4 when the reports
        folder cannot be written, 130 when interrupted.
    """
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        # only `dashboards` takes options beyond its own: --Class.trait=value for the server
        takes_options = getattr(args, "takes_server_options", False)
        args.server_options, unknown = (
            dashboards.server_options(rest) if takes_options else ([], rest)
        )
        if unknown:
            hint = " (options for the server take the form --Class.trait=value)"
            parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint * takes_options}")
    except SystemExit as exc:  # --help (0) or a usage error (2): return, don't exit
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except RunLockedError as exc:
        return _error(exc, EXIT_LOCKED)
    except ReportWriteError as exc:
        return _error(exc, EXIT_UNWRITABLE)
    except PipelineError as exc:
        return _error(exc, EXIT_USAGE)
    except KeyboardInterrupt:
        print(
            "interrupted: every kernel was stopped and the unfinished run removed; nothing was "
            "published and the previous report is unchanged",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
