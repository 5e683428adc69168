"""Locating a VLM's three components by module name: vision encoder, projector, language model.

transformers names them differently per family (`vision_tower`, `visual`, `vision_model`;
`multi_modal_projector`, `connector`, `visual.merger`; `language_model`, `text_model`). The
generic search below covers the families transformers ships; a family whose layout differs
lists its own paths in its `Family` entry (vlmtune.models.families).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from vlmtune.models.families import family_for

VISION_NAMES = ("vision_tower", "visual", "vision_model", "vision_encoder", "image_encoder")
# Qwen3-VL's `deepstack_merger_list` projects intermediate vision features into the language model
# like its `merger` does, so it belongs to the projector.
PROJECTOR_NAMES = (
    "multi_modal_projector",
    "connector",
    "mm_projector",
    "merger",
    "deepstack_merger_list",
    "vision_projection",
)
# Learned vectors that sit between the vision features and the language model without a module of
# their own (LLaVA-NeXT and LLaVA-OneVision append `image_newline` after each row of image features).
PROJECTOR_PARAMETER_NAMES = ("image_newline",)
LANGUAGE_NAMES = ("language_model", "text_model")
OUTPUT_HEAD_NAMES = ("lm_head",)


@dataclass
class Components:
    vision: list[str] = field(default_factory=list)
    """Module paths of the vision encoder."""

    projector: list[str] = field(default_factory=list)
    """Module paths of the projector between vision encoder and language model."""

    language_model: list[str] = field(default_factory=list)
    """Module paths of the language model, its output head included."""

    unused: list[str] = field(default_factory=list)
    """Module paths inside the vision encoder whose output the model discards, such as the encoder
    layers after the one LLaVA reads its features from (`vision_feature_layer`). They stay frozen,
    because they never receive a gradient."""

    def component_of(self, parameter_name: str) -> str:
        """Return which component a parameter belongs to: vision, projector, language_model or other."""
        for component in ("projector", "vision", "language_model"):
            for prefix in getattr(self, component):
                if parameter_name == prefix or parameter_name.startswith(prefix + "."):
                    return component
        return "other"


def find_components(model: nn.Module) -> Components:
    """Find the module paths of `model`'s vision encoder, projector and language model.

    Raises ValueError when the vision encoder or the language model cannot be found, because every
    freezing switch and the LoRA targets depend on them.
    """
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    family = family_for(model_type)
    if family is not None and family.components is not None:
        override = family.components
        vision = list(override.get("vision", ()))
        return Components(
            vision=vision,
            projector=list(override.get("projector", ())),
            language_model=list(override.get("language_model", ())),
            unused=unused_vision_paths(model, vision),
        )

    names = dict(model.named_modules())
    vision = _shallowest(names, VISION_NAMES)
    # A projector may sit inside the vision encoder (Qwen's `visual.merger`); it is still its own
    # component, and `component_of` checks projectors first.
    projector = _shallowest(names, PROJECTOR_NAMES)
    language = _shallowest(names, LANGUAGE_NAMES)
    heads = [name for name in _shallowest(names, OUTPUT_HEAD_NAMES) if not _inside(name, language)]

    projector += [
        name
        for name, _ in model.named_parameters()
        if name.rsplit(".", 1)[-1] in PROJECTOR_PARAMETER_NAMES and not _inside(name, projector + vision + language)
    ]
    if not vision or not language:
        raise ValueError(
            f"Cannot locate the {'vision encoder' if not vision else 'language model'} of {type(model).__name__} "
            f"(model_type={model_type!r}). Expected a module named one of "
            f"{VISION_NAMES if not vision else LANGUAGE_NAMES}; register the layout as a Family in "
            "vlmtune.models.families."
        )
    return Components(
        vision=vision,
        projector=projector,
        language_model=language + heads,
        unused=unused_vision_paths(model, vision),
    )


def unused_vision_paths(model: nn.Module, vision: list[str]) -> list[str]:
    """Return vision-encoder modules whose output a LLaVA-style model discards.

    Models with `config.vision_feature_layer` take the encoder's hidden states at that index
    (hidden_states[0] is the patch embedding, hidden_states[i] the output of layer i-1), so later
    layers and the post-encoder `post_layernorm` and pooling `head` never reach the loss.
    """
    feature_layer = getattr(getattr(model, "config", None), "vision_feature_layer", None)
    if feature_layer is None:
        return []
    feature_layers = [feature_layer] if isinstance(feature_layer, int) else list(feature_layer)
    unused = []
    for name, module in model.named_modules():
        if not _inside(name, vision):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.ModuleList) and leaf in ("layers", "layer") and name.endswith("encoder." + leaf):
            count = len(module)
            last_state = max(index if index >= 0 else count + 1 + index for index in feature_layers)
            unused += [f"{name}.{index}" for index in range(last_state, count)]
        elif leaf in ("post_layernorm", "head"):
            unused.append(name)
    return unused


def _shallowest(names: dict[str, nn.Module], leaf_names: tuple[str, ...]) -> list[str]:
    """Return module paths whose last part is in `leaf_names`, dropping those nested in another match."""
    matches = sorted((name for name in names if name.rsplit(".", 1)[-1] in leaf_names), key=len)
    kept: list[str] = []
    for name in matches:
        if not _inside(name, kept):
            kept.append(name)
    return kept


def _inside(name: str, prefixes: list[str]) -> bool:
    return any(name.startswith(prefix + ".") for prefix in prefixes)
