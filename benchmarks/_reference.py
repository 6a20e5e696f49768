"""The DuckDB reference: three core aggregates written directly as SQL.

Each aggregate is computed three ways, each timed in its own child process:

- ``ours``: the pipeline_lib function a notebook calls for it, on the loaded Dataset;
- ``duckdb``: the SQL below over the same in-memory frames (the Dataset's tables,
  registered with DuckDB; nothing copied before the query);
- ``duckdb_parquet``: the same SQL reading the Parquet files directly (read included).

``ours ÷ duckdb`` is the ratio the issue's target ("within 3x") is checked on. The SQL
follows the definitions in the docstrings of our functions, so the counts must agree:
:func:`compare` says whether they do. The demo data ends on ``as_of``, so the snapshot
(nothing after ``as_of``) removes nothing and the SQL need not repeat it.

Aggregates
----------
``win_rate_by_product``
    ours: ``product_potential.compute_win_rates(by="product")``: the scorecard's
    win-rate columns, computed by the same code as ``compute_scorecard`` (which adds
    created and open counts, discounts, cycle times and the weighted pipeline). SQL:
    deals won/lost with a close date in the 365 days up to ``as_of``, per product: won,
    lost, win rate with its Wilson interval, won revenue, mean and median won deal.
``funnel_by_source``
    ours: ``lead_yield.compute_funnel(by="source")``. SQL: per lead source, leads that
    reached each step (lead, MQL, SQL, opportunity, won) or a later one.
``time_in_stage``
    ours: ``trend_review.compute_stage_durations``. SQL: a visit runs from a stage's
    ``entered_at`` to the deal's next stage-history row (or its close date when it is
    closed, otherwise censored at ``as_of``); Kaplan–Meier median, p75 and p90 days per
    open stage, with visits, completed and in-progress counts.
"""

from __future__ import annotations

import math

AGGREGATES = ("win_rate_by_product", "funnel_by_source", "time_in_stage")
ENGINES = ("ours", "duckdb", "duckdb_parquet")

_Z95 = 1.959963984540054


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql(aggregate: str, *, as_of: str, stages: dict, sources: dict) -> str:
    """The SQL of ``aggregate``; ``sources`` maps table names to FROM expressions."""
    o, h, ld = sources["opportunities"], sources.get("stage_history"), sources.get("leads")
    ts = f"TIMESTAMP '{as_of}'"
    if aggregate == "win_rate_by_product":
        z = _Z95
        return f"""
WITH c AS (
  SELECT coalesce(product, '(none)') AS product,
         count(*) FILTER (WHERE status = 'won') AS won,
         count(*) FILTER (WHERE status = 'lost') AS lost,
         sum(amount) FILTER (WHERE status = 'won') AS won_revenue,
         avg(amount) FILTER (WHERE status = 'won') AS avg_won_deal,
         median(amount) FILTER (WHERE status = 'won') AS median_won_deal
  FROM {o}
  WHERE status IN ('won', 'lost')
    AND close_date > {ts} - INTERVAL 365 DAY AND close_date <= {ts}
  GROUP BY 1
)
SELECT product, won, lost, won / (won + lost) AS win_rate,
       (won / (won + lost) + {z * z} / (2 * (won + lost))
        - {z} * sqrt(won / (won + lost) * (1 - won / (won + lost)) / (won + lost)
                     + {z * z} / (4 * (won + lost) * (won + lost))))
         / (1 + {z * z} / (won + lost)) AS win_rate_low,
       (won / (won + lost) + {z * z} / (2 * (won + lost))
        + {z} * sqrt(won / (won + lost) * (1 - won / (won + lost)) / (won + lost)
                     + {z * z} / (4 * (won + lost) * (won + lost))))
         / (1 + {z * z} / (won + lost)) AS win_rate_high,
       coalesce(won_revenue, 0) AS won_revenue, avg_won_deal, median_won_deal
FROM c ORDER BY won_revenue DESC, product
"""
    if aggregate == "funnel_by_source":
        return f"""
WITH d AS (
  SELECT lead_id, bool_or(status = 'won') AS won
  FROM {o} WHERE lead_id IS NOT NULL GROUP BY lead_id
)
SELECT coalesce(nullif(l.source, ''), '(missing)') AS source,
       count(*) AS lead,
       count(*) FILTER (WHERE l.mql_date IS NOT NULL OR l.sql_date IS NOT NULL
                        OR d.lead_id IS NOT NULL) AS mql,
       count(*) FILTER (WHERE l.sql_date IS NOT NULL OR d.lead_id IS NOT NULL) AS sql,
       count(d.lead_id) AS opportunity,
       count(*) FILTER (WHERE d.won) AS won
FROM {ld} AS l LEFT JOIN d ON d.lead_id = l.lead_id
GROUP BY 1 ORDER BY lead DESC
"""
    if aggregate == "time_in_stage":
        order = [*stages["open"], *stages["won"], *stages["lost"]]
        values = ", ".join(f"({_quote(s)}, {i})" for i, s in enumerate(order))
        open_list = ", ".join(_quote(s) for s in stages["open"])
        return f"""
WITH ord(stage, o) AS (VALUES {values}),
h AS (
  SELECT h.opportunity_id, h.stage, h.entered_at,
         lead(h.entered_at) OVER (PARTITION BY h.opportunity_id
                                  ORDER BY h.entered_at, coalesce(ord.o, {len(order)}))
           AS next_at
  FROM {h} AS h LEFT JOIN ord ON ord.stage = h.stage
),
v AS (
  SELECT h.stage,
         coalesce(h.next_at, CASE WHEN o.status IN ('won', 'lost') THEN o.close_date END)
           AS end_at,
         h.entered_at
  FROM h LEFT JOIN {o} AS o ON o.opportunity_id = h.opportunity_id
  WHERE h.stage IN ({open_list})
),
d AS (
  SELECT stage, end_at IS NOT NULL AS ended,
         floor(epoch(coalesce(end_at, {ts}) - entered_at) / 86400) AS days
  FROM v
),
k AS (
  SELECT stage, days, count(*) AS n, count(*) FILTER (WHERE ended) AS events
  FROM d WHERE days >= 0 GROUP BY stage, days
),
r AS (
  SELECT stage, days, n, events,
         sum(n) OVER (PARTITION BY stage ORDER BY days DESC) AS at_risk
  FROM k
),
s AS (
  SELECT stage, days,
         product(1 - events / at_risk) OVER (PARTITION BY stage ORDER BY days) AS surv
  FROM r WHERE events > 0
),
q AS (
  SELECT stage,
         min(days) FILTER (WHERE surv <= 0.5 + 1e-12) AS median_days,
         min(days) FILTER (WHERE surv <= 0.25 + 1e-12) AS p75_days,
         min(days) FILTER (WHERE surv <= 0.1 + 1e-12) AS p90_days
  FROM s GROUP BY stage
),
c AS (
  SELECT stage, sum(n) AS visits, sum(events) AS completed, sum(n) - sum(events) AS in_progress
  FROM k GROUP BY stage
)
SELECT c.stage, c.visits, c.completed, c.in_progress, q.median_days, q.p75_days, q.p90_days
FROM c LEFT JOIN q ON q.stage = c.stage
"""
    raise ValueError(f"aggregate={aggregate!r}: use one of {AGGREGATES}")


def _num(v):
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def digest(aggregate: str, frame) -> dict:
    """The comparable part of a result: ``{group: {column: value}}`` (JSON-able)."""
    if aggregate == "win_rate_by_product":
        cols, key, ints = ("won", "lost", "win_rate"), "product", ("won", "lost")
        frame = frame[frame[key].astype(str) != "All"]
        frame = frame[(frame["won"] + frame["lost"]) > 0]
    elif aggregate == "funnel_by_source":
        if "step" in frame.columns:  # ours: long format -> one row per group
            frame = frame.pivot(index="group", columns="step", values="count").reset_index()
            frame = frame.rename(columns={"group": "source"})
        cols, key = ("lead", "mql", "sql", "opportunity", "won"), "source"
        ints = cols
    elif aggregate == "time_in_stage":
        cols = ("visits", "completed", "in_progress", "median_days", "p75_days", "p90_days")
        key, ints = "stage", ("visits", "completed", "in_progress")
    else:
        raise ValueError(aggregate)
    out = {}
    for row in frame.to_dict("records"):
        out[str(row[key])] = {
            c: (int(row[c]) if c in ints else _num(row[c])) for c in cols if c in row
        }
    return out


def compare(aggregate: str, ours: dict, ref: dict) -> tuple[bool, str]:
    """Whether the two digests agree: equal counts, rates and days within 1e-9."""
    if set(ours) != set(ref):
        return False, f"groups differ: ours {sorted(ours)}, reference {sorted(ref)}"
    bad = []
    for group, row in ours.items():
        for col, v in row.items():
            w = ref[group].get(col)
            if isinstance(v, int) or isinstance(w, int):
                same = v == w
            elif v is None or w is None:
                same = v is None and w is None
            else:
                same = abs(v - w) <= 1e-9 * max(1.0, abs(v))
            if not same:
                bad.append(f"{group}.{col}: ours {v}, reference {w}")
    if bad:
        return False, f"{len(bad)} value(s) differ: " + "; ".join(bad[:5])
    n_counts = sum(isinstance(v, int) for row in ours.values() for v in row.values())
    unit = {
        "win_rate_by_product": "products",
        "funnel_by_source": "sources",
        "time_in_stage": "stages",
    }[aggregate]
    return True, (f"{len(ours)} {unit}: all {n_counts} counts equal, rates/days equal within 1e-9")
