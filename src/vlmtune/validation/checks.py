"""Checking one sample: decode its images, encode it as training would, count its tokens.

Token counts come from the processor's real output. Image tokens are the positions of `input_ids`
equal to the image token id. Text tokens are all other non-padding positions, so an image's wrapper
tokens, such as row and column markers, count as text.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.data.errors import DataError
from vlmtune.data.images import ImageOptions, load_image
from vlmtune.data.schema import Sample


@dataclass
class SampleResult:
    """Validation outcome of one sample, as plain data that can be cached and sent between processes."""

    source: str
    format: str
    num_images: int
    text_tokens: int | None = None
    image_tokens: int | None = None
    supervised_tokens: int | None = None
    kind: str | None = None
    """Problem category (see PROBLEM_KINDS), None for a usable sample."""

    problem: str | None = None
    """The problem without the sample's location, so a cached result fits a renamed file."""

    @property
    def total_tokens(self) -> int | None:
        if self.text_tokens is None or self.image_tokens is None:
            return None
        return self.text_tokens + self.image_tokens

    @property
    def message(self) -> str:
        return f"{self.source}: {self.problem}"


def image_token_id(processor: Any, model_config: Any = None) -> int | None:
    """Return the id of the token that each image's features replace, from the processor or model config."""
    token_id = getattr(processor, "image_token_id", None)
    if token_id is None and getattr(processor, "image_token", None):
        tokenizer = getattr(processor, "tokenizer", processor)
        token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    if token_id is None and model_config is not None:
        token_id = getattr(model_config, "image_token_id", None) or getattr(model_config, "image_token_index", None)
    return token_id


def measuring_collator(collator: Any) -> Any:
    """Return a copy of a training collator without the length limit, so over-long samples get counted too."""
    measuring = copy.copy(collator)
    measuring.max_length = sys.maxsize
    return measuring


@dataclass(frozen=True)
class CheckSettings:
    collator: Any
    """A training collator from `measuring_collator`."""

    image_options: ImageOptions
    max_length: int
    image_token_id: int | None
    image_token: str | None
    """The text form of the image token; the same string typed in a text part would be expanded
    as an extra image by the processor."""


def check_sample(sample: Sample, settings: CheckSettings) -> SampleResult:
    """Validate one sample and count its tokens.

    Data problems (a `DataError`, or a ValueError, TypeError or RuntimeError from the processor) are
    returned in the result instead of raised, so one bad sample does not stop the pass.
    """
    result = SampleResult(source=sample.source, format=sample.format, num_images=len(sample.images))
    try:
        _check_literal_placeholders(sample, settings.image_token)
        images = [load_image(image, sample.source, settings.image_options) for image in sample.images]
        batch = settings.collator([dataclasses.replace(sample, images=images)])
    except DataError as error:
        return _with_problem(result, error.kind, _without_location(error, sample.source))
    except (ValueError, TypeError, RuntimeError) as error:
        # The processor's own checks (for instance an image count that its template cannot place).
        return _with_problem(result, "invalid_record", f"the processor rejected the sample ({error}).")

    total = int(batch["attention_mask"][0].sum())
    image = 0
    if settings.image_token_id is not None:
        image = int((batch["input_ids"][0] == settings.image_token_id).sum())
    result.image_tokens = image
    result.text_tokens = total - image
    result.supervised_tokens = int((batch["labels"][0] != IGNORE_INDEX).sum())
    if total > settings.max_length:
        return _with_problem(
            result,
            "too_long",
            f"the sample is {total} tokens long ({image} image tokens), over max_length={settings.max_length}; "
            "it is not truncated because that could cut an image's tokens or the answer. Raise --max-length, "
            "lower --max-image-pixels or shorten the conversation.",
        )
    return result


def _check_literal_placeholders(sample: Sample, image_token: str | None) -> None:
    if not image_token:
        return
    typed = sum(
        part["text"].count(image_token)
        for message in sample.messages
        for part in message["content"]
        if part["type"] == "text"
    )
    if typed:
        raise DataError(
            sample.source,
            f"the text contains the image token {image_token} {typed} times besides its {len(sample.images)} "
            "image parts, so the processor would expect more images than the sample has.",
            "Remove the token from the text and mark each image with an image part.",
            kind="placeholder_mismatch",
        )


def _without_location(error: DataError, source: str) -> str:
    message = str(error)
    return message.removeprefix(f"{source}: ") if message.startswith(f"{source}: ") else message


def _with_problem(result: SampleResult, kind: str, problem: str) -> SampleResult:
    result.kind = kind
    result.problem = problem
    return result
