"""`vlmtune plan`: the resolved plan printed for a tiny model and a digit dataset."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import write_digit_jsonl
from tests.fixtures.families.paligemma import build_paligemma
from vlmtune.cli import main
from vlmtune.config import DataConfig, FinetuneConfig, ModelConfig, TrainConfig
from vlmtune.planning import ANSI_RESET, ANSI_SUPERVISED, build_plan, format_plan

SMOLVLM_SAMPLE = (
    "<|im_start|>User:<fake_token_around_image><global-img><image>*4<fake_token_around_image>"
    "Which digit is shown?<end_of_utterance>\nAssistant:[[ 3<end_of_utterance>]]\n"
)


def digit_data(folder):
    # Digits 3, 4, 5 for training (first line: a 3) and 6, 7 for validation, so no split is drawn.
    return write_digit_jsonl(folder, [3, 4, 5], "train.jsonl"), write_digit_jsonl(folder, [6, 7], "eval.jsonl")


def test_plan_command_output(tiny_smolvlm_dir, tmp_path, capsys):
    train, validation = digit_data(tmp_path)
    argv = ["plan", "--model", str(tiny_smolvlm_dir), "--data", str(train), "--eval-data", str(validation)]
    assert main([*argv, "--dtype", "float32", "--lora-r", "4"]) == 0
    printed = capsys.readouterr().out
    output = printed.splitlines()

    handling = "SmolVLM family handling"
    assert output[0] == f"Model: {tiny_smolvlm_dir} (SmolVLMForConditionalGeneration, model_type=smolvlm; {handling})"
    assert output[1] == "Method: lora"
    components = {line.split()[0]: line.split() for line in output if line.startswith("  ")}
    # LoRA r=4 on 14 linear layers of a 64-wide, 2-layer Llama: the adapters are the only trainable weights.
    assert components["vision"][:4] == ["vision", "0", "/", "15,296"]
    assert components["vision"][4:] == ["model.vision_model"]
    assert components["projector"][:4] == ["projector", "0", "/", "8,192"]
    assert components["projector"][4:] == ["model.connector"]
    assert components["language_model"][:2] == ["language_model", "8,192"]
    assert components["language_model"][4:] == ["model.text_model,", "lm_head"]
    assert any(line.startswith("LoRA targets: 14 linear layers matching ^(model\\.text_model)") for line in output)
    # SmolVLM expands videos into <image> tokens, so no other token is listed.
    image_line = next(line for line in output if line.startswith("Image tokens"))
    assert re.fullmatch(r"Image tokens \(video tokens included\): <image> \(id \d+\)", image_line)
    header = f"First training sample ({train}:1): 23 tokens, 4 image tokens, 2 supervised\n"
    # The template's newline after <end_of_utterance> is rendered but not supervised.
    assert printed.endswith(header + SMOLVLM_SAMPLE + "\n")


def test_plan_color_output(tiny_smolvlm_dir, tmp_path):
    train, validation = digit_data(tmp_path)
    config = TrainConfig(
        model=ModelConfig(model=str(tiny_smolvlm_dir), dtype="float32"),
        data=DataConfig(data=str(train), eval_data=str(validation)),
        finetune=FinetuneConfig(method="full", train_vision=True),
    )
    plan = build_plan(config)
    text = format_plan(plan, color=True)
    assert text.endswith(f"Assistant:{ANSI_SUPERVISED} 3<end_of_utterance>{ANSI_RESET}\n")
    assert "[[" not in text
    assert plan.counts.trainable["vision"] == plan.counts.total["vision"] == 15_296
    assert plan.counts.trainable["projector"] == 0
    assert plan.lora_pattern is None
    assert plan.lora_layers == 0


def test_plan_prefix_suffix_family(tmp_path):
    model_dir = build_paligemma(tmp_path / "paligemma")
    train, validation = digit_data(tmp_path)
    config = TrainConfig(
        model=ModelConfig(model=str(model_dir), dtype="float32"),
        data=DataConfig(data=str(train), eval_data=str(validation)),
    )
    plan = build_plan(config)
    assert plan.family == "PaliGemma family handling"
    assert plan.sample_image_tokens == 16
    assert format_plan(plan).splitlines()[-2:] == ["<image>*16<bos>Which digit is shown?", "[[3<eos>]]"]


@pytest.mark.parametrize("name", ["internvl", "llava_pixtral", "qwen2_vl", "smolvlm"])
def test_plan_matches_validate_image_tokens(name, tmp_path):
    from tests.fixtures.families import all_fixtures
    from vlmtune.validation.command import run_validate

    spec = next(fixture for fixture in all_fixtures() if fixture.name == name)
    model_dir = spec.build(tmp_path / name)
    train, validation = digit_data(tmp_path)
    report_path = tmp_path / "report.json"
    config = TrainConfig(
        model=ModelConfig(model=str(model_dir), dtype="float32"),
        data=DataConfig(data=str(train), eval_data=str(validation), validation_report=str(report_path)),
    )
    plan = build_plan(config)
    assert run_validate(config) == 0
    # Every digit scan has the same size, so every sample has the same image token count.
    image = json.loads(report_path.read_text())["splits"]["train"]["tokens"]["image"]
    assert image["min"] == image["max"] == plan.sample_image_tokens
