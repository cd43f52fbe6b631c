"""GPU contract checks of the learned refiner's compiled fp16 backend (needs CUDA).

- seams: two parent crops offset by 64 parent samples refine the same global child samples;
  max |difference| on the overlap (DESIGN.md 2.3 asks <= 1 mm on any backend);
- batch: the same tile refined alone (bucket 1) and inside a batch of 256;
- nesting: even child samples equal the parents bit for bit.

    PYTHONPATH=. python bench/learned_gpu_checks.py
Ends with one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generator.learned.backends import make_backend  # noqa: E402
from generator.learned.refiner import load_net, noise_coords  # noqa: E402
from runtime.tiles import T, spacing_m  # noqa: E402


def main() -> int:
    net, version, _ = load_net()
    m = net.config.margin
    crop = T // 2 + 1 + 2 * m
    rng = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter

    big = np.concatenate(
        [
            gaussian_filter(rng.normal(0, 1, (1, crop + 64, crop)), (0, 3, 3)) * 2000 + 900,
            np.clip(gaussian_filter(rng.uniform(0, 1, (4, crop + 64, crop)), (0, 2, 2)), 0, 1),
        ]
    )[None].astype(np.float32)
    level, seed, dev = 13, 3, torch.device("cuda")
    comp = make_backend("torch-compiled", net, version)
    eager = make_backend("torch", net, version, device="cuda")
    out = {"model": version, "level": level}
    for name, be in (("torch-compiled", comp), ("torch-eager-cuda", eager)):
        res = []
        for off in (0, 64):
            p = big[:, :, off : off + crop]
            rows, cols = noise_coords(np.array([[2 * off, 0]]), crop, crop, m)
            args = [torch.from_numpy(a).to(dev) for a in (p, rows, cols)]
            s = torch.full((1,), spacing_m(level), device=dev)
            pr = torch.ones(1, 2, device=dev)
            res.append(be.run_torch(args[0], seed, level, args[1], args[2], s, pr))
        a, b = res
        seam = float((a[:, 0, 128:] - b[:, 0, : a.shape[2] - 128]).abs().max())
        p0 = torch.from_numpy(big[:, :, :crop]).to(dev)
        nest = bool(torch.equal(a[:, :, ::2, ::2], p0[:, :, m:-m, m:-m]))
        rows, cols = noise_coords(np.array([[0, 0]] * 256), crop, crop, m)
        many = be.run_torch(
            p0.expand(256, -1, -1, -1).contiguous(),
            seed,
            level,
            torch.from_numpy(rows).to(dev),
            torch.from_numpy(cols).to(dev),
            torch.full((256,), spacing_m(level), device=dev),
            torch.ones(256, 2, device=dev),
        )
        batch = float((many[:1, 0] - a[:, 0]).abs().max())
        out[name] = {"seam_max_m": seam, "batch_1_vs_256_max_m": batch, "nesting_exact": nest}
        print(f"{name:<18} seam max {seam:.3e} m   batch 1 vs 256 max {batch:.3e} m   nesting exact {nest}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
