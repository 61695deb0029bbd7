# The README's two commands. Each one sets up what it needs: a .venv with the pinned dependencies.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Penn Treebank and TinyShakespeare: ../shared/data in this repository's checkouts, else the cache.
export TUNELAB_DATA ?= $(abspath $(wildcard ../shared/data))

.PHONY: demo test test-fast setup system-deps wheel clean

demo: $(VENV)/.installed
	$(BIN)/tunelab run ptb_smoke --name ptb-smoke-$(shell date +%Y%m%d-%H%M%S)

test: $(VENV)/.installed system-deps
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed  ## while editing: skip the tests that train or start Ray
	$(BIN)/python -m pytest -q -m "not slow"

setup: $(VENV)/.installed

# What the tests start for real besides Python packages, from Debian's packages when missing: chromium
# (the browser tests drive it headless through Playwright, never a browser Playwright downloads) and
# PostgreSQL (a team's tracking server, tests/_servers.py). As root, or through sudo.
system-deps:
	@need=""; command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	if [ -n "$$need" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "installing Debian's$$need for the tests"; \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	fi

# The wheel users install (dist/tunelab-VERSION-py3-none-any.whl) and the pins beside it: what every
# node of cluster.yaml installs.
wheel: $(VENV)/.installed
	rm -rf dist build
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .
	cp constraints.txt dist/

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) runs build dist
