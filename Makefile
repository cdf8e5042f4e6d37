# The two commands a newcomer needs: `make demo` (run the live system) and `make test` (the whole suite).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo setup setup-dev test lint unit format clean bench

demo: setup
	$(BIN)/equilibrate up

setup:
	@bash scripts/setup.sh runtime

setup-dev:
	@bash scripts/setup.sh dev

test: setup-dev lint
	$(BIN)/pytest -q

unit: setup-dev
	$(BIN)/pytest -q -m "not integration and not slow"

# The benchmark suite (~15 min): writes bench/results/*.json and the README's benchmark table.
bench: setup-dev
	$(BIN)/python bench/run_all.py

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
