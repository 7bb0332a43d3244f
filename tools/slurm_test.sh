#!/usr/bin/env bash
# Testing on slurm: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py arguments...]
# Environment: GPUS (8 in all), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS; see tools/misc/srun.sh.
if [ $# -lt 4 ]; then
  echo "usage: [GPUS=8 GPUS_PER_NODE=8 CPUS_PER_TASK=5 SRUN_ARGS=] $0 PARTITION JOB_NAME CONFIG CHECKPOINT [args...]" >&2
  exit 2
fi
exec "$(dirname "$0")/misc/srun.sh" "$1" "$2" test.py "$3" "$4" "${@:5}"
