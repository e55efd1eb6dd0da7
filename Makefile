# `make demo` and `make test` set up .venv on first use (idempotent), then run.
VENV   ?= .venv
PYTHON ?= python3
CORES  ?= all
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

# The CPU wheel of torch is pinned here; pyproject keeps a range for GPU clusters.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/python -m pytest tests

bench: setup
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_phi.py
	$(BIN)/python benchmarks/bench_kmeans.py
	$(BIN)/python benchmarks/bench_sample.py
	$(BIN)/python benchmarks/bench_dag.py

clean:
	rm -rf results .snakemake
