"""Display formatting of tables and KPIs."""

from __future__ import annotations

import pandas as pd

from pipeline_lib import formatting


def test_format_kpis_units_and_interval():
    kpis = pd.DataFrame(
        {
            "metric": ["won revenue", "win rate", "median sales cycle"],
            "value": [15170260.4, 0.3887, float("nan")],
            "unit": ["USD", "share", "days"],
            "n": [772, 1986, 0],
            "skipped": [0, 0, 0],
            "ci_low": [float("nan"), 0.3675, float("nan")],
            "ci_high": [float("nan"), 0.4104, float("nan")],
            "definition": ["a", "b", "c"],
        }
    )
    out = formatting.format_kpis(kpis)
    assert out["value"].tolist() == ["15,170,260 USD", "38.9%", "–"]
    assert out["95 % interval"].tolist() == ["", "36.8% – 41.0%", ""]


def test_style_table_formats_and_truncates_without_touching_input():
    frame = pd.DataFrame(
        {"table": ["a", "b", "c"], "rows": [1234, 5, 6], "share": [0.5, 0.25, 0.0]}
    )
    before = frame.copy()
    html = formatting.style_table(frame, percent=["share"], max_rows=2, caption="T").to_html()
    assert "1,234" in html and "50.0%" in html
    assert "first 2 of 3 rows" in html and ">c<" not in html
    pd.testing.assert_frame_equal(frame, before)
