"""``python -m pipeline_lib``: the ``pipeline-workbench`` command line."""

from pipeline_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
