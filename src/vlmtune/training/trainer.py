"""Building a transformers Trainer from the run configuration."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments

from vlmtune.config import TrainConfig
from vlmtune.training.logging_callback import StepLogCallback


def cpu_supports_bf16() -> bool:
    """Return whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_mixed_precision(setting: str, dtype: torch.dtype) -> str:
    """Return `bf16`, `fp16` or `no` for the configured setting on this hardware."""
    on_gpu = torch.cuda.is_available()
    if setting == "auto":
        if dtype is torch.float16:
            return "fp16"
        if on_gpu:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_supports_bf16() else "no"
    if setting == "fp16" and not on_gpu:
        raise ValueError("mixed_precision fp16 needs a CUDA GPU; use bf16 or no on CPU.")
    return setting


def resolve_dataloader_workers(setting: int | None) -> int:
    """Return the DataLoader worker count: the setting, or the automatic choice for this machine."""
    if setting is not None:
        return setting
    if not torch.cuda.is_available():
        return 0
    return min(4, (os.cpu_count() or 2) // 2)


def build_training_arguments(config: TrainConfig, checkpoint_dir: Path, dtype: torch.dtype) -> TrainingArguments:
    """Translate the run configuration into TrainingArguments."""
    training = config.training
    precision = resolve_mixed_precision(training.mixed_precision, dtype)
    workers = resolve_dataloader_workers(config.data.dataloader_workers)
    eval_steps = training.eval_steps if training.eval_steps is not None else training.save_steps
    evaluation = (
        # Only the loss is needed; keeping logits would hold batch x sequence x vocabulary floats.
        {"eval_strategy": "steps", "eval_steps": eval_steps, "prediction_loss_only": True}
        if eval_steps > 0
        else {"eval_strategy": "no"}
    )
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=training.batch_size,
        gradient_accumulation_steps=training.grad_accum,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        warmup_steps=training.warmup_ratio,
        lr_scheduler_type=training.lr_scheduler,
        num_train_epochs=training.epochs,
        max_steps=training.max_steps if training.max_steps is not None else -1,
        logging_steps=training.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=training.save_steps,
        save_total_limit=training.save_total_limit,
        seed=training.seed,
        data_seed=training.seed,
        report_to=[] if training.report_to == "none" else [training.report_to],
        # Samples are Sample objects, not tokenized columns, so Trainer must pass them through untouched.
        remove_unused_columns=False,
        dataloader_num_workers=workers,
        # Workers decode images ahead of the step; keeping them alive avoids a restart every epoch.
        dataloader_persistent_workers=workers > 0,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        include_num_input_tokens_seen="non_padding",
        per_device_eval_batch_size=training.batch_size,
        **evaluation,
    )


def build_trainer(
    model: torch.nn.Module,
    processor: Any,
    args: TrainingArguments,
    train_dataset: Any,
    collator: Any,
    eval_dataset: Any = None,
) -> Trainer:
    """Create the Trainer with the project's step log line in place of transformers' printers.

    `eval_dataset` is scored for the validation loss when `args.eval_strategy` is `steps`. Without
    an eval dataset there is no validation loss, so step evaluation is switched off.
    """
    if eval_dataset is None and args.eval_strategy != "no":
        args = dataclasses.replace(args, eval_strategy="no", eval_steps=None)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=collator,
        processing_class=processor,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    world_size = args.world_size
    trainer.add_callback(
        StepLogCallback(args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size)
    )
    return trainer
