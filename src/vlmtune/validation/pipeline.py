"""Validating the loaded data as a whole: the pass, the report files and the bad-sample policy.

The `validate` command and the training recipe both call `validate_data`, so they accept and
reject exactly the same samples.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmtune.config import DataConfig
from vlmtune.data.errors import DataError, counted
from vlmtune.data.loading import LoadedData, image_options
from vlmtune.data.schema import Sample
from vlmtune.validation.cache import ResultCache
from vlmtune.validation.checks import (
    CheckSettings,
    SampleResult,
    image_token_id,
    measuring_collator,
    video_token_id,
)
from vlmtune.validation.report import REPORT_KIND, build_report, format_report
from vlmtune.validation.run import check_all

logger = logging.getLogger(__name__)

SKIPPED_FILE = "skipped_samples.jsonl"
REPORT_FILE = "validation_report.json"
ERROR_PROBLEMS_SHOWN = 3
"""Number of problems repeated in the error raised under the fail policy, after the printed report lists them."""


@dataclass
class ValidatedData:
    train: list[Sample]
    """Usable training samples (all of them under the fail policy, which raises otherwise)."""

    validation: list[Sample]
    report: dict[str, Any]


def check_settings(collator: Any, config: DataConfig, model_config: Any = None) -> CheckSettings:
    """Return the settings of the validation pass for a training collator and the data options."""
    processor = collator.processor
    return CheckSettings(
        collator=measuring_collator(collator),
        image_options=image_options(config),
        max_length=config.max_length,
        image_token_id=image_token_id(processor, model_config),
        image_token=getattr(processor, "image_token", None),
        video_token_id=video_token_id(processor, model_config),
        video_token=getattr(processor, "video_token", None),
    )


def validate_data(
    loaded: LoadedData,
    collator: Any,
    config: DataConfig,
    model_config: Any = None,
    cache_folder: Path | None = None,
) -> ValidatedData:
    """Check every sample of both splits and return the usable ones with the report.

    A bad sample is recorded in the report instead of raised, so one pass lists every problem.
    """
    settings = check_settings(collator, config, model_config)
    cache = ResultCache(settings, cache_folder) if config.validation_cache else None
    results: dict[str, list[SampleResult]] = {}
    kept: dict[str, list[Sample]] = {}
    for split, samples in (("train", loaded.train), ("validation", loaded.validation)):
        # Mixing repeats samples, and a repeated sample needs checking only once.
        unique = list({id(sample): sample for sample in samples}.values())
        checked = check_all(unique, settings, config.num_proc, cache, f"Validating {split} data")
        by_id = {id(sample): result for sample, result in zip(unique, checked, strict=True)}
        results[split] = [by_id[id(sample)] for sample in samples]
        kept[split] = [sample for sample in samples if by_id[id(sample)].kind is None]
    report = build_report(results, loaded.rejected, config.max_length, config.bad_samples)
    return ValidatedData(kept["train"], kept["validation"], report)


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the report as JSON, replacing only an earlier validation report."""
    if path.exists():
        try:
            earlier = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            earlier = None
        if not isinstance(earlier, dict) or earlier.get("kind") != REPORT_KIND:
            raise DataError(
                str(path),
                "exists and is not a validation report, so it is not overwritten.",
                "Choose another --validation-report path.",
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))


def apply_policy(validated: ValidatedData, policy: str, report_path: Path, skipped_path: Path | None) -> None:
    """Raise under the fail policy when any sample has a problem; under skip, list the dropped samples.

    The skipped list is written under skip only and only when a path is given. Training gives one in
    its run folder, while the validate command leaves the list to its report.
    """
    problems = validated.report["problems"]
    if not problems:
        return
    if policy == "skip":
        if skipped_path is not None:
            with skipped_path.open("w") as handle:
                for entry in problems:
                    handle.write(json.dumps(entry) + "\n")
        logger.warning(
            "Skipping %d bad samples (%s); %d training and %d validation samples remain.",
            len(problems),
            skipped_path or report_path,
            len(validated.train),
            len(validated.validation),
        )
        if not validated.train or not validated.validation:
            raise DataError("data", "no usable samples remain in a split after skipping the bad ones.")
        return
    # The printed report lists the problems already, so the error repeats only the first few.
    listed = "\n  ".join(
        f"[{entry['split']}] {entry['source']}: {entry['reason']}" for entry in problems[:ERROR_PROBLEMS_SHOWN]
    )
    hidden = len(problems) - ERROR_PROBLEMS_SHOWN
    more = f"\n  ... and {hidden} more, listed in the report" if hidden > 0 else ""
    raise DataError(
        "data",
        f"{counted(len(problems), 'sample')} cannot be used:\n  {listed}{more}",
        f"\nFix or remove them, or pass --bad-samples skip to train without them. Full report: {report_path}",
    )


def print_report(report: dict[str, Any]) -> None:
    """Print the human-readable report to standard output."""
    print(format_report(report))
