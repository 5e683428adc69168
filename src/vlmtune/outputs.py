"""Output paths of the evaluate, predict and merge commands: never one that contains the user's files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from vlmtune.config import DEMO, ConfigError


class OutputExistsError(ConfigError):
    """An output path that already contains files, which a command must not overwrite."""


def require_new_folder(path: str | Path, flag: str) -> Path:
    """Create `path` as an empty folder; raise if it already contains anything."""
    folder = Path(path)
    if folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
        raise OutputExistsError(f"{folder} already exists and is not an empty folder. Choose a new {flag}.")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def require_new_file(path: str | Path, flag: str) -> Path:
    """Return `path` with its parent folder created; raise if the file already exists."""
    file = Path(path)
    if file.exists():
        raise OutputExistsError(f"{file} already exists. Choose a new {flag} or move the file away.")
    file.parent.mkdir(parents=True, exist_ok=True)
    return file


def timestamped_name(prefix: str, model: str, now: datetime | None = None) -> str:
    """Return `outputs/<prefix>-<model name>-<date>-<time>`."""
    name = "demo" if model == DEMO else Path(model.rstrip("/")).name
    return f"outputs/{prefix}-{name}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"
