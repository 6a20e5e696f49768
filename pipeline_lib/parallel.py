"""Where fanned-out work runs: this machine's cores, or a Dask cluster.

Two analyses fan out independent tasks with :mod:`joblib`: the bookings forecast (one
task per segment, method and back-test window, :func:`pipeline_lib.forecasting.
compute_bookings_forecast`) and the win model (the candidate models, then the two
calibrations, :func:`pipeline_lib.scoring.fit_win_model`). By default the tasks run in
threads on this machine. They run unchanged on a Dask cluster when

- the code runs inside ``joblib.parallel_config(backend="dask")`` with a
  ``distributed.Client`` connected (what :func:`use_dask` does), or
- the environment variable ``PIPELINE_WORKBENCH_DASK`` holds the scheduler's address
  (``tcp://host:8786``) or the path of a scheduler file (``*.json``) and the code chose no
  joblib backend itself: how a scheduled ``python -m pipeline_lib run`` (whose kernels
  inherit the environment) or a dashboard server is pointed at a cluster without changing
  a notebook.

A task's result does not depend on where it ran (no task draws unseeded random numbers),
so a forecast or a model is the same on a laptop and on a cluster. The workers need the
same Python environment (``pipeline_lib``, Prophet, scikit-learn); the data travel with
the tasks, so they need no access to the data files. Requires the ``dask`` extra
(``pip install -e ".[dask]"``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings

__all__ = [
    "ENV_VARIABLE",
    "configured",
    "dask_address",
    "disconnect",
    "task_context",
    "use_dask",
]

#: The environment variable naming the Dask scheduler to send fanned-out tasks to.
ENV_VARIABLE = "PIPELINE_WORKBENCH_DASK"

_clients: dict[str, object] = {}
_lock = threading.Lock()


def dask_address() -> str | None:
    """The scheduler named by ``PIPELINE_WORKBENCH_DASK`` (None when unset or blank)."""
    value = os.environ.get(ENV_VARIABLE, "").strip()
    return value or None


def _distributed():
    try:
        import distributed
    except ImportError:  # the optional extra is not installed
        raise RuntimeError(
            "running on a Dask cluster needs dask and distributed: "
            'pip install -e ".[dask]" (or unset PIPELINE_WORKBENCH_DASK)'
        ) from None
    return distributed


def _connect(address: str, timeout: float):
    """A new ``distributed.Client`` of the scheduler at ``address`` (or scheduler file)."""
    distributed = _distributed()
    where = {"scheduler_file": address} if address.endswith(".json") else {"address": address}
    try:
        return distributed.Client(**where, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise RuntimeError(
            f"cannot reach the Dask scheduler {address!r} ({exc}): start it "
            f"(`dask scheduler`, then `dask worker {address}`) or unset {ENV_VARIABLE} "
            "to run on this machine"
        ) from None


def _shared_client(address: str, timeout: float):
    """One client per scheduler for the life of this process (reconnected if closed)."""
    with _lock:
        client = _clients.get(address)
        if client is None or client.status in ("closed", "closing"):
            client = _clients[address] = _connect(address, timeout)
        return client


def disconnect() -> None:
    """Close the connections :func:`configured` keeps (e.g. before the cluster goes)."""
    with _lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _backend_chosen() -> bool:
    """True when the calling code set a joblib backend (``parallel_config``)."""
    try:  # joblib keeps the active configuration in a thread-local
        from joblib.parallel import _backend, default_parallel_config

        config = getattr(_backend, "config", default_parallel_config)
        return config["backend"] is not default_parallel_config["backend"]
    except (ImportError, AttributeError, KeyError, TypeError):  # another joblib layout
        return False


@contextlib.contextmanager
def configured(*, timeout: float = 30):
    """Run the ``joblib.Parallel`` calls inside on the cluster ``PIPELINE_WORKBENCH_DASK``
    names, unless that variable is unset or the caller chose a joblib backend itself.

    The analyses wrap their fan-outs in it; there is no need to call it directly. The
    connection is made on first use and kept for the life of the process.

    Parameters
    ----------
    timeout : float, default 30
        Seconds to wait for the scheduler.

    Raises
    ------
    RuntimeError
        When the variable is set but the scheduler cannot be reached or the ``dask``
        extra is not installed.
    """
    address = dask_address()
    if address is None or _backend_chosen():
        yield
        return
    from joblib import parallel_config

    with parallel_config(backend="dask", client=_shared_client(address, timeout)):
        yield


@contextlib.contextmanager
def use_dask(address: str | None = None, *, n_workers: int | None = None, timeout: float = 30):
    """Run fanned-out work on a Dask cluster inside the ``with`` block.

    Parameters
    ----------
    address : str, optional
        The scheduler (``tcp://host:8786``) or a scheduler file (``*.json``). Default:
        ``PIPELINE_WORKBENCH_DASK``; when that is unset too, a local cluster of worker
        processes is started for the block (one single-threaded worker per core, or
        ``n_workers``) and closed after it.
    n_workers : int, optional
        Workers of the local cluster (ignored with an address).
    timeout : float, default 30
        Seconds to wait for the scheduler.

    Yields
    ------
    distributed.Client
        The client (its dashboard link shows the tasks as they run).

    Raises
    ------
    RuntimeError
        When the scheduler cannot be reached or the ``dask`` extra is not installed.

    Examples
    --------
    >>> from pipeline_lib import forecasting, parallel
    >>> with parallel.use_dask("tcp://scheduler:8786"):  # doctest: +SKIP
    ...     fc = forecasting.compute_bookings_forecast(ds, as_of="2025-12-31", segment="owner")
    """
    from joblib import parallel_config

    distributed = _distributed()
    address = address or dask_address()
    with contextlib.ExitStack() as stack:
        if address is None:
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=n_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
            )
            client = stack.enter_context(distributed.Client(cluster, set_as_default=False))
        else:
            client = stack.enter_context(_connect(address, timeout))
        stack.enter_context(parallel_config(backend="dask", client=client))
        yield client


@contextlib.contextmanager
def task_context(caller: int):
    """What a fanned-out task runs in: silent, and one native thread per task.

    In the process that started the work (``os.getpid() == caller``) the caller has
    already silenced warnings and limited BLAS threads (both are per process, and
    ``warnings.catch_warnings`` must not be entered from several threads); OpenMP's
    thread count, though, is set per thread, so a task running in a thread limits it
    again (without that, every task's gradient boosting starts one OpenMP thread per core
    and they spin against each other). In a worker process (loky, Dask) the task does
    all of it itself, and runs the joblib calls inside it (scikit-learn's) one after the
    other: on Dask they would otherwise become tiny tasks of their own, each shipping its
    data to another worker.
    """
    from joblib import parallel_config
    from threadpoolctl import threadpool_limits

    if os.getpid() == caller:
        with threadpool_limits(limits=1, user_api="openmp"):
            yield
        return
    with (
        warnings.catch_warnings(),
        threadpool_limits(limits=1),
        parallel_config(backend="sequential"),
    ):
        warnings.simplefilter("ignore")
        yield
