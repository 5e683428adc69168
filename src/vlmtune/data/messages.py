"""Normalising conversations in the OpenAI / Hugging Face content-parts form into `Sample`s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from vlmtune.data.errors import DataError, counted
from vlmtune.data.schema import ROLES, ImageSource, Sample, VideoSource

REMOTE_PREFIXES = ("http://", "https://", "data:")


def resolve_image_reference(reference: Any, image_root: Path, where: str) -> ImageSource:
    """Turn an image reference from a data file into an `ImageSource`.

    Relative paths are resolved against `image_root`, and URLs and data URIs are kept as strings.
    Raw bytes and PIL images are kept as they are. From the Hugging Face `Image` feature's undecoded
    `{"bytes", "path"}` form the bytes win, because the path is often only a file name.
    """
    if isinstance(reference, bytes | Image.Image):
        return reference
    if isinstance(reference, dict):
        if isinstance(reference.get("bytes"), bytes):
            return reference["bytes"]
        reference = reference.get("url") or reference.get("path")
    if not isinstance(reference, str) or not reference:
        raise DataError(where, f"image reference {reference!r} is not a path or URL string.")
    if reference.startswith(REMOTE_PREFIXES):
        return reference
    path = Path(reference).expanduser()
    return path if path.is_absolute() else image_root / path


def resolve_video_reference(reference: Any, image_root: Path, where: str, fps: Any = None) -> VideoSource:
    """Turn a video reference from a data file into a `VideoSource`.

    A list is the video's frames, each resolved like an image reference. Anything else is a video
    file, also resolved like an image reference (a path, a URL, bytes or the `{"bytes", "path"}` form).
    """
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0):
        raise DataError(where, f"a video's `fps` must be a positive number, got {fps!r}.")
    if isinstance(reference, list | tuple):
        if not reference:
            raise DataError(where, "a video given as frames needs at least one frame.", kind="missing_image")
        frames = tuple(resolve_image_reference(frame, image_root, where) for frame in reference)
        return VideoSource(frames=frames, fps=None if fps is None else float(fps))
    if isinstance(reference, Image.Image):
        raise DataError(where, "a video must be a file or a list of frames, not a single image.")
    return VideoSource(file=resolve_image_reference(reference, image_root, where))


def normalize_messages(
    raw_messages: Any,
    where: str,
    image_root: Path,
    sample_images: list[Any] | None = None,
    sample_videos: list[Any] | None = None,
) -> Sample:
    """Validate `raw_messages` and return a `Sample` with bare image and video parts and their lists.

    An image part either carries its own source (`{"type": "image", "image": "a.png"}`, or the
    OpenAI form `{"type": "image_url", "image_url": {"url": ...}}`) or is bare and takes the next
    entry of `sample_images` (the `images` column that many Hub datasets have). Video parts work the
    same way with `{"type": "video", "video": "clip.mp4" | ["f0.png", ...], "fps": 2}` and
    `sample_videos`.
    """
    if not isinstance(raw_messages, list) or not raw_messages:
        raise DataError(where, "`messages` must be a non-empty list of {role, content} objects.")

    pending_images = list(sample_images or [])
    pending_videos = list(sample_videos or [])
    messages: list[dict[str, Any]] = []
    images: list[ImageSource] = []
    videos: list[VideoSource] = []
    for index, raw in enumerate(raw_messages):
        message_where = f"{where}: message {index}"
        if not isinstance(raw, dict) or "role" not in raw or "content" not in raw:
            raise DataError(message_where, "each message needs `role` and `content`.")
        role = raw["role"]
        if role not in ROLES:
            raise DataError(message_where, f"unknown role {role!r}; use one of {', '.join(ROLES)}.")
        content = raw["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise DataError(message_where, "`content` must be a string or a list of parts.")

        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise DataError(message_where, "a text part needs a string `text`.")
                parts.append({"type": "text", "text": part["text"]})
            elif kind in ("image", "image_url"):
                if role == "assistant":
                    raise DataError(message_where, "assistant messages cannot contain images.")
                inline = part.get("image") or part.get("image_url") or part.get("path") or part.get("url")
                if inline is None:
                    if not pending_images:
                        raise DataError(
                            message_where,
                            "an image part has no source and the sample's `images` list has no entry left for it.",
                            "Give each image part an `image` path or list one path per image part in `images`.",
                            kind="placeholder_mismatch",
                        )
                    inline = pending_images.pop(0)
                images.append(resolve_image_reference(inline, image_root, message_where))
                parts.append({"type": "image"})
            elif kind == "video":
                if role == "assistant":
                    raise DataError(message_where, "assistant messages cannot contain videos.")
                # An empty frame list is a source too (and an error), not a bare part.
                inline = next((part[key] for key in ("video", "path", "url") if part.get(key) is not None), None)
                if inline is None:
                    if not pending_videos:
                        raise DataError(
                            message_where,
                            "a video part has no source and the sample's `videos` list has no entry left for it.",
                            "Give each video part a `video` file or frame list, or list one per part in `videos`.",
                            kind="placeholder_mismatch",
                        )
                    inline = pending_videos.pop(0)
                videos.append(resolve_video_reference(inline, image_root, message_where, part.get("fps")))
                parts.append({"type": "video"})
            else:
                raise DataError(
                    message_where, f"unsupported content part {part!r}; use `text`, `image` or `video` parts."
                )
        messages.append({"role": role, "content": parts})

    if pending_images:
        raise DataError(
            where,
            f"the sample lists {counted(len(images) + len(pending_images), 'image')} but its messages have "
            f"{counted(len(images), 'image part')}.",
            'Add one {"type": "image"} part per image, where the image belongs in the conversation.',
            kind="placeholder_mismatch",
        )
    if pending_videos:
        raise DataError(
            where,
            f"the sample lists {counted(len(videos) + len(pending_videos), 'video')} but its messages have "
            f"{counted(len(videos), 'video part')}.",
            'Add one {"type": "video"} part per video, where the video belongs in the conversation.',
            kind="placeholder_mismatch",
        )
    sample = Sample(messages=messages, images=images, videos=videos, source=where)
    check_supervised_turn(sample)
    return sample


def check_supervised_turn(sample: Sample) -> None:
    """Raise unless the sample has an assistant message with text to learn from."""
    answers = [sample.messages[i] for i in sample.assistant_indices()]
    if not any(part["type"] == "text" and part["text"].strip() for message in answers for part in message["content"]):
        raise DataError(
            sample.source,
            "the sample has no assistant message with text, so there is nothing to train on.",
            "Add an assistant turn with the expected answer or remove the sample.",
            kind="no_supervised_token",
        )
