#!/usr/bin/env bash
# Distributed training: tools/dist_train.sh CONFIG GPUS [tools/train.py arguments...]
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500); see tools/misc/torchrun.sh.
if [ $# -lt 2 ]; then
  echo "usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500] $0 CONFIG GPUS [train.py args...]" >&2
  exit 2
fi
exec "$(dirname "$0")/misc/torchrun.sh" "$2" train.py "$1" "${@:3}"
