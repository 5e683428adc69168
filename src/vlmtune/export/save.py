"""Writing the final model: a LoRA adapter or full weights, always with the processor."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from peft import PeftModel
from torch import nn

logger = logging.getLogger(__name__)


def save_final_model(model: nn.Module, processor: Any, output_dir: Path) -> str:
    """Save `model` and `processor` into `output_dir` and return the kind saved: `adapter` or `full`.

    An adapter folder holds adapter_config.json and adapter_model.safetensors (plus any fully
    trained components listed as modules_to_save); load it with `PeftModel.from_pretrained` on the
    base model named in adapter_config.json. A full folder loads with AutoModelForImageTextToText.
    Both hold the processor with its chat template, so generation works without the base folder's
    processor.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    kind = "adapter" if isinstance(model, PeftModel) else "full"
    if kind == "full" and getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(output_dir)
    logger.info("Saved the %s to %s", "LoRA adapter" if kind == "adapter" else "full model", output_dir)
    return kind
