"""One measurement, in a fresh process (started by ``benchmarks/run.py``; not for users).

``_child.py measure --task T --scale S --folder DIR --result FILE``: untimed set-up of
task T, then a marker file ``FILE.setup`` (the harness starts the task's timeout there),
then each step timed with ``perf_counter``; writes the result JSON to FILE.

``_child.py prepare --scale S --n N --folder DIR --result FILE [--pickle]``: generate the
data of one scale (and the Dataset pickle) unless current.

Peak memory is ``ru_maxrss`` after the measured work: of this process, or of the largest
subprocess it waited for (report kernels, Voila), whichever is larger.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _rss_mb(who) -> float:
    # Linux reports ru_maxrss in KiB
    return resource.getrusage(who).ru_maxrss / 1024.0


def _write(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(args) -> dict:
    import _tasks

    from pipeline_lib.errors import InsufficientDataError

    out: dict = {"task": args.task, "scale": args.scale, "status": "ok"}
    marker = Path(str(args.result) + ".setup")
    try:
        ctx = _tasks.Context(
            folder=Path(args.folder) if args.folder else None,
            scale=args.scale,
            as_of=args.as_of,
            project_root=HERE.parent,
        )
        t0 = time.perf_counter()
        steps, digest = _tasks.build(args.task, ctx)
        out["setup_seconds"] = time.perf_counter() - t0
        out["setup_rss_mb"] = _rss_mb(resource.RUSAGE_SELF)
        marker.write_text("ok")
        results: dict = {}
        timings: dict = {}
        notes: dict = {}
        for label, step in steps:
            t = time.perf_counter()
            try:
                results[label] = step(results)
            except InsufficientDataError as exc:  # the view would show a note instead
                results[label] = None
                notes[label] = f"InsufficientDataError: {exc}"
            timings[label] = time.perf_counter() - t
        out["peak_self_rss_mb"] = _rss_mb(resource.RUSAGE_SELF)
        out["steps"] = timings
        out["seconds"] = sum(timings.values())
        if notes:
            out["notes"] = notes
        if args.task == "dashboards":
            # one run of dashboard_render.py renders the five dashboards in turn: the
            # task's time is the slowest first render, the steps are the five
            found = results["dashboard_render.py"]
            out["steps"] = {nb: v["first"] for nb, v in found.items()}
            out["rerender"] = {nb: v["rerender"] for nb, v in found.items()}
            out["seconds"] = max(out["steps"].values())
        if digest is not None:
            out["digest"] = digest(results)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        out["status"] = "error"
        out["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        out["traceback"] = traceback.format_exc()[-4000:]
    finally:
        import _tasks

        _tasks.cleanup()
    out["peak_children_rss_mb"] = _rss_mb(resource.RUSAGE_CHILDREN)
    out["peak_rss_mb"] = max(
        out.get("peak_self_rss_mb", _rss_mb(resource.RUSAGE_SELF)), out["peak_children_rss_mb"]
    )
    return out


def prepare(args) -> dict:
    import _data

    t0 = time.perf_counter()
    try:
        meta = _data.prepare(Path(args.folder), args.n, need_pickle=args.pickle, log=_log)
        return {"status": "ok", "data": meta, "seconds": time.perf_counter() - t0}
    except Exception as exc:  # noqa: BLE001
        return {
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("measure", "prepare"))
    parser.add_argument("--task")
    parser.add_argument("--scale", required=True)
    parser.add_argument("--n", type=int)
    parser.add_argument("--folder")
    parser.add_argument("--as-of", default="2025-12-31")
    parser.add_argument("--pickle", action="store_true")
    parser.add_argument("--result", required=True)
    args = parser.parse_args()
    # stopped by the harness (timeout, Ctrl-C): unwind, so the set-up's clean-up (Voila)
    # runs
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    out = measure(args) if args.mode == "measure" else prepare(args)
    _write(Path(args.result), out)


if __name__ == "__main__":
    main()
