"""Choosing the collators for a model: the chat-template path, or a family's own."""

from __future__ import annotations

from typing import Any

from vlmtune.collation.collator import GenerationCollator, TrainingCollator, stop_strings


def build_collators(processor: Any, model_config: Any, generation_config: Any, max_length: int):
    """Return (training collator, generation collator) for a model's processor and config."""
    stops = stop_strings(processor, generation_config)
    return TrainingCollator(processor, stops, max_length), GenerationCollator(processor)
