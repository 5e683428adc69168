"""Fine-tuning toolkit for vision language models."""

from vlmtune.hub_env import apply_fast_download_alias

# Runs before any submodule imports huggingface_hub, which reads its settings at import time.
apply_fast_download_alias()

__version__ = "0.1.0"
