# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck docs pytest bench bench-planners clean

# The independent OCPP 1.6 station (tests/test_ocpp16_node_client.py) is a Node.js client:
# its npm packages, exactly as locked, wherever node is installed (without node the test is
# skipped; with node it must run, so a failing install fails the build).
NODE_CLIENT := tests/node_ocpp16
NODE_STAMP := $(NODE_CLIENT)/node_modules/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# numba compiles the planners' kernels on their first call and caches them beside
	@# the sources: a tiny day now, so that the first run does not wait about a minute.
	warm=$$(mktemp -d) && $(BIN)/v2ghub simulate --vehicles 10 --cities Shenzhen --quiet \
		--out "$$warm/out"; status=$$?; rm -rf "$$warm"; exit $$status
	touch $(STAMP)

$(NODE_STAMP): $(NODE_CLIENT)/package-lock.json
	@if command -v node >/dev/null 2>&1; then \
		cd $(NODE_CLIENT) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else \
		echo "node is not installed: the Node.js OCPP 1.6 client test will be skipped" >&2; \
	fi

run: $(STAMP)
	$(BIN)/v2ghub simulate

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy

# The documentation site, built strictly (a broken reference fails), into a scratch folder.
docs: $(STAMP)
	site=$$(mktemp -d) && $(BIN)/mkdocs build --strict --quiet --site-dir "$$site"; \
	status=$$?; rm -rf "$$site"; exit $$status

# Both cores: pytest-xdist.
pytest: $(STAMP) $(NODE_STAMP)
	$(BIN)/pytest -q -n 2

test: lint typecheck docs pytest

# Throughput in connected vehicle-steps, the whole process beside the core, then the same
# days on EV2Gym and acnportal (installed once into their own venv, from PyPI).
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulator.py
	$(BIN)/python benchmarks/bench_peers.py

bench-planners: $(STAMP)
	$(BIN)/python benchmarks/bench_planners.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache $(NODE_CLIENT)/node_modules
