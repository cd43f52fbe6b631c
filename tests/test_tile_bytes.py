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
    "earth/fractal/3/8/2": "fffbc8419381cf0a78f4c4b6976a0e6321cac59f2cfebc8ac7397e1b70248f4b",
    "earth/fractal/6/67/15": "6adcd047777f64a5b4b07d32e471981a5ff292d6bad0d490b4e515ac3f83510d",
    "earth/fractal/8/266/62": "59fa73864463071b372af44fd715fd1891b321ae94d77542e85389e39bc2e658",
    "earth/fractal/10/1061/250": "73efdbf80a75e1ae82ea03e8f9b0108a631732f802a4e2f8d29b4e803570b54c",
    "plane/fractal/3/2/2": "ed8cf048b69ff76de8d1c60b5d5afc20bc8c1eaffab9dce392b15c04e208ed38",
    "plane/fractal/6/17/19": "2378d95e836413d3e2e6fe39e8676f9eb936e38f7431a3296a7983c23640fd1f",
    "plane/fractal/9/139/150": "a7e36767543e6b9bc5d4cfbfcfab8c29ffb5baa5bc3214a64b13a9145622f00a",
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
