"""Serve the published notebooks as Voila dashboards, bounded in kernels and in time.

Voila serving a folder renders any notebook in it by URL, so the dashboards are served
from a staging folder that holds only the published notebooks (``NN_name.ipynb`` in
``notebooks/``), each with the parameters of a parameter file injected the way the
report runner does it. The server's settings live in ``notebooks/voila.json``: bound to
localhost, sources stripped, template and theme overrides refused, extensions that need
the internet left out, and the limits below. The pages fetch nothing from the internet:
the Font Awesome stylesheet Voila's template links from a CDN (its own bundle carries
the same) is dropped, so an offline server does not wait for it before showing widgets.
Kernels talk to the server over Unix sockets (``KernelManager.transport``: ``ipc``), not
TCP ports of localhost that another process starting a kernel at the same moment could
take.

Every open dashboard page holds one kernel (a Python process with the data loaded:
0.25-0.45 GB each on the default demo data, measured as PSS; it grows with the data).
Voila alone starts a kernel for every request and keeps it while the page is open, with
no upper bound (voila-dashboards/voila#617). The server is therefore started through
:class:`WorkbenchVoila` (see :func:`voila_command`), a Voila with these limits:

``WorkbenchKernelManager.max_kernels`` (default 20)
    The most kernels the server runs at once, preheated ones included. A request for a
    dashboard when no preheated kernel of that dashboard is ready and the server is at
    the limit gets an HTTP 503 page, "The dashboards are busy", with ``Retry-After`` and
    an automatic retry after 30 s; nothing waits in a queue. 20 kernels of the default
    demo data take 5-9 GB (of the 24 GB of the reference machine), and on its 2 cores
    more than 15 concurrently *active* dashboards would make every filter change slow
    anyway. Size it to the RAM for larger data (about free RAM / kernel size: see
    ``ps`` or the status below). ``0`` removes the limit.
``VoilaConfiguration.default_pool_size`` (1)
    Preheated kernels per dashboard: started with the server, they execute the whole
    notebook ahead, so the first visitor of a dashboard gets it rendered at once. A
    kernel taken from the pool is replaced in the background; when the server is at
    ``max_kernels`` the replacement waits until a session ends. Preheated kernels are
    never culled.
``MappingKernelManager.cull_idle_timeout`` (900 s), ``cull_interval`` (60 s)
    A session's kernel is shut down when its page is closed, left or reloaded (the page
    sends a shutdown beacon; the server sets the ``_xsrf`` cookie the beacon needs, which
    plain Voila 0.5 does not, voila-dashboards/voila#1458), and otherwise after 15
    minutes without activity, even if a tab is still open (``cull_connected``) or a
    computation hangs (``cull_busy``): a page left open overnight does not hold a
    kernel. Touching a filter counts as activity; a page whose kernel was culled needs a
    reload.
``VoilaExecutor.timeout`` (120 s) with ``interrupt_on_timeout``
    A notebook cell that runs longer while a dashboard renders is interrupted and the
    page ends with a note ("The dashboard stopped here ...") instead of hanging; kernel
    start-up is bounded by ``VoilaExecutor.startup_timeout`` (60 s). A whole dashboard
    notebook takes 8-20 s on the default demo data; raise the limit for data large
    enough that loading alone takes minutes (preheated kernels run under it too).

Change any of these in ``notebooks/voila.json``, or for one server on the command line of
``python -m pipeline_lib.dashboards --WorkbenchKernelManager.max_kernels=30`` (or
``serve(extra=[...])``). ``GET /voila/api/status`` answers the kernel counts as JSON
(running, limit, peak, refused, preheated per dashboard; no kernel ids).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import nbformat

from . import config
from .errors import ReportError

__all__ = [
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "VOILA_CONFIG",
    "published_notebooks",
    "stage_dashboards",
    "voila_command",
    "serve",
    "stop_server",
    "server_options",
    "main",
    "run_voila",
    "WorkbenchKernelManager",  # noqa: F822 - built on first access (__getattr__)
    "WorkbenchVoila",  # noqa: F822
]

#: The Voila settings file kept in the repository.
VOILA_CONFIG = config.NOTEBOOKS_DIR / "voila.json"
#: Debian's Chromium and the flags that keep it headless and off the network; the browser
#: tests and ``benchmarks/dashboard_render.py`` drive it through Playwright with these.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Where :func:`stage_dashboards` puts the served copies by default.
STAGING_DIR = config.PROJECT_ROOT / "build" / "dashboards"
#: Seconds a visitor turned away when the server is full is asked to wait.
RETRY_AFTER = 30
#: Where the server answers its kernel counts (JSON).
STATUS_PATH = "/voila/api/status"


def published_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The published notebooks: ``NN_name.ipynb`` directly in ``notebooks_dir``, sorted.

    Scratch notebooks (any other name, or in a subfolder) are neither run as reports
    nor served as dashboards.
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else config.NOTEBOOKS_DIR
    return sorted(
        p
        for p in folder.glob("[0-9][0-9]_*.ipynb")
        if p.is_file() and not p.stem.endswith("-checkpoint")
    )


def _parameters_for(nb_path: Path, params: dict) -> dict:
    from .report import notebook_parameters

    declared = notebook_parameters(nb_path)
    merged = {k: v for k, v in params.items() if k != "notebooks"}
    merged.update((params.get("notebooks") or {}).get(nb_path.stem, {}) or {})
    return {k: v for k, v in merged.items() if k in declared}


def stage_dashboards(
    dest: str | Path = STAGING_DIR,
    *,
    notebooks_dir: str | Path | None = None,
    params_path: str | Path | None = None,
) -> list[Path]:
    """Copy the published notebooks into ``dest`` (emptied first) for Voila to serve.

    Parameters
    ----------
    dest : path, default ``build/dashboards``
        The folder Voila serves; anything already in it is removed.
    notebooks_dir : path, optional
        Where the notebooks are (default ``notebooks/``).
    params_path : path, optional
        A parameter file as the runner takes it (top-level values for every notebook,
        ``notebooks: {stem: {...}}`` overrides); its values are injected into each copy
        with papermill, as a report run would. Without one the notebooks' defaults apply.

    Returns
    -------
    list of Path
        The staged notebooks.

    Raises
    ------
    ReportError
        When there is no published notebook or the parameter file is invalid.
    """
    sources = published_notebooks(notebooks_dir)
    if not sources:
        raise ReportError(f"no published notebooks (NN_name.ipynb) in {notebooks_dir}")
    params = {}
    if params_path is not None:
        from .report import load_params

        params = load_params(params_path)
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    staged = []
    for src in sources:
        target = dest / src.name
        values = _parameters_for(src, params) if params else {}
        if values:
            from papermill.iorw import load_notebook_node
            from papermill.parameterize import parameterize_notebook

            nb = load_notebook_node(str(src))  # as papermill reads it (every cell has tags)
            nb = parameterize_notebook(nb, values, report_mode=False)
            nbformat.write(nb, target)
        else:
            shutil.copyfile(src, target)
        staged.append(target)
    return staged


def voila_command(
    folder: str | Path,
    *,
    port: int | None = None,
    ip: str | None = None,
    config_file: str | Path = VOILA_CONFIG,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line that starts the bounded Voila on ``folder`` with the repo's settings.

    ``port`` and ``ip`` override the values of the settings file (localhost:8866);
    ``extra`` adds Voila options (e.g. ``["--WorkbenchKernelManager.max_kernels=8"]``).
    The server is :class:`WorkbenchVoila` (Voila with a kernel limit, a "busy" page and a
    status endpoint), started by :func:`run_voila`.
    """
    config_file = Path(config_file)
    if not config_file.is_file():
        raise ReportError(f"Voila settings file not found: {config_file}")
    argv = [
        sys.executable,
        "-c",
        "from pipeline_lib.dashboards import run_voila; run_voila()",
        str(folder),
        f"--Voila.config_file_paths={config_file.parent.resolve()}",
        "--no-browser",
    ]
    if port is not None:
        argv.append(f"--port={int(port)}")
    if ip is not None:
        argv.append(f"--Voila.ip={ip}")
    argv.extend(str(a) for a in extra)
    return argv


def dashboard_env(environ=None) -> dict:
    """The environment of the Voila server: kernels know they serve a dashboard."""
    env = dict(os.environ if environ is None else environ)
    env["PIPELINE_WORKBENCH_MODE"] = "dashboard"
    return env


def serve(
    *,
    params_path: str | Path | None = None,
    port: int | None = None,
    ip: str | None = None,
    staging_dir: str | Path = STAGING_DIR,
    extra: Sequence[str] = (),
) -> int:
    """Stage the published notebooks and serve them with Voila until stopped.

    ``extra`` passes options to the server (``--WorkbenchKernelManager.max_kernels=30``).

    Returns
    -------
    int
        Voila's exit status (0 after Ctrl-C).

    Raises
    ------
    ReportError
        When there is nothing to serve, the parameter file is invalid or the Voila
        settings file is missing.
    """
    staged = stage_dashboards(staging_dir, params_path=params_path)
    command = voila_command(staging_dir, port=port, ip=ip, extra=extra)
    names = ", ".join(p.stem for p in staged)
    print(f"serving {len(staged)} dashboard(s): {names}", file=sys.stderr)
    proc = subprocess.Popen(command, env=dashboard_env())
    try:
        with _forwarding(proc, (signal.SIGTERM, signal.SIGHUP)):
            return proc.wait()
    except KeyboardInterrupt:
        stop_server(proc)  # a terminal's Ctrl-C reached the server too; make sure
        return 0


@contextlib.contextmanager
def _forwarding(proc: subprocess.Popen, signals: Sequence[int]):
    """Pass ``signals`` received by this process on to the server while it runs.

    A service manager or ``kill`` stops this process, not its process group: without
    forwarding, the server and its kernels would be left running.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # handlers can only be set from the main thread
        return

    def forward(signum, frame):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_server(proc: subprocess.Popen, *, grace: float = 30.0) -> int:
    """Stop a server process: SIGTERM (Voila then shuts its kernels down), SIGKILL if it
    is still running ``grace`` seconds later. Returns its exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``dashboards`` (shared by this module and :mod:`pipeline_lib.cli`)."""
    parser.add_argument("--params", help="parameter file injected into every dashboard")
    parser.add_argument("--port", type=int, help="port (default from voila.json: 8866)")
    parser.add_argument(
        "--ip", help="address to bind (default 127.0.0.1; use 0.0.0.0 only behind a proxy)"
    )
    parser.add_argument(
        "--staging-dir", default=str(STAGING_DIR), help=f"served folder (default {STAGING_DIR})"
    )


_SERVER_OPTION = re.compile(r"^--[A-Za-z]\w*\.\w+=")


def server_options(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``args`` into server options (``--Class.trait=value``) and the rest."""
    options: list[str] = []
    rest: list[str] = []
    for arg in map(str, args):
        (options if _SERVER_OPTION.match(arg) else rest).append(arg)
    return options, rest


DESCRIPTION = (
    "Serve the published notebooks as Voila dashboards (settings in notebooks/voila.json: "
    "localhost only, no sources, no template override, preheated kernels, at most 20 "
    "kernels with a 'busy' page beyond, idle sessions culled after 15 minutes)."
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline_lib.dashboards``: stage the published notebooks and serve them.

    Options of the form ``--Class.trait=value`` go to the server, e.g.
    ``--WorkbenchKernelManager.max_kernels=30``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m pipeline_lib.dashboards",
        description=DESCRIPTION + " Options --Class.trait=value go to Voila.",
    )
    add_arguments(parser)
    args, rest = parser.parse_known_args(argv)
    rest, unknown = server_options(rest)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return serve(
            params_path=args.params,
            port=args.port,
            ip=args.ip,
            staging_dir=args.staging_dir,
            extra=rest,
        )
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# --------------------------------------------------------------------------- the server
# Voila, tornado and jupyter_server are imported only by the server process (the CLI and
# the report runner import this module too): the classes are built on first access.

_BUSY_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{retry}">
<title>Dashboards busy</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:4em auto;color:#333}}</style>
</head><body><main id="pw-busy">
<h1>The dashboards are busy</h1>
<p>This server already runs as many dashboard sessions as it allows ({limit}). This page
tries again in {retry} seconds.</p>
<p>Closing dashboard tabs you no longer use frees their sessions; an unused session ends
by itself after {idle} minutes.</p>
</main></body></html>
"""

_SERVER_CLASSES: dict = {}
_CDN_LINK = re.compile(r'<link[^>]*href="https://cdn\.jsdelivr\.net/[^"]*"[^>]*>\s*')


def _task_result(task):
    """The result of a finished pool task, or None (pending, cancelled or failed)."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _build_server_classes() -> dict:
    import asyncio
    import uuid

    from jupyter_server._tz import utcnow
    from jupyter_server.base.handlers import APIHandler
    from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
    from jupyter_server.utils import url_path_join
    from tornado import web
    from traitlets import Float, Integer
    from voila.app import Voila
    from voila.tornado.handler import TornadoVoilaHandler

    class DashboardsBusy(web.HTTPError):
        """Raised instead of starting a kernel beyond ``max_kernels``."""

        def __init__(self, limit: int):
            super().__init__(503, f"all {limit} dashboard kernels are in use")

    class WorkbenchKernelManager(AsyncMappingKernelManager):
        """Jupyter's kernel manager with an upper bound on running kernels.

        Voila wraps it into its preheated-pool manager (``VoilaKernelManager``), so the
        pool's own kernels go through :meth:`start_kernel` too: a kernel for a visitor
        beyond ``max_kernels`` is refused (:class:`DashboardsBusy`, an HTTP 503), a
        kernel refilling a pool waits until one ends. After every shutdown the pools are
        topped up to their size.
        """

        max_kernels = Integer(
            20,
            config=True,
            help="Most kernels running at once, preheated ones included (0: no limit).",
        )
        refill_poll_interval = Float(
            0.5, config=True, help="Seconds between checks of a pool refill waiting for room."
        )

        def __init__(self, **kwargs):
            self._starting: set[str] = set()
            self._closing = False
            self.peak_kernels = 0
            self.refused = 0
            super().__init__(**kwargs)

        # -- counting --------------------------------------------------------------
        def kernel_count(self) -> int:
            """Kernels running or starting."""
            return len(set(self._kernels) | self._starting)

        def at_capacity(self) -> bool:
            """True when no kernel may be started now."""
            return self.max_kernels > 0 and self.kernel_count() >= self.max_kernels

        def _pool_items(self) -> dict:
            return getattr(self, "_pools", {})

        def pool_ready(self, notebook: str) -> bool:
            """True when a preheated kernel of ``notebook`` is started and waiting."""
            pool = self._pool_items().get(notebook) or []
            return bool(pool) and _task_result(pool[0]) is not None

        def admit(self, notebook: str) -> bool:
            """Whether a visitor of ``notebook`` can be served now.

            Taking a waiting preheated kernel starts nothing at once (its replacement
            waits for room), so it is always allowed; anything else needs room for one
            more kernel.
            """
            return self.pool_ready(notebook) or not self.at_capacity()

        def status(self) -> dict:
            """Kernel counts: running, limit, peak, refusals, preheated per dashboard."""
            pools = {}
            pooled = 0
            for name, pool in sorted(self._pool_items().items()):
                started = [r for r in map(_task_result, pool) if r is not None]
                pooled += len(started)
                pools[name] = {
                    "started": len(started),
                    "executed": sum(1 for r in started if r["task"].done()),
                    "pending": len(pool) - len(started),
                }
            running = self.kernel_count()
            return {
                "kernels": running,
                "max_kernels": self.max_kernels,
                "peak_kernels": self.peak_kernels,
                "sessions": max(running - pooled, 0),
                "refused": self.refused,
                "pools": pools,
            }

        # -- starting and stopping -------------------------------------------------
        async def start_kernel(self, *, kernel_id=None, **kwargs):
            if kernel_id is not None and kernel_id in self:
                return await super().start_kernel(kernel_id=kernel_id, **kwargs)
            env = kwargs.get("env") or {}
            for_pool = str(env.get("VOILA_PREHEAT", "")) == "True"
            if for_pool:
                # a pool refill runs in its pool's task; it waits for room unless a
                # visitor has already taken that task out of the pool and waits for it
                task = asyncio.current_task()
                while self.at_capacity():
                    if self._closing:
                        raise RuntimeError("the dashboards server is shutting down")
                    if not any(task in pool for pool in self._pool_items().values()):
                        self.refused += 1
                        self._refill_pools()  # its pool is empty now: queue a refill
                        raise DashboardsBusy(self.max_kernels)
                    await asyncio.sleep(self.refill_poll_interval)
            elif self.at_capacity():
                self.refused += 1
                raise DashboardsBusy(self.max_kernels)
            kernel_id = kernel_id or str(uuid.uuid4())
            self._starting.add(kernel_id)
            self.peak_kernels = max(self.peak_kernels, self.kernel_count())
            try:
                return await super().start_kernel(kernel_id=kernel_id, **kwargs)
            finally:
                self._starting.discard(kernel_id)

        async def shutdown_kernel(self, kernel_id, *args, **kwargs):
            try:
                return await super().shutdown_kernel(kernel_id, *args, **kwargs)
            finally:
                self._refill_pools()

        async def cull_kernels(self):
            # A preheated kernel waits idle; once a visitor takes it, its idle time must
            # count from then, not from when it finished preheating, or the culler could
            # end it before the page has connected. So waiting ones are kept fresh.
            now = utcnow()
            for pool in self._pool_items().values():
                for result in map(_task_result, pool):
                    kernel = self._kernels.get(result["kernel_id"]) if result else None
                    if kernel is not None:
                        kernel.last_activity = now
            try:
                return await super().cull_kernels()
            finally:
                self._refill_pools()  # heal a pool left empty by a failed start

        async def shutdown_all(self, *args, **kwargs):
            self._closing = True
            return await super().shutdown_all(*args, **kwargs)

        def _refill_pools(self) -> None:
            """Top every preheated pool up to its size (a no-op for full pools)."""
            fill = getattr(self, "fill_if_needed", None)
            if fill is None or self._closing:
                return
            for name in list(self._pool_items()):
                fill(notebook_name=name)

    class GatedVoilaHandler(TornadoVoilaHandler):
        """Voila's render handler that answers 503 "busy" instead of exceeding the limit."""

        @web.authenticated
        async def get(self, path=None):
            km = self.kernel_manager
            notebook = self.notebook_path or path
            admit = getattr(km, "admit", None)
            if admit is not None and str(notebook).endswith(".ipynb") and not admit(notebook):
                km.refused = getattr(km, "refused", 0) + 1
                self._busy()
                return
            # Voila's page shuts its kernel down on unload with a beacon that must carry
            # the _xsrf cookie, which nothing else sets (voila-dashboards/voila#1458):
            # without this, a closed tab would hold its kernel until it is culled.
            self.xsrf_token  # noqa: B018 - the property sets the cookie
            try:
                await super().get(path)
            except DashboardsBusy:
                if self._headers_written:
                    raise
                self._busy()

        def write(self, chunk):
            # Voila's lab template links Font Awesome from a CDN although its own bundle
            # carries the same CSS: offline, the page's load event (and so the widgets)
            # waits for that request to fail; online, every view tells the CDN about it.
            if isinstance(chunk, str) and "cdn.jsdelivr.net" in chunk:
                chunk = _CDN_LINK.sub("", chunk)
            return super().write(chunk)

        def _busy(self) -> None:
            km = self.kernel_manager
            self.clear()
            self.set_status(503)
            self.set_header("Content-Type", "text/html; charset=UTF-8")
            self.set_header("Cache-Control", "no-store")
            self.set_header("Retry-After", str(RETRY_AFTER))
            idle = getattr(km, "cull_idle_timeout", 0) or 0
            self.finish(
                _BUSY_PAGE.format(
                    retry=RETRY_AFTER,
                    limit=getattr(km, "max_kernels", "the"),
                    idle=max(int(idle) // 60, 1),
                )
            )

    class StatusHandler(APIHandler):
        """``GET /voila/api/status``: the kernel manager's counts as JSON."""

        @web.authenticated
        def get(self):
            status = getattr(self.kernel_manager, "status", None)
            body = status() if status is not None else {"kernels": None}
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(body))

    class WorkbenchVoila(Voila):
        """Voila with :class:`GatedVoilaHandler` for rendering and a status endpoint."""

        def init_settings(self):
            settings = super().init_settings()
            km = self.kernel_manager
            preheated = sum(len(pool) for pool in getattr(km, "_pools", {}).values())
            limit = getattr(km, "max_kernels", 0)
            if limit and preheated >= limit:
                self.log.warning(
                    "max_kernels=%s leaves no room beyond the %s preheated kernels: raise "
                    "WorkbenchKernelManager.max_kernels or lower the pool size",
                    limit,
                    preheated,
                )
            return settings

        def init_handlers(self):
            handlers = []
            for handler in super().init_handlers():
                if len(handler) > 1 and handler[1] is TornadoVoilaHandler:
                    handler = (handler[0], GatedVoilaHandler, *handler[2:])
                handlers.append(handler)
            handlers.insert(0, (url_path_join(self.server_url, STATUS_PATH), StatusHandler))
            return handlers

    classes = (
        DashboardsBusy,
        WorkbenchKernelManager,
        GatedVoilaHandler,
        StatusHandler,
        WorkbenchVoila,
    )
    for cls in classes:
        cls.__qualname__ = cls.__name__  # not "_build_server_classes.<locals>...."
    return {
        "DashboardsBusy": DashboardsBusy,
        "WorkbenchKernelManager": WorkbenchKernelManager,
        "GatedVoilaHandler": GatedVoilaHandler,
        "StatusHandler": StatusHandler,
        "WorkbenchVoila": WorkbenchVoila,
    }


def __getattr__(name: str):
    if name in {"DashboardsBusy", "WorkbenchKernelManager", "WorkbenchVoila"}:
        if not _SERVER_CLASSES:
            _SERVER_CLASSES.update(_build_server_classes())
        return _SERVER_CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_voila(argv: Sequence[str] | None = None) -> None:
    """Run :class:`WorkbenchVoila` with Voila's command line (``sys.argv`` by default)."""
    __getattr__("WorkbenchVoila").launch_instance(argv=argv)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
