"""Checks that run over the whole dataset before training, so bad data fails in seconds, not hours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtune.collation.collator import TrainingCollator
from vlmtune.config import DataConfig
from vlmtune.data.loading import load_data
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
