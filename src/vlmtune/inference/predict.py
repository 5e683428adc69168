"""Batch prediction for a JSONL dataset or a folder of images asked one prompt."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vlmtune.config import ConfigError, PredictConfig
from vlmtune.data.errors import DataError
from vlmtune.data.loading import read_samples
from vlmtune.data.media_settings import load_media_settings, with_media_settings
from vlmtune.data.schema import Sample
from vlmtune.evaluation.generation import generate_answers, prediction_records
from vlmtune.evaluation.report import generation_settings, write_predictions
from vlmtune.models.adapters import load_for_inference
from vlmtune.outputs import require_new_file

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def question_sample(image: str | Path | None, prompt: str, source: str) -> Sample:
    """Return a sample that asks `prompt` about `image`, ending in the (empty) turn to answer."""
    content: list[dict[str, Any]] = [{"type": "image"}] if image is not None else []
    content.append({"type": "text", "text": prompt})
    messages = [{"role": "user", "content": content}, {"role": "assistant", "content": []}]
    return Sample(messages=messages, images=[Path(image)] if image is not None else [], source=source)


def image_folder_samples(folder: str | Path, prompt: str) -> list[Sample]:
    """Return one question sample per image in `folder` (sorted by name, subfolders not searched)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(str(folder), "image folder not found.", "Check the --images path.")
    paths = sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(
            str(folder), f"the folder contains no images ({', '.join(IMAGE_SUFFIXES)}).", "Check the --images path."
        )
    return [question_sample(path, prompt, str(path)) for path in paths]


def _samples(config: PredictConfig) -> tuple[list[Sample], bool]:
    """Return the samples to answer and whether they carry reference answers."""
    if bool(config.data) == bool(config.images):
        raise ConfigError("predict needs exactly one of --data FILE.jsonl or --images FOLDER.")
    if config.images:
        if not config.prompt:
            raise ConfigError("--images needs --prompt, the question asked about every image.")
        return image_folder_samples(config.images, config.prompt), False
    if config.prompt:
        raise ConfigError("--prompt applies to --images only; a --data file has its own prompts.")
    return read_samples(config.data, config.image_root), True


def run_prediction(config: PredictConfig) -> list[dict[str, Any]]:
    """Answer every sample and write one JSON line per sample to `config.output`."""
    samples, has_references = _samples(config)
    if not config.output:
        raise ConfigError("predict needs --output FILE.jsonl for the predictions.")
    output = require_new_file(config.output, "--output")
    loaded = load_for_inference(config.model, config.base_model)
    samples = with_media_settings(samples, load_media_settings(config.model.model))
    logger.info("Predicting %d samples with %s", len(samples), loaded.source)
    predictions = generate_answers(
        loaded.model,
        loaded.processor,
        samples,
        batch_size=config.generation.batch_size,
        settings=generation_settings(config.generation),
        progress=True,
    )
    if has_references:
        records = prediction_records(samples, predictions)
    else:
        records = [
            {"source": sample.source, "prompt": config.prompt, "prediction": prediction}
            for sample, prediction in zip(samples, predictions, strict=True)
        ]
    write_predictions(output, records)
    print(f"{len(records)} predictions: {output}")
    return records
