#!/usr/bin/env bash
# The city view bench (bench/cityview.py) on a stored scene, on a GPU machine with no moderngl and
# no EGL loader installed: unpacks the carried EGL packages (.gl/*.deb, docs of the device tool),
# installs the carried moderngl + glcontext wheels (.whl/) into /tmp/site, renders the scene at
# its stored size (1920x1080) and writes the log, the JSON line and the frame to $OUT.
#
#   bash bench/viewer_device.sh [SCENE] [FRAMES]     (repo root; default out/gpu/city_scene.msgpack, 300)
#
# Locally (no dpkg, the project's Python): SKIP_INSTALL=1 PYTHON=.venv/bin/python OUT=/tmp/x bash bench/viewer_device.sh
set -euo pipefail
SCENE=${1:-out/gpu/city_scene.msgpack}
FRAMES=${2:-300}
OUT=${OUT:-/tmp/cityview_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
[ -f "$SCENE" ] || { echo "no scene at $SCENE (capture it: python bench/cityview.py --capture FILE --capture-only)" >&2; exit 2; }
export PYTHONUNBUFFERED=1
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
  # The NVIDIA EGL vendor file, where the driver ships it (else glvnd may find no vendor).
  v=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -f "$v" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$v
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } || true
"$PY" -c "import moderngl, glcontext; print('moderngl', moderngl.__version__)"
set -o pipefail
"$PY" bench/cityview.py --scene "$SCENE" --frames "$FRAMES" --png "$OUT/city_frame.png" \
  --json "$OUT/cityview.json" --machine "$(uname -m), $(nproc) cores" 2>&1 | tee "$OUT/cityview.log"
