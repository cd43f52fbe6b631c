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
    "earth/fractal/3/8/2": "1a90ef98bf008c7da94dadd31853047b959a8a1ad6c6d7d67cd4b5657c4a5ea6",
    "earth/fractal/6/67/15": "02016d959706a9dec15b08e6372c49723feeddcc2d636373ee4703fd0dfd1051",
    "earth/fractal/8/266/62": "fbca83177fa21141141f1b1857bf2860a3f79c3856ec2195819713bcdbfc374f",
    "earth/fractal/10/1061/250": "726c7a3235dc5f4e7b810b51ad3bba6c2c56fa214288a1b20b183dd7a1d5bad2",
    "plane/fractal/3/2/2": "f843f1b1690d7d33f15f78d371388ff1a9bcf48fae0b95ae111ec3a0f26ebccd",
    "plane/fractal/6/17/19": "ed8e4368604089a9c94321a9748475e6f2b2fc8851be872a69c3e17f0d38510f",
    "plane/fractal/9/139/150": "3ee8309463063445aed07bdec46e652b83e1fa28c1fae56cad1bddc0d22f4991",
    "earth/learned/3/8/2": "34b752b1059e568e862fa69ca4a1ae7855b88d768f08065066031a40fa55eb76",
    "earth/learned/6/67/15": "e4c61495d60f2aa710ef513d8fc7b4782fcaa5fa1f86387eec8d48fbd6170a60",
    "earth/learned/8/266/62": "e11c3dc388e75df9866774f403b1a0046768de13c29942644908e25f56dd57f8",
    "earth/learned/10/1061/250": "39b462d569ce16ee8e1b6fb7215369d7c49f4b54e8b9ab75afeaa5b81dfd6b06",
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
