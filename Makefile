# One-command set-up: every target installs what it needs into .venv first.
# CPU machines use constraints-cpu.txt (CPU torch wheel); GPU machines: `make install GPU=1`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS := $(if $(GPU),,-c constraints-cpu.txt)
EXTRAS ?= test,lint,tracking,cluster,jax

.PHONY: install test test-quick suite tiny-benchmark bench-overhead bench-input bench-jax docker-build lint clean

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

# The main job: every shipped baseline on every _tiny workload, trials in parallel worker
# processes, then scores and a performance-profile plot. Re-running resumes a partial suite.
suite: install
	$(BIN)/algoperf suite --output_dir=experiments/tiny_suite

# The smaller benchmark: first-order baselines on mnist_tiny, 3 studies x 3 trials, in-process.
tiny-benchmark: install
	$(BIN)/algoperf benchmark --output_dir=experiments/tiny_benchmark

# Harness overhead: runner vs a bare PyTorch loop (results in benchmarks/results/).
bench-overhead: install
	$(BIN)/python -m benchmarks.runner_overhead

# Input pipeline: loader batches/s vs training steps/s per workload (results in benchmarks/results/).
bench-input: install
	$(BIN)/python -m benchmarks.input_pipeline

# JAX vs PyTorch: each tiny workload's NAdamW step and JAX's compile time (results in
# benchmarks/results/).
bench-jax: install
	$(BIN)/python -m benchmarks.jax_vs_pytorch

# Docker images algoperf:cpu and algoperf:cuda (needs a Docker engine).
docker-build:
	docker/build.sh all

lint: install
	$(BIN)/ruff check algoperf workloads submissions scoring tests benchmarks

clean:
	rm -rf $(VENV) experiments .pytest_cache
