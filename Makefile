# sudo make lab   : install what is missing, then start tcpsh in its private lab
# sudo make test  : install what is missing, then run every test
# sudo make bench : install what is missing, then the benchmark beside Linux's TCP (docs/benchmarks.md)
.PHONY: setup lab test test-core lint bench clean completions

VENV := .venv
PY   := $(VENV)/bin/python

setup:
	@scripts/setup.sh

lab: setup
	$(VENV)/bin/tcpsh --lab

test: setup
	$(PY) -m ruff check stack tcpsh tests scripts bench
	$(PY) -m pytest

test-core: setup
	$(PY) -m pytest tests/wire tests/core

lint: setup
	$(PY) -m ruff check stack tcpsh tests scripts bench

# Builds labs of its own; prints the table, writes build/bench.json, build/bench.md and the profiles, and
# records the table in docs/benchmarks.md. BENCH_ARGS adds options: make bench BENCH_ARGS="--only bulk".
BENCH_ARGS ?=
bench: setup
	$(PY) -m bench --record docs/benchmarks.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info

# Shell completion for the tcpsh command line, generated from its argument parser (tcpsh/completion.py).
completions: setup
	$(PY) -m tcpsh.completion completions
