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

COMPONENTS = ("vision", "projector", "language_model")


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

    selected = set()
    if config.train_vision:
        selected.add("vision")
    if config.train_projector:
        selected.add("projector")
    full_modules = trained_module_paths(model, components, selected)
    modules = dict(model.named_modules())
    bare_parameters = [path for component in selected for path in getattr(components, component) if path not in modules]
    if config.method == "lora" and config.train_language_model and bare_parameters:
        # NOTE: peft's modules_to_save takes whole modules only, so these stay frozen with LoRA.
        logger.warning("Not training %s: an adapter can only save whole modules.", ", ".join(bare_parameters))

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
            _enable(model, components, selected)
    else:
        if config.train_language_model:
            selected.add("language_model")
        _enable(model, components, selected)

    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def trained_module_paths(model: nn.Module, components: Components, selected: set[str]) -> list[str]:
    """Return module paths that cover exactly the `selected` components, for peft's modules_to_save.

    A projector may sit inside the vision encoder (Qwen's `visual.merger`). Training the vision
    encoder without the projector, or the reverse, must not train the nested module, so a path
    that contains a module of an unselected component is replaced by its children, recursively,
    and so is a ModuleList or ModuleDict.
    Component paths that name a bare parameter (LLaVA-NeXT's `image_newline`) are skipped: peft can
    only save whole modules.
    """
    modules = dict(model.named_modules())
    unselected = [
        path for component in COMPONENTS if component not in selected for path in getattr(components, component)
    ]
    unselected += components.unused
    paths: list[str] = []
    for component in COMPONENTS:
        if component not in selected:
            continue
        for path in getattr(components, component):
            if path in modules:
                paths.extend(_paths_without(modules[path], path, unselected))
    # A selected module inside another selected one (both vision and its nested projector) is
    # already saved with its parent, and wrapping it twice would leave its trained copy frozen.
    return [path for path in paths if not any(path.startswith(other + ".") for other in paths)]


def _paths_without(module: nn.Module, path: str, excluded: list[str]) -> list[str]:
    # peft cannot wrap a container (Qwen3-VL's deepstack_merger_list), only the modules in it.
    container = isinstance(module, nn.ModuleList | nn.ModuleDict)
    if not container and not any(other.startswith(path + ".") for other in excluded):
        return [path]
    # NOTE: parameters held directly by a split module (not by one of its children) are left out.
    paths = []
    for name, child in module.named_children():
        child_path = f"{path}.{name}"
        if child_path not in excluded:
            paths.extend(_paths_without(child, child_path, excluded))
    return paths


def _enable(model: nn.Module, components: Components, selected: set[str]) -> None:
    """Make every parameter of the selected components trainable, judged parameter by parameter so a
    nested component (a projector inside the vision encoder) follows its own switch."""
    unused = Components(vision=components.unused)
    for name, parameter in model.named_parameters():
        if components.component_of(name) in selected and unused.component_of(name) == "other":
            parameter.requires_grad = True
