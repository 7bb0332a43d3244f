#!/usr/bin/env bash
# Shared by tools/dist_train.sh and tools/dist_test.sh: misc/torchrun.sh GPUS TOOL [TOOL arguments...]
# runs tools/TOOL on GPUS processes per machine through torchrun, with --launcher pytorch.
# NNODES, NODE_RANK, MASTER_ADDR and PORT come from the environment (set them on every machine of a multi-node job);
# PYTHON picks the interpreter (default: python on PATH).
set -euo pipefail
GPUS=$1
TOOL=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$GPUS" \
    "$ROOT/tools/$TOOL" "${@:3}" --launcher pytorch
