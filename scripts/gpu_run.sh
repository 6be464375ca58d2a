#!/usr/bin/env bash
# On the GPU machine, from the repository root: install one wheel bundle offline, print the
# versions and the GPU, then run the GPU tests and the recipe benchmarks of that bundle's
# groups. Log, environment, test report and benchmark JSON go to $OUT (or outputs/gpu).
#
#   bash scripts/gpu_run.sh A          # bundles are made here by scripts/gpu_bundle.sh
#
# Time caps (seconds; one device command may run 10 minutes): RUN_BUDGET for the whole
# script, TEST_CAP for pytest, BENCH_CAP per benchmark configuration (the benchmarks share
# what is left of RUN_BUDGET after the tests). The exit status is pytest's or the benchmarks',
# whichever failed; everything that finished is in $OUT either way.
# A dry run on a CPU machine (a Python with this project's dependencies, bundle of
# pure-Python wheels): PYTHON=.venv/bin/python CODER_ALIGN_GPU_TESTS_ON_CPU=1 BENCH_ARGS=--tiny
set -uo pipefail
BUNDLE=${1:?usage: scripts/gpu_run.sh BUNDLE (a folder of .whl/ made by scripts/gpu_bundle.sh)}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/outputs/gpu}
PY=${PYTHON:-python3}
SITE=${GPU_SITE:-/tmp/site}
RUN_BUDGET=${RUN_BUDGET:-540}
TEST_CAP=${TEST_CAP:-240}
BENCH_CAP=${BENCH_CAP:-240}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_run_$BUNDLE.log") 2>&1

[ -f ".whl/$BUNDLE/bundle.json" ] || { echo "no .whl/$BUNDLE/bundle.json: run scripts/gpu_bundle.sh and carry .whl/$BUNDLE"; exit 2; }
# Offline, into a target folder that shadows the image's older copies (transformers 5.17).
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    ".whl/$BUNDLE"/*.whl || { echo "installing bundle $BUNDLE failed"; exit 2; }
# Debian packages of the bundle (bubblewrap for the sandbox): unpacked, not installed, onto PATH.
for deb in ".whl/$BUNDLE"/*.deb; do
  [ -e "$deb" ] || continue
  if command -v dpkg >/dev/null; then
    dpkg -x "$deb" /tmp/debs && echo "unpacked $(basename "$deb") into /tmp/debs"
  else
    echo "no dpkg: $(basename "$deb") not unpacked"
  fi
done
[ -d /tmp/debs/usr/bin ] && export PATH="/tmp/debs/usr/bin:$PATH"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"  # the deepspeed launcher
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

GROUPS_=$("$PY" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['groups']))" ".whl/$BUNDLE/bundle.json")
echo "bundle $BUNDLE: groups $GROUPS_"
command -v bwrap >/dev/null && echo "bwrap: $(bwrap --version)" || echo "bwrap: not available (unit-test rewards will be unjudged)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
"$PY" - "$OUT/env_$BUNDLE.json" <<'PYEOF'
import importlib.metadata as md, json, platform, sys
import torch
names = ["torch", "transformers", "accelerate", "peft", "trl", "datasets", "deepspeed", "bitsandbytes",
         "huggingface-hub", "tokenizers", "safetensors", "numpy", "pyarrow", "pandas", "fsspec", "pydantic",
         "flash-attn", "triton"]
versions = {}
for n in names:
    try:
        versions[n] = md.version(n)
    except md.PackageNotFoundError:
        versions[n] = None
env = {"python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
       "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
       "nccl": ".".join(map(str, torch.cuda.nccl.version())) if torch.cuda.is_available() else None}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 1e9, 1), capability=f"{p.major}.{p.minor}",
               bf16=torch.cuda.is_bf16_supported())
print(json.dumps(env, indent=1))
open(sys.argv[1], "w").write(json.dumps(env, indent=1) + "\n")
PYEOF
# Requirements of the bundled packages that the image does not meet (pip check, restricted to them).
"$PY" -m pip check 2>&1 | grep -iE "^(transformers|peft|trl|datasets|deepspeed|bitsandbytes|accelerate) " || echo "pip check: bundled packages' requirements met"

tests=(); configs=()
for g in $GROUPS_; do
  case $g in
    core) ;;
    # packing-1.3b needs only core; it runs with qlora to even out the two runs' length
    train) tests+=(tests/test_gpu.py); configs+=(full-1.3b lora-6.7b grpo-1.3b zero2-1.3b) ;;
    qlora) tests+=(tests/test_gpu_qlora.py); configs+=(qlora-6.7b qlora-33b packing-1.3b) ;;
    *) echo "unknown group $g in bundle $BUNDLE" ;;
  esac
done

status=0
if [ ${#tests[@]} -gt 0 ]; then
  echo "== pytest -m gpu ${tests[*]} (cap ${TEST_CAP}s)"
  timeout -k 10 "$TEST_CAP" "$PY" -m pytest -m gpu -v -rs -p no:cacheprovider --junitxml="$OUT/pytest_$BUNDLE.xml" \
      "${tests[@]}" || status=$?
fi
if [ ${#configs[@]} -gt 0 ]; then
  list=$(IFS=,; echo "${configs[*]}")
  echo "== benchmarks/gpu_recipes.py --configs $list (cap ${BENCH_CAP}s each, $((RUN_BUDGET - SECONDS))s in all)"
  # shellcheck disable=SC2086  # BENCH_ARGS is a list of flags
  "$PY" benchmarks/gpu_recipes.py --configs "$list" --cap "$BENCH_CAP" --budget $((RUN_BUDGET - SECONDS)) ${BENCH_ARGS:-} \
      --out "$OUT/gpu_recipes_$BUNDLE.json" \
      || { rc=$?; [ $status -eq 0 ] && status=$rc; }
fi
echo "== done: status $status; files in $OUT"
ls -la "$OUT"
exit $status
