"""Checks every learned-refiner variant must pass (imported by its tests)."""

import numpy as np
import torch

from generator.learned.inputs import noise_coords
from runtime.tiles import T, spacing_m


def assert_seam_batch_nesting(ref, level: int = 9, shift: int = 6, seed: int = 5) -> None:
    """A crop shifted by ``shift`` parent rows refines the same global samples to the same bits
    (seams), a batch gives each crop's bits alone, and the even child samples are the parents
    (nesting): on a random walk of heights and random colour."""
    m = ref.margin
    rng = np.random.default_rng(1)
    crop = 2 * m + 13
    big = np.cumsum(rng.normal(0, 20, (1, 4, crop + shift, crop)), 2).astype(np.float32) + 300
    big[:, 1:] = rng.uniform(0.1, 0.4, (1, 3, crop + shift, crop))
    o = np.array([[2 * 137, 2 * 201]])
    a = ref.refine(big[:, :, :crop], level, o, seed)
    b = ref.refine(big[:, :, shift : shift + crop], level, o + [[2 * shift, 0]], seed)
    assert np.array_equal(a[:, :, 2 * shift :], b[:, :, : a.shape[2] - 2 * shift])  # seams
    both = ref.refine(np.concatenate([big[:, :, :crop], big[:, :, shift : shift + crop]]), level,
                      np.concatenate([o, o + [[2 * shift, 0]]]), seed)
    assert np.array_equal(both[:1], a) and np.array_equal(both[1:], b)  # batch
    assert np.array_equal(a[:, :, ::2, ::2], big[:, :, m : crop - m, m:-m])  # nesting


def level_inputs(b, crop, margin, level=12, seed=0):
    """Inputs of ``run_level`` for ``b`` crops of ``crop`` parent samples: a random walk of heights
    around 1,200 m with random colour, their noise coordinates, child spacing and presence."""
    rng = np.random.default_rng(seed)
    z = np.cumsum(np.cumsum(rng.normal(0, 3, (b, crop, crop)), 1), 2) + 1200
    bands = rng.uniform(0.05, 0.5, (b, 4, crop, crop))
    parents = np.concatenate([z[:, None], bands], 1).astype(np.float32)
    rows, cols = noise_coords(np.array([[2 ** (level - 1) + 256 * i, 2 ** level] for i in range(b)]), crop, crop,
                              margin)
    return parents, rows, cols, np.full((b,), spacing_m(level), np.float32), np.ones((b, 2), np.float32)


def assert_onnx_matches_torch(net, tmp_path) -> None:
    """The exported graph run by onnxruntime: nesting exact, heights within 1 mm of eager torch."""
    from generator.learned.backends import TorchEager, make_backend
    from generator.learned.onnx import export_onnx

    m = net.config.margin
    path = tmp_path / "net.onnx"
    export_onnx(net, path)
    p, r, c, s, pr = level_inputs(2, 2 * m + 9, m)
    want = TorchEager(net, "x").run_level(p, 3, 12, r, c, s, pr)
    got = make_backend("onnxruntime", net, "x", onnx_path=str(path)).run_level(p, 3, 12, r, c, s, pr)
    assert np.array_equal(got[:, :, ::2, ::2], p[:, :, m:-m, m:-m])
    assert np.abs(got[:, 0] - want[:, 0]).max() < 1e-3


def walk_corpus(tmp_path):
    """A tiny training corpus: a 200 x 200 random walk at 30 m with flat colour, and its
    transpose at 90 m without bands."""
    from generator.learned.data import Grid, save_corpus

    rng = np.random.default_rng(0)
    z = np.cumsum(np.cumsum(rng.normal(0, 1, (200, 200)), 0), 1).astype(np.float32)
    bands = np.full((200, 200, 4), np.nan, np.float32)
    bands[..., :3] = 0.3
    bands[..., 3] = 0.4
    path = tmp_path / "corpus.npz"
    save_corpus([Grid("walk", 30.0, z, bands), Grid("walk_dem", 90.0, z.T.copy(), np.full_like(bands, np.nan))],
                path)
    return path


def _overlapping_crops(margin: int, cells: int, shift: int):
    """(1, 5, crop + shift, crop) float32 parent grid: steep smooth heights (std ~2,000 m about
    900 m) and smooth bands; crop = cells + 1 + 2 margin (T/2 cells: one tile's parent crop)."""
    from scipy.ndimage import gaussian_filter

    crop = cells + 1 + 2 * margin
    rng = np.random.default_rng(0)
    height = gaussian_filter(rng.normal(0, 1, (1, crop + shift, crop)), (0, 3, 3)) * 2000 + 900
    bands = np.clip(gaussian_filter(rng.uniform(0, 1, (4, crop + shift, crop)), (0, 2, 2)), 0, 1)
    return np.concatenate([height, bands])[None].astype(np.float32), crop


def backend_contracts(backend, device: str, margin: int, batch: int, cells: int = T // 2, shift: int = 64,
               level: int = 13, seed: int = 3) -> dict:
    """Seam (m): two crops ``shift`` parent rows apart refine the same global child samples;
    batch (m): one tile alone vs the same tile inside a batch of ``batch``; nesting: even child
    samples are the parents bit for bit. Runs ``backend.run_torch`` on ``device`` tensors."""
    big, crop = _overlapping_crops(margin, cells, shift)
    dev = torch.device(device)

    def run(parents: np.ndarray, origins: np.ndarray) -> torch.Tensor:
        rows, cols = noise_coords(origins, crop, crop, margin)
        n = parents.shape[0]
        on = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dev)
        s = torch.full((n,), spacing_m(level), device=dev)
        return backend.run_torch(on(parents), seed, level, on(rows), on(cols), s, torch.ones(n, 2, device=dev))

    a = run(big[:, :, :crop], np.array([[0, 0]]))
    b = run(big[:, :, shift : shift + crop], np.array([[2 * shift, 0]]))
    many = run(np.repeat(big[:, :, :crop], batch, 0), np.zeros((batch, 2), np.int64))
    p0 = torch.from_numpy(big[:, :, margin : crop - margin, margin:-margin]).to(dev)
    return {
        "seam_max_m": float((a[:, 0, 2 * shift :] - b[:, 0, : a.shape[2] - 2 * shift]).abs().max()),
        "batch_max_m": float((many[:, 0] - a[:, 0]).abs().max()),
        "nesting_exact": bool(torch.equal(a[:, :, ::2, ::2], p0)),
    }


def two_seeds(net, inputs, level: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """``net`` (eager torch, CPU) on ``inputs`` (level_inputs' tuple) with seeds 3 and 4."""
    from generator.learned.backends import TorchEager

    p, r, c, s, pr = inputs
    be = TorchEager(net, "x")
    return be.run_level(p, 3, level, r, c, s, pr), be.run_level(p, 4, level, r, c, s, pr)


def checkpoint_refiner(net, tmp_path):
    """A LearnedRefiner (CPU reference) of ``net`` saved as an fp16 checkpoint: its version is the
    file's own and not the shipped weights'."""
    from generator.learned.checkpoint import load_net, make_checkpoint, save_checkpoint
    from generator.learned.refiner import LearnedRefiner

    path = tmp_path / "variant.pt"
    save_checkpoint(make_checkpoint(net, {"step": 1}, half=True), path)
    ref = LearnedRefiner("plane", checkpoint=path, backend="torch")
    assert ref.version == load_net(path)[1] and ref.version != load_net()[1]
    return ref
