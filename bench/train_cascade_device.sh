#!/usr/bin/env bash
# The cascade stage of bench/train_gpu.sh as ONE command for a leased GPU machine whose
# transfer limit (64 MiB with the ~21 MB tracked tree) cannot take the 49 MB corpus.
# Prepare on the CPU machine, in the repository root (out/ is ignored, so carry these):
#   python -m streaming.cli train --prepare-only --globe 6 --data-dir ../shared/data --corpus out/gpu/cc_corpus.npz
#   python -c "import numpy as np; z=np.load('out/gpu/cc_corpus.npz'); np.savez('/tmp/cc_raw.npz', **{k: z[k] for k in z.files})"
#   xz -T2 -6 -c /tmp/cc_raw.npz > out/gpu/cc_corpus.npz.xz    # 49 MB zip-deflated npz -> 35 MB
#   python -m generator.eval.cascade --prepare out/gpu/cascade_eval.npz --data ../shared/data   # 3 MB
# then run `MINUTES=5.5 bash bench/train_cascade_device.sh` there, carrying the two npz files.
# Writes to $OUT (at most 8 files): train.log, cascade.pt (shipped fp16 candidate), loss.png,
# log.jsonl, eval.log, cascade_eval.json (new vs old deep cascade, 2 seeds), gpu_tests.log.
# Each step is bounded so the whole command ends within ~565 s (END_S=N: N s, for a call that runs more after it).
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-out/device}; mkdir -p "$OUT"
MIN=${MINUTES:-5.5}; CCD=${CC_DIR:-out/learned_cascade}; INIT=${INIT:-assets/learned_refiner.pt}
{ date -u; nvidia-smi -L; python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'; } 2>&1 | tee "$OUT/train.log"
source bench/cascade_recipe.sh
unpack_corpus || exit 3
python3 -m streaming.cli train "${CASCADE_DEVICE_RUN[@]}" "${CASCADE_OBJECTIVE[@]}" --out "$CCD" --workers 12 --minutes "$MIN" \
  --warmup-steps 500 --init-from "$INIT" --plot --ship "$CCD/cascade.pt" 2>&1 | tee -a "$OUT/train.log"
echo "train rc=$? at ${SECONDS}s" | tee -a "$OUT/train.log"
cp "$CCD/cascade.pt" "$CCD/loss.png" "$CCD/log.jsonl" "$OUT/"
timeout 110 python3 -m generator.eval.cascade --crops out/gpu/cascade_eval.npz --new "$CCD/cascade.pt" --old "$INIT" \
  --device cuda --seeds 2 --json "$OUT/cascade_eval.json" 2>&1 | tee "$OUT/eval.log"
echo "eval rc=$? at ${SECONDS}s" | tee -a "$OUT/eval.log"
left=$((${END_S:-565} - SECONDS)); [ $left -lt 20 ] && left=20
timeout $left python3 -m pytest -q -m gpu -p no:cacheprovider --timeout 150 \
  tests/generator/test_backends.py tests/generator/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
echo "tests rc=$? at ${SECONDS}s" | tee -a "$OUT/gpu_tests.log"
