"""Evaluation while training: log the validation loss, and score generated answers every N steps."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from transformers import TrainerCallback

from vlmtune.config import ConfigError, EvaluationConfig
from vlmtune.data.schema import Sample
from vlmtune.evaluation.generation import evaluate_samples
from vlmtune.evaluation.metrics import parse_metric_names

logger = logging.getLogger("vlmtune.train")


def training_metric_names(config: EvaluationConfig) -> list[str]:
    """Return the metrics a training run scores, raising ConfigError for bad evaluation settings.

    Called before the model loads, so a typo fails in seconds rather than after the baseline evaluation.
    """
    try:
        names = parse_metric_names(config.metrics)
    except ValueError as error:
        raise ConfigError(f"--metrics: {error}") from error
    if config.generation_eval_steps is not None and config.generation_eval_steps <= 0:
        raise ConfigError(
            f"--generation-eval-steps must be a positive number of steps, got {config.generation_eval_steps}. "
            "Leave it unset to score generations only before and after training."
        )
    return names


class EvaluationCallback(TrainerCallback):
    """Log each validation loss Trainer computes, and run generation metrics every `every_steps` steps.

    Generation runs on the first process only, on the model Trainer trains (LoRA adapters active),
    greedy and batched with left padding like the evaluation before and after training. The scores
    go through `Trainer.log` as `eval_<metric>`, so they reach the log history and any tracker.
    """

    def __init__(
        self,
        processor: Any,
        samples: Sequence[Sample],
        metric_names: Sequence[str],
        every_steps: int | None,
        batch_size: int,
        max_new_tokens: int,
    ):
        if every_steps is not None and every_steps <= 0:
            raise ValueError(f"generation_eval_steps must be a positive number of steps or None, got {every_steps}.")
        self.processor = processor
        self.samples = list(samples)
        self.metric_names = list(metric_names)
        self.every_steps = every_steps
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.trainer: Any = None
        """The Trainer whose `log` receives the scores; set after the Trainer is built."""

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if state.is_world_process_zero and metrics and "eval_loss" in metrics:
            logger.info("step %d/%d | validation loss %.4f", state.global_step, state.max_steps, metrics["eval_loss"])

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not self.every_steps or not self.samples or state.global_step % self.every_steps != 0:
            return
        # NOTE: with several processes only the first generates; the others wait at the next step.
        if not state.is_world_process_zero:
            return
        result = evaluate_samples(
            model, self.processor, self.samples, self.metric_names, self.batch_size, self.max_new_tokens
        )
        scores = {f"eval_{name}": value for name, value in result.metrics.items()}
        logger.info(
            "step %d/%d | %s on %d validation samples (%.0f s)",
            state.global_step,
            state.max_steps,
            ", ".join(f"{name} {value:.4f}" for name, value in result.metrics.items()),
            len(self.samples),
            result.seconds,
        )
        if self.trainer is not None:
            self.trainer.log(scores)
        else:
            state.log_history.append({**scores, "step": state.global_step})
