#!/usr/bin/env bash
# The shared learned backend with its shared-memory transport on a leased GPU machine (issue 15:
# ">= 2,000 uncached tiles/s" and "teleport <= 0.3 s" with the learned refiner). One call:
#   0. TESTS=1 (default): the GPU-only tests first, so a broken compiled path fails in a minute;
#   1. bench/backend_transport.py: pipe against shared memory, 1 / 4 / 12 clients (no network);
#   2. bench/throughput.py, learned refiner, both worlds: the thread server (+ MESH_PROCS mesh
#      processes) against GEN_PROCS generator processes calling the one backend process (the
#      same run and card);
#   3. RT=1: bench/realtime.py --refiner learned with --gen-procs GEN_PROCS (the thread server's
#      flights are bench/realtime_device.sh).
# Carry .whl (websockets, trimesh; moderngl, glcontext for RT=1) and .nb (numba,
# bench/numba_carry.sh). Writes gpu_tests.log, transport.log, throughput.log (its rows end with
# the backend's requests per tile and per call), throughput.json, monitor.log and realtime.log
# to $OUT. ~8 min with TESTS=1 and RT=0.
#   bash bench/shared_backend_device.sh
set -uo pipefail
OUT=${OUT:-out/device}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
[ -f .nb/all.txz ] && source bench/numba_carry.sh device
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{ date -u; nvidia-smi -L; nproc; df -h /dev/shm; } 2>&1 | tee "$OUT/transport.log"
if [ "${TESTS:-1}" = 1 ]; then
  timeout 200 python3 -m pytest -q -m gpu -p no:cacheprovider tests/generator/test_backends.py tests/generator/test_gpu.py \
    2>&1 | tee "$OUT/gpu_tests.log" | tail -n 5
  [ "${PIPESTATUS[0]}" = 0 ] || { echo "GPU tests failed: no benchmark"; exit 4; }
fi
timeout 120 python3 bench/backend_transport.py --clients 1 4 12 --seconds 3 2>&1 | tee -a "$OUT/transport.log"
GEN=${GEN_PROCS:-12}
(while sleep 10; do date -u +%T; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  ps -eo pcpu,rss,etimes,args --sort=-pcpu | head -n 16 | cut -c1-150; done) > "$OUT/monitor.log" 2>&1 &
MON=$!
timeout ${BENCH_S:-330} python3 bench/throughput.py --world ${WORLD:-both} --refiner learned --block ${BLOCK:-16} \
  --workers ${WORKERS:-4} --mesh-procs ${MESH_PROCS:-12} --gen-procs 0 $GEN --warm 4 --timeout 300 2>&1 | tee "$OUT/throughput.log"
echo "throughput rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$OUT/throughput.log"
kill $MON 2>/dev/null
grep '^{' "$OUT/throughput.log" | tail -n 1 > "$OUT/throughput.json"
[ "${RT:-0}" = 1 ] || exit 0
python3 -c "import moderngl" || { echo "RT=1 needs the moderngl and glcontext wheels in .whl"; exit 3; }
timeout ${RT_S:-240} python3 bench/realtime.py --quick --no-gl --no-sim --refiner learned --gen-procs $GEN 2>&1 \
  | tee "$OUT/realtime.log" | tail -n 30
