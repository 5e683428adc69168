"""Writing the final model: a LoRA adapter or full weights, always with the processor."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from torch import nn

from vlmtune.models.adapters import AdapterLoadError, load_adapter_checked

logger = logging.getLogger(__name__)

RELOAD_CHECK_ADAPTER = "reload_check"
"""Name under which a just-saved adapter is loaded back next to the trained one for comparison."""


def save_final_model(model: nn.Module, processor: Any, output_dir: Path) -> str:
    """Save `model` and `processor` into `output_dir` and return the kind saved: `adapter` or `full`.

    An adapter folder holds adapter_config.json and adapter_model.safetensors (plus any fully
    trained components listed as modules_to_save); load it with `PeftModel.from_pretrained` on the
    base model named in adapter_config.json. A full folder loads with AutoModelForImageTextToText.
    Both hold the processor with its chat template, so generation works without the base folder's
    processor. A saved adapter is loaded back and compared with the trained weights before this returns.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    kind = "adapter" if isinstance(model, PeftModel) else "full"
    if kind == "adapter":
        verify_adapter_reloads(model, output_dir)
    if kind == "full" and getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(output_dir)
    logger.info("Saved the %s to %s", "LoRA adapter" if kind == "adapter" else "full model", output_dir)
    return kind


@torch.no_grad()
def verify_adapter_reloads(model: PeftModel, folder: Path) -> None:
    """Load the adapter saved in `folder` into `model` as a second adapter and compare every weight.

    peft converts key names between model layouts when it saves and loads, so this is the check that
    the saved file loads back under the installed transformers version. It costs one extra copy of the
    adapter weights (and of any fully trained component) while it runs. Raises AdapterLoadError.
    """
    active = model.active_adapter
    was_training = model.training
    try:
        load_adapter_checked(model, folder, RELOAD_CHECK_ADAPTER)
        state = model.state_dict()
        marker, trained_marker = f".{RELOAD_CHECK_ADAPTER}.", f".{active}."
        reloaded = {name: value for name, value in state.items() if marker in name}
        differing = [
            name.replace(marker, trained_marker)
            for name, value in reloaded.items()
            if not torch.equal(value.cpu().float(), state[name.replace(marker, trained_marker)].cpu().float())
        ]
        if not reloaded or differing:
            raise AdapterLoadError(
                f"The adapter saved in {folder} does not reload with the trained weights: "
                + (f"{len(differing)} weights differ, e.g. {differing[0]}." if differing else "no weights loaded.")
            )
    finally:
        if RELOAD_CHECK_ADAPTER in model.peft_config:
            model.delete_adapter(RELOAD_CHECK_ADAPTER)
        model.set_adapter(active)
        model.train(was_training)
