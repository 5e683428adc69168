"""The `validate` command: check the data against a model's processor without loading its weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtune.collation.factory import build_collators
from vlmtune.config import TrainConfig
from vlmtune.data.loading import load_data
from vlmtune.data.processor_options import apply_processor_pixel_bounds
from vlmtune.models.loading import load_processor, resolve_model_path
from vlmtune.validation.pipeline import REPORT_FILE, print_report, validate_data, write_report


def load_model_configs(config: TrainConfig, model_path: str) -> tuple[Any, Any]:
    """Return the model's config and generation config (the weights are not needed to validate)."""
    from transformers import AutoConfig, GenerationConfig

    options = {"revision": config.model.revision, "trust_remote_code": config.model.trust_remote_code}
    model_config = AutoConfig.from_pretrained(model_path, **options)
    try:
        generation_config = GenerationConfig.from_pretrained(model_path, revision=config.model.revision)
    except OSError:
        # Models without generation_config.json take their end-of-sequence token from the config.
        generation_config = GenerationConfig.from_model_config(model_config)
    return model_config, generation_config


def run_validate(config: TrainConfig) -> int:
    """Validate the configured data, print the report and write it as JSON; return the exit status.

    The status is 1 when a sample has a problem under the fail policy (training would stop), else 0.
    """
    model_path = resolve_model_path(config.model.model)
    processor = load_processor(config.model, model_path)
    apply_processor_pixel_bounds(processor, config.data.processor_min_pixels, config.data.processor_max_pixels)
    model_config, generation_config = load_model_configs(config, model_path)
    collator, _ = build_collators(processor, model_config, generation_config, config.data.max_length)
    loaded = load_data(config.data, config.training.seed)
    validated = validate_data(loaded, collator, config.data, model_config)
    report_path = Path(config.data.validation_report or REPORT_FILE)
    write_report(validated.report, report_path)
    print_report(validated.report)
    print(f"Report written to {report_path}")
    return 1 if validated.report["problems"] and config.data.bad_samples == "fail" else 0
