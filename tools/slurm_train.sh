#!/usr/bin/env bash
# Training on slurm: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py arguments...]
# Environment: GPUS (8 in all), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS; see tools/misc/srun.sh.
if [ $# -lt 4 ]; then
  echo "usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=] $0 PARTITION JOB_NAME CONFIG WORK_DIR [args...]" >&2
  exit 2
fi
exec "$(dirname "$0")/misc/srun.sh" "$1" "$2" train.py "$3" --work-dir="$4" "${@:5}"
