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
    "earth/learned/3/8/2": "afe594fa1985c115e5a04e0c06fd585ae864abbb7a410d40de99472ab97ac802",
    "earth/learned/6/67/15": "745e0e8236a592a9228b399d4eb1f8b7b39294bf0bacf9ae2123e803174787a8",
    "earth/learned/8/266/62": "959010fd46069ce643945828bac158d1456cd263e95d1e0f34d13a96abe4e560",
    "earth/learned/10/1061/250": "2e6c34fb6b7299b8d4eebac8ff68e156027dee7a7365adfa55b6967f051ea66d",
    "plane/learned/3/2/2": "b9a5bf81519ea62379f68f75f05562f3d6bee2f57fd75f1d7cbc7bf34c3fa1aa",
    "plane/learned/6/17/19": "7fe7839d0e11a72b0fba6bc0cbb55b8a2207c698f74ed6cf0675d13f0c29eb90",
    "plane/learned/9/139/150": "27d3ae65ff8a33e41facc125ad1bf55a45a06fd4930d1962d317eea7b0a18785",
}


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
    want = {name: h for name, h in EXPECTED_SHA256.items() if f"/{refiner}/" in name}
    assert got == want
