# Sales Pipeline Workbench — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PARAMS ?= notebooks/params/default.yaml

.PHONY: run test demo dashboards lab lint format clean help bench

help:
	@echo "make run    create the environment if needed, build the demo data, run the full report"
	@echo "make test   run the whole test suite"
	@echo "make demo   (re)build the demo data if missing or stale"
	@echo "make dashboards  serve the published notebooks with Voila on http://127.0.0.1:8866"
	@echo "make lab    open JupyterLab on the project (analysts)"
	@echo "make lint   ruff check + format check"
	@echo "make bench  benchmarks (10k/100k/1M, 3 repeats; BENCH_ARGS='--scales 10k --repeat 1' for a subset)"

# The environment is rebuilt when missing, broken, or older than pyproject.toml.
$(STAMP): pyproject.toml
	@if ! $(BIN)/python -c "import sys" >/dev/null 2>&1; then \
		echo "creating $(VENV)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pipeline_lib demo

run: $(STAMP) demo
	$(BIN)/python -m pipeline_lib run --params $(PARAMS)

# Voila settings: notebooks/voila.json. PARAMS is injected into every dashboard.
dashboards: $(STAMP) demo
	$(BIN)/python -m pipeline_lib dashboards --params $(PARAMS)

lab: $(STAMP) demo
	$(BIN)/jupyter lab --ServerApp.root_dir=$(CURDIR) --ServerApp.ip=127.0.0.1

test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile

# Benchmarks of issue 8 (not part of make test): results in benchmarks/results.json and
# benchmarks/README.md. `python benchmarks/run.py --help` lists the options.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pipeline_lib tests notebooks
	$(BIN)/ruff format --check pipeline_lib tests notebooks

format: $(STAMP)
	$(BIN)/ruff format pipeline_lib tests notebooks
	$(BIN)/ruff check --fix pipeline_lib tests notebooks

clean:
	rm -rf $(VENV) data/demo reports/20* reports/latest .pytest_cache build
