"""Collation: processor outputs batched, labels exact, image tokens and padding never supervised."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from vlmtune.collation.collator import GenerationCollator, TrainingCollator, per_token_keys, stop_strings
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.errors import DataError
from vlmtune.data.jsonl import read_jsonl
from vlmtune.data.schema import Sample
from vlmtune.demo.model import END_OF_UTTERANCE


def supervised_tokens(processor, batch, row: int) -> list[str]:
    labels = batch["labels"][row]
    ids = labels[labels != IGNORE_INDEX].tolist()
    return processor.tokenizer.convert_ids_to_tokens(ids)


def test_training_batch_labels_exact(tiny_processor, digit_jsonl):
    samples = [ConversationDataset(read_jsonl(digit_jsonl))[i] for i in range(3)]
    collator = TrainingCollator(tiny_processor, [END_OF_UTTERANCE], max_length=256)
    batch = collator(samples)

    assert set(batch) >= {"input_ids", "attention_mask", "pixel_values", "labels"}
    assert batch["labels"].shape == batch["input_ids"].shape
    for row, sample in enumerate(samples):
        answer = sample.reference_answer()
        assert supervised_tokens(tiny_processor, batch, row) == [f"Ġ{answer}", END_OF_UTTERANCE]

    image_token_id = tiny_processor.tokenizer.convert_tokens_to_ids("<image>")
    image_positions = batch["input_ids"] == image_token_id
    assert image_positions.sum() == 3 * tiny_processor.image_seq_len
    assert (batch["labels"][image_positions] == IGNORE_INDEX).all()
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_supervised_positions_follow_assistant_prefix(tiny_processor, digit_jsonl):
    sample = ConversationDataset(read_jsonl(digit_jsonl))[0]
    batch = TrainingCollator(tiny_processor, [END_OF_UTTERANCE], max_length=256)([sample])
    tokens = tiny_processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    supervised = (batch["labels"][0] != IGNORE_INDEX).nonzero().flatten().tolist()
    # "...Assistant:" then " 0" and <end_of_utterance>; the trailing newline is not supervised.
    assert tokens[supervised[0] - 1] == ":"
    assert tokens[supervised[-1]] == END_OF_UTTERANCE
    assert supervised == list(range(supervised[0], supervised[0] + 2))
    assert tokens[-1] == "Ċ"


def test_text_only_sample_mixed_with_images(tiny_processor, digit_jsonl):
    image_sample = ConversationDataset(read_jsonl(digit_jsonl))[0]
    text_sample = Sample(
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Say yes."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "yes"}]},
        ],
        source="text-only",
    )
    batch = TrainingCollator(tiny_processor, [END_OF_UTTERANCE], max_length=256)([image_sample, text_sample])
    assert supervised_tokens(tiny_processor, batch, 1)[-1] == END_OF_UTTERANCE
    assert "".join(supervised_tokens(tiny_processor, batch, 1)[:-1]).replace("Ġ", " ") == " yes"


def test_long_sample_rejected(tiny_processor, digit_jsonl):
    sample = ConversationDataset(read_jsonl(digit_jsonl))[0]
    with pytest.raises(DataError, match=r"data\.jsonl:1: the sample is \d+ tokens long .* over max_length=8"):
        TrainingCollator(tiny_processor, [END_OF_UTTERANCE], max_length=8)([sample])


def test_generation_batch_left_padded(tiny_processor, digit_jsonl):
    samples = [ConversationDataset(read_jsonl(digit_jsonl))[i] for i in range(2)]
    samples[1].messages[0]["content"][1]["text"] = "Which digit is shown in this small picture?"
    batch = GenerationCollator(tiny_processor)(samples)
    assert batch["attention_mask"][0, 0] == 0
    assert batch["attention_mask"][:, -1].tolist() == [1, 1]
    text = tiny_processor.tokenizer.decode(batch["input_ids"][0][batch["attention_mask"][0] == 1])
    assert text.endswith("Assistant:")


def test_per_token_keys(tiny_processor, digit_jsonl):
    samples = [ConversationDataset(read_jsonl(digit_jsonl))[i] for i in range(2)]
    batch = TrainingCollator(tiny_processor, [END_OF_UTTERANCE], max_length=256)(samples)
    assert sorted(per_token_keys(batch)) == ["attention_mask", "input_ids", "labels"]
    assert isinstance(batch["pixel_values"], torch.Tensor)


def test_stop_strings_from_generation_config(tiny_processor):
    generation_config = GenerationConfig(
        eos_token_id=[tiny_processor.tokenizer.convert_tokens_to_ids(END_OF_UTTERANCE)]
    )
    assert stop_strings(tiny_processor, generation_config) == [END_OF_UTTERANCE]
