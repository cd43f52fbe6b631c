"""Checkpoints: weights-only loading, the version hash (the model id string), tampering."""

import numpy as np
import pytest
import torch

from generator.learned.checkpoint import ASSET_PATH, load_net, make_checkpoint, model_version, save_checkpoint
from generator.learned.model import RefinerConfig, RefinerNet


@pytest.mark.skipif(not ASSET_PATH.exists(), reason="shipped weights missing")
def test_shipped_checkpoint_loads_weights_only_and_hash_matches():
    ckpt = torch.load(ASSET_PATH, map_location="cpu", weights_only=True)
    assert ckpt["format"] == 1
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
    net, version, meta = load_net()
    assert version == ckpt["version"] == model_version(net.config, ckpt["state_dict"])
    # trained, not a smoke test: a fine-tune counts the steps of the weights it started from
    assert len(version) == 12 and int(meta.get("steps_total", meta["step"])) > 1000
    assert all(len(a["version"]) == 12 and a["version"] != version for a in meta.get("lineage", []))
    assert ASSET_PATH.stat().st_size < 8 << 20


def test_model_version_hashes_config_names_dtypes_shapes_and_bytes():
    # Pinned: the version enters every tile's model id, so the hash itself must not drift.
    sd = {"b.weight": torch.arange(6, dtype=torch.float16).reshape(2, 3), "a.bias": torch.tensor([1.5, -2.0])}
    assert model_version(RefinerConfig(), sd) == "fab8e85078fc"
    assert model_version(RefinerConfig(), dict(reversed(sd.items()))) == "fab8e85078fc"  # name order
    assert model_version(RefinerConfig(width=16), sd) != "fab8e85078fc"
    assert model_version(RefinerConfig(), {**sd, "a.bias": sd["a.bias"].double()}) != "fab8e85078fc"


def test_saved_checkpoint_round_trips_fp16_weights_to_a_float32_net(tmp_path):
    net = RefinerNet(RefinerConfig(width=8, dilations=(1, 2), noise_channels=2))
    save_checkpoint(make_checkpoint(net, {"step": 7}), tmp_path / "c.pt")
    loaded, version, meta = load_net(tmp_path / "c.pt")
    assert meta == {"step": 7} and loaded.config == net.config and len(version) == 12
    for k, v in net.state_dict().items():
        w = loaded.state_dict()[k]
        assert w.dtype == torch.float32
        assert np.array_equal(w.numpy(), v.half().float().numpy())


def test_tampered_checkpoint_is_refused(tmp_path):
    net = RefinerNet(RefinerConfig(width=8, dilations=(1,), noise_channels=2))
    ckpt = make_checkpoint(net, {"step": 0})
    save_checkpoint(ckpt, tmp_path / "ok.pt")
    assert load_net(tmp_path / "ok.pt")[1] == ckpt["version"]
    ckpt["state_dict"]["head.bias"] = ckpt["state_dict"]["head.bias"] + 1
    save_checkpoint(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not match"):
        load_net(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="worldstream train"):
        load_net(tmp_path / "missing.pt")


def test_average_of_two_checkpoints_is_the_weighted_mean_and_says_so(tmp_path):
    from generator.learned.checkpoint import average_checkpoints

    cfg = RefinerConfig(width=8, dilations=(1, 2), noise_channels=2)
    torch.manual_seed(0)
    a, b = RefinerNet(cfg), RefinerNet(cfg)
    save_checkpoint(make_checkpoint(a, {"step": 100}), tmp_path / "a.pt")
    save_checkpoint(make_checkpoint(b, {"step": 7, "steps_total": 107,
                                        "lineage": [{"version": "x", "step": 100}]}), tmp_path / "b.pt")
    na, va, _ = load_net(tmp_path / "a.pt")
    nb, vb, _ = load_net(tmp_path / "b.pt")
    ck = average_checkpoints(tmp_path / "a.pt", tmp_path / "b.pt", 0.25)
    save_checkpoint(ck, tmp_path / "avg.pt")
    net, version, meta = load_net(tmp_path / "avg.pt")
    for k, v in net.state_dict().items():
        want = (0.75 * na.state_dict()[k] + 0.25 * nb.state_dict()[k]).half().float()
        assert torch.equal(v, want), k
    assert version == ck["version"] not in (va, vb)
    assert [x["version"] for x in meta["lineage"]] == ["x", va, vb] and meta["steps_total"] == 107
    assert meta["average"] == f"0.75 x {va} + 0.25 x {vb}"
    with pytest.raises(ValueError, match="weight_b"):
        average_checkpoints(tmp_path / "a.pt", tmp_path / "b.pt", 1.5)
    save_checkpoint(make_checkpoint(RefinerNet(RefinerConfig(width=4, dilations=(1,), noise_channels=2))),
                    tmp_path / "c.pt")
    with pytest.raises(ValueError, match="different networks"):
        average_checkpoints(tmp_path / "a.pt", tmp_path / "c.pt", 0.5)
