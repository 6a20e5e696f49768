"""Sales Pipeline Workbench: the shared helper package behind the notebooks.

Analyses are pure functions over canonical DataFrames; only :mod:`pipeline_lib.io`
and :mod:`pipeline_lib.sources` read data files, and only the report runner
(:mod:`pipeline_lib.report` and the modules it drives: ``execution``, ``html_export``,
``manifest``, ``publishing``) writes reports.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
