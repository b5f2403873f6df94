# Two-command quick start:  make demo  |  make test  (which runs make lint first: ruff)
# torch is pinned (constraints.txt) and installed first, so setup never pulls CUDA wheels by accident.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
DEMO_CONFIG ?= configs/demo-decoys.yaml
# the derived corpus DEMO_CONFIG reads (`acodm corpus derive`): the bundled one plus 7 decoy domains
DEMO_CORPUS ?= swamped

.PHONY: setup demo lint test test-fast corpus derive prepare clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $@

setup: $(VENV)/.installed

corpus: setup
	$(VENV)/bin/acodm corpus build

derive: corpus  # the demo's setting: the bundled corpus plus decoy domains (offline, seconds)
	$(VENV)/bin/acodm corpus derive $(DEMO_CORPUS)

prepare: derive  # the demo's corpus as token shards (a Ray Data job; seconds once done)
	$(VENV)/bin/acodm corpus prepare --config $(DEMO_CONFIG)

demo: prepare
	$(PY) jobs/proxy_rl.py --config $(DEMO_CONFIG) --overwrite

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

test: setup lint
	$(VENV)/bin/pytest -q --durations=25  # the slowest tests, so CI logs show where its time goes

# The tests that start neither Ray nor a job (tests/conftest.py marks those slow, and checks it)
test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow and not network" --durations=10

clean:
	rm -rf $(VENV) runs results
