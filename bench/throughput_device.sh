#!/usr/bin/env bash
# The GPU measurements of a session in one command, for a leased NVIDIA machine (issues 14 and 15):
#   1. bench/throughput.py on the GPU: a real `worldstream serve` process per world with the
#      learned refiner (torch-compiled fp16 on CUDA, chosen by backend "auto") and the fractal
#      baseline in the same run, saturated with uncached keys at levels 8-16, mesh/encode spread
#      over worker processes (MESH_PROCS, default 12 of the 16 cores), then the same with
#      generation, meshing and encoding in GEN_PROCS worker processes (`serve --gen-procs`,
#      default 12; with the learned refiner they call the server's one model on the GPU,
#      streaming/sharedbackend.py; GEN_PROCS=0: no such run; GEN_LIST="12": the
#      generator-process runs alone, the other REFINERS as the same-run baseline; GEN_SHARD_UP:
#      `--gen-shard-up`, default 2; GEN_BACKENDS: `--gen-backends` values, one run each, default 1); REFINERS (default "learned fractal") picks the refiners;
#   2. the GPU-only tests (seams, batch composition and nesting of the CUDA backends, on the
#      shipped weights).
# websockets and trimesh are not in the device image: carry their wheels in .whl/ (see the
# device tool's README) and name .whl in `carry`. Writes throughput.log, throughput.json and
# gpu_tests.log to $OUT (TESTS=0: no tests), and monitor.log (GPU use and the busiest processes
# every 10 s); PROFILE=1 adds profile.txt (bench/server_profile: cProfile per process over the uncached phase). WORLD: plane, earth or both (default). Bounded to end within ~570 s.
#   TP_ARGS: more bench/throughput.py options (e.g. --threads: every server thread's CPU).
#   bash bench/throughput_device.sh
set -uo pipefail
OUT=${OUT:-out/device}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
{ [ -f .nb/all.txz ] || { [ -f .nb2/part.01 ] && [ -f /tmp/nb/part.00 ]; }; } && source bench/numba_carry.sh device  # compiled kernels
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
{ date -u; nvidia-smi -L; nproc; } 2>&1 | tee "$OUT/throughput.log"
GEN=${GEN_PROCS:-12}; [ "$GEN" = 0 ] && GEN=""
if [ "${PROFILE:-0}" = 1 ]; then  # cProfile in every process (bench/server_profile), summary in profile.txt
  export WORLDSTREAM_BENCH_PROFILE=/tmp/ws_profile PYTHONPATH=$PWD/bench/server_profile:$PYTHONPATH
fi
# every 10 s: the GPU's use and the busiest processes (a stalled worker shows as compiling or idle)
(while sleep 10; do date -u +%T; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
  ps -eo pcpu,rss,etimes,args --sort=-pcpu | head -n 16 | cut -c1-150; done) > "$OUT/monitor.log" 2>&1 &
MON=$!
timeout ${BENCH_S:-400} python3 bench/throughput.py --world ${WORLD:-both} --refiner ${REFINERS:-learned fractal} --block ${BLOCK:-8} \
  --workers ${WORKERS:-4} --mesh-procs ${MESH_PROCS:-12} --gen-procs ${GEN_LIST:-0 $GEN} --gen-shard-up ${GEN_SHARD_UP:-2} --gen-backends ${GEN_BACKENDS:-1} \
  --warm ${WARM:-4} --timeout 300 ${TP_ARGS:-} 2>&1 | tee -a "$OUT/throughput.log"
echo "throughput rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$OUT/throughput.log"
kill $MON 2>/dev/null
grep '^{' "$OUT/throughput.log" | tail -n 1 > "$OUT/throughput.json"
[ "${PROFILE:-0}" = 1 ] && python3 bench/server_profile/report.py /tmp/ws_profile --top 30 > "$OUT/profile.txt" 2>&1
[ "${TESTS:-1}" = 1 ] || exit 0  # TESTS=0: the bench only
left=$((${END_S:-570} - SECONDS)); [ $left -lt 30 ] && left=30
timeout $left python3 -m pytest -q -m gpu -p no:cacheprovider --timeout 150 \
  tests/generator/test_backends.py tests/generator/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
echo "tests rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$OUT/gpu_tests.log"
