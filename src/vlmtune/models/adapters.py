"""Loading a saved model or LoRA adapter for evaluation, inference and merging.

An adapter folder (one with adapter_config.json) is loaded onto its base model with a strict key
check: every tensor in the adapter file must land in a module of the model, and every adapter
module of the model must receive a tensor. peft itself only warns about missing keys and keeps
going with the freshly initialised adapter, which behaves like the untrained base model. This
module raises an error instead. Module paths of several families changed in
transformers 5, so an adapter saved under transformers 4 is the usual cause.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import peft
import torch
import transformers
from peft import PeftConfig, PeftModel

from vlmtune.config import ConfigError, ModelConfig
from vlmtune.models.loading import load_model, load_processor, resolve_model_path

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")
_KEYS_SHOWN = 8


class AdapterLoadError(ValueError):
    """An adapter whose weights do not fit the base model it is loaded onto."""


def is_adapter_folder(path: str | Path) -> bool:
    """Return whether `path` is a local folder holding a peft adapter."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base_model(adapter_dir: str | Path) -> str:
    """Return the base model named in an adapter's adapter_config.json."""
    config_path = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        base = json.loads(config_path.read_text()).get("base_model_name_or_path")
    except json.JSONDecodeError as error:
        raise AdapterLoadError(f"{config_path} is not valid JSON ({error}).") from error
    if not base:
        raise AdapterLoadError(
            f"{config_path} does not name its base model (base_model_name_or_path). Pass --base-model."
        )
    return base


def base_model_hint(adapter_dir: str | Path) -> str:
    """Return the advice for a base model, named by an adapter, that cannot be loaded."""
    return (
        f"The adapter names this base model in {Path(adapter_dir) / ADAPTER_CONFIG}, where a relative "
        "path is read from the current folder. Pass --base-model with the base model's Hub id or folder."
    )


def _describe_keys(keys: list[str]) -> str:
    shown = ", ".join(keys[:_KEYS_SHOWN])
    return shown + (f" and {len(keys) - _KEYS_SHOWN} more" if len(keys) > _KEYS_SHOWN else "")


def _versions() -> str:
    return f"transformers {transformers.__version__}, peft {peft.__version__}"


_LAYOUT_HINT = (
    "The adapter was probably saved for another model layout (module paths of several families changed "
    "in transformers 5): retrain it or save it again with this transformers version."
)


def load_adapter_checked(model: PeftModel, adapter_dir: str | Path, adapter_name: str) -> None:
    """Load the adapter in `adapter_dir` into `model` as `adapter_name`; raise if any weight did not load."""
    model_name = type(model.get_base_model()).__name__
    try:
        result = model.load_adapter(str(adapter_dir), adapter_name=adapter_name, is_trainable=False)
    except KeyError as error:
        # peft looks up the weights of fully trained modules (modules_to_save) by name and raises a bare KeyError.
        raise AdapterLoadError(
            f"The adapter in {adapter_dir} lacks the weight {error.args[0]} of a fully trained module, so it "
            f"does not fit {model_name} with {_versions()}. {_LAYOUT_HINT}"
        ) from error
    unexpected = list(result.unexpected_keys)
    missing = list(result.missing_keys)
    if not unexpected and not missing:
        return
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} weights in the file match no module: {_describe_keys(unexpected)}")
    if missing:
        problems.append(f"{len(missing)} adapter weights of the model were not in the file: {_describe_keys(missing)}")
    raise AdapterLoadError(
        f"The adapter in {adapter_dir} did not load into {model_name} with {_versions()}: "
        + "; ".join(problems)
        + f". Running it would give the untrained base model's answers. {_LAYOUT_HINT}"
    )


def load_adapter_strict(base_model: torch.nn.Module, adapter_dir: str | Path) -> PeftModel:
    """Wrap `base_model` with the adapter in `adapter_dir`, failing if any adapter weight did not load."""
    adapter_dir = Path(adapter_dir)
    config = PeftConfig.from_pretrained(str(adapter_dir))
    try:
        # The same two steps as PeftModel.from_pretrained, which drops the load result we need to check.
        model = PeftModel(base_model, config, adapter_name="default")
    except ValueError as error:
        raise AdapterLoadError(
            f"The adapter in {adapter_dir} does not fit {type(base_model).__name__} ({error}). "
            f"Check that its base model is the one it was trained on (loaded with {_versions()})."
        ) from error
    load_adapter_checked(model, adapter_dir, "default")
    model.eval()
    return model


@dataclass
class LoadedModel:
    model: torch.nn.Module
    processor: Any
    source: str
    """Description of the loaded model for logs and reports: its name, or `<adapter> on <base>`."""

    base_model: str | None = None
    """The base model of an adapter; None for a plain model."""


def has_processor(folder: str | Path) -> bool:
    """Return whether a local folder contains processor or tokenizer files."""
    return any((Path(folder) / name).is_file() for name in PROCESSOR_FILES)


def load_for_inference(config: ModelConfig, base_model: str | None = None) -> LoadedModel:
    """Load `config.model`: a model (hub id, folder or `demo`) or an adapter folder on its base.

    An adapter's processor comes from its own folder when saved there (vlmtune saves it with every
    adapter), else from the base model.
    """
    if not is_adapter_folder(config.model):
        path = resolve_model_path(config.model)
        return LoadedModel(load_model(config, path), load_processor(config, path), config.model)

    adapter_dir = config.model
    base = base_model or adapter_base_model(adapter_dir)
    base_path = resolve_model_path(base)
    processor = load_processor(config, adapter_dir if has_processor(adapter_dir) else base_path)
    try:
        base_loaded = load_model(config, base_path)
    except ConfigError as error:
        if base_model:
            raise
        raise ConfigError(f"{error} {base_model_hint(adapter_dir)}") from error
    model = load_adapter_strict(base_loaded, adapter_dir)
    logger.info("Loaded the adapter %s on %s", adapter_dir, base)
    return LoadedModel(model, processor, f"{adapter_dir} on {base}", base_model=base)
