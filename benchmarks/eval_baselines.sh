#!/usr/bin/env bash
# Greedy baselines of the embedded SmolLM2-135M-Instruct (see benchmarks/README.md).
# Usage: benchmarks/eval_baselines.sh OUT_DIR [EXTRA ARGS...]   e.g. drop the --limit flags
# below for the full sets. Each run's wall time is printed by `time`.
set -euo pipefail
OUT=${1:-outputs/eval-baselines}; shift || true
PY=${PYTHON:-python}
COMMON=(--model embedded --temperature 0 --n 1 --max-new-tokens 256 --batch-size 20 --threads 1 "$@")
run() { local name=$1; shift; echo "== $name: coder-align eval run $*"; /usr/bin/time -f "$name wall %e s" \
        $PY -m coder_align.cli eval run "$@" --out "$OUT/$name" 2>&1 | grep -v "Loading weights" | tail -4; }
run infilling         --tasks infilling --limit ${INFILL_LIMIT:-200} "${COMMON[@]}"
run humaneval-base    --tasks humaneval --mode base --limit ${HE_LIMIT:-40} "${COMMON[@]}"
run mbpp-base         --tasks mbpp --mode base --limit ${MBPP_LIMIT:-60} "${COMMON[@]}"
run humaneval-instruct --tasks humaneval --mode instruct --limit ${HE_LIMIT:-40} "${COMMON[@]}"
