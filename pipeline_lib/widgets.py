"""The filter bar of the dashboards, and the glue that shows report sections.

A notebook builds one :class:`FilterBar` over its Dataset and shows each section with
:meth:`FilterBar.show`. In a static report (a Papermill run) the bar is invisible — but
for one line naming the filters the notebook started with (its ``segment_filters``
parameter), if any — and every section is displayed once. Interactively (Voila,
JupyterLab) the bar shows a date range and a dropdown per segment column; changing one
re-renders every section from results cached per filter state. This module computes
nothing itself: sections are *views* (see :mod:`pipeline_lib.views`).

The mode comes from the environment: ``PIPELINE_WORKBENCH_MODE`` set to ``report`` (the
runner sets it), ``dashboard`` or ``interactive`` wins; otherwise a kernel started by
Voila (``VOILA_KERNEL_ID``) or by a Jupyter server (``JPY_SESSION_NAME``) is
interactive, and anything else (plain ``papermill``, a script) is static.
"""

from __future__ import annotations

import base64
import os
import re
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .dataset import Dataset, to_timestamp
from .errors import InsufficientDataError

__all__ = ["Choice", "FilterBar", "is_interactive", "render_items"]

MODE_VARIABLE = "PIPELINE_WORKBENCH_MODE"
_ALL = "(all)"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MAX_OPTIONS = 300
_CACHE_SIZE = 64


def is_interactive(environ=None) -> bool:
    """True when the kernel runs under Voila or JupyterLab rather than as a static report."""
    env = os.environ if environ is None else environ
    mode = env.get(MODE_VARIABLE, "").strip().lower()
    if mode == "report":
        return False
    if mode in {"dashboard", "interactive"}:
        return True
    return bool(env.get("VOILA_KERNEL_ID") or env.get("JPY_SESSION_NAME"))


def _require_ipywidgets():
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - ipywidgets is a dependency
        raise ImportError(
            "the dashboard filter bar needs ipywidgets: pip install ipywidgets"
        ) from None
    return ipywidgets


def _bundle(item) -> tuple[dict, dict]:
    """The MIME bundle (data, metadata) of one displayable item; figures are closed."""
    from IPython.display import Markdown
    from matplotlib.figure import Figure

    if isinstance(item, str):
        item = Markdown(item)
    data, meta = _formatter().format(item)
    # Binary payloads (PNG) travel as base64 text in notebooks and widget messages.
    data = {
        k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v
        for k, v in data.items()
    }
    if isinstance(item, Figure):
        import matplotlib.pyplot as plt

        plt.close(item)
    return data, meta


def _formatter():
    """The kernel's display formatter, or (outside IPython) one that renders figures."""
    from IPython import get_ipython
    from IPython.core.formatters import DisplayFormatter
    from matplotlib.figure import Figure

    shell = get_ipython()
    if shell is not None:
        return shell.display_formatter
    formatter = DisplayFormatter()
    formatter.formatters["image/png"].for_type(Figure, _figure_png)
    return formatter


def _figure_png(fig) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def render_items(items: Iterable) -> list[tuple[dict, dict]]:
    """Turn a view's items into MIME bundles (``str`` becomes Markdown; figures closed)."""
    return [_bundle(item) for item in items]


def _note(message: str) -> list[tuple[dict, dict]]:
    text = f"> **Not available here.** {message}"
    return render_items([text])


def _freeze(value):
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


@dataclass(frozen=True)
class Choice:
    """A bar-level control offered as a dropdown: ``Choice("quarter", ("month", "quarter"))``.

    Duplicate options are dropped; a starting value not among the options is added first,
    so a parameter set outside the usual choices still works.
    """

    value: Any
    options: tuple

    def __post_init__(self):
        options = tuple(dict.fromkeys(self.options))
        if self.value not in options:
            options = (self.value, *options)
        object.__setattr__(self, "options", options)


def _plain(value):
    return value.value if isinstance(value, Choice) else value


class _Section:
    def __init__(self, view, options, controls, output, inputs):
        self.view = view
        self.options = options
        self.controls = controls
        self.output = output
        self.inputs = inputs


class FilterBar:
    """A date range and segment dropdowns that filter the Dataset every section sees.

    Parameters
    ----------
    ds : Dataset
        The loaded data (usually already a snapshot on ``as_of``).
    as_of : str, date or Timestamp
        Passed to every view.
    segments : sequence of str, default ("team", "product", "source")
        Opportunity columns offered as dropdowns; columns absent or with fewer than two
        values are left out.
    date_column : str or None, default "created_date"
        The opportunities' date the range filters; ``None`` shows no date range (for
        analyses that need the whole history, such as a forecast).
    interactive : bool, optional
        Force the mode; by default :func:`is_interactive` decides.
    controls : mapping of str to value, optional
        Options shared by every section (e.g. ``{"horizon": 6}``): shown as inputs in the
        bar under Voila (type from the value, as for :meth:`show`; a :class:`Choice` is a
        dropdown); a section that takes an option of that name gets the bar's value, and
        changing it re-renders them all.
    filters : mapping of str to value, optional
        Filters active from the start (a notebook's ``segment_filters`` parameter): an
        opportunity column and the value (or list of values) to keep, e.g.
        ``{"team": "EMEA", "product": ["A", "B"]}``; ``start`` / ``end`` bound the date
        range. Any opportunity column may be named, not only the dropdowns. A static
        report states the active filters at :meth:`display`; a section left with no
        opportunity says that the filter selected nothing.

    Raises
    ------
    ValueError
        When ``filters`` names a column the opportunities do not have, or a date bound
        while there is no date range.

    Examples
    --------
    >>> bar = FilterBar(ds, as_of="2025-12-31")  # doctest: +SKIP
    >>> bar.display()  # doctest: +SKIP
    >>> bar.show(views.scorecard, group_by="product")  # doctest: +SKIP
    """

    def __init__(
        self,
        ds: Dataset,
        *,
        as_of,
        segments: Sequence[str] = ("team", "product", "source"),
        date_column: str | None = "created_date",
        interactive: bool | None = None,
        controls: Mapping[str, Any] | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> None:
        self._base = ds
        self.as_of = to_timestamp(as_of)
        opps = ds.opportunities
        self.segments = [
            c for c in segments if c in opps.columns and opps[c].dropna().nunique() > 1
        ]
        self.date_column = date_column if date_column in opps.columns else None
        self.interactive = is_interactive() if interactive is None else bool(interactive)
        self._shared = dict(controls or {})
        self._shared_inputs: dict = {}
        self._filters: dict = {"start": None, "end": None}
        self._filters.update({c: None for c in self.segments})
        self._filters.update(_check_filters(filters, opps, date_column=self.date_column))
        self._sections: list[_Section] = []
        self._cache: OrderedDict = OrderedDict()
        self._datasets: OrderedDict = OrderedDict()
        self._widget = None
        self._status = None

    # -- state ----------------------------------------------------------------------
    @property
    def filters(self) -> dict:
        """The active filters: ``start``, ``end`` and one entry per segment (None = all)."""
        return dict(self._filters)

    @property
    def dataset(self) -> Dataset:
        """The Dataset filtered by the bar's current state."""
        key = _freeze(self._filters)
        if key not in self._datasets:
            segs = {c: v for c, v in self._filters.items() if c not in ("start", "end")}
            if self.date_column is None:
                ds = self._base.filter(date_column=None, **segs)
            else:
                ds = self._base.filter(
                    start=self._filters["start"],
                    end=self._filters["end"],
                    date_column=self.date_column,
                    **segs,
                )
            self._datasets[key] = ds
            while len(self._datasets) > 8:
                self._datasets.popitem(last=False)
        return self._datasets[key]

    def set_filters(self, **filters) -> None:
        """Change filters (``start``, ``end``, segment columns) and re-render every section.

        Raises
        ------
        ValueError
            When a name is not a filter of this bar.
        """
        unknown = [k for k in filters if k not in self._filters]
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; this bar has {list(self._filters)}")
        for key, value in filters.items():
            if key in ("start", "end") and value is not None:
                value = to_timestamp(value, name=key).date().isoformat()
            self._filters[key] = value
        self._rerender_all()

    # -- display ----------------------------------------------------------------------
    def display(self) -> None:
        """Show the bar; a static report shows only a line naming the active filters."""
        from IPython.display import display

        if not self.interactive:
            text = self._filter_text()
            if text:
                for data, meta in render_items([text]):
                    display(data, metadata=meta, raw=True)
            return
        display(self._build_widget())

    def _active(self) -> list[str]:
        """The active filters as ``"column = value"`` texts."""
        dates = {"start": f"{self.date_column} from", "end": f"{self.date_column} to"}
        return [
            f"{dates[k]} {v}" if k in dates else f"{k} = {_label(v)}"
            for k, v in self._filters.items()
            if v is not None
        ]

    def _filter_text(self) -> str:
        """A static report's line on the active filters ('' when none)."""
        active = self._active()
        if not active:
            return ""
        shown = len(self.dataset.opportunities)
        total = len(self._base.opportunities)
        text = f"**Filtered to {'; '.join(active)}:** {shown:,} of {total:,} opportunities."
        if shown == 0 and total > 0:
            text += " No opportunity matches, so most sections below have nothing to show."
        return text

    def show(self, view: Callable, *, controls: Sequence[str] = (), **options) -> None:
        """Display one section: ``view(bar.dataset, as_of=bar.as_of, **options)``.

        Parameters
        ----------
        view : callable
            ``view(ds, *, as_of, **options) -> list`` of displayable items.
        controls : sequence of str
            Options that get their own input widget above the section (interactive
            mode only); its type follows the option's value (bool, int, float, an ISO
            date string, other strings).
        **options
            Passed to the view.

        An :class:`~pipeline_lib.errors.InsufficientDataError` from the view is shown as
        a note. In a static report any other error propagates (the run fails loudly);
        interactively it is shown in the section so the dashboard stays usable.
        """
        from IPython.display import display

        missing = [c for c in controls if c not in options]
        if missing:
            raise ValueError(f"controls {missing} need a starting value among the options")
        if not self.interactive:
            for data, meta in self._compute(view, self._with_shared(options)):
                display(data, metadata=meta, raw=True)
            return
        ipw = _require_ipywidgets()
        inputs = {name: self._control(name, options[name]) for name in controls}
        output = ipw.Output()
        output.add_class("pw-section")
        section = _Section(view, dict(options), tuple(controls), output, inputs)
        for widget in inputs.values():
            widget.observe(lambda _change, s=section: self._render(s), names="value")
        self._sections.append(section)
        children = []
        if inputs:
            children.append(ipw.HBox(list(inputs.values())))
        children.append(output)
        display(ipw.VBox(children))
        self._render(section)

    # -- internals ----------------------------------------------------------------------
    def _compute(self, view, options) -> list[tuple[dict, dict]]:
        key = (getattr(view, "__module__", ""), getattr(view, "__qualname__", repr(view)))
        key = (*key, _freeze(self._filters), _freeze(options))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            bundles = render_items(view(self.dataset, as_of=self.as_of, **options))
        except InsufficientDataError as exc:
            bundles = _note(self._explain(exc))
        self._cache[key] = bundles
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return bundles

    def _explain(self, exc: InsufficientDataError) -> str:
        """The note for a section that cannot be computed: the filter first, if it is why."""
        if len(self.dataset.opportunities) == 0 and len(self._base.opportunities) > 0:
            return (
                f"No opportunity matches the filter ({'; '.join(self._active())}), so there "
                "is nothing to analyse here; widen or clear the filter."
            )
        return str(exc)

    def _with_shared(self, options: dict) -> dict:
        """``options`` with the bar-level controls' current values where a name matches."""
        merged = dict(options)
        for name, value in self._shared.items():
            if name in merged:
                widget = self._shared_inputs.get(name)
                start = _plain(value)
                merged[name] = start if widget is None else _control_value(widget, start)
        return merged

    def _rerender_all(self) -> None:
        total = len(self._sections)
        for i, section in enumerate(self._sections, start=1):
            self._refresh_status(updating=f"updating section {i} of {total}…")
            self._render(section)
        self._refresh_status()

    def _render(self, section: _Section) -> None:
        options = self._with_shared(section.options)
        for name, widget in section.inputs.items():
            options[name] = _control_value(widget, section.options[name])
        try:
            bundles = self._compute(section.view, options)
        except Exception as exc:  # noqa: BLE001 - keep the dashboard alive, show why
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            bundles = render_items([f"> **This section failed:** `{detail}`"])
        # Setting the outputs at once (rather than printing into the widget) replaces the
        # section in one step and works from widget callbacks in any kernel.
        section.output.outputs = tuple(
            {"output_type": "display_data", "data": data, "metadata": meta}
            for data, meta in bundles
        )

    def _control(self, name: str, value):
        ipw = _require_ipywidgets()
        label = name.replace("_", " ")
        style = {"description_width": "initial"}
        if isinstance(value, Choice):
            widget = ipw.Dropdown(options=list(value.options), value=value.value, description=label)
        elif isinstance(value, bool):
            widget = ipw.Checkbox(value=value, description=label)
        elif isinstance(value, int):
            widget = ipw.IntText(value=value, description=label, style=style)
        elif isinstance(value, float):
            widget = ipw.FloatText(value=value, description=label, style=style)
        elif isinstance(value, str) and _ISO_DATE.match(value):
            widget = ipw.DatePicker(value=pd.Timestamp(value).date(), description=label)
        else:
            widget = ipw.Text(value=str(value), description=label, continuous_update=False)
        widget.add_class(f"pw-control-{name}")
        return widget

    def _build_widget(self):
        if self._widget is not None:
            return self._widget
        ipw = _require_ipywidgets()
        children = []
        if self.date_column is not None:
            col = self._base.opportunities[self.date_column]
            for key, label in (("start", "from"), ("end", "to")):
                picker = ipw.DatePicker(description=label, value=None)
                picker.add_class(f"pw-filter-{key}")
                picker.observe(
                    lambda change, k=key: self.set_filters(
                        **{k: None if change["new"] is None else change["new"].isoformat()}
                    ),
                    names="value",
                )
                children.append(picker)
            if col.notna().any():
                label = self.date_column.replace("_", " ")
                span = f"{label}: {col.min():%Y-%m-%d} to {col.max():%Y-%m-%d}"
                children.append(ipw.HTML(f"<small>{span}</small>"))
        for column in self.segments:
            values = self._base.opportunities[column].dropna().astype(str).unique()
            values = sorted(values)[:_MAX_OPTIONS]
            start = self._filters[column]
            label = _ALL if start is None else _label(start)
            lookup = {label: start}  # a starting filter may be a list or an absent value
            if label not in (_ALL, *values):
                values.insert(0, label)
            dropdown = ipw.Dropdown(
                options=[_ALL, *values], value=label, description=column.replace("_", " ")
            )
            dropdown.add_class(f"pw-filter-{column}")
            dropdown.observe(
                lambda change, c=column, lookup=lookup: self.set_filters(
                    **{
                        c: None
                        if change["new"] == _ALL
                        else lookup.get(change["new"], change["new"])
                    }
                ),
                names="value",
            )
            children.append(dropdown)
        for name, value in self._shared.items():
            widget = self._control(name, value)
            widget.observe(lambda _change: self._rerender_all(), names="value")
            self._shared_inputs[name] = widget
            children.append(widget)
        self._status = ipw.HTML()
        self._status.add_class("pw-filter-status")
        self._refresh_status()
        bar = ipw.HBox(children, layout=ipw.Layout(flex_flow="row wrap"))
        self._widget = ipw.VBox([bar, self._status])
        self._widget.add_class("pw-filter-bar")
        return self._widget

    def _refresh_status(self, *, updating: str | None = None) -> None:
        if self._status is None:
            return
        shown = len(self.dataset.opportunities)
        total = len(self._base.opportunities)
        active = [f"{k} {_label(v)}" for k, v in self._filters.items() if v is not None]
        what = "; ".join(active) if active else "no filter"
        busy = f" <b>{updating}</b>" if updating else ""
        self._status.value = (
            f"<small>Showing {shown:,} of {total:,} opportunities ({what}).{busy}</small>"
        )


def _label(value) -> str:
    """A filter value as text: lists joined by " or "."""
    if isinstance(value, list | tuple | set):
        return " or ".join(map(str, value)) if value else "(no value)"
    return str(value)


def _check_filters(filters, opps: pd.DataFrame, *, date_column: str | None) -> dict:
    """Starting filters checked against the opportunities' columns (lists become tuples)."""
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise ValueError(
            f"filters must map opportunity columns to values, e.g. {{'team': 'EMEA'}}; "
            f"got {filters!r}"
        )
    columns = [c for c in opps.columns if not str(c).startswith("_")]
    out: dict = {}
    for key, value in filters.items():
        if key in ("start", "end"):
            if value is None:
                continue
            if date_column is None:
                raise ValueError(
                    f"filters: {key!r} needs a date range, and this bar has none "
                    "(date_column is None or absent from the opportunities)"
                )
            out[key] = to_timestamp(value, name=key).date().isoformat()
        elif key not in opps.columns:
            raise ValueError(
                f"filters: the opportunities have no column {key!r}; filter on one of "
                f"{', '.join(columns)}"
            )
        elif isinstance(value, list | tuple | set):
            out[key] = tuple(value)
        else:
            out[key] = value
    return out


def _control_value(widget, original):
    value = widget.value
    if isinstance(original, str) and _ISO_DATE.match(original):
        return original if value is None else value.isoformat()
    if isinstance(original, bool):
        return bool(value)
    if isinstance(original, int) and not isinstance(original, bool):
        return int(value)
    if isinstance(original, float):
        return float(value)
    return value
