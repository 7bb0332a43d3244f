#!/usr/bin/env bash
# Create .venv/ and install the OpenMMLab stack + mmconv2former into it (`make install`).
#
# Idempotent: a stamp records what was installed; a second run only checks it (seconds).
# The one slow step is compiling mmcv 2.1.0's ops against the installed torch (one time:
# ~12-25 min on 2 cores for CPU ops, ~5 min on 16 cores with CUDA ops). The built wheel is
# cached per (python, torch, cuda) in ${MMCONV2FORMER_CACHE:-~/.cache/mmconv2former}.
#
# Environment knobs:
#   PYTHON=python3        interpreter used to create .venv
#   VENV=.venv            where the environment lives
#   MMCV_WITH_CUDA=auto   1: build CUDA ops, 0: CPU only, auto: when torch sees a GPU and nvcc exists
#   MAX_JOBS=<nproc>      parallel compile jobs
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
CACHE=${MMCONV2FORMER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmconv2former}
MMCV_VERSION=$(sed -n 's/^mmcv==\([0-9.]*\).*/\1/p' requirements/runtime.txt)
STAMP="$VENV/.mmconv2former-installed"
START=$(date +%s)

step() { printf '\n\033[1m==> [%s] %s\033[0m\n' "$1" "$2"; }
py() { "$VENV/bin/python" "$@"; }
pipi() { "$VENV/bin/python" -m pip install --disable-pip-version-check "$@"; }

# What the stamp covers: every requirements file, setup.py and this script.
want_stamp() {
  cat requirements/*.txt setup.py "$0" | sha256sum | cut -c1-16
  py -c 'import torch; print(torch.__version__)' 2>/dev/null || echo no-torch
}

if [ -f "$STAMP" ] && [ "$(want_stamp)" = "$(cat "$STAMP")" ] \
   && py -c 'import mmcv.ops, mmdet, mmseg, timm, mmconv2former' 2>/dev/null; then
  echo "mmconv2former environment in $VENV is up to date (remove $STAMP to force a reinstall)."
  exit 0
fi

step 1/7 "Python environment in $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  # A base interpreter that already has torch is reused through system site-packages.
  if "$PYTHON" -c 'import torch' 2>/dev/null; then
    echo "Reusing the torch of $PYTHON ($("$PYTHON" -c 'import torch; print(torch.__version__)'))"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
py --version

step 2/7 "torch + torchvision"
if py -c 'import torch, torchvision' 2>/dev/null; then
  echo "Keeping the installed torch $(py -c 'import torch; print(torch.__version__)')"
else
  echo "Installing $(grep -v '^#' requirements/torch.txt | xargs) (a few GB unpacked; takes a few minutes)"
  pipi --progress-bar on -r requirements/torch.txt
fi
TORCH_VERSION=$(py -c 'import torch; print(torch.__version__)')

step 3/7 "build tools (setuptools<82, wheel, ninja, psutil)"
pipi -q -r requirements/build.txt

step 4/7 "mmengine"
pipi -q "$(grep '^mmengine' requirements/runtime.txt)"

step 5/7 "mmcv $MMCV_VERSION with compiled ops"
"$ROOT/tools/misc/build_mmcv.sh" "$VENV" "$MMCV_VERSION" "$CACHE"

step 6/7 "mmdet, mmseg, timm and the rest"
pipi -q -r requirements/runtime.txt -r requirements/tests.txt

step 7/7 "mmconv2former (editable)"
pipi -q --no-deps --no-build-isolation -e .

py -c 'import mmcv.ops, mmdet.models, mmseg.models, timm, mmconv2former; print("OK: mmcv", mmcv.__version__, "| mmdet", mmdet.__version__, "| mmseg", mmseg.__version__, "| timm", timm.__version__, "| torch", torch.__version__ if (torch := __import__("torch")) else "")'
want_stamp > "$STAMP"
echo "Installed in $(( $(date +%s) - START )) s. Activate with: source $VENV/bin/activate"
