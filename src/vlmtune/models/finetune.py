"""Choosing what trains: LoRA adapters or full weights, per component."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass

from peft import LoraConfig, get_peft_model
from torch import nn

from vlmtune.config import FinetuneConfig
from vlmtune.models.components import OUTPUT_HEAD_NAMES, Components

logger = logging.getLogger(__name__)


@dataclass
class ParameterCounts:
    trainable: Counter
    """Trainable parameter count per component."""

    total: Counter
    """Parameter count per component."""

    def describe(self) -> str:
        """Format the counts as one line, e.g. `vision 0/5.2M, projector 1.2M/1.2M, ...`."""
        parts = [
            f"{component} {_millions(self.trainable[component])}/{_millions(self.total[component])}"
            for component in ("vision", "projector", "language_model", "other")
            if self.total[component]
        ]
        return "trainable/total parameters: " + ", ".join(parts)


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


def count_parameters(model: nn.Module, components: Components) -> ParameterCounts:
    """Count trainable and total parameters per component, adapter weights included.

    A component trained next to a LoRA adapter is counted once: peft keeps a frozen copy of it
    (`original_module`) that the forward pass does not use.
    """
    trainable: Counter = Counter()
    total: Counter = Counter()
    for name, parameter in model.named_parameters():
        if ".original_module." in name:
            continue
        component = components.component_of(_strip_peft_prefix(name))
        total[component] += parameter.numel()
        if parameter.requires_grad:
            trainable[component] += parameter.numel()
    return ParameterCounts(trainable=trainable, total=total)


def _strip_peft_prefix(name: str) -> str:
    """Map a parameter name inside a PeftModel back to the base model's module path."""
    name = name.removeprefix("base_model.model.")
    name = re.sub(r"\.(lora_[AB]|lora_embedding_[AB])\.[^.]+", "", name)
    name = re.sub(r"\.(base_layer|modules_to_save\.[^.]+|original_module)\.", ".", name)
    return name


def language_model_lora_targets(model: nn.Module, components: Components) -> str:
    """Return a peft target_modules regex matching the language model's linear layers only.

    The output head is excluded, and so is every module of the vision encoder and the projector,
    so convolutional patch embeddings and vision attention are never adapted by default.
    """
    bodies = [name for name in components.language_model if name.rsplit(".", 1)[-1] not in OUTPUT_HEAD_NAMES]
    linears = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(name.startswith(body + ".") for body in bodies)
    ]
    if not linears:
        raise ValueError(f"No linear layers found in the language model ({', '.join(bodies)}) to attach LoRA to.")
    leaves = sorted({name.rsplit(".", 1)[-1] for name in linears})
    pattern = rf"^({'|'.join(re.escape(body) for body in bodies)})\..*\.({'|'.join(leaves)})$"
    matched = {name for name, _ in model.named_modules() if re.fullmatch(pattern, name)}
    if matched != set(linears):
        # A leaf name is shared with a non-linear module; list the layers one by one instead.
        pattern = "^(" + "|".join(re.escape(name) for name in linears) + ")$"
    return pattern


def setup_finetuning(model: nn.Module, components: Components, config: FinetuneConfig) -> nn.Module:
    """Freeze everything, then enable what `config` selects. Returns the (possibly peft-wrapped) model."""
    if not (config.train_language_model or config.train_vision or config.train_projector):
        raise ValueError(
            "Nothing to train: enable at least one of train_language_model, train_vision, train_projector."
        )
    if config.train_projector and not components.projector:
        raise ValueError(f"train_projector is set but {type(model).__name__} has no separate projector module.")

    for parameter in model.parameters():
        parameter.requires_grad = False

    full_modules = []
    if config.train_vision:
        full_modules += components.vision
    if config.train_projector:
        full_modules += components.projector

    if config.method == "lora":
        if config.train_language_model:
            lora = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=language_model_lora_targets(model, components),
                # Fully trained components are saved with the adapter, so the adapter folder is complete.
                modules_to_save=full_modules or None,
                task_type=None,
            )
            model = get_peft_model(model, lora)
        else:
            _enable(model, full_modules)
    else:
        if config.train_language_model:
            full_modules += components.language_model
        _enable(model, full_modules)

    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def _enable(model: nn.Module, module_paths: list[str]) -> None:
    modules = dict(model.named_modules())
    for path in module_paths:
        for parameter in modules[path].parameters():
            parameter.requires_grad = True
