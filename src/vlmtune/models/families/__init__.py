"""Per-family knowledge that the generic path cannot derive from the model and processor.

Most families need nothing here: labels come from the chat template, components from module
names, and batching from the processor. A family gets a `Family` entry only for what differs,
such as explicit component paths or a prompt format without a chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    """Readable family name, as used in the README's support table."""

    model_types: tuple[str, ...]
    """transformers `config.model_type` values that belong to the family."""

    components: dict[str, tuple[str, ...]] | None = None
    """Explicit module paths for `vision`, `projector` and `language_model`; None: found by name."""

    chat_template: bool = True
    """Whether conversations are rendered with the processor's chat template. False for families
    whose processor takes a prompt and a target directly (PaliGemma's prefix and suffix)."""

    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for every processor call."""

    replacement_offsets: bool = True
    """Whether the processor can return `text_replacement_offsets`. False for processors that
    convert every output to tensors (InternVL's), where requesting them fails; the training collator
    then maps labels by aligning token ids instead."""


FAMILIES: list[Family] = [
    # PaliGemma 1 and 2 share the model_type; the processor builds the prompt from a prefix and a
    # suffix and marks the suffix with token_type_ids, so no chat template is involved.
    Family(name="PaliGemma", model_types=("paligemma",), chat_template=False),
    # InternVL's processor converts every output to tensors, which breaks the text replacement
    # offsets, so labels come from aligning the expanded tokens with the rendered text instead.
    Family(name="InternVL", model_types=("internvl",), replacement_offsets=False),
]
"""Registered families; a model_type not listed uses the generic path."""


def family_for(model_type: str | None) -> Family | None:
    """Return the registered family of a model_type, or None for the generic path."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None
