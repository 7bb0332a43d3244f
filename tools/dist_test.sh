#!/usr/bin/env bash
# Distributed testing: tools/dist_test.sh CONFIG CHECKPOINT GPUS [tools/test.py arguments...]
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500); see tools/misc/torchrun.sh.
if [ $# -lt 3 ]; then
  echo "usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500] $0 CONFIG CHECKPOINT GPUS [test.py args...]" >&2
  exit 2
fi
exec "$(dirname "$0")/misc/torchrun.sh" "$3" test.py "$1" "$2" "${@:4}"
