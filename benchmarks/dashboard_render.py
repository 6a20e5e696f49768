"""Time each dashboard's first render and its full re-render after a filter change.

Start the dashboards first (``make dashboards``, or ``python -m pipeline_lib dashboards
--port 8866``), wait for the kernel pools to fill (the server log says "Kernel pool of
... is filled"), then run::

    .venv/bin/python benchmarks/dashboard_render.py [--url http://127.0.0.1:8866]

It drives Debian's Chromium (``/usr/bin/chromium``) through Playwright. First render is
timed from navigation until every section of the notebook is on the page; the re-render
from choosing the second value of the first segment dropdown until the filter bar's
status no longer says it is updating. One measurement per dashboard: a figure to watch,
not a benchmark with repeats (issue 8 adds those).
"""

from __future__ import annotations

import argparse
import json
import time

from playwright.sync_api import sync_playwright

from pipeline_lib import dashboards

STATUS = "document.querySelector('.pw-filter-status')"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8866")
    args = parser.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(dashboards.CHROMIUM), args=list(dashboards.CHROMIUM_FLAGS)
        )
        for nb in dashboards.published_notebooks():
            cells = json.loads(nb.read_text(encoding="utf-8"))["cells"]
            sections = sum("".join(c["source"]).count("bar.show(") for c in cells)
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            start = time.perf_counter()
            page.goto(f"{args.url}/voila/render/{nb.name}", timeout=180_000)
            page.wait_for_function(
                f"() => document.querySelectorAll('.pw-section').length >= {sections}",
                timeout=180_000,
            )
            first = time.perf_counter() - start
            start = time.perf_counter()
            page.locator(".pw-filter-bar select").first.select_option(index=1)
            page.wait_for_function(f"() => {STATUS}.innerText.includes('updating')")
            page.wait_for_function(
                f"() => !{STATUS}.innerText.includes('updating')", timeout=180_000
            )
            again = time.perf_counter() - start
            print(
                f"{nb.stem}: first render {first:.1f} s ({sections} sections), "
                f"full re-render after a filter change {again:.1f} s",
                flush=True,
            )
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
