#!/usr/bin/env bash
# Earth fidelity of the learned refiner (the default wherever a GPU is) on a leased NVIDIA machine:
# `python -m generator.eval.earth --refiner learned` (torch-compiled fp16 on CUDA) against the
# located DEMs at ~35 / ~140 / ~550 m, the summits, inland cities and lakes, with the anchor alone in
# the same run. The DEMs travel in `carry` (the GLOBE file is too big for a call; its table is
# skipped): copy ../shared/data/dem/*.npz (without bedmap_antarctica) to out/gpu/data/dem first.
# Writes earth_learned.log and earth_learned.json to $OUT.
#   bash bench/earth_device.sh
set -uo pipefail
OUT=${OUT:-out/device}; mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
timeout ${EVAL_S:-240} python3 -m generator.eval.earth --data ${DATA:-out/gpu/data} --refiner learned \
  --json "$OUT/earth_learned.json" 2>&1 | tee "$OUT/earth_learned.log"
echo "earth eval rc=${PIPESTATUS[0]} at ${SECONDS}s" | tee -a "$OUT/earth_learned.log"
