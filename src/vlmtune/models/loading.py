"""Loading a VLM and its processor with transformers' Auto classes."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from vlmtune.config import DEMO, ConfigError, ModelConfig
from vlmtune.models.families import family_for

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(name: str) -> str:
    """Return a loadable hub id or folder; `demo` builds the offline demo model on first use."""
    if name == DEMO:
        from vlmtune.demo.model import build_demo_model

        return str(build_demo_model())
    # An absolute path keeps the saved adapter's base_model_name_or_path valid from any folder.
    return str(Path(name).resolve()) if Path(name).is_dir() else name


def resolve_dtype(name: str) -> torch.dtype:
    """Pick the compute dtype, failing fast on combinations the hardware cannot run."""
    cuda = torch.cuda.is_available()
    if name == "auto":
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    dtype = DTYPES[name]
    if dtype is torch.float16 and not cuda:
        raise ValueError("dtype float16 needs a CUDA GPU; use float32 or bfloat16 on CPU.")
    if dtype is torch.bfloat16 and cuda and not torch.cuda.is_bf16_supported():
        raise ValueError(f"dtype bfloat16 is not supported by {torch.cuda.get_device_name()}; use float16.")
    return dtype


def model_unavailable_error(name: str, error: OSError) -> ConfigError:
    """Describe a model that cannot be loaded as one readable error instead of a library traceback."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    hint = (
        "HF_HUB_OFFLINE is set, so a Hub model must already be in the Hugging Face cache."
        if offline
        else "Check the Hub id (and access token for gated models) or the local folder path."
    )
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConfigError(f"Model {name!r} cannot be loaded: {first_line} {hint}")


def load_processor(config: ModelConfig, path: str | None = None) -> Any:
    """Load the processor and check it can render conversations.

    A family registered with `chat_template=False` (PaliGemma) needs no chat template, because its
    processor builds the prompt itself from a prefix and a suffix.
    """
    source = path or resolve_model_path(config.model)
    try:
        processor = AutoProcessor.from_pretrained(
            source, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
    except OSError as error:
        raise model_unavailable_error(source, error) from error
    if (
        getattr(processor, "chat_template", None) is None
        and getattr(getattr(processor, "tokenizer", None), "chat_template", None) is None
    ):
        model_type = AutoConfig.from_pretrained(
            source, revision=config.revision, trust_remote_code=config.trust_remote_code
        ).model_type
        family = family_for(model_type)
        if family is not None and not family.chat_template:
            return processor
        raise ConfigError(
            f"The processor of {config.model} ({type(processor).__name__}, model_type={model_type!r}) has no chat "
            "template, so conversations cannot be rendered and the answer tokens to train cannot be found. Use the "
            "model's instruction-tuned variant, or add a chat_template.jinja to the model folder. If the model "
            "takes a prompt and a target instead of a conversation (as PaliGemma does with prefix and suffix), "
            "register it as a Family with chat_template=False in vlmtune.models.families."
        )
    return processor


def load_model(config: ModelConfig, path: str | None = None) -> torch.nn.Module:
    """Load the model in the configured dtype and attention implementation."""
    source = path or resolve_model_path(config.model)
    kwargs: dict[str, Any] = {
        "dtype": resolve_dtype(config.dtype),
        "revision": config.revision,
        "trust_remote_code": config.trust_remote_code,
    }
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    logger.info("Loading %s (%s)", source, kwargs["dtype"])
    try:
        return AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    except OSError as error:
        raise model_unavailable_error(source, error) from error


def model_source_name(config: ModelConfig) -> str:
    """Return a readable name for logs and summaries."""
    return config.model if config.model != DEMO else f"demo ({Path(resolve_model_path(DEMO)).name})"
