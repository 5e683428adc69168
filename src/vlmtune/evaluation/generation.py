"""Batched generation over samples, with the model's own stop tokens, and metric scoring."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vlmtune.collation.collator import stop_token_ids
from vlmtune.collation.factory import build_collators
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.schema import Sample
from vlmtune.evaluation.metrics import compute_metrics, exact_match

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 64
"""Used when neither the caller nor the model's generation config sets max_new_tokens."""


@dataclass
class GenerationSettings:
    """Overrides of the model's generation config; None keeps the model's own value."""

    max_new_tokens: int | None = None
    do_sample: bool | None = None
    temperature: float | None = None
    top_p: float | None = None


def generation_kwargs(model: torch.nn.Module, tokenizer: Any, settings: GenerationSettings) -> dict[str, Any]:
    """Return the keyword arguments for `generate`: the model's generation config plus overrides."""
    config = getattr(model, "generation_config", None)
    max_new_tokens = settings.max_new_tokens or getattr(config, "max_new_tokens", None) or DEFAULT_MAX_NEW_TOKENS
    do_sample = settings.do_sample if settings.do_sample is not None else bool(getattr(config, "do_sample", False))
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "eos_token_id": stop_token_ids(getattr(model, "generation_config", None), tokenizer),
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    }
    if do_sample:
        if settings.temperature is not None:
            kwargs["temperature"] = settings.temperature
        if settings.top_p is not None:
            kwargs["top_p"] = settings.top_p
    else:
        # Greedy decoding: sampling parameters from the model's config would only trigger warnings.
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def _to_device(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Move tensors to `device`; floating-point ones (pixel values) also take the model's dtype."""
    moved = {}
    for key, value in batch.items():
        if not isinstance(value, torch.Tensor):
            moved[key] = value
        elif value.is_floating_point():
            moved[key] = value.to(device, dtype=dtype)
        else:
            moved[key] = value.to(device)
    return moved


@torch.inference_mode()
def generate_answers(
    model: torch.nn.Module,
    processor: Any,
    samples: list[Sample],
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    workers: int = 0,
    settings: GenerationSettings | None = None,
    progress: bool = False,
) -> list[str]:
    """Generate one answer per sample from its prompt (the turns before its last answer).

    Prompts are left-padded so each row's new tokens start at the same position. Decoding is
    greedy unless the model's generation config or `settings` turn sampling on.
    """
    settings = settings or GenerationSettings()
    if max_new_tokens is not None:
        settings = GenerationSettings(max_new_tokens, settings.do_sample, settings.temperature, settings.top_p)
    # Generation collators ignore max_length: the data checks before training bound the prompt lengths.
    _, collator = build_collators(processor, model.config, model.generation_config, max_length=0)
    tokenizer = getattr(processor, "tokenizer", processor)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    kwargs = generation_kwargs(model, tokenizer, settings)
    was_training = model.training
    model.eval()
    answers: list[str] = []
    # Samples with images go first, because some processors (Mllama, Idefics3) fail on a batch whose
    # first row has no image. The answers are put back in the callers' order below.
    order = sorted(
        range(len(samples)), key=lambda index: not (samples[index].prompt_images() or samples[index].prompt_videos())
    )
    try:
        loader = DataLoader(
            ConversationDataset([samples[index] for index in order]),
            batch_size=batch_size,
            collate_fn=collator,
            num_workers=workers,
        )
        with tqdm(total=len(samples), desc="generating", unit="sample", disable=not progress) as bar:
            for cpu_batch in loader:
                batch = _to_device(cpu_batch, device, dtype)
                prompt_length = batch["input_ids"].shape[1]
                output = model.generate(**batch, **kwargs)
                answers.extend(tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True))
                bar.update(batch["input_ids"].shape[0])
    finally:
        model.train(was_training)
    in_order = [""] * len(samples)
    for index, answer in zip(order, answers, strict=True):
        in_order[index] = answer.strip()
    return in_order


@dataclass
class EvaluationResult:
    accuracy: float
    """Exact-match accuracy over the evaluated samples (0 to 1)."""

    num_samples: int
    seconds: float
    predictions: list[dict[str, Any]]
    """One record per sample: source, prediction, reference, correct (exact match)."""

    metrics: dict[str, float] = field(default_factory=dict)
    """Every requested metric by name."""


def prediction_records(samples: list[Sample], predictions: list[str]) -> list[dict[str, Any]]:
    """Return one JSON-ready record per sample: source, prediction, reference(s), exact-match flag."""
    records = []
    for sample, prediction in zip(samples, predictions, strict=True):
        references = sample.reference_answers()
        record: dict[str, Any] = {"source": sample.source, "prediction": prediction, "reference": references[0]}
        if len(references) > 1:
            record["references"] = references
        record["correct"] = exact_match(prediction, references)
        records.append(record)
    return records


def evaluate_samples(
    model: torch.nn.Module,
    processor: Any,
    samples: list[Sample],
    metric_names: Sequence[str] = ("exact_match",),
    batch_size: int = 16,
    max_new_tokens: int | None = None,
    settings: GenerationSettings | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """Generate answers for `samples` and score them against their reference answers."""
    start = time.perf_counter()
    predictions = generate_answers(
        model, processor, samples, batch_size, max_new_tokens, settings=settings, progress=progress
    )
    references = [sample.reference_answers() for sample in samples]
    scores = compute_metrics(list(metric_names), predictions, references)
    records = prediction_records(samples, predictions)
    accuracy = scores.get("exact_match", sum(record["correct"] for record in records) / max(len(records), 1))
    return EvaluationResult(
        accuracy=accuracy,
        num_samples=len(samples),
        seconds=time.perf_counter() - start,
        predictions=records,
        metrics=scores,
    )


def evaluate_exact_match(
    model: torch.nn.Module,
    processor: Any,
    samples: list[Sample],
    batch_size: int = 16,
    max_new_tokens: int = 64,
) -> EvaluationResult:
    """Generate answers for `samples` and score exact match against their reference answers."""
    return evaluate_samples(model, processor, samples, ("exact_match",), batch_size, max_new_tokens)
