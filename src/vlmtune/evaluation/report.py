"""Standalone evaluation of a model or adapter, with an optional baseline in the same report."""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from pathlib import Path
from typing import Any

import torch

from vlmtune.config import ConfigError, EvaluateConfig, GenerationOptions
from vlmtune.data.loading import read_samples
from vlmtune.data.media_settings import load_media_settings, with_media_settings
from vlmtune.evaluation.generation import EvaluationResult, GenerationSettings, evaluate_samples
from vlmtune.evaluation.metrics import parse_metric_names
from vlmtune.models.adapters import adapter_base_model, is_adapter_folder, load_for_inference
from vlmtune.outputs import require_new_folder, timestamped_name

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.jsonl"
BASELINE_PREDICTIONS_FILE = "predictions_baseline.jsonl"


def generation_settings(options: GenerationOptions) -> GenerationSettings:
    """Return the generation overrides a command's options set."""
    return GenerationSettings(options.max_new_tokens, options.do_sample, options.temperature, options.top_p)


def write_predictions(path: Path, records: list[dict[str, Any]]) -> None:
    """Write one JSON object per line."""
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _baseline_name(config: EvaluateConfig) -> str | None:
    if config.baseline != "base":
        return config.baseline
    if config.base_model:
        return config.base_model
    if not is_adapter_folder(config.model.model):
        raise ConfigError(
            f"--baseline base needs an adapter folder as --model, and {config.model.model} has no adapter_config.json. "
            "Pass the baseline model's name or folder instead."
        )
    return adapter_base_model(config.model.model)


def _evaluate_one(model_name: str, config: EvaluateConfig, samples: list, metric_names: list[str]) -> tuple:
    loaded = load_for_inference(dataclasses.replace(config.model, model=model_name), config.base_model)
    logger.info("Evaluating %s on %d samples", loaded.source, len(samples))
    result = evaluate_samples(
        loaded.model,
        loaded.processor,
        samples,
        metric_names,
        batch_size=config.generation.batch_size,
        settings=generation_settings(config.generation),
        progress=True,
    )
    source = loaded.source
    del loaded
    # Free the first model before the baseline is loaded, so both never sit in memory together.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return source, result


def _summary(source: str, result: EvaluationResult) -> dict[str, Any]:
    return {"model": source, "metrics": result.metrics, "seconds": round(result.seconds, 1)}


def run_evaluation(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate `config.model` (and `config.baseline`) and write predictions and metrics.json."""
    if not config.data:
        raise ConfigError("evaluate needs --data FILE.jsonl with the samples to score.")
    try:
        metric_names = parse_metric_names(config.metrics)
    except ValueError as error:
        raise ConfigError(str(error)) from error
    baseline = _baseline_name(config) if config.baseline else None
    # The baseline is scored on the same input as the evaluated model, so both use its settings.
    samples = with_media_settings(read_samples(config.data, config.image_root), load_media_settings(config.model.model))
    if config.max_samples is not None:
        samples = samples[: config.max_samples]
    output_dir = require_new_folder(config.output_dir or timestamped_name("eval", config.model.model), "--output-dir")

    source, result = _evaluate_one(config.model.model, config, samples, metric_names)
    write_predictions(output_dir / PREDICTIONS_FILE, result.predictions)
    report: dict[str, Any] = {"data": str(config.data), "num_samples": len(samples), **_summary(source, result)}

    if baseline is not None:
        baseline_source, baseline_result = _evaluate_one(baseline, config, samples, metric_names)
        write_predictions(output_dir / BASELINE_PREDICTIONS_FILE, baseline_result.predictions)
        report["baseline"] = _summary(baseline_source, baseline_result)
        report["difference"] = {name: result.metrics[name] - baseline_result.metrics[name] for name in metric_names}

    (output_dir / METRICS_FILE).write_text(json.dumps(report, indent=2))
    print(format_report(report))
    print(f"predictions and {METRICS_FILE}: {output_dir}")
    return report


def format_report(report: dict[str, Any]) -> str:
    """Format the metrics as a table: one row per metric, baseline and difference when present."""
    baseline = report.get("baseline")
    header = ["metric", "model"] + (["baseline", "difference"] if baseline else [])
    rows = [header]
    for name, value in report["metrics"].items():
        row = [name, f"{value:.4f}"]
        if baseline:
            row += [f"{baseline['metrics'][name]:.4f}", f"{report['difference'][name]:+.4f}"]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [f"model: {report['model']}"]
    if baseline:
        lines.append(f"baseline: {baseline['model']}")
    lines.append(f"samples: {report['num_samples']}")
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
