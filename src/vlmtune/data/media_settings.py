"""The image and video preprocessing a model was trained with, saved next to it for inference.

Training writes the settings that change what the model receives (pixel limits and video frame
sampling) into its output folder. `evaluate`, `predict` and `chat` read them back, so a model
trained on 4 frames per second is not evaluated on 2. Download settings are left out, because they
belong to the machine, not to the model. `--processor-min-pixels`/`--processor-max-pixels` need no
entry, because they are stored in the saved processor's own config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from vlmtune.config import ConfigError
from vlmtune.data.images import DEFAULT_OPTIONS, ImageOptions
from vlmtune.data.schema import Sample

logger = logging.getLogger(__name__)

MEDIA_SETTINGS_FILE = "vlmtune_media.json"

SAVED_FIELDS = {
    "max_image_pixels": "max_pixels",
    "min_image_pixels": "min_pixels",
    "max_aspect_ratio": "max_aspect_ratio",
    "video_fps": "video_fps",
    "video_max_frames": "video_max_frames",
}
"""The `ImageOptions` fields that shape the model's input, keyed by the training option that sets each."""


def save_media_settings(folder: Path, options: ImageOptions) -> None:
    """Write the input-shaping fields of `options` into `folder`."""
    settings = {key: getattr(options, field) for key, field in SAVED_FIELDS.items()}
    (folder / MEDIA_SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")


def load_media_settings(model: str | Path) -> ImageOptions:
    """Return the settings saved with a local model or adapter folder, or the defaults when it has none."""
    path = Path(model) / MEDIA_SETTINGS_FILE
    if not path.is_file():
        return DEFAULT_OPTIONS
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON ({error}). Fix it or delete it to use the defaults.") from error
    if not isinstance(saved, dict):
        raise ConfigError(
            f"{path} must contain a JSON object, not {type(saved).__name__}. Fix it or delete it to use the defaults."
        )
    unknown = sorted(set(saved) - set(SAVED_FIELDS))
    if unknown:
        raise ConfigError(
            f"{path} has unknown keys {unknown}. Valid keys: {', '.join(SAVED_FIELDS)}. Fix it or delete it to "
            "use the defaults."
        )
    options = dataclasses.replace(DEFAULT_OPTIONS, **{SAVED_FIELDS[key]: value for key, value in saved.items()})
    logger.info(
        "Using the image and video settings saved in %s: video at %s fps, at most %d frames",
        path,
        options.video_fps,
        options.video_max_frames,
    )
    return options


def with_media_settings(samples: list[Sample], options: ImageOptions) -> list[Sample]:
    """Return `samples` set to decode their images and videos with `options`."""
    return [dataclasses.replace(sample, image_options=options) for sample in samples]
