"""On-disk cache of per-sample validation results, so re-validating unchanged data is instant.

A result is stored under a key built from the sample's messages and the identity of each image:
path, size and modification time for files, a digest for bytes and decoded images, and the URL
itself for URLs. The results live in a file named after a fingerprint of the processor, the
collator and the image and length options. Any change to those gives a different file, so a stale result is never
reused for a changed processor or option.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from PIL import Image

from vlmtune.data.schema import Sample, VideoSource
from vlmtune.paths import cache_root
from vlmtune.validation.checks import CheckSettings, SampleResult

logger = logging.getLogger(__name__)

CACHE_VERSION = 3
"""Version of the cached result layout. Increase it when a result's meaning changes, so older cache files go unused."""

# NOTE: only validation results are cached. Decoded and resized images and tokenized tensors are
# produced again during training, in the DataLoader workers (--dataloader-workers).


def settings_fingerprint(settings: CheckSettings) -> str:
    """Return a digest of everything besides the sample that a validation result depends on."""
    collator = settings.collator
    processor = collator.processor
    tokenizer = getattr(processor, "tokenizer", processor)
    digest = hashlib.sha256()
    parts: list[Any] = [
        CACHE_VERSION,
        type(collator).__qualname__,
        getattr(collator, "stop_strings", None),
        settings.max_length,
        settings.image_token_id,
        settings.image_token,
        settings.video_token_id,
        settings.video_token,
        dataclasses.asdict(settings.image_options),
        processor.to_json_string() if hasattr(processor, "to_json_string") else repr(processor),
        getattr(processor, "chat_template", None),
        getattr(tokenizer, "chat_template", None),
        len(tokenizer),
    ]
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Padding and truncation are per-call state that the tokenizer keeps from its last call.
        state = json.loads(backend.to_str())
        state.pop("padding", None)
        state.pop("truncation", None)
        digest.update(json.dumps(state, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def sample_key(sample: Sample) -> str:
    """Return a digest of the sample's content and its images' identities."""
    digest = hashlib.sha256()
    digest.update(json.dumps([sample.format, sample.messages], sort_keys=True).encode())
    for image in sample.images:
        digest.update(b"\0" + _image_identity(image).encode())
    for video in sample.videos:
        digest.update(b"\1" + _video_identity(video).encode())
    return digest.hexdigest()


def _video_identity(video: Any) -> str:
    if isinstance(video, VideoSource):
        sources = [video.file] if video.file is not None else list(video.frames)
        return json.dumps([video.fps, [_image_identity(source) for source in sources]])
    # A video decoded in memory (tests, chat) has no identity cheaper than its frames.
    return "frames:" + hashlib.sha256(video.frames.tobytes()).hexdigest()


def _image_identity(image: Any) -> str:
    if isinstance(image, bytes):
        return "bytes:" + hashlib.sha256(image).hexdigest()
    if isinstance(image, Image.Image):
        return f"pil:{image.mode}:{image.size}:" + hashlib.sha256(image.tobytes()).hexdigest()
    if isinstance(image, Path):
        try:
            stat = image.stat()
        except OSError:
            return f"path:{image}:missing"
        return f"path:{image}:{stat.st_size}:{stat.st_mtime_ns}"
    # NOTE: a URL is identified by its text alone, so a server that changes the image behind the same
    # URL keeps the old result (the download cache keeps the old file too).
    return f"text:{image}"


class ResultCache:
    """Results of one settings fingerprint, read once and written back after the pass."""

    def __init__(self, settings: CheckSettings, folder: Path | None = None):
        self.path = (folder or cache_root() / "validation") / f"{settings_fingerprint(settings)}.json"
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            try:
                self.entries = json.loads(self.path.read_text())
            except (json.JSONDecodeError, OSError):
                # A damaged cache file only costs a fresh pass.
                self.entries = {}

    def get(self, key: str, sample: Sample) -> SampleResult | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        return SampleResult(source=sample.source, **entry)

    def put(self, key: str, result: SampleResult) -> None:
        entry = dataclasses.asdict(result)
        entry.pop("source")
        self.entries[key] = entry

    def save(self) -> None:
        partial = self.path.with_name(f"{self.path.name}.{os.getpid()}.part")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(self.entries))
            partial.replace(self.path)
        except OSError as error:
            # The results are already in hand, so an unwritable cache only costs the next run a full pass.
            logger.warning(
                "Validation cache %s not written (%s); the next run validates every sample again.", self.path, error
            )
