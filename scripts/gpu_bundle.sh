#!/usr/bin/env bash
# Download the wheels the GPU machine lacks and split them into bundles that each fit one
# run with the working tree; prints every bundle's size. Details: scripts/gpu_bundle.py.
#   scripts/gpu_bundle.sh              # download (PyPI) + build deepspeed's wheel + split
#   scripts/gpu_bundle.sh --plan-only  # split what .whl/cache already holds
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" scripts/gpu_bundle.py "$@"
