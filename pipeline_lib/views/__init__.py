"""Report sections: glue that computes, formats and draws one section of a notebook.

A view is ``view(ds, *, as_of, **options) -> list`` of displayable items (Markdown,
pandas Styler, matplotlib Figure, str). It calls the analysis module for numbers,
:mod:`pipeline_lib.formatting` for tables and :mod:`pipeline_lib.plotting` for figures;
it holds no computation of its own. :class:`pipeline_lib.widgets.FilterBar` shows views
statically in a Papermill report and re-renders them when a filter changes under Voila.
One module per notebook.
"""
