"""Per-family knowledge that the generic path cannot derive from the model and processor.

Most families need nothing here: labels come from the chat template, components from module
names, and batching from the processor. A family gets a `Family` entry only for what differs,
such as explicit component paths or a prompt format without a chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    """Readable family name, as used in the README's support table."""

    model_types: tuple[str, ...]
    """transformers `config.model_type` values that belong to the family."""

    components: dict[str, tuple[str, ...]] | None = None
    """Explicit module paths for `vision`, `projector` and `language_model`; None: found by name."""

    chat_template: bool = True
    """Whether conversations are rendered with the processor's chat template. False for families
    whose processor takes a prompt and a target directly (PaliGemma's prefix and suffix)."""

    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for every processor call."""

    video_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for processor calls on batches that hold a video."""

    fixed_video_frames: bool = False
    """Whether every video gets exactly `video_max_frames` frames. True for families whose
    processor or model stacks a batch's videos into one tensor, because that needs equal frame
    counts. Their reference preprocessing samples a fixed number of frames too."""

    mixes_images_and_videos: bool = True
    """Whether one processor call may contain both images and videos. False where the video frames
    replace the images' pixel values in the processor's output."""

    replacement_offsets: bool = True
    """Whether the processor can return `text_replacement_offsets`. False for processors that
    convert every output to tensors (InternVL's), where requesting them fails; the training collator
    then maps labels by aligning token ids instead."""


FAMILIES: list[Family] = [
    # PaliGemma 1 and 2 share the model_type; the processor builds the prompt from a prefix and a
    # suffix and marks the suffix with token_type_ids, so no chat template is involved.
    Family(name="PaliGemma", model_types=("paligemma",), chat_template=False),
    # InternVL's processor converts every output to tensors, which breaks the text replacement
    # offsets, so labels come from aligning the expanded tokens with the rendered text instead.
    # Its processor also stacks a batch's videos into one tensor, so all need the same frame count.
    Family(name="InternVL", model_types=("internvl",), replacement_offsets=False, fixed_video_frames=True),
    # The model takes a batch's videos as one (videos, frames, ...) tensor.
    Family(name="LLaVA-OneVision", model_types=("llava_onevision",), fixed_video_frames=True),
    # The processor returns video frames under `pixel_values`, the key its images use, so a batch
    # contains images or videos but not both.
    Family(name="SmolVLM", model_types=("smolvlm",), mixes_images_and_videos=False),
    # The Qwen-VL video processors can cap each frame's pixels so that a whole video fits the model's
    # token budget, as the reference preprocessing that these models were trained with does. The
    # transformers default still leaves frames uncapped (and warns), so the cap is asked for.
    Family(
        name="Qwen-VL",
        model_types=("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"),
        video_kwargs={"cap_pixels_per_frame": True},
    ),
]
"""Registered families; a model_type not listed uses the generic path."""


def family_for(model_type: str | None) -> Family | None:
    """Return the registered family of a model_type, or None for the generic path."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None
