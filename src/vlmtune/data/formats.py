"""Record formats: one dataset row or JSON object turned into a `Sample`.

Three forms are recognised, per record unless a format is forced:

* messages: `{"messages": [{"role", "content"}...], "images": [...]?, "videos": [...]?}` in the
  content-parts form;
* sharegpt: the ShareGPT / LLaVA form `{"conversations": [{"from", "value"}...], "image" | "images",
  "video" | "videos"}` with one `<image>` or `<video>` placeholder in the text per image or video;
* prompt_answer: columns `image`/`images`, `video`/`videos`, `question`/`prefix`/`prompt`/`query`
  and `answer`/`suffix`/`response`, as in VQA and PaliGemma-style datasets.

A `videos` column lists videos; a `video` column contains one. Either way a video is a file or a list
of frames.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vlmtune.data.errors import DataError, counted
from vlmtune.data.messages import (
    check_supervised_turn,
    normalize_messages,
    resolve_image_reference,
    resolve_video_reference,
)
from vlmtune.data.schema import Sample

FORMATS = ("messages", "sharegpt", "prompt_answer")

SHAREGPT_PLACEHOLDER = "<image>"
SHAREGPT_VIDEO_PLACEHOLDER = "<video>"
_SHAREGPT_SPLIT = re.compile(f"({re.escape(SHAREGPT_PLACEHOLDER)}|{re.escape(SHAREGPT_VIDEO_PLACEHOLDER)})")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}
PROMPT_KEYS = ("question", "prefix", "prompt", "query")
ANSWER_KEYS = ("answer", "suffix", "response", "answers")
IMAGE_KEYS = ("images", "image")


def detect_format(record: dict[str, Any]) -> str | None:
    """Return the format of `record`, or None when it matches none."""
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if any(key in record for key in PROMPT_KEYS) and any(key in record for key in ANSWER_KEYS):
        return "prompt_answer"
    return None


def record_to_sample(record: Any, where: str, image_root: Path, data_format: str = "auto") -> Sample:
    """Turn one record into a `Sample`. `data_format` is `auto` or one of FORMATS."""
    if not isinstance(record, dict):
        raise DataError(where, f"expected a JSON object (a mapping), got {type(record).__name__}.")
    found = detect_format(record) if data_format == "auto" else data_format
    if found is None:
        raise DataError(
            where,
            f"the record has none of the known layouts (keys: {', '.join(sorted(map(str, record)))}).",
            "Use `messages`, ShareGPT `conversations`, or question/answer columns (see --data-format).",
        )
    if found == "messages":
        if "messages" not in record:
            raise DataError(where, "expected a `messages` list.")
        sample = normalize_messages(
            record["messages"], where, image_root, _image_list(record, "images"), _video_list(record)
        )
    elif found == "sharegpt":
        sample = _sharegpt_sample(record, where, image_root)
    else:
        sample = _prompt_answer_sample(record, where, image_root)
    sample.format = found
    sample.answers = _extra_answers(record, where)
    return sample


def _extra_answers(record: dict[str, Any], where: str) -> list[str]:
    """Read the optional `answers` list: further acceptable answers for evaluation."""
    answers = record.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(answer, str) for answer in answers):
        raise DataError(where, "`answers` must be a list of strings (further acceptable answers).")
    return answers


def _image_list(record: dict[str, Any], *keys: str) -> list[Any] | None:
    for key in keys:
        value = record.get(key)
        if value is None:
            continue
        return list(value) if isinstance(value, list | tuple) else [value]
    return None


def _video_list(record: dict[str, Any]) -> list[Any] | None:
    """Return the record's videos: the `videos` list, or the single `video` (a file or a frame list)."""
    videos = record.get("videos")
    if videos is not None:
        return list(videos) if isinstance(videos, list | tuple) else [videos]
    video = record.get("video")
    return None if video is None else [video]


def _sharegpt_sample(record: dict[str, Any], where: str, image_root: Path) -> Sample:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise DataError(where, "`conversations` must be a non-empty list of {from, value} objects.")
    images = _image_list(record, *IMAGE_KEYS) or []
    videos = _video_list(record) or []
    texts = [str(turn.get("value", "")) for turn in turns if isinstance(turn, dict)]
    found = {
        noun: sum(text.count(placeholder) for text in texts)
        for noun, placeholder in (("image", SHAREGPT_PLACEHOLDER), ("video", SHAREGPT_VIDEO_PLACEHOLDER))
    }
    for noun, listed, other in (("image", images, "video"), ("video", videos, "image")):
        if found[noun] == len(listed):
            continue
        placeholder = f"<{noun}>"
        fix = f"Put one {placeholder} in the text for each {noun}, where the {noun} belongs."
        if listed and not found[noun] and found[other]:
            # A common slip: a video listed under `image`, or the reverse.
            fix = f"The text has {counted(found[other], f'<{other}> placeholder')}: list those under `{other}s`."
        raise DataError(
            where,
            f"the conversation has {counted(found[noun], f'{placeholder} placeholder')} but the record lists "
            f"{counted(len(listed), noun)}.",
            fix,
            kind="placeholder_mismatch",
        )

    messages = []
    image_iter = iter(images)
    video_iter = iter(videos)
    resolved = []
    resolved_videos = []
    for index, turn in enumerate(turns):
        turn_where = f"{where}: turn {index}"
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(turn_where, "each ShareGPT turn needs `from` and `value`.")
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise DataError(
                turn_where, f"unknown speaker {turn['from']!r}; use one of {', '.join(sorted(SHAREGPT_ROLES))}."
            )
        text = turn["value"]
        if not isinstance(text, str):
            raise DataError(turn_where, "`value` must be a string.")
        if role == "assistant" and (SHAREGPT_PLACEHOLDER in text or SHAREGPT_VIDEO_PLACEHOLDER in text):
            raise DataError(turn_where, "assistant turns cannot contain images or videos.", kind="placeholder_mismatch")

        parts: list[dict[str, Any]] = []
        # Split on the placeholders and drop the newline that usually follows one, so the text reads
        # as the chat template expects around an image or video.
        after_placeholder = False
        for piece in _SHAREGPT_SPLIT.split(text):
            if piece == SHAREGPT_PLACEHOLDER:
                resolved.append(resolve_image_reference(next(image_iter), image_root, turn_where))
                parts.append({"type": "image"})
            elif piece == SHAREGPT_VIDEO_PLACEHOLDER:
                resolved_videos.append(resolve_video_reference(next(video_iter), image_root, turn_where))
                parts.append({"type": "video"})
            else:
                text_piece = piece.removeprefix("\n") if after_placeholder else piece
                if text_piece:
                    parts.append({"type": "text", "text": text_piece})
            after_placeholder = piece in (SHAREGPT_PLACEHOLDER, SHAREGPT_VIDEO_PLACEHOLDER)
        messages.append({"role": role, "content": parts})

    sample = Sample(messages=messages, images=resolved, videos=resolved_videos, source=where)
    check_supervised_turn(sample)
    return sample


def _first_value(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((record[key] for key in keys if record.get(key) is not None), None)


def _prompt_answer_sample(record: dict[str, Any], where: str, image_root: Path) -> Sample:
    prompt = _first_value(record, PROMPT_KEYS)
    answer = _first_value(record, ANSWER_KEYS)
    if isinstance(answer, list) and answer and all(isinstance(item, str) for item in answer):
        # VQA datasets list several reference answers; the first is the one to train on.
        answer = answer[0]
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        # CSV and parquet readers infer numeric columns, and a numeric answer such as a count is common.
        answer = str(answer)
    if not isinstance(prompt, str) or not isinstance(answer, str):
        raise DataError(
            where,
            f"expected a string question ({'/'.join(PROMPT_KEYS)}) and a string answer ({'/'.join(ANSWER_KEYS)}).",
        )
    images = _image_list(record, *IMAGE_KEYS) or []
    resolved = [resolve_image_reference(image, image_root, where) for image in images]
    videos = [resolve_video_reference(video, image_root, where) for video in _video_list(record) or []]
    user = [{"type": "image"} for _ in resolved] + [{"type": "video"} for _ in videos]
    user.append({"type": "text", "text": prompt})
    messages = [
        {"role": "user", "content": user},
        {"role": "assistant", "content": [{"type": "text", "text": answer}]},
    ]
    sample = Sample(messages=messages, images=resolved, videos=videos, source=where)
    check_supervised_turn(sample)
    return sample
