"""Contract checks on video: labels, video tokens, mixed batches, gradients and generation.

They run on every fixture whose processor takes video. Videos are given as in-memory frames, so
these checks cover the collator and the model; reading video files is tested in test_videos.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.families.contract_support import load_family, sample, text_only_sample
from tests.families.test_contract import FIXTURES, collators, fresh_model, supervised_text, text
from vlmtune.collation.collator import per_token_keys, takes_video
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.config import FinetuneConfig
from vlmtune.data.errors import DataError
from vlmtune.data.schema import Sample, VideoSource
from vlmtune.evaluation.generation import GenerationSettings, generate_answers
from vlmtune.models.components import find_components
from vlmtune.models.finetune import setup_finetuning
from vlmtune.validation.checks import video_token_id

VIDEO_FIXTURES = [fixture for fixture in FIXTURES if fixture.supports_video]
IMAGE_ONLY_FIXTURES = [fixture for fixture in FIXTURES if not fixture.supports_video]


@pytest.fixture(scope="module", params=VIDEO_FIXTURES, ids=[fixture.name for fixture in VIDEO_FIXTURES])
def video_family(request, tmp_path_factory):
    return load_family(request, tmp_path_factory)


def frames(count: int, width: int = 32, height: int = 32, seed: int = 0) -> tuple[Image.Image, ...]:
    rng = np.random.default_rng(seed)
    return tuple(Image.fromarray(rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)) for _ in range(count))


def video_sample(answer: str, count: int = 4, width: int = 32, height: int = 32, seed: int = 0) -> Sample:
    return Sample(
        messages=[
            {"role": "user", "content": [{"type": "video"}, text("What happens?")]},
            {"role": "assistant", "content": [text(answer)]},
        ],
        videos=[VideoSource(frames=frames(count, width, height, seed), fps=2.0)],
        source=f"video-{seed}",
    )


def vision_positions(batch, processor, model) -> torch.Tensor:
    """Positions holding a video's features: its video token, or the image token for families that
    lay out a video as a series of images (InternVL, SmolVLM)."""
    ids = {video_token_id(processor, model.config), getattr(model.config, "image_token_id", None)} - {None}
    return torch.isin(batch["input_ids"], torch.tensor(sorted(ids)))


def test_fixture_video_support_matches_processor(video_family):
    spec, _, processor = video_family
    assert takes_video(processor) == spec.supports_video


def test_video_token_id_is_a_real_token(video_family):
    spec, model, processor = video_family
    token_id = video_token_id(processor, model.config)
    if spec.name == "smolvlm":
        # Its processor names a `<video>` token outside the vocabulary and expands videos into image tokens.
        assert token_id is None
    else:
        assert processor.tokenizer.convert_ids_to_tokens(token_id) == processor.video_token


@pytest.mark.parametrize("spec", IMAGE_ONLY_FIXTURES, ids=[fixture.name for fixture in IMAGE_ONLY_FIXTURES])
def test_image_only_family_rejects_video_by_name(spec, tmp_path):
    from vlmtune.config import ModelConfig
    from vlmtune.models.loading import load_model, load_processor

    folder = spec.build(tmp_path / spec.name)
    config = ModelConfig(model=str(folder), dtype="float32")
    model, processor = load_model(config), load_processor(config)
    assert not takes_video(processor)
    training, _ = collators(model, processor)
    with pytest.raises(DataError) as raised:
        training([video_sample("yes", seed=7)])
    assert str(raised.value).startswith("video-7: the sample has a video")


def test_video_label_span(video_family):
    spec, model, processor = video_family
    training, _ = collators(model, processor)
    batch = training([video_sample("yes")])
    assert supervised_text(processor, batch, 0).strip() == f"yes{spec.end_of_turn}".strip()
    positions = vision_positions(batch, processor, model)
    assert positions.any()
    assert (batch["labels"][positions] == IGNORE_INDEX).all()
    assert "What happens" not in supervised_text(processor, batch, 0)


@pytest.mark.parametrize(("width", "height"), [(32, 32), (48, 24)])
def test_video_tokens_follow_frames_and_run_forward(video_family, width, height):
    spec, model, processor = video_family
    training, _ = collators(model, processor)
    counts = []
    for count in (2, 4):
        batch = training([video_sample("yes", count=count, width=width, height=height)])
        counts.append(int(vision_positions(batch, processor, model).sum()))
        # The model checks that its video features fill exactly the placeholder positions.
        with torch.no_grad():
            assert torch.isfinite(model(**batch).loss)
    if spec.fixed_video_frames:
        # Both videos are resampled to video_max_frames frames.
        assert counts[1] == counts[0] > 0
    else:
        assert counts[1] > counts[0] > 0


def test_videos_of_different_lengths_share_a_batch(video_family):
    _, model, processor = video_family
    training, _ = collators(model, processor)
    batch = training([video_sample("yes", count=2, seed=1), video_sample("no", count=5, seed=2)])
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_mixed_video_image_text_batch(video_family):
    """Each row of a batch mixing a video, an image and a text-only sample encodes as it does alone."""
    spec, model, processor = video_family
    training, _ = collators(model, processor)
    samples = [text_only_sample("fine"), sample(["yes"], seed=3), video_sample("no", seed=5)]
    if not spec.mixes_images_and_videos:
        with pytest.raises(DataError) as raised:
            training(samples)
        assert str(raised.value).startswith("video-5: this model's processor")
        assert "Use a batch size of 1 for data that mixes image and video samples" in str(raised.value)
        both = video_sample("no", seed=6)
        both.images = sample(["yes"], seed=4).images
        both.messages[0]["content"].insert(0, {"type": "image"})
        with pytest.raises(DataError) as raised:
            training([both])
        assert str(raised.value) == (
            "video-6: the sample has both an image and a video, which this model's processor (SmolVLMProcessor) "
            "cannot take together. Split it into an image sample and a video sample, or give the video as images."
        )
        samples = [text_only_sample("fine"), video_sample("no", seed=5)]
        batch = training(samples)
        for row, alone in enumerate([samples[1], samples[0]]):
            single = training([alone])
            unpadded = batch["attention_mask"][row] == 1
            assert batch["labels"][row][unpadded].tolist() == single["labels"][0][: int(unpadded.sum())].tolist()
        return
    batch = training(samples)
    for key in per_token_keys(batch):
        assert batch[key].shape[:2] == batch["input_ids"].shape
    # Rows with media come first, in their given order; the text-only sample is last.
    for row, alone in enumerate([samples[1], samples[2], samples[0]]):
        single = training([alone])
        length = int(single["attention_mask"][0].sum())
        unpadded = batch["attention_mask"][row] == 1
        assert batch["input_ids"][row][unpadded].tolist() == single["input_ids"][0][:length].tolist()
        assert batch["labels"][row][unpadded].tolist() == single["labels"][0][:length].tolist()
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_video_gradients_reach_vision_and_training_lowers_loss(video_family):
    _, _, processor = video_family
    model = fresh_model(video_family)
    components = find_components(model)
    config = FinetuneConfig(method="full", train_vision=True, train_projector=bool(components.projector))
    trained = setup_finetuning(model, components, config)
    training, _ = collators(model, processor)
    batch = training([video_sample("yes", seed=1), video_sample("no", seed=2, count=2)])

    loss = trained(**batch).loss
    loss.backward()
    vision = trained.get_submodule(components.vision[0])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in vision.parameters())

    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-3)
    losses = [loss.item()]
    for _ in range(5):
        optimizer.step()
        optimizer.zero_grad()
        loss = trained(**batch).loss
        loss.backward()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_generation_with_video(video_family):
    _, model, processor = video_family
    _, generation = collators(model, processor)
    prompt = generation([video_sample("yes")])
    assert vision_positions(prompt, processor, model).any()
    settings = GenerationSettings(max_new_tokens=3)
    answers = generate_answers(
        model, processor, [text_only_sample(), video_sample("yes")], batch_size=2, settings=settings
    )
    assert len(answers) == 2
    assert all(isinstance(answer, str) for answer in answers)
