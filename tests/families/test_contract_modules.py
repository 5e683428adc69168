"""Contract checks on modules: components, LoRA targets, freezing switches and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.families.contract_support import FAMILY_PARAMS, load_family, sample
from tests.families.test_contract import collators, fresh_model
from vlmtune.config import FinetuneConfig
from vlmtune.models.components import find_components
from vlmtune.models.finetune import _strip_peft_prefix, count_parameters, language_model_lora_targets, setup_finetuning

# Exact module paths per family: (vision encoder, projector, language model + output head).
EXPECTED_COMPONENTS = {
    "gemma3": (["model.vision_tower"], ["model.multi_modal_projector"], ["model.language_model", "lm_head"]),
    "idefics3": (["model.vision_model"], ["model.connector"], ["model.text_model", "lm_head"]),
    "smolvlm": (["model.vision_model"], ["model.connector"], ["model.text_model", "lm_head"]),
    "mllama": (["model.vision_model"], ["model.multi_modal_projector"], ["model.language_model", "lm_head"]),
    "mistral3": (["model.vision_tower"], ["model.multi_modal_projector"], ["model.language_model", "lm_head"]),
    "llava_pixtral": (["model.vision_tower"], ["model.multi_modal_projector"], ["model.language_model", "lm_head"]),
    "paligemma": (["model.vision_tower"], ["model.multi_modal_projector"], ["model.language_model", "lm_head"]),
    "paligemma2": (["model.vision_tower"], ["model.multi_modal_projector"], ["model.language_model", "lm_head"]),
}


@pytest.fixture(scope="module", **FAMILY_PARAMS)
def family(request, tmp_path_factory):
    return load_family(request, tmp_path_factory)


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def test_component_module_paths(family):
    spec, model, _ = family
    components = find_components(model)
    if spec.name in EXPECTED_COMPONENTS:
        vision, projector, language = EXPECTED_COMPONENTS[spec.name]
        assert (components.vision, components.projector, components.language_model) == (vision, projector, language)
    # Every parameter belongs to exactly one component, and the vision encoder contains the patch embedding.
    for name, _ in model.named_parameters():
        assert components.component_of(name) != "other", name
    modules = dict(model.named_modules())
    assert any(
        isinstance(modules[name], nn.Conv2d) or "patch" in name for name in modules if _inside(name, components.vision)
    )


def test_lora_targets_language_linears(family):
    _, model, _ = family
    components = find_components(model)
    pattern = language_model_lora_targets(model, components)
    wrapped = fresh_model(family)
    peft_model = setup_finetuning(wrapped, find_components(wrapped), FinetuneConfig(lora_r=4, lora_alpha=8))
    adapted = [_strip_peft_prefix(name) for name, module in peft_model.named_modules() if name.endswith(".lora_A")]
    adapted = sorted({name.removesuffix(".lora_A") for name in adapted})
    bodies = [name for name in components.language_model if name != "lm_head"]
    expected = sorted(
        name for name, module in model.named_modules() if isinstance(module, nn.Linear) and _inside(name, bodies)
    )
    assert adapted == expected, pattern
    assert adapted
    for name in adapted:
        assert not _inside(name, components.vision + components.projector), name
    counts = count_parameters(peft_model, components)
    assert counts.trainable["vision"] == counts.trainable["projector"] == 0
    assert all("lora_" in name for name, parameter in peft_model.named_parameters() if parameter.requires_grad)


SWITCHES = {
    "lora_language_model": FinetuneConfig(lora_r=4, lora_alpha=8),
    "lora_with_vision_and_projector": FinetuneConfig(lora_r=4, lora_alpha=8, train_vision=True, train_projector=True),
    "full_language_model": FinetuneConfig(method="full"),
    "full_vision_only": FinetuneConfig(method="full", train_language_model=False, train_vision=True),
    "full_projector_only": FinetuneConfig(method="full", train_language_model=False, train_projector=True),
    "lora_projector_only": FinetuneConfig(train_language_model=False, train_projector=True),
}


def _frozen_by_design(name: str, components, modules: dict, config: FinetuneConfig) -> bool:
    """Whether a parameter stays frozen whatever the switches say.

    Vision layers after the one the model reads features from never get a gradient, and a bare
    parameter component (LLaVA-NeXT's `image_newline`) cannot be saved in a LoRA adapter.
    """
    base_name = _strip_peft_prefix(name)
    if any(base_name == path or base_name.startswith(path + ".") for path in components.unused):
        return True
    bare = [path for path in components.projector + components.vision if path not in modules]
    return config.method == "lora" and config.train_language_model and base_name in bare


def _expected_trainable(name: str, component: str, config: FinetuneConfig) -> bool:
    selected = {
        "language_model": config.train_language_model,
        "vision": config.train_vision,
        "projector": config.train_projector,
    }[component]
    if not selected:
        return False
    if config.method == "full" or (component != "language_model" and not config.train_language_model):
        return True
    if component == "language_model":
        return "lora_" in name
    # Fully trained components next to a LoRA adapter train their modules_to_save copy only.
    return ".modules_to_save." in name


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_freezing_switches_per_component(family, switch):
    config = SWITCHES[switch]
    model = fresh_model(family)
    components = find_components(model)
    modules = dict(model.named_modules())
    frozen_counts = {"vision": 0, "projector": 0}
    for name, parameter in model.named_parameters():
        component = components.component_of(name)
        if component in frozen_counts and _frozen_by_design(name, components, modules, config):
            frozen_counts[component] += parameter.numel()
    trained = setup_finetuning(model, components, config)
    seen = {"language_model": 0, "vision": 0, "projector": 0}
    for name, parameter in trained.named_parameters():
        component = components.component_of(_strip_peft_prefix(name))
        expected = _expected_trainable(name, component, config)
        if ".original_module." not in name and _frozen_by_design(name, components, modules, config):
            expected = False
        assert parameter.requires_grad == expected, (switch, name)
        seen[component] += parameter.requires_grad
    if config.train_vision:
        assert seen["vision"] > 0
    if config.train_projector:
        assert seen["projector"] > 0

    # Counts show a fully trained component as all trainable (but for its frozen-by-design
    # parameters), even beside a LoRA adapter.
    counts = count_parameters(trained, components)
    for component, selected in (("vision", config.train_vision), ("projector", config.train_projector)):
        expected = counts.total[component] - frozen_counts[component] if selected else 0
        assert counts.trainable[component] == expected, component
    if config.train_language_model and config.method == "lora":
        assert 0 < counts.trainable["language_model"] < counts.total["language_model"]


GRADIENT_SETUPS = {
    "lora": FinetuneConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0),
    "lora_checkpointing": FinetuneConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0, gradient_checkpointing=True),
    "full_all_checkpointing": FinetuneConfig(
        method="full", train_vision=True, train_projector=True, gradient_checkpointing=True
    ),
    "lora_vision_projector_checkpointing": FinetuneConfig(
        lora_r=4, lora_alpha=8, lora_dropout=0.0, train_vision=True, train_projector=True, gradient_checkpointing=True
    ),
}


@pytest.mark.parametrize("setup", list(GRADIENT_SETUPS))
def test_gradients_on_trainable_only(family, setup):
    _, _, processor = family
    model = fresh_model(family)
    trained = setup_finetuning(model, find_components(model), GRADIENT_SETUPS[setup])
    trained.train()
    training, _ = collators(model, processor)
    batch = training([sample(["yes"], seed=1), sample(["no"], seed=2)])
    loss = trained(**batch).loss
    loss.backward()
    missing = [name for name, p in trained.named_parameters() if p.requires_grad and p.grad is None]
    stray = [name for name, p in trained.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not missing, missing
    assert not stray, stray
    assert torch.isfinite(loss)
