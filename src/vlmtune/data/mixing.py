"""Mixing several sources by weight, and carving a validation split out deterministically."""

from __future__ import annotations

import random

from vlmtune.config import ConfigError
from vlmtune.data.errors import DataError, counted
from vlmtune.data.schema import Sample


def split_validation(samples: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Hold out a deterministic `fraction` of `samples` (same seed and data: same split)."""
    if not 0 < fraction <= 0.5:
        raise ConfigError(
            f"--eval-fraction must be above 0 and at most 0.5, got {fraction}. To evaluate on other data, "
            "pass --eval-data."
        )
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    num_validation = max(1, round(len(samples) * fraction))
    if num_validation >= len(samples):
        raise DataError(
            "data",
            f"{counted(len(samples), 'sample')} cannot be split into training and validation.",
            "Pass --eval-data or add samples.",
        )
    held_out = set(order[:num_validation])
    train = [sample for index, sample in enumerate(samples) if index not in held_out]
    validation = [sample for index, sample in enumerate(samples) if index in held_out]
    return train, validation


def mix_sources(parts: list[list[Sample]], weights: list[float | None], seed: int) -> list[Sample]:
    """Combine sources; with weights, source i contributes round(N * w_i / sum(w)) samples.

    N is the number of samples of all sources together, so mixing changes the proportions and not
    the epoch length. A source with fewer samples than its share is repeated in full as often as it
    fits, and the remainder (like the share of a larger source) is a seeded random subset. Without
    any weight the sources are concatenated; weights must be given for all sources or for none.
    """
    if all(weight is None for weight in weights):
        return [sample for part in parts for sample in part]
    if any(weight is None for weight in weights):
        raise DataError("--data", "give a weight (@W) to every source or to none.")
    total = sum(len(part) for part in parts)
    weight_sum = sum(weights)
    rng = random.Random(seed)
    mixed: list[Sample] = []
    for part, weight in zip(parts, weights, strict=True):
        if not part:
            continue
        share = round(total * weight / weight_sum)
        repeats, remainder = divmod(share, len(part))
        mixed.extend(part * repeats)
        mixed.extend(rng.sample(part, remainder))
    return mixed
