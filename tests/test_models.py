"""Component discovery, LoRA targets and freezing on a tiny SmolVLM."""

from __future__ import annotations

import re

import torch
from peft import PeftModel

from vlmtune.config import FinetuneConfig, ModelConfig
from vlmtune.models.components import find_components
from vlmtune.models.finetune import count_parameters, language_model_lora_targets, setup_finetuning
from vlmtune.models.loading import load_model


def load_tiny(folder):
    return load_model(ModelConfig(model=str(folder), dtype="float32"))


def test_components_found(tiny_smolvlm_dir):
    model = load_tiny(tiny_smolvlm_dir)
    components = find_components(model)
    assert components.vision == ["model.vision_model"]
    assert components.projector == ["model.connector"]
    assert components.language_model == ["model.text_model", "lm_head"]


def test_lora_targets_language_model_linears_only(tiny_smolvlm_dir):
    model = load_tiny(tiny_smolvlm_dir)
    pattern = language_model_lora_targets(model, find_components(model))
    matched = [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]
    assert len(matched) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert all(name.startswith("model.text_model.layers.") for name in matched)
    assert all(isinstance(dict(model.named_modules())[name], torch.nn.Linear) for name in matched)


def test_lora_with_trained_vision_and_projector(tiny_smolvlm_dir):
    model = load_tiny(tiny_smolvlm_dir)
    components = find_components(model)
    base_counts = count_parameters(model, components)
    model = setup_finetuning(model, components, FinetuneConfig(train_vision=True, train_projector=True))
    assert isinstance(model, PeftModel)
    counts = count_parameters(model, components)
    assert counts.trainable["vision"] == base_counts.total["vision"]
    assert counts.total["vision"] == base_counts.total["vision"]
    assert counts.trainable["projector"] == base_counts.total["projector"]
    trainable_lm = [n for n, p in model.named_parameters() if p.requires_grad and ".text_model." in n]
    assert trainable_lm
    assert all("lora_" in name for name in trainable_lm)
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lm_head" in n or "embed_tokens" in n)


def test_full_method_language_model_only(tiny_smolvlm_dir):
    model = load_tiny(tiny_smolvlm_dir)
    components = find_components(model)
    model = setup_finetuning(model, components, FinetuneConfig(method="full"))
    counts = count_parameters(model, components)
    assert counts.trainable["vision"] == 0
    assert counts.trainable["projector"] == 0
    assert counts.trainable["language_model"] == counts.total["language_model"]
