"""Label-mask checks every family fixture must pass: exactly the answers plus their end-of-turn tokens.

Each check compares the decoded supervised tokens with the exact expected text, for single- and
multi-turn conversations, with and without a system message, and with a variant of the family's
template that writes the end-of-turn token at the start of the next message instead of after the
answer.
"""

from __future__ import annotations

import pytest
import torch

from tests.families import test_contract as contract
from tests.families.test_contract import collators, conversation, supervised_text, text
from vlmtune.collation.collator import TrainingCollator, stop_strings
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.data.schema import Sample

# The shared module-scoped model fixture; an assignment (not an import) so this module gets its own copy.
family = contract.placeholder_family


def deferred_end_of_turn_template(template: str, end_of_turn: str) -> str:
    """Wrap `template` so the end-of-turn token after an answer appears only when a message follows.

    The rendered text is the family's own, except that a conversation ending with an assistant
    message stops before that answer's end-of-turn token, which is how templates that open each
    message with the previous turn's terminator render it.
    """
    return (
        "{% set rendered %}" + template + "{% endset %}"
        "{% if messages and messages[-1]['role'] == 'assistant' and not add_generation_prompt %}"
        "{{ rendered[:rendered.rfind(" + repr(end_of_turn) + ")] }}"
        "{% else %}{{ rendered }}{% endif %}"
    )


def supervised_turns(processor, batch, row: int) -> list[str]:
    """Decode each contiguous run of supervised tokens in one row; an answer is one run."""
    labels = batch["labels"][row].tolist()
    runs: list[list[int]] = []
    previous = None
    for index, label in enumerate(labels):
        if label == IGNORE_INDEX:
            continue
        if previous is not None and index == previous + 1:
            runs[-1].append(label)
        else:
            runs.append([label])
        previous = index
    return [processor.tokenizer.decode(run, skip_special_tokens=False) for run in runs]


def assert_supervised(processor, batch, row: int, answers: list[str], end_of_turn: str) -> None:
    """Check that exactly each answer plus its end-of-turn token is supervised, nothing before or after.

    One leading space is allowed, for templates that separate the answer from the prompt with a
    space that the tokenizer merges into the answer's first token (`ASSISTANT: red`).
    """
    turns = [turn.removeprefix(" ") for turn in supervised_turns(processor, batch, row)]
    assert turns == [f"{answer}{end_of_turn}" for answer in answers]


def test_single_turn_without_system(family):
    spec, model, processor = family
    training, _ = collators(model, processor)
    batch = training([conversation(["The answer is 7"])])
    assert_supervised(processor, batch, 0, ["The answer is 7"], spec.end_of_turn)


def test_multi_turn_without_system(family):
    spec, model, processor = family
    training, _ = collators(model, processor)
    batch = training([conversation(["red", "a blue square", "no"])])
    assert_supervised(processor, batch, 0, ["red", "a blue square", "no"], spec.end_of_turn)
    assert "Question" not in supervised_text(processor, batch, 0)


def test_single_turn_with_system(family):
    spec, model, processor = family
    if not spec.supports_system:
        pytest.skip(spec.notes.get("system", "no system role"))
    training, _ = collators(model, processor)
    batch = training([conversation(["yes"], system="Be brief.")])
    assert_supervised(processor, batch, 0, ["yes"], spec.end_of_turn)
    assert "brief" not in supervised_text(processor, batch, 0)


def test_each_answer_ends_on_a_stop_token(family):
    """The last supervised token of every answer is one the generation config stops on."""
    _, model, processor = family
    training, _ = collators(model, processor)
    batch = training([conversation(["red", "blue"])])
    labels = batch["labels"][0].tolist()
    supervised = [label != IGNORE_INDEX for label in labels]
    ends = [
        labels[index]
        for index, kept in enumerate(supervised)
        if kept and (index + 1 == len(labels) or not supervised[index + 1])
    ]
    eos = model.generation_config.eos_token_id
    stop_ids = set(eos if isinstance(eos, list) else [eos])
    assert len(ends) == 2
    assert set(ends) <= stop_ids


def test_end_of_turn_deferred_to_next_message(family):
    """A template that writes the terminator only before the next message still supervises it."""
    spec, model, processor = family
    original = processor.chat_template
    processor.chat_template = deferred_end_of_turn_template(original, spec.end_of_turn)
    try:
        final_only = processor.apply_chat_template(
            conversation(["red"]).messages, tokenize=False, add_generation_prompt=False
        )
        assert spec.end_of_turn not in final_only.split("red")[-1]
        training, _ = collators(model, processor)
        batch = training([conversation(["red", "blue"]), conversation(["green"])])
    finally:
        processor.chat_template = original
    assert_supervised(processor, batch, 0, ["red", "blue"], spec.end_of_turn)
    assert_supervised(processor, batch, 1, ["green"], spec.end_of_turn)


def test_text_only_sample_labels(family):
    spec, model, processor = family
    if not spec.supports_text_only:
        pytest.skip(spec.notes.get("text_only", "no text-only samples"))
    training, _ = collators(model, processor)
    sample = Sample(
        messages=[
            {"role": "user", "content": [text("Hello there!")]},
            {"role": "assistant", "content": [text("I am fine")]},
        ]
    )
    batch = training([sample])
    assert_supervised(processor, batch, 0, ["I am fine"], spec.end_of_turn)


def test_token_alignment_fallback_matches_replacement_offsets(family):
    """Labels from aligning token ids (for processors without replacement offsets) equal the default path's."""
    _, model, processor = family
    stops = stop_strings(processor, model.generation_config)
    samples = [conversation(["red", "blue"], system="Be brief."), conversation(["a cat"])]
    aligned = TrainingCollator(processor, stops, max_length=4096, replacement_offsets=False)(samples)
    default = collators(model, processor)[0](samples)
    assert torch.equal(aligned["input_ids"], default["input_ids"])
    assert torch.equal(aligned["labels"], default["labels"])
