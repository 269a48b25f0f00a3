# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck docs pytest bench bench-planners clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

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
pytest: $(STAMP)
	$(BIN)/pytest -q -n 2

test: lint typecheck docs pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulator.py

bench-planners: $(STAMP)
	$(BIN)/python benchmarks/bench_planners.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
