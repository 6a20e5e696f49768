"""The shared memo: one computation per (tables, arguments), no stale or kept-alive data."""

from __future__ import annotations

import gc
from dataclasses import replace

import pandas as pd

from pipeline_lib import memo
from pipeline_lib.dataset import Dataset
from pipeline_lib.sources import StageConfig

STAGES = StageConfig(open=("Open",), won=("Won",), lost=("Lost",), aliases={})
calls: list[tuple] = []


def _ds(n: int = 3) -> Dataset:
    opps = pd.DataFrame({"opportunity_id": [f"O{i}" for i in range(n)], "amount": range(n)})
    empty = pd.DataFrame()
    return Dataset(
        tables={"opportunities": opps}, rejects=empty, warnings=empty, counts=empty, stages=STAGES
    )


@memo.memoized()
def total(ds: Dataset, *, as_of, columns=("amount",), options=None) -> pd.DataFrame:
    calls.append((as_of, columns))
    return ds.opportunities[list(columns)].sum().to_frame("total")


def test_same_tables_and_arguments_compute_once():
    memo.clear()
    calls.clear()
    ds = _ds()
    first = total(ds, as_of="2025-12-31")
    # the same date written differently, a list for a tuple, a dict option: one computation
    again = total(ds, as_of=pd.Timestamp("2025-12-31"), columns=["amount"])
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, again)
    total(ds, as_of="2025-12-31", options={"b": 1, "a": [2]})
    total(ds, as_of="2025-12-31", options={"a": [2], "b": 1})
    assert len(calls) == 2
    total(ds, as_of="2025-06-30")  # another date: computed
    assert len(calls) == 3


def test_results_are_copies_and_new_tables_are_new_keys():
    memo.clear()
    calls.clear()
    ds = _ds()
    out = total(ds, as_of="2025-12-31")
    out.loc["amount", "total"] = -1  # the caller changes its copy ...
    assert total(ds, as_of="2025-12-31").loc["amount", "total"] == 3  # ... 0 + 1 + 2
    other = replace(ds, tables={"opportunities": _ds(4).opportunities})
    assert total(other, as_of="2025-12-31").loc["amount", "total"] == 6  # 0 + 1 + 2 + 3
    assert len(calls) == 2


def test_bounded_and_never_keeps_a_dataset_alive(monkeypatch):
    memo.clear()
    monkeypatch.setattr(memo, "_SIZE", 2)
    for n in range(1, 6):
        total(_ds(n), as_of="2025-12-31")
    gc.collect()
    assert len(memo._entries) <= 2
    # those datasets are gone: the memo held only weak references to their tables
    refs = [r for refs, _ in memo._entries.values() for r in refs if r is not None]
    assert refs and not any(isinstance(r(), pd.DataFrame) for r in refs)
