"""What is measured: the benchmark tasks.

Each task has metadata (read by the harness, standard library only) and a ``build``
function run in the measuring child process: ``build(ctx)`` does the untimed set-up and
returns the steps, ``[(label, step)]``; each ``step(results)`` is timed on its own
(``results`` holds the earlier steps' return values by label) and the task's time is the
sum of its steps.

Analysis tasks make each *distinct* library call the notebook's views make (the same
function with the same arguments once), with the notebooks' default parameters, on the
Dataset as the notebook loads it (``as_of`` = 2025-12-31). Results are memoised within a
process (:mod:`pipeline_lib.memo`) exactly as in a report run, so a function that reuses
an earlier one's building blocks shows only its own extra cost.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

#: Scale policy: "data" runs at every requested scale; "once" at the smallest requested
#: scale only (its cost does not grow with the data); "demo" on the default demo data.
DATA, ONCE, DEMO = "data", "once", "demo"


@dataclass(frozen=True)
class TaskInfo:
    name: str
    group: str
    scale: str  # DATA, ONCE or DEMO
    needs: str  # "files", "dataset" or "none"
    what: str  # one line for the README
    analysis: bool = False  # counts toward "each analysis's core computations <= 10 s"


ANALYSES = ("quality", "product_potential", "lead_yield", "trend_review", "scoring", "forecasting")

_INFO = [
    TaskInfo("load_csv", "load", DATA, "files", "`load_dataset` from the canonical CSV files"),
    TaskInfo("load_parquet", "load", DATA, "files", "`load_dataset` from the Parquet files"),
    TaskInfo(
        "quality",
        "analyses",
        DATA,
        "dataset",
        "00 data quality: load summary, headline KPIs, rejects, warnings, coverage",
        True,
    ),
    TaskInfo(
        "product_potential",
        "analyses",
        DATA,
        "dataset",
        "01 product potential: scorecard, pipeline weights, what-if, discounts, affinity, "
        "white space, next best",
        True,
    ),
    TaskInfo(
        "lead_yield",
        "analyses",
        DATA,
        "dataset",
        "02 lead yield: funnel by source, yield, cohorts, time to convert, leads required, "
        "cost/return, open leads",
        True,
    ),
    TaskInfo(
        "trend_review",
        "analyses",
        DATA,
        "dataset",
        "04 trend review: stage conversion, time in stage, bottlenecks, flow, pushes, "
        "velocity, trends, change points, segments, owners, lost reasons, what worked, "
        "findings",
        True,
    ),
    TaskInfo(
        "scoring",
        "analyses",
        DATA,
        "dataset",
        "03 scoring: `fit_win_model` + `score_open_deals`",
        True,
    ),
    TaskInfo(
        "forecasting",
        "analyses",
        DATA,
        "dataset",
        "03 forecast: bookings back-test + forecast of the total (n_jobs=1), pipeline forecast",
        True,
    ),
    TaskInfo(
        "forecast_100_serial",
        "forecast_100",
        ONCE,
        "dataset",
        "bookings forecast of 100 segments (product × team × source) + total, n_jobs=1",
    ),
    TaskInfo(
        "forecast_100_parallel",
        "forecast_100",
        ONCE,
        "dataset",
        "the same with n_jobs=-1 (all cores, joblib threads)",
    ),
]
for _agg in ("win_rate_by_product", "funnel_by_source", "time_in_stage"):
    _INFO += [
        TaskInfo(f"ref.{_agg}.ours", "reference", DATA, "dataset", f"{_agg}: our function"),
        TaskInfo(f"ref.{_agg}.duckdb", "reference", DATA, "dataset", f"{_agg}: DuckDB SQL"),
        TaskInfo(
            f"ref.{_agg}.duckdb_parquet",
            "reference",
            DATA,
            "files",
            f"{_agg}: DuckDB SQL reading the Parquet files",
        ),
    ]
_INFO += [
    TaskInfo(
        "report_suite",
        "report_suite",
        DEMO,
        "none",
        "`python -m pipeline_lib run` (all five notebooks) on the default demo data",
    ),
    TaskInfo(
        "dashboards",
        "dashboards",
        DEMO,
        "none",
        "Voila first render of each dashboard (preheated kernels), slowest of the five",
    ),
]
TASKS = {t.name: t for t in _INFO}
GROUPS = {}
for _t in _INFO:
    GROUPS.setdefault(_t.group, []).append(_t.name)


def select(spec: str | None) -> list[str]:
    """Task names for ``--tasks``: names, groups, prefixes (``ref.time_in_stage``) or all."""
    if not spec or spec.strip() == "all":
        return list(TASKS)
    chosen: list[str] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item in TASKS:
            names = [item]
        elif item in GROUPS:
            names = GROUPS[item]
        else:
            names = [n for n in TASKS if n.startswith(item + ".")]
        if not names:
            raise ValueError(
                f"--tasks: unknown task or group {item!r}; tasks: {', '.join(TASKS)}; "
                f"groups: {', '.join(GROUPS)}"
            )
        chosen += [n for n in names if n not in chosen]
    return [n for n in TASKS if n in chosen]  # canonical order


# --------------------------------------------------------------------------- child side
# Everything below runs in the measuring child process only.


@dataclass
class Context:
    """What a task's set-up may use."""

    folder: object  # Path of the scale's data folder (None for demo tasks)
    scale: str
    as_of: str
    project_root: object  # Path


def build(name: str, ctx: Context):
    """Untimed set-up of task ``name``; returns ``(steps, digest)``.

    ``steps`` is ``[(label, step)]``; ``digest(results)`` (or None) returns the
    JSON-able result summary compared across engines (reference tasks).
    """
    if name in ("load_csv", "load_parquet"):
        return _load(ctx, "csv" if name == "load_csv" else "parquet"), None
    if name.startswith("ref."):
        return _reference(ctx, *name.split(".")[1:])
    if name in ("forecast_100_serial", "forecast_100_parallel"):
        return _forecast_100(ctx, 1 if name.endswith("serial") else -1), None
    if name == "report_suite":
        return _report_suite(ctx), None
    if name == "dashboards":
        return _dashboards(ctx), None
    return globals()[f"_{name}"](ctx), None


def _preimport(*modules: str) -> None:
    """Import what the library imports lazily, so import time is not measured."""
    import importlib

    for m in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(m)


def _dataset(ctx: Context):
    import pandas as pd
    from _data import load_pickle

    return load_pickle(ctx.folder), pd.Timestamp(ctx.as_of)


def _load(ctx: Context, fmt: str):
    _preimport("pyarrow.parquet", "pyarrow.csv", "pandera", "tqdm.auto")
    from pipeline_lib.dataset import load_dataset

    cfg = ctx.folder / f"{fmt}.yaml"
    return [("load_dataset", lambda r: load_dataset(cfg, as_of=ctx.as_of))]


def _quality(ctx: Context):
    from pipeline_lib import quality as q

    ds, ts = _dataset(ctx)
    return [
        ("compute_load_summary", lambda r: q.compute_load_summary(ds)),
        (
            "compute_headline_kpis",
            lambda r: q.compute_headline_kpis(ds, as_of=ts, window_days=365),
        ),
        ("compute_reject_reasons", lambda r: q.compute_reject_reasons(ds)),
        ("compute_warning_summary", lambda r: q.compute_warning_summary(ds)),
        ("compute_table_coverage", lambda r: q.compute_table_coverage(ds)),
    ]


def _product_potential(ctx: Context):
    _preimport("scipy.stats", "scipy.optimize")
    from pipeline_lib import product_potential as pp

    ds, ts = _dataset(ctx)
    card = {"as_of": ts, "group_by": "product", "period_days": 365, "weights": "history"}
    levers = {"win_rate_pts": 5.0, "discount_cut_pct": 10.0, "cycle_days": 7.0, "leads_pct": 10.0}
    return [
        ("compute_scorecard", lambda r: pp.compute_scorecard(ds, **card)),
        ("compute_scorecard(total=True)", lambda r: pp.compute_scorecard(ds, **card, total=True)),
        (
            "compute_stage_win_rates",
            lambda r: pp.compute_stage_win_rates(ds, as_of=ts, by="product"),
        ),
        (
            "compute_sensitivity",
            lambda r: pp.compute_sensitivity(
                ds, as_of=ts, horizon_days=365, period_days=365, **levers
            ),
        ),
        ("compute_discount_effect", lambda r: pp.compute_discount_effect(ds, as_of=ts)),
        (
            "compute_band_win_rates(discount)",
            lambda r: pp.compute_band_win_rates(ds, as_of=ts, by="discount"),
        ),
        (
            "compute_band_win_rates(deal_size)",
            lambda r: pp.compute_band_win_rates(ds, as_of=ts, by="deal_size"),
        ),
        ("compute_affinity", lambda r: pp.compute_affinity(ds, as_of=ts, basis="won")),
        ("compute_white_space", lambda r: pp.compute_white_space(ds, as_of=ts, basis="won")),
        ("summarise_white_space", lambda r: pp.summarise_white_space(r["compute_white_space"])),
        (
            "compute_next_best(account)",
            lambda r: pp.compute_next_best(ds, as_of=ts, per="account", top_n=3, basis="won"),
        ),
        (
            "compute_next_best(deal)",
            lambda r: pp.compute_next_best(ds, as_of=ts, per="deal", top_n=3, basis="won"),
        ),
    ]


def _lead_yield(ctx: Context):
    _preimport("scipy.stats", "scipy.optimize")
    from pipeline_lib import lead_yield as ly

    ds, ts = _dataset(ctx)
    by = "source"
    step = "opportunity"
    return [
        ("compute_funnel", lambda r: ly.compute_funnel(ds, as_of=ts)),
        ("compute_funnel(by=source)", lambda r: ly.compute_funnel(ds, as_of=ts, by=by)),
        ("compute_lead_yield", lambda r: ly.compute_lead_yield(ds, as_of=ts, by=by)),
        (
            "compute_cohort_conversion",
            lambda r: ly.compute_cohort_conversion(ds, as_of=ts, freq="M", step=step),
        ),
        (
            "compute_conversion_at_age",
            lambda r: ly.compute_conversion_at_age(ds, as_of=ts, age_days=90, by=by, step=step),
        ),
        (
            "compute_time_to_convert",
            lambda r: ly.compute_time_to_convert(ds, as_of=ts, step=step, by=by),
        ),
        (
            "compute_conversion_lags",
            lambda r: ly.compute_conversion_lags(ds, as_of=ts, step=step, by=by),
        ),
        (
            "compute_time_to_convert(won)",
            lambda r: ly.compute_time_to_convert(ds, as_of=ts, step="won", by=by),
        ),
        (
            "compute_leads_required",
            lambda r: ly.compute_leads_required(
                ds,
                as_of=ts,
                target_date="2026-06-30",
                by=by,
                mix_days=365,
                horizon_days=365,
                target_wins=100,
            ),
        ),
        (
            "compute_optimal_mix",
            lambda r: ly.compute_optimal_mix(r["compute_leads_required"], max_scale=2.0),
        ),
        ("compute_cost_return", lambda r: ly.compute_cost_return(ds, as_of=ts, freq=None)),
        ("compute_cost_return(Q)", lambda r: ly.compute_cost_return(ds, as_of=ts, freq="Q")),
        (
            "compute_open_leads",
            lambda r: ly.compute_open_leads(ds, as_of=ts, by=by, horizon_days=365),
        ),
        (
            "compute_open_lead_summary",
            lambda r: ly.compute_open_lead_summary(r["compute_open_leads"]),
        ),
    ]


def _trend_review(ctx: Context):
    _preimport("scipy.stats", "scipy.optimize")
    import pandas as pd

    from pipeline_lib import trend_review as tr

    ds, ts = _dataset(ctx)
    per = {"period": "quarter"}
    cmp_ = {"period": "quarter", "comparison": "previous"}
    segs = ("product", "team", "source")

    def windows(r):
        return tr.compute_review_windows(as_of=ts, **cmp_)

    def flow(r):
        w = r["compute_review_windows"].iloc[0]
        start = w["start"] - pd.Timedelta(days=1)
        return tr.compute_pipeline_flow(ds, as_of=ts, start=start, end=w["end"])

    def pushed(r):
        w = r["compute_review_windows"].iloc[0]
        return tr.compute_pushed_deals(ds, as_of=ts, start=w["start"], end=w["end"])

    def decomposition(r):
        w = r["compute_review_windows"]
        return tr.compute_velocity_decomposition(
            r["compute_velocity"], current=w["label"].iloc[0], previous=w["label"].iloc[1]
        )

    def segment_trends(r):
        # the segment_trends view draws the trends of the column with most change points
        cp = r["compute_change_points(segments)"]
        seg = cp[cp["segment_column"] != "all"]
        if seg.empty:
            return None
        col = seg["segment_column"].value_counts().index[0]
        return tr.compute_trends(ds, as_of=ts, by=col, **per)

    return [
        ("compute_review_windows", windows),
        ("compute_stage_conversion", lambda r: tr.compute_stage_conversion(ds, as_of=ts)),
        ("compute_stage_durations", lambda r: tr.compute_stage_durations(ds, as_of=ts)),
        ("compute_bottlenecks", lambda r: tr.compute_bottlenecks(ds, as_of=ts, **cmp_)),
        ("compute_pipeline_flow", flow),
        ("compute_stalled_deals", lambda r: tr.compute_stalled_deals(ds, as_of=ts)),
        ("compute_push_rate", lambda r: tr.compute_push_rate(ds, as_of=ts, **per)),
        ("compute_pushed_deals", pushed),
        ("compute_velocity", lambda r: tr.compute_velocity(ds, as_of=ts, **per)),
        ("compute_velocity_decomposition", decomposition),
        ("compute_trends", lambda r: tr.compute_trends(ds, as_of=ts, **per)),
        ("compute_change_points", lambda r: tr.compute_change_points(ds, as_of=ts, **per)),
        (
            "compute_period_comparison",
            lambda r: tr.compute_period_comparison(ds, as_of=ts, **cmp_),
        ),
        (
            "compute_change_points(segments)",
            lambda r: tr.compute_change_points(
                ds, as_of=ts, metrics=("win_rate", "cycle_days"), by=segs, **per
            ),
        ),
        ("compute_trends(segment)", segment_trends),
        (
            "compute_segment_changes",
            lambda r: tr.compute_segment_changes(ds, as_of=ts, by=segs, **cmp_),
        ),
        (
            "compute_owner_performance",
            lambda r: tr.compute_owner_performance(ds, as_of=ts, window_days=365),
        ),
        ("compute_lost_reasons", lambda r: tr.compute_lost_reasons(ds, as_of=ts, **per)),
        (
            "compute_lost_reason_trends",
            lambda r: tr.compute_lost_reason_trends(ds, as_of=ts, **per),
        ),
        ("compute_what_worked", lambda r: tr.compute_what_worked(ds, as_of=ts, by=segs)),
        (
            "compute_simpsons_check",
            lambda r: tr.compute_simpsons_check(ds, as_of=ts, by=segs, **cmp_),
        ),
        # the findings view comes first in the notebook; it reuses the memoised results
        # above, so last it shows only its own extra cost (the total is the same)
        ("compute_findings", lambda r: tr.compute_findings(ds, as_of=ts, by=segs, **cmp_)),
    ]


_SKLEARN = (
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.metrics",
    "sklearn.base",
    "sklearn.calibration",
    "sklearn.model_selection",
)


def _scoring(ctx: Context):
    _preimport(*_SKLEARN)
    from pipeline_lib import scoring

    ds, ts = _dataset(ctx)
    return [
        ("fit_win_model", lambda r: scoring.fit_win_model(ds, as_of=ts)),
        (
            "score_open_deals",
            lambda r: scoring.score_open_deals(ds, as_of=ts, model=r["fit_win_model"]),
        ),
    ]


def _forecasting(ctx: Context):
    _preimport("prophet", "cmdstanpy", "joblib", "tqdm.auto", *_SKLEARN)
    from pipeline_lib import forecasting, schema

    ds, ts = _dataset(ctx)
    # the pipeline forecast takes the scores of the open deals; scoring is measured by the
    # scoring task, so here the CRM probability stands in for them (untimed)
    opps = ds.opportunities
    open_ = opps.loc[opps["status"].eq(schema.OPEN), ["opportunity_id", "amount", "probability"]]
    scored = open_.rename(columns={"probability": "win_probability"}).reset_index(drop=True)
    scored["win_probability"] = scored["win_probability"].fillna(0.5).clip(0, 1)
    return [
        (
            "compute_bookings_forecast",
            lambda r: forecasting.compute_bookings_forecast(
                ds, as_of=ts, frequency="month", horizon=6, segment=None, origins=4, n_jobs=1
            ),
        ),
        (
            "compute_pipeline_forecast",
            lambda r: forecasting.compute_pipeline_forecast(
                ds, as_of=ts, frequency="month", horizon=6, scored=scored, n_sims=4000, seed=0
            ),
        ),
    ]


#: The 100 segments: product x team x source (126 combinations in the demo data); the 99
#: largest by won revenue and "Other" (the rest pooled), plus the total.
SEGMENT_COLUMN = "product_team_source"
SEGMENTS = 99


def _forecast_100(ctx: Context, n_jobs: int):
    _preimport("prophet", "cmdstanpy", "joblib", "tqdm.auto")
    from dataclasses import replace

    from pipeline_lib import forecasting

    ds, ts = _dataset(ctx)
    o = ds.opportunities
    seg = o["product"].astype(str) + " / " + o["team"].astype(str) + " / " + o["source"].astype(str)
    ds = replace(ds, tables={**ds.tables, "opportunities": o.assign(**{SEGMENT_COLUMN: seg})})

    def run(r):
        fc = forecasting.compute_bookings_forecast(
            ds,
            as_of=ts,
            frequency="month",
            horizon=6,
            segment=SEGMENT_COLUMN,
            max_segments=SEGMENTS,
            origins=4,
            n_jobs=n_jobs,
        )
        n = fc.history["segment"].nunique() - 1
        if n != SEGMENTS + 1:
            raise RuntimeError(f"expected {SEGMENTS + 1} segments besides the total, got {n}")
        return fc

    return [("compute_bookings_forecast", run)]


def _reference(ctx: Context, aggregate: str, engine: str):
    import _reference as ref

    if engine == "ours":
        ds, ts = _dataset(ctx)
        if aggregate == "win_rate_by_product":
            from pipeline_lib import product_potential as pp

            def step(r):
                return pp.compute_win_rates(ds, as_of=ts, by="product", period_days=365)
        elif aggregate == "funnel_by_source":
            from pipeline_lib import lead_yield as ly

            def step(r):
                return ly.compute_funnel(ds, as_of=ts, by="source")
        else:
            from pipeline_lib import trend_review as tr

            def step(r):
                return tr.compute_stage_durations(ds, as_of=ts)
    else:
        import duckdb

        con = duckdb.connect()
        if engine == "duckdb":
            ds, _ = _dataset(ctx)
            stages = {"open": ds.stages.open, "won": ds.stages.won, "lost": ds.stages.lost}
            sources = {}
            for name in ("opportunities", "stage_history", "leads"):
                con.register(name, ds.tables[name])
                sources[name] = name
        else:
            from _data import STAGES as stages

            sources = {
                name: f"read_parquet('{ctx.folder / 'parquet' / (name + '.parquet')}')"
                for name in ("opportunities", "stage_history", "leads")
            }
        query = ref.sql(aggregate, as_of=ctx.as_of, stages=stages, sources=sources)
        con.execute("SELECT 1").df()  # imports DuckDB's pandas glue (untimed)

        def step(r):
            return con.execute(query).df()

    def digest(results):
        return ref.digest(aggregate, results["aggregate"])

    return [("aggregate", step)], digest


def _report_suite(ctx: Context):
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    root = Path(ctx.project_root)
    # set-up: the demo data (no-op when current), as `make run` builds it first
    subprocess.run(
        [sys.executable, "-m", "pipeline_lib", "demo"], cwd=root, check=True, capture_output=True
    )
    out = Path(tempfile.mkdtemp(prefix="bench-reports-"))

    def run(r):
        try:
            res = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline_lib",
                    "run",
                    "--params",
                    "notebooks/params/default.yaml",
                    "--reports-dir",
                    str(out),
                    "--quiet",
                ],
                cwd=root,
                capture_output=True,
                text=True,
            )
            if res.returncode != 0:
                raise RuntimeError(
                    f"report run exited {res.returncode}: {(res.stderr or res.stdout)[-1500:]}"
                )
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return [("pipeline_lib run", run)]


def _dashboards(ctx: Context):
    """Serve the dashboards, wait for the preheated kernels, time dashboard_render.py."""
    import json
    import re
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from pipeline_lib import config, dashboards

    if not dashboards.CHROMIUM.exists():
        raise RuntimeError(f"needs Debian's chromium at {dashboards.CHROMIUM}")
    root = Path(ctx.project_root)
    subprocess.run(
        [sys.executable, "-m", "pipeline_lib", "demo"], cwd=root, check=True, capture_output=True
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-dash-"))
    _CLEANUP.append(lambda: shutil.rmtree(tmp, ignore_errors=True))  # runs last (LIFO)
    served = tmp / "served"
    staged = dashboards.stage_dashboards(served, params_path=config.DEFAULT_PARAMS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp / "voila.log"
    log = log_path.open("w")
    proc = subprocess.Popen(
        dashboards.voila_command(served, port=port),
        env=dashboards.dashboard_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    _CLEANUP.append(lambda: _stop(proc, log))
    deadline = time.monotonic() + 600
    while log_path.read_text(errors="replace").count("is filled with") < len(staged):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(
                "Voila did not fill its kernel pools: " + log_path.read_text()[-1500:]
            )
        time.sleep(0.5)
    time.sleep(1.0)
    script = root / "benchmarks" / "dashboard_render.py"
    pattern = re.compile(
        r"^(\S+): first render ([\d.]+) s .*re-render after a filter change ([\d.]+) s"
    )

    def render(r):
        url = ["--url", f"http://127.0.0.1:{port}"]
        out = tmp / "render.json"
        cmd = [sys.executable, str(script), *url, "--json", str(out)]
        res = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if res.returncode != 0 and "unrecognized arguments" in res.stderr:
            # a dashboard_render.py without --json: read its printed lines
            res = subprocess.run(cmd[:-2], cwd=root, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"dashboard_render.py failed: {(res.stderr or res.stdout)[-1500:]}")
        found = {}
        if out.exists():
            for nb, m in json.loads(out.read_text(encoding="utf-8"))["medians"].items():
                found[nb] = {"first": float(m["first"]), "rerender": m.get("rerender")}
        else:
            for line in res.stdout.splitlines():
                m = pattern.match(line.strip())
                if m:
                    found[m.group(1)] = {"first": float(m.group(2)), "rerender": float(m.group(3))}
        if len(found) != len(staged):
            raise RuntimeError(f"could not read the render times from: {res.stdout[-1500:]}")
        return found

    return [("dashboard_render.py", render)]


#: Clean-up actions of the set-up (the child runs them before it exits).
_CLEANUP: list = []


def _stop(proc, log) -> None:
    from pipeline_lib import dashboards

    dashboards.stop_server(proc)
    log.close()


def cleanup() -> None:
    while _CLEANUP:
        with contextlib.suppress(Exception):  # best effort at exit
            _CLEANUP.pop()()
