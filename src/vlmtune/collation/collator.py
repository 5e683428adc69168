"""Batch collators for training (with label masks) and for generation (prompts only).

The processor is called on the whole batch, so each family's processor batches its own image
and video tensors (pixel_values, image_grid_thw, pixel_values_videos, video_grid_thw, ...) and pads
every per-token tensor it returns (attention_mask, token_type_ids, mm_token_type_ids, ...) together
with input_ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
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
from vlmtune.data.images import DEFAULT_OPTIONS
from vlmtune.data.schema import DecodedVideo, Sample, VideoSource
from vlmtune.data.videos import as_decoded


def stop_token_ids(generation_config: Any, tokenizer: Any) -> list[int]:
    """Return the ids that end a model turn: the generation config's eos ids, then the tokenizer's eos."""
    ids: list[int] = []
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is not None:
        ids.extend(eos if isinstance(eos, list | tuple) else [eos])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def stop_strings(processor: Any, generation_config: Any = None) -> list[str]:
    """Return the text of every token that ends a model turn, from the generation config and tokenizer."""
    tokenizer = getattr(processor, "tokenizer", processor)
    strings = []
    for token_id in stop_token_ids(generation_config, tokenizer):
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


def images_first(samples: list[Sample]) -> list[Sample]:
    """Reorder a batch so that samples with images or videos come first, keeping the order otherwise.

    Some processors fail on a batch whose first sample has no image: Mllama's image processor
    reads the first sample's first image, and Idefics3 then fails to batch its replacement offsets.
    Row order within a batch does not change the loss.
    """
    return sorted(samples, key=lambda sample: not sample.has_media())


def takes_video(processor: Any) -> bool:
    """Return whether the processor expands video placeholders (it has a video processor and token)."""
    return getattr(processor, "video_processor", None) is not None and bool(getattr(processor, "video_token", None))


def decoded_videos(sample: Sample, videos: list[VideoSource | DecodedVideo]) -> list[DecodedVideo]:
    """Decode the videos that the dataset has not decoded yet (samples built in memory)."""
    options = sample.image_options or DEFAULT_OPTIONS
    return [as_decoded(video, sample.source, options) for video in videos]


def zero_padding(batch: dict[str, Any]) -> None:
    """Zero the cross-attention mask on padding, which Mllama's processor leaves open to the images."""
    mask = batch.get("cross_attention_mask")
    if isinstance(mask, torch.Tensor) and "attention_mask" in batch:
        padding = batch["attention_mask"] == 0
        mask[padding] = 0


# Per-image tensors that Mllama's image processor returns only for the samples that have images.
_PER_IMAGE_ROW_KEYS = ("aspect_ratio_ids", "aspect_ratio_mask")


def fill_text_only_rows(batch: dict[str, Any], images: list[list[Any]]) -> None:
    """Give text-only samples their own zero rows in per-image tensors that skip them.

    Mllama's `pixel_values` has a row per sample but its aspect-ratio tensors have rows only for
    samples with images. Zero is the padding aspect-ratio id, and a text-only row's cross-attention
    mask is all zero, so the filled rows never reach the language model.
    """
    rows = [index for index, sample_images in enumerate(images) if sample_images]
    for key in _PER_IMAGE_ROW_KEYS:
        value = batch.get(key)
        if isinstance(value, torch.Tensor) and value.shape[0] == len(rows) < len(images):
            full = value.new_zeros((len(images), *value.shape[1:]))
            full[rows] = value
            batch[key] = full


def with_frame_count(video: DecodedVideo, count: int) -> DecodedVideo:
    """Return the video with exactly `count` frames, evenly spaced; a shorter video repeats frames."""
    total = len(video.frames)
    if total == count:
        return video
    picks = np.linspace(0, total - 1, count).round().astype(int)
    indices = video.metadata.get("frames_indices") or list(range(total))
    metadata = {**video.metadata, "frames_indices": [int(indices[pick]) for pick in picks]}
    return DecodedVideo(frames=video.frames[picks], metadata=metadata)


@dataclass(frozen=True)
class VideoHandling:
    """Video settings that a family needs on top of its processor's defaults (see `Family`)."""

    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    fixed_frames: bool = False
    mixes_with_images: bool = True

    @classmethod
    def for_family(cls, family: Any) -> VideoHandling:
        if family is None:
            return cls()
        return cls(family.video_kwargs, family.fixed_video_frames, family.mixes_images_and_videos)


class _ProcessorCaller:
    def __init__(self, processor: Any, video: VideoHandling | None = None):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.video = video or VideoHandling()

    def render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def add_special_tokens(self, texts: list[str]) -> bool:
        bos = self.tokenizer.bos_token
        # A chat template that writes the BOS token itself must not get a second one from the tokenizer.
        return not (bos and all(text.startswith(bos) for text in texts))

    def video_inputs(self, samples: list[Sample], videos: list[list[Any]]) -> dict[str, Any]:
        """Return the processor arguments for the batch's videos, or nothing when it has none.

        Frames are already sampled (at the configured rate, up to the frame limit), so the video
        processor must not sample again. The metadata gives each frame's time in the video.
        """
        if not any(videos):
            return {}
        source = next(sample.source for sample, listed in zip(samples, videos, strict=True) if listed)
        name = type(self.processor).__name__
        if not takes_video(self.processor):
            raise DataError(
                source,
                f"the sample has a video but this model's processor ({name}) takes no video.",
                "Remove video samples, give the video as images, or pick a model whose processor accepts video.",
                kind="invalid_record",
            )
        if not self.video.mixes_with_images:
            both = next((s for s, listed in zip(samples, videos, strict=True) if listed and s.images), None)
            if both is not None:
                raise DataError(
                    both.source,
                    f"the sample has both an image and a video, which this model's processor ({name}) cannot "
                    "take together.",
                    "Split it into an image sample and a video sample, or give the video as images.",
                    kind="invalid_record",
                )
            if any(sample.images for sample in samples):
                raise DataError(
                    source,
                    f"this model's processor ({name}) cannot take images and videos in one batch, and this video "
                    "shares its batch with an image.",
                    "Use a batch size of 1 for data that mixes image and video samples (--batch-size, and "
                    "--eval-batch-size in training), or keep images and videos in separate data files.",
                    kind="invalid_record",
                )
        decoded = []
        for sample, listed in zip(samples, videos, strict=True):
            for video in decoded_videos(sample, listed):
                if self.video.fixed_frames:
                    count = (sample.image_options or DEFAULT_OPTIONS).video_max_frames
                    decoded.append(with_frame_count(video, count))
                else:
                    decoded.append(video)
        return {
            "videos": [video.frames for video in decoded],
            "video_metadata": [video.metadata for video in decoded],
            "do_sample_frames": False,
            **self.video.processor_kwargs,
        }

    def encode(
        self,
        samples: list[Sample],
        texts: list[str],
        images: list[list[Any]],
        videos: list[list[Any]],
        padding_side: str,
        **extra: Any,
    ) -> dict[str, Any]:
        """Run the processor on a batch; images=None when no sample in the batch has one."""
        has_images = any(images)
        batch = self.processor(
            text=texts,
            images=images if has_images else None,
            padding=True,
            padding_side=padding_side,
            add_special_tokens=self.add_special_tokens(texts),
            return_tensors="pt",
            **self.video_inputs(samples, videos),
            **extra,
        )
        zero_padding(batch)
        if has_images:
            fill_text_only_rows(batch, images)
        return batch


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
        video: VideoHandling | None = None,
    ):
        super().__init__(processor, video)
        self.stop_strings = list(stop_strings)
        self.max_length = max_length
        # Without the processor's text_replacement_offsets, label offsets come from aligning the
        # expanded token ids with the rendered text's own tokens.
        self.replacement_offsets = replacement_offsets

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        samples = images_first(samples)
        rendered = []
        for sample in samples:
            try:
                rendered.append(render_supervised(sample.messages, self.render, self.stop_strings, sample.source))
            except LabelError as error:
                raise DataError(sample.source, str(error)) from error

        texts = [item.text for item in rendered]
        extra = {"return_text_replacement_offsets": True} if self.replacement_offsets else {}
        batch = self.encode(
            samples,
            texts,
            [list(sample.images) for sample in samples],
            [list(sample.videos) for sample in samples],
            padding_side="right",
            return_offsets_mapping=True,
            **extra,
        )
        offsets = batch.pop("offset_mapping").tolist()
        replacements = batch.pop("text_replacement_offsets", None)
        # Some processors return the offsets as something other than a list per row, or not at all.
        if not isinstance(replacements, list):
            replacements = None

        labels = []
        for row, (sample, item) in enumerate(zip(samples, rendered, strict=True)):
            if replacements is not None:
                text_offsets = map_expanded_offsets(offsets[row], replacements[row])
            else:
                text_offsets = self._aligned_offsets(batch["input_ids"][row].tolist(), item.text)
            row_labels = token_labels(batch["input_ids"][row].tolist(), text_offsets, item.spans)
            length = int(batch["attention_mask"][row].sum())
            if length > self.max_length:
                raise DataError(
                    sample.source,
                    f"the sample is {length} tokens long (images included), over max_length={self.max_length}.",
                    "Raise --max-length, shrink the images or shorten the conversation.",
                    kind="too_long",
                )
            if all(label == IGNORE_INDEX for label in row_labels):
                raise DataError(
                    sample.source, "no assistant token is supervised after tokenization.", kind="no_supervised_token"
                )
            labels.append(row_labels)

        batch["labels"] = torch.tensor(labels, dtype=torch.long)
        return dict(batch)

    def _aligned_offsets(self, input_ids: list[int], text: str) -> list[tuple[int, int] | None]:
        """Return text offsets for a processor that does not report where it expanded placeholders.

        Such processors (Mllama's, with its own `__call__`) get their tokens aligned with the
        rendered text's own tokenization instead.
        """
        bos = self.tokenizer.bos_token
        plain = self.tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)), return_offsets_mapping=True)
        return align_offsets(input_ids, plain["input_ids"], plain["offset_mapping"])


class GenerationCollator(_ProcessorCaller):
    """Render each sample's prompt (everything before its last answer) with the generation prompt.

    Padding is on the left, so every row's generated tokens start at the same position.
    NOTE: rows keep the given order, so a caller mixing text-only samples into a batch puts the
    samples with images or videos first (as generate_answers does), which some processors require.
    """

    def __call__(self, samples: list[Sample]) -> dict[str, Any]:
        texts = [self.render(sample.prompt_messages(), True) for sample in samples]
        images = [list(sample.prompt_images()) for sample in samples]
        videos = [list(sample.prompt_videos()) for sample in samples]
        return dict(self.encode(samples, texts, images, videos, padding_side="left"))
