# The README's two commands. Each one sets up what it needs: a .venv with the pinned dependencies.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Penn Treebank and TinyShakespeare: ../shared/data in this repository's checkouts, else the cache.
export TUNELAB_DATA ?= $(abspath $(wildcard ../shared/data))

.PHONY: demo test test-fast setup clean

demo: $(VENV)/.installed
	$(BIN)/tunelab run spaces/ptb_smoke.yaml --name ptb-smoke-$(shell date +%Y%m%d-%H%M%S)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed  ## while editing: skip the tests that train or start Ray
	$(BIN)/python -m pytest -q -m "not slow"

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) runs
