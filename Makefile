# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
DEMO_ENTRIES ?= 2000

.PHONY: run test lint typecheck imports unit bench bench-http clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/timebank migrate
	$(BIN)/timebank seed --demo --if-empty --entries $(DEMO_ENTRIES)
	$(BIN)/timebank serve --host $(HOST) --port $(PORT)

test: lint typecheck imports unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

imports: $(VENV)/.installed-dev
	$(BIN)/lint-imports

unit: $(VENV)/.installed-dev
	$(BIN)/pytest -n 2 --dist loadgroup

bench: $(VENV)/.installed-dev
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/append.py

# HTTP throughput against the framework's ceiling (wrk from Debian; see benchmarks/README.md)
bench-http: $(VENV)/.installed-dev
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(BIN)/python benchmarks/http.py $(BENCH_HTTP_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
