"""Contract checks on training: the loss falls, the saved model reloads with plain transformers
(+ peft) and gives the same logits and the same greedy outputs."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

from tests.conftest import write_digit_jsonl
from tests.families.contract_support import FAMILY_PARAMS, load_family, sample
from tests.families.test_contract import collators, fresh_model
from tests.test_train_tiny import logged_losses, tiny_config
from vlmtune.config import FinetuneConfig
from vlmtune.evaluation.generation import generate_answers
from vlmtune.export.save import save_final_model
from vlmtune.models.components import find_components
from vlmtune.models.finetune import setup_finetuning
from vlmtune.training.recipe import run_training


@pytest.fixture(scope="module", **FAMILY_PARAMS)
def family(request, tmp_path_factory):
    return load_family(request, tmp_path_factory)


def train_steps(model, batch, steps: int, learning_rate: float) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def logits(model, batch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


def training_samples(spec):
    samples = [sample(["yes"], seed=1), sample(["no"], seed=2, sizes=spec.image_sizes[1:2])]
    return samples


@pytest.mark.parametrize(
    "config",
    [
        FinetuneConfig(lora_r=8, lora_alpha=16, lora_dropout=0.0, train_projector=True),
        FinetuneConfig(method="full", train_vision=True, train_projector=True),
    ],
    ids=["lora_with_projector", "full"],
)
def test_train_save_reload_generate(family, config, tmp_path):
    spec, base, processor = family
    model = fresh_model(family)
    trained = setup_finetuning(model, find_components(model), config)
    training, _ = collators(base, processor)
    samples = training_samples(spec)
    batch = training(samples)

    losses = train_steps(trained, batch, steps=8, learning_rate=1e-2 if config.method == "lora" else 2e-3)
    assert losses[-1] < 0.9 * losses[0], losses

    kind = save_final_model(trained, processor, tmp_path / "final")
    assert kind == ("adapter" if config.method == "lora" else "full")
    if kind == "adapter":
        reloaded = PeftModel.from_pretrained(
            AutoModelForImageTextToText.from_pretrained(base.name_or_path, dtype=torch.float32), tmp_path / "final"
        )
    else:
        reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "final", dtype=torch.float32)
    reloaded_processor = AutoProcessor.from_pretrained(tmp_path / "final")

    # The reloaded weights compute exactly what the trained model computes, and differ from the base.
    assert torch.allclose(logits(reloaded, batch), logits(trained, batch), atol=1e-5)
    assert not torch.allclose(logits(base, batch), logits(trained, batch), atol=1e-3)

    answers = generate_answers(reloaded, reloaded_processor, samples, batch_size=2, max_new_tokens=3)
    expected = generate_answers(trained, processor, samples, batch_size=2, max_new_tokens=3)
    assert answers == expected
    assert len(answers) == 2


@pytest.mark.parametrize("spec", FAMILY_PARAMS["params"], ids=FAMILY_PARAMS["ids"])
def test_whole_recipe_on_digit_scans(spec, tmp_path):
    """The user's path: JSONL in, checks, baseline evaluation, Trainer, adapter saved, evaluation after."""
    model_dir = spec.build(tmp_path / spec.name)
    data = write_digit_jsonl(tmp_path / "data", list(range(16)))
    config = tiny_config(model_dir, data, tmp_path / "run", train_projector=True)
    config.training.max_steps = config.training.save_steps = 6
    config.training.batch_size = 4
    config.evaluation.eval_samples = 2
    summary = run_training(config)
    assert summary["steps"] == 6
    assert summary["saved"] == "adapter"
    losses = logged_losses(tmp_path / "run")
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    predictions = (tmp_path / "run" / "predictions_after.jsonl").read_text().splitlines()
    assert len(predictions) == summary["eval_samples"] == 2
