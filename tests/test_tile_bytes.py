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
    "earth/fractal/3/8/2": "c4a2c98ea0fa9cce2ff4c114665e3e42da21fdde82f82510262ff3e6c60128a8",
    "earth/fractal/6/67/15": "7f139d4a62da6628a6e04569d75b3a6987138bd54a2be97dbc8471d561062cc6",
    "earth/fractal/8/266/62": "4eff3be57857bc306be77375971c13a081d7f0feecd78fe773263364888d41fd",
    "earth/fractal/10/1061/250": "256815bf88c28d864f4a04f3378862775b9877ac819a45fe89e025fd7fea8770",
    "plane/fractal/3/2/2": "5bc70206b68db64f16bbabb84a96208080b6ca7f92a15ef46548779b79c30405",
    "plane/fractal/6/17/19": "35dc6b11ed8137ef8975e635b40040953c9244fe4d2989ea8af67c68fc3fe3c5",
    "plane/fractal/9/139/150": "044abed0315c22f54a87020b02f79b5c0f31f1363b20b7fc27a1ef1fef9ddf1f",
    "earth/learned/3/8/2": "ebfc926a9c39a47c68451d8ee6d2be31196bc9f703b61be2d3d733c762f376b4",
    "earth/learned/6/67/15": "8ad877a502bb90e131985698108fc44f8d300189517b7cd65ecfb33d90cb5008",
    "earth/learned/8/266/62": "91b4ca0c16f9c9bf546c3e1ad87918f4883e388b6bbfa928fee70ca180edf46b",
    "earth/learned/10/1061/250": "7809f7e9e321b09ade314b60da3b5622fff85a9a5895d74d083c98b407b87baf",
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
