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
    "earth/fractal/3/8/2": "6ed07712f9e03245fb48066f72a8afe23b3d99c7ff6c05f5c9908f3012bb8c73",
    "earth/fractal/6/67/15": "9cb8ba85aff9514bc1ecb245de88ca2f45f972136c9a3aa7815024e05ad738ef",
    "earth/fractal/8/266/62": "70c42c2a16fc1016eb7768bc6808f841583f0b612f011edb0cac398d34a41ee4",
    "earth/fractal/10/1061/250": "4585984027c0e4f3d390f0077d792480308e334c07735e59370ebe7232c07ae7",
    "plane/fractal/3/2/2": "dbd71a984e7898eef94ead597d72ee07001be4253dc017ae3b546b67fddb2360",
    "plane/fractal/6/17/19": "c3fb6d0296750f90213f6e35a375aca9bacb25ddc70e02079ed7d0e1043ba5e3",
    "plane/fractal/9/139/150": "20379d480be9bb995382312298bb1105e9f5987bd63ae0ba37f421f76bd0f3d6",
    "earth/learned/3/8/2": "50da52709b3b09939feaaff476193b77ebf2d5f6e4a2c9b8be2c5317d4138067",
    "earth/learned/6/67/15": "adab94dfd0a31d400746d5ca77a7790cff30857ac85e6d0c042b7fce415b0e81",
    "earth/learned/8/266/62": "f47e04c4ab38e464ae233fa1c40b94f2cc15a3898ad968c733b9b15074f854d7",
    "earth/learned/10/1061/250": "038502e0efe4ea52a079cf8ee376ac1e254df12c2c86f36d8f9d7b92e22cc94e",
    "plane/learned/3/2/2": "450f110427f3e73173d7d3c150efff45f5c402fc1914bfcf675efbf1556008a7",
    "plane/learned/6/17/19": "8bd578f81a8efaf891b5527c02260d89ec78f6af452d553cf4933dadca748c14",
    "plane/learned/9/139/150": "5df099b225b651b5ae9c5a1b982797e351412c4ad41ee16ccc55a09c0997a0a7",
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
