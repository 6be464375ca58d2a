#!/usr/bin/env bash
# The SFT data of configs/sft/embedded-code.yaml (see benchmarks/README.md, "SFT data for the
# embedded model"). Usage: benchmarks/make_sft_embedded.sh [OUT_DIR]
# Mines the standard libraries of the Pythons under $PYENV_ROOT (newest first: duplicates keep
# the newest copy) and the project's .venv site-packages, then MBPP outside its test split.
# The rows depend on what is installed: the committed files say what they were made from in
# their .summary.json (dirs, counts, config).
set -euo pipefail
OUT=${1:-benchmarks/data/sft_embedded}
PY=${PYTHON:-.venv/bin/python}
SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
STDLIBS=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.*/lib/python3.* 2>/dev/null | sort -V -r || true)
[ -n "$STDLIBS" ] || STDLIBS=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
mkdir -p "$OUT"
$PY -m coder_align.cli data from-docstrings $STDLIBS "$SITE" --out "$OUT/instruct.jsonl" --code-out "$OUT/code.jsonl"
$PY -m coder_align.cli data mbpp-sft --splits prompt,train --out "$OUT/mbpp_sft_train.jsonl"
wc -l "$OUT"/*.jsonl
