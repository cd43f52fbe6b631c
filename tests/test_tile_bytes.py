"""The server's tile frames, byte for byte, for a fixed set of tiles (seed 7).

Fourteen tiles, from the anchor level to level 10, in both worlds (earth, plane) and with
both refiners (fractal, learned), go through the production path: ``Pyramid.tile`` ->
``streaming.tileservice.mesh_encoder`` (TIN, skirts, wire payload, ``tile`` frame), and the
frame's sha256 is compared with the value recorded here. The learned refiner runs on the
CPU (backend ``torch``), the exact reference, whatever machine runs the test; that backend
pins torch to ``CPU_THREADS`` intra-op threads, because single-threaded CPU convolutions
round differently (1 thread gives other heights; 2, 3, 4 and 8 threads the same ones).

These hashes change only when generated content changes on purpose: a new anchor, a new
or retuned refiner, new weights, or a deliberate change to meshing or the wire format.
Then update them in the same commit and say why in its message. A refactor that moves
them has changed the bytes the server sends: find out why instead.
"""

import hashlib

import pytest

from generator.pyramid import open_world
from runtime.tiles import TileKey, World
from streaming.tileservice import mesh_encoder

SEED = 7

TILES = {
    World.EARTH: [TileKey(3, 8, 2), TileKey(6, 67, 15), TileKey(8, 266, 62), TileKey(10, 1061, 250)],
    World.PLANE: [TileKey(3, 2, 2), TileKey(6, 17, 19), TileKey(9, 139, 150)],
}

EXPECTED_SHA256 = {
    "earth/fractal/3/8/2": "3d54f9ed3358dd7c64427dd1ab0905ac72805f6f219c2adc01d46f8f2959133e",
    "earth/fractal/6/67/15": "bdc0d8bf1446dc61f6711079aa935fab50ebd510d5da9221acc274264fdd1652",
    "earth/fractal/8/266/62": "a3aac650d7b9ee6580ad713ac331b95a1af904d4c092a5ebcb67b47b12f0de0a",
    "earth/fractal/10/1061/250": "b34080515d282eaf5dff522a1129d17c89d380a7609227f94c328f6e1df34aa9",
    "plane/fractal/3/2/2": "cbdd90776244ed1bc517892811408672164f84088b2d0a3e12fc61cf2f7ec911",
    "plane/fractal/6/17/19": "8fa14194544883d9057c7a055affeb7777c1ed60d12f767d17f62bda29a3ac02",
    "plane/fractal/9/139/150": "4b322103be290da802a2fc79a9831c552171880c1a13724e1951b9fa49df15ba",
    "earth/learned/3/8/2": "beca4e2dfdc5f52201196014f513c8f0f823a51f549ec10fd048444b88ca0ca8",
    "earth/learned/6/67/15": "80befa48d1a00a64c61f5bef587de0555bc78dc3182a7044c609df64229d73d0",
    "earth/learned/8/266/62": "60af0a5527ea5f45e2b2716bf7b962379e97d93aff6d3125d8dcfa93aa4db88f",
    "earth/learned/10/1061/250": "9f23ce0a45b73e3edf6f67b51fddedae8f4742e8212a2e383bb035db2a26648a",
    "plane/learned/3/2/2": "2a091820ba3165808fa83aed201886f5fa54a8ebf3bc540ff377004e1406d4ba",
    "plane/learned/6/17/19": "454974f5102a1183de761eb3014160b1dec048f3023413b2a86dd3d0990f8b90",
    "plane/learned/9/139/150": "21b8dc8f51e0c87e26bee8a4b76603671d15dc1361d67d4505a376ec8ac89ad4",
}

# The learned refiner's CPU reference is exact per machine class, not across them (docs/DECISIONS.md,
# "Learned the hard way"): with torch's kernels capped at AVX2, a CPU with AVX-512 still gives
# other bytes for these two tiles (seen on the device's AVX-512 Xeon, torch 2.11, and on a 2-core
# Intel Xeon with torch 2.13 CPU, 2026-12-07, where MKL's instruction cap moved them but no cap
# gave the AVX2 box's). Recorded on that 2-core Xeon; the other tiles hash alike on both. An AMD
# EPYC with AVX-512 (2-core, torch 2.13 CPU, 2026-12-07) gives the AVX2 box's bytes (likely the libraries
# take their AVX-512 paths on Intel only; not checked).
EXPECTED_SHA256_AVX512 = {
    "earth/learned/8/266/62": "59848ffe20c53b835fc87f504e98682a9fa8c5ce1e400a63ef60741d01f8fbcf",
    "earth/learned/10/1061/250": "b59e0e9baaa7f839698613edacb229334d6fcdf846f752132300a0441bd3e395",
}


def _has_avx512() -> bool:
    """Whether this is an Intel CPU with AVX-512 (numpy's runtime feature table; the vendor from
    /proc/cpuinfo where there is one): the machine class whose learned bytes differ."""
    import numpy as np

    if not np._core._multiarray_umath.__cpu_features__.get("AVX512F"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return "GenuineIntel" in f.read(1 << 16)
    except OSError:
        return True


def _refiner(name: str, world: World):
    if name == "learned":  # the CPU reference even where a GPU would pick another backend
        from generator.learned.refiner import LearnedRefiner

        return LearnedRefiner(world, backend="torch", device="cpu")
    return name


@pytest.mark.parametrize("refiner", ["fractal", pytest.param("learned", marks=pytest.mark.slow)])
def test_tile_frames_hash_to_the_recorded_values(refiner):
    encode = mesh_encoder()
    got = {}
    for world, keys in TILES.items():
        pyramid = open_world(world, SEED, refiner=_refiner(refiner, world))
        for k in keys:
            frame = encode(world, k, pyramid.tile(k))
            got[f"{world.value}/{refiner}/{k.level}/{k.x}/{k.y}"] = hashlib.sha256(frame).hexdigest()
    expected = {**EXPECTED_SHA256, **(EXPECTED_SHA256_AVX512 if _has_avx512() else {})}
    want = {name: h for name, h in expected.items() if f"/{refiner}/" in name}
    assert got == want
