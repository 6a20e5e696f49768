"""Time each dashboard's first render and its full re-render after a filter change.

Either let the script start the dashboards itself (default parameters, a free port; the
server is stopped at the end)::

    .venv/bin/python benchmarks/dashboard_render.py --serve --repeat 3 [--json out.json]

or start them first (``make dashboards``) and point the script at them::

    .venv/bin/python benchmarks/dashboard_render.py [--url http://127.0.0.1:8866] [--repeat 3]

It drives Debian's Chromium (``/usr/bin/chromium``) through Playwright. Before each first
render it waits until every preheated kernel has executed its notebook (the server's
``/voila/api/status``; a plain Voila without it gets ``--settle`` seconds instead), so a
first render is measured "with preheated kernels". First render is timed from navigation
until every section of the notebook is on the page (also recorded: the HTML received,
the page's load event, the kernel's websocket opened); the re-render from choosing the
second value of the first segment dropdown until the filter bar's status no longer says
it is updating. Each page is left the way a visitor leaves it (Voila's unload beacon
shuts its kernel down), so repeats do not pile up kernels.

Output: one line per dashboard and repeat (``<stem>: first render X s (...), full
re-render after a filter change Y s``), then ``median <stem>: ...`` lines; ``--json``
writes every measurement and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from pipeline_lib import config, dashboards

STATUS = "document.querySelector('.pw-filter-status')"


def _sections(nb: Path) -> int:
    cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
    return sum("".join(c["source"]).count("bar.show(") for c in cells)


def server_status(url: str) -> dict | None:
    """The server's ``/voila/api/status`` answer, or None when it has none."""
    try:
        with urllib.request.urlopen(url + dashboards.STATUS_PATH, timeout=30) as resp:
            return json.loads(resp.read())
    except (urllib.error.HTTPError, ValueError):
        return None


def wait_preheated(url: str, *, timeout: float = 600, settle: float = 30) -> float:
    """Wait until every preheated kernel has executed its notebook; returns the wait.

    A server without the status endpoint (plain Voila) gets ``settle`` seconds.
    """
    start = time.perf_counter()
    deadline = start + timeout
    while time.perf_counter() < deadline:
        status = server_status(url)
        if status is None:
            time.sleep(settle)
            break
        pools = (status.get("pools") or {}).values()
        if pools and all(p["pending"] == 0 and 0 < p["started"] == p["executed"] for p in pools):
            break
        time.sleep(0.5)
    else:
        raise TimeoutError(f"the preheated kernels of {url} were not ready in {timeout} s")
    return time.perf_counter() - start


def measure_once(browser, url: str, nb: Path, *, rerender: bool = True) -> dict:
    """One first render (and re-render) of one dashboard in a fresh page."""
    sections = _sections(nb)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    marks: dict = {}
    start = time.perf_counter()

    def mark(name):
        marks.setdefault(name, round(time.perf_counter() - start, 3))

    page.on("load", lambda *_: mark("load"))
    page.on("websocket", lambda *_: mark("websocket"))
    try:
        response = page.goto(f"{url}/voila/render/{nb.name}", timeout=180_000, wait_until="commit")
        if response is None or response.status != 200:
            raise RuntimeError(f"{nb.stem}: HTTP {response and response.status}")
        page.wait_for_load_state("domcontentloaded", timeout=180_000)
        mark("html")
        page.wait_for_function(
            f"() => document.querySelectorAll('.pw-section').length >= {sections}",
            timeout=180_000,
        )
        first = time.perf_counter() - start
        again = None
        if rerender:
            start = time.perf_counter()
            page.locator(".pw-filter-bar select").first.select_option(index=1)
            page.wait_for_function(f"() => {STATUS}.innerText.includes('updating')")
            page.wait_for_function(
                f"() => !{STATUS}.innerText.includes('updating')", timeout=180_000
            )
            again = time.perf_counter() - start
    finally:
        # leave the page as a visitor does: its unload beacon shuts the kernel down
        # (headless Chromium drops the beacon of a page closed outright)
        page.goto("about:blank")
        page.close()
    return {
        "notebook": nb.stem,
        "sections": sections,
        "first": round(first, 3),
        "rerender": None if again is None else round(again, 3),
        "phases": marks,
    }


def measure(
    url: str,
    *,
    repeat: int = 1,
    notebooks: list[str] | None = None,
    rerender: bool = True,
    settle: float = 30,
    log=print,
) -> dict:
    """Measure every dashboard ``repeat`` times; returns the runs and their medians."""
    nbs = [
        nb
        for nb in dashboards.published_notebooks()
        if notebooks is None or nb.stem in notebooks or nb.name in notebooks
    ]
    runs: list[dict] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(dashboards.CHROMIUM), args=list(dashboards.CHROMIUM_FLAGS)
        )
        try:
            for r in range(repeat):
                for nb in nbs:
                    waited = wait_preheated(url, settle=settle)
                    try:
                        run = measure_once(browser, url, nb, rerender=rerender)
                    except Exception as exc:  # noqa: BLE001 - recorded, the others go on
                        log(f"{nb.stem}: failed: {type(exc).__name__}: {exc}"[:300])
                        runs.append({"notebook": nb.stem, "repeat": r + 1, "error": str(exc)})
                        continue
                    run.update(repeat=r + 1, waited_for_preheat=round(waited, 1))
                    runs.append(run)
                    again = run["rerender"]
                    phases = ", ".join(f"{k} {v:.1f}" for k, v in run["phases"].items())
                    log(
                        f"{nb.stem}: first render {run['first']:.1f} s ({run['sections']} "
                        f"sections; {phases}), full re-render after a filter change "
                        + ("-" if again is None else f"{again:.1f}")
                        + " s"
                    )
        finally:
            browser.close()
    medians = {}
    for nb in nbs:
        mine = [r for r in runs if r["notebook"] == nb.stem and "error" not in r]
        if not mine:
            medians[nb.stem] = {"first": None, "rerender": None, "runs": 0}
            log(f"median {nb.stem}: no successful run")
            continue
        again = [r["rerender"] for r in mine if r["rerender"] is not None]
        medians[nb.stem] = {
            "first": round(statistics.median(r["first"] for r in mine), 3),
            "rerender": round(statistics.median(again), 3) if again else None,
            "runs": len(mine),
        }
        rr = medians[nb.stem]["rerender"]
        log(
            f"median {nb.stem}: first render {medians[nb.stem]['first']:.1f} s, "
            f"re-render {'-' if rr is None else f'{rr:.1f}'} s ({len(mine)} runs)"
        )
    return {"url": url, "repeat": repeat, "runs": runs, "medians": medians}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """The dashboards on a free port with the given parameter file (context manager)."""

    def __init__(self, params: str | Path = config.DEFAULT_PARAMS, extra=()):
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-dash-"))
        dashboards.stage_dashboards(self.tmp / "served", params_path=params)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (self.tmp / "voila.log").open("w")
        self.proc = subprocess.Popen(
            dashboards.voila_command(self.tmp / "served", port=self.port, extra=list(extra)),
            env=dashboards.dashboard_env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )

    def __enter__(self):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if server_status(self.url) is not None:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"the dashboards did not start; see {self.tmp / 'voila.log'}")

    def __exit__(self, *exc):
        dashboards.stop_server(self.proc)
        self.log.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8866")
    parser.add_argument("--repeat", type=int, default=1, help="runs per dashboard (default 1)")
    parser.add_argument("--notebook", action="append", help="only this dashboard (repeatable)")
    parser.add_argument("--no-rerender", action="store_true", help="first renders only")
    parser.add_argument("--json", help="write the measurements here")
    parser.add_argument(
        "--settle", type=float, default=30, help="wait (s) when the server has no status"
    )
    parser.add_argument(
        "--serve", action="store_true", help="start the dashboards on a free port for the run"
    )
    parser.add_argument("--params", default=str(config.DEFAULT_PARAMS), help="with --serve")
    parser.add_argument(
        "--voila-arg", action="append", default=[], help="extra Voila option (with --serve)"
    )
    args = parser.parse_args(argv)

    def run(url):
        return measure(
            url,
            repeat=args.repeat,
            notebooks=args.notebook,
            rerender=not args.no_rerender,
            settle=args.settle,
            log=lambda line: print(line, flush=True),
        )

    if args.serve:
        with Served(args.params, args.voila_arg) as served:
            result = run(served.url)
    else:
        result = run(args.url)
    result.update(
        cpu_count=os.cpu_count(),
        loadavg_at_end=os.getloadavg(),
        voila_args=args.voila_arg,
        python=sys.version.split()[0],
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
