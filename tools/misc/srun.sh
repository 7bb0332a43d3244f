#!/usr/bin/env bash
# Shared by tools/slurm_train.sh and tools/slurm_test.sh: misc/srun.sh PARTITION JOB_NAME TOOL [TOOL arguments...]
# runs tools/TOOL as GPUS slurm tasks with --launcher slurm.
# GPUS (total, default 8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS (extra srun flags) and PYTHON
# (default: python on PATH) come from the environment.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
TOOL=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# SRUN_ARGS is split into words on purpose: it may hold several srun flags.
# shellcheck disable=SC2086
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$((GPUS < GPUS_PER_NODE ? GPUS : GPUS_PER_NODE))" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$((GPUS < GPUS_PER_NODE ? GPUS : GPUS_PER_NODE))" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$ROOT/tools/$TOOL" "${@:4}" --launcher=slurm
