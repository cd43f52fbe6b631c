# The cascade stage's training recipe, sourced by bench/train_gpu.sh, bench/train_cascade_device.sh
# and bench/train_cascade_rounds.sh (one place, so every run trains the same objective):
# CASCADE_OBJECTIVE holds the `worldstream train` options of the objective (self-cascade, spectral
# term, augmentations, amplitude law); CASCADE_DEVICE_RUN the run options of the two device
# scripts (the carried corpus, CUDA); unpack_corpus restores that corpus
# (out/gpu/cc_corpus.npz.xz -> out/gpu/cc_corpus.npz) once.
CASCADE_OBJECTIVE=(
  --lr-g 1e-4 --colour-jitter 0.7 --band-dropout 0.3 --flat-colour 0.25
  --spectral-weight 3.0 --cascade-weight 1.0 --cascade-levels 2,3 --cascade-batch 32
  --cond-blur 0.5 --cond-noise 0.2 --hurst-fine 0.85 --fine-break-m 30
)
CASCADE_DEVICE_RUN=(
  --data-dir /nonexistent --corpus out/gpu/cc_corpus.npz --device cuda --batch 128 --steps 100000 --fresh
)
unpack_corpus() {
  [ -f out/gpu/cc_corpus.npz ] || python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('out/gpu/cc_corpus.npz.xz'), open('out/gpu/cc_corpus.npz', 'wb'))"
}
