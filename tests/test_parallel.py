"""Fanned-out work on a real Dask cluster: the same results as a serial run, run by the workers.

The cluster has two single-threaded worker *processes*, so every task and its data are
pickled to another process, which must import pipeline_lib, Prophet and scikit-learn.
"""

from __future__ import annotations

import re
import time

import joblib
import numpy as np
import pytest
from conftest import make_dataset
from pandas.testing import assert_frame_equal

from pipeline_lib import forecasting, parallel, scoring

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def ds(demo_tables):
    return make_dataset(demo_tables)


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _tasks_run(stream: list, function: str) -> int:
    """How many joblib tasks calling ``function`` the cluster ran: joblib sends them in
    batches whose key reads ``batch_of_<function>_<n>_calls-<id>``."""
    pattern = re.compile(rf"batch_of_{re.escape(function)}_(\d+)_calls")
    return sum(int(m.group(1)) for t in stream if (m := pattern.search(str(t["key"]))))


# --------------------------------------------------------------------------- without a cluster


def test_dask_address_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(parallel.ENV_VARIABLE, raising=False)
    assert parallel.dask_address() is None
    monkeypatch.setenv(parallel.ENV_VARIABLE, "  ")
    assert parallel.dask_address() is None
    monkeypatch.setenv(parallel.ENV_VARIABLE, " tcp://scheduler:8786 ")
    assert parallel.dask_address() == "tcp://scheduler:8786"


def test_without_the_variable_nothing_changes(monkeypatch):
    monkeypatch.delenv(parallel.ENV_VARIABLE, raising=False)
    with parallel.configured():
        backend, _ = joblib.parallel.get_active_backend(prefer="threads")
    assert type(backend).__name__ == "ThreadingBackend"


def test_an_unreachable_scheduler_is_a_clear_error():
    start = time.monotonic()
    with (
        pytest.raises(RuntimeError, match=r"cannot reach the Dask scheduler.*dask scheduler"),
        parallel.use_dask("tcp://127.0.0.1:9", timeout=1),
    ):
        pass
    assert time.monotonic() - start < 20


# --------------------------------------------------------------------------- on a cluster


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bookings_forecast_on_dask_equals_serial_and_runs_on_the_workers(ds, client, capfd):
    opts = {"as_of": "2025-03-31", "segment": "team", "horizon": 3, "origins": 2}
    serial = forecasting.compute_bookings_forecast(ds, n_jobs=1, **opts)
    capfd.readouterr()
    with (
        distributed.get_task_stream(client) as stream,
        joblib.parallel_config(backend="dask", client=client),
    ):
        fc = forecasting.compute_bookings_forecast(ds, progress=True, **opts)
    # 4 series (total + 3 teams) x 3 methods x (2 back-test windows + the forecast)
    assert _tasks_run(stream.data, "_forecast_task") == 4 * 3 * 3
    assert {t["worker"] for t in stream.data} <= set(client.scheduler_info()["workers"])
    assert "Forecasting" in capfd.readouterr().err  # the progress bar follows the cluster
    assert_frame_equal(fc.history, serial.history)
    assert_frame_equal(fc.backtest, serial.backtest)  # Prophet's intervals are seeded
    assert_frame_equal(fc.forecasts, serial.forecasts)
    assert fc.chosen == serial.chosen
    assert set(fc.backtest["method"]) == {"prophet", "seasonal_naive", "moving_average"}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_win_model_on_dask_equals_serial_and_runs_on_the_workers(ds, client):
    as_of = "2025-03-31"
    serial = scoring.fit_win_model(ds, as_of=as_of, n_jobs=1)
    with (
        distributed.get_task_stream(client) as stream,
        joblib.parallel_config(backend="dask", client=client),
    ):
        model = scoring.fit_win_model(ds, as_of=as_of)
    assert _tasks_run(stream.data, "_fit_candidate") == 3  # the three candidates
    assert _tasks_run(stream.data, "_calibrate_task") == 2  # on the training part, on all
    assert_frame_equal(model.comparison, serial.comparison)
    assert_frame_equal(model.calibration, serial.calibration)
    assert model.method == serial.method
    feats = scoring.compute_deal_features(ds, as_of=as_of)
    np.testing.assert_array_equal(model.predict(feats), serial.predict(feats))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_environment_variable_points_the_analyses_at_the_cluster(ds, client, monkeypatch):
    """How a scheduled run is sent to a cluster without changing a notebook."""
    monkeypatch.setenv(parallel.ENV_VARIABLE, client.scheduler.address)
    opts = {"as_of": "2025-03-31", "methods": ("seasonal_naive", "moving_average")}
    try:
        with distributed.get_task_stream(client) as stream:
            fc = forecasting.compute_bookings_forecast(ds, horizon=3, origins=2, **opts)
    finally:
        parallel.disconnect()
    assert _tasks_run(stream.data, "_forecast_task") == 2 * 3
    # a backend chosen in code wins over the variable
    with distributed.get_task_stream(client) as stream, joblib.parallel_config(backend="threading"):
        again = forecasting.compute_bookings_forecast(ds, horizon=3, origins=2, **opts)
    assert _tasks_run(stream.data, "_forecast_task") == 0
    assert_frame_equal(fc.forecasts, again.forecasts)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_use_dask_connects_to_a_cluster(ds, client):
    opts = {"as_of": "2025-03-31", "methods": ("moving_average",), "horizon": 3, "origins": 2}
    workers = client.scheduler_info()["workers"].keys()
    with (
        distributed.get_task_stream(client) as stream,
        parallel.use_dask(client.scheduler.address) as other,
    ):
        assert other.scheduler_info()["workers"].keys() == workers
        forecasting.compute_bookings_forecast(ds, **opts)
    assert _tasks_run(stream.data, "_forecast_task") == 3
