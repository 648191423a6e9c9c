# One-command set-up: every target installs what it needs into .venv first.
# CPU machines use constraints-cpu.txt (CPU torch wheel); GPU machines: `make install GPU=1`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := $(if $(GPU),,-c constraints-cpu.txt)
EXTRAS ?= test,lint

.PHONY: install test test-quick tiny-benchmark bench-overhead bench-input lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $@

# The whole suite (what CI runs).
test: install
	$(BIN)/pytest -n 2 --timeout=900 tests

# Daily work: everything but the slow end-to-end runs.
test-quick: install
	$(BIN)/pytest -n 2 --timeout=300 -m "not slow" tests

# The main job: baselines on the _tiny tier, then scores and a performance-profile plot.
tiny-benchmark: install
	$(BIN)/algoperf benchmark --output_dir=experiments/tiny_benchmark

# Harness overhead: runner vs a bare PyTorch loop (results in benchmarks/results/).
bench-overhead: install
	$(BIN)/python -m benchmarks.runner_overhead

# Input pipeline: loader batches/s vs training steps/s per workload (results in benchmarks/results/).
bench-input: install
	$(BIN)/python -m benchmarks.input_pipeline

lint: install
	$(BIN)/ruff check algoperf workloads submissions scoring tests benchmarks

clean:
	rm -rf $(VENV) experiments .pytest_cache
