# siprec-bridge developer entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench fixtures test-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

## Run the demo: consumer + bridge + replay of the bundled pcaps; output in out/demo/
demo: $(STAMP)
	$(VENV)/bin/siprec-bridge demo --out out/demo

## Install what the tests need (venv, SIPp, stunnel4) and run them
test: $(STAMP) test-deps
	$(PY) -m pytest

test-deps:
	bash scripts/install-test-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) bench/bench_leg.py
	$(PY) bench/bench_srtp.py
	$(PY) bench/bench_audio.py
	$(PY) bench/bench_calls.py

## Regenerate the pcap fixtures (deterministic)
fixtures: $(STAMP)
	$(PY) -m siprec_bridge.fixtures pcaps

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
