"""Checks every family fixture must pass: label masks, image tokens, batching, modules, training.

The module-scoped `family` model is shared and must stay unchanged; a test that wraps or trains a
model loads its own copy with `fresh_model`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures.families import FamilyFixture, all_fixtures
from vlmtune.collation.factory import build_collators
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.config import FinetuneConfig, ModelConfig
from vlmtune.data.schema import Sample
from vlmtune.models.components import find_components
from vlmtune.models.finetune import setup_finetuning
from vlmtune.models.loading import load_model, load_processor

FIXTURES = all_fixtures()

PLACEHOLDER_FAMILIES = (
    "internvl",
    "llava",
    "llava_next",
    "llava_onevision",
    "qwen2_5_vl",
    "qwen2_vl",
    "qwen3_vl",
    "smolvlm",
)
"""Fixtures whose models insert image features at placeholder tokens through `get_placeholder_mask`
and whose templates take multi-turn chats. The detailed image-geometry, label and module checks
that spy on those internals run on these; every fixture runs the checks in the other files."""


def _load(request, tmp_path_factory):
    spec: FamilyFixture = request.param
    folder = spec.build(tmp_path_factory.mktemp(spec.name))
    config = ModelConfig(model=str(folder), dtype="float32")
    return spec, load_model(config), load_processor(config)


@pytest.fixture(scope="module", params=FIXTURES, ids=[fixture.name for fixture in FIXTURES])
def family(request, tmp_path_factory):
    return _load(request, tmp_path_factory)


PLACEHOLDER_FIXTURES = [fixture for fixture in FIXTURES if fixture.name in PLACEHOLDER_FAMILIES]


@pytest.fixture(scope="module", params=PLACEHOLDER_FIXTURES, ids=[fixture.name for fixture in PLACEHOLDER_FIXTURES])
def placeholder_family(request, tmp_path_factory):
    return _load(request, tmp_path_factory)


def fresh_model(family):
    """Load a separate copy of the family's model, for tests that change it (peft wrapping, training)."""
    _, model, _ = family
    return load_model(ModelConfig(model=model.name_or_path, dtype="float32"))


def image(width: int = 32, height: int = 32, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def text(value: str) -> dict:
    return {"type": "text", "text": value}


def conversation(answers: list[str], images: int = 1, system: str | None = None) -> Sample:
    messages = [{"role": "system", "content": [text(system)]}] if system else []
    for turn, answer in enumerate(answers):
        parts = [{"type": "image"}] * images if turn == 0 else []
        messages.append({"role": "user", "content": [*parts, text(f"Question {turn}?")]})
        messages.append({"role": "assistant", "content": [text(answer)]})
    return Sample(messages=messages, images=[image(seed=i) for i in range(images)], source="contract")


def supervised_text(processor, batch, row: int) -> str:
    labels = batch["labels"][row]
    return processor.tokenizer.decode(labels[labels != IGNORE_INDEX], skip_special_tokens=False)


def collators(model, processor):
    return build_collators(processor, model.config, model.generation_config, max_length=4096)


def test_single_turn_labels(family):
    spec, model, processor = family
    training, _ = collators(model, processor)
    batch = training([conversation(["yes"])])
    assert supervised_text(processor, batch, 0).strip() == f"yes{spec.end_of_turn}".strip()


def test_multi_turn_labels_with_system(family):
    spec, model, processor = family
    if not spec.supports_system:
        pytest.skip(spec.notes.get("system", "no system role"))
    training, _ = collators(model, processor)
    batch = training([conversation(["red", "blue"], system="Answer in one word.")])
    supervised = supervised_text(processor, batch, 0)
    assert supervised.replace(" ", "") == f"red{spec.end_of_turn}blue{spec.end_of_turn}".replace(" ", "")
    assert "Answer in one word" not in supervised
    assert "Question" not in supervised


def test_image_tokens_never_supervised(family):
    spec, model, processor = family
    training, _ = collators(model, processor)
    batch = training([conversation(["a"]), conversation(["bb", "c"] if spec.supports_multi_turn else ["bb"])])
    image_token_id = model.config.image_token_id
    image_positions = batch["input_ids"] == image_token_id
    assert image_positions.any()
    assert (batch["labels"][image_positions] == IGNORE_INDEX).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_trainable_parameters_get_gradients(family):
    _, _, processor = family
    model = fresh_model(family)
    components = find_components(model)
    trained = setup_finetuning(model, components, FinetuneConfig(train_projector=bool(components.projector)))
    training, _ = collators(model, processor)
    batch = training([conversation(["yes"]), conversation(["no"])])
    loss = trained(**batch).loss
    loss.backward()
    for name, parameter in trained.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name
    trained.zero_grad()
    assert torch.isfinite(loss)
