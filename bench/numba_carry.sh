#!/usr/bin/env bash
# numba for the leased GPU machine, whose image had no numba (0.68.0 was there on 2026-12-07:
# check `python3 -c "import numba"` first) and which reaches no package registry. The llvmlite wheel (60 MB) does not fit a call's 64 MiB with the working tree, so it travels in two
# calls: this script (here, once) downloads the cp312 wheels, strips and xz-packs llvmlite
# (37 MB) and splits it into .nb1/ and .nb2/ (ignored; add "/.nb1/" and "/.nb2/" to
# .git/info/exclude). On the warm machine, call 1 (`carry: [".nb1"]`) parks its half outside the
# checkout, which a later call re-syncs:  mkdir -p /tmp/nb && cp .nb1/part.00 /tmp/nb/
# and call 2 (`carry: [".whl", ".nb2"]`, within the machine's 30 s warm window) runs
#   source bench/numba_carry.sh device    # installs into /tmp/site, exports PYTHONPATH
# before the bench. Without it the server's kernels fall back to numpy (same bytes, slower).
if [ "${1:-}" = device ]; then
  mkdir -p /tmp/site
  if [ -f .nb/all.txz ]; then  # the one-call pack (`bash bench/numba_carry.sh one`)
    [ -d /tmp/site/llvmlite ] || xz -d < .nb/all.txz | tar x -C /tmp/site
  else
    [ -d /tmp/site/llvmlite ] || cat /tmp/nb/part.00 .nb2/part.01 | xz -d | tar x -C /tmp/site
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .nb2/numba-*.whl
  fi
  export PYTHONPATH=/tmp/site:$PWD
  python3 -c "import numba, runtime.jit as j; assert j.ENABLED; print('numba', numba.__version__)"
  return 0 2>/dev/null || exit 0
fi
set -euo pipefail
if [ "${1:-}" = one ]; then  # from the two parts: one 39.0 MB pack (llvmlite and
  # numba unzipped, both without their tests, xz -9 together) that fits one call beside the tree and .whl (64 MiB in all):
  # `carry: [".whl", ".nb"]`, then `source bench/numba_carry.sh device` as above, in the same call
  tmp=$(mktemp -d)
  cat .nb1/part.00 .nb2/part.01 | xz -d | tar x -C "$tmp"
  rm -rf "$tmp/llvmlite/tests"
  (cd "$tmp" && unzip -q "$OLDPWD"/.nb2/numba-*.whl)
  rm -rf "$tmp/numba/tests"  # 0.5 MB packed: with it the tree (26.4 MB) + .whl + .nb passed 64 MiB
  mkdir -p .nb && (cd "$tmp" && tar cf - . | xz -T2 -9) > .nb/all.txz
  rm -rf "$tmp"; du -sh .nb; exit 0
fi
tmp=$(mktemp -d)
pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
  -d "$tmp" "numba==${NUMBA:-0.68.1}" "llvmlite==${LLVMLITE:-0.50.0}"
mkdir -p "$tmp/x" && (cd "$tmp/x" && unzip -q "$tmp"/llvmlite-*.whl && strip --strip-unneeded llvmlite/binding/libllvmlite.so)
(cd "$tmp/x" && tar cf - . | xz -T2 -9) > "$tmp/llvm.txz"
split -b 18600000 -d "$tmp/llvm.txz" "$tmp/part."
rm -rf .nb1 .nb2 && mkdir -p .nb1 .nb2
mv "$tmp/part.00" .nb1/ && mv "$tmp/part.01" .nb2/ && mv "$tmp"/numba-*.whl .nb2/
rm -rf "$tmp"; du -sh .nb1 .nb2
