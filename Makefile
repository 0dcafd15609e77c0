# `make run`: create the environment and run the main job on the embedded default.
# `make test`: create the environment and run the whole test suite (what CI runs).
# `make device-check`: on the accelerator machine only (its own python3 and JAX): the
#   wheels in .whl/ (see experiments/device_check.py) into /tmp/site, then the checks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdir/default

.PHONY: run test env env-test clean device-check

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

device-check:
	@ls .whl/*.whl >/dev/null 2>&1 || { echo "no wheels in .whl/: see experiments/device_check.py"; exit 1; }
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
	    --target /tmp/site .whl/*.whl
	PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 python3 -m experiments.device_check $(ARGS)

clean:
	rm -rf $(VENV) workdir
