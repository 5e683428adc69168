"""Module checks every family fixture must pass: components, LoRA targets, freezing and gradients.

The freezing switches must make exactly the parameters of the chosen components trainable, judged
against the module paths each fixture lists. LoRA must adapt only the language model's linear
layers. After one backward pass, every trainable parameter has a gradient and every frozen one
has none, with and without gradient checkpointing.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from torch import nn

from tests.families import test_contract as contract
from tests.families.test_contract import collators, conversation, fresh_model
from vlmtune.config import FinetuneConfig
from vlmtune.models.components import find_components
from vlmtune.models.finetune import setup_finetuning

family = contract.placeholder_family

SWITCHES = {
    "lora": FinetuneConfig(),
    "lora+projector": FinetuneConfig(train_projector=True),
    "lora+vision": FinetuneConfig(train_vision=True),
    "full-language": FinetuneConfig(method="full"),
    "full-all": FinetuneConfig(method="full", train_vision=True, train_projector=True),
    "vision-only": FinetuneConfig(method="full", train_language_model=False, train_vision=True),
    "projector-only": FinetuneConfig(method="full", train_language_model=False, train_projector=True),
}


def under(name: str, prefixes) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def expected_component(spec, name: str) -> str:
    """Which component a base-model parameter belongs to, from the fixture's own module paths."""
    for component in ("projector", "vision", "language_model"):
        if under(name, spec.components[component]):
            return component
    return "other"


def base_name(name: str) -> str:
    """The base model's parameter name for a parameter of a peft-wrapped model."""
    name = name.removeprefix("base_model.model.")
    for marker in (".base_layer", ".original_module"):
        name = name.replace(marker, "")
    if ".modules_to_save." in name:
        head, tail = name.split(".modules_to_save.", 1)
        name = head + "." + tail.split(".", 1)[1]
    return name


def require_components(spec) -> None:
    if spec.components is None:
        pytest.skip("the fixture lists no expected component paths")


def test_components_resolve_to_exact_module_paths(family):
    spec, model, _ = family
    require_components(spec)
    components = find_components(model)
    assert components.vision == list(spec.components["vision"])
    assert components.projector == list(spec.components["projector"])
    assert components.language_model == list(spec.components["language_model"])
    assert components.unused == list(spec.components.get("unused", ()))
    components_by_parameter = {expected_component(spec, name) for name, _ in model.named_parameters()}
    assert "other" not in components_by_parameter


def test_default_lora_targets_only_language_model_linears(family):
    spec, _, _ = family
    require_components(spec)
    model = fresh_model(family)
    components = find_components(model)
    language_linears = {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and expected_component(spec, name) == "language_model"
        and not name.startswith("lm_head")
    }
    wrapped = setup_finetuning(model, components, FinetuneConfig())
    adapted = {base_name(name) for name, module in wrapped.named_modules() if hasattr(module, "lora_A")}
    assert adapted == language_linears
    assert all(
        not isinstance(module, nn.Conv1d | nn.Conv2d | nn.Conv3d)
        for name, module in wrapped.named_modules()
        if hasattr(module, "lora_A")
    )
    for name, parameter in wrapped.named_parameters():
        if parameter.requires_grad:
            assert "lora_" in name, name


@pytest.mark.parametrize("switch", SWITCHES)
def test_freezing_switches_select_exact_parameters(family, switch):
    spec, _, _ = family
    require_components(spec)
    config = SWITCHES[switch]
    model = fresh_model(family)
    trained = setup_finetuning(model, find_components(model), config)
    chosen = {
        "vision": config.train_vision,
        "projector": config.train_projector,
        "language_model": config.train_language_model,
    }
    for name, parameter in trained.named_parameters():
        if "lora_" in name:
            assert config.method == "lora", name
            assert parameter.requires_grad, name
            assert expected_component(spec, base_name(name)) == "language_model", name
            continue
        component = expected_component(spec, base_name(name))
        if ".original_module." in name:
            assert not parameter.requires_grad, name
            continue
        should_train = chosen.get(component, False) and (config.method == "full" or component != "language_model")
        if under(base_name(name), spec.components.get("unused", ())):
            # The model discards these layers' output, so they stay frozen.
            should_train = False
        if config.method == "lora" and config.train_language_model and base_name(name) in spec.components[component]:
            # A bare parameter listed as a component (image_newline) cannot be saved with an adapter.
            should_train = False
        assert parameter.requires_grad == should_train, (name, component)


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "gradient-checkpointing"])
@pytest.mark.parametrize("switch", ["lora+projector", "full-all", "vision-only"])
def test_gradients_exactly_on_trainable_parameters(family, switch, checkpointing):
    _, _, processor = family
    model = fresh_model(family)
    components = find_components(model)
    config = FinetuneConfig(**{**vars(SWITCHES[switch]), "gradient_checkpointing": checkpointing})
    if config.train_projector and not components.projector:
        pytest.skip("no separate projector")
    trained = setup_finetuning(model, components, config)
    trained.train()
    training, _ = collators(model, processor)
    batch = training([conversation(["yes"]), conversation(["no", "maybe"])])
    loss = trained(**batch).loss
    loss.backward()
    missing = [name for name, p in trained.named_parameters() if p.requires_grad and p.grad is None]
    leaked = [name for name, p in trained.named_parameters() if not p.requires_grad and p.grad is not None]
    assert not missing
    assert not leaked
    assert torch.isfinite(loss)
    base = trained.get_base_model() if isinstance(trained, PeftModel) else trained
    assert base.is_gradient_checkpointing == checkpointing
