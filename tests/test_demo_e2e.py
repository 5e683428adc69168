"""The real demo through the command line: the pretrained SmolLM2 language model inside SmolVLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from vlmtune.demo.model import END_OF_UTTERANCE, build_demo_model

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_demo_model_is_trainable_float_checkpoint():
    folder = build_demo_model()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert "quantization_config" not in config["text_config"]
    processor = AutoProcessor.from_pretrained(folder)
    assert processor.tokenizer.eos_token == END_OF_UTTERANCE
    model = AutoModelForImageTextToText.from_pretrained(folder)
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    # The language model is the pretrained SmolLM2: it answers a text question sensibly.
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    output = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    answer = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer


def test_demo_cli_short_run(tmp_path):
    output_dir = tmp_path / "run"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [
        sys.executable,
        str(REPO / "train.py"),
        "--max-steps",
        "6",
        "--logging-steps",
        "3",
        "--eval-samples",
        "32",
    ]
    result = subprocess.run(
        [*command, "--output-dir", str(output_dir)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation exact-match accuracy: before" in result.stderr
    assert "step 6/6 | loss" in result.stderr

    summary = json.loads((output_dir / "run_summary.json").read_text())
    assert summary["model"] == "demo"
    assert summary["steps"] == 6
    assert summary["eval_samples"] == 32
    assert summary["train_samples"] == 1438
    assert summary["trainable_parameters"]["vision"] > 0

    base = AutoModelForImageTextToText.from_pretrained(summary["model_path"])
    base_patch = base.model.vision_model.embeddings.patch_embedding.weight.detach().clone()
    model = PeftModel.from_pretrained(base, output_dir / "final")
    saved = load_file(output_dir / "final" / "adapter_model.safetensors")
    lora_b = [value for key, value in saved.items() if "lora_B" in key]
    assert lora_b
    assert any(value.abs().sum() > 0 for value in lora_b)
    trained_patch = model.base_model.model.model.vision_model.embeddings.patch_embedding.weight
    assert not torch.equal(trained_patch, base_patch)
