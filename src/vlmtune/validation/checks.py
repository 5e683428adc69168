"""Checking one sample: decode its images and videos, encode it as training would, count its tokens.

Token counts come from the processor's real output. Image tokens are the positions of `input_ids`
equal to the image token id or the video token id (a video's frames count as images). Text tokens
are all other non-padding positions, so an image's wrapper tokens, such as row and column markers
or a video's frame timestamps, count as text.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.data.errors import DataError, counted
from vlmtune.data.images import ImageOptions, load_image
from vlmtune.data.schema import Sample
from vlmtune.data.videos import load_video


@dataclass
class SampleResult:
    """Validation outcome of one sample, as plain data that can be cached and sent between processes."""

    source: str
    format: str
    num_images: int
    num_videos: int = 0
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


def video_token_id(processor: Any, model_config: Any = None) -> int | None:
    """Return the id of the token that a video's features replace, or None for image-only models."""
    token_id = getattr(processor, "video_token_id", None)
    if token_id is None and getattr(processor, "video_token", None):
        tokenizer = getattr(processor, "tokenizer", processor)
        # SmolVLM's processor names a `<video>` token that its vocabulary lacks, because it expands
        # videos into image tokens. The lookup then returns the unknown token's id, which is no video token.
        if processor.video_token in tokenizer.get_vocab():
            token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
    if token_id is None and model_config is not None:
        token_id = getattr(model_config, "video_token_id", None) or getattr(model_config, "video_token_index", None)
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

    video_token_id: int | None = None
    video_token: str | None = None
    """The text form of the video token, checked like `image_token`."""


def check_sample(sample: Sample, settings: CheckSettings) -> SampleResult:
    """Validate one sample and count its tokens.

    Data problems (a `DataError`, or a ValueError, TypeError or RuntimeError from the processor) are
    returned in the result instead of raised, so one bad sample does not stop the pass.
    """
    result = SampleResult(
        source=sample.source, format=sample.format, num_images=len(sample.images), num_videos=len(sample.videos)
    )
    try:
        _check_literal_placeholders(sample, settings.image_token, "image", len(sample.images))
        _check_literal_placeholders(sample, settings.video_token, "video", len(sample.videos))
        images = [load_image(image, sample.source, settings.image_options) for image in sample.images]
        videos = [load_video(video, sample.source, settings.image_options) for video in sample.videos]
        batch = settings.collator([dataclasses.replace(sample, images=images, videos=videos)])
    except DataError as error:
        return _with_problem(result, error.kind, _without_location(error, sample.source))
    except (ValueError, TypeError, RuntimeError) as error:
        # The processor's own checks (for instance an image count that its template cannot place).
        return _with_problem(result, "invalid_record", f"the processor rejected the sample ({error}).")

    total = int(batch["attention_mask"][0].sum())
    image = 0
    for token_id in {settings.image_token_id, settings.video_token_id} - {None}:
        image += int((batch["input_ids"][0] == token_id).sum())
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


def _check_literal_placeholders(sample: Sample, token: str | None, kind: str, count: int) -> None:
    if not token:
        return
    typed = sum(
        part["text"].count(token)
        for message in sample.messages
        for part in message["content"]
        if part["type"] == "text"
    )
    if typed:
        raise DataError(
            sample.source,
            f"the text contains the {kind} token {token} {counted(typed, 'time')} besides its "
            f"{counted(count, kind + ' part')}, so the processor would expect more {kind}s than the sample has.",
            f"Remove the token from the text and mark each {kind} with {'an' if kind == 'image' else 'a'} {kind} part.",
            kind="placeholder_mismatch",
        )


def _without_location(error: DataError, source: str) -> str:
    message = str(error)
    return message.removeprefix(f"{source}: ") if message.startswith(f"{source}: ") else message


def _with_problem(result: SampleResult, kind: str, problem: str) -> SampleResult:
    result.kind = kind
    result.problem = problem
    return result
