"""Shared helpers of the plotting package (``pipeline_lib.plotting._base``), checked by hand."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns

from pipeline_lib import lead_yield, plotting
from pipeline_lib.plotting._base import (
    ALL,
    BLUE,
    GREEN,
    GREY,
    OLIVE,
    ORANGE,
    PURPLE,
    RED,
    REJECTED,
    check_columns,
    get_ax,
    interval_errors,
    label_rows,
    money_formatter,
    money_text,
    percent_formatter,
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (900, "900"),
        (999.4, "999"),
        (1_000, "1k"),
        (45_000, "45k"),
        (-45_000, "-45k"),
        (350_499, "350k"),
        (1_234_567, "1.2M"),
        (-1_250_001, "-1.3M"),
        (2_500_000_000, "2.5B"),
    ],
)
def test_money_text(value, text):
    assert money_text(value) == text


@pytest.mark.parametrize("value", [None, np.nan, pd.NA, np.inf, -np.inf])
def test_money_text_missing_is_a_dash(value):
    assert money_text(value) == "–"


def test_money_text_options():
    assert money_text(2_500_000_000, billions=False) == "2,500.0M"
    assert money_text(45_000, kilo="K") == "45K"
    assert money_text(5_000, kilo_from=1e4) == "5,000"
    assert money_text(12_000, kilo_from=1e4) == "12k"
    assert money_text(1_500_000, kilo_from=1e4, billions=False) == "1.5M"


def test_money_formatter_places_the_currency():
    assert money_formatter()(1_500_000, 0) == "1.5M"
    assert money_formatter("EUR")(1_500_000, 0) == "1.5M EUR"
    assert money_formatter("EUR", currency_first=True)(45_000, 0) == "EUR 45k"
    assert money_formatter("EUR", kilo="K")(45_000) == "45K EUR"
    assert money_formatter(billions=False)(3e9) == "3,000.0M"


def test_money_formatter_labels_an_axis():
    _, ax = plt.subplots()
    ax.set_ylim(0, 2e6)
    ax.set_yticks([0, 1e6, 2e6])
    ax.yaxis.set_major_formatter(money_formatter("USD"))
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0 USD", "1.0M USD", "2.0M USD"]


def test_percent_formatter_reads_shares():
    assert percent_formatter(decimals=0).format_pct(0.25, 1.0) == "25%"
    assert percent_formatter(decimals=1).format_pct(0.125, 1.0) == "12.5%"
    _, ax = plt.subplots()
    ax.set_xlim(0, 1)
    ax.set_xticks([0, 0.5, 1])
    ax.xaxis.set_major_formatter(percent_formatter(decimals=0))
    ax.figure.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0%", "50%", "100%"]


def test_interval_errors_lengths_clipped_at_zero():
    mid = pd.Series([0.5, 0.2, 0.3])
    low = pd.Series([0.4, 0.25, np.nan])
    high = pd.Series([0.7, 0.1, 0.4])
    err = interval_errors(mid, low, high)
    assert err.shape == (2, 3)
    np.testing.assert_allclose(err[:, :2], [[0.1, 0.0], [0.2, 0.0]])
    assert np.isnan(err[0, 2])  # missing bound: no bar drawn
    assert err[1, 2] == pytest.approx(0.1)
    filled = interval_errors(mid, low, high, missing=0.0)
    np.testing.assert_allclose(filled, [[0.1, 0.0, 0.0], [0.2, 0.0, 0.1]])
    assert low.isna().iloc[2] and mid.tolist() == [0.5, 0.2, 0.3]  # inputs untouched


def test_label_rows_puts_the_first_label_on_top():
    _, ax = plt.subplots()
    ax.barh(range(3), [3, 2, 1])
    label_rows(ax, ["a", "b", "c"])
    assert list(ax.get_yticks()) == [0, 1, 2]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert ax.yaxis_inverted()
    _, ax = plt.subplots()
    label_rows(ax, pd.Series(["x", "y"]), start=1)
    assert list(ax.get_yticks()) == [1, 2]
    assert ax.yaxis_inverted()


def test_check_columns_names_the_function_and_the_missing_columns():
    frame = pd.DataFrame({"a": [1], "b": [2]})
    check_columns(frame, ["a", "b"], "plot_x")
    with pytest.raises(ValueError, match=r"plot_x: frame lacks columns \['c', 'd'\]"):
        check_columns(frame, ["a", "c", "d"], "plot_x")


def test_get_ax_falls_back_to_the_current_axes():
    fig, (left, right) = plt.subplots(1, 2)
    assert get_ax(left) is left
    plt.sca(right)
    assert get_ax() is right


def test_colours_are_seaborns_deep_palette():
    deep = sns.color_palette("deep").as_hex()
    named = {0: BLUE, 1: ORANGE, 2: GREEN, 3: RED, 4: PURPLE, 7: GREY, 8: OLIVE}
    assert {i: c.lower() for i, c in named.items()} == {i: deep[i] for i in named}
    assert REJECTED == ORANGE


def test_all_is_the_label_of_the_analysis_modules():
    assert ALL == lead_yield.ALL == "All"


def test_package_exports_plot_functions_not_helpers():
    assert "set_theme" in plotting.__all__
    assert all(n == "set_theme" or n.startswith("plot_") for n in plotting.__all__)
    assert all(callable(getattr(plotting, n)) for n in plotting.__all__)
    assert "money_text" not in plotting.__all__
