# Two entry points, each self-sufficient on a fresh machine with Python 3.11+:
#   make demo   trains a reference victim, simulates benign and attack clients, prints verdicts
#   make test   runs the whole test suite (doctests included; the notebooks are executed and
#               their committed outputs checked)
#   make test-fast  the same without the tests marked slow (the edit loop)
#   make test-real-servers  the proxy in front of real MLflow and KServe (installs them once)
#   make notebooks  re-executes the notebooks in place (commit them with their outputs)
#   make bench  every benchmark in quick mode, one after another (under 10 minutes on 2 cores);
#               results in benchmarks/results/quick/, a one-line summary per script and the total
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-real-servers lint bench notebooks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/extraction-monitor demo

test: $(STAMP)
	$(BIN)/python -m pytest monitor victims attacks tests

# the quick loop while editing: everything but the tests marked slow (tests/unit, tests/serving,
# tests/integration are the three rooms; pass one of them to run it alone)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" monitor victims attacks tests

# the proxy in front of real MLflow and KServe servers (installs them into ~/.cache once)
test-real-servers: $(STAMP)
	EXTRACTION_MONITOR_REAL_SERVERS=1 $(BIN)/python -m pytest tests/serving/test_real_servers.py

lint: $(STAMP)
	$(BIN)/ruff check .

notebooks: $(STAMP)
	$(BIN)/python notebooks/execute.py

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
