"""Tile placement in worker processes (viewer.placepool and the realtime _PoolPreparer)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from conftest import full_grid_tin, write_teleport_path

from runtime import wire
from runtime.tiles import T, TileKey, World
from streaming.client import SyncTileClient
from viewer.flight import ClientTile, FlightStats, client_tile
from viewer.placepool import SHM_DIR, PlacePool, _pack, _unpack, auto_procs


def _payload(key: TileKey, height_fn, step: int = 8, colour: bool = True) -> dict:
    """The wire payload of a regular TIN of ``height_fn(rows, cols)`` (what the server sends)."""
    grid_rc, faces, _ = full_grid_tin(step)
    h = height_fn(grid_rc[:, 0], grid_rc[:, 1])
    rgb = np.random.default_rng(key.x).random((T + 1, T + 1, 3)).astype(np.float32) if colour else None
    return wire.encode_tile(np.rint(grid_rc).astype(np.int64), h, faces, key=key, geometric_error_m=4.0,
                            model="test", rgb_jpeg_or_png=wire.encode_image(rgb) if colour else None)


def _same_tile(a: ClientTile, b: ClientTile) -> None:
    for name in ("vertices", "normals", "uv", "faces", "grid_rc", "height_m", "up", "center_m"):
        x, y = getattr(a.surface, name), getattr(b.surface, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert a.surface.edges.keys() == b.surface.edges.keys()
    for side in a.surface.edges:
        for x, y in zip(a.surface.edges[side], b.surface.edges[side], strict=True):
            assert np.array_equal(x, y)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.tin.faces, b.tin.faces)
    assert a.info == b.info and a.nbytes == b.nbytes and a.surface.key == b.surface.key


def _ours() -> set[str]:
    return {n for n in os.listdir(SHM_DIR) if n.startswith("worldstream-place-")} if os.path.isdir(SHM_DIR) else set()


def test_auto_procs_leaves_small_machines_to_a_thread_and_a_core_to_the_frame_loop():
    assert [auto_procs(n) for n in (1, 2, 3, 4, 8, 16, 64)] == [0, 0, 2, 3, 4, 4, 4]


@pytest.mark.skipif(not os.path.isdir(SHM_DIR), reason="needs /dev/shm")
def test_a_placed_tile_crosses_shared_memory_unchanged_and_leaves_no_file():
    key = TileKey(9, 3, 4)
    tile = client_tile(World.PLANE, key, wire.decode_tile(_payload(key, lambda r, c: 40.0 * np.sin(r / 9.0) + c)))
    before = _ours()
    data, path, spans = _pack(tile, f"worldstream-place-{os.getpid()}-test")
    assert path is not None and os.path.exists(path) and len(spans) >= 10
    assert len(data) < 16 << 10  # the arrays travel out of band: only their description is pickled
    back = _unpack(data, path, spans)
    assert not os.path.exists(path) and _ours() == before  # unlinked once mapped
    _same_tile(back, tile)
    back.surface.vertices[0, 0] += 1.0  # writable, private to this process now
    # In band (no shared memory): the same tile, copied through the pickle.
    _same_tile(_unpack(*_pack(tile, None)), tile)


def test_the_pool_places_tiles_as_this_process_would_and_survives_bad_tiles_and_a_dead_worker():
    from multiprocessing.connection import wait

    fn = lambda r, c: 25.0 * np.cos(c / 13.0) - 0.3 * r  # noqa: E731
    keys = [TileKey(11, x, 5) for x in range(3)]
    payloads = {k: _payload(k, fn, step=8 if k.x else 16) for k in keys}
    pool = PlacePool(World.PLANE, 2, client_tile)
    try:
        def run(jobs):
            out = {}
            for i, (k, p) in zip(pool.idle(), jobs, strict=False):
                pool.submit(i, k, p)
            deadline = time.monotonic() + 60
            while pool.busy() and time.monotonic() < deadline:
                busy = pool.busy()
                for conn in wait(list(busy), 1.0):
                    k, tile, cpu_s = pool.collect(busy[conn])
                    out[k] = (tile, cpu_s)
            assert not pool.busy(), "the pool did not answer"
            return out

        got = run([(keys[0], payloads[keys[0]]), (keys[1], payloads[keys[1]])])
        for k in keys[:2]:
            tile, cpu_s = got[k]
            assert isinstance(tile, ClientTile) and cpu_s > 0
            _same_tile(tile, client_tile(World.PLANE, k, wire.decode_tile(payloads[k])))
        # A payload that is not a tile fails alone, with the decoder's message; the worker serves on.
        bad = dict(payloads[keys[2]], topology="nonsense")
        got = run([(keys[2], bad), (keys[0], payloads[keys[0]])])
        assert isinstance(got[keys[2]][0], ValueError) and "topology must be" in str(got[keys[2]][0])
        assert isinstance(got[keys[0]][0], ClientTile)
        # A worker killed mid-tile: that tile fails, the worker is started again and places the next.
        pool.submit(0, keys[1], payloads[keys[1]])
        pool._procs[0].kill()
        busy = pool.busy()
        assert wait(list(busy), 30)
        k, tile, _ = pool.collect(0)
        assert k == keys[1] and isinstance(tile, RuntimeError) and "died" in str(tile)
        got = run([(keys[1], payloads[keys[1]])])
        _same_tile(got[keys[1]][0], client_tile(World.PLANE, keys[1], wire.decode_tile(payloads[keys[1]])))
    finally:
        pool.close()
    assert all(not p.is_alive() for p in pool._procs)
    assert not {n for n in _ours() if int(n.split("-")[2]) in pool._pids}  # nothing left in /dev/shm


def test_the_pool_preparer_places_real_server_tiles_most_urgent_first_and_drops_given_up_ones(plane_server_url):
    """The realtime path with worker processes: raw payloads from a real server, the most
    urgent placed first, a cancelled tile passed on unplaced, the rest equal to in-process
    placement; their morph targets made here when the parent is known."""
    from viewer.flight import _PoolPreparer

    keys = [TileKey(2, 1, 1), TileKey(3, 2, 2), TileKey(3, 3, 2), TileKey(3, 2, 3)]
    urgency = {keys[0]: 1.0, keys[1]: 3.0, keys[2]: None, keys[3]: 2.0}
    client = SyncTileClient(plane_server_url)
    raw = {}
    try:
        client.set_decode(False)
        client.request(keys)
        while len(raw) < len(keys):
            item = client.wait(30)
            assert item is not None, "tiles did not arrive"
            raw[item[0]] = item[1]
        assert all(isinstance(p, dict) and "mesh" in p for p in raw.values())  # undecoded
    finally:
        client.close()

    class Held:  # the tiles wait at the client until the preparer's workers are up
        def __init__(self, items):
            self.items = list(items)

        def poll(self):
            out, self.items = self.items, []
            return out

        def wait(self, timeout_s):
            if not self.items:
                time.sleep(timeout_s)
                return None
            return self.items.pop(0)

    stats = FlightStats()
    # One worker: placed strictly in urgency order (the first pick is made when it is idle).
    prep = _PoolPreparer(World.PLANE, Held([(k, raw[k]) for k in reversed(keys)]), stats, urgency.get, procs=1)
    try:
        got = [prep.out.get(timeout=60) for _ in keys]
    finally:
        prep.close()
    order = [k for k, _, _ in got]
    assert order[0] == keys[2] and got[0][1] is None  # given up on: first, unplaced
    assert order[1:] == [keys[0], keys[3], keys[1]]
    for k, tile, _ in got[1:]:
        assert isinstance(tile, ClientTile)
        _same_tile(tile, client_tile(World.PLANE, k, wire.decode_tile(raw[k])))
    # Children placed after their parent carry morph targets toward it.
    child = dict((k, t) for k, t, _ in got)[keys[3]]
    assert child._morph is not None and child._morph[3] is dict((k, t) for k, t, _ in got)[keys[0]].tin
    assert stats.prepare_cpu_s > 0


def test_a_realtime_flight_with_place_processes_draws_every_frame_and_completes_its_teleport(tmp_path):
    """A realtime flight (GL-free: the CPU side of every upload) against a real in-process
    server with the tiles decoded and placed in two worker processes: no hole frame, the
    teleport's view complete, the workers' CPU counted, nothing left in /dev/shm."""
    import json

    from streaming.cli import build_server
    from viewer.app import FlyOptions, run_fly

    path = tmp_path / "path.json"
    write_teleport_path(path)
    before = _ours()
    out = tmp_path / "rt"
    opts = FlyOptions(world="plane", seed=11, frames=90, out_dir=out, size=(96, 64), path_file=str(path),
                      realtime=True, lockstep=False, gl=False, write_png=False, write_mp4=False,
                      error_target_px=8.0, place_procs=2)
    assert run_fly(opts, server=build_server(World.PLANE, 11)) == 0
    s = json.loads((out / "stats.json").read_text())
    assert s["realtime"] is True and s["hole_frames"] == 0 and s["frames"] >= 1
    assert s["loading_complete"] is True and s["tiles_received"] > 0 and s["tiles_failed"] == 0
    (tele,) = s["teleport_complete_s"]
    assert tele is not None and 0.0 < tele < 2.5
    assert s["client_ms_per_tile"] > 0  # the workers' decode and placement, counted
    assert _ours() <= before


def test_the_pool_places_a_city_tile_with_its_buildings_and_trees_as_this_process_would():
    """A tile with a feature layer (classes, buildings, trees) crosses the pool whole: the
    placed instances equal in-process placement."""
    from multiprocessing.connection import wait

    from generator.layer import layered_source
    from generator.pyramid import open_world
    from streaming import protocol as P
    from streaming.tileservice import mesh_encoder

    key = TileKey(15, -6079, 257)  # plane seed 0: a city core (tests/generator/test_layer.py)
    pyr = open_world("plane", 0, refiner="fractal")
    (fields,) = layered_source(pyr)([key])
    payload = P.unpack(mesh_encoder()(World.PLANE, key, fields), 1 << 26)["tile"]
    here = client_tile(World.PLANE, key, wire.decode_tile(payload))
    assert here.placed is not None and len(here.placed.buildings) > 10
    pool = PlacePool(World.PLANE, 1, client_tile)
    try:
        pool.submit(0, key, payload)
        assert wait(list(pool.busy()), 60)
        k, there, _ = pool.collect(0)
    finally:
        pool.close()
    assert k == key and isinstance(there, ClientTile)
    _same_tile(there, here)
    assert np.array_equal(there.layer.classes, here.layer.classes)
    assert np.array_equal(there.placed.buildings, here.placed.buildings)
    assert np.array_equal(there.placed.trees, here.placed.trees)


def test_a_flight_whose_place_processes_cannot_start_places_on_a_thread(monkeypatch, caplog):
    import viewer.placepool as pp
    from viewer.flight import Flight, FlightOptions, _PoolPreparer, _Preparer
    from viewer.realtime import NullRenderer

    class Client:
        decode = True

        def set_decode(self, decode):
            self.decode = decode

        def poll(self):
            return []

        def wait(self, timeout_s):
            time.sleep(timeout_s)

    def refuse(self, world, procs, place):
        raise OSError("spawn is not allowed here")

    monkeypatch.setattr(pp.PlacePool, "__init__", refuse)
    client = Client()
    flight = Flight(World.PLANE, client, NullRenderer((32, 32)), FlightOptions(realtime=True, place_procs=2))
    try:
        assert type(flight._preparer) is _Preparer and not isinstance(flight._preparer, _PoolPreparer)
        assert client.decode is True  # the thread gets decoded tiles, as before
        assert "spawn is not allowed here" in caplog.text
    finally:
        flight.close()


def test_a_preparer_whose_threads_cannot_start_leaves_no_place_process(monkeypatch):
    import viewer.flight as vf
    import viewer.placepool as pp

    pools = []
    real_init = pp.PlacePool.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        pools.append(self)

    def refuse(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(pp.PlacePool, "__init__", keep)
    monkeypatch.setattr(vf._PoolPreparer, "_start", refuse)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        vf._PoolPreparer(World.PLANE, None, None, procs=1)
    (pool,) = pools
    assert pool._procs and all(p is None or not p.is_alive() for p in pool._procs)  # closed, none left
