"""streaming.bake: region planning, resumable bakes, store integrity under SIGKILL, a Ray
bake with 2 local workers, and static exports (quantized-mesh, 3D Tiles)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
from eco_fixtures import gltf_validate, node_available

from generator.pyramid import open_world
from generator.water import earth_water_mask
from runtime.tiles import TileKey, World
from streaming import ecosystem as E
from streaming import implicit as I
from streaming.bake import BBox, bake, bbox_keys, export_store, open_store, parse_levels, plan_keys, stored_keys

REPO = Path(__file__).resolve().parents[2]
BOX = BBox(86.0, 27.0, 88.0, 29.0)  # around Everest


def test_bbox_keys_cover_the_region_exactly():
    # Level 5: tiles of 180/32 = 5.625 deg; 86..88 E lies in column (86 + 180) // 5.625 = 47,
    # 27..29 N in rows (90 - 29) // 5.625 = 10 to (90 - 27) // 5.625 = 11.
    assert bbox_keys(World.EARTH, BOX, 5) == [TileKey(5, 47, 10), TileKey(5, 47, 11)]
    k8 = bbox_keys(World.EARTH, BOX, 8)
    d = 180 / 256
    assert {k.x for k in k8} == set(range(int((86 + 180) // d), int((88 + 180) // d) + 1))
    assert {k.y for k in k8} == set(range(int((90 - 29) // d), int((90 - 27) // d) + 1))
    # Clipped to the globe; plane boxes in metres, negative coordinates included.
    assert len(bbox_keys(World.EARTH, BBox(-200, -100, 200, 100), 1)) == 8
    s = 180 / 256 * 111319.49079327357 * 256  # plane level-0 tile width (m)
    assert bbox_keys(World.PLANE, BBox(-1.0, -1.0, 1.0, 1.0), 0) == [
        TileKey(0, -1, -1), TileKey(0, 0, -1), TileKey(0, -1, 0), TileKey(0, 0, 0)]
    assert bbox_keys(World.PLANE, BBox(0.0, -s, s, 0.0), 0) == [TileKey(0, 0, 0)]


def test_plan_has_ancestors_and_roots_first():
    keys = plan_keys(World.EARTH, BOX, (5, 6))
    assert keys[:2] == [TileKey(0, 0, 0), TileKey(0, 1, 0)]
    assert [k.level for k in keys] == sorted(k.level for k in keys)
    assert set(keys) >= {TileKey(5, 47, 10).ancestor(level) for level in range(5)}
    assert plan_keys(World.EARTH, BOX, (5, 6), ancestors=False) == [k for k in keys if k.level >= 5]


@pytest.mark.parametrize("text, expected", [("3..7", (3, 7)), ("5", (5, 5))])
def test_parse_levels(text, expected):
    assert parse_levels(text) == expected


@pytest.mark.parametrize("bad", ["7..3", "a..b", "1..99", "1..2..3"])
def test_parse_levels_rejects(bad):
    with pytest.raises(ValueError, match="levels must be A..B"):
        parse_levels(bad)


def test_bbox_rejects_inverted_and_short():
    with pytest.raises(ValueError, match="west < east"):
        BBox.parse("10,0,5,1")
    with pytest.raises(ValueError, match="four numbers"):
        BBox.parse("1,2,3")


def test_bake_is_resumable_and_verify_rebakes_damaged_tiles(tmp_path):
    keys = plan_keys(World.EARTH, BOX, (5, 6))
    out = io.StringIO()
    r1 = bake(World.EARTH, 0, keys, tmp_path, tiles_per_task=3, use_ray=False, open_pyramid=open_world, max_chunks=1,
              progress_stream=out)
    assert (r1.tiles, r1.skipped, r1.planned) == (3, 0, len(keys))
    store = open_store(tmp_path)
    assert stored_keys(store) == keys[:3]
    r2 = bake(World.EARTH, 0, keys, tmp_path, tiles_per_task=3, use_ray=False, open_pyramid=open_world,
              progress_stream=out)
    assert (r2.tiles, r2.skipped) == (len(keys) - 3, 3)
    assert stored_keys(store) == keys
    assert "baked" in out.getvalue() and f"{len(keys)}/{len(keys)} keys" in out.getvalue()
    # Damage one tile (a torn disk write) and leave a writer's temporary file behind.
    victim = store.path(keys[4])
    victim.write_bytes(victim.read_bytes()[:-100])
    stray = victim.with_name(f".{victim.name}.123.456.tmp")
    stray.write_bytes(b"partial")
    os.utime(stray, (0, 0))  # old: its writer is long gone
    r3 = bake(World.EARTH, 0, keys, tmp_path, use_ray=False, open_pyramid=open_world, progress_stream=out)
    assert r3.tiles == 0  # without --verify, existence is enough
    r4 = bake(World.EARTH, 0, keys, tmp_path, use_ray=False, open_pyramid=open_world, verify=True, progress_stream=out)
    assert (r4.tiles, r4.skipped) == (1, len(keys) - 1)
    assert not stray.exists()
    assert all(store.get(k) is not None for k in keys)


_KILL_SCRIPT = """
import sys
from streaming.bake import Baker, chunked, plan_keys, BBox
from runtime.tiles import World
keys = plan_keys(World.EARTH, BBox(86.0, 27.0, 88.0, 29.0), (5, 8))
from generator.pyramid import open_world
b = Baker("earth", 0, sys.argv[1], open_world)
for chunk in chunked(keys, 2):
    b.bake(chunk)
    print(len(chunk), flush=True)
"""


def test_store_stays_intact_when_a_baker_is_killed(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path)], stdout=subprocess.PIPE,
                            text=True, env=env)
    try:
        for _ in range(3):  # let it bake three chunks, then kill it in the middle of the next
            assert proc.stdout.readline().strip() == "2"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    store = open_store(tmp_path)
    held = stored_keys(store)
    keys = plan_keys(World.EARTH, BOX, (5, 8))
    assert 6 <= len(held) < len(keys)
    assert all(store.get(k) is not None for k in held)  # every file that exists is whole
    r = bake(World.EARTH, 0, keys, tmp_path, use_ray=False, open_pyramid=open_world, verify=True,
             progress_stream=io.StringIO())
    assert r.tiles == len(keys) - len(held) and r.skipped == len(held)
    assert stored_keys(store) == keys
    # The resumed store holds the same bytes a fresh bake makes (tiles are pure functions).
    from streaming.bake import Baker

    fresh = Baker("earth", 0, str(tmp_path / "fresh"), open_world)
    fresh.bake(held[-2:] + keys[-2:])
    for k in held[-2:] + keys[-2:]:
        assert fresh.store.get(k) == store.get(k)


def test_ray_bake_with_two_local_workers(tmp_path):
    pytest.importorskip("ray")
    from streaming.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        rc = main(["bake", "--world", "earth", "--bbox", "86,27,88,29", "--levels", "5..7",
                   "--store", str(tmp_path), "--workers", "2", "--tiles-per-task", "4"])
    assert rc == 0
    report = json.loads(out.getvalue().strip().splitlines()[-1])
    keys = plan_keys(World.EARTH, BOX, (5, 7))
    assert report["planned"] == len(keys) == report["tiles"] and report["workers"] == 2
    store = open_store(tmp_path)
    assert stored_keys(store) == keys
    frames = {k: store.get(k) for k in keys}
    assert all(f is not None for f in frames.values())
    assert report["bytes"] == sum(len(f) for f in frames.values())
    assert report["tiles_per_s"] > 0
    # Baked on Ray = baked here, byte for byte (the frames a live server would send).
    from streaming.bake import Baker

    here = Baker("earth", 0, str(tmp_path / "here"), open_world)
    here.bake(keys[-3:])
    assert all(here.store.get(k) == frames[k] for k in keys[-3:])


@pytest.fixture(scope="module")
def baked(tmp_path_factory):
    root = tmp_path_factory.mktemp("baked")
    keys = plan_keys(World.EARTH, BOX, (5, 6))
    bake(World.EARTH, 0, keys, root, use_ray=False, open_pyramid=open_world, progress_stream=io.StringIO())
    return root, keys


def test_export_quantized_mesh(baked, tmp_path):
    qmt = pytest.importorskip("quantized_mesh_tile")
    root, keys = baked
    rep = export_store(open_store(root), tmp_path, "quantized-mesh", progress_stream=io.StringIO(),
                       water=earth_water_mask)
    assert rep.tiles == len(keys) and rep.files == 2 * len(keys) + 1 and rep.corrupt == 0
    layer = json.loads((tmp_path / "terrain" / "layer.json").read_text())
    assert layer["available"][0] == [{"startX": 0, "startY": 0, "endX": 1, "endY": 0}]
    assert layer["maxzoom"] == 6
    for k in keys:
        path = tmp_path / "terrain" / E.terrain_path_of(k)
        assert path.exists() and (tmp_path / "imagery" / f"{k.level}/{k.x}/{k.y}.png").exists()
    k = keys[-1]
    d = 180 / (1 << k.level)
    west, north = -180 + k.x * d, 90 - k.y * d
    dec = qmt.decode(str(tmp_path / "terrain" / E.terrain_path_of(k)), (west, north - d, west + d, north),
                     hasLighting=True)
    tile = E.frame_tile(open_store(root).get(k))
    assert len(dec.h) == len(tile.grid_rc)
    h = np.array(dec.getVerticesCoordinates())[:, 2]
    assert h.min() == pytest.approx(tile.height_m.min(), abs=0.01) and h.max() == pytest.approx(tile.height_m.max(),
                                                                                                abs=0.01)


def test_export_3dtiles(baked, tmp_path):
    root, keys = baked
    rep = export_store(open_store(root), tmp_path, "3dtiles", progress_stream=io.StringIO())
    ts = json.loads((tmp_path / "3dtiles" / "tileset.json").read_text())
    assert [c["implicitTiling"]["availableLevels"] for c in ts["root"]["children"]] == [7, 7]
    glbs = sorted((tmp_path / "3dtiles" / "tiles").rglob("*.glb"))
    subtrees = sorted((tmp_path / "3dtiles" / "subtrees").rglob("*.subtree"))
    assert len(glbs) == len(keys)
    # Subtrees: both roots (levels 0..3) and the level-4 subtree holding levels 4..6.
    assert [p.relative_to(tmp_path / "3dtiles").as_posix() for p in subtrees] == sorted(
        [I.subtree_path_of(I.ImplicitCoord(0, 0, 0, 0)), I.subtree_path_of(I.ImplicitCoord(1, 0, 0, 0)),
         I.subtree_path_of(I.implicit_coord(TileKey(4, 23, 5)))])
    assert rep.files == len(glbs) + len(subtrees) + 1
    if node_available():
        reports = gltf_validate(glbs)
        assert all(r["issues"]["numErrors"] == 0 for r in reports), [r["issues"] for r in reports]


def _terrain_normals(data: bytes) -> dict[tuple[int, int], np.ndarray]:
    """{(row, col): oct-decoded normal} parsed from quantized-mesh bytes (u, v deltas, then
    the normals extension, maybe followed by the water mask: id 2, 1 or 65,536 bytes)."""
    from runtime.formats.export import oct_decode

    unzig = lambda x: (x.astype(np.int64) >> 1) ^ -(x.astype(np.int64) & 1)  # noqa: E731
    n = int(np.frombuffer(data, "<u4", 1, 88)[0])
    u = np.cumsum(unzig(np.frombuffer(data, "<u2", n, 92)))
    v = np.cumsum(unzig(np.frombuffer(data, "<u2", n, 92 + 2 * n)))
    end = len(data)
    for size in (1, 256 * 256):  # a trailing water mask extension
        head = end - size - 5
        if head > 0 and data[head] == 2 and int(np.frombuffer(data, "<u4", 1, head + 1)[0]) == size:
            end = head
            break
    assert data[end - 2 * n - 5] == 1 and int(np.frombuffer(data, "<u4", 1, end - 2 * n - 4)[0]) == 2 * n
    normals = oct_decode(np.frombuffer(data, np.uint8, 2 * n, end - 2 * n).reshape(n, 2))
    rows, cols = 256 - np.round(v * 256 / 32767).astype(int), np.round(u * 256 / 32767).astype(int)
    return {(int(r), int(c)): normals[i] for i, (r, c) in enumerate(zip(rows, cols, strict=True))}


def test_exported_neighbours_agree_on_shared_edge_normals(baked, tmp_path):
    root, keys = baked
    export_store(open_store(root), tmp_path, "quantized-mesh", progress_stream=io.StringIO(), water=earth_water_mask)
    have = set(keys)
    pairs = [(k, TileKey(k.level, k.x + 1, k.y)) for k in keys if TileKey(k.level, k.x + 1, k.y) in have]
    pairs += [(k, TileKey(k.level, k.x, k.y + 1)) for k in keys if TileKey(k.level, k.x, k.y + 1) in have]
    assert len(pairs) >= 4
    read = lambda k: _terrain_normals((tmp_path / "terrain" / E.terrain_path_of(k)).read_bytes())  # noqa: E731
    for a, b in pairs:
        na, nb = read(a), read(b)
        east = b.x != a.x
        for j in range(257):
            pa, pb = ((j, 256), (j, 0)) if east else ((256, j), (0, j))
            assert np.degrees(np.arccos(np.clip(na[pa] @ nb[pb], -1, 1))) < 1.0, (a, b, j)
    # stitched: a tile with stored neighbours differs from the same frame converted alone
    a = max(pairs)[0]  # deepest level: steepest slopes between samples
    alone = _terrain_normals(E.terrain_bytes(open_store(root).get(a)))
    exported = read(a)
    assert any(np.abs(alone[p] - exported[p]).max() > 0.02 for p in exported)


def test_export_refuses_plane_and_empty_stores(tmp_path):
    from streaming.store import TileStore

    TileStore(tmp_path / "p", "m", "plane", 0)
    with pytest.raises(ValueError, match="need the earth world"):
        export_store(open_store(tmp_path / "p"), tmp_path / "o", "3dtiles")
    with pytest.raises(FileNotFoundError, match="no tile store"):
        open_store(tmp_path / "nothing")


@pytest.mark.parametrize("argv, says", [
    (["bake", "--bbox", "1,2,3", "--levels", "1..2", "--store", "S"], "bbox must be four numbers"),
    (["bake", "--bbox", "1,2,3,4", "--levels", "3..1", "--store", "S"], "levels must be A..B"),
    (["export", "--store", "NOWHERE", "--format", "3dtiles", "--out", "O"], "no tile store under"),
    (["export", "--store", "S", "--format", "kml", "--out", "O"], "invalid choice: 'kml'"),
    (["serve", "--world", "plane", "--http"], "need the earth world"),
])
def test_cli_errors_are_one_line(argv, says, tmp_path, capsys, monkeypatch):
    from streaming.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse errors exit
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and says in err and len(err.splitlines()) == 1
