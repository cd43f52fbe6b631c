"""Fractal refiner v6 (flow-routed incision, generator.erosion) against v5: hillshades and grain.

Two figures (NW light, 45 deg) and one table, v5 and v6 in the same run:

1. the deep cascade (real parents): a DEM decimated 8x and refined back 3 levels, real |
   bicubic | v5 | v6 | v6 carve (``fractal.V6_CARVE``), for st_helens, spain_gredos_25m (crops
   of ``generator.eval.cascade``) and the Ecuadorian 10 m DEM;
2. the earth world over the Prealps near Grenoble (the README fly) at levels 12 and 14.

Table: strict local extrema per 1000 samples (``generator.eval.vehicle.extrema_per_1000``)
of every panel.

    PYTHONPATH=. python -m bench.fractal_erosion --crops ../main/out/gpu/cascade_eval.npz \
        --data ../shared/data --out docs/figures
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _shade(z: np.ndarray, dy_m: float, dx_m: float) -> np.ndarray:
    """(H, W) in [0, 1]: Lambertian shading, light from the north-west at 45 deg (rows south,
    columns east; row and column spacings may differ, as on the earth)."""
    gy, gx = np.gradient(np.asarray(z, np.float64), dy_m, dx_m)
    light = np.array([-0.5, 0.5, np.sqrt(0.5)])  # east, north, up
    n = np.stack([-gx, gy, np.ones_like(gx)])
    return np.clip(np.tensordot(light, n / np.linalg.norm(n, axis=0), axes=1), 0.0, 1.0)


def _panel(z: np.ndarray, px: float, label: str, size: int, dx_m: float | None = None):
    from PIL import Image, ImageDraw

    im = Image.fromarray((_shade(z, px, dx_m or px) * 255).astype(np.uint8)).convert("RGB")
    im = im.resize((size, size), Image.NEAREST) if im.size != (size, size) else im
    ImageDraw.Draw(im).text((4, 4), label, fill=(255, 40, 40))
    return np.asarray(im)


def _save(rows: list[list[np.ndarray]], path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    # 64 colours: grey shading and the red labels (a few times smaller than RGB)
    Image.fromarray(np.vstack([np.hstack(r) for r in rows])).quantize(64).save(path, optimize=True)


def cascade_rows(crops: Path, data: Path, cfgs: dict, k: int, n: int, tag: str = "") -> tuple[list, list[str]]:
    """The deep-cascade panels (real | bicubic | one per fractal config of ``cfgs``) of
    st_helens, spain_gredos_25m (crops of ``generator.eval.cascade``) and the Ecuadorian 10 m
    DEM, each decimated 2^k and refined back k levels, and one table line of extrema per crop.
    ``tag``: text after the crop's name in the panel labels."""
    from generator.eval import cascade as C
    from generator.eval.vehicle import extrema_per_1000, load_crop
    from generator.fractal import FractalRefiner

    have = C.load_crops(crops)
    items = {"st_helens": have["st_helens"], "gredos": have["spain_gredos_25m"],
             "ecuador_10m": load_crop(data, "ecuador_andes_10m")}
    rows, lines = [], []
    for name, (z, px) in items.items():
        coarse = z[:: 2**k, :: 2**k]
        gen = {"real": z, "bicubic": C.cascade(None, coarse, px, k, 0)}
        for label, cfg in cfgs.items():
            gen[label] = C.cascade(FractalRefiner(config=cfg, real_parents=True), coarse, px, k, 0)
        b = C.BORDER
        rows.append([_panel(g[b : b + n, b : b + n], px, f"{name}{tag} {lab}", n) for lab, g in gen.items()])
        lines.append(f"| {name} K={k} | " + " | ".join(f"{extrema_per_1000(g[b:-b, b:-b]):.1f}"
                                                         for g in gen.values()) + " |")
    return rows, lines


def cascade_figure(crops: Path, data: Path, out: Path, k: int = 3, n: int = 160) -> list[str]:
    from generator.fractal import V5, V6, V6_CARVE

    rows, lines = cascade_rows(crops, data, {"v5": V5, "v6": V6, "v6 carve": V6_CARVE}, k, n)
    _save(rows, out / "fractal_v6_cascade_hillshade.png")
    return ["| cascade | real | bicubic | v5 | v6 | v6 carve |", "|---|---|---|---|---|---|", *lines]


def earth_window(level: int, lat: float, lon: float, n: int) -> tuple[int, int, float]:
    """(first row, first column, east-west / north-south spacing) of the n x n earth window
    of ``level`` centred on (lat, lon) degrees."""
    from generator.worldmetric import ew_scale
    from runtime.tiles import World, spacing_deg

    d = spacing_deg(level)
    r0, c0 = int((90.0 - lat) / d) - n // 2, int((lon + 180.0) / d) - n // 2
    return r0, c0, float(ew_scale(World.EARTH, level, np.array([r0 + n // 2]))[0])


def window_row(pyrs: dict, level: int, r0: int, c0: int, n: int, ew: float, prefix: str) -> tuple[list, list[str]]:
    """One panel per pyramid of ``pyrs`` (label -> ``Pyramid``): the n x n window of ``level``
    from (r0, c0), east-west spacing ``ew`` times the north-south one, labelled ``prefix`` +
    label; and each window's extrema per 1000 samples as table cells."""
    from generator.eval.vehicle import extrema_per_1000
    from runtime.tiles import spacing_m

    row, ext = [], []
    for label, p in pyrs.items():
        z = p.region(level, r0, c0, n, n)[0]
        row.append(_panel(z, spacing_m(level), f"{prefix}{label}", n, spacing_m(level) * ew))
        ext.append(f"{extrema_per_1000(z):.1f}")
    return row, ext


def earth_figure(out: Path, lat: float = 45.36, lon: float = 5.97, n: int = 200) -> list[str]:
    from generator.fractal import V5, V6, V6_CARVE, FractalRefiner
    from generator.pyramid import Pyramid
    from runtime.tiles import World, spacing_m

    pyrs = {"v5": Pyramid(World.EARTH, 0, FractalRefiner(World.EARTH, V5)),
            "v6": Pyramid(World.EARTH, 0, FractalRefiner(World.EARTH, V6)),
            "v6 carve": Pyramid(World.EARTH, 0, FractalRefiner(World.EARTH, V6_CARVE))}
    rows, lines = [], ["| earth (45.36 N 5.97 E) | v5 | v6 | v6 carve |", "|---|---|---|---|"]
    for level in (12, 14):
        r0, c0, ew = earth_window(level, lat, lon, n)
        row, ext = window_row(pyrs, level, r0, c0, n, ew, f"L{level} ")
        rows.append(row)
        lines.append(f"| level {level} ({spacing_m(level):.1f} m) | " + " | ".join(ext) + " |")
    _save(rows, out / "fractal_v6_earth_prealps_hillshade.png")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=Path, default=Path("out/cascade_eval.npz"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--out", type=Path, default=Path("docs/figures"))
    a = ap.parse_args(argv)
    for line in cascade_figure(a.crops, a.data, a.out) + [""] + earth_figure(a.out):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
