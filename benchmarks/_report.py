"""Summaries of a benchmark run (reference ratios, growth, targets) and the README tables.

Standard library only: the harness process never imports pandas or the library.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import _reference
import _tasks

START, END = "<!-- results:start -->", "<!-- results:end -->"
MILLION = 1_000_000


# --------------------------------------------------------------------------- lookups


def _index(results: list[dict]) -> dict[tuple[str, str], dict]:
    return {(e["task"], e["scale"]): e for e in results}


def _median(entry: dict | None) -> float | None:
    if not entry or entry.get("status") != "ok" or not entry.get("seconds"):
        return None
    return entry["seconds"]["median"]


def _scale_order(scales: dict) -> list[str]:
    return sorted(scales, key=lambda s: scales[s].get("n_opportunities", 0))


def _scale_of(scales: dict, n: int) -> str | None:
    for name, meta in scales.items():
        if meta.get("n_opportunities") == n:
            return name
    return None


# --------------------------------------------------------------------------- summaries


def merge(old: dict | None, new: dict) -> dict:
    """``new`` plus the results of ``old`` for (task, scale) pairs ``new`` did not measure."""
    if not old or old.get("schema") != new.get("schema"):
        return new
    have = {(e["task"], e["scale"]) for e in new["results"]}
    origin = {"date": old.get("date"), "commit": (old.get("git") or {}).get("commit")}
    kept = []
    for e in old.get("results", []):
        if (e["task"], e["scale"]) not in have and e["task"] in _tasks.TASKS:
            e = dict(e)
            e.setdefault("measured", origin)
            kept.append(e)
    merged = dict(new)
    merged["results"] = kept + new["results"]
    scales = dict(old.get("scales", {}))
    for s, meta in new["scales"].items():  # a run that needed no data knows no row counts
        if "rows" in meta or "rows" not in scales.get(s, {}):
            scales[s] = meta
    merged["scales"] = {s: scales[s] for s in _scale_order(scales)}
    merged["options"] = dict(new["options"], scales=list(merged["scales"]))
    history = list(old.get("history", []))
    history.append({k: old.get(k) for k in ("date", "command")} | {"commit": origin["commit"]})
    merged["history"] = history
    order = {name: i for i, name in enumerate(_tasks.TASKS)}
    pos = {s: i for i, s in enumerate([*merged["scales"], "demo"])}
    merged["results"].sort(key=lambda e: (order[e["task"]], pos.get(e["scale"], 99)))
    return merged


def reference_summary(results: list[dict]) -> list[dict]:
    """Per aggregate and scale: the three timings, ours ÷ DuckDB, and whether they agree."""
    idx = _index(results)
    scales = []
    for e in results:
        if e["task"].startswith("ref.") and e["scale"] not in scales:
            scales.append(e["scale"])
    out = []
    for agg in _reference.AGGREGATES:
        for scale in scales:
            got = {eng: idx.get((f"ref.{agg}.{eng}", scale)) for eng in _reference.ENGINES}
            if not any(got.values()):
                continue
            row = {"aggregate": agg, "scale": scale}
            for eng, e in got.items():
                row[eng] = _median(e)
            if row["ours"] and row["duckdb"]:
                row["ratio"] = row["ours"] / row["duckdb"]
            if row["ours"] and row["duckdb_parquet"]:
                row["ratio_parquet"] = row["ours"] / row["duckdb_parquet"]
            ours = (got["ours"] or {}).get("digest")
            checks = []
            for eng in ("duckdb", "duckdb_parquet"):
                ref = (got[eng] or {}).get("digest")
                if ours is not None and ref is not None:
                    ok, detail = _reference.compare(agg, ours, ref)
                    checks.append((eng, ok, detail))
            if checks:
                row["agree"] = all(ok for _, ok, _ in checks)
                row["detail"] = "; ".join(
                    f"{'DuckDB (frames)' if eng == 'duckdb' else 'DuckDB (Parquet)'}: {d}"
                    for eng, _, d in checks
                )
            else:
                row["agree"] = None
                row["detail"] = "not compared (ours or the reference did not finish)"
            out.append(row)
    return out


def forecast_speedup(results: list[dict]) -> list[dict]:
    idx = _index(results)
    out = []
    for e in results:
        if e["task"] != "forecast_100_serial":
            continue
        serial = _median(e)
        parallel = _median(idx.get(("forecast_100_parallel", e["scale"])))
        row = {"scale": e["scale"], "serial": serial, "parallel": parallel}
        if serial and parallel:
            row["speedup"] = serial / parallel
        out.append(row)
    return out


def _growth_tasks() -> list[str]:
    return [
        t.name
        for t in _tasks.TASKS.values()
        if t.scale == _tasks.DATA and not t.name.endswith(("duckdb", "duckdb_parquet"))
    ]


def growth(results: list[dict], scales: dict, timeout: float | None = None) -> list[dict]:
    """Time ratio between consecutive scales, and per 10x data (``ratio ** (1 / log10 k)``)."""
    idx = _index(results)
    order = _scale_order(scales)
    out = []
    for task in _growth_tasks():
        for a, b in zip(order, order[1:], strict=False):
            ea, eb = idx.get((task, a)), idx.get((task, b))
            ta = _median(ea)
            if ta is None or eb is None:
                continue
            k = scales[b]["n_opportunities"] / scales[a]["n_opportunities"]
            row = {"task": task, "from": a, "to": b, "data_ratio": k}
            tb = _median(eb)
            if tb is not None:
                row["time_ratio"] = tb / ta
                row["per_10x"] = (tb / ta) ** (1 / math.log10(k)) if k > 1 else None
            elif eb.get("status") == "timeout":
                limit = _timeout_of(eb, timeout)
                if limit:
                    row["time_ratio_at_least"] = limit / ta
                    row["per_10x_at_least"] = (limit / ta) ** (1 / math.log10(k))
            else:
                continue
            out.append(row)
    return out


def _timeout_of(entry: dict, default: float | None) -> float | None:
    m = re.search(r"longer than (\d+(?:\.\d+)?) s", str(entry.get("error", "")))
    if m and "set-up" not in str(entry.get("error")):
        return float(m.group(1))
    return None if m else default


def summarise_doc(doc: dict) -> dict:
    """Add the reference ratios, the forecast speed-up, growth and targets to ``doc``."""
    results = doc["results"]
    doc["reference"] = reference_summary(results)
    doc["forecast_speedup"] = forecast_speedup(results)
    timeout = (doc.get("options") or {}).get("timeout")
    doc["growth"] = growth(results, doc["scales"], timeout=timeout)
    doc["targets"] = targets(doc)
    return doc


def _secs(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 1000:
        return f"{v:,.0f} s"
    if v >= 0.001:
        return f"{v:.3g} s"
    return f"{v * 1000:.2g} ms"


def _target(name, measured, ok, limit, note=""):
    """``ok``: True (pass), False (FAIL), None (not measured) or "incomplete" (passes
    where measured, but part of what the target covers was not measured)."""
    if ok == "incomplete":
        status = "incomplete"
    else:
        status = "not measured" if ok is None else ("pass" if ok else "FAIL")
    return {"target": name, "limit": limit, "measured": measured, "status": status, "note": note}


def targets(doc: dict) -> list[dict]:
    """The issue's targets with pass/fail (or "not measured")."""
    results, scales = doc["results"], doc["scales"]
    idx = _index(results)
    m = _scale_of(scales, MILLION)
    out = []

    def at_million(task):
        return idx.get((task, m)) if m else None

    def describe(e):
        if e is None:
            return "not measured at 1M"
        if e.get("status") == "ok":
            return _secs(_median(e))
        return f"{e.get('status')}: {str(e.get('error', ''))[:120]}"

    e = at_million("load_parquet")
    t = _median(e)
    out.append(
        _target(
            "Load from Parquet at 1M ≤ 5 s",
            describe(e),
            None if e is None else bool(t and t <= 5),
            "5 s",
        )
    )
    for name in _tasks.ANALYSES:
        e = at_million(name)
        t = _median(e)
        out.append(
            _target(
                f"{name} core computations at 1M ≤ 10 s",
                describe(e),
                None if e is None else bool(t and t <= 10),
                "10 s",
            )
        )
    # memory: every task measured at 1M (a task missing there leaves the target open)
    expected = [t for t in _tasks.TASKS if _tasks.TASKS[t].scale == _tasks.DATA]
    expected = [t for t in expected if any(x["task"] == t for x in results)]
    at_m = {x["task"]: x for x in results if m and x["scale"] == m}
    done = [x for x in at_m.values() if x.get("status") == "ok" and x.get("peak_rss_mb")]
    if done:
        top = max(done, key=lambda x: x["peak_rss_mb"]["max"])
        peak = top["peak_rss_mb"]["max"]
        measured = f"{peak / 1024:.2f} GB ({top['task']})"
        missing = [t for t in expected if (at_m.get(t) or {}).get("status") != "ok"]
        ok = peak <= 8 * 1024
        note = ""
        if missing:
            measured += f", largest of the {len(done)} task(s) that finished at 1M"
            note = "not measured or not finished at 1M: " + ", ".join(missing)
            ok = "incomplete" if ok else False
        out.append(_target("Peak memory at 1M ≤ 8 GB", measured, ok, "8 GB", note))
    else:
        out.append(_target("Peak memory at 1M ≤ 8 GB", "not measured at 1M", None, "8 GB"))
    # growth: every pair of consecutive scales of every task of ours
    rows = doc.get("growth") or []
    if rows:

        def per10(r):
            return r.get("per_10x") or r.get("per_10x_at_least") or 0

        worst = max(rows, key=per10)
        bad = [r for r in rows if per10(r) > 12]
        sign = "≥ " if "per_10x_at_least" in worst else ""
        measured = (
            f"worst {sign}{per10(worst):.1f}× per 10× ({worst['task']}, "
            f"{worst['from']} → {worst['to']}); {len(bad)} of {len(rows)} above 12×"
        )
        order = _scale_order(scales)
        have = {(r["task"], r["to"]) for r in rows}
        missing = [
            f"{t} {a}→{b}"
            for t in _growth_tasks()
            if any(x["task"] == t for x in results)
            for a, b in zip(order, order[1:], strict=False)
            if (t, b) not in have
        ]
        ok = not bad
        note = ""
        if missing and ok:
            ok = "incomplete"
            note = f"{len(missing)} step(s) not measured: " + ", ".join(missing[:12])
            note += " ..." if len(missing) > 12 else ""
        out.append(_target("10× more data costs ≤ 12× more time", measured, ok, "12×", note))
    else:
        out.append(_target("10× more data costs ≤ 12× more time", "needs two scales", None, "12×"))
    # DuckDB reference, at the largest scale each aggregate was compared at
    refs = doc.get("reference") or []
    order = _scale_order(scales)
    for agg in _reference.AGGREGATES:
        rows = [r for r in refs if r["aggregate"] == agg and r.get("ratio")]
        if not rows:
            out.append(_target(f"{agg}: ours within 3× of DuckDB", "not measured", None, "3×"))
            continue
        r = max(rows, key=lambda r: order.index(r["scale"]) if r["scale"] in order else -1)
        out.append(
            _target(
                f"{agg}: ours within 3× of DuckDB",
                f"{r['ratio']:.1f}× at {r['scale']} ({_secs(r['ours'])} vs {_secs(r['duckdb'])})",
                r["ratio"] <= 3,
                "3×",
            )
        )
    sp = [r for r in (doc.get("forecast_speedup") or []) if r.get("speedup")]
    if sp:
        r = sp[-1]
        out.append(
            _target(
                "Forecasting 100 segments in parallel ≥ 1.6× faster than serially",
                f"{r['speedup']:.2f}× ({_secs(r['serial'])} → {_secs(r['parallel'])}, "
                f"{doc['machine'].get('cores')} cores)",
                r["speedup"] >= 1.6,
                "1.6×",
            )
        )
    else:
        out.append(
            _target(
                "Forecasting 100 segments in parallel ≥ 1.6× faster than serially",
                "not measured",
                None,
                "1.6×",
            )
        )
    e = idx.get(("report_suite", "demo"))
    t = _median(e)
    out.append(
        _target(
            "Full report suite on the default demo ≤ 60 s",
            describe(e) if e else "not measured",
            None if e is None else bool(t and t <= 60),
            "60 s",
        )
    )
    e = idx.get(("dashboards", "demo"))
    if e and e.get("status") == "ok":
        firsts = {k: v["median"] for k, v in e["steps"].items()}
        slow = [k for k, v in firsts.items() if v > 3]
        measured = ", ".join(f"{k} {_secs(v)}" for k, v in firsts.items())
        out.append(_target("Each dashboard's first render ≤ 3 s", measured, not slow, "3 s"))
    else:
        out.append(
            _target(
                "Each dashboard's first render ≤ 3 s",
                describe(e) if e else "not measured",
                None if e is None else False,
                "3 s",
            )
        )
    return out


# --------------------------------------------------------------------------- README


def _cell(e: dict | None, repeats: bool = True) -> str:
    if e is None:
        return ""
    st = e.get("status")
    if st == "skipped":
        return f"skipped ({e.get('error')})"
    if st == "timeout":
        return "timeout (" + str(e.get("error", "")).removeprefix("timeout: ") + ")"
    if st != "ok":
        return f"**{st}**"
    s = e["seconds"]
    text = _secs(s["median"])
    if repeats and e.get("ok_repeats", 1) > 1:
        text += f" ({_secs(s['min']).removesuffix(' s')}–{_secs(s['max'])})"
    return text


def _mem(e: dict | None) -> str:
    if not e or e.get("status") != "ok" or not e.get("peak_rss_mb"):
        return ""
    return f"{e['peak_rss_mb']['max']:,.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _versions(machine: dict) -> str:
    pk = machine.get("packages") or {}
    return ", ".join(f"{k} {v}" for k, v in pk.items() if v)


def render(doc: dict) -> str:
    """The generated Markdown between the markers."""
    results, scales = doc["results"], doc["scales"]
    idx = _index(results)
    order = _scale_order(scales)
    mach = doc.get("machine", {})
    git = doc.get("git") or {}
    commit = (git.get("commit") or "unknown")[:10]
    if git.get("dirty"):
        commit += " + uncommitted changes"
    reps = doc.get("options", {}).get("repeat")
    L = [
        "_Generated by `benchmarks/run.py` from `benchmarks/results.json`; everything between "
        "the `results` markers is rewritten on each run._",
        "",
        f"- **Run:** {doc.get('date')} · commit `{commit}` · "
        f"median of {reps} run(s), each in a fresh process",
        f"- **Command:** `{doc.get('command')}`",
        f"- **Machine:** {mach.get('cpu_model')}, {mach.get('cores')} cores, "
        f"{mach.get('ram_gb')} GB RAM, {mach.get('os')}, Python {mach.get('python')}",
        f"- **Packages:** {_versions(mach)}",
    ]
    if mach.get("load_average"):
        la = ", ".join(f"{x:.2f}" for x in mach["load_average"])
        L.append(f"- **Load average when the run started:** {la} (1, 5, 15 min)")
    for h in doc.get("history", []):
        L.append(
            f"- Some rows come from an earlier run: {h.get('date')} · commit "
            f"`{(h.get('commit') or '')[:10]}` · `{h.get('command')}`"
        )
    L += ["", "**Data** (`generate_demo(n_opportunities=N, seed=42)`, as of 2025-12-31):", ""]
    rows = []
    for s in order:
        r = scales[s].get("rows") or {}
        rows.append(
            [
                s,
                f"{scales[s].get('n_opportunities', 0):,}",
                f"{r.get('stage_history', 0):,}" if r else "",
                f"{r.get('leads', 0):,}" if r else "",
                f"{r.get('accounts', 0):,}" if r else "",
            ]
        )
    L += _table(["scale", "opportunities", "stage events", "leads", "accounts"], rows)

    # targets
    L += ["", "### Targets (issue 8)", ""]
    L += _table(
        ["target", "measured", "result"],
        [
            [t["target"], t["measured"] + (f" — {t['note']}" if t.get("note") else ""), t["status"]]
            for t in doc.get("targets", [])
        ],
    )

    # time per task x scale
    data_tasks = [t for t in _tasks.TASKS if any((t, s) in idx for s in order)]
    grow = {(g["task"], g["from"], g["to"]): g for g in doc.get("growth", [])}
    pairs = list(zip(order, order[1:], strict=False))
    L += [
        "",
        "### Time per task (median, min–max over the runs)",
        "",
        "Growth = time ratio from one scale to the next, per 10× more data.",
        "",
    ]
    header = ["task", *order, *(f"growth {a}→{b}" for a, b in pairs)]
    rows = []
    for t in data_tasks:
        row = [f"`{t}`", *(_cell(idx.get((t, s))) for s in order)]
        for a, b in pairs:
            g = grow.get((t, a, b))
            if g and g.get("per_10x") is not None:
                row.append(f"{g['per_10x']:.1f}×")
            elif g and g.get("per_10x_at_least") is not None:
                row.append(f"≥ {g['per_10x_at_least']:.1f}×")
            else:
                row.append("")
        rows.append(row)
    L += _table(header, rows)
    L += ["", "### Peak memory per task (MB, largest over the runs)", ""]
    L += _table(
        ["task", *order], [[f"`{t}`", *(_mem(idx.get((t, s))) for s in order)] for t in data_tasks]
    )

    # reference
    refs = doc.get("reference") or []
    if refs:
        L += ["", "### DuckDB reference (the same aggregate as SQL, same data, same run)", ""]
        rows = []
        for r in refs:
            agree = {True: "yes", False: "**NO**", None: "–"}[r.get("agree")]
            rows.append(
                [
                    r["aggregate"],
                    r["scale"],
                    _secs(r.get("ours")),
                    _secs(r.get("duckdb")),
                    _secs(r.get("duckdb_parquet")),
                    f"{r['ratio']:.1f}×" if r.get("ratio") else "–",
                    agree,
                ]
            )
        L += _table(
            [
                "aggregate",
                "scale",
                "ours",
                "DuckDB (in-memory frames)",
                "DuckDB (reading Parquet)",
                "ours ÷ DuckDB",
                "results agree",
            ],
            rows,
        )
        L += [""] + [f"- {r['aggregate']} @ {r['scale']}: {r['detail']}" for r in refs]

    sp = doc.get("forecast_speedup") or []
    if sp:
        L += ["", "### Forecasting 100 segments", ""]
        L += _table(
            ["scale", "serial (n_jobs=1)", "parallel (n_jobs=-1)", "speed-up"],
            [
                [
                    r["scale"],
                    _secs(r.get("serial")),
                    _secs(r.get("parallel")),
                    f"{r['speedup']:.2f}×" if r.get("speedup") else "–",
                ]
                for r in sp
            ],
        )
    demo = [t for t in _tasks.TASKS if (t, "demo") in idx]
    if demo:
        L += ["", "### On the default demo data (`make run`'s data)", ""]
        L += _table(
            ["task", "time", "peak memory (MB)"],
            [[f"`{t}`", _cell(idx[(t, "demo")]), _mem(idx[(t, "demo")])] for t in demo],
        )
    e = idx.get(("dashboards", "demo"))
    if e and e.get("status") == "ok":
        L += ["", "### Dashboards (Voila, preheated kernels, default demo data)", ""]
        rows = []
        for nb, st in e["steps"].items():
            rr = (e.get("rerender") or {}).get(nb) or {}
            rows.append([nb, _secs(st["median"]), _secs(rr.get("median"))])
        L += _table(["dashboard", "first render", "re-render after a filter change"], rows)

    # per-function breakdown
    broken = [t for t in data_tasks if any((idx.get((t, s)) or {}).get("steps") for s in order)]
    broken = [t for t in broken if t != "dashboards"]
    if broken:
        L += ["", "### Per-function breakdown (median seconds)", ""]
        for t in broken:
            labels: list[str] = []
            for s in order:
                for k in (idx.get((t, s)) or {}).get("steps") or {}:
                    if k not in labels:
                        labels.append(k)
            L += ["<details>", f"<summary><code>{t}</code></summary>", ""]
            rows = []
            for k in labels:
                cells = []
                for s in order:
                    st = ((idx.get((t, s)) or {}).get("steps") or {}).get(k)
                    cells.append(_secs(st["median"]) if st else "")
                rows.append([f"`{k}`", *cells])
            L += _table(["function", *order], rows)
            notes = {
                k: v for s in order for k, v in ((idx.get((t, s)) or {}).get("notes") or {}).items()
            }
            L += [f"- `{k}`: {v}" for k, v in notes.items()]
            L += ["", "</details>", ""]
    errors = [e for e in results if e.get("status") in ("error", "timeout")]
    if errors:
        L += ["", "### Errors and timeouts", ""]
        L += [f"- `{e['task']}` @ {e['scale']}: {str(e.get('error'))[:300]}" for e in errors]
    return "\n".join(L).rstrip() + "\n"


_SKELETON = """# Benchmarks

{start}
{end}
"""


def write_readme(path: Path, doc: dict) -> None:
    """Rewrite the generated section of ``path`` (between the markers), keep the rest."""
    path = Path(path)
    text = (
        path.read_text(encoding="utf-8")
        if path.exists()
        else _SKELETON.format(start=START, end=END)
    )
    block = f"{START}\n{render(doc)}{END}"
    if START in text and END in text and text.index(START) < text.index(END):
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
