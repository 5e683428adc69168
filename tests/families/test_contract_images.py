"""Image-token and batching checks every family fixture must pass.

The number of image placeholder tokens in input_ids must equal the processor's own count for that
image size. It must also equal the number of image features the model inserts in a real forward
pass. Both hold for several sizes and aspect ratios, several images per sample, and batches that
mix text-only samples with image samples. Every per-token tensor the processor returns must be padded with
input_ids, so a row in a batch equals the same sample collated alone.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlavaOnevisionProcessor

from tests.families import test_contract as contract
from tests.families.test_contract import collators, conversation, image, supervised_text, text
from vlmtune.collation.collator import per_token_keys
from vlmtune.collation.factory import build_collators
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.data.errors import DataError
from vlmtune.data.schema import Sample

family = contract.placeholder_family


def image_sample(sizes: list[tuple[int, int]], answer: str = "yes", seed: int = 0) -> Sample:
    parts = [{"type": "image"}] * len(sizes)
    return Sample(
        messages=[
            {"role": "user", "content": [*parts, text("What is in the image?")]},
            {"role": "assistant", "content": [text(answer)]},
        ],
        images=[image(width, height, seed=seed + index) for index, (width, height) in enumerate(sizes)],
        source="contract",
    )


def text_sample(answer: str) -> Sample:
    return Sample(
        messages=[
            {"role": "user", "content": [text("Hello there! How are you today?")]},
            {"role": "assistant", "content": [text(answer)]},
        ],
        source="contract",
    )


def processor_token_count(processor, sizes: list[tuple[int, int]]) -> int | None:
    """Return how many image placeholder tokens the processor computes for these (width, height) images.

    None when the processor has no per-size token count (SmolVLM's); the model-side count still applies.
    """
    if not hasattr(processor, "_get_num_multimodal_tokens"):
        return None
    data = processor._get_num_multimodal_tokens(image_sizes=[(height, width) for width, height in sizes])
    counts = list(data["num_image_tokens"])
    extra = extra_tokens_per_image(processor)
    return sum(count - extra for count in counts)


def extra_tokens_per_image(processor) -> int:
    """Begin/end-of-image markers that a processor includes in its per-image token count."""
    # InternVL counts its <img> and </img> markers in num_image_tokens.
    return 2 if hasattr(processor, "start_image_token") and hasattr(processor, "end_image_token") else 0


def assert_processor_count(processor, tokens: int, sizes: list[tuple[int, int]]) -> None:
    expected = processor_token_count(processor, sizes)
    if expected is not None:
        assert tokens == expected, sizes


def forward_counting_features(model, batch) -> tuple[torch.Tensor, int]:
    """Run a forward pass and return (loss, number of image feature vectors the model inserted)."""
    counted = []
    inner = model.model
    original = inner.get_placeholder_mask

    def spy(*args, **kwargs):
        features = kwargs.get("image_features")
        if features is not None:
            counted.append(features.numel() // features.shape[-1])
        return original(*args, **kwargs)

    inner.get_placeholder_mask = spy
    try:
        with torch.no_grad():
            output = model(**batch)
    finally:
        del inner.get_placeholder_mask
    return output.loss, sum(counted)


@pytest.mark.parametrize("size_index", range(4))
def test_image_token_count_matches_processor_and_model(family, size_index):
    spec, model, processor = family
    if size_index >= len(spec.image_sizes):
        pytest.skip("the fixture lists fewer image sizes")
    size = spec.image_sizes[size_index]
    training, _ = collators(model, processor)
    batch = training([image_sample([size])])
    tokens = int((batch["input_ids"] == model.config.image_token_id).sum())
    loss, features = forward_counting_features(model, batch)
    assert_processor_count(processor, tokens, [size])
    assert features == tokens
    assert torch.isfinite(loss)
    if "image_grid_thw" in batch:
        # Qwen: one row of pixel_values per patch, and merge_size**2 patches per token.
        patches = int(batch["image_grid_thw"].prod(-1).sum())
        assert batch["pixel_values"].shape[0] == patches
        assert tokens == patches // processor.image_processor.merge_size**2


def test_image_tokens_cover_several_aspect_ratios(family):
    """Different aspect ratios in one batch: each row's token count follows its own image size."""
    spec, model, processor = family
    training, _ = collators(model, processor)
    sizes = list(spec.image_sizes)
    batch = training([image_sample([size], seed=index) for index, size in enumerate(sizes)])
    for row, size in enumerate(sizes):
        tokens = int((batch["input_ids"][row] == model.config.image_token_id).sum())
        assert_processor_count(processor, tokens, [size])
    if "image_sizes" in batch:
        # LLaVA-NeXT and OneVision unpad each image's features by its original (height, width).
        assert batch["image_sizes"].tolist() == [[height, width] for width, height in sizes]
    _, features = forward_counting_features(model, batch)
    assert features == int((batch["input_ids"] == model.config.image_token_id).sum())


def test_placeholder_mismatch_is_rejected_by_the_model(family):
    """The forward pass is a real check: one image token fewer than the features raises."""
    spec, model, processor = family
    training, _ = collators(model, processor)
    batch = training([image_sample([spec.image_sizes[0]])])
    positions = (batch["input_ids"][0] == model.config.image_token_id).nonzero().flatten()
    batch["input_ids"][0, positions[0]] = processor.tokenizer.pad_token_id
    with pytest.raises(ValueError, match="do not match"):
        forward_counting_features(model, batch)


def test_multi_image_sample(family):
    spec, model, processor = family
    if not spec.supports_multi_image:
        pytest.skip(spec.notes.get("multi_image", "one image per sample"))
    sizes = list(spec.image_sizes[:2])
    training, _ = collators(model, processor)
    batch = training([image_sample(sizes, answer="two"), image_sample([sizes[1]], answer="one", seed=5)])
    tokens = int((batch["input_ids"][0] == model.config.image_token_id).sum())
    if isinstance(processor, LlavaOnevisionProcessor):
        # OneVision encodes each image of a multi-image sample as one untiled base tile plus a newline.
        assert tokens == len(sizes) * (processor.num_image_tokens + 1)
    else:
        assert_processor_count(processor, tokens, sizes)
    loss, features = forward_counting_features(model, batch)
    assert features == int((batch["input_ids"] == model.config.image_token_id).sum())
    assert torch.isfinite(loss)
    assert supervised_text(processor, batch, 0).removeprefix(" ") == f"two{spec.end_of_turn}"
    assert supervised_text(processor, batch, 1).removeprefix(" ") == f"one{spec.end_of_turn}"


def test_mixed_text_only_and_image_batch(family):
    spec, model, processor = family
    if not spec.supports_text_only:
        pytest.skip(spec.notes.get("text_only", "no text-only samples"))
    training, generation = collators(model, processor)
    samples = [text_sample("fine"), image_sample([spec.image_sizes[0]], answer="a cat"), text_sample("thank you")]
    batch = training(samples)
    # The training collator puts samples with images first (some processors need that), so the
    # rows are: the image sample, then the text-only samples in their original order.
    assert int((batch["input_ids"][1] == model.config.image_token_id).sum()) == 0
    assert int((batch["input_ids"][2] == model.config.image_token_id).sum()) == 0
    image_row_tokens = int((batch["input_ids"][0] == model.config.image_token_id).sum())
    assert image_row_tokens > 0
    assert_processor_count(processor, image_row_tokens, [spec.image_sizes[0]])
    loss, features = forward_counting_features(model, batch)
    assert torch.isfinite(loss)
    assert features == int((batch["input_ids"] == model.config.image_token_id).sum())
    for row, answer in ((0, "a cat"), (1, "fine"), (2, "thank you")):
        assert supervised_text(processor, batch, row).removeprefix(" ") == f"{answer}{spec.end_of_turn}"

    prompts = generation(samples)
    with torch.no_grad():
        output = model.generate(**prompts, max_new_tokens=2, do_sample=False)
    assert output.shape[0] == 3


def test_only_text_only_batch(family):
    """A batch with no image at all reaches the model without image inputs."""
    spec, model, processor = family
    if not spec.supports_text_only:
        pytest.skip(spec.notes.get("text_only", "no text-only samples"))
    training, _ = collators(model, processor)
    batch = training([text_sample("fine"), text_sample("yes")])
    assert "pixel_values" not in batch
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_per_token_tensors_are_padded_with_input_ids(family):
    """Every per-token tensor of a padded batch equals the sample's own tensor, then padding."""
    spec, model, processor = family
    training, _ = collators(model, processor)
    samples = [conversation(["a"]), conversation(["a longer answer", "and a second turn"], images=1)]
    if spec.supports_text_only:
        samples.append(text_sample("fine"))
    batch = training(samples)
    keys = per_token_keys(batch)
    assert {"input_ids", "attention_mask", "labels"} <= set(keys)
    for row, sample in enumerate(samples):
        alone = training([sample])
        length = alone["input_ids"].shape[1]
        for key in keys:
            assert key in alone, key
            assert torch.equal(batch[key][row, :length], alone[key][0]), key
        padding = batch["attention_mask"][row, length:]
        assert (padding == 0).all()
        assert (batch["labels"][row, length:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, length:] == processor.tokenizer.pad_token_id).all()


def test_generation_batch_is_left_padded(family):
    _, model, processor = family
    _, generation = collators(model, processor)
    samples = [conversation(["a"]), conversation(["a", "b"])]
    prompts = generation(samples)
    assert (prompts["attention_mask"][:, -1] == 1).all()
    assert "labels" not in prompts
    with torch.no_grad():
        output = model.generate(**prompts, max_new_tokens=3, do_sample=False)
    assert output.shape[1] <= prompts["input_ids"].shape[1] + 3
    assert torch.equal(output[:, : prompts["input_ids"].shape[1]], prompts["input_ids"])


def test_padded_rows_match_unpadded_logits(family):
    """Right padding changes nothing for the real tokens: position ids (Qwen's 3-D mRoPE included)
    and attention masks must make each row's logits equal those of the sample alone."""
    spec, model, processor = family
    training, _ = collators(model, processor)
    samples = [conversation(["a"]), image_sample([spec.image_sizes[-1]], answer="a much longer answer here")]
    if spec.supports_text_only:
        samples.append(text_sample("fine"))
    batch = training(samples)
    with torch.no_grad():
        logits = model(**batch).logits
        for row, sample in enumerate(samples):
            alone = training([sample])
            length = alone["input_ids"].shape[1]
            expected = model(**alone).logits[0]
            torch.testing.assert_close(logits[row, :length], expected, atol=1e-4, rtol=1e-4)


def test_left_padded_generation_matches_single_prompts(family):
    """Greedy generation for a left-padded batch equals generating each prompt alone."""
    spec, model, processor = family
    _, generation = collators(model, processor)
    samples = [conversation(["a"]), image_sample([spec.image_sizes[-1]]), conversation(["a", "b"])]
    if spec.supports_text_only:
        samples.insert(1, text_sample("fine"))
    prompts = generation(samples)
    with torch.no_grad():
        batched = model.generate(**prompts, max_new_tokens=4, do_sample=False)
        for row, sample in enumerate(samples):
            alone = generation([sample])
            single = model.generate(**alone, max_new_tokens=4, do_sample=False)
            new_tokens = single[0, alone["input_ids"].shape[1] :]
            batched_new = batched[row, prompts["input_ids"].shape[1] :][: len(new_tokens)]
            assert torch.equal(batched_new, new_tokens), row


def test_multimodal_token_types_mark_image_tokens(family):
    """mm_token_type_ids (Qwen's input to its 3-D position ids) is 1 exactly at image tokens, 0 at padding."""
    spec, model, processor = family
    training, _ = collators(model, processor)
    samples = [image_sample([spec.image_sizes[0]]), conversation(["a", "b"])]
    batch = training(samples)
    if "mm_token_type_ids" not in batch:
        pytest.skip("the processor returns no mm_token_type_ids")
    assert torch.equal(batch["mm_token_type_ids"] == 1, batch["input_ids"] == model.config.image_token_id)
    assert (batch["mm_token_type_ids"][batch["attention_mask"] == 0] == 0).all()


def test_overlong_sample_is_rejected_not_truncated(family):
    """Truncation could cut an image's tokens, so a sample over max_length raises instead."""
    spec, model, processor = family
    training = build_collators(processor, model.config, model.generation_config, max_length=8)[0]
    with pytest.raises(DataError, match="max_length=8"):
        training([image_sample([spec.image_sizes[0]])])
