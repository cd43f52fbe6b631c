#!/usr/bin/env bash
# Cascade fine-tuning as short consecutive rounds on a leased GPU, for weight averaging
# ("model soup") and selection on this CPU afterwards. Same corpus and carry as
# bench/train_cascade_device.sh (out/gpu/cc_corpus.npz.xz). Two chains run side by side on
# one GPU (each with half the loader workers): chain a = the shipped recipe, chain b = the
# recipe with EXTRA_B appended (default: stronger cascade and spectral terms). Every round
# resumes (--fresh --init-from) from the chain's previous round and ships an fp16 candidate:
# $OUT/a1.pt .. a$ROUNDS.pt, b1.pt .. , plus a.log and b.log (at most 8 files back).
# (INIT_B: chain b's start, default INIT; OFFSET: number the rounds from OFFSET+1; EXTRA_A: options of
# chain a, default none; e.g. EXTRA_A="--context 1" EXTRA_B=" ": context net vs its same-run control)
#   ROUNDS=3 MINUTES=2.2 INIT=assets/learned_refiner.pt bash bench/train_cascade_rounds.sh
# (a sampled detail, docs/LEARNED.md: EXTRA_A="--flow-steps 4 --flow-relative 1 --cascade-weight 0 --lr-g 5e-4",
#  EXTRA_B the same + "--deep-weight 0.5"; a flow net takes no critic, so the recipe's cascade weight is set to 0)
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-out/device}; mkdir -p "$OUT"
R=${ROUNDS:-3}; MIN=${MINUTES:-2.2}; INIT=${INIT:-assets/learned_refiner.pt}; INIT_B=${INIT_B:-$INIT}
EXTRA_B=${EXTRA_B:---cascade-weight 2.0 --spectral-weight 5.0}; EXTRA_A=${EXTRA_A:-}
source bench/cascade_recipe.sh
unpack_corpus || exit 3
chain() {  # name, extra options...
  local name=$1 prev=$2; shift 2
  for i in $(seq $((${OFFSET:-0} + 1)) $((${OFFSET:-0} + R))); do
    python3 -m streaming.cli train "${CASCADE_DEVICE_RUN[@]}" "${CASCADE_OBJECTIVE[@]}" --out "/tmp/cc_$name$i" --workers 7 --minutes "$MIN" \
      --warmup-steps 300 --init-from "$prev" --ship "$OUT/$name$i.pt" "$@" 2>&1 | grep -v "^ *$" | tail -n 25
    echo "$name round $i rc=${PIPESTATUS[0]} at ${SECONDS}s"
    prev=$OUT/$name$i.pt
  done
}
{ date -u; nvidia-smi -L; } | tee "$OUT/a.log"
chain a "$INIT" $EXTRA_A >> "$OUT/a.log" 2>&1 &
chain b "$INIT_B" $EXTRA_B > "$OUT/b.log" 2>&1 &
wait
tail -n 4 "$OUT/a.log" "$OUT/b.log"; ls -la "$OUT"
