"""Collators for families whose processor takes a prompt and a target instead of a conversation.

PaliGemma's processor is called with `text=prefix` and `suffix=answer`. It writes the image
tokens, `<bos>`, the prefix and a newline, appends the eos token to the suffix, and returns
`token_type_ids` that are 1 on the suffix tokens. The model needs those ids to attend
bidirectionally over the prefix, and the suffix tokens (answer plus eos) are exactly the ones to
supervise. Such a family supports one user turn followed by one assistant answer per sample.
"""

from __future__ import annotations

from typing import Any

import torch

from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.data.errors import DataError
from vlmtune.data.schema import Sample, count_image_parts, message_text


def prefix_and_suffix(sample: Sample) -> tuple[str, str | None]:
    """Split a sample into its prompt text and its answer (None when the sample ends with a user turn).

    Raises `DataError` naming the sample for anything but one user turn, optionally followed by one
    assistant turn, because a prefix/suffix model has no way to represent other turns.
    """
    roles = [message["role"] for message in sample.messages]
    if roles not in (["user"], ["user", "assistant"]):
        raise DataError(
            sample.source,
            f"this model takes one prompt and one answer per sample (no chat template), but the sample has "
            f"the turns {roles}.",
            "Split multi-turn conversations into single-turn samples and drop system messages.",
        )
    prompt = message_text(sample.messages[0])
    answer = message_text(sample.messages[1]) if len(roles) == 2 else None
    return prompt, answer


class _PrefixSuffixCaller:
    def __init__(self, processor: Any, **processor_kwargs: Any):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.processor_kwargs = processor_kwargs
        self.image_token = getattr(processor, "image_token", "<image>")

    def prompt(self, sample: Sample, text: str) -> str:
        # The processor inserts <bos> after the last image token and a newline after the prompt.
        return self.image_token * count_image_parts(sample.messages[0]) + text

    def encode(self, samples: list[Sample], prompts: list[str], padding_side: str, **extra: Any) -> dict[str, Any]:
        images = [list(sample.images[: count_image_parts(sample.messages[0])]) for sample in samples]
        for sample, sample_images in zip(samples, images, strict=True):
            if sample.videos:
                raise DataError(
                    sample.source,
                    "the sample has a video, but this model takes images only.",
                    "Remove video samples or give the video as images.",
                    kind="invalid_record",
                )
            if not sample_images:
                raise DataError(
                    sample.source,
                    "the sample has no image, but this model needs at least one image in every sample.",
                    "Add an image to the sample or remove it.",
                )
        return dict(
            self.processor(
                text=prompts,
                images=images,
                padding=True,
                padding_side=padding_side,
                return_tensors="pt",
                **self.processor_kwargs,
                **extra,
            )
        )


class PrefixSuffixTrainingCollator(_PrefixSuffixCaller):
    """Encode (prompt, answer) pairs; labels are the answer tokens plus eos, nothing else."""

    def __init__(self, processor: Any, max_length: int, **processor_kwargs: Any):
        super().__init__(processor, **processor_kwargs)
        self.max_length = max_length

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        prompts, answers = [], []
        for sample in samples:
            prompt, answer = prefix_and_suffix(sample)
            if answer is None:
                raise DataError(sample.source, "the sample has no assistant answer to supervise.")
            prompts.append(self.prompt(sample, prompt))
            answers.append(answer)

        batch = self.encode(samples, prompts, padding_side="right", suffix=answers)
        # The processor derives its labels from token_type_ids too. They are rebuilt here so that
        # padding stays unsupervised even if a tokenizer gives pad tokens token type 1.
        batch.pop("labels", None)
        supervised = (batch["token_type_ids"] == 1) & (batch["attention_mask"] == 1)
        batch["labels"] = torch.where(supervised, batch["input_ids"], torch.full_like(batch["input_ids"], IGNORE_INDEX))
        for row, sample in enumerate(samples):
            length = int(batch["attention_mask"][row].sum())
            if length > self.max_length:
                raise DataError(
                    sample.source,
                    f"the sample is {length} tokens long (images included), over max_length={self.max_length}.",
                    "Raise --max-length, shrink the images or shorten the prompt and answer.",
                )
            if not supervised[row].any():
                raise DataError(sample.source, "no answer token is supervised after tokenization.")
        return batch


class PrefixSuffixGenerationCollator(_PrefixSuffixCaller):
    """Encode prompts only, padded on the left so generated tokens start at the same position."""

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        prompts = [self.prompt(sample, prefix_and_suffix(sample)[0]) for sample in samples]
        batch = self.encode(samples, prompts, padding_side="left")
        batch.pop("labels", None)
        return batch
