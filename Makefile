# sudo make lab   : install what is missing, then start tcpsh in its private lab
# sudo make test  : install what is missing, then run every test
.PHONY: setup lab test test-core lint bench clean completions

VENV := .venv
PY   := $(VENV)/bin/python

setup:
	@scripts/setup.sh

lab: setup
	$(VENV)/bin/tcpsh --lab

test: setup
	$(PY) -m ruff check stack tcpsh tests scripts
	$(PY) -m pytest

test-core: setup
	$(PY) -m pytest tests/wire tests/core

lint: setup
	$(PY) -m ruff check stack tcpsh tests scripts

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build *.egg-info

# Shell completion for the tcpsh command line, generated from its argument parser (tcpsh/completion.py).
completions: setup
	$(PY) -m tcpsh.completion completions
