"""Benchmark harness of issue 8: time and memory of loading, every analysis, the DuckDB
reference, the 100-segment forecast, the report suite and the dashboards.

    make bench                                    # everything, 3 repeats, 10k/100k/1M
    .venv/bin/python benchmarks/run.py --scales 10k,100k --repeat 1 --tasks load,analyses
    .venv/bin/python benchmarks/run.py --render   # rewrite the README from results.json

Every measurement runs in a fresh child process (nothing shared between repeats): the
set-up (reading the pickled Dataset, starting Voila...) is untimed, the measured calls are
timed with ``perf_counter`` and peak memory is the child's ``ru_maxrss`` afterwards.
Writes the results as JSON (``--out``) and regenerates the generated part of
``benchmarks/README.md``. See the README for the tasks and the method.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _report  # noqa: E402
import _tasks  # noqa: E402

DEFAULT_SCALES = "10k,100k,1M"
SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- helpers


def parse_scale(text: str) -> int:
    """``"10k"`` -> 10000, ``"1M"`` -> 1000000, ``"2500"`` -> 2500."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise ValueError(f"--scales: {text!r} is not a size such as 10k, 100k or 1M")
    n = float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2).lower()]
    if n < 100 or n != int(n):
        raise ValueError(f"--scales: {text!r} must be a whole number of at least 100")
    return int(n)


def _log(msg: str = "", end: str = "\n") -> None:
    print(msg, file=sys.stderr, end=end, flush=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions(python: str) -> dict:
    code = (
        "import json, importlib.metadata as m\n"
        "out = {}\n"
        "for p in ('pandas', 'numpy', 'pyarrow', 'duckdb', 'scikit-learn', 'scipy', 'prophet',"
        " 'joblib', 'papermill', 'voila', 'playwright'):\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: out[p] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        res = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(res.stdout)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return {}


def _git() -> dict:
    def run(*args):
        try:
            res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
            return res.stdout.strip() if res.returncode == 0 else None
        except OSError:
            return None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }


def machine_info(python: str) -> dict:
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": _mem_total_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": _versions(python),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --------------------------------------------------------------------------- children


class Runner:
    """Starts child processes with a set-up cap and a timeout on the measured part."""

    def __init__(self, *, python: str, data_dir: Path, timeout: float, setup_timeout: float):
        self.python = python
        self.data_dir = data_dir
        self.timeout = timeout
        self.setup_timeout = setup_timeout
        self.logs = data_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def _run(self, argv: list[str], name: str, *, marker: bool) -> dict:
        result = self.logs / f"{name}.json"
        setup = Path(str(result) + ".setup")
        log_path = self.logs / f"{name}.log"
        for p in (result, setup):
            p.unlink(missing_ok=True)
        cmd = [self.python, str(HERE / "_child.py"), *argv, "--result", str(result)]
        with log_path.open("w") as log:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            started = time.monotonic()
            measured_from = None if marker else started
            status = None
            try:
                while proc.poll() is None:
                    now = time.monotonic()
                    if measured_from is None and setup.exists():
                        measured_from = now
                    if measured_from is None and now - started > self.setup_timeout:
                        status = f"timeout: set-up longer than {self.setup_timeout:.0f} s"
                    elif measured_from is not None and now - measured_from > self.timeout:
                        status = f"timeout: longer than {self.timeout:.0f} s"
                    if status:
                        self._kill(proc)
                        break
                    time.sleep(0.05)
            except BaseException:  # Ctrl-C, SIGTERM: the child runs in its own session
                self._kill(proc)
                raise
        setup.unlink(missing_ok=True)
        if status:
            return {"status": "timeout", "error": status, "log": str(log_path)}
        out = _read_json(result)
        if out is None:
            tail = log_path.read_text(errors="replace")[-1500:]
            return {
                "status": "error",
                "error": f"the child exited {proc.returncode} without a result: {tail}",
                "log": str(log_path),
            }
        out["log"] = str(log_path)
        return out

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        # the child leads its own process group (start_new_session): end it and its
        # subprocesses (kernels, Voila), politely first
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def prepare(self, scale: str, n: int, *, pickle: bool) -> dict:
        folder = self.data_dir / scale
        argv = ["prepare", "--scale", scale, "--n", str(n), "--folder", str(folder)]
        if pickle:
            argv.append("--pickle")
        saved = self.timeout
        self.timeout = max(self.setup_timeout, self.timeout)
        try:
            return self._run(argv, f"prepare-{scale}", marker=False)
        finally:
            self.timeout = saved

    def measure(self, task: str, scale: str, repeat: int, *, as_of: str) -> dict:
        folder = self.data_dir / scale if scale != "demo" else None
        argv = ["measure", "--task", task, "--scale", scale, "--as-of", as_of]
        if folder is not None:
            argv += ["--folder", str(folder)]
        return self._run(argv, f"{task}@{scale}#{repeat}", marker=True)


# --------------------------------------------------------------------------- aggregation


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(task: str, scale: str, runs: list[dict], skipped: str | None = None) -> dict:
    info = _tasks.TASKS[task]
    entry = {
        "task": task,
        "group": info.group,
        "scale": scale,
        "what": info.what,
        "repeats": len(runs),
    }
    if skipped:
        entry.update(status="skipped", error=skipped, repeats=0)
        return entry
    ok = [r for r in runs if r.get("status") == "ok"]
    bad = [r for r in runs if r.get("status") != "ok"]
    entry["status"] = "ok" if not bad else bad[0]["status"]
    if bad:
        entry["error"] = bad[0].get("error")
        entry["log"] = bad[0].get("log")
    entry["ok_repeats"] = len(ok)
    entry["seconds"] = _stats([r["seconds"] for r in ok])
    entry["peak_rss_mb"] = _stats([r["peak_rss_mb"] for r in ok])
    entry["setup_rss_mb"] = _stats([r["setup_rss_mb"] for r in ok if "setup_rss_mb" in r])
    entry["setup_seconds"] = _stats([r["setup_seconds"] for r in ok if "setup_seconds" in r])
    labels: list[str] = []
    for r in ok:
        labels += [k for k in r.get("steps", {}) if k not in labels]
    if ok and (len(labels) > 1 or task == "dashboards"):
        entry["steps"] = {
            k: _stats([r["steps"][k] for r in ok if k in r.get("steps", {})]) for k in labels
        }
    if task == "dashboards" and ok:
        entry["rerender"] = {
            k: _stats([r["rerender"][k] for r in ok if r.get("rerender", {}).get(k) is not None])
            for k in labels
        }
    notes = {k: v for r in ok for k, v in r.get("notes", {}).items()}
    if notes:
        entry["notes"] = notes
    if ok and "digest" in ok[0]:
        entry["digest"] = ok[0]["digest"]
    entry["runs"] = [
        {
            k: r.get(k)
            for k in ("status", "seconds", "peak_rss_mb", "setup_seconds", "setup_rss_mb", "error")
            if r.get(k) is not None
        }
        for r in runs
    ]
    return entry


# --------------------------------------------------------------------------- main


def plan(tasks: list[str], scales: list[str]) -> list[tuple[str, str]]:
    """(task, scale) pairs in running order: data tasks scale by scale, then the rest."""
    pairs = []
    for scale in scales:
        for t in tasks:
            info = _tasks.TASKS[t]
            if info.scale == _tasks.DATA or (info.scale == _tasks.ONCE and scale == scales[0]):
                pairs.append((t, scale))
    pairs += [(t, "demo") for t in tasks if _tasks.TASKS[t].scale == _tasks.DEMO]
    return pairs


def _fmt_run(r: dict) -> str:
    if r.get("status") == "timeout":
        return str(r.get("error"))
    if r.get("status") != "ok":
        return f"{r.get('status')}: {str(r.get('error'))[:300]} (log: {r.get('log')})"
    return f"{r['seconds']:.2f} s, peak {r['peak_rss_mb']:,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py", description=__doc__.split("\n\n")[0].replace("\n", " ")
    )
    parser.add_argument(
        "--scales",
        default=DEFAULT_SCALES,
        help=f"opportunities per scale (default {DEFAULT_SCALES})",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    parser.add_argument(
        "--tasks",
        default="all",
        help="comma-separated tasks or groups (default all): "
        + ", ".join(_tasks.GROUPS)
        + "; tasks: "
        + ", ".join(_tasks.TASKS),
    )
    parser.add_argument("--out", default=str(HERE / "results.json"), help="results JSON")
    parser.add_argument(
        "--readme",
        default=str(HERE / "README.md"),
        help="README whose generated section is rewritten ('' to leave it alone)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900,
        help="seconds a measurement may take after its set-up (default 900)",
    )
    parser.add_argument(
        "--setup-timeout",
        type=float,
        default=1800,
        help="seconds a set-up (or generating one scale's data) may take (default 1800)",
    )
    parser.add_argument(
        "--data-dir", default=str(HERE / "data"), help="generated data (default benchmarks/data)"
    )
    parser.add_argument("--as-of", default="2025-12-31", help=argparse.SUPPRESS)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the results in --out of tasks/scales not measured in this run",
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the README from --out; measure nothing"
    )
    args = parser.parse_args(argv)
    if argv is None:  # as a program: SIGTERM (e.g. from make) stops the children too
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out_path = Path(args.out)
    readme = Path(args.readme) if args.readme else None

    if args.render:
        doc = _read_json(out_path)
        if doc is None:
            parser.error(f"--render: cannot read {out_path}")
        _report.summarise_doc(doc)  # with today's definitions of the summaries
        if readme is not None:
            _report.write_readme(readme, doc)
            _log(f"rewrote {readme}")
        return 0

    try:
        tasks = _tasks.select(args.tasks)
        names = [s.strip() for s in args.scales.split(",") if s.strip()]
        sizes = {s: parse_scale(s) for s in names}
    except ValueError as exc:
        parser.error(str(exc))
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    scales = sorted(sizes, key=sizes.get)
    python = sys.executable
    data_dir = Path(args.data_dir).resolve()
    runner = Runner(
        python=python, data_dir=data_dir, timeout=args.timeout, setup_timeout=args.setup_timeout
    )
    pairs = plan(tasks, scales)
    given = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/run.py", *given])
    started = datetime.now(UTC)
    _log(f"benchmark: {len(pairs)} measurement(s) x {args.repeat} repeat(s); data in {data_dir}")

    # data of each scale a task needs (generated once, reused while current)
    data_meta: dict = {}
    for scale in scales:
        needs = {_tasks.TASKS[t].needs for t, s in pairs if s == scale}
        if not needs & {"files", "dataset"}:
            continue
        _log(f"data {scale} ({sizes[scale]:,} opportunities) ... ", end="")
        t0 = time.monotonic()
        res = runner.prepare(scale, sizes[scale], pickle="dataset" in needs)
        if res.get("status") != "ok":
            _log(f"FAILED ({res.get('error')}); see {res.get('log')}")
            data_meta[scale] = {"error": res.get("error")}
            continue
        data_meta[scale] = {"n_opportunities": sizes[scale], "rows": res["data"]["rows"]}
        _log(f"ready ({time.monotonic() - t0:.0f} s)")

    entries: dict[tuple[str, str], dict] = {}
    timed_out: dict[str, str] = {}
    total = len(pairs) * args.repeat
    done = 0
    for task, scale in pairs:
        if scale in data_meta and "error" in data_meta[scale]:
            entries[(task, scale)] = summarise(task, scale, [], skipped="no data at this scale")
            done += args.repeat
            continue
        if task in timed_out:
            entries[(task, scale)] = summarise(
                task, scale, [], skipped=f"timed out at {timed_out[task]}"
            )
            done += args.repeat
            _log(f"[{done}/{total}] {task} @ {scale}: skipped (timed out at {timed_out[task]})")
            continue
        runs = []
        for r in range(1, args.repeat + 1):
            done += 1
            _log(f"[{done}/{total}] {task} @ {scale} run {r}/{args.repeat} ... ", end="")
            res = runner.measure(task, scale, r, as_of=args.as_of)
            runs.append(res)
            _log(_fmt_run(res))
            if res.get("status") != "ok":
                if res.get("status") == "timeout":
                    timed_out[task] = scale
                done += args.repeat - r
                break
        entries[(task, scale)] = summarise(task, scale, runs)

    doc = {
        "schema": SCHEMA_VERSION,
        "date": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "git": _git(),
        "machine": machine_info(python),
        "options": {
            "scales": scales,
            "repeat": args.repeat,
            "tasks": tasks,
            "timeout": args.timeout,
            "as_of": args.as_of,
        },
        "scales": {s: data_meta.get(s, {"n_opportunities": sizes[s]}) for s in scales},
        "results": list(entries.values()),
    }
    if args.merge:
        doc = _report.merge(_read_json(out_path), doc)
    _report.summarise_doc(doc)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    _log(f"wrote {out_path}")
    for ref in doc["reference"]:
        state = {True: "agree", False: "DO NOT AGREE", None: "not compared"}[ref.get("agree")]
        _log(f"reference {ref['aggregate']} @ {ref['scale']}: {state} ({ref.get('detail')})")
    if readme is not None:
        _report.write_readme(readme, doc)
        _log(f"rewrote the results section of {readme}")
    failed = [e for e in doc["results"] if e.get("status") == "error"]
    disagree = [r for r in doc["reference"] if r.get("agree") is False]
    return 1 if failed or disagree else 0


if __name__ == "__main__":
    raise SystemExit(main())
