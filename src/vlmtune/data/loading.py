"""Resolving the configured data into training and validation samples."""

from __future__ import annotations

import logging
import random

from vlmtune.config import DEMO, DataConfig
from vlmtune.data.errors import DataError
from vlmtune.data.jsonl import read_jsonl
from vlmtune.data.schema import Sample

logger = logging.getLogger(__name__)


def split_validation(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out a deterministic `fraction` of `samples` (same seed and data: same split)."""
    if not 0 < fraction <= 0.5:
        raise ValueError(f"eval_fraction must be in (0, 0.5], got {fraction}.")
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    num_validation = max(1, round(len(samples) * fraction))
    if num_validation >= len(samples):
        raise DataError(
            "data", f"{len(samples)} samples are too few to hold out a validation split.", "Pass --eval-data."
        )
    held_out = set(order[:num_validation])
    train = [sample for index, sample in enumerate(samples) if index not in held_out]
    validation = [sample for index, sample in enumerate(samples) if index in held_out]
    return train, validation


def load_train_and_eval(config: DataConfig, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Read the training data and the validation data (given, or held out from the training data)."""
    if config.data == DEMO:
        from vlmtune.demo.data import write_digits_dataset

        train_path, validation_path = write_digits_dataset()
        train = read_jsonl(train_path)
        validation = read_jsonl(config.eval_data or validation_path, config.image_root if config.eval_data else None)
    else:
        train = read_jsonl(config.data, config.image_root)
        if config.eval_data:
            validation = read_jsonl(config.eval_data, config.image_root)
        else:
            train, validation = split_validation(train, config.eval_fraction, seed)

    if config.max_train_samples is not None:
        train = train[: config.max_train_samples]
    logger.info("Data: %d training samples, %d validation samples", len(train), len(validation))
    return train, validation
