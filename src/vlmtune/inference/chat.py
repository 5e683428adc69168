"""Interactive terminal chat: one conversation with history, images and videos attached by path."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import torch

from vlmtune.data.errors import DataError
from vlmtune.data.images import DEFAULT_OPTIONS, ImageOptions, load_image
from vlmtune.data.schema import Sample, VideoSource
from vlmtune.data.videos import load_video
from vlmtune.evaluation.generation import GenerationSettings, generate_answers

HELP = (
    "Commands: /image PATH attaches an image to your next message, /video PATH a video file, /reset starts "
    "over, /quit leaves."
)
PROMPT = "you> "


class ChatSession:
    """The conversation so far: messages in the content-parts form and their images and videos in order."""

    def __init__(self, system: str | None = None, options: ImageOptions = DEFAULT_OPTIONS):
        self.system = system
        self.options = options
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict[str, Any]] = []
        if self.system:
            self.messages.append({"role": "system", "content": [{"type": "text", "text": self.system}]})
        self.images: list[Any] = []
        self.videos: list[Any] = []
        self.pending: list[tuple[str, Any]] = []

    def attach(self, path: str, kind: str = "image") -> None:
        """Attach the image or video at `path` to the next user message (checked now, so typos show at once)."""
        media_path = Path(path).expanduser()
        if kind == "video":
            video = VideoSource(file=media_path)
            self.pending.append(("video", load_video(video, "/video", self.options)))
        else:
            load_image(media_path, "/image", self.options)
            self.pending.append(("image", media_path))

    def user_turn(self, text: str) -> Sample:
        """Add a user message and return the sample whose answer is the model's reply."""
        content: list[dict[str, Any]] = []
        for kind, media in self.pending:
            content.append({"type": kind})
            (self.videos if kind == "video" else self.images).append(media)
        self.pending = []
        content.append({"type": "text", "text": text})
        self.messages.append({"role": "user", "content": content})
        turn = [*self.messages, {"role": "assistant", "content": []}]
        return Sample(
            messages=turn, images=list(self.images), videos=list(self.videos), source="chat", image_options=self.options
        )

    def undo_user_turn(self) -> None:
        """Remove the last user message and its media, after generation failed on it."""
        message = self.messages.pop()
        for kind, media in (("image", self.images), ("video", self.videos)):
            count = sum(1 for part in message["content"] if part["type"] == kind)
            del media[len(media) - count :]

    def assistant_turn(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})


def run_chat(
    model: torch.nn.Module,
    processor: Any,
    settings: GenerationSettings,
    input_stream: TextIO = sys.stdin,
    output_stream: TextIO = sys.stdout,
    image: str | None = None,
    system: str | None = None,
    options: ImageOptions = DEFAULT_OPTIONS,
) -> ChatSession:
    """Read lines from `input_stream` until /quit or end of input, answering each message.

    Returns the session, so callers (and tests) can inspect the conversation.
    """
    session = ChatSession(system, options)
    interactive = input_stream.isatty()

    def say(text: str) -> None:
        output_stream.write(text + "\n")
        output_stream.flush()

    say(HELP)
    if image:
        try:
            session.attach(image)
        except DataError as error:
            say(f"error: {error}")
    while True:
        if interactive:
            output_stream.write(PROMPT)
            output_stream.flush()
        line = input_stream.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/quit":
            break
        if text == "/reset":
            session.reset()
            say("(new conversation)")
            continue
        command = text.split()[0]
        if command in ("/image", "/video"):
            kind = command.removeprefix("/")
            path = text.removeprefix(command).strip()
            if not path:
                example = "photo.png" if kind == "image" else "clip.mp4"
                say(f"error: {command} needs a path, e.g. {command} {example}")
                continue
            try:
                session.attach(path, kind)
            except DataError as error:
                say(f"error: {error}")
                continue
            say(f"({kind} {path} attached to your next message)")
            continue
        if text.startswith("/"):
            say(f"error: unknown command {text.split()[0]}. {HELP}")
            continue
        sample = session.user_turn(text)
        try:
            answer = generate_answers(model, processor, [sample], batch_size=1, settings=settings)[0]
        except DataError as error:
            # The conversation stays as it was before this message, so the user can rephrase or /reset.
            session.undo_user_turn()
            say(f"error: the model cannot take this conversation: {error.problem} Use /reset to start over.")
            continue
        session.assistant_turn(answer)
        say(f"model> {answer}")
    return session
