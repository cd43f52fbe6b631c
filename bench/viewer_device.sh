#!/usr/bin/env bash
# The city view bench (bench/cityview.py) on a stored scene, on a GPU machine with no moderngl and
# no EGL loader installed: unpacks the carried EGL packages (.gl/*.deb, docs of the device tool),
# installs the carried moderngl + glcontext wheels (.whl/) into /tmp/site, renders the scene at
# its stored size (1920x1080) and writes per scene the log, the JSON line and the frame to $OUT
# (NAME.log, NAME.json, NAME.png; NAME = the scene file's name without .msgpack).
#
#   bash bench/viewer_device.sh [FRAMES] [SCENE ...]
#     (repo root; defaults 300 and out/gpu/city_scene.msgpack out/gpu/paris_scene.msgpack, those present)
#
# Locally (no dpkg, the project's Python): SKIP_INSTALL=1 PYTHON=.venv/bin/python OUT=/tmp/x bash bench/viewer_device.sh
set -euo pipefail
FRAMES=${1:-300}
shift || true
SCENES=("$@")
[ ${#SCENES[@]} -gt 0 ] || SCENES=(out/gpu/city_scene.msgpack out/gpu/paris_scene.msgpack)
OUT=${OUT:-/tmp/cityview_out}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
[ -f "${SCENES[0]}" ] || { echo "no scene at ${SCENES[0]} (capture: python bench/cityview.py --capture FILE --capture-only)" >&2; exit 2; }
export PYTHONUNBUFFERED=1
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
  # The NVIDIA EGL vendor file, where the driver ships it (else glvnd may find no vendor).
  v=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  if [ -f "$v" ]; then export __EGL_VENDOR_LIBRARY_FILENAMES=$v; fi
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } || true
"$PY" -c "import moderngl, glcontext; print('moderngl', moderngl.__version__)"
for scene in "${SCENES[@]}"; do
  [ -f "$scene" ] || { echo "skipping $scene: not there"; continue; }
  name=$(basename "$scene" .msgpack)
  "$PY" bench/cityview.py --scene "$scene" --frames "$FRAMES" --png "$OUT/$name.png" \
    --json "$OUT/$name.json" --machine "$(uname -m), $(nproc) cores" 2>&1 | tee "$OUT/$name.log"
done
