"""Refiner throughput: tiles/s per backend for 257 x 257 child tiles, all channels.

One tile = one refine of a (129 + 2m)^2 parent crop into a 257^2 child window of
height + rgb + nir (5 channels), noise included. Baselines in the same run: torch eager
(the compiled backend must be >= 3x it) and the procedural fractal refiner (CPU).

GPU numbers are device-resident (tensors in and out on the GPU, what a batching server
feeds); `--e2e` adds the numpy path with host<->device copies.

    PYTHONPATH=. python bench/generator.py --backends torch,onnxruntime,fractal
    PYTHONPATH=. python bench/generator.py --device cuda --batch 256 \
        --backends torch,torch-compiled,tensorrt,fractal

Ends with one JSON line: {"bench": "generator", "tiles_per_s": {backend: value}, ...}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# generator package: drop that entry.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generator.learned.backends import COMPILED, BackendUnavailable, make_backend  # noqa: E402
from generator.learned.checkpoint import ASSET_PATH, load_net  # noqa: E402
from generator.learned.inputs import noise_coords, noise_torch, noise_torch_keys, stream_keys  # noqa: E402
from runtime.tiles import T, spacing_m  # noqa: E402


def _inputs(batch: int, crop: int, margin: int, level: int, rng: np.random.Generator):
    """Realistic-looking parent crops: smooth relief in metres, bands in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    h = gaussian_filter(rng.normal(0, 1, (batch, crop, crop)), (0, 4, 4)) * 3000.0 + 800.0
    bands = np.clip(gaussian_filter(rng.uniform(0, 1, (batch, 4, crop, crop)), (0, 0, 2, 2)), 0, 1)
    parents = np.concatenate([h[:, None], bands], 1).astype(np.float32)
    origins = np.stack([np.arange(batch) * T, np.full(batch, 3 * T)], 1).astype(np.int64)
    rows, cols = noise_coords(origins, crop, crop, margin)
    s = np.full((batch,), spacing_m(level), np.float32)
    present = np.ones((batch, 2), np.float32)
    return parents, rows, cols, s, present


def _time(fn, sync, min_s: float, min_reps: int = 3) -> float:
    """Median seconds per call after a warm-up."""
    for _ in range(2):
        fn()
    sync()
    times, t_all = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - t_all < min_s:
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def bench_learned(name, net, version, args, rng) -> dict:
    m = net.config.margin
    crop = T // 2 + 1 + 2 * m
    dev = "cuda" if name in COMPILED else args.device
    batch = args.batch if dev == "cuda" else args.cpu_batch
    opts = {"device": dev}
    if name == "tensorrt":
        opts["crop"] = crop
    variant = ""
    if name.startswith("torch-compiled"):  # torch-compiled[:mode[:nchw]]
        parts = name.split(":")
        opts["mode"] = parts[1] if len(parts) > 1 else "reduce-overhead"
        opts["channels_last"] = not (len(parts) > 2 and parts[2] == "nchw")
        name, variant = "torch-compiled", ":".join(parts[1:])
    backend = make_backend(name, net, version, **opts)
    level, seed = 14, 1
    arrays = _inputs(batch, crop, m, level, rng)
    row = {"backend": name + (f":{variant}" if variant else ""), "device": dev, "batch": batch}
    if dev == "cuda":
        d = torch.device("cuda")
        p, r, c, s, pr = (torch.from_numpy(a).to(d) for a in arrays)
        sec = _time(
            lambda: backend.run_torch(p, seed, level, r, c, s, pr), torch.cuda.synchronize, args.seconds
        )
        row["tiles_per_s"] = batch / sec
        if name != "torch":  # same outputs as the float32 eager reference?
            ref = make_backend("torch", net, version, device="cuda").run_torch(p, seed, level, r, c, s, pr)
            out = backend.run_torch(p, seed, level, r, c, s, pr)
            row["max_dh_vs_eager_m"] = float((out[:, 0] - ref[:, 0]).abs().max())
            row["even_exact"] = bool(torch.equal(out[:, :, ::2, ::2], p[:, :, m:-m, m:-m]))
        if name == "torch-compiled":  # the in-graph (fused) noise has the reference bits?
            keys = torch.tensor(stream_keys(seed, level, net.config.noise_channels), device="cuda")
            fused = torch.compile(noise_torch_keys)(keys, r, c)
            row["noise_bits_equal"] = bool(torch.equal(fused, noise_torch(seed, level, r, c, len(keys))))
        if args.e2e:
            p_np, r_np, c_np, s_np, pr_np = arrays
            sec = _time(
                lambda: backend.run_level(p_np, seed, level, r_np, c_np, s_np, pr_np),
                torch.cuda.synchronize,
                args.seconds,
            )
            row["e2e_tiles_per_s"] = batch / sec
    else:
        sec = _time(
            lambda: backend.run_level(*arrays[:1], seed, level, *arrays[1:]), lambda: None, args.seconds
        )
        row["tiles_per_s"] = batch / sec
    return row


def bench_fractal(args, rng) -> dict:
    from generator.fractal import FractalRefiner

    ref = FractalRefiner()
    m = ref.margin
    crop = T // 2 + 1 + 2 * m
    batch = args.cpu_batch
    parents = _inputs(batch, crop, m, 14, rng)[0][:, : ref.channels]
    origins = np.stack([np.arange(batch) * T, np.full(batch, 3 * T)], 1).astype(np.int64)
    sec = _time(lambda: ref.refine(parents, 14, origins, 1), lambda: None, args.seconds)
    return {"backend": "fractal", "device": "cpu", "batch": batch, "tiles_per_s": batch / sec}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backends", default="torch,onnxruntime,fractal")
    ap.add_argument("--checkpoint", default=str(ASSET_PATH))
    ap.add_argument("--device", default="cpu", help="device of the eager torch baseline")
    ap.add_argument("--batch", type=int, default=256, help="tiles per call on the GPU")
    ap.add_argument("--cpu-batch", type=int, default=4, help="tiles per call on the CPU")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per backend")
    ap.add_argument("--e2e", action="store_true", help="also time the numpy path with host copies")
    args = ap.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    net, version, _ = load_net(args.checkpoint)
    rng = np.random.default_rng(0)
    rows = []
    for name in args.backends.split(","):
        try:
            rows.append(
                bench_fractal(args, rng)
                if name == "fractal"
                else bench_learned(name, net, version, args, rng)
            )
        except BackendUnavailable as e:
            rows.append({"backend": name, "unavailable": str(e)})
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    print(
        f"refiner throughput, 257x257 tiles, 5 channels, model {version}, torch {torch.__version__}, "
        f"GPU {gpu}, CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()}"
    )
    print(
        f"{'backend':<34}{'device':<8}{'batch':>6}{'tiles/s':>12}{'e2e tiles/s':>14}"
        f"{'max|dh| vs eager m':>20}"
    )
    for r in rows:
        if "unavailable" in r:
            print(f"{r['backend']:<34}unavailable: {r['unavailable']}")
        else:
            e2e = f"{r['e2e_tiles_per_s']:.1f}" if "e2e_tiles_per_s" in r else "-"
            dh = f"{r['max_dh_vs_eager_m']:.2e}" if "max_dh_vs_eager_m" in r else "-"
            print(
                f"{r['backend']:<34}{r['device']:<8}{r['batch']:>6}{r['tiles_per_s']:>12.1f}{e2e:>14}{dh:>20}"
            )
    tps = {r["backend"]: round(r["tiles_per_s"], 2) for r in rows if "tiles_per_s" in r}
    summary = {
        "bench": "generator",
        "model": version,
        "gpu": gpu,
        "tiles_per_s": tps,
        "e2e_tiles_per_s": {
            r["backend"]: round(r["e2e_tiles_per_s"], 2) for r in rows if "e2e_tiles_per_s" in r
        },
        "unavailable": {r["backend"]: r["unavailable"] for r in rows if "unavailable" in r},
        "max_dh_vs_eager_m": {r["backend"]: r["max_dh_vs_eager_m"] for r in rows if "max_dh_vs_eager_m" in r},
        "even_exact": {r["backend"]: r["even_exact"] for r in rows if "even_exact" in r},
        "noise_bits_equal": {r["backend"]: r["noise_bits_equal"] for r in rows if "noise_bits_equal" in r},
    }
    if "torch-compiled" in tps and "torch" in tps:
        summary["compiled_over_eager"] = round(tps["torch-compiled"] / tps["torch"], 2)
        best = max((k for k in tps if k.startswith("torch-compiled")), key=tps.get)
        summary["best_compiled"] = {"backend": best, "over_eager": round(tps[best] / tps["torch"], 2)}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
