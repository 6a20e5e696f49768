"""Text membership and positions over pyarrow (private helpers of the package).

pandas' own ``isin`` and ``Index.get_indexer`` on Arrow-backed text turn the values they
look up into Python objects first (seconds for a million ids). These run Arrow's hash
kernels when both sides are Arrow-backed text and fall back to pandas otherwise, with the
same answers either way:

- :func:`arrow_text`: the Arrow array behind an Arrow-backed text Series or Index;
- :func:`isin`: ``values.isin(allowed)`` as a bool array;
- :func:`index_in`: the position of each value among some (usually distinct) values.

Missing values follow pandas: a missing value is a member of (and found at the position
of) a missing value on the other side, and of nothing else.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["arrow_text", "isin", "index_in"]


def arrow_text(values) -> pa.Array | pa.ChunkedArray | None:
    """The Arrow array behind an Arrow-backed text Series or Index, else None.

    Covers the pandas ``str`` dtype stored in pyarrow, ``string[pyarrow]`` and
    ``ArrowDtype`` string columns; anything else (object, numbers, categories) is None.

    Examples
    --------
    >>> arrow_text(pd.Series(["a", None], dtype="str")).to_pylist()  # doctest: +SKIP
    ['a', None]
    """
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.ArrowDtype) or getattr(dtype, "storage", None) == "pyarrow":
        arr = pa.array(values.array)
        return arr if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type) else None
    return None


def isin(values: pd.Series, allowed) -> np.ndarray:
    """``values.isin(allowed)`` as a bool array, fast for text against many values.

    Two Arrow-backed text columns are compared in Arrow, hashing the smaller side: the
    allowed values when they are fewer than about twice the values, else the distinct
    values (a few rows looked up among the ids of a big table).

    Parameters
    ----------
    values : Series
    allowed : Series, Index or list-like

    Returns
    -------
    ndarray of bool
        One per row of ``values``.

    Examples
    --------
    >>> isin(pd.Series(["a", "b", None], dtype="str"), ["a"]).tolist()
    [True, False, False]
    """
    arr = arrow_text(values)
    value_set = arrow_text(allowed) if isinstance(allowed, pd.Series | pd.Index) else None
    if arr is None or value_set is None:
        return np.asarray(values.isin(allowed), dtype=bool)
    if value_set.type != arr.type:
        value_set = value_set.cast(arr.type)
    if len(value_set) <= 2 * len(arr):
        return np.asarray(pc.is_in(arr, value_set=value_set), dtype=bool)
    # many more allowed values (ids of a big table): hash the distinct values instead
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    encoded = pc.dictionary_encode(arr)
    n = len(encoded.dictionary)
    seen = pc.index_in(value_set, value_set=encoded.dictionary).fill_null(n)
    hit = np.zeros(n + 1, dtype=bool)
    hit[np.asarray(seen)] = True
    hit[n] = value_set.null_count > 0  # slot n: missing values
    return hit[np.asarray(encoded.indices.fill_null(n))]


def index_in(values: pd.Series, uniques: pd.Index | pd.Series) -> np.ndarray:
    """Position of each of ``values`` in ``uniques`` (the first one when repeated); -1
    where absent.

    Parameters
    ----------
    values : Series
    uniques : Index or Series
        The values looked in, usually distinct.

    Returns
    -------
    ndarray of int64
        One per row of ``values``.

    Examples
    --------
    >>> index_in(pd.Series(["b", "x"], dtype="str"), pd.Index(["a", "b"], dtype="str"))
    array([ 1, -1])
    """
    a, b = arrow_text(values), arrow_text(uniques)
    if a is not None and b is not None:
        pos = pc.index_in(a, value_set=b.cast(a.type))
        return pos.fill_null(-1).to_numpy(zero_copy_only=False).astype("int64")
    index = pd.Index(uniques)
    if index.is_unique:
        return index.get_indexer(values).astype("int64", copy=False)
    first = ~index.duplicated()
    pos = index[first].get_indexer(values)
    return np.where(pos >= 0, np.flatnonzero(first)[pos], -1).astype("int64", copy=False)
