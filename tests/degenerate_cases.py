"""Degenerate data sets for the notebook robustness tests (``test_degenerate*.py``).

Each case starts from the demo generator's canonical tables (300 opportunities) and cuts
them down to one degenerate shape, then writes them as canonical Parquet files with a
source config and a report parameters file (``params/ci.yaml`` plus the case's source
config and, for the filter case, ``segment_filters``).

``write_case(name, root)`` returns the parameters file to hand to
:func:`pipeline_lib.report.run_reports`; ``run_case(name, root)`` runs every published
notebook on it through the runner and returns the text of each HTML report;
``check_reports`` asserts that each report is clean and says what it should;
``case_tests(expected)`` makes the slow test that does both for every case of
``expected``.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline_lib import config, demo, report

__all__ = [
    "AS_OF",
    "CASES",
    "NOTEBOOKS",
    "base_tables",
    "case_tables",
    "case_tests",
    "check_reports",
    "report_text",
    "run_case",
    "write_case",
]

NOTEBOOKS = tuple(p.stem for p in sorted(config.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")))

AS_OF = "2025-12-31"
N_OPPORTUNITIES = 300
SEED = 42

_STAGES = {
    "open": ["Prospecting", "Qualification", "Needs Analysis", "Proposal/Price Quote",
             "Negotiation/Review"],
    "won": ["Closed Won"],
    "lost": ["Closed Lost"],
}  # fmt: skip

_BASE: dict[str, pd.DataFrame] | None = None


def base_tables() -> dict[str, pd.DataFrame]:
    """The demo's canonical tables (generated once per process; copies are handed out)."""
    global _BASE
    if _BASE is None:
        _BASE = demo.generate_demo(n_opportunities=N_OPPORTUNITIES, seed=SEED)
    return {name: frame.copy() for name, frame in _BASE.items()}


def _keep_opportunities(tables: dict, keep: pd.Series, *, leads: str = "all") -> dict:
    """Tables restricted to the opportunities where ``keep``; their history follows.

    ``leads="linked"`` keeps only the leads of the kept deals; ``"all"`` keeps every lead
    (a lead whose deal is gone is simply a lead that has not converted).
    """
    opps = tables["opportunities"].loc[keep].reset_index(drop=True)
    out = dict(tables, opportunities=opps)
    hist = tables["stage_history"]
    out["stage_history"] = hist.loc[hist["opportunity_id"].isin(opps["opportunity_id"])]
    if leads == "linked":
        lead_tab = tables["leads"]
        out["leads"] = lead_tab.loc[lead_tab["lead_id"].isin(opps["lead_id"].dropna())]
    return out


def _single_opportunity(t: dict) -> dict:
    """One won deal (closed in 2025, from a lead), its stage history and its lead."""
    o = t["opportunities"]
    pick = o.loc[
        o["status"].eq("won") & o["lead_id"].notna() & (o["close_date"] >= "2025-01-01")
    ].iloc[0]
    return _keep_opportunities(t, o["opportunity_id"].eq(pick["opportunity_id"]), leads="linked")


def _single_product(t: dict) -> dict:
    """Only the deals of the best-selling product; the products table lists only it."""
    o = t["opportunities"]
    product = o["product"].value_counts().index[0]
    out = _keep_opportunities(t, o["product"].eq(product))
    out["products"] = t["products"].loc[t["products"]["product"].eq(product)]
    return out


def _no_won(t: dict) -> dict:
    return _keep_opportunities(t, ~t["opportunities"]["status"].eq("won"))


def _no_lost(t: dict) -> dict:
    return _keep_opportunities(t, ~t["opportunities"]["status"].eq("lost"))


def _all_open(t: dict) -> dict:
    return _keep_opportunities(t, t["opportunities"]["status"].eq("open"))


def _one_month(t: dict) -> dict:
    """Everything dated in the last month before ``AS_OF`` (December 2025) only."""
    start = pd.Timestamp(AS_OF).replace(day=1)
    out = _keep_opportunities(t, t["opportunities"]["created_date"] >= start)
    out["leads"] = t["leads"].loc[t["leads"]["created_date"] >= start]
    for name in ("targets", "lead_costs"):
        out[name] = t[name].loc[t[name]["period"] >= start]
    return out


def _no_leads(t: dict) -> dict:
    """No leads table (and so no lead costs' leads); deals keep their ``lead_id`` column."""
    out = dict(t)
    del out["leads"]
    return out


def _no_stage_history(t: dict) -> dict:
    out = dict(t)
    del out["stage_history"]
    return out


def _all_tables(t: dict) -> dict:
    return t


#: name -> (tables builder, notebook parameters added to params/ci.yaml)
CASES: dict[str, tuple[Callable[[dict], dict], dict]] = {
    "single_opportunity": (_single_opportunity, {}),
    "single_product": (_single_product, {}),
    "no_won_deals": (_no_won, {}),
    "no_lost_deals": (_no_lost, {}),
    "all_open": (_all_open, {}),
    "one_month": (_one_month, {}),
    "no_leads": (_no_leads, {}),
    "no_stage_history": (_no_stage_history, {}),
    # Values that each exist, but no deal has all three (the builder checks it).
    "empty_segment_filter": (
        _all_tables,
        {"segment_filters": {"team": "Enterprise", "product": "Widget Lite", "source": "Web"}},
    ),
}


def case_tables(name: str) -> dict[str, pd.DataFrame]:
    """The canonical tables of case ``name``."""
    build, params = CASES[name]
    tables = build(base_tables())
    filters = params.get("segment_filters")
    if filters:
        o = tables["opportunities"]
        hit = pd.Series(True, index=o.index)
        for col, value in filters.items():
            assert (o[col] == value).any(), f"{col} = {value} should exist on its own"
            hit &= o[col] == value
        assert not hit.any(), f"the filter {filters} should select nothing"
    return {k: v.reset_index(drop=True) for k, v in tables.items()}


def write_case(name: str, root: str | Path) -> Path:
    """Write case ``name`` under ``root`` (Parquet + source.yaml + params.yaml).

    Returns
    -------
    Path
        The parameters file (``params/ci.yaml`` with ``source_config`` pointing at the
        case's source config, plus the case's extra parameters).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tables = case_tables(name)
    source: dict = {"base_currency": "USD", "stages": _STAGES, "tables": {}}
    for table, frame in tables.items():
        path = root / f"{table}.parquet"
        frame.to_parquet(path, index=False)
        entry: dict = {"path": path.name}
        if table == "leads":
            entry["columns"] = {"mql_date": "mql_date", "sql_date": "sql_date"}
            entry["milestones"] = ["mql_date", "sql_date"]
        source["tables"][table] = entry
    source_path = root / "source.yaml"
    source_path.write_text(yaml.safe_dump(source, sort_keys=False), encoding="utf-8")
    params = yaml.safe_load((config.PARAMS_DIR / "ci.yaml").read_text(encoding="utf-8"))
    params["source_config"] = str(source_path)
    params["as_of"] = AS_OF
    params.update(CASES[name][1])
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params_path


def run_case(name: str, root: str | Path) -> dict[str, str]:
    """Run every published notebook on case ``name`` as the runner does; report texts.

    One :func:`pipeline_lib.report.run_reports` call (two kernels at a time); every
    notebook must succeed. Returns the visible text of each notebook's HTML report.
    """
    root = Path(root)
    params = write_case(name, root / "data")
    run = report.run_reports(
        params, reports_dir=root / "reports", workers=2, timeout=600, progress=False
    )
    failed = {r.name: r.error for r in run.results if r.status != "ok"}
    assert not failed, f"{name}: {failed}"
    assert {r.name for r in run.results} == set(NOTEBOOKS)
    return {
        stem: report_text((run.run_dir / f"{stem}.html").read_text(encoding="utf-8"))
        for stem in NOTEBOOKS
    }


_INLINE = re.compile(r"</?(strong|em|b|i|code|a|span)\b[^>]*>", re.I)


def report_text(html: str) -> str:
    """What a reader sees in an HTML report: no scripts, styles or tags; spaces collapsed."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    html = _INLINE.sub("", html)
    text = _html.unescape(re.sub(r"<[^>]+>", " ", html))
    return re.sub(r"\s+", " ", text)


#: Text that must never reach a reader: errors, and numbers the report could not compute.
FORBIDDEN = {
    "a traceback": r"Traceback",
    "an exception name": r"\b[A-Z]\w*Error\b",
    "a failed section": r"This section failed",
    "a missing number": r"\bnan\b|\bNaN\b|\bNaT\b|\binf\b",
    "a numpy repr": r"np\.(int|float)\d+",
    "a code cell": r"bar\.show\(|load_dataset\(",
    "log noise": r"WARNING|cmdstanpy",
}


def check_reports(texts: Mapping[str, str], expected: Mapping[str, Sequence[str]]) -> None:
    """Each report is clean (:data:`FORBIDDEN`) and contains its ``expected`` phrases.

    A phrase starting with ``!`` must *not* appear. Every "Not available here." note must
    carry a reason.
    """
    problems = []
    for stem, text in texts.items():
        for what, pattern in FORBIDDEN.items():
            hit = re.search(pattern, text)
            if hit:
                around = text[max(0, hit.start() - 150) : hit.end() + 150]
                problems.append(f"{stem}: {what} ({hit.group(0)!r}) in …{around}…")
        for note in re.finditer(r"Not available here\.(.{0,40})", text):
            if len(note.group(1).strip()) < 20:
                problems.append(f"{stem}: a note without a reason: {note.group(0)!r}")
        for phrase in expected.get(stem, ()):
            if phrase.startswith("!") and phrase[1:] in text:
                problems.append(f"{stem}: should not say {phrase[1:]!r}")
            elif not phrase.startswith("!") and phrase not in text:
                problems.append(f"{stem}: missing {phrase!r}")
    assert set(expected) <= set(texts), set(expected) - set(texts)
    assert not problems, "\n".join(problems)


def case_tests(expected: Mapping[str, Mapping[str, Sequence[str]]]) -> Callable:
    """A slow test, one per case of ``expected``: run the case, check its reports.

    ``expected`` maps a case name to what :func:`check_reports` expects of its reports.
    Assign the result to a ``test_*`` name of a test module.
    """

    @pytest.mark.slow
    @pytest.mark.parametrize("case", list(expected))
    def test_case(case: str, tmp_path: Path) -> None:
        check_reports(run_case(case, tmp_path), expected[case])

    return test_case
