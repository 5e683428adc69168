"""Checks that run over the whole dataset before training, so bad data fails in seconds, not hours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtune.collation.collator import TrainingCollator
from vlmtune.config import ConfigError, DataConfig
from vlmtune.data.loading import load_data
from vlmtune.data.schema import Sample
from vlmtune.validation.pipeline import (
    REPORT_FILE,
    SKIPPED_FILE,
    ValidatedData,
    apply_policy,
    print_report,
    validate_data,
    write_report,
)


def validate_before_training(
    config: DataConfig, seed: int, collator: TrainingCollator, model_config: Any, run_dir: Path
) -> ValidatedData:
    """Load and validate all data, write the report into the run folder and apply the bad-sample policy.

    Every image is decoded and every sample encoded as training would, each alone, so the token
    counts exclude padding and a problem names exactly one sample. Under the fail policy a
    `DataError` listing the bad samples is raised before any training step.
    """
    loaded = load_data(config, seed)
    validated = validate_data(loaded, collator, config, model_config)
    report_path = run_dir / REPORT_FILE
    write_report(validated.report, report_path)
    print_report(validated.report)
    apply_policy(validated, config.bad_samples, report_path, run_dir / SKIPPED_FILE)
    return validated


def check_media_batching(collator: Any, splits: dict[str, tuple[list[Sample], int]]) -> None:
    """Fail before training when batches would mix images and videos that the processor cannot mix.

    Each sample is validated alone, so this is the one problem that only shows up in a batch.
    `splits` maps each batch-size option (`--batch-size`, ...) to the samples batched by it and its value.
    """
    handling = getattr(collator, "video", None)
    # Collators without video handling (prefix/suffix families) reject every video sample already.
    if handling is None or handling.mixes_with_images:
        return
    problems = []
    flagged = []
    for option, (samples, batch_size) in splits.items():
        with_image = next((sample for sample in samples if sample.images), None)
        with_video = next((sample for sample in samples if sample.videos), None)
        if batch_size > 1 and with_image is not None and with_video is not None:
            problems.append(
                f"{option} is {batch_size} and its samples include an image ({with_image.source}) and a video "
                f"({with_video.source}), so set {option} 1"
            )
            flagged.append(option)
    if problems:
        advice = (
            "Raise --grad-accum to keep the effective training batch, or train"
            if "--batch-size" in flagged
            else "Or train"
        )
        raise ConfigError(
            f"The processor of this model ({type(collator.processor).__name__}) cannot take images and videos in "
            f"one batch. {'. '.join(problems)}. {advice} on images and videos in separate runs."
        )
