"""generator.refiner: the lazy name -> factory table and make_refiner."""

import subprocess
import sys
from pathlib import Path

import pytest

from generator.refiner import FACTORIES, Refiner, available_refiners, make_refiner, refiner_factory
from runtime.tiles import World

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_table_imports_no_refiner_and_no_torch():
    code = ("import sys, generator.refiner as r; "
            "print(sorted(m for m in sys.modules if m.startswith(('generator.', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "['generator.refiner']"


def test_every_entry_names_an_existing_module_and_callable():
    assert available_refiners() == ["bicubic", "fractal", "fractal-carve", "fractal-erode", "fractal-gully",
                                    "fractal-torch", "learned"]
    for name, spec in FACTORIES.items():
        module, _, attr = spec.partition(":")
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        assert path.exists(), f"{name}: {path}"
        assert f"\nclass {attr}" in path.read_text() or f"\ndef {attr}(" in path.read_text(), name


@pytest.mark.parametrize("name", ["fractal", "bicubic", "fractal-torch", "fractal-erode", "fractal-carve",
                                  "fractal-gully"])
def test_procedural_refiners_are_built_per_world(name):
    for world in ("plane", "earth"):
        r = make_refiner(name, world)
        assert isinstance(r, Refiner) and r.world is World.parse(world)
    assert make_refiner(name, World.EARTH).config() == make_refiner(name, World.EARTH).config()
    assert refiner_factory(name) is refiner_factory(name)  # resolved once


def test_bicubic_adds_no_detail_and_fractal_does():
    assert make_refiner("bicubic", "plane").config()["amp_at_1km_m"] == 0.0
    assert make_refiner("fractal", "plane").config()["amp_at_1km_m"] > 0.0


def test_auto_picks_fractal_without_a_gpu_and_names_are_checked():
    pytest.importorskip("torch")
    import torch

    if not torch.cuda.is_available():
        assert make_refiner("auto", "plane").name == "fractal"
    assert make_refiner("auto-offline", "plane").name in ("learned", "fractal")
    with pytest.raises(ValueError, match=r"unknown refiner 'nope'.*'fractal'.*'auto'"):
        make_refiner("nope", "plane")
