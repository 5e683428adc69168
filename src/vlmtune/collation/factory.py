"""Choosing the collators for a model: the chat-template path, or a family's own."""

from __future__ import annotations

from typing import Any

from vlmtune.collation.collator import GenerationCollator, TrainingCollator, VideoHandling, stop_strings
from vlmtune.collation.prefix_suffix import PrefixSuffixGenerationCollator, PrefixSuffixTrainingCollator
from vlmtune.models.families import family_for


def build_collators(processor: Any, model_config: Any, generation_config: Any, max_length: int):
    """Return (training collator, generation collator) for a model's processor and config."""
    family = family_for(getattr(model_config, "model_type", None))
    if family is not None and not family.chat_template:
        kwargs = family.processor_kwargs
        return (
            PrefixSuffixTrainingCollator(processor, max_length, **kwargs),
            PrefixSuffixGenerationCollator(processor, **kwargs),
        )
    stops = stop_strings(processor, generation_config)
    replacement_offsets = family.replacement_offsets if family is not None else True
    video = VideoHandling.for_family(family)
    training = TrainingCollator(processor, stops, max_length, replacement_offsets=replacement_offsets, video=video)
    return training, GenerationCollator(processor, video)
