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
    "earth/fractal/3/8/2": "4d36604371468f01ec7945873ecc728c2b58dacdbd034dc9cd9d8e1f95571707",
    "earth/fractal/6/67/15": "eb80f81b1485ec7dfd770246417dfaf997796271853e506152484553047417af",
    "earth/fractal/8/266/62": "08c85656d0766afe99003e0ab08523615cfbbc6f4774121d5104ebc17dc79822",
    "earth/fractal/10/1061/250": "26ff15e4eaa07239885abd4f5fa6238d47417caf74fc8090207523ebb3362c14",
    "plane/fractal/3/2/2": "5bc70206b68db64f16bbabb84a96208080b6ca7f92a15ef46548779b79c30405",
    "plane/fractal/6/17/19": "35dc6b11ed8137ef8975e635b40040953c9244fe4d2989ea8af67c68fc3fe3c5",
    "plane/fractal/9/139/150": "044abed0315c22f54a87020b02f79b5c0f31f1363b20b7fc27a1ef1fef9ddf1f",
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
