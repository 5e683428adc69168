"""Batched greedy generation over samples, with the model's own stop tokens."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader

from vlmtune.collation.factory import build_collators
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.schema import Sample
from vlmtune.evaluation.metrics import exact_match, exact_match_accuracy

logger = logging.getLogger(__name__)


@dataclass
class EvaluationResult:
    accuracy: float
    """Exact-match accuracy over the evaluated samples (0 to 1)."""

    num_samples: int
    seconds: float
    predictions: list[dict[str, Any]]
    """One record per sample: source, prediction, reference, correct."""


def _to_device(batch: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Move tensors to `device`; floating-point ones (pixel values) also take the model's dtype."""
    moved = {}
    for key, value in batch.items():
        is_tensor = isinstance(value, torch.Tensor)
        moved[key] = value.to(device, dtype=dtype if value.is_floating_point() else None) if is_tensor else value
    return moved


@torch.inference_mode()
def generate_answers(
    model: torch.nn.Module,
    processor: Any,
    samples: list[Sample],
    batch_size: int = 16,
    max_new_tokens: int = 64,
    workers: int = 0,
) -> list[str]:
    """Generate one greedy answer per sample from its prompt (the turns before its last answer)."""
    # Generation collators ignore max_length: the data checks before training bound the prompt lengths.
    _, collator = build_collators(processor, model.config, model.generation_config, max_length=0)
    tokenizer = getattr(processor, "tokenizer", processor)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    was_training = model.training
    model.eval()
    answers: list[str] = []
    # Samples with images go first (see images_first); the answers are put back in order below.
    order = sorted(range(len(samples)), key=lambda index: not samples[index].prompt_images())
    try:
        loader = DataLoader(
            ConversationDataset([samples[index] for index in order]),
            batch_size=batch_size,
            collate_fn=collator,
            num_workers=workers,
        )
        for cpu_batch in loader:
            batch = _to_device(cpu_batch, device, dtype)
            prompt_length = batch["input_ids"].shape[1]
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
            )
            answers.extend(tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True))
    finally:
        model.train(was_training)
    in_order = [""] * len(samples)
    for index, answer in zip(order, answers, strict=True):
        in_order[index] = answer.strip()
    return in_order


def evaluate_exact_match(
    model: torch.nn.Module,
    processor: Any,
    samples: list[Sample],
    batch_size: int = 16,
    max_new_tokens: int = 64,
) -> EvaluationResult:
    """Generate answers for `samples` and score them against their last assistant message."""
    start = time.perf_counter()
    predictions = generate_answers(model, processor, samples, batch_size, max_new_tokens)
    references = [sample.reference_answer() for sample in samples]
    records = [
        {
            "source": sample.source,
            "prediction": prediction,
            "reference": reference,
            "correct": exact_match(prediction, reference),
        }
        for sample, prediction, reference in zip(samples, predictions, references, strict=True)
    ]
    return EvaluationResult(
        accuracy=exact_match_accuracy(predictions, references),
        num_samples=len(samples),
        seconds=time.perf_counter() - start,
        predictions=records,
    )
