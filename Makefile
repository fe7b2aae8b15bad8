# The README's commands. Each target creates the project's own environment (.venv) and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# mosaicml-streaming pins numpy<2.2 and transformers<5, so the MDS tests get an environment of their own.
MDS_VENV := build/venv-mds
MDS_STAMP := $(MDS_VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test test-mds stress-tests bench bench-smoke clean

$(STAMP): pyproject.toml
	@echo "setting up $(VENV): wwm-prep and its dependencies (first run only; about a minute)…"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,plot]'
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/wwm-prep demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

$(MDS_STAMP): pyproject.toml
	@echo "setting up $(MDS_VENV): wwm-prep with mosaicml-streaming, apart from $(VENV) (first run only; a few minutes)…"
	$(PYTHON) -m venv $(MDS_VENV)
	$(MDS_VENV)/bin/python -m pip install -q --no-compile -e '.[mds]' pytest hypothesis
	rm -f $(MDS_VENV)/.installed-* && touch $@

# The tests that start processes, 5 rounds with every core busy: they must wait for events, never for time.
stress-tests: $(STAMP)
	bash scripts/stress_tests.sh 5

test-mds: $(MDS_STAMP)
	$(MDS_VENV)/bin/python -m pytest -q -m mds tests/export

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_segment.py
	$(BIN)/python benchmarks/tech_corpus.py build/tech-corpus
	$(BIN)/python benchmarks/bench_segment.py --corpus build/tech-corpus
	$(BIN)/python benchmarks/bench_workers.py
	$(BIN)/python benchmarks/bench_chunks.py
	$(BIN)/python benchmarks/bench_parquet.py
	$(BIN)/python benchmarks/scaling_table.py
	$(BIN)/python benchmarks/bench_pack.py
	$(BIN)/python benchmarks/bench_pack_workers.py
	$(BIN)/python benchmarks/bench_collator.py
	$(BIN)/python benchmarks/bench_export.py --mds-python $(MDS_VENV)/bin/python
	$(BIN)/python benchmarks/bench_segmentation_choices.py
	$(BIN)/python benchmarks/bench_contract.py
	$(BIN)/python benchmarks/bench_ray_memory.py

# Every benchmark with --smoke (a tiny input, one pass): that each runs to its end, as `make test` checks too.
bench-smoke: $(STAMP)
	$(BIN)/python -m pytest -q tests/test_benchmarks.py

clean:
	rm -rf $(VENV) out
