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
    "earth/fractal/3/8/2": "62665b02de235d54b4d60a6be7bdb4aca3af39f0fe6cee32577f17e6d3ca16e3",
    "earth/fractal/6/67/15": "a75c5b89f98823ef7c2cee77966941e461ad3df00b945a4e9986517d1c038ce8",
    "earth/fractal/8/266/62": "c955d6761baf432209dc58ae31c188570c30082a4c6cfabac74e5d7c0e98359b",
    "earth/fractal/10/1061/250": "87942892267296099a74180a85ee0af419f385d629da8c8e09c62af799029160",
    "plane/fractal/3/2/2": "16e31c0dbce26be37dafde6d7b6b461688ae498f7ac64d631b0c531ab1ab1f96",
    "plane/fractal/6/17/19": "30554a5b1d375352d769160337043ffda62232fea381ecee02325f9cd8fc7aca",
    "plane/fractal/9/139/150": "acbc2610276a4d5c200de467c4186fe08a04a86a5713158b5f9e845cbd5a1e97",
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
