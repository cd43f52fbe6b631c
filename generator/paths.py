"""Where the real data lives (``$WORLDSTREAM_DATA`` or ``../shared/data`` next to the repository),
and reading a shipped asset with an error that says how to rebuild it."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """The development data folder (may not exist: callers skip with a clear message)."""
    env = os.environ.get("WORLDSTREAM_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def read_asset(path: str | Path, what: str, build: str) -> bytes:
    """The bytes of the asset at ``path``; FileNotFoundError naming ``what`` and the
    ``build`` command when it is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} asset missing: expected {path}; build it with `{build}`")
    return path.read_bytes()
