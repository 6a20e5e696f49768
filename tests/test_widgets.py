"""The filter bar: static in a report, re-rendering per filter state when interactive."""

from __future__ import annotations

import pytest
from conftest import four_deals

from pipeline_lib import widgets
from pipeline_lib.errors import InsufficientDataError


def _ds():
    return four_deals(product=["P", "P", "P", "P"])  # one product: no dropdown


def count_view(ds, *, as_of, label="deals"):
    return [f"{len(ds.opportunities)} {label} as of {as_of:%Y-%m-%d}"]


def failing_view(ds, *, as_of):
    raise InsufficientDataError("no closed deals in this selection")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"VOILA_KERNEL_ID": "k1"}, True),
        ({"JPY_SESSION_NAME": "nb.ipynb"}, True),
        ({"JPY_SESSION_NAME": "nb.ipynb", "PIPELINE_WORKBENCH_MODE": "report"}, False),
        ({"PIPELINE_WORKBENCH_MODE": "dashboard"}, True),
    ],
)
def test_mode_follows_the_environment(env, expected):
    assert widgets.is_interactive(env) is expected


def test_static_show_displays_the_view_once(capsys):
    bar = widgets.FilterBar(_ds(), as_of="2025-12-31", interactive=False)
    assert bar.segments == ["team"]  # product has one value, source is absent
    bar.display()  # nothing in a static report
    bar.show(count_view, label="opportunities")
    out = capsys.readouterr().out
    assert "4 opportunities as of 2025-12-31" in out


def test_filters_change_the_dataset_each_view_sees():
    bar = widgets.FilterBar(_ds(), as_of="2025-12-31", interactive=False)
    bar.set_filters(team="East")
    assert list(bar.dataset.opportunities["opportunity_id"]) == ["A", "C"]
    bar.set_filters(start="2025-02-15", team=None)
    assert list(bar.dataset.opportunities["opportunity_id"]) == ["C", "D"]
    with pytest.raises(ValueError, match="unknown filter"):
        bar.set_filters(region="North")


def test_insufficient_data_becomes_a_note(capsys):
    bar = widgets.FilterBar(_ds(), as_of="2025-12-31", interactive=False)
    bar.show(failing_view)
    assert "Not available here." in capsys.readouterr().out


def test_interactive_sections_rerender_on_filter_change():
    bar = widgets.FilterBar(_ds(), as_of="2025-12-31", interactive=True)
    bar.display()
    bar.show(count_view)
    section = bar._sections[0]
    texts = lambda: [o["data"].get("text/markdown", "") for o in section.output.outputs]  # noqa: E731
    assert texts() == ["4 deals as of 2025-12-31"]
    bar.set_filters(team="West")
    assert texts() == ["2 deals as of 2025-12-31"]
    status = bar._status.value
    assert "Showing 2 of 4 opportunities (team West)" in status


def test_controls_need_a_starting_value():
    bar = widgets.FilterBar(_ds(), as_of="2025-12-31", interactive=True)
    with pytest.raises(ValueError, match="starting value"):
        bar.show(count_view, controls=("label",))
    bar.show(count_view, controls=("label",), label="deals")
    section = bar._sections[0]
    section.inputs["label"].value = "opps"
    assert section.output.outputs[-1]["data"]["text/markdown"] == "4 opps as of 2025-12-31"


def test_bar_level_controls_feed_every_section_that_takes_them():
    bar = widgets.FilterBar(_ds(), as_of="2025-12-31", interactive=True, controls={"label": "x"})
    bar.display()
    bar.show(count_view, label="deals")  # the bar's value wins over the section's
    bar.show(failing_view)  # takes no label: unaffected
    first = bar._sections[0]
    assert first.output.outputs[-1]["data"]["text/markdown"] == "4 x as of 2025-12-31"
    bar._shared_inputs["label"].value = "rows"
    assert first.output.outputs[-1]["data"]["text/markdown"] == "4 rows as of 2025-12-31"
    assert "Not available here." in bar._sections[1].output.outputs[-1]["data"]["text/markdown"]
    # a static report uses the starting values
    static = widgets.FilterBar(
        _ds(), as_of="2025-12-31", interactive=False, controls={"label": "x"}
    )
    assert static._with_shared({"label": "deals", "other": 1}) == {"label": "x", "other": 1}


def test_choice_controls_are_dropdowns_with_checked_values():
    assert widgets.Choice("week", ("month", "quarter", "month")).options == (
        "week",
        "month",
        "quarter",
    )
    choice = widgets.Choice("quarter", ("month", "quarter"))
    bar = widgets.FilterBar(_ds(), as_of="2025-12-31", interactive=True, controls={"label": choice})
    bar.display()
    bar.show(count_view, label="deals")
    assert (
        bar._sections[0].output.outputs[-1]["data"]["text/markdown"] == "4 quarter as of 2025-12-31"
    )
    assert list(bar._shared_inputs["label"].options) == ["month", "quarter"]
    bar._shared_inputs["label"].value = "month"
    assert (
        bar._sections[0].output.outputs[-1]["data"]["text/markdown"] == "4 month as of 2025-12-31"
    )
