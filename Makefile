# Two commands do everything: `make run CONFIG=...` and `make test`.
# `make run` builds a light venv, the run-time lock only; `make test` adds the test lock (the
# run-time lock plus the test, lint, notebook, Ray and docs tools). The venv is rebuilt from
# scratch whenever pyproject.toml or a lock it holds changes; `make lock` regenerates the locks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the main dependencies and the build backend, pinned with hashes: what `make run` installs
LOCK := requirements.lock
STAMP := $(VENV)/.installed
# a superset: LOCK's packages at the same versions plus every extra (test, notebook, ray, docs)
TEST_LOCK := requirements-test.lock
TEST_STAMP := $(VENV)/.installed-test
# LOCK plus one extra, same versions again: `make ray` (for `run --ray`), `make notebook`
RAY_LOCK := requirements-ray.lock
NOTEBOOK_LOCK := requirements-notebook.lock
# the installer and the lock tool are pinned too (pip-tools follows pip's internals)
PIP := pip==26.3
PIP_TOOLS := pip-tools==7.6.2
LOCK_VENV := .venv-lock
# make lock LOCK_ARGS=--upgrade (every pin to its newest release) or LOCK_ARGS="--upgrade-package X"
LOCK_ARGS ?=
CONFIG ?= configs/example.yaml
ARGS ?=

.PHONY: venv venv-test lock schema run serve report view soak test lint fmt bench bench-view \
	clean js-sdk docs docs-check ray notebook

venv: $(STAMP)
venv-test: $(TEST_STAMP)

# from scratch, so a package dropped from the lock leaves the venv too; the project itself
# goes in without dependencies and without build isolation (its backend is in the lock)
FRESH_VENV = rm -rf $(VENV) && $(PYTHON) -m venv $(VENV) \
	&& $(BIN)/python -m pip install --quiet '$(PIP)' \
	&& $(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK) \
	&& $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e . \
	&& touch $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	$(FRESH_VENV)

# the test lock on top of a current run-time venv; from scratch when the venv is not current
# or held an older test lock (so nothing dropped from either lock stays behind)
$(TEST_STAMP): pyproject.toml $(LOCK) $(TEST_LOCK)
	if [ -f $@ ] || [ ! -f $(STAMP) ] || [ $(STAMP) -ot pyproject.toml ] \
		|| [ $(STAMP) -ot $(LOCK) ]; then $(FRESH_VENV); fi
	$(BIN)/python -m pip install --quiet --require-hashes -r $(TEST_LOCK)
	touch $@

# one extra into the venv, hash-checked (gone with the next rebuild: run it again then)
$(VENV)/.extra-%: $(STAMP) requirements-%.lock
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-$*.lock
	touch $@

# make ray: Ray, for `run --ray` (docs/sharding.md)
ray: $(VENV)/.extra-ray

# make notebook: JupyterLab and what notebooks/pass_rates.ipynb needs (docs/analysis.md)
notebook: $(VENV)/.extra-notebook
	@echo "open it:  $(BIN)/jupyter lab notebooks/pass_rates.ipynb"
	@echo "run it:   $(BIN)/jupyter execute notebooks/pass_rates.ipynb"

# pip-compile resolves with pip and so with this machine's pip configuration (indexes,
# find-links); the locks name no index, so installing one uses the installing machine's.
# Without LOCK_ARGS it keeps the test lock's pins and only resolves what pyproject.toml changed;
# the other locks are resolved within the test lock's pins, so all four agree on every version.
COMPILE = $(LOCK_VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe \
	--all-build-deps --no-emit-index-url --no-emit-find-links
lock: $(LOCK_VENV)/.installed
	$(COMPILE) --all-extras --output-file $(TEST_LOCK) $(LOCK_ARGS) pyproject.toml
	$(COMPILE) --upgrade --constraint $(TEST_LOCK) --output-file $(LOCK) pyproject.toml
	$(COMPILE) --upgrade --constraint $(TEST_LOCK) --extra ray --output-file $(RAY_LOCK) \
		pyproject.toml
	$(COMPILE) --upgrade --constraint $(TEST_LOCK) --extra notebook \
		--output-file $(NOTEBOOK_LOCK) pyproject.toml

$(LOCK_VENV)/.installed:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet '$(PIP)' '$(PIP_TOOLS)'
	touch $@

# the config's JSON Schema, for editors (tests/test_config_schema.py checks it is current)
schema: $(STAMP)
	$(BIN)/python -m runner schema > configs/config.schema.json.tmp
	mv configs/config.schema.json.tmp configs/config.schema.json

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
soak: $(TEST_STAMP)
	$(BIN)/python -m bench.soak --json results/soak.json $(ARGS)

# make bench [ARGS=--quick|--full|"--only saturation,shards"]: the load benchmark; prints one
# table, writes results/bench/*.json (about 12 minutes on 2 cores, of which the shards section
# on a local Ray cluster about 3; --full: the issue's sizes)
bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(ARGS)

# make bench-view: the viewer's page times and RSS on a synthetic 100,000-job run, finished
# and in progress (500 part files) side by side (prints a table, writes
# results/bench/view.json; about a minute). ARGS="--against c5549d6 [--rounds N]": this checkout
# beside that commit in alternating rounds, each page and the RSS within 10% or not
# (results/bench/view-ab.json; about 6 minutes at the default 3 rounds)
bench-view: $(TEST_STAMP)
	$(BIN)/python -m bench.view $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check runner tests bench notebooks docs/gen.py
	$(BIN)/ruff format --check runner tests bench notebooks docs/gen.py
	$(BIN)/mypy runner
	$(BIN)/lint-imports --no-cache

fmt: $(TEST_STAMP)
	$(BIN)/ruff format runner tests bench notebooks docs/gen.py
	$(BIN)/ruff check --fix runner tests bench notebooks docs/gen.py

# make docs: regenerate the docs' generated blocks (docs/gen.py: the table schemas from
# runner/schema.py, the config keys from the JSON Schema) and build the site into site/
# (gitignored; open site/index.html)
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs
docs: $(TEST_STAMP)
	$(BIN)/python docs/gen.py
	$(MKDOCS) build --strict --quiet --site-dir site

# the docs as `make test` checks them, regenerating nothing: a broken link or anchor, a page
# left out of the nav or a stale generated block (the hook in docs/gen.py) fails the build
docs-check: $(TEST_STAMP)
	$(MKDOCS) build --strict --quiet --site-dir site

# the official JS SDK, pinned by tests/js/package-lock.json, for tests/test_js_sdk.py (which
# fails, not skips, without node or this install)
JS_SDK := tests/js/node_modules/.package-lock.json
js-sdk: $(JS_SDK)

$(JS_SDK): tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund

# lint first: ruff (check and format) and mypy are part of green, as the design asks; then
# the docs, built strictly; then the suite on every core (pytest-xdist, a test file per worker)
test: lint docs-check $(JS_SDK)
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache .mypy_cache .ruff_cache site
