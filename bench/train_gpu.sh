#!/usr/bin/env bash
# Reproduce assets/learned_refiner.pt: build the corpora from ../shared/data, train in four
# resumable segments of < 10 minutes on one CUDA GPU (H200 here), fine-tune in two more with
# the per-octave spectral term and flat-colour augmentation (the x4 refiner, shipped before
# issue 14), then fine-tune for the cascade the product runs (self-cascade objective,
# conditioning augmentation, GLOBE 30" in the corpus, steeper amplitude law below 30 m:
# docs/LEARNED.md "Trained for the cascade"), plot the loss curves, ship fp16 weights, and
# run the evaluations. Segment ends are the step counts of the shipped run; GPU kernels and
# data-loader interleaving are not bit-deterministic, so expect close, not equal.
#   usage: bash bench/train_gpu.sh             (from the repository root; all stages)
#          STAGE=cascade bash bench/train_gpu.sh   (only the cascade stage, from $INIT)
set -euo pipefail
DATA=${WORLDSTREAM_DATA:-../shared/data}
RUN=${RUN_DIR:-out/learned}
FT=${FT_DIR:-out/learned_ft}
CC=${CC_DIR:-out/learned_cascade}
CORPUS=${CORPUS:-out/corpus.npz}
CC_CORPUS=${CC_CORPUS:-out/corpus_cascade.npz}
EVAL_CROPS=${EVAL_CROPS:-out/cascade_eval.npz}
INIT=${INIT:-$FT/ft.pt}
STAGE=${STAGE:-all}
MINUTES=${MINUTES:-9}
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
train() { python3 -m streaming.cli train --data-dir "$DATA" --corpus "$CORPUS" --out "$RUN" \
            --device cuda --workers 12 --batch 128 --minutes "$MINUTES" "$@"; }
if [ "$STAGE" = all ]; then
  [ -f "$CORPUS" ] || python3 -m streaming.cli train --prepare-only --globe 0 --data-dir "$DATA" --corpus "$CORPUS"
  train --steps 8257 --fresh
  train --steps 16177
  train --steps 23935
  # fine-tune with radiometric augmentation so height detail does not hinge on absolute colour
  train --steps 32474 --colour-jitter 0.7 --band-dropout 0.3 --plot --ship "$RUN/seg4.pt"
  # fine-tune (new run dir, step counter from 0, fresh critic): per-octave spectral term against
  # the too-smooth detail, then flat-colour augmentation so a flat albedo does not set the roughness
  ft() { train --out "$FT" --colour-jitter 0.7 --band-dropout 0.3 --spectral-weight 3.0 "$@"; }
  ft --steps 6290 --fresh --init-from "$RUN/seg4.pt"
  ft --steps 10895 --flat-colour 0.25 --plot --ship "$INIT"
fi
# Cascade stage (new run dir, fresh critic): the corpus gains 12 GLOBE 30" crops (0.93 km,
# the 9.8 km -> 1 km range); every step adds an unrolled 2- or 3-level self-cascade.
[ -f "$CC_CORPUS" ] || python3 -m streaming.cli train --prepare-only --globe 12 --data-dir "$DATA" --corpus "$CC_CORPUS"
[ -f "$EVAL_CROPS" ] || python3 -m generator.eval.cascade --prepare "$EVAL_CROPS" --data "$DATA"
source bench/cascade_recipe.sh
cc() { train --corpus "$CC_CORPUS" --out "$CC" --warmup-steps 500 "${CASCADE_OBJECTIVE[@]}" "$@"; }
cc --steps ${CC_STEPS1:-100000} --fresh --init-from "$INIT" --plot --ship "$CC/cascade.pt"
python3 -m generator.eval.cascade --crops "$EVAL_CROPS" --new "$CC/cascade.pt" --old "$INIT" --device cuda \
    --seeds 2 --json "$CC/cascade_eval.json"
if [ "$STAGE" = all ]; then
  cp "$CC/cascade.pt" assets/learned_refiner.pt
  python3 -m generator.eval.learned --data "$DATA"
  python3 bench/generator.py --device cuda --batch 256 --e2e \
      --backends torch,torch-compiled,tensorrt,torch-compiled:max-autotune
  python3 -m pytest -q -m gpu tests/generator/test_backends.py tests/generator/test_gpu.py
fi
