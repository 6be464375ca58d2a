#!/usr/bin/env bash
# Multi-node (or multi-GPU) launch through DeepSpeed's hostfile.
#
#   scripts/launch_multinode.sh hostfile configs/sft/deepseek-coder-33b-full-zero3-offload.yaml data.path=my.jsonl
#
# hostfile: one line per machine, e.g.
#   node1 slots=8
#   node2 slots=8
# Requirements: passwordless SSH from this machine to every node, the same checkout and
# virtual environment at the same path on every node, and the data/model reachable there.
# STAGE=grpo or STAGE=pretrain picks another stage (default sft).
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,12p' "$0"
    exit 2
fi
hostfile=$1; config=$2; shift 2
stage=${STAGE:-sft}
here=$(cd "$(dirname "$0")/.." && pwd)
exec deepspeed --hostfile "$hostfile" ${MASTER_ADDR:+--master_addr "$MASTER_ADDR"} \
    "$here/coder_align/$stage.py" --config "$config" "$@"
