"""Helpers shared by the contract test modules: the per-family fixture and sample builders."""

from __future__ import annotations

import pytest

from tests.families.test_contract import FIXTURES, image, text
from tests.fixtures.families import FamilyFixture
from vlmtune.config import ModelConfig
from vlmtune.data.schema import Sample
from vlmtune.models.loading import load_model, load_processor

FAMILY_PARAMS = {"params": FIXTURES, "ids": [fixture.name for fixture in FIXTURES]}


def load_family(request: pytest.FixtureRequest, tmp_path_factory) -> tuple[FamilyFixture, object, object]:
    """Build the fixture's tiny model into a temporary folder and load it as a user would."""
    spec: FamilyFixture = request.param
    folder = spec.build(tmp_path_factory.mktemp(spec.name))
    config = ModelConfig(model=str(folder), dtype="float32")
    return spec, load_model(config), load_processor(config)


def sample(answers: list[str], sizes=((32, 32),), system: str | None = None, seed: int = 0) -> Sample:
    """A conversation whose first user turn contains one image per entry of `sizes` (width, height)."""
    messages = [{"role": "system", "content": [text(system)]}] if system else []
    for turn, answer in enumerate(answers):
        parts = [{"type": "image"}] * len(sizes) if turn == 0 else []
        messages.append({"role": "user", "content": [*parts, text(f"Question {turn}?")]})
        messages.append({"role": "assistant", "content": [text(answer)]})
    images = [image(width, height, seed=seed + index) for index, (width, height) in enumerate(sizes)]
    return Sample(messages=messages, images=images, source=f"sample-{seed}")


def text_only_sample(answer: str = "fine") -> Sample:
    return Sample(
        messages=[
            {"role": "user", "content": [text("Hello there!")]},
            {"role": "assistant", "content": [text(answer)]},
        ],
        source="text-only",
    )
