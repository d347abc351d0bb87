# The two commands of the README: `make demo` (the main job) and `make test`.
# Each installs what it needs into .venv on first use (and again when a pyproject or the
# constraints change); both are idempotent.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit schemas bench mutation clean

$(STAMP): pyproject.toml plugins/twilio_sms/pyproject.toml plugins/scale/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]" -e "plugins/twilio_sms[test]" -e "plugins/scale[redis,nats]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/messaging demo

test: $(STAMP) lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict plugins/twilio_sms/src/messaging_twilio_sms
	$(BIN)/mypy --strict plugins/scale/src/messaging_scale

unit: $(STAMP)
	$(BIN)/pytest

schemas: $(STAMP)
	$(BIN)/messaging schema export schemas

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Mutation testing of one module, by hand (never part of `make test`): mutmut mutates MODULE, runs
# the tests of its distribution against each mutant and adds a dated row to
# benchmarks/results/mutation.md. Bounded: MAX_CHILDREN parallel mutants, stopped after MINUTES.
# TESTS narrows the tests run (default: the module's test tree). See docs/contributing.md.
#   make mutation MODULE=plugins/twilio_sms/src/messaging_twilio_sms/segments.py
MODULE ?=
TESTS ?=
MAX_CHILDREN ?= 2
MINUTES ?= 25
LABEL ?=
mutation: $(STAMP)
	@test -n "$(MODULE)" || { echo "usage: make mutation MODULE=path/to/module.py [TESTS=...] [LABEL=after] [MAX_CHILDREN=2] [MINUTES=25]"; exit 2; }
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[mutation]"
	$(BIN)/python -m benchmarks.mutation $(MODULE) --max-children $(MAX_CHILDREN) --minutes $(MINUTES) --label "$(LABEL)" $(if $(TESTS),--tests $(TESTS))

clean:
	rm -rf $(VENV)
