# `make run`: create the environment and run the main job on the embedded default.
# `make test`: create the environment and run the whole test suite (what CI runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdir/default

.PHONY: run test env env-test clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

env: $(VENV)/.installed
env-test: $(VENV)/.installed-test

run: env
	$(PY) -m experiments.main --workdir $(WORKDIR)

test: env-test
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -n 2 tests

clean:
	rm -rf $(VENV) workdir
