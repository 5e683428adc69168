"""Contract checks on labels and batches: what is supervised, image-token expansion, padding.

Every check runs on every fixture. A real forward pass proves that the processor's image tokens
match the features the model computes for them.
"""

from __future__ import annotations

import pytest
import torch

from tests.families.contract_support import FAMILY_PARAMS, load_family, sample, text_only_sample
from tests.families.test_contract import collators, supervised_text
from vlmtune.collation.collator import per_token_keys
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.data.errors import DataError


@pytest.fixture(scope="module", **FAMILY_PARAMS)
def family(request, tmp_path_factory):
    return load_family(request, tmp_path_factory)


def supervised_ids(batch, row: int) -> list[int]:
    labels = batch["labels"][row]
    return labels[labels != IGNORE_INDEX].tolist()


def forward_loss(model, batch) -> torch.Tensor:
    with torch.no_grad():
        loss = model(**batch).loss
    assert torch.isfinite(loss)
    return loss


def end_of_turn_id(processor, spec) -> int:
    return processor.tokenizer.convert_tokens_to_ids(spec.end_of_turn)


def test_single_turn_label_span(family):
    spec, model, processor = family
    training, _ = collators(model, processor)
    batch = training([sample(["yes"])])
    ids = supervised_ids(batch, 0)
    assert ids[-1] == end_of_turn_id(processor, spec)
    assert processor.tokenizer.decode(ids[:-1]).strip() == "yes"
    # Supervised positions form one contiguous run that ends with the end-of-turn token.
    positions = (batch["labels"][0] != IGNORE_INDEX).nonzero().flatten().tolist()
    assert positions == list(range(positions[0], positions[0] + len(ids)))


def test_multi_turn_without_system(family):
    spec, model, processor = family
    if not spec.supports_multi_turn:
        pytest.skip("one prompt and one answer per sample")
    training, _ = collators(model, processor)
    batch = training([sample(["red", "blue", "green"])])
    supervised = supervised_text(processor, batch, 0).replace(" ", "")
    assert supervised == "".join(f"{answer}{spec.end_of_turn}" for answer in ("red", "blue", "green"))
    assert (batch["labels"][0] != IGNORE_INDEX).sum() == len(supervised_ids(batch, 0))
    assert supervised_ids(batch, 0).count(end_of_turn_id(processor, spec)) == 3


def test_single_turn_with_system(family):
    spec, model, processor = family
    if not spec.supports_system:
        pytest.skip(spec.notes.get("system", "no system role"))
    training, _ = collators(model, processor)
    batch = training([sample(["no"], system="You are terse.")])
    assert supervised_text(processor, batch, 0).strip() == f"no{spec.end_of_turn}"


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_image_sizes_run_forward(family, index):
    spec, model, processor = family
    if index >= len(spec.image_sizes):
        pytest.skip("the fixture lists fewer image sizes")
    width, height = spec.image_sizes[index]
    training, _ = collators(model, processor)
    batch = training([sample(["yes"], sizes=((width, height),))])
    assert supervised_text(processor, batch, 0).strip() == f"yes{spec.end_of_turn}"
    image_token_id = model.config.image_token_id
    image_positions = batch["input_ids"] == image_token_id
    assert image_positions.any()
    assert (batch["labels"][image_positions] == IGNORE_INDEX).all()
    forward_loss(model, batch)


def test_multi_image_sample_runs_forward(family):
    spec, model, processor = family
    if not spec.supports_multi_image:
        pytest.skip(spec.notes.get("multi_image", "one image per sample"))
    sizes = spec.image_sizes[:2]
    training, _ = collators(model, processor)
    two = training([sample(["yes"], sizes=sizes)])
    one = training([sample(["yes"], sizes=sizes[:1])])
    assert supervised_text(processor, two, 0).strip() == f"yes{spec.end_of_turn}"
    image_token_id = model.config.image_token_id
    two_count = int((two["input_ids"] == image_token_id).sum())
    one_count = int((one["input_ids"] == image_token_id).sum())
    if spec.multi_image_layout:
        assert two_count > 0
    else:
        # The second image adds its own image tokens (Mllama: one <|image|> token per image).
        assert two_count > one_count
    forward_loss(model, two)


def test_mixed_text_only_batch(family):
    spec, model, processor = family
    if not spec.supports_text_only:
        pytest.skip(spec.notes.get("text_only", "every sample needs an image"))
    training, _ = collators(model, processor)
    text_only = text_only_sample("fine")
    # A text-only sample first is the case processors trip over; the collator may reorder rows.
    batch = training([text_only, sample(["yes"]), text_only])
    has_image = (batch["input_ids"] == model.config.image_token_id).any(dim=1).tolist()
    assert sorted(has_image) == [False, False, True]
    for row, with_image in enumerate(has_image):
        answer = "yes" if with_image else "fine"
        assert supervised_text(processor, batch, row).strip() == f"{answer}{spec.end_of_turn}"
    forward_loss(model, batch)


def _check_padding(batch, pad_rows: list[int], side: str) -> None:
    shape = tuple(batch["input_ids"].shape)
    keys = per_token_keys(batch)
    assert {"input_ids", "attention_mask"} <= set(keys)
    for key in keys:
        assert tuple(batch[key].shape[:2]) == shape, key
    for row in pad_rows:
        mask = batch["attention_mask"][row]
        assert (mask == 0).any(), "the row was expected to be padded"
        padded = mask == 0
        real = mask.nonzero().flatten()
        if side == "right":
            assert not padded[: real[-1] + 1].any()
        else:
            assert not padded[real[0] :].any()
        for key in keys:
            if key in ("input_ids", "attention_mask", "labels"):
                continue
            # Per-token extras (token_type_ids, mm_token_type_ids, cross_attention_mask) are zero on padding.
            assert (batch[key][row][padded] == 0).all(), key
        if "labels" in batch:
            assert (batch["labels"][row][padded] == IGNORE_INDEX).all()


def test_per_token_tensors_padded_together(family):
    spec, model, processor = family
    training, generation = collators(model, processor)
    long_answer = "The answer is 0 1 2 3 4 5 6 7 8 9"
    samples = [sample(["a"], seed=1), sample([long_answer], seed=2)]
    batch = training(samples)
    _check_padding(batch, [0], "right")
    assert supervised_text(processor, batch, 1).strip() == f"{long_answer}{spec.end_of_turn}"
    forward_loss(model, batch)

    prompts = generation([sample(["a"], seed=1), sample(["b"], sizes=spec.image_sizes[:2], seed=3)])
    assert "labels" not in prompts
    if (prompts["attention_mask"] == 0).any():
        short = int(prompts["attention_mask"].sum(dim=1).argmin())
        _check_padding(prompts, [short], "left")


def test_token_type_ids_marking(family):
    spec, model, processor = family
    training, _ = collators(model, processor)
    batch = training([sample(["yes"], seed=4), sample(["The answer is 7"], seed=5)])
    if "token_type_ids" not in batch:
        pytest.skip("the processor returns no token_type_ids")
    token_types = batch["token_type_ids"]
    if spec.name.startswith("paligemma"):
        # Prefix-LM: 1 exactly on the suffix (answer plus eos), which is also what is supervised.
        assert torch.equal(token_types == 1, batch["labels"] != IGNORE_INDEX)
    else:
        # Multimodal token types: 1 exactly on image tokens.
        assert torch.equal(token_types == 1, batch["input_ids"] == model.config.image_token_id)


def test_long_sample_rejected_not_truncated(family):
    _, model, processor = family
    training, _ = collators(model, processor)
    length = int(training([sample(["yes"])])["attention_mask"].sum())
    training.max_length = length
    assert int(training([sample(["yes"])])["attention_mask"].sum()) == length
    training.max_length = length - 1
    with pytest.raises(DataError, match="max_length"):
        training([sample(["yes"])])
