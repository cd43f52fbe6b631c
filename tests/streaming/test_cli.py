"""CLI contracts that other checks rely on (in-process; one subprocess for the script)."""

import subprocess
import sys

import numpy as np
import pytest

from runtime.tiles import T
from streaming.cli import main


def test_tile_writes_the_contract_fields(tmp_path):
    out = tmp_path / "t.npz"
    assert main(["tile", "--world", "plane", "--seed", "5", "--level", "7", "--x", "-3", "--y", "2",
                 "--out", str(out)]) == 0
    d = np.load(out)
    assert d["height"].shape == (T + 1, T + 1) and d["height"].dtype == np.float32
    assert d["rgb"].shape == (T + 1, T + 1, 3) and d["rgb"].dtype == np.float32
    assert 0.0 <= d["rgb"].min() and d["rgb"].max() <= 1.0
    assert (int(d["level"]), int(d["x"]), int(d["y"])) == (7, -3, 2)
    assert str(d["model"]).startswith("fractal")
    assert np.isfinite(d["height"]).all()


def test_tile_neighbours_share_edges_and_huge_coordinates_work(tmp_path):
    paths = []
    for x in (2**40, 2**40 + 1):
        p = tmp_path / f"{x}.npz"
        assert main(["tile", "--world", "plane", "--seed", "1", "--level", "18", "--x", str(x), "--y",
                     str(-(2**39)), "--out", str(p)]) == 0
        paths.append(p)
    a, b = (np.load(p)["height"] for p in paths)
    assert np.array_equal(a[:, -1], b[:, 0])


@pytest.mark.parametrize("argv, expected", [
    (["tile", "--level", "x", "--x", "0", "--y", "0", "--out", "o.npz"], "level must be an integer"),
    (["tile", "--level", "99", "--x", "0", "--y", "0", "--out", "o.npz"], "level must be in [0, 24]"),
    (["tile", "--world", "mars", "--level", "1", "--x", "0", "--y", "0", "--out", "o.npz"], "unknown world"),
    (["tile", "--world", "earth", "--level", "1", "--x", "9", "--y", "0", "--out", "o.npz"], "x at level 1"),
    (["fly", "--size", "big"], "WIDTHxHEIGHT"),
    (["serve", "--port", "70000"], "port must be in"),
    (["serve", "--http", "--http-max-level", "99"], "http-max-level must be in [0, 24]"),
    (["serve", "--http-max-level", "9"], "--http-max-level needs --http"),
    (["serve", "--accept-rate", "-1"], "accept-rate must be in"),
    (["serve", "--gen-procs", "many"], "gen-procs must be 'auto' or an integer in [0, 256]"),
    (["serve", "--gen-procs", "2", "--mesh-procs", "2"], "give --mesh-procs 0 with it"),
    (["fly", "--teleport", "1,2"], "X,Y,ALT"),
    (["fly", "--agl"], "--agl needs --teleport"),
    (["fly", "--heading", "10", "--pitch", "-5"], "--heading, --pitch needs --teleport"),
    (["fly", "--teleport", "1,2,3", "--pitch", "-90"], "pitch must be in [-89.9, 89.9]"),
    (["fly", "--teleport", "1,2,3", "--agl", "40"], "unrecognized arguments: 40"),
])
def test_bad_arguments_exit_2_with_one_line(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        code = main(argv)
        raise SystemExit(code)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err


def test_console_script_help_runs():
    r = subprocess.run([sys.executable, "-m", "streaming.cli", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "fly" in r.stdout and "serve" in r.stdout


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_serve_answers_a_client_then_stops_cleanly_on_signal(sig):
    import asyncio
    import signal

    from runtime.tiles import TileKey
    from streaming.client import TileClient

    proc = subprocess.Popen([sys.executable, "-m", "streaming.cli", "serve", "--world", "plane", "--seed", "2",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "ws://" in line, line + proc.stderr.read()
        url = line.split()[-1]

        async def talk():
            c = TileClient()
            hello = await c.connect(url)
            tiles = await c.fetch([TileKey(4, -1, 1)])
            await c.close()
            return hello, tiles

        hello, tiles = asyncio.run(talk())
        assert hello.world == "plane" and hello.seed == 2
        (tile,) = tiles.values()
        assert tile.key == TileKey(4, -1, 1) and len(tile.faces) > 0
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_train_options_come_from_the_recipe():
    pytest.importorskip("torch")
    from generator.learned.train import TrainConfig
    from streaming.cli import build_parser
    from streaming.cli.generate import cmd_train, train_parser

    args = build_parser().parse_args(["train", "--corpus", "c.npz", "--steps", "7", "--minutes", "0.5", "--fresh"])
    assert args.func is cmd_train
    opts = train_parser().parse_args(args.options)
    assert opts.corpus == "c.npz" and opts.steps == 7 and opts.minutes == 0.5 and opts.fresh
    assert opts.batch == TrainConfig().batch and opts.spectral_weight == TrainConfig().spectral_weight


@pytest.mark.parametrize("world", ["plane", "PLANE"])
def test_build_server_takes_a_world_name(world):
    from runtime.tiles import World
    from streaming.cli import build_server

    server = build_server(world, 4, "fractal")
    assert server.info.world == "plane" and server.service.world is World.PLANE
    assert server.info.model.startswith("fractal") and server.http is None
    with pytest.raises(ValueError, match="unknown world 'mars'"):
        build_server("mars", 4, "fractal")


def test_a_refiner_of_gpu_round_trips_gets_full_generator_batches(monkeypatch):
    """build_server gives generator processes whose refiner prefers batches (LearnedRefiner on a
    compiled GPU backend) full batches: ``max_batch`` keys a call, not what fits the step budget."""
    import streaming.cli.compose as compose

    assert not compose.build_server("plane", 4, "fractal").service.config.full_batches
    real = compose.open_world

    def gpu_like(*args, **kwargs):
        pyr = real(*args, **kwargs)
        pyr.refiner.prefers_batches = True
        return pyr

    monkeypatch.setattr(compose, "open_world", gpu_like)
    assert not compose.build_server("plane", 4, "fractal").service.config.full_batches  # the thread server
    server = compose.build_server("plane", 4, "fractal", gen_procs=1)  # generator processes
    try:
        assert server.service.config.full_batches
    finally:
        server.service.remote.close()


def test_serve_with_http_answers_websockets_and_cesium_on_one_port():
    import asyncio
    import json
    import signal
    import urllib.request

    from runtime.tiles import TileKey
    from streaming.client import TileClient

    proc = subprocess.Popen([sys.executable, "-m", "streaming.cli", "serve", "--world", "earth", "--refiner", "fractal",
                             "--port", "0", "--http", "--http-max-level", "7"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ws_line, http_line = proc.stdout.readline(), proc.stdout.readline()
        assert "ws://" in ws_line, ws_line + proc.stderr.read()
        url = ws_line.split()[-1]
        layer_url = next(w for w in http_line.split() if w.endswith("/terrain/layer.json"))
        assert layer_url == url.replace("ws://", "http://") + "/terrain/layer.json"
        with urllib.request.urlopen(layer_url, timeout=60) as r:
            layer = json.loads(r.read())
        assert layer["maxzoom"] == 7 and layer["format"] == "quantized-mesh-1.0"

        async def talk():
            c = TileClient()
            hello = await c.connect(url)
            tiles = await c.fetch([TileKey(1, 2, 1)])
            await c.close()
            return hello, tiles

        hello, tiles = asyncio.run(talk())
        assert hello.world == "earth" and len(tiles[TileKey(1, 2, 1)].faces) > 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "stopped" in out, err
    finally:
        if proc.poll() is None:
            proc.kill()
