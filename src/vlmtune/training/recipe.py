"""The fine-tuning recipe: setup, baseline evaluation, training, saving, final evaluation, summary.

Each step is a plain call in `run_training`, in the order it happens, so the whole run reads top
to bottom in one function.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import transformers
from transformers.trainer_utils import get_last_checkpoint

from vlmtune.collation.collator import stop_strings
from vlmtune.collation.factory import build_collators
from vlmtune.config import DEMO, TrainConfig, config_to_dict, save_config
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.loading import image_options
from vlmtune.data.media_settings import save_media_settings
from vlmtune.data.processor_options import apply_processor_pixel_bounds
from vlmtune.evaluation.callback import EvaluationCallback, training_metric_names
from vlmtune.evaluation.generation import EvaluationResult, evaluate_samples
from vlmtune.export.save import save_final_model
from vlmtune.models.components import find_components
from vlmtune.models.finetune import count_parameters, setup_finetuning
from vlmtune.models.loading import load_model, load_processor, resolve_dtype, resolve_model_path
from vlmtune.training.preflight import check_media_batching, validate_before_training
from vlmtune.training.trainer import build_trainer, build_training_arguments
from vlmtune.validation.pipeline import REPORT_FILE, SKIPPED_FILE

logger = logging.getLogger("vlmtune")

CHECKPOINT_DIR = "checkpoints"
FINAL_DIR = "final"
SUMMARY_FILE = "run_summary.json"
CONFIG_FILE = "config.yaml"
PRE_TRAINING_FILES = frozenset({CONFIG_FILE, REPORT_FILE, SKIPPED_FILE, "predictions_before.jsonl"})
"""Files a run writes before its first training step."""


class OutputDirError(ValueError):
    """An output folder that would overwrite an earlier run."""


@dataclass
class RunPaths:
    root: Path
    checkpoints: Path
    final: Path
    summary: Path


def _stopped_before_training(root: Path) -> bool:
    """Whether `root` contains only the files a run writes before its first training step.

    A run that failed on its model or data leaves these behind. Reusing the folder for the retry
    loses nothing, because the retry writes them again.
    """
    return all(entry.name in PRE_TRAINING_FILES and entry.is_file() for entry in root.iterdir())


def prepare_output_dir(config: TrainConfig) -> RunPaths:
    """Create the run folder, refusing to reuse one that contains an earlier run unless resuming."""
    root = Path(config.training.output_dir)
    if config.training.resume:
        if not (root / CHECKPOINT_DIR).is_dir():
            raise OutputDirError(f"--resume is set but {root / CHECKPOINT_DIR} does not exist; nothing to resume from.")
        last = get_last_checkpoint(str(root / CHECKPOINT_DIR))
        logger.info("Resuming from %s", last or "the start: no checkpoint was saved yet")
    elif root.exists() and _stopped_before_training(root):
        logger.info("Reusing %s: the run there stopped before training started", root)
    elif root.exists() and any(root.iterdir()):
        raise OutputDirError(
            f"Output folder {root} already contains files. Choose a new --output-dir, or pass --resume "
            "to continue the run saved there."
        )
    root.mkdir(parents=True, exist_ok=True)
    return RunPaths(root, root / CHECKPOINT_DIR, root / FINAL_DIR, root / SUMMARY_FILE)


def default_output_dir(model: str, now: datetime | None = None) -> str:
    """Return `outputs/<model name>-<timestamp>`, a fresh folder for every run."""
    name = "demo" if model == DEMO else Path(model.rstrip("/")).name
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return f"outputs/{name}-{stamp}"


def _write_predictions(path: Path, result: EvaluationResult) -> None:
    with path.open("w") as handle:
        for record in result.predictions:
            handle.write(json.dumps(record) + "\n")


def _evaluate(
    model: Any,
    processor: Any,
    samples: list,
    config: TrainConfig,
    label: str,
    paths: RunPaths,
    metric_names: list[str],
) -> EvaluationResult:
    evaluation = config.evaluation
    logger.info("Evaluating %s training on %d validation samples", label, len(samples))
    result = evaluate_samples(
        model,
        processor,
        samples,
        metric_names,
        evaluation.eval_batch_size,
        evaluation.max_new_tokens,
    )
    _write_predictions(paths.root / f"predictions_{label}.jsonl", result)
    logger.info("Exact-match accuracy %s training: %.1f%% (%.0f s)", label, 100 * result.accuracy, result.seconds)
    logger.info("Metrics %s training: %s", label, ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    return result


def run_training(config: TrainConfig) -> dict[str, Any]:
    """Run the whole recipe and return the run summary (also written to run_summary.json)."""
    started = time.perf_counter()
    metric_names = training_metric_names(config.evaluation)

    # --- Output folder -------------------------------------------------------------------------
    paths = prepare_output_dir(config)
    save_config(config, paths.root / CONFIG_FILE)
    transformers.set_seed(config.training.seed)

    # --- Model and processor -------------------------------------------------------------------
    model_path = resolve_model_path(config.model.model)
    processor = load_processor(config.model, model_path)
    apply_processor_pixel_bounds(processor, config.data.processor_min_pixels, config.data.processor_max_pixels)
    model = load_model(config.model, model_path)
    components = find_components(model)
    logger.info("Model %s: stop tokens %s", config.model.model, stop_strings(processor, model.generation_config))

    # --- Data, checked in full before any training ---------------------------------------------
    collator, _ = build_collators(processor, model.config, model.generation_config, config.data.max_length)
    validated = validate_before_training(config.data, config.training.seed, collator, model.config, paths.root)
    train_samples, eval_samples = validated.train, validated.validation
    check_media_batching(
        collator,
        {
            "--batch-size": (train_samples, config.training.batch_size),
            "--eval-batch-size": (eval_samples, config.evaluation.eval_batch_size),
        },
    )
    train_budget = validated.report["splits"]["train"]["budget"]
    validation_samples = eval_samples
    if config.evaluation.eval_samples is not None:
        eval_samples = eval_samples[: config.evaluation.eval_samples]

    # --- Baseline evaluation -------------------------------------------------------------------
    before = (
        _evaluate(model, processor, eval_samples, config, "before", paths, metric_names)
        if config.evaluation.eval_before
        else None
    )

    # --- Fine-tuning setup ---------------------------------------------------------------------
    model = setup_finetuning(model, components, config.finetune)
    parameter_counts = count_parameters(model, components)
    logger.info("%s (method %s)", parameter_counts.describe(), config.finetune.method)

    # --- Training ------------------------------------------------------------------------------
    args = build_training_arguments(config, paths.checkpoints, resolve_dtype(config.model.dtype))
    trainer = build_trainer(
        model, processor, args, ConversationDataset(train_samples), collator, ConversationDataset(validation_samples)
    )
    evaluation_callback = EvaluationCallback(
        processor,
        validation_samples[: config.evaluation.generation_eval_samples],
        metric_names,
        config.evaluation.generation_eval_steps,
        config.evaluation.eval_batch_size,
        config.evaluation.max_new_tokens,
    )
    evaluation_callback.trainer = trainer
    trainer.add_callback(evaluation_callback)
    train_started = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=True if config.training.resume else None)
    train_seconds = time.perf_counter() - train_started

    # --- Save ----------------------------------------------------------------------------------
    saved_kind = save_final_model(trainer.model, processor, paths.final)
    save_media_settings(paths.final, image_options(config.data))

    # --- Evaluation after training -------------------------------------------------------------
    after = (
        _evaluate(trainer.model, processor, eval_samples, config, "after", paths, metric_names)
        if config.evaluation.eval_after
        else None
    )

    # --- Summary -------------------------------------------------------------------------------
    summary = {
        "model": config.model.model,
        "model_path": model_path,
        "method": config.finetune.method,
        "saved": saved_kind,
        "final_model_dir": str(paths.final),
        "train_samples": len(train_samples),
        "train_tokens": train_budget["tokens"],
        "supervised_tokens": train_budget["supervised_tokens"],
        "eval_samples": len(eval_samples),
        "steps": trainer.state.global_step,
        "train_loss": train_output.training_loss,
        "train_seconds": round(train_seconds, 1),
        "accuracy_before": before.accuracy if before else None,
        "accuracy_after": after.accuracy if after else None,
        "metrics_before": before.metrics if before else None,
        "metrics_after": after.metrics if after else None,
        "eval_seconds_before": round(before.seconds, 1) if before else None,
        "eval_seconds_after": round(after.seconds, 1) if after else None,
        "trainable_parameters": dict(parameter_counts.trainable),
        "total_parameters": dict(parameter_counts.total),
        "total_seconds": round(time.perf_counter() - started, 1),
        "config": config_to_dict(config),
    }
    paths.summary.write_text(json.dumps(summary, indent=2))
    _print_result(summary, paths)
    return summary


def _print_result(summary: dict[str, Any], paths: RunPaths) -> None:
    def percent(value: float | None) -> str:
        return "not measured" if value is None else f"{100 * value:.1f}%"

    logger.info(
        "Done in %.0f s. Validation exact-match accuracy: before %s, after %s (%d samples).",
        summary["total_seconds"],
        percent(summary["accuracy_before"]),
        percent(summary["accuracy_after"]),
        summary["eval_samples"],
    )
    logger.info("Fine-tuned %s: %s", summary["saved"], paths.final)
    logger.info("Summary: %s", paths.summary)
