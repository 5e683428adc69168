"""End to end on a tiny SmolVLM: real digit images, a few steps, loss falls, outputs reload."""

from __future__ import annotations

import json
import os

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.conftest import write_digit_jsonl
from vlmtune.config import DataConfig, EvaluationConfig, FinetuneConfig, ModelConfig, TrainConfig, TrainingConfig
from vlmtune.data.errors import DataError
from vlmtune.models.adapters import load_for_inference
from vlmtune.training.recipe import OutputDirError, run_training


def tiny_config(model_dir, data_path, output_dir, **finetune) -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(model=str(model_dir), dtype="float32"),
        data=DataConfig(data=str(data_path), eval_fraction=0.25, max_length=128),
        finetune=FinetuneConfig(**{"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, **finetune}),
        training=TrainingConfig(
            output_dir=str(output_dir),
            max_steps=12,
            batch_size=8,
            learning_rate=5e-3,
            warmup_ratio=0.0,
            lr_scheduler="constant",
            logging_steps=1,
            save_steps=6,
            mixed_precision="no",
        ),
        evaluation=EvaluationConfig(eval_samples=8, eval_batch_size=8, max_new_tokens=3),
    )


def logged_losses(output_dir) -> list[float]:
    state = json.loads(sorted(output_dir.glob("checkpoints/checkpoint-*/trainer_state.json"))[-1].read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_lora_run_trains_saves_and_reloads(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(40)))
    output_dir = tmp_path / "run"
    summary = run_training(tiny_config(tiny_smolvlm_dir, data, output_dir, train_projector=True))

    assert summary["steps"] == 12
    assert summary["saved"] == "adapter"
    assert summary["train_samples"] == 30
    assert summary["eval_samples"] == 8
    assert 0.0 <= summary["accuracy_before"] <= 1.0
    losses = logged_losses(output_dir)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert json.loads((output_dir / "run_summary.json").read_text())["steps"] == 12
    assert (output_dir / "config.yaml").is_file()
    assert len((output_dir / "predictions_after.jsonl").read_text().splitlines()) == 8

    # Reload with plain transformers + peft and check the trained weights came back.
    final = output_dir / "final"
    base = AutoModelForImageTextToText.from_pretrained(tiny_smolvlm_dir)
    reloaded = PeftModel.from_pretrained(base, final)
    saved = load_file(final / "adapter_model.safetensors")
    lora_keys = [key for key in saved if "lora_B" in key]
    assert lora_keys
    assert any(saved[key].abs().sum() > 0 for key in lora_keys)
    state = reloaded.state_dict()
    for key in lora_keys:
        model_key = key.replace(".weight", ".default.weight")
        assert torch.equal(state[model_key], saved[key])
    connector_keys = [key for key in saved if "connector" in key]
    assert connector_keys
    processor = AutoProcessor.from_pretrained(final)
    assert processor.chat_template == AutoProcessor.from_pretrained(tiny_smolvlm_dir).chat_template


def test_full_run_saves_loadable_model(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(16)))
    output_dir = tmp_path / "run"
    config = tiny_config(tiny_smolvlm_dir, data, output_dir, method="full")
    config.training.max_steps = 2
    config.evaluation.eval_before = False
    summary = run_training(config)
    assert summary["saved"] == "full"
    reloaded = AutoModelForImageTextToText.from_pretrained(output_dir / "final")
    original = AutoModelForImageTextToText.from_pretrained(tiny_smolvlm_dir)
    name = "model.text_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(reloaded.state_dict()[name], original.state_dict()[name])
    assert torch.equal(
        reloaded.state_dict()["model.vision_model.embeddings.patch_embedding.weight"],
        original.state_dict()["model.vision_model.embeddings.patch_embedding.weight"],
    )


def test_existing_output_dir_not_overwritten(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(8)))
    output_dir = tmp_path / "run"
    output_dir.mkdir()
    (output_dir / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="already contains files"):
        run_training(tiny_config(tiny_smolvlm_dir, data, output_dir))
    assert (output_dir / "notes.txt").read_text() == "mine"


def test_bad_image_fails_before_training(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(8)))
    (tmp_path / "data" / "images" / "5.png").write_bytes(b"garbage")
    output_dir = tmp_path / "run"
    with pytest.raises(DataError, match=r"data\.jsonl:6: image .*5\.png is not a readable image"):
        run_training(tiny_config(tiny_smolvlm_dir, data, output_dir))
    assert not (output_dir / "checkpoints").exists()


def test_resume_continues_from_checkpoint(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(24)))
    output_dir = tmp_path / "run"
    first = tiny_config(tiny_smolvlm_dir, data, output_dir)
    first.training.max_steps = 4
    first.training.save_steps = 2
    first.evaluation.eval_before = first.evaluation.eval_after = False
    run_training(first)
    assert (output_dir / "checkpoints" / "checkpoint-4").is_dir()

    resumed = tiny_config(tiny_smolvlm_dir, data, output_dir)
    resumed.training.max_steps = 6
    resumed.training.save_steps = 2
    resumed.training.resume = True
    resumed.evaluation.eval_before = resumed.evaluation.eval_after = False
    summary = run_training(resumed)
    assert summary["steps"] == 6
    state = json.loads((output_dir / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert [entry["step"] for entry in state["log_history"] if "loss" in entry][:4] == [1, 2, 3, 4]


def test_resume_without_checkpoints_rejected(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(8)))
    config = tiny_config(tiny_smolvlm_dir, data, tmp_path / "empty")
    config.training.resume = True
    with pytest.raises(OutputDirError, match="nothing to resume from"):
        run_training(config)


def test_dataloader_workers_run_preprocessing(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(16)))
    config = tiny_config(tiny_smolvlm_dir, data, tmp_path / "run")
    config.data.dataloader_workers = 2
    config.training.max_steps = 2
    config.evaluation.eval_before = config.evaluation.eval_after = False
    summary = run_training(config)
    assert summary["steps"] == 2
    assert summary["config"]["data"]["dataloader_workers"] == 2


def test_dataloader_workers_default_on_cpu():
    from vlmtune.training.trainer import resolve_dataloader_workers

    assert resolve_dataloader_workers(3) == 3
    assert resolve_dataloader_workers(0) == 0
    expected = 0 if not torch.cuda.is_available() else min(4, (os.cpu_count() or 2) // 2)
    assert resolve_dataloader_workers(None) == expected


def test_folder_of_failed_run_reused(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path / "data", list(range(8)))
    (tmp_path / "data" / "images" / "3.png").write_bytes(b"garbage")
    output_dir = tmp_path / "run"
    with pytest.raises(DataError):
        run_training(tiny_config(tiny_smolvlm_dir, data, output_dir))
    assert (output_dir / "config.yaml").is_file()

    # After fixing the data, the same --output-dir works: only pre-training files were there.
    write_digit_jsonl(tmp_path / "data", list(range(8)))
    config = tiny_config(tiny_smolvlm_dir, data, output_dir)
    config.training.max_steps = 1
    config.evaluation.eval_before = config.evaluation.eval_after = False
    assert run_training(config)["steps"] == 1


def test_unreachable_model_clear_error(tmp_path):
    from vlmtune.config import ConfigError
    from vlmtune.models.loading import load_processor

    with pytest.raises(
        ConfigError, match=r"Model 'no-such-org/no-such-model' cannot be loaded: .*HF_HUB_OFFLINE is set"
    ):
        load_processor(ModelConfig(model="no-such-org/no-such-model"))


def test_adapter_records_absolute_base_path(tiny_smolvlm_dir, tmp_path, monkeypatch):
    data = write_digit_jsonl(tmp_path / "data", list(range(16)))
    monkeypatch.chdir(tiny_smolvlm_dir.parent)
    config = tiny_config(tiny_smolvlm_dir.name, data, tmp_path / "run")
    config.training.max_steps = 1
    run_training(config)

    final = tmp_path / "run" / "final"
    adapter_config = json.loads((final / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(tiny_smolvlm_dir.resolve())

    # The adapter loads from any folder, not only the one the run started in.
    monkeypatch.chdir(tmp_path)
    loaded = load_for_inference(ModelConfig(model=str(final), dtype="float32"))
    assert loaded.base_model == str(tiny_smolvlm_dir.resolve())
