"""Merging a LoRA adapter into its base weights and saving a model that needs no peft to load."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText

from vlmtune.config import ConfigError, MergeConfig, ModelConfig
from vlmtune.data.media_settings import MEDIA_SETTINGS_FILE
from vlmtune.export.hub import check_repo_id, push_folder
from vlmtune.models.adapters import (
    adapter_base_model,
    base_model_hint,
    has_processor,
    is_adapter_folder,
    load_adapter_strict,
)
from vlmtune.models.loading import DTYPES, load_processor, model_unavailable_error, resolve_model_path
from vlmtune.outputs import require_new_folder

logger = logging.getLogger(__name__)


def load_base_for_merge(base_path: str, dtype: str) -> torch.nn.Module:
    """Load the base model in `dtype` (`auto`: its stored dtype) without any remote code."""
    return AutoModelForImageTextToText.from_pretrained(base_path, dtype=DTYPES.get(dtype, "auto"))


def merge_adapter(config: MergeConfig) -> Path:
    """Merge `config.adapter` into its base model and save model, processor and generation config.

    The folder contains safetensors weights, config.json, generation_config.json and the processor
    files (tokenizer, chat template, image preprocessor), so AutoModelForImageTextToText and
    AutoProcessor load it without peft or trust_remote_code.
    """
    if not config.adapter or not is_adapter_folder(config.adapter):
        raise ConfigError(
            f"--adapter must be a folder with adapter_config.json, got {config.adapter!r}. "
            "A LoRA run saves one as <output-dir>/final."
        )
    if not config.output_dir:
        raise ConfigError("merge needs --output-dir, a new folder for the merged model.")
    if config.push_to_hub:
        try:
            check_repo_id(config.push_to_hub)
        except ValueError as error:
            raise ConfigError(str(error)) from error
    output_dir = Path(config.output_dir)
    # Checked before the slow loading, and again by require_new_folder right before writing.
    if output_dir.exists() and (output_dir.is_file() or any(output_dir.iterdir())):
        require_new_folder(output_dir, "--output-dir")

    base = config.base_model or adapter_base_model(config.adapter)
    base_path = resolve_model_path(base)
    processor_source = config.adapter if has_processor(config.adapter) else base_path
    processor = load_processor(ModelConfig(model=base), processor_source)
    try:
        base_loaded = load_base_for_merge(base_path, config.dtype)
    except OSError as error:
        hint = "" if config.base_model else f" {base_model_hint(config.adapter)}"
        raise ConfigError(f"{model_unavailable_error(base_path, error)}{hint}") from error
    model = load_adapter_strict(base_loaded, config.adapter)
    merged = model.merge_and_unload()
    # config.json records this as _name_or_path; the merged folder, not the base model, is its origin now.
    merged.config.name_or_path = str(output_dir)

    require_new_folder(output_dir, "--output-dir")
    merged.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    if merged.generation_config is not None:
        merged.generation_config.save_pretrained(output_dir)
    media_settings = Path(config.adapter) / MEDIA_SETTINGS_FILE
    if media_settings.is_file():
        shutil.copy2(media_settings, output_dir / MEDIA_SETTINGS_FILE)
    logger.info("Merged %s into %s and saved it to %s", config.adapter, base, output_dir)

    if config.push_to_hub:
        push_folder(output_dir, config.push_to_hub, private=config.private)
    return output_dir
