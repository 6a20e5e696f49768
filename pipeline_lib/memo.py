"""A small, bounded memo of analyses run on the same Dataset.

A dashboard re-renders every section after a filter change, and sections share their
building blocks (the trend review's findings run most of the analyses later sections
show; the forecast's sections share one fitted model and one back-test; the lead-yield
sections share one per-lead table). A :class:`~pipeline_lib.dataset.Dataset` is a frozen
dataclass whose tables are never modified in place, so an analysis of the *same table
objects* with the same arguments gives the same answer: :func:`memoized` keeps it.

- The key holds the identity (``id``) of every table and the stage config of the
  Dataset, its ``as_of``, ``base_currency`` and lead milestones, and every argument
  (defaults applied, dates normalised, lists as tuples). Unhashable arguments skip the
  memo.
- An entry keeps only *weak* references to those tables and checks them on every hit,
  so it never keeps a dataset alive and an ``id`` reused by a new table never matches.
- With ``copy=True`` (public functions returning frames) callers get
  ``result.copy()`` (``attrs`` included) and may change it freely; ``copy=False`` shares
  the result with callers that never modify it.
- At most :data:`_SIZE` entries, least recently used dropped first; errors are not kept.
"""

from __future__ import annotations

import functools
import inspect
import threading
import weakref
from collections import OrderedDict

import pandas as pd

from .dataset import Dataset, to_timestamp

__all__ = ["clear", "memoized"]

#: Most entries kept (the full trend review of one Dataset makes about 30).
_SIZE = 128

_entries: OrderedDict[tuple, tuple[tuple, object]] = OrderedDict()
_lock = threading.Lock()
_MISSING = object()


def clear() -> None:
    """Forget every memoised result (tests; freeing memory)."""
    with _lock:
        _entries.clear()


def _sources(first) -> tuple[tuple, tuple] | None:
    """(objects compared by identity, plain values) the result depends on, or None."""
    if isinstance(first, Dataset):
        names = sorted(first.tables)
        objs = (*(first.tables[n] for n in names), first.stages)
        return objs, (tuple(names), first.as_of, first.base_currency, first.milestones)
    if isinstance(first, pd.DataFrame):
        return (first,), ()
    return None


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(value)
    return value


def _date(value):
    try:
        return to_timestamp(value)
    except ValueError:
        return value  # not a date ("end", None...): the function decides


def _refs(objs: tuple) -> tuple:
    return tuple(None if o is None else weakref.ref(o) for o in objs)


def _alive(refs: tuple, objs: tuple) -> bool:
    return all(
        (r is None and o is None) or (r is not None and r() is o)
        for r, o in zip(refs, objs, strict=True)
    )


def _evict() -> None:
    """Drop entries whose tables are gone, then the oldest beyond :data:`_SIZE`.

    Dropping an entry can free a snapshot whose own tables keyed other entries, so the
    sweep repeats until nothing more dies.
    """
    while True:
        dead = [
            k
            for k, (refs, _) in _entries.items()
            if any(r is not None and r() is None for r in refs)
        ]
        for k in dead:
            del _entries[k]
        over = len(_entries) > _SIZE
        while len(_entries) > _SIZE:
            _entries.popitem(last=False)
        if not dead and not over:
            return


def memoized(*, dates: tuple[str, ...] = ("as_of",), copy: bool = True):
    """Decorate a function of a Dataset (or DataFrame) so repeated calls reuse its result.

    Parameters
    ----------
    dates : tuple of str
        Parameters normalised with :func:`~pipeline_lib.dataset.to_timestamp` in the key
        (``"2025-12-31"`` and ``Timestamp("2025-12-31")`` are the same call).
    copy : bool, default True
        Hand out ``result.copy()`` (public functions); False shares the result (private
        helpers whose callers never modify it).
    """

    def decorate(fn):
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            src = _sources(args[0]) if args else None
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError:
                src = None  # let the function raise its own error
            if src is None:
                return fn(*args, **kwargs)
            objs, plain = src
            bound.apply_defaults()
            named = list(bound.arguments.items())[1:]
            frozen = tuple((k, _date(v) if k in dates else _freeze(v)) for k, v in named)
            key = (fn.__module__, fn.__qualname__, tuple(map(id, objs)), plain, frozen)
            try:
                hash(key)
                refs = _refs(objs)
            except TypeError:  # an unhashable argument, a table without weak references
                return fn(*args, **kwargs)
            with _lock:
                hit = _entries.get(key, _MISSING)
                if hit is not _MISSING and _alive(hit[0], objs):
                    _entries.move_to_end(key)
                    result = hit[1]
                else:
                    result = _MISSING
            if result is _MISSING:
                result = fn(*args, **kwargs)
                with _lock:
                    _entries[key] = (refs, result)
                    _entries.move_to_end(key)
                    _evict()
            return result.copy() if copy else result

        return wrapper

    return decorate
