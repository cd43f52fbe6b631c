#!/usr/bin/env bash
# Reproduce assets/learned_refiner.pt: build the corpus from ../shared/data, train in four
# resumable segments of < 10 minutes on one CUDA GPU (H200 here), then fine-tune in two more
# with the per-octave spectral term and flat-colour augmentation, plot the loss curves, ship
# fp16 weights. Segment ends are the step counts of the shipped run (docs/LEARNED.md); GPU
# kernels and data-loader interleaving are not bit-deterministic, so expect close, not equal.
#   usage: bash bench/train_gpu.sh            (from the repository root)
set -euo pipefail
DATA=${WORLDSTREAM_DATA:-../shared/data}
RUN=${RUN_DIR:-out/learned}
FT=${FT_DIR:-out/learned_ft}
CORPUS=${CORPUS:-out/corpus.npz}
export PYTHONPATH=${PYTHONPATH:-$PWD} PYTHONUNBUFFERED=1
train() { python3 -m generator.learned.train train --data-dir "$DATA" --corpus "$CORPUS" --out "$RUN" \
            --device cuda --workers 12 --batch 128 --minutes 9 "$@"; }
[ -f "$CORPUS" ] || python3 -m generator.learned.train train --prepare-only --data-dir "$DATA" --corpus "$CORPUS"
train --steps 8257 --fresh
train --steps 16177
train --steps 23935
# fine-tune with radiometric augmentation so height detail does not hinge on absolute colour
train --steps 32474 --colour-jitter 0.7 --band-dropout 0.3 --plot --ship "$RUN/seg4.pt"
# fine-tune (new run dir, step counter from 0, fresh critic): per-octave spectral term against
# the too-smooth detail, then flat-colour augmentation so a flat albedo does not set the roughness
ft() { train --out "$FT" --colour-jitter 0.7 --band-dropout 0.3 --spectral-weight 3.0 "$@"; }
ft --steps 6290 --fresh --init-from "$RUN/seg4.pt"
ft --steps 10895 --flat-colour 0.25 --plot --ship assets/learned_refiner.pt
python3 -m generator.eval.learned --data "$DATA"
python3 bench/generator.py --device cuda --batch 256 --e2e \
    --backends torch,torch-compiled,tensorrt,torch-compiled:max-autotune
python3 -m pytest -q -m gpu tests/generator/test_backends.py tests/generator/test_gpu.py
