# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.facefit-installed

.PHONY: demo demo-full test test-slow test-all install lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo's final table comes from this suite (the Korean validation pairs and LFW in ../shared/data).
DEMO_SUITE ?= suites/demo.yaml
# suites/demo.yaml reads ../shared/data; with the data elsewhere ($FACEFIT_DATA) the demo finds the same
# two benchmarks in the data folder itself.
DEMO_SUITE_ARG := $(if $(wildcard ../shared/data/kfamily),--suite $(DEMO_SUITE),)

demo: $(STAMP)
	$(BIN)/facefit demo $(DEMO_SUITE_ARG) $(DEMO_ARGS)

demo-full: $(STAMP)
	$(BIN)/facefit demo $(DEMO_SUITE_ARG) --train-minutes 30 $(DEMO_ARGS)

# The everyday suite (under 10 minutes on 2 cores); CI also runs the slow tests.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests

bench: $(STAMP)
	$(BIN)/facefit bench embed

clean:
	rm -rf out .pytest_cache
