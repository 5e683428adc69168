"""Where the toolkit keeps files it builds for itself (demo model, demo data)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "VLMTUNE_CACHE"


def cache_root() -> Path:
    """Return the cache folder: $VLMTUNE_CACHE, else $XDG_CACHE_HOME/vlmtune, else ~/.cache/vlmtune."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vlmtune"
