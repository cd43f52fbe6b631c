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
    "earth/fractal/3/8/2": "ff345a817b4babc56ead33ba0eb3e1f700f6a4fee5527d7699f3561b344a0ef0",
    "earth/fractal/6/67/15": "c5c858964a60e0f38f65867b81adcb6ad0703213283115f6f7a7a512e1a7ce21",
    "earth/fractal/8/266/62": "dcd4df8aaa4d854adddd4ad11f4239b35d50e94a06d7a487e8905c1f51e3b6dc",
    "earth/fractal/10/1061/250": "60312adcac724ef05301c2fc39b4127abda318ca344d7e7430908b5fde6028f3",
    "plane/fractal/3/2/2": "cbdd90776244ed1bc517892811408672164f84088b2d0a3e12fc61cf2f7ec911",
    "plane/fractal/6/17/19": "8fa14194544883d9057c7a055affeb7777c1ed60d12f767d17f62bda29a3ac02",
    "plane/fractal/9/139/150": "4b322103be290da802a2fc79a9831c552171880c1a13724e1951b9fa49df15ba",
    "earth/learned/3/8/2": "de0e38d72fcf9cd878987532acf633b02ccf593f3e99f7ef14cbc7e4a5647f27",
    "earth/learned/6/67/15": "bbf44ebd4fd8f9eaf5badf16ee8bb1a73c7d1d1c4886859410434f34b9e76d7e",
    "earth/learned/8/266/62": "e84f78f0839cfcca69adc698467695d8dcec35e9228eb8405fa1205cdf8e8e0f",
    "earth/learned/10/1061/250": "452c03ea56fca01e6996aad83ccb83fc0abd9886437eac3a70f08b872952f4c7",
    "plane/learned/3/2/2": "b9a5bf81519ea62379f68f75f05562f3d6bee2f57fd75f1d7cbc7bf34c3fa1aa",
    "plane/learned/6/17/19": "7fe7839d0e11a72b0fba6bc0cbb55b8a2207c698f74ed6cf0675d13f0c29eb90",
    "plane/learned/9/139/150": "f2b6e9d7852d3ae5e6805329435055308616dffe1ddcd9e3654da16ec1505416",
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
