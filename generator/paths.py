"""Where the real data lives: ``$WORLDSTREAM_DATA`` or ``../shared/data`` next to the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """The development data folder (may not exist: callers skip with a clear message)."""
    env = os.environ.get("WORLDSTREAM_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"
