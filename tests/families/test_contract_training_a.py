"""Training checks every family fixture must pass: the loss falls, and saved models reload and generate.

Training runs through vlmtune's own Trainer setup on a small fixed batch. The saved folder is
reloaded with plain transformers (plus peft for adapters), its weights are compared with the
trained model's, and greedy generation from the reloaded model must equal the trained model's.
"""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.families import test_contract as contract
from tests.families.test_contract import collators, conversation, fresh_model
from vlmtune.config import FinetuneConfig, TrainConfig, TrainingConfig
from vlmtune.export.save import save_final_model
from vlmtune.models.components import find_components
from vlmtune.models.finetune import setup_finetuning
from vlmtune.training.trainer import build_trainer, build_training_arguments

family = contract.placeholder_family

STEPS = 10


def training_samples():
    return [conversation(["red"]), conversation(["a blue square"]), conversation(["yes", "no"])]


def batch_loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return float(model(**batch).loss)


def train(family, finetune: FinetuneConfig, output_dir, learning_rate: float = 5e-3):
    """Train a fresh copy of the family's model for STEPS optimizer steps with vlmtune's Trainer setup."""
    _, _, processor = family
    model = fresh_model(family)
    trained = setup_finetuning(model, find_components(model), finetune)
    training_collator, generation_collator = collators(model, processor)
    samples = training_samples()
    batch = training_collator(samples)
    before = batch_loss(trained, batch)
    config = TrainConfig(
        training=TrainingConfig(
            max_steps=STEPS,
            batch_size=len(samples),
            learning_rate=learning_rate,
            warmup_ratio=0.0,
            lr_scheduler="constant",
            logging_steps=STEPS,
            save_steps=10_000,
            mixed_precision="no",
        )
    )
    args = build_training_arguments(config, output_dir / "checkpoints", torch.float32)
    trainer = build_trainer(trained, processor, args, samples, training_collator)
    trainer.train()
    after = batch_loss(trained, batch)
    return trained, before, after, generation_collator


def greedy(model, prompts) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.generate(**prompts, max_new_tokens=4, do_sample=False)


@pytest.mark.parametrize(
    ("finetune", "learning_rate"),
    [(FinetuneConfig(lora_dropout=0.0), 5e-3), (FinetuneConfig(method="full"), 5e-3)],
    ids=["lora", "full"],
)
def test_training_steps_reduce_loss(family, finetune, learning_rate, tmp_path):
    _, before, after, _ = train(family, finetune, tmp_path, learning_rate)
    assert after < before * 0.9, (before, after)


def test_lora_adapter_saves_reloads_and_generates(family, tmp_path):
    spec, model, processor = family
    finetune = FinetuneConfig(lora_dropout=0.0, train_projector=bool(spec.components and spec.components["projector"]))
    trained, _, _, generation_collator = train(family, finetune, tmp_path)
    assert save_final_model(trained, processor, tmp_path / "final") == "adapter"

    base = AutoModelForImageTextToText.from_pretrained(model.name_or_path, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "final")
    trained_state = {name: value for name, value in trained.state_dict().items() if "lora_" in name}
    reloaded_state = reloaded.state_dict()
    assert trained_state
    for name, value in trained_state.items():
        assert torch.equal(reloaded_state[name], value), name
    if finetune.train_projector:
        saved = [name for name in reloaded_state if ".modules_to_save." in name]
        assert saved
        trained_full = trained.state_dict()
        for name in saved:
            assert torch.equal(reloaded_state[name], trained_full[name]), name

    reloaded_processor = AutoProcessor.from_pretrained(tmp_path / "final")
    assert reloaded_processor.chat_template == processor.chat_template
    prompts = generation_collator([conversation(["red"]), conversation(["yes", "no"])])
    assert torch.equal(greedy(reloaded, prompts), greedy(trained, prompts))


def test_full_model_saves_reloads_and_generates(family, tmp_path):
    _, _, processor = family
    finetune = FinetuneConfig(method="full", train_vision=True, train_projector=True)
    trained, _, _, generation_collator = train(family, finetune, tmp_path)
    assert save_final_model(trained, processor, tmp_path / "final") == "full"

    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "final", dtype=torch.float32)
    reloaded_state = reloaded.state_dict()
    for name, value in trained.state_dict().items():
        assert torch.equal(reloaded_state[name], value), name
    assert reloaded.generation_config.eos_token_id == trained.generation_config.eos_token_id

    prompts = generation_collator([conversation(["red"]), conversation(["yes", "no"])])
    assert torch.equal(greedy(reloaded, prompts), greedy(trained, prompts))
