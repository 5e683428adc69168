"""The resolved training plan: what trains, which tokens are images, what is supervised.

`vlmtune plan` takes the same options as `train` and prints, without training, what a run with
them would do: trainable and total parameters per component with their module paths, the LoRA
target pattern, the image tokens, and the first training sample as the model receives it with the
supervised tokens marked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from vlmtune.collation.collator import takes_video
from vlmtune.collation.factory import build_collators
from vlmtune.collation.labels import IGNORE_INDEX
from vlmtune.config import TrainConfig
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.loading import load_train_and_eval
from vlmtune.models.components import Components, find_components
from vlmtune.models.families import family_for
from vlmtune.models.finetune import ParameterCounts, count_parameters, language_model_lora_targets, setup_finetuning
from vlmtune.models.loading import load_model, load_processor, resolve_model_path
from vlmtune.validation.checks import image_token_id, video_token_id

COMPONENTS = ("vision", "projector", "language_model", "other")
SUPERVISED_OPEN, SUPERVISED_CLOSE = "[[", "]]"
ANSI_SUPERVISED, ANSI_RESET = "\033[1;32m", "\033[0m"


@dataclass
class Plan:
    model: str
    model_class: str
    model_type: str
    family: str
    """Handling of the model: its registered family, or the generic path (labels from the chat
    template, components by module name), which most families need."""

    method: str
    components: Components
    counts: ParameterCounts
    lora_pattern: str | None
    lora_layers: int
    image_tokens: dict[str, int]
    """Text and id of every token that represents image or video content in the language model's input."""

    sample_source: str
    sample_tokens: list[tuple[str, bool]]
    """The first training sample as decoded tokens, each with whether it is supervised."""

    sample_image_tokens: int
    sample_supervised_tokens: int


def build_plan(config: TrainConfig) -> Plan:
    """Load the model, processor and data as `train` would, apply the fine-tune setup, and describe it."""
    model_path = resolve_model_path(config.model.model)
    processor = load_processor(config.model, model_path)
    model = load_model(config.model, model_path)
    components = find_components(model)
    collator, _ = build_collators(processor, model.config, model.generation_config, config.data.max_length)

    lora_pattern = None
    if config.finetune.method == "lora" and config.finetune.train_language_model:
        lora_pattern = language_model_lora_targets(model, components)
    model_type = getattr(model.config, "model_type", "?")
    model_class = type(model).__name__
    trained = setup_finetuning(model, components, config.finetune)
    lora_layers = sum(1 for name, _ in trained.named_modules() if name.endswith(".lora_A"))

    train_samples, _ = load_train_and_eval(config.data, config.training.seed)
    first = ConversationDataset(train_samples)[0]
    batch = collator([first])
    video_id = video_token_id(processor, model.config) if takes_video(processor) else None
    image_tokens = _image_tokens(processor, model, video_id)
    # Counted as `validate` counts them: only the positions that image or video features replace, so
    # wrapper tokens such as InternVL's <img> and </img> count as text in both.
    feature_ids = {image_token_id(processor, model.config), video_id} - {None}
    input_ids = batch["input_ids"][0][batch["attention_mask"][0] == 1].tolist()
    labels = batch["labels"][0][batch["attention_mask"][0] == 1].tolist()
    tokenizer = getattr(processor, "tokenizer", processor)
    family = family_for(model_type)
    return Plan(
        model=config.model.model,
        model_class=model_class,
        model_type=model_type,
        family=f"{family.name} family handling" if family else "generic path, no family-specific handling",
        method=config.finetune.method,
        components=components,
        counts=count_parameters(trained, components),
        lora_pattern=lora_pattern,
        lora_layers=lora_layers,
        image_tokens=image_tokens,
        sample_source=first.source,
        sample_tokens=[
            (tokenizer.decode([token_id], skip_special_tokens=False), label != IGNORE_INDEX)
            for token_id, label in zip(input_ids, labels, strict=True)
        ],
        sample_image_tokens=sum(1 for token_id in input_ids if token_id in feature_ids),
        sample_supervised_tokens=sum(1 for label in labels if label != IGNORE_INDEX),
    )


def _image_tokens(processor: Any, model: nn.Module, video_id: int | None) -> dict[str, int]:
    """Collect the processor's image token ids (several for Pixtral's rows), else the model's, plus
    `video_id` when the model takes video."""
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = list(getattr(processor, "image_token_ids", None) or [])
    if not ids:
        for source in (processor, model.config):
            token_id = getattr(source, "image_token_id", None)
            if token_id is not None:
                ids.append(token_id)
                break
    if video_id is not None:
        ids.append(video_id)
    return {tokenizer.convert_ids_to_tokens(int(token_id)): int(token_id) for token_id in dict.fromkeys(ids)}


def format_plan(plan: Plan, color: bool = False) -> str:
    """Format the plan for a terminal; supervised tokens are green with `color`, else in [[...]]."""
    lines = [
        f"Model: {plan.model} ({plan.model_class}, model_type={plan.model_type}; {plan.family})",
        f"Method: {plan.method}",
        "",
        "Components (trainable / total parameters):",
    ]
    for component in COMPONENTS:
        total = plan.counts.total[component]
        if not total:
            continue
        paths = getattr(plan.components, component, None) or ["(parameters outside the components)"]
        lines.append(f"  {component:<15}{plan.counts.trainable[component]:>12,} / {total:>12,}  {', '.join(paths)}")
    trainable = sum(plan.counts.trainable.values())
    total = sum(plan.counts.total.values())
    lines.append(f"  {'all':<15}{trainable:>12,} / {total:>12,}")
    lines.append("")
    if plan.lora_pattern is not None:
        lines.append(f"LoRA targets: {plan.lora_layers} linear layers matching {plan.lora_pattern}")
    else:
        lines.append("LoRA targets: none (no adapter on the language model)")
    tokens = ", ".join(f"{text} (id {token_id})" for text, token_id in plan.image_tokens.items()) or "none"
    lines.append(f"Image tokens (video tokens included): {tokens}")
    lines.append("")
    lines.append(
        f"First training sample ({plan.sample_source}): {len(plan.sample_tokens)} tokens, "
        f"{plan.sample_image_tokens} image tokens, {plan.sample_supervised_tokens} supervised"
    )
    open_mark, close_mark = (ANSI_SUPERVISED, ANSI_RESET) if color else (SUPERVISED_OPEN, SUPERVISED_CLOSE)
    lines.append(highlight(plan.sample_tokens, set(plan.image_tokens), open_mark, close_mark))
    return "\n".join(lines)


def highlight(tokens: list[tuple[str, bool]], image_tokens: set[str], open_mark: str, close_mark: str) -> str:
    """Join decoded tokens, wrapping supervised runs in the marks and shortening runs of an image token.

    A run of the same image token is written once with its count (`<image>*64`), so a sample with
    hundreds of image tokens stays readable.
    """
    pieces: list[str] = []
    supervised_run = False
    index = 0
    while index < len(tokens):
        token, supervised = tokens[index]
        if supervised != supervised_run:
            pieces.append(open_mark if supervised else close_mark)
            supervised_run = supervised
        run = 1
        if token in image_tokens:
            while index + run < len(tokens) and tokens[index + run] == (token, supervised):
                run += 1
        pieces.append(f"{token}*{run}" if run > 1 else token)
        index += run
    if supervised_run:
        pieces.append(close_mark)
    return "".join(pieces)


def describe(config: TrainConfig, color: bool = False) -> str:
    """Build and format the plan of a training configuration."""
    return format_plan(build_plan(config), color=color)
