#!/usr/bin/env bash
# Issue 15's "teleport -> complete view <= 0.3 s with the learned refiner" on a leased GPU machine:
# bench/realtime.py (a real `worldstream serve` + the viewer's client path, GL-free) on both
# worlds with the learned refiner (torch-compiled fp16 on CUDA) and the fractal in the same call.
# Needs .whl (websockets, trimesh, moderngl wheels) and, for the compiled kernels, numba parked by
# bench/numba_carry.sh (a previous call on the same warm machine). The server: serve --gen-procs
# GEN_PROCS (default auto: 12 on a 16-core box), or MESH_PROCS=8 GEN_PROCS=0 for mesh processes.
# PLACE_LIST: the client's tile place processes, one flight pair each (e.g. "0 4": a thread, then
# 4 worker processes; default auto). TRACE=plane|earth: instead one traced flight of that world
# (bench/realtime_trace.py --server-trace: per level when each needed key was asked for, made and
# ready, the generator processes' time on needed and other keys). GUESS_LIST: the client's
# --guess-levels, one flight each (e.g. "2 8 2 8", alternated in one call; default: the viewer's).
# Writes realtime_<refiner>_p<N>_g<G>_<run>.log (or trace_...) to $OUT.
#   bash bench/realtime_device.sh
set -uo pipefail
OUT=${OUT:-out/device}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl || exit 3
{ [ -f .nb/all.txz ] || { [ -f .nb2/part.01 ] && [ -f /tmp/nb/part.00 ]; }; } && source bench/numba_carry.sh device
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
# the viewer's client imports moderngl even GL-free: a missing wheel fails every flight at import
python3 -c "import websockets, trimesh, moderngl" || { echo "carry .whl with the cp312 wheels of websockets, trimesh, moderngl and glcontext"; exit 3; }
{ date -u; nvidia-smi -L; nproc; } 2>&1 | tee "$OUT/realtime.log"
rc=0
n=0
for r in ${REFINERS:-learned fractal}; do
  for pp in ${PLACE_LIST:-auto}; do  # the client's place processes: auto (4 here) or N (0: a thread)
    for g in ${GUESS_LIST:-default}; do  # --guess-levels, e.g. GUESS_LIST="2 8 2 8": alternated flights
      pa=""; [ "$pp" = auto ] || pa="--place-procs $pp"
      ga=""; [ "$g" = default ] || ga="--guess-levels $g"
      n=$((n + 1)); tag="${r}_p${pp}_g${g}_$n"
      echo "== refiner $r, place processes $pp, guess levels $g ($(date -u +%T))"
      if [ -n "${TRACE:-}" ]; then  # TRACE=plane|earth: one traced flight (bench/realtime_trace.py --server-trace)
        timeout ${RUN_S:-270} python3 bench/realtime_trace.py "$TRACE" --server-trace --refiner "$r" \
          --mesh-procs ${MESH_PROCS:-0} --gen-procs ${GEN_PROCS:-auto} $pa $ga ${EXTRA:-} 2>&1 | tee "$OUT/trace_$tag.log" | tail -n 45
      else
        timeout ${RUN_S:-270} python3 bench/realtime.py --quick --no-gl --no-sim --refiner "$r" \
          --mesh-procs ${MESH_PROCS:-0} --gen-procs ${GEN_PROCS:-auto} $pa $ga ${EXTRA:-} 2>&1 | tee "$OUT/realtime_$tag.log" | tail -n 12
      fi
      s=${PIPESTATUS[0]}; [ "$s" = 0 ] || { echo "realtime $r place $pp guess $g rc=$s"; rc=$s; }
    done
  done
done
exit $rc
