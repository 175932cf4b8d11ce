# Two commands: `make run` (set up, then the demo) and `make test` (set up, lint, the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench setup clean mutate revision

$(STAMP): pyproject.toml $(wildcard examples/*/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]" $(foreach d,$(wildcard examples/*/pyproject.toml),-e $(dir $(d)))
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/herald demo --serve

lint: $(STAMP)
	$(BIN)/ruff check engine plugins service tests benchmarks examples

test: lint
	$(BIN)/pyright --pythonpath $(BIN)/python
	$(BIN)/python -m pytest

# mutation testing (mutmut) of the evaluators, rule loader, pipeline, sms and coupon; scores in tests/MUTATION.md
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[mutate]"
	$(BIN)/python tests/mutation_scores.py

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

# a new Alembic migration from the table models: make revision MSG="what changed"
revision: $(STAMP)
	$(BIN)/python -c "import sys; from alembic import command; from service.storage.db import alembic_config; cfg = alembic_config('sqlite:///' + sys.argv[2]); command.upgrade(cfg, 'head'); command.revision(cfg, message=sys.argv[1], autogenerate=True, rev_id=sys.argv[3])" "$(MSG)" "$$(mktemp -d)/rev.db" "$$(printf '%04d' $$(( $$(ls service/storage/migrations/versions/[0-9]*.py | wc -l) + 1 )))"
