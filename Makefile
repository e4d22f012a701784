# Two commands do everything: `make run CONFIG=...` and `make test`.
# The virtualenv is (re)built whenever pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/example.yaml
ARGS ?=

.PHONY: venv run serve report view soak test lint fmt bench bench-view clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m runner run $(CONFIG) $(ARGS)

serve: $(STAMP)
	$(BIN)/python -m runner serve $(ARGS)

# make report RUN=results/example: print the analysis, write RUN/report.html (runs nothing)
RUN ?= results/example
report: $(STAMP)
	$(BIN)/python -m runner report $(RUN) $(ARGS)

# make view [RESULTS=results] [ARGS="--port 8710"]: browse the runs in a local web app
# (read-only, 127.0.0.1 only unless ARGS has --host)
RESULTS ?= results
view: $(STAMP)
	$(BIN)/python -m runner view $(RESULTS) $(ARGS)

# make soak: a sweep against a local API with every fault on; prints lost/duplicated (must be 0)
soak: $(STAMP)
	$(BIN)/python -m runner.soak --json results/soak.json $(ARGS)

# make bench [ARGS=--quick|--full|"--only saturation,overhead"]: the load benchmark; prints one
# table, writes results/bench/*.json (about 11 minutes on 2 cores; --full: the issue's sizes)
bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

# make bench-view: the viewer's page times and RSS on a synthetic 100,000-job run
# (prints a table, writes results/bench/view.json; about 20 seconds)
bench-view: $(STAMP)
	$(BIN)/python -m bench.view $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check runner tests bench
	$(BIN)/ruff format --check runner tests bench
	$(BIN)/mypy runner

fmt: $(STAMP)
	$(BIN)/ruff format runner tests bench
	$(BIN)/ruff check --fix runner tests bench

# lint first: ruff (check and format) and mypy are part of green, as the design asks
test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
