#!/usr/bin/env bash
# Install mmcv with its compiled ops into a venv, building it against the venv's torch when needed.
# usage: build_mmcv.sh VENV MMCV_VERSION CACHE_DIR
#
# Why not `pip install mmcv`: PyPI only has an sdist; with build isolation it builds without ops
# (`No module named 'mmcv._ext'`); its setup.py needs pkg_resources (setuptools<82); torch>=2.14
# headers need C++20 while mmcv hard-codes -std=c++17; and pip's wheel cache is keyed on the sdist,
# not on torch, so a torch change leaves an `undefined symbol` wheel. We key our cache on torch.
set -euo pipefail
VENV=$1; VERSION=$2; CACHE=$3
PY="$VENV/bin/python"
pipi() { "$PY" -m pip install --disable-pip-version-check "$@"; }

ops_work() { "$PY" -c 'import mmcv.ops' >/dev/null 2>&1; }

CUDA=${MMCV_WITH_CUDA:-auto}
if [ "$CUDA" = auto ]; then
  if command -v nvcc >/dev/null && "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null
  then CUDA=1; else CUDA=0; fi
fi
KEY=$("$PY" -c "import sys, torch; print(f'py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}-cuda$CUDA')")
WHEELS="$CACHE/mmcv-$VERSION-$KEY"

installed=$("$PY" -c 'import importlib.metadata as m; print(m.version("mmcv"))' 2>/dev/null || true)
if [ "$installed" = "$VERSION" ] && ops_work; then
  echo "mmcv $VERSION with ops already works against torch $KEY"; exit 0
fi

if ls "$WHEELS"/mmcv-*.whl >/dev/null 2>&1; then
  echo "Using the cached build $WHEELS"
  pipi -q --no-deps --force-reinstall "$WHEELS"/mmcv-*.whl
  if ops_work; then exit 0; fi
  echo "The cached build does not load against this torch: rebuilding."
  rm -rf "$WHEELS"
fi

SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
echo "Fetching the mmcv $VERSION source"
"$PY" -m pip download -q --no-deps --no-binary=:all: --no-build-isolation --no-cache-dir -d "$SRC" "mmcv==$VERSION"
tar xzf "$SRC"/mmcv-"$VERSION".tar.gz -C "$SRC"
TREE="$SRC/mmcv-$VERSION"
if "$PY" -c 'import torch, sys; sys.exit(tuple(map(int, torch.__version__.split("+")[0].split(".")[:2])) < (2, 14))'; then
  echo "torch >= 2.14 headers need C++20: patching mmcv's -std=c++17"
  sed -i 's/c++17/c++20/g' "$TREE/setup.py"
fi

JOBS=${MAX_JOBS:-$(nproc)}
if [ "$CUDA" = 1 ]; then
  export FORCE_CUDA=1
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')}
  estimate="about 5 min on 16 cores, far longer on few"
else
  export MMCV_WITH_OPS=1 FORCE_CUDA=0
  estimate="about $(( 26 / (JOBS < 4 ? JOBS : 4) + 1 ))-$(( 50 / (JOBS < 4 ? JOBS : 4) )) min with $JOBS jobs"
fi
echo "Compiling mmcv $VERSION ops (CUDA=$CUDA) against torch $KEY: one time, $estimate."
echo "Full log: $CACHE/mmcv-build.log"
mkdir -p "$CACHE"
start=$(date +%s)
# -g dropped (setuptools>=80 replaces Python's CFLAGS with this variable): 2x faster, 40x smaller.
export CFLAGS="-DNDEBUG -O3 -fwrapv" MAX_JOBS=$JOBS
set +e
"$PY" -m pip wheel -v --no-deps --no-build-isolation --no-cache-dir -w "$WHEELS" "$TREE" 2>&1 \
  | tee "$CACHE/mmcv-build.log" \
  | stdbuf -oL sed -nE 's#^ *(\[[0-9]+/[0-9]+\]) .* -c ([^ ]*/)?([^/ ]+\.(cpp|cu)) .*#\1 \3#p; /(error:|Error:)/p' \
  | while read -r line; do printf '  %s  (%ds)\n' "${line:0:110}" $(( $(date +%s) - start )); done
status=${PIPESTATUS[0]}
set -e
if [ "$status" != 0 ]; then
  echo "mmcv build failed; the end of $CACHE/mmcv-build.log:"; tail -30 "$CACHE/mmcv-build.log"; exit 1
fi
echo "mmcv compiled in $(( $(date +%s) - start )) s; cached in $WHEELS"
pipi -q --no-deps --force-reinstall "$WHEELS"/mmcv-*.whl
# mmcv's own pure-python requirements
pipi -q addict packaging pyyaml yapf "$(grep "^opencv" requirements/runtime.txt)"
ops_work || { echo "mmcv installed but 'import mmcv.ops' fails:"; "$PY" -c 'import mmcv.ops'; exit 1; }
echo "mmcv.ops imports."
