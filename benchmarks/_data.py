"""Benchmark data: the demo generator's canonical tables at a scale, as CSV and Parquet.

``benchmarks/data/<scale>/`` (gitignored) holds, for ``generate_demo(n_opportunities=N,
seed=42)``:

- ``csv/<table>.csv`` and ``parquet/<table>.parquet``: the canonical tables, unchanged;
- ``csv.yaml`` and ``parquet.yaml``: source configs over them (the same config, only the
  file names differ);
- ``data.json``: what was generated (scale, seed, generator version, row counts);
- ``dataset.pkl`` + ``dataset.json``: the Dataset loaded from ``parquet.yaml`` with
  ``as_of`` = :data:`AS_OF`, pickled so that analysis measurements can skip the (untimed)
  load. The pickle is rebuilt whenever the data or the source of any ``pipeline_lib``
  module the load imported changes, so it always is what today's loader returns.

Everything here runs inside a child process (``_child.py --prepare``): generating 1M
opportunities and loading them takes several GB that the harness should not keep.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import time
from pathlib import Path

AS_OF = "2025-12-31"
SEED = 42
DATA_FORMAT = "1"  # bump when the files written here change
TABLES = (
    "opportunities",
    "stage_history",
    "leads",
    "products",
    "accounts",
    "targets",
    "lead_costs",
)
STAGES = {
    "open": [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
    ],
    "won": ["Closed Won"],
    "lost": ["Closed Lost"],
}


def source_config(fmt: str) -> str:
    """The source config (YAML text) over the ``fmt`` files of one scale folder."""
    lines = ["# written by benchmarks/_data.py", "base_currency: USD", "stages:"]
    for kind, names in STAGES.items():
        lines.append(f"  {kind}: [{', '.join(names)}]")
    lines.append("tables:")
    for name in TABLES:
        lines += [f"  {name}:", f"    path: {fmt}/{name}.{fmt}"]
        if name == "leads":
            lines += [
                "    columns: {mql_date: mql_date, sql_date: sql_date}",
                "    milestones: [mql_date, sql_date]",
            ]
    return "\n".join(lines) + "\n"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def data_stamp(n: int) -> dict:
    from pipeline_lib import demo

    return {
        "n_opportunities": int(n),
        "seed": SEED,
        "generator_version": demo.GENERATOR_VERSION,
        "format": DATA_FORMAT,
    }


def data_current(folder: Path, n: int) -> bool:
    """True when ``folder`` holds the files of this scale, written by this generator."""
    meta = _read_json(folder / "data.json")
    if not meta or meta.get("stamp") != data_stamp(n):
        return False
    names = [f"{fmt}/{t}.{fmt}" for fmt in ("csv", "parquet") for t in TABLES]
    names += ["csv.yaml", "parquet.yaml"]
    return all((folder / p).is_file() for p in names)


def write_data(folder: Path, n: int, *, log=print) -> dict:
    """Generate the demo tables for ``n`` opportunities into ``folder`` (CSV and Parquet)."""
    from pipeline_lib.demo import generate_demo

    start = time.perf_counter()
    tables = generate_demo(n_opportunities=n, seed=SEED)
    log(f"generated {n:,} opportunities in {time.perf_counter() - start:.1f} s")
    (folder / "data.json").unlink(missing_ok=True)
    for fmt in ("csv", "parquet"):
        (folder / fmt).mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        frame = tables[name]
        frame.to_parquet(folder / "parquet" / f"{name}.parquet", index=False)
        frame.to_csv(folder / "csv" / f"{name}.csv", index=False, date_format="%Y-%m-%d")
    for fmt in ("csv", "parquet"):
        (folder / f"{fmt}.yaml").write_text(source_config(fmt), encoding="utf-8")
    meta = {
        "stamp": data_stamp(n),
        "rows": {name: len(tables[name]) for name in TABLES},
        "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _write_json(folder / "data.json", meta)
    log(f"wrote CSV and Parquet in {time.perf_counter() - start:.1f} s")
    return meta


def _module_files() -> dict[str, str]:
    """sha256 of the source of every ``pipeline_lib`` module imported so far."""
    out = {}
    for name, module in sorted(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.split(".")[0] == "pipeline_lib" and path and path.endswith(".py"):
            out[name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return out


def _files_unchanged(recorded: dict[str, str]) -> bool:
    import importlib.util

    for name, digest in recorded.items():
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            return False
        try:
            if hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest()[:16] != digest:
                return False
        except OSError:
            return False
    return True


def pickle_current(folder: Path) -> bool:
    """True when ``dataset.pkl`` was made from this data by today's loader."""
    import pandas as pd
    import pyarrow

    meta = _read_json(folder / "dataset.json")
    data = _read_json(folder / "data.json")
    if not meta or not data or not (folder / "dataset.pkl").is_file():
        return False
    if meta.get("data") != data.get("stamp") or meta.get("as_of") != AS_OF:
        return False
    if meta.get("versions") != {"pandas": pd.__version__, "pyarrow": pyarrow.__version__}:
        return False
    return _files_unchanged(meta.get("modules", {}))


def write_pickle(folder: Path, *, log=print) -> None:
    """Load ``parquet.yaml`` as of :data:`AS_OF` and pickle the Dataset."""
    import pandas as pd
    import pyarrow

    from pipeline_lib.dataset import load_dataset

    start = time.perf_counter()
    ds = load_dataset(folder / "parquet.yaml", as_of=AS_OF)
    log(f"loaded the Parquet data in {time.perf_counter() - start:.1f} s")
    (folder / "dataset.json").unlink(missing_ok=True)
    tmp = folder / "dataset.pkl.tmp"
    with tmp.open("wb") as fh:
        pickle.dump(ds, fh, protocol=5)
    os.replace(tmp, folder / "dataset.pkl")
    meta = {
        "data": _read_json(folder / "data.json")["stamp"],
        "as_of": AS_OF,
        "versions": {"pandas": pd.__version__, "pyarrow": pyarrow.__version__},
        "modules": _module_files(),
    }
    _write_json(folder / "dataset.json", meta)


def prepare(folder: Path, n: int, *, need_pickle: bool, log=print) -> dict:
    """Make sure ``folder`` holds current data (and pickle); return ``data.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    if data_current(folder, n):
        log("data: reused")
    else:
        write_data(folder, n, log=log)
    if need_pickle:
        if pickle_current(folder):
            log("dataset pickle: reused")
        else:
            write_pickle(folder, log=log)
    return _read_json(folder / "data.json")


def load_pickle(folder: Path):
    with (folder / "dataset.pkl").open("rb") as fh:
        return pickle.load(fh)
