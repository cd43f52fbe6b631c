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
    "earth/fractal/3/8/2": "ddc471730ab152f24de7b958c2a8b19a36109d56a3dc1e6583ce4da79d6d1d88",
    "earth/fractal/6/67/15": "8986a701807cf8085b493b1f6b6400b66fe1300eb96f0956e071735bb20272a2",
    "earth/fractal/8/266/62": "271106790acfc56bb1fadae2f77970c27bc5f003bbcf66320ba02a2f1dd8cea0",
    "earth/fractal/10/1061/250": "d7c00803b5789e1112488293fdde67f1ed8d52c0de14a5f14290cc634ffe20ea",
    "plane/fractal/3/2/2": "cbdd90776244ed1bc517892811408672164f84088b2d0a3e12fc61cf2f7ec911",
    "plane/fractal/6/17/19": "8fa14194544883d9057c7a055affeb7777c1ed60d12f767d17f62bda29a3ac02",
    "plane/fractal/9/139/150": "4b322103be290da802a2fc79a9831c552171880c1a13724e1951b9fa49df15ba",
    "earth/learned/3/8/2": "d08dd533a73b23e658dab9c30a90692b12de68d1c0588dc787754be7fee27716",
    "earth/learned/6/67/15": "ab004f015db0780cb5771f2fee8c460a5ac99154dc5d7b3ae8daa3bf546a7f4a",
    "earth/learned/8/266/62": "52a2d2bd60b7795af96a76ed329a78145c1553e57f3a7f4b0f65977f58f21509",
    "earth/learned/10/1061/250": "7720b5760d43e4acc7a63bd13a42be35a83a9d2befe1e3e015dea2e2ddc88628",
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
