"""Loading adapters: weights really land in the model, and mismatched keys are rejected."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText

from tests.fixtures.adapter import build_tiny_adapter, copy_with_base_name
from vlmtune.config import ConfigError, ModelConfig
from vlmtune.export.save import verify_adapter_reloads
from vlmtune.models.adapters import AdapterLoadError, load_adapter_strict, load_for_inference

ADAPTER_FILE = "adapter_model.safetensors"


@pytest.fixture(scope="module")
def adapter_dir(tiny_smolvlm_dir, tmp_path_factory):
    return build_tiny_adapter(tiny_smolvlm_dir, tmp_path_factory.mktemp("adapter"))


def copy_with_renamed_keys(adapter_dir, target, old, new):
    shutil.copytree(adapter_dir, target)
    weights = load_file(adapter_dir / ADAPTER_FILE)
    save_file({key.replace(old, new): value for key, value in weights.items()}, target / ADAPTER_FILE)
    return target


def test_adapter_weights_are_loaded(tiny_smolvlm_dir, adapter_dir):
    loaded = load_for_inference(ModelConfig(model=str(adapter_dir), dtype="float32"))
    assert loaded.base_model == str(tiny_smolvlm_dir)
    state = loaded.model.state_dict()
    saved = load_file(adapter_dir / ADAPTER_FILE)
    key = "base_model.model.model.text_model.layers.0.self_attn.q_proj.lora_B.weight"
    assert torch.equal(state[key.replace(".weight", ".default.weight")], saved[key])
    connector = "base_model.model.model.connector.modality_projection.proj.weight"
    loaded_connector = "base_model.model.model.connector.modules_to_save.default.modality_projection.proj.weight"
    assert torch.equal(state[loaded_connector], saved[connector])
    assert not loaded.model.training


def test_renamed_lora_keys_rejected_with_names_and_version(tiny_smolvlm_dir, adapter_dir, tmp_path):
    # The layout of a transformers 4 checkpoint: language model under another module name.
    bad = copy_with_renamed_keys(adapter_dir, tmp_path / "bad", "model.text_model.", "model.language_model.")
    base = AutoModelForImageTextToText.from_pretrained(tiny_smolvlm_dir)
    with pytest.raises(AdapterLoadError) as error:
        load_adapter_strict(base, bad)
    message = str(error.value)
    assert f"transformers {transformers.__version__}" in message
    assert "weights in the file match no module" in message
    assert "base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight" in message
    assert "were not in the file" in message
    assert "untrained base model" in message


def test_renamed_full_weight_keys_rejected(tiny_smolvlm_dir, adapter_dir, tmp_path):
    bad = copy_with_renamed_keys(adapter_dir, tmp_path / "bad", "connector.modality_projection", "connector.proj")
    with pytest.raises(AdapterLoadError, match=r"lacks the weight .*connector\.modality_projection\.proj\.weight"):
        load_for_inference(ModelConfig(model=str(bad), dtype="float32"))


def test_adapter_for_other_modules_rejected(tiny_smolvlm_dir, adapter_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(adapter_dir, other)
    config = json.loads((other / "adapter_config.json").read_text())
    config["target_modules"] = ["no_such_projection"]
    (other / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterLoadError, match="does not fit SmolVLMForConditionalGeneration"):
        load_for_inference(ModelConfig(model=str(other), dtype="float32"))


def test_adapter_without_base_name_asks_for_base_model(adapter_dir, tmp_path):
    nameless = copy_with_base_name(adapter_dir, tmp_path / "nameless", None)
    with pytest.raises(AdapterLoadError, match=r"does not name its base model.*--base-model"):
        load_for_inference(ModelConfig(model=str(nameless)))


def test_adapter_unloadable_base_hint(adapter_dir, tmp_path, monkeypatch):
    moved = copy_with_base_name(adapter_dir, tmp_path / "moved", "models/tiny")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as raised:
        load_for_inference(ModelConfig(model=str(moved)))
    message = str(raised.value)
    assert message.startswith("Model 'models/tiny' cannot be loaded: ")
    assert f"The adapter names this base model in {moved / 'adapter_config.json'}" in message
    assert message.endswith("Pass --base-model with the base model's Hub id or folder.")


def test_saved_adapter_verified_by_reloading(tiny_smolvlm_dir, adapter_dir, tmp_path):
    model = load_for_inference(ModelConfig(model=str(adapter_dir), dtype="float32")).model
    model.save_pretrained(tmp_path / "ok")
    verify_adapter_reloads(model, tmp_path / "ok")
    assert list(model.peft_config) == ["default"]
    assert model.active_adapter == "default"

    # Same keys, other values: the reloaded weights differ from the trained ones.
    changed = tmp_path / "changed"
    shutil.copytree(tmp_path / "ok", changed)
    weights = load_file(changed / ADAPTER_FILE)
    key = "base_model.model.model.text_model.layers.1.self_attn.v_proj.lora_A.weight"
    weights[key] = weights[key] + 1
    save_file(weights, changed / ADAPTER_FILE)
    with pytest.raises(AdapterLoadError, match=r"1 weights differ, e\.g\. .*layers\.1\.self_attn\.v_proj\.lora_A"):
        verify_adapter_reloads(model, changed)

    renamed = copy_with_renamed_keys(tmp_path / "ok", tmp_path / "renamed", "model.text_model.", "model.lm.")
    with pytest.raises(AdapterLoadError, match="match no module"):
        verify_adapter_reloads(model, renamed)
    assert list(model.peft_config) == ["default"]
    assert model.active_adapter == "default"
