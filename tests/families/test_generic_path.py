"""The generic path: a model whose family is not registered trains through the whole recipe, and a
processor without a chat template is refused with an error that names what is missing."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig

from tests.conftest import write_digit_jsonl
from tests.fixtures.families import all_fixtures
from tests.test_train_tiny import tiny_config
from vlmtune.cli import main
from vlmtune.config import ConfigError, ModelConfig
from vlmtune.models.families import family_for
from vlmtune.models.loading import load_processor
from vlmtune.training.recipe import run_training

SPECS = {fixture.name: fixture for fixture in all_fixtures()}


@pytest.mark.parametrize("name", ["idefics3", "mllama"])
def test_unregistered_family_runs_recipe(name, tmp_path):
    model_dir = SPECS[name].build(tmp_path / name)
    model_type = AutoConfig.from_pretrained(model_dir).model_type
    assert family_for(model_type) is None, "the test needs a family that only the generic path knows"
    data = write_digit_jsonl(tmp_path / "data", list(range(16)))
    config = tiny_config(model_dir, data, tmp_path / "run", train_projector=True)
    config.training.max_steps = 6
    summary = run_training(config)
    assert summary["steps"] == 6
    assert summary["saved"] == "adapter"
    assert summary["supervised_tokens"] == 2 * summary["train_samples"]  # one digit plus the end of turn
    assert summary["trainable_parameters"]["projector"] == summary["total_parameters"]["projector"]
    assert summary["trainable_parameters"].get("vision", 0) == 0
    assert (tmp_path / "run" / "final" / "adapter_model.safetensors").is_file()
    predictions = (tmp_path / "run" / "predictions_after.jsonl").read_text().splitlines()
    assert len(predictions) == summary["eval_samples"]
    assert {"prediction", "reference"} <= set(json.loads(predictions[0]))


def _without_chat_template(tmp_path):
    model_dir = SPECS["idefics3"].build(tmp_path / "idefics3")
    (model_dir / "chat_template.jinja").unlink()
    for name in ("tokenizer_config.json", "processor_config.json"):
        path = model_dir / name
        if path.is_file():
            settings = json.loads(path.read_text())
            settings.pop("chat_template", None)
            path.write_text(json.dumps(settings))
    return model_dir


def test_missing_chat_template_error(tmp_path, capsys):
    model_dir = _without_chat_template(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_processor(ModelConfig(model=str(model_dir)))
    message = str(error.value)
    assert "has no chat template" in message
    assert "Idefics3Processor, model_type='idefics3'" in message
    assert "chat_template.jinja" in message
    assert "prefix and suffix" in message
    assert "chat_template=False" in message

    data = write_digit_jsonl(tmp_path / "data", list(range(4)))
    assert main(["plan", "--model", str(model_dir), "--data", str(data)]) == 2
    assert "has no chat template" in capsys.readouterr().err
