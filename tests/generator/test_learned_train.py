"""CPU smoke training: a few real optimiser steps, resume, ship, and the CLI entry."""

import argparse
import json

import numpy as np
import torch

from generator.data import Grid, save_corpus
from generator.learned import load_net
from generator.model import RefinerConfig
from generator.train import TrainConfig, plot_history, register, ship, train


def _corpus(tmp_path):
    rng = np.random.default_rng(0)
    z = np.cumsum(np.cumsum(rng.normal(0, 1, (200, 200)), 0), 1).astype(np.float32)
    bands = np.full((200, 200, 4), np.nan, np.float32)
    bands[..., :3] = 0.3
    bands[..., 3] = 0.4
    path = tmp_path / "corpus.npz"
    save_corpus(
        [Grid("walk", 30.0, z, bands), Grid("walk_dem", 90.0, z.T.copy(), np.full_like(bands, np.nan))], path
    )
    return path


def test_smoke_train_resume_and_ship(tmp_path):
    cfg = TrainConfig(
        corpus=str(_corpus(tmp_path)),
        out=str(tmp_path / "run"),
        steps=4,
        minutes=5.0,
        batch=4,
        cells=6,
        log_every=2,
        val_every=2,
        val_batches=1,
        warmup_steps=2,
    )
    small = RefinerConfig(width=8, dilations=(1, 2), noise_channels=2)
    torch.manual_seed(0)
    last = train(cfg, small, resume=False, log=lambda s: None)
    state = torch.load(last, map_location="cpu", weights_only=True)
    hist = json.loads(state["history"])
    assert state["step"] == 4
    assert [r["step"] for r in hist if "l1" in r] == [2, 4]
    assert all(np.isfinite(r["l1"]) and np.isfinite(r["d"]) for r in hist if "l1" in r)
    assert "val_l1" in hist[-1] and hist[-1]["final"]
    before = {k: v.clone() for k, v in state["net"].items()}

    from dataclasses import replace

    last = train(replace(cfg, steps=6), resume=True, log=lambda s: None)  # resumes at step 4
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["step"] == 6
    assert any(not torch.equal(before[k], state["net"][k]) for k in before)  # it learned something

    version = ship(last, tmp_path / "asset.pt")
    net, v, meta = load_net(tmp_path / "asset.pt")
    assert v == version and int(meta["step"]) == 6 and net.config.width == 8
    plot_history(json.loads(state["history"]), tmp_path / "loss.png")
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_register_adds_the_train_command(tmp_path):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--corpus", "c.npz", "--steps", "7", "--minutes", "0.5", "--fresh"])
    assert args.func.__name__ == "_main"
    assert args.steps == 7 and args.minutes == 0.5 and args.fresh and args.batch == TrainConfig().batch
