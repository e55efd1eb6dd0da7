# `make demo` and `make test` set up .venv on first use (idempotent), then run.
VENV   ?= .venv
PYTHON ?= python3
CORES  ?= all
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# The run's folder, results/<name>/: name as config.yaml sets it.
NAME   := $(shell sed -n 's/^name: *\([^ #]*\).*/\1/p' config.yaml)
REPORT := results/$(NAME)/report.html

.PHONY: setup demo readme test bench report-screenshots explorer-screenshots clean

setup: $(STAMP)

# The CPU wheel of torch is pinned here; pyproject keeps a range for GPU clusters.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The run, then its report: one self-contained HTML file (a .zip would be the other choice).
demo: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report $(REPORT)

# After `make demo`: keep its findings and time per rule in benchmarks/runs/ and rewrite the generated
# blocks of README.md and docs/ from them (tests/test_readme.py checks them against what is kept).
readme: setup
	$(BIN)/python benchmarks/readme_runs.py --write $(NAME) --command "make demo" --time

# For a person to look at: a PNG of each page of the report (headless Chromium; Debian: apt-get install chromium).
report-screenshots: setup
	$(BIN)/python benchmarks/report_screenshots.py $(REPORT) results/$(NAME)/report_screenshots

# The same for the φ explorer, used as a person uses it (Selenium; Debian: apt-get install chromium chromium-driver).
explorer-screenshots: setup
	$(BIN)/python benchmarks/explorer_screenshots.py results/$(NAME)/explorer.html results/$(NAME)/explorer_screenshots

test: setup
	$(BIN)/python -m pytest tests

bench: setup
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_phi.py
	$(BIN)/python benchmarks/bench_kmeans.py
	$(BIN)/python benchmarks/bench_sample.py
	$(BIN)/python benchmarks/bench_dag.py
	$(BIN)/python benchmarks/bench_study.py
	$(BIN)/python benchmarks/bench_explorer.py

clean:
	rm -rf results .snakemake
