"""The standard sample: a conversation in the content-parts form plus its images and videos in order.

Every reader turns its format into `Sample`, so collation, validation and evaluation deal with one
shape. In `messages`, an image is a bare `{"type": "image"}` part (what chat templates expect) and
the image itself is the matching entry of `images`, in order of appearance. Videos work the same
way with `{"type": "video"}` parts and `videos`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

ImageSource = Path | Image.Image | bytes | str
"""A local path, an already decoded image, raw encoded bytes, or a URL or data URI."""


@dataclass(frozen=True)
class VideoSource:
    """One video: a video file, or its frames as separate images. Exactly one of the two is set."""

    file: Path | str | bytes | None = None
    """A video file (mp4, webm, mkv, avi, mov, ...): a local path, an http(s) URL or the encoded bytes."""

    frames: tuple[ImageSource, ...] = ()
    """The video's frames in order, each a local path, URL, data URI, bytes or decoded image."""

    fps: float | None = None
    """Frames per second of `frames`, which sets the timestamps that some models (Qwen3-VL,
    SmolVLM) show. None: the configured `video_fps`. Ignored for files, which carry their own."""


@dataclass
class DecodedVideo:
    """Frames ready for a video processor, plus what the processor needs to know about their timing."""

    frames: Any
    """uint8 array of shape (frames, height, width, 3)."""

    metadata: dict[str, Any]
    """transformers video metadata: total_num_frames, fps, duration, frames_indices, height, width."""


ROLES = ("system", "user", "assistant")


@dataclass
class Sample:
    messages: list[dict[str, Any]]
    """Conversation turns: {"role": ..., "content": [{"type": "text", "text": ...} | {"type": "image"}]}."""

    images: list[ImageSource] = field(default_factory=list)
    """One entry per image part in `messages`, in order."""

    videos: list[VideoSource | DecodedVideo] = field(default_factory=list)
    """One entry per video part in `messages`, in order; decoded when the sample is read for training."""

    source: str = "<memory>"
    """Location of the sample, as `file:line`, for error messages."""

    answers: list[str] = field(default_factory=list)
    """Further acceptable answers for evaluation besides the last assistant message (the data's
    optional `answers` list, e.g. the ten annotator answers of a VQA sample)."""

    format: str = "messages"
    """The record format it was read from (messages, sharegpt, prompt_answer), for the data report."""

    image_options: Any = None
    """Limits and download settings for this sample's images (a `vlmtune.data.images.ImageOptions`),
    set by the loader so that training and evaluation decode alike. None: the defaults."""

    def assistant_indices(self) -> list[int]:
        """Return the positions of the assistant messages."""
        return [i for i, message in enumerate(self.messages) if message["role"] == "assistant"]

    def prompt_messages(self) -> list[dict[str, Any]]:
        """Return the conversation up to (not including) its last assistant message."""
        last = self.assistant_indices()[-1]
        return self.messages[:last]

    def prompt_images(self) -> list[ImageSource]:
        """Return the images referenced by `prompt_messages`."""
        count = sum(count_image_parts(message) for message in self.prompt_messages())
        return self.images[:count]

    def prompt_videos(self) -> list[VideoSource | DecodedVideo]:
        """Return the videos referenced by `prompt_messages`."""
        count = sum(count_parts(message, "video") for message in self.prompt_messages())
        return self.videos[:count]

    def has_media(self) -> bool:
        """Return whether the sample has any image or video."""
        return bool(self.images or self.videos)

    def reference_answer(self) -> str:
        """Return the text of the last assistant message, the answer evaluation compares against."""
        return message_text(self.messages[self.assistant_indices()[-1]])

    def reference_answers(self) -> list[str]:
        """Return every acceptable answer: the last assistant message first, then `answers`."""
        return [self.reference_answer(), *self.answers]


def message_text(message: dict[str, Any]) -> str:
    """Join the text parts of one message."""
    return "".join(part["text"] for part in message["content"] if part["type"] == "text")


def count_parts(message: dict[str, Any], kind: str) -> int:
    """Count the parts of one message whose type is `kind` (`image` or `video`)."""
    return sum(1 for part in message["content"] if part["type"] == kind)


def count_image_parts(message: dict[str, Any]) -> int:
    """Count the image parts of one message."""
    return count_parts(message, "image")
