"""Evaluation during training: validation loss and generation metrics every N steps."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_digit_jsonl
from tests.test_train_tiny import tiny_config
from vlmtune.config import ConfigError, ModelConfig
from vlmtune.data.jsonl import read_jsonl
from vlmtune.evaluation.callback import EvaluationCallback
from vlmtune.evaluation.generation import generate_answers
from vlmtune.models.adapters import load_for_inference
from vlmtune.training.recipe import run_training


def test_validation_loss_and_generation_metrics_logged(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(16)))
    output_dir = tmp_path / "run"
    config = tiny_config(tiny_smolvlm_dir, data, output_dir)
    config.training.max_steps = 4
    config.training.save_steps = 4
    config.training.eval_steps = 2
    config.evaluation.metrics = "exact_match,cer"
    config.evaluation.generation_eval_steps = 4
    config.evaluation.generation_eval_samples = 3
    config.evaluation.eval_before = False
    summary = run_training(config)

    history = json.loads((output_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())[
        "log_history"
    ]
    losses = {entry["step"]: entry["eval_loss"] for entry in history if "eval_loss" in entry}
    assert sorted(losses) == [2, 4]
    assert all(loss > 0 for loss in losses.values())
    generated = [entry for entry in history if "eval_exact_match" in entry]
    assert [entry["step"] for entry in generated] == [4]
    assert 0.0 <= generated[0]["eval_exact_match"] <= 1.0
    assert generated[0]["eval_cer"] >= 0.0
    assert set(summary["metrics_after"]) == {"exact_match", "cer"}
    assert summary["metrics_before"] is None

    # The saved adapter loads back strictly and answers exactly as the model did after training.
    after = [json.loads(line) for line in (output_dir / "predictions_after.jsonl").read_text().splitlines()]
    by_source = {sample.source: sample for sample in read_jsonl(data)}
    samples = [by_source[record["source"]] for record in after]
    loaded = load_for_inference(ModelConfig(model=str(output_dir / "final"), dtype="float32"))
    assert any(p.abs().sum() > 0 for name, p in loaded.model.named_parameters() if "lora_B" in name)
    reloaded = generate_answers(loaded.model, loaded.processor, samples, batch_size=8, max_new_tokens=3)
    assert reloaded == [record["prediction"] for record in after]


def test_generation_steps_must_be_positive(tiny_processor):
    with pytest.raises(ValueError, match="generation_eval_steps must be a positive"):
        EvaluationCallback(tiny_processor, [], ["exact_match"], 0, 8, 4)


def test_bad_evaluation_settings_fail_before_loading(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(8)))
    output_dir = tmp_path / "run"
    config = tiny_config(tiny_smolvlm_dir, data, output_dir)
    config.evaluation.metrics = "exact_match,accuracy"
    with pytest.raises(ConfigError, match=r"--metrics: Unknown metric accuracy\. Available metrics: exact_match"):
        run_training(config)
    config.evaluation.metrics = "exact_match"
    config.evaluation.generation_eval_steps = -1
    with pytest.raises(ConfigError, match="--generation-eval-steps must be a positive number of steps, got -1"):
        run_training(config)
    assert not output_dir.exists()
