"""Which tokens are supervised: assistant answers plus the end-of-turn token, found from the chat template.

Nothing here knows a model family. The assistant spans come from rendering the conversation with
the model's own chat template:

* an assistant turn starts where the template's generation prompt for that turn ends, that is at
  `len(render(messages[:i], add_generation_prompt=True))`;
* it ends after the first stop token (the model's end-of-turn or end-of-sequence token, taken from
  its generation config and tokenizer) that follows the turn's start.

Spans are character ranges of the rendered text; `token_labels` turns them into per-token labels
using the tokenizer's offset mapping, so image-token expansion and BPE merges need no special cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

IGNORE_INDEX = -100
"""Label value that the loss skips (PyTorch cross-entropy's default ignore_index)."""

# Appended to find an end-of-turn token that a template writes at the start of the next message.
_PROBE_MESSAGE = {"role": "user", "content": [{"type": "text", "text": "probe"}]}

Renderer = Callable[[list[dict[str, Any]], bool], str]
"""Render messages with the chat template; the flag is add_generation_prompt."""


class LabelError(ValueError):
    """A conversation whose assistant tokens cannot be located in the rendered chat template."""


@dataclass(frozen=True)
class RenderedConversation:
    text: str
    """The conversation as the chat template renders it, extended up to the last stop token when
    the template writes that token at the start of the next message."""

    spans: list[tuple[int, int]]
    """Character ranges of `text` that are supervised, one per assistant turn."""


def render_supervised(
    messages: list[dict[str, Any]],
    render: Renderer,
    stop_strings: Sequence[str],
    where: str = "<sample>",
) -> RenderedConversation:
    """Render `messages` and find the supervised character span of every assistant turn.

    `stop_strings` are the text forms of the tokens that end a model turn. Raises `LabelError`
    when an assistant turn cannot be located or has no stop token after it, because training on
    such a sample would teach the model to never stop.
    """
    if not stop_strings:
        raise LabelError(
            "the model defines no end-of-turn token (generation_config.eos_token_id and tokenizer.eos_token "
            "are unset), so the end of an answer cannot be supervised. Set eos_token_id in the model's "
            "generation_config.json."
        )
    full_text = render(messages, False)
    # Some templates write the end-of-turn token only when a next message follows. Rendering one more
    # user message exposes it; the text is cut after the last stop token again below.
    probe_text = render([*messages, _PROBE_MESSAGE], False)
    text = probe_text if probe_text.startswith(full_text) else full_text

    spans: list[tuple[int, int]] = []
    search_from = 0
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = _turn_start(messages, index, render, text, search_from, where)
        end = _first_stop_end(text, start, stop_strings)
        if end is None:
            raise LabelError(
                f"{where}: no end-of-turn token ({', '.join(stop_strings)}) follows assistant message {index} "
                "in the rendered chat template, so the model would not learn to stop. Use a chat template that "
                "ends assistant turns with the model's eos token."
            )
        spans.append((start, end))
        search_from = end

    if not spans:
        raise LabelError(f"{where}: the conversation has no assistant message to supervise.")
    last_end = spans[-1][1]
    final_text = full_text if last_end <= len(full_text) else text[:last_end]
    return RenderedConversation(text=final_text, spans=spans)


def _turn_start(
    messages: list[dict[str, Any]],
    index: int,
    render: Renderer,
    text: str,
    search_from: int,
    where: str,
) -> int:
    prompt = render(messages[:index], True)
    if text.startswith(prompt) and len(prompt) >= search_from:
        return len(prompt)
    # A template may render earlier turns differently once later turns exist (some drop reasoning
    # from past answers). Fall back to locating the answer text itself after the previous turn.
    answer = "".join(part["text"] for part in messages[index]["content"] if part["type"] == "text").strip()
    position = text.find(answer, search_from) if answer else -1
    if position < 0:
        raise LabelError(
            f"{where}: assistant message {index} cannot be located in the rendered chat template; the template "
            "may rewrite or drop the answer text."
        )
    return position


def _first_stop_end(text: str, start: int, stop_strings: Sequence[str]) -> int | None:
    ends = [position + len(stop) for stop in stop_strings if (position := text.find(stop, start)) >= 0]
    return min(ends) if ends else None


def token_labels(
    input_ids: Sequence[int],
    offsets: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
) -> list[int]:
    """Label each token with its id if it starts inside a supervised span, else `IGNORE_INDEX`.

    `offsets` are character ranges in the rendered text (not in an image-expanded text), with
    (0, 0) or None for tokens that do not come from the text, such as padding, an automatically
    added BOS token, or image tokens.
    """
    labels = []
    for token_id, offset in zip(input_ids, offsets, strict=True):
        if offset is None or offset[1] <= offset[0]:
            labels.append(IGNORE_INDEX)
            continue
        start = offset[0]
        supervised = any(span_start <= start < span_end for span_start, span_end in spans)
        labels.append(int(token_id) if supervised else IGNORE_INDEX)
    return labels


def map_expanded_offsets(
    offsets: Sequence[tuple[int, int]],
    replacements: Sequence[dict[str, Any]],
) -> list[tuple[int, int] | None]:
    """Map token offsets in the processor's image-expanded text back to the rendered text.

    `replacements` is what a transformers processor returns as `text_replacement_offsets`: for each
    image placeholder, its `span` in the rendered text and its `new_span` in the expanded text.
    Tokens inside an expansion map to None because they are never supervised.
    """
    ordered = sorted(replacements, key=lambda item: item["new_span"][0])
    mapped: list[tuple[int, int] | None] = []
    for start, end in offsets:
        if end <= start:
            mapped.append(None)
            continue
        shift = 0
        inside_expansion = False
        for item in ordered:
            new_start, new_end = item["new_span"]
            if start >= new_end:
                shift += (new_end - new_start) - (item["span"][1] - item["span"][0])
            elif end > new_start:
                inside_expansion = True
                break
            else:
                break
        mapped.append(None if inside_expansion else (start - shift, end - shift))
    return mapped


def align_offsets(
    expanded_ids: Sequence[int],
    text_ids: Sequence[int],
    text_offsets: Sequence[tuple[int, int]],
) -> list[tuple[int, int] | None]:
    """Map each token of an image-expanded sequence to its offsets in the rendered text, by token ids.

    For processors that cannot return `text_replacement_offsets`: `text_ids` and `text_offsets`
    come from tokenizing the rendered text without image expansion. Image placeholders are special
    tokens, so the text between them tokenizes identically in both sequences; matching runs of ids
    map one to one, and every expanded token outside them (image tokens, padding) maps to None.
    """
    mapped: list[tuple[int, int] | None] = [None] * len(expanded_ids)
    matcher = SequenceMatcher(None, list(text_ids), list(expanded_ids), autojunk=False)
    for text_start, expanded_start, size in matcher.get_matching_blocks():
        for step in range(size):
            mapped[expanded_start + step] = tuple(text_offsets[text_start + step])
    return mapped
