"""Environment defaults that must be set before huggingface_hub is imported.

huggingface_hub replaced the hf_transfer download backend with hf_xet. Users who set
HF_HUB_ENABLE_HF_TRANSFER=1 for fast downloads get hf_xet's high-performance mode
(HF_XET_HIGH_PERFORMANCE=1) instead, unless they set that variable themselves.
"""

from __future__ import annotations

import os

_TRUE_VALUES = {"1", "true", "yes", "on"}


def apply_fast_download_alias(environ: os._Environ | dict[str, str] = os.environ) -> bool:
    """Map HF_HUB_ENABLE_HF_TRANSFER to HF_XET_HIGH_PERFORMANCE; return whether it was set."""
    requested = environ.get("HF_HUB_ENABLE_HF_TRANSFER", "").strip().lower() in _TRUE_VALUES
    if requested and "HF_XET_HIGH_PERFORMANCE" not in environ:
        environ["HF_XET_HIGH_PERFORMANCE"] = "1"
        return True
    return False
