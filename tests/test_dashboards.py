"""Dashboards: only published notebooks are served, with the repo's Voila settings, and
each dashboard renders and re-renders on a filter change in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
import yaml

from pipeline_lib import config, dashboards

ARTIFACTS = config.PROJECT_ROOT / "build" / "test-artifacts" / "dashboards"


def _notebook(path: Path, params_source: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cell = nbformat.v4.new_code_cell(params_source)
    cell.metadata = {"tags": ["parameters"]}
    nb.cells = [nbformat.v4.new_markdown_cell("# T"), cell]
    nbformat.write(nb, path)
    return path


def test_only_numbered_notebooks_are_published(tmp_path):
    for name in ("01_b.ipynb", "00_a.ipynb", "scratch.ipynb", "Untitled.ipynb"):
        _notebook(tmp_path / name, "x: int = 1  # a value\n")
    assert [p.name for p in dashboards.published_notebooks(tmp_path)] == [
        "00_a.ipynb",
        "01_b.ipynb",
    ]
    # the real notebooks folder: every notebook there is published
    real = dashboards.published_notebooks()
    assert real and all(p.name[:2].isdigit() for p in real)


def test_staging_copies_published_notebooks_with_parameters(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    _notebook(src / "00_a.ipynb", 'source_config: str = "demo.yaml"  # config\nn: int = 1  # n\n')
    _notebook(src / "scratch.ipynb", "y = 2\n")
    params = tmp_path / "p.yaml"
    params.write_text(
        yaml.safe_dump({"source_config": "mine.yaml", "notebooks": {"00_a": {"n": 5}}})
    )
    dest = tmp_path / "served"
    (dest / "old.ipynb").parent.mkdir()
    (dest / "old.ipynb").write_text("{}")
    staged = dashboards.stage_dashboards(dest, notebooks_dir=src, params_path=params)
    assert [p.name for p in staged] == ["00_a.ipynb"]
    assert sorted(p.name for p in dest.iterdir()) == ["00_a.ipynb"]  # old and scratch gone
    text = "".join(c.source for c in nbformat.read(dest / "00_a.ipynb", as_version=4).cells)
    assert 'source_config = "mine.yaml"' in text and "n = 5" in text
    # without a parameter file the copy is identical
    dashboards.stage_dashboards(dest, notebooks_dir=src)
    assert (dest / "00_a.ipynb").read_bytes() == (src / "00_a.ipynb").read_bytes()


def test_voila_settings_lock_the_server_down():
    settings = json.loads(dashboards.VOILA_CONFIG.read_text())
    voila = settings["VoilaConfiguration"]
    assert settings["Voila"]["ip"] == "127.0.0.1"
    assert voila["strip_sources"] is True
    assert voila["allow_template_override"] == "NO" and voila["allow_theme_override"] == "NO"
    assert voila["preheat_kernel"] is True and voila["default_pool_size"] >= 1
    assert settings["MappingKernelManager"]["cull_idle_timeout"] > 0
    argv = dashboards.voila_command("served", port=9999, extra=["--Foo.bar=1"])
    assert argv[1] == "-c" and "run_voila()" in argv[2] and argv[3] == "served"
    assert "--port=9999" in argv and argv[-1] == "--Foo.bar=1"
    assert dashboards.dashboard_env({})["PIPELINE_WORKBENCH_MODE"] == "dashboard"
    assert settings["KernelManager"]["transport"] == "ipc"  # no TCP port races


_FAKE_SERVER = """
import signal, sys, time
out = sys.argv[1]
def bye(signum, frame):
    open(out, "w").write(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
signal.signal(signal.SIGHUP, bye)
open(out + ".up", "w").close()
time.sleep(60)
"""

_SERVE = """
import sys
from pipeline_lib import dashboards
dashboards.stage_dashboards = lambda *a, **k: []
dashboards.voila_command = lambda *a, **k: [sys.executable, "-c", sys.argv[1], sys.argv[2]]
sys.exit(dashboards.serve())
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_stopping_the_dashboards_command_stops_its_server(tmp_path, signum):
    # a service manager or `kill` signals the command, not its process group: the
    # server (which shuts its kernels down on SIGTERM) must hear of it too
    out = tmp_path / "server-got"
    cmd = subprocess.Popen([sys.executable, "-c", _SERVE, _FAKE_SERVER, str(out)])
    deadline = time.monotonic() + 30
    while not Path(f"{out}.up").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    cmd.send_signal(signum)
    assert cmd.wait(30) == 0
    assert out.read_text() == signal.Signals(signum).name


# --------------------------------------------------------------------------- browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=120) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def server(small_demo, tmp_path_factory):
    """Voila on a free port, serving the published notebooks (plus an unpublished one left
    in the source folder) with the CI parameters pointed at the small demo."""
    if not dashboards.CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: .ci/run must apt-get install chromium")
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    tmp = tmp_path_factory.mktemp("dash")
    nbs = tmp / "notebooks"
    nbs.mkdir()
    for p in dashboards.published_notebooks():
        shutil.copy(p, nbs / p.name)
    _notebook(nbs / "scratch.ipynb", "secret = 42\n")
    params = yaml.safe_load((config.PARAMS_DIR / "ci.yaml").read_text())
    params["source_config"] = str(small_demo)
    params_path = tmp / "params.yaml"
    params_path.write_text(yaml.safe_dump(params))
    served = tmp / "served"
    dashboards.stage_dashboards(served, notebooks_dir=nbs, params_path=params_path)
    port = _free_port()
    log = (tmp / "voila.log").open("w")
    proc = subprocess.Popen(
        dashboards.voila_command(served, port=port),
        env=dashboards.dashboard_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if _get(base + "/")[0] == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"Voila did not start: {(tmp / 'voila.log').read_text()[-2000:]}")
    yield base
    dashboards.stop_server(proc)
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(dashboards.CHROMIUM), args=list(dashboards.CHROMIUM_FLAGS)
        )
        yield b
        b.close()


_SECTIONS_JS = (
    "() => Array.from(document.querySelectorAll('.pw-section')).map(e => e.innerHTML).join('|')"
)


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("stem", [p.stem for p in dashboards.published_notebooks()])
def test_dashboard_renders_and_filters(server, browser, stem):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server}/voila/render/{stem}.ipynb", timeout=180_000)
        page.wait_for_selector(".pw-filter-bar", timeout=180_000)
        page.wait_for_selector(".pw-section", timeout=60_000)
        html = page.content()
        assert "from pipeline_lib import" not in html  # sources stripped
        assert "cdn.jsdelivr.net" not in html  # nothing fetched from the internet
        assert "Traceback" not in page.inner_text("body")
        before = page.evaluate(_SECTIONS_JS)
        status = page.inner_text(".pw-filter-status")
        dropdown = page.locator(".pw-filter-bar select").first
        assert dropdown.count() == 1, "the filter bar offers no segment dropdown"
        dropdown.select_option(index=1)
        page.wait_for_function(
            "(s) => document.querySelector('.pw-filter-status').innerText !== s",
            arg=status,
            timeout=60_000,
        )
        page.wait_for_function(f"(b) => ({_SECTIONS_JS})() !== b", arg=before, timeout=120_000)
        page.wait_for_function(  # every section re-rendered
            "() => !document.querySelector('.pw-filter-status').innerText.includes('updating')",
            timeout=180_000,
        )
        assert "Showing" in page.inner_text(".pw-filter-status")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        # Voila scrolls an inner panel, so grow the viewport to the content for the shot
        height = page.evaluate(
            "Math.max(...Array.from(document.querySelectorAll('*')).map(e => e.scrollHeight))"
        )
        page.set_viewport_size({"width": 1280, "height": max(900, min(int(height), 12000))})
        page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=True)
        assert not errors, errors
    finally:
        # leave the page as a visitor does: its unload beacon shuts the kernel down
        # (headless Chromium drops the beacon of a page closed outright)
        page.goto("about:blank")
        page.close()


@pytest.mark.browser
def test_unpublished_notebook_is_refused(server):
    status, body = _get(f"{server}/voila/render/scratch.ipynb")
    assert status == 404
    assert "secret" not in body


@pytest.mark.browser
def test_template_override_in_query_string_is_ignored(server):
    stem = dashboards.published_notebooks()[0].stem
    status, plain = _get(f"{server}/voila/render/{stem}.ipynb")
    status_override, overridden = _get(f"{server}/voila/render/{stem}.ipynb?template=classic")
    assert status == status_override == 200
    assert "voila/templates/classic" not in overridden
    assert ("voila/templates/lab" in plain) == ("voila/templates/lab" in overridden)
