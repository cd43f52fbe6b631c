"""How far the compiled fp16 backend is from fp32 eager, per checkpoint (issue 14 item 5: the
contracts hold on every backend; GPU only).

For each checkpoint: the same parents through ``torch`` (fp32, CUDA) and ``torch-compiled``
(fp16 trunk, CUDA graphs), heights compared at the child samples the network makes. Inputs:
the GPU test's random-walk parents (tests/generator/test_backends.py: 4 crops, relief far
rougher than real terrain) at child spacings 2.4 m, 38.2 m and 611 m, and a real 30 m DEM crop
(tests/data/dem_crop_bigtujunga_257.npz, 4 windows) at its own spacing. Prints, per
checkpoint and input, the largest and RMS height difference in metres and both as a share of the
net's detail amplitude A(s) there; the first checkpoint is the baseline the others are read
against. Ends with one JSON line.

    PYTHONPATH=. python bench/fp16_error.py assets/learned_refiner.pt OLD.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generator.learned.backends import make_backend  # noqa: E402
from generator.learned.checkpoint import load_net  # noqa: E402
from generator.learned.inputs import noise_coords  # noqa: E402


def walk_inputs(b: int, crop: int, margin: int, seed: int = 0):
    """The GPU test's parents: doubly integrated noise around 1,200 m, random bands."""
    rng = np.random.default_rng(seed)
    z = np.cumsum(np.cumsum(rng.normal(0, 3, (b, crop, crop)), 1), 2) + 1200
    bands = rng.uniform(0.05, 0.5, (b, 4, crop, crop))
    return np.concatenate([z[:, None], bands], 1).astype(np.float32)


def dem_inputs(crop: int):
    """Four windows of the real 30 m crop (heights only; bands at 0.25, none present)."""
    d = np.load(ROOT / "tests/data/dem_crop_bigtujunga_257.npz")
    z = d["elev"].astype(np.float32)
    out = np.full((4, 5, crop, crop), 0.25, np.float32)
    for i, (r, c) in enumerate([(0, 0), (0, 257 - crop), (257 - crop, 0), (257 - crop, 257 - crop)]):
        out[i, 0] = z[r : r + crop, c : c + crop]
    return out, float(d["pixel_m"]) / 2.0


def compare(net, eager, comp, parents, spacing: float, bands: bool = False) -> dict:
    """Heights of ``parents`` refined by the ``eager`` and ``comp`` backends of ``net``, compared
    (``bands``: the colour and NIR bands marked present, as the GPU test has them)."""
    m = net.config.margin
    b, _, h, w = parents.shape
    rows, cols = noise_coords(np.array([[256 * i, -512] for i in range(b)]), h, w, m)
    s = np.full((b,), spacing, np.float32)
    present = np.full((b, 2), 1.0 if bands else 0.0, np.float32)
    a = eager.run_level(parents, 1, 12, rows, cols, s, present)[:, 0].astype(np.float64)
    c = comp.run_level(parents, 1, 12, rows, cols, s, present)[:, 0].astype(np.float64)
    amp = float(net.amplitude(torch.tensor([spacing]))[0, 0])
    d = np.abs(a - c)
    mx, rms = float(d.max()), float(np.sqrt((d**2).mean()))
    return {"spacing_m": spacing, "amp_m": round(amp, 4), "max_m": round(mx, 5), "rms_m": round(rms, 5),
            "max_over_amp": round(mx / amp, 5), "rms_over_amp": round(rms / amp, 6)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="the first is the baseline")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    print(f"{'weights':14s} {'input':17s} {'spacing m':>9s} {'A(s) m':>7s} {'max m':>8s} {'rms m':>8s} "
          f"{'max/A':>7s} {'rms/A':>8s}")
    out = {}
    for path in args.checkpoints:
        net, version, _ = load_net(path)
        m = net.config.margin
        walk = walk_inputs(4, 2 * m + 33, m)
        cases = [(f"walk {s}", walk, s, False) for s in (2.4, 38.2, 611.0)]
        cases += [(f"walk+bands {s}", walk, s, True) for s in (2.4, 38.2, 611.0)]  # 38.2: the GPU test's case
        dem, s_dem = dem_inputs(2 * m + 65)
        cases.append(("dem 30m", dem, s_dem, False))
        out[version] = {}
        # one pair of backends per checkpoint: the compiled one builds its graphs once
        eager = make_backend("torch", net, version, device="cuda")
        comp = make_backend("torch-compiled", net, version)
        for name, parents, s, bands in cases:
            r = compare(net, eager, comp, parents, s, bands)
            out[version][name] = r
            print(f"{version:14s} {name:17s} {s:9.1f} {r['amp_m']:7.3f} {r['max_m']:8.4f} {r['rms_m']:8.5f} "
                  f"{r['max_over_amp']:7.4f} {r['rms_over_amp']:8.5f}", flush=True)
    print(json.dumps({"fp16_vs_eager": out, "device": torch.cuda.get_device_name(0)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
