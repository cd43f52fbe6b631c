"""Fractal refiner v7 (erosion-filter gullies, generator.gully) against v5: hillshades and grain.

Figures (NW light, 45 deg), v5 and v7 in the same run, and a table of strict local extrema per
1000 samples (``generator.eval.vehicle.extrema_per_1000``) of every panel:

1. ``fractal_v7_cascade.png``: the deep cascade (real parents), a DEM decimated 2^K and refined
   back K levels: real | bicubic | v5 | v7, for st_helens and spain_gredos_25m (crops of
   ``generator.eval.cascade``) and the Ecuadorian 10 m DEM (from ``--data``);
2. ``fractal_v7_world.png``: world tiles, v5 | v7: the earth over Mont Blanc and the Colorado
   Front Range, and the plane world (seed 3) near its highest level-5 sample, at levels 10 and 12.

    PYTHONPATH=. python -m bench.fractal_gully --crops ../main/out/gpu/cascade_eval.npz \
        --data ../shared/data --out docs/figures [--k 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.fractal_erosion import _save, cascade_rows, earth_window, window_row

PLACES = (("mont blanc", 45.83, 6.86, 10), ("mont blanc", 45.83, 6.86, 12), ("colorado", 40.1, -105.6, 10),
          ("colorado", 40.1, -105.6, 12))
"""(label, lat, lon, level) of the earth panels (level 10: 77 m samples, 12: 19 m)."""


def _configs(extra: str = "") -> dict:
    from generator.fractal import V5, V7

    cfgs = {"v5": V5, "v7": V7}
    if extra:  # K=V,... overrides of V7, as a third column (a sweep)
        from dataclasses import replace

        kv = dict(item.split("=") for item in extra.split(","))
        cfgs["v7x"] = replace(V7, **{k: type(getattr(V7, k))(v) for k, v in kv.items()})
    return cfgs


def cascade_figure(crops: Path, data: Path, out: Path, k: int, n: int = 160, extra: str = "") -> list[str]:
    cfgs = _configs(extra)
    rows, lines = cascade_rows(crops, data, cfgs, k, n, tag=f" K={k}")
    _save(rows, out / f"fractal_v7_cascade_k{k}.png")
    return ["| cascade | real | bicubic | " + " | ".join(cfgs) + " |", "|---" * (3 + len(cfgs)) + "|", *lines]


def world_figure(out: Path, n: int = 160, extra: str = "") -> list[str]:
    from generator.fractal import FractalRefiner
    from generator.pyramid import Pyramid
    from runtime.tiles import World, spacing_m

    cfgs = _configs(extra)
    pyrs = {w: {name: Pyramid(w, 0 if w is World.EARTH else 3, FractalRefiner(w, cfg)) for name, cfg in cfgs.items()}
            for w in (World.EARTH, World.PLANE)}
    rows, lines = [], ["| world tile | " + " | ".join(cfgs) + " |", "|---" * (1 + len(cfgs)) + "|"]
    for label, lat, lon, level in PLACES + (("plane seed 3", None, None, 10), ("plane seed 3", None, None, 12)):
        world = World.EARTH if lat is not None else World.PLANE
        if lat is not None:
            r0, c0, ew = earth_window(level, lat, lon, n)
        else:  # the plane: the highest level-5 sample near the origin, then down to ``level``
            p5 = pyrs[world]["v5"].region(5, 0, 0, 256, 256)[0]
            i, j = np.unravel_index(np.argmax(p5), p5.shape)
            r0, c0, ew = (int(i) << (level - 5)) - n // 2, (int(j) << (level - 5)) - n // 2, 1.0
        row, ext = window_row(pyrs[world], level, r0, c0, n, ew, f"{label} L{level} ")
        rows.append(row)
        lines.append(f"| {label}, level {level} ({spacing_m(level):.0f} m) | " + " | ".join(ext) + " |")
    _save(rows, out / "fractal_v7_world.png")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=Path, default=Path("out/cascade_eval.npz"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("docs/figures"))
    ap.add_argument("--k", type=int, default=5, help="cascade depth (levels refined back)")
    ap.add_argument("--only", choices=("cascade", "world", ""), default="")
    ap.add_argument("--v7x", default="", metavar="K=V,...", help="a third column: V7 with these fields changed")
    a = ap.parse_args(argv)
    lines = []
    if a.only != "world":
        lines += cascade_figure(a.crops, a.data, a.out, a.k, extra=a.v7x) + [""]
    if a.only != "cascade":
        lines += world_figure(a.out, extra=a.v7x)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
