"""Uploading a saved model folder to the Hugging Face Hub, only when the user asks for it."""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import HfApi

logger = logging.getLogger(__name__)


def check_repo_id(repo_id: str) -> None:
    """Raise unless `repo_id` has the `owner/name` form (checked before any slow work)."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"--push-to-hub needs a repository id like `user/name`, got {repo_id!r}.")


def push_folder(folder: str | Path, repo_id: str, private: bool = True) -> str:
    """Create `repo_id` if needed (private by default), upload every file of `folder`, return the repo URL."""
    check_repo_id(repo_id)
    api = HfApi()
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder), commit_message="Upload merged model")
    logger.info("Uploaded %s to %s", folder, url)
    return str(url)
