"""Merging: the merged model computes what the adapter model computes, and loads without peft."""

from __future__ import annotations

import json
import shutil
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.conftest import write_digit_jsonl
from tests.fixtures.adapter import build_tiny_adapter, copy_with_base_name
from vlmtune.cli import main
from vlmtune.collation.collator import GenerationCollator
from vlmtune.config import ConfigError, MergeConfig, ModelConfig
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.jsonl import read_jsonl
from vlmtune.export.merge import merge_adapter
from vlmtune.models.adapters import AdapterLoadError, load_for_inference
from vlmtune.outputs import OutputExistsError


@pytest.fixture(scope="module")
def adapter_dir(tiny_smolvlm_dir, tmp_path_factory):
    return build_tiny_adapter(tiny_smolvlm_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def merged_dir(adapter_dir, tmp_path_factory):
    return merge_adapter(MergeConfig(adapter=str(adapter_dir), output_dir=str(tmp_path_factory.mktemp("m") / "merged")))


def digit_batch(folder, processor):
    samples = read_jsonl(write_digit_jsonl(folder, [0, 1, 2, 3]))
    dataset = ConversationDataset(samples)
    return GenerationCollator(processor)([dataset[i] for i in range(len(dataset))])


@torch.no_grad()
def test_merged_logits_match_adapter_logits(tiny_smolvlm_dir, adapter_dir, merged_dir, tmp_path):
    adapter_model = load_for_inference(ModelConfig(model=str(adapter_dir), dtype="float32")).model
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir, dtype=torch.float32).eval()
    base = AutoModelForImageTextToText.from_pretrained(tiny_smolvlm_dir, dtype=torch.float32).eval()
    batch = digit_batch(tmp_path, AutoProcessor.from_pretrained(merged_dir))
    assert batch["pixel_values"].abs().sum() > 0

    adapter_logits = adapter_model(**batch).logits
    merged_logits = merged(**batch).logits
    base_logits = base(**batch).logits
    torch.testing.assert_close(merged_logits, adapter_logits, atol=1e-4, rtol=1e-4)
    # The adapter changes the outputs, so equality above is not the base model matching itself.
    assert (merged_logits - base_logits).abs().max() > 1e-2


def test_merged_folder_is_plain_transformers(tiny_smolvlm_dir, merged_dir):
    names = {path.name for path in merged_dir.iterdir()}
    assert "model.safetensors" in names
    assert {"config.json", "generation_config.json", "chat_template.jinja", "tokenizer.json"} <= names
    assert not {"adapter_config.json", "adapter_model.safetensors"} & names
    assert not any(".lora_" in key or "base_layer" in key for key in load_file(merged_dir / "model.safetensors"))

    processor = AutoProcessor.from_pretrained(merged_dir)
    base_processor = AutoProcessor.from_pretrained(tiny_smolvlm_dir)
    assert processor.chat_template == base_processor.chat_template
    assert type(processor.image_processor) is type(base_processor.image_processor)
    generation = json.loads((merged_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == processor.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    config = json.loads((merged_dir / "config.json").read_text())
    assert "auto_map" not in config


def test_merge_refuses_non_empty_output_dir(adapter_dir, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not an empty folder"):
        merge_adapter(MergeConfig(adapter=str(adapter_dir), output_dir=str(output)))
    assert [path.name for path in output.iterdir()] == ["notes.txt"]


def test_merge_rejects_adapter_with_mismatched_keys(adapter_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(adapter_dir, bad)
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    renamed = {key.replace(".text_model.", ".language_model."): value for key, value in weights.items()}
    save_file(renamed, bad / "adapter_model.safetensors")
    assert main(["merge", "--adapter", str(bad), "--output-dir", str(tmp_path / "merged")]) == 2
    assert not (tmp_path / "merged").exists()
    with pytest.raises(AdapterLoadError, match="match no module"):
        merge_adapter(MergeConfig(adapter=str(bad), output_dir=str(tmp_path / "merged")))


def test_merge_unloadable_base_hint(adapter_dir, tmp_path, monkeypatch):
    moved = copy_with_base_name(adapter_dir, tmp_path / "moved", "models/tiny")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as raised:
        merge_adapter(MergeConfig(adapter=str(moved), output_dir=str(tmp_path / "merged")))
    message = str(raised.value)
    assert message.startswith("Model 'models/tiny' cannot be loaded: ")
    assert message.endswith("Pass --base-model with the base model's Hub id or folder.")
    assert not (tmp_path / "merged").exists()


def test_merge_keeps_media_settings(adapter_dir, tmp_path):
    with_settings = tmp_path / "adapter"
    shutil.copytree(adapter_dir, with_settings)
    (with_settings / "vlmtune_media.json").write_text('{"video_fps": 4.0}')
    merged = merge_adapter(MergeConfig(adapter=str(with_settings), output_dir=str(tmp_path / "merged")))
    assert (merged / "vlmtune_media.json").read_text() == '{"video_fps": 4.0}'


def test_merge_needs_an_adapter_folder(tiny_smolvlm_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"--adapter must be a folder with adapter_config\.json"):
        merge_adapter(MergeConfig(adapter=str(tiny_smolvlm_dir), output_dir=str(tmp_path / "m")))


def test_push_to_hub_only_when_asked(adapter_dir, tmp_path):
    with mock.patch("vlmtune.export.hub.HfApi") as api_class:
        api = api_class.return_value
        api.create_repo.return_value = "https://huggingface.co/someone/digits"
        merge_adapter(MergeConfig(adapter=str(adapter_dir), output_dir=str(tmp_path / "a")))
        api_class.assert_not_called()

        code = main(
            [
                "merge",
                "--adapter",
                str(adapter_dir),
                "--output-dir",
                str(tmp_path / "b"),
                "--push-to-hub",
                "someone/digits",
            ]
        )
        assert code == 0
        api.create_repo.assert_called_once_with("someone/digits", repo_type="model", private=True, exist_ok=True)
        upload = api.upload_folder.call_args.kwargs
        assert upload["repo_id"] == "someone/digits"
        assert upload["folder_path"] == str(tmp_path / "b")
        assert (tmp_path / "b" / "model.safetensors").is_file()


def test_bad_repo_id_rejected_early(adapter_dir, tmp_path):
    with mock.patch("vlmtune.export.hub.HfApi") as api_class:
        code = main(["merge", "--adapter", str(adapter_dir), "--output-dir", str(tmp_path / "m"), "--push-to-hub", "x"])
    assert code == 2
    api_class.assert_not_called()
    assert not (tmp_path / "m").exists()
