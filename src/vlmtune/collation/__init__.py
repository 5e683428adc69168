"""Turning samples into model inputs: chat-template rendering, processor calls and label masks."""

from vlmtune.collation.collator import GenerationCollator, TrainingCollator
from vlmtune.collation.labels import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "GenerationCollator", "TrainingCollator"]
