"""Checks that run over the whole dataset before training, so bad data fails in seconds, not hours."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmtune.collation.collator import TrainingCollator
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.config import DataConfig
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.errors import DataError
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

logger = logging.getLogger(__name__)

MAX_LISTED_ERRORS = 20


@dataclass
class TokenStats:
    num_samples: int
    total_tokens: int
    supervised_tokens: int
    max_tokens: int


def check_samples(samples: list[Sample], collator: TrainingCollator, name: str) -> TokenStats:
    """Decode every image and encode every sample as training would; raise one error listing all problems.

    Each sample is encoded alone, so the token counts exclude padding and an error names exactly
    one sample.
    """
    dataset = ConversationDataset(samples)
    problems: list[str] = []
    total = supervised = longest = 0
    for index in range(len(dataset)):
        try:
            batch = collator([dataset[index]])
        except DataError as error:
            problems.append(str(error))
            continue
        length = int(batch["attention_mask"].sum())
        total += length
        longest = max(longest, length)
        supervised += int((batch["labels"] != IGNORE_INDEX).sum())

    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED_ERRORS])
        more = f"\n  ... and {len(problems) - MAX_LISTED_ERRORS} more" if len(problems) > MAX_LISTED_ERRORS else ""
        raise DataError(
            f"{name} data",
            f"{len(problems)} of {len(samples)} samples cannot be used:\n  {listed}{more}",
            "\nFix or remove these samples; nothing was trained.",
        )
    stats = TokenStats(num_samples=len(samples), total_tokens=total, supervised_tokens=supervised, max_tokens=longest)
    logger.info(
        "%s data checked: %d samples, %d tokens (%d supervised), longest %d tokens",
        name.capitalize(),
        stats.num_samples,
        stats.total_tokens,
        stats.supervised_tokens,
        stats.max_tokens,
    )
    return stats


def validate_before_training(
    config: DataConfig, seed: int, collator: TrainingCollator, model_config: Any, run_dir: Path
) -> ValidatedData:
    """Load and validate all data, write the report into the run folder and apply the bad-sample policy.

    Raises a `DataError` listing the bad samples under the fail policy, before any training step.
    """
    loaded = load_data(config, seed)
    validated = validate_data(loaded, collator, config, model_config)
    report_path = run_dir / REPORT_FILE
    write_report(validated.report, report_path)
    print_report(validated.report)
    apply_policy(validated, config.bad_samples, report_path, run_dir / SKIPPED_FILE)
    return validated
