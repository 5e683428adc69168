"""Batch collators for training (with label masks) and for generation (prompts only).

The processor is called on the whole batch, so each family's processor batches its own image
tensors (pixel_values, image_grid_thw, pixel_attention_mask, ...) and pads every per-token tensor
it returns (attention_mask, token_type_ids, mm_token_type_ids, ...) together with input_ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from vlmtune.collation.labels import (
    IGNORE_INDEX,
    LabelError,
    align_offsets,
    map_expanded_offsets,
    render_supervised,
    token_labels,
)
from vlmtune.data.errors import DataError
from vlmtune.data.schema import Sample


def stop_strings(processor: Any, generation_config: Any = None) -> list[str]:
    """Return the text of every token that ends a model turn, from the generation config and tokenizer."""
    tokenizer = getattr(processor, "tokenizer", processor)
    ids: list[int] = []
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is not None:
        ids.extend(eos if isinstance(eos, list | tuple) else [eos])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    strings = []
    for token_id in dict.fromkeys(ids):
        text = tokenizer.decode([token_id], skip_special_tokens=False)
        if text and text not in strings:
            strings.append(text)
    return strings


def per_token_keys(batch: dict[str, Any]) -> list[str]:
    """Return the batch keys whose tensors have one entry per token (shape [batch, sequence, ...])."""
    shape = batch["input_ids"].shape
    return [
        key
        for key, value in batch.items()
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and tuple(value.shape[:2]) == tuple(shape)
    ]


class _ProcessorCaller:
    def __init__(self, processor: Any):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def add_special_tokens(self, texts: list[str]) -> bool:
        bos = self.tokenizer.bos_token
        # A chat template that writes the BOS token itself must not get a second one from the tokenizer.
        return not (bos and all(text.startswith(bos) for text in texts))

    def encode(self, texts: list[str], images: list[list[Any]], padding_side: str, **extra: Any) -> dict[str, Any]:
        """Run the processor on a batch; images=None when no sample in the batch has one."""
        has_images = any(images)
        return self.processor(
            text=texts,
            images=images if has_images else None,
            padding=True,
            padding_side=padding_side,
            add_special_tokens=self.add_special_tokens(texts),
            return_tensors="pt",
            **extra,
        )


class TrainingCollator(_ProcessorCaller):
    """Render, tokenize and label a batch of samples for the training loss.

    Labels are the token ids at supervised positions and IGNORE_INDEX elsewhere. A sample longer
    than `max_length` tokens raises a `DataError` instead of being truncated, because truncation
    can cut an image's tokens or the answer.
    """

    def __init__(
        self,
        processor: Any,
        stop_strings: Sequence[str],
        max_length: int,
        replacement_offsets: bool = True,
    ):
        super().__init__(processor)
        self.stop_strings = list(stop_strings)
        self.max_length = max_length
        # Without the processor's text_replacement_offsets, label offsets come from aligning the
        # expanded token ids with the rendered text's own tokens.
        self.replacement_offsets = replacement_offsets

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        rendered = []
        for sample in samples:
            try:
                rendered.append(render_supervised(sample.messages, self.render, self.stop_strings, sample.source))
            except LabelError as error:
                raise DataError(sample.source, str(error)) from error

        texts = [item.text for item in rendered]
        extra = {"return_text_replacement_offsets": True} if self.replacement_offsets else {}
        batch = self.encode(
            texts,
            [list(sample.images) for sample in samples],
            padding_side="right",
            return_offsets_mapping=True,
            **extra,
        )
        offsets = batch.pop("offset_mapping").tolist()
        replacements = batch.pop("text_replacement_offsets", None)
        if not isinstance(replacements, list):
            replacements = None
        unexpanded = None
        if replacements is None and "pixel_values" in batch:
            unexpanded = self.tokenizer(
                texts, add_special_tokens=self.add_special_tokens(texts), return_offsets_mapping=True
            )

        labels = []
        for row, (sample, item) in enumerate(zip(samples, rendered, strict=True)):
            if unexpanded is not None:
                text_offsets = align_offsets(
                    batch["input_ids"][row].tolist(),
                    unexpanded["input_ids"][row],
                    unexpanded["offset_mapping"][row],
                )
            else:
                text_offsets = map_expanded_offsets(offsets[row], replacements[row] if replacements else [])
            row_labels = token_labels(batch["input_ids"][row].tolist(), text_offsets, item.spans)
            length = int(batch["attention_mask"][row].sum())
            if length > self.max_length:
                raise DataError(
                    sample.source,
                    f"the sample is {length} tokens long (images included), over max_length={self.max_length}.",
                    "Raise --max-length, shrink the images or shorten the conversation.",
                )
            if all(label == IGNORE_INDEX for label in row_labels):
                raise DataError(sample.source, "no assistant token is supervised after tokenization.")
            labels.append(row_labels)

        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return dict(batch)


class GenerationCollator(_ProcessorCaller):
    """Render each sample's prompt (everything before its last answer) with the generation prompt.

    Padding is on the left, so every row's generated tokens start at the same position.
    """

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        texts = [self.render(sample.prompt_messages(), True) for sample in samples]
        images = [list(sample.prompt_images()) for sample in samples]
        return dict(self.encode(texts, images, padding_side="left"))
