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
    "earth/fractal/3/8/2": "62fd7c9963d5478ffb642948dad46ed4d430957d0832802b2c35b888ed1bc0e0",
    "earth/fractal/6/67/15": "160e77430ee8dd27224da34f57606f16535f5cafb6c2192cbdf7d9d1d5ce7661",
    "earth/fractal/8/266/62": "06833fcebae613aa0abf67f2b6218f3264fcc662b370cb779d4c273882ed9f72",
    "earth/fractal/10/1061/250": "2f2af4c84a669de6c8b6317d39c53a78627676633f314b661abac7f44ef03155",
    "plane/fractal/3/2/2": "f843f1b1690d7d33f15f78d371388ff1a9bcf48fae0b95ae111ec3a0f26ebccd",
    "plane/fractal/6/17/19": "ed8e4368604089a9c94321a9748475e6f2b2fc8851be872a69c3e17f0d38510f",
    "plane/fractal/9/139/150": "3ee8309463063445aed07bdec46e652b83e1fa28c1fae56cad1bddc0d22f4991",
    "earth/learned/3/8/2": "f17bdf3ee5c60b17abf28543c64b0aef44ea5705181574b28569ad41574d5f9d",
    "earth/learned/6/67/15": "64a2a8a2b279f24b0086c858f93e7c0f3aa5a32925d30aeb0bb8703104df1278",
    "earth/learned/8/266/62": "acb19cecd4164e08d1b314a6d4bb0cd12da389c459edfd8c2150cb321883078b",
    "earth/learned/10/1061/250": "d2cbf46f467cb1f720a08ce69678ecb7343caf3e95fce6839204053c57c6ca9b",
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
