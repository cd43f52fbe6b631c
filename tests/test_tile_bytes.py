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
    "earth/fractal/3/8/2": "c28b62256cf2500f617aa0e7719289a293b005194bce5df102ff3792fa75cc98",
    "earth/fractal/6/67/15": "0435ae4d59b7fc107a86972761b802984ca0b9490d546b7794e47913f68f713e",
    "earth/fractal/8/266/62": "672f0896d3d78c975e5f6630fbc45b9041457fd34521f1299ab12f1d77126544",
    "earth/fractal/10/1061/250": "10f7ca361f5282ccbfd7c63941ae6125e7c66c54279792d5a8ccc7f8ce53dbde",
    "plane/fractal/3/2/2": "f843f1b1690d7d33f15f78d371388ff1a9bcf48fae0b95ae111ec3a0f26ebccd",
    "plane/fractal/6/17/19": "ed8e4368604089a9c94321a9748475e6f2b2fc8851be872a69c3e17f0d38510f",
    "plane/fractal/9/139/150": "3ee8309463063445aed07bdec46e652b83e1fa28c1fae56cad1bddc0d22f4991",
    "earth/learned/3/8/2": "0d9a6315cb2b12138769df95267eaebb413481838869f0180f0c2463793ed444",
    "earth/learned/6/67/15": "154b42496b371e40367a9e5a0fa108f5a73284bf75ee28f3f70e7c4dea1dfc60",
    "earth/learned/8/266/62": "ddc7d0f766e74e4912c61637c9f8714ee5eb92a9d152bf4e65113639172feab2",
    "earth/learned/10/1061/250": "05ca9c3bea1b016a0ec881af1274443878321621236fe0a423118ba63527c811",
    "plane/learned/3/2/2": "ae4de5fb4a360e2227bcc8b510f98dadf714c8b6e9ecc3350a07451b5b513480",
    "plane/learned/6/17/19": "7a30b6177234aa51f380cd41202a83ad62cc85ece0c9446e3e3f1df87e62403d",
    "plane/learned/9/139/150": "22f34d5356e271079508d744f52f81eab467d3ebaceb69db95958230ec8e3255",
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
