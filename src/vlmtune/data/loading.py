"""Resolving the configured data into training and validation samples."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from vlmtune.config import DEMO, ConfigError, DataConfig
from vlmtune.data.errors import DataError
from vlmtune.data.images import ImageOptions
from vlmtune.data.mixing import mix_sources, split_validation
from vlmtune.data.schema import Sample
from vlmtune.data.sources import SourceRead, parse_data_spec, read_source

logger = logging.getLogger(__name__)

__all__ = ["LoadedData", "image_options", "load_data", "load_train_and_eval", "read_samples", "split_validation"]

MAX_LISTED_ERRORS = 20


@dataclass
class LoadedData:
    train: list[Sample]
    validation: list[Sample]
    rejected: dict[str, list[DataError]] = field(default_factory=dict)
    """Records that could not be turned into samples, by split (`train`, `validation`)."""

    data_files: list[Path] = field(default_factory=list)
    """Local files read, for the validation cache key."""


def image_options(config: DataConfig) -> ImageOptions:
    """Return the image limits, download settings and video sampling configured in `config`."""
    if config.video_fps <= 0 or config.video_max_frames < 1:
        raise ConfigError(
            f"--video-fps must be above 0 and --video-max-frames at least 1 (got {config.video_fps} and "
            f"{config.video_max_frames})."
        )
    return ImageOptions(
        max_pixels=config.max_image_pixels,
        min_pixels=config.min_image_pixels,
        max_aspect_ratio=config.max_aspect_ratio,
        decode_pixel_limit=config.decode_pixel_limit,
        url_timeout=config.url_timeout,
        url_max_bytes=config.url_max_bytes,
        video_fps=config.video_fps,
        video_max_frames=config.video_max_frames,
    )


def _read_all(spec_text: str, config: DataConfig) -> list[SourceRead]:
    return [read_source(spec, config.image_root, config.data_format) for spec in parse_data_spec(spec_text)]


def load_data(config: DataConfig, seed: int) -> LoadedData:
    """Read all sources, mix them by weight and split off validation; bad records are collected, not raised."""
    data_spec, eval_spec = config.data, config.eval_data
    if config.data == DEMO:
        from vlmtune.demo.data import write_digits_dataset

        train_path, validation_path = write_digits_dataset()
        data_spec = str(train_path)
        eval_spec = config.eval_data or str(validation_path)

    reads = _read_all(data_spec, config)
    weights = [read.spec.weight for read in reads]
    rejected = {"train": [problem for read in reads for problem in read.problems]}
    if eval_spec:
        eval_reads = _read_all(eval_spec, config)
        validation = [sample for read in eval_reads for sample in read.samples]
        rejected["validation"] = [problem for read in eval_reads for problem in read.problems]
        parts = [read.samples for read in reads]
    else:
        # The split is taken before mixing, so a repeated sample can never be in both splits.
        eval_reads = []
        tagged = [(index, sample) for index, read in enumerate(reads) for sample in read.samples]
        train_tagged, validation_tagged = split_validation(tagged, config.eval_fraction, seed)
        validation = [sample for _, sample in validation_tagged]
        parts = [[sample for index, sample in train_tagged if index == i] for i in range(len(reads))]
        rejected["validation"] = []
    options = image_options(config)
    for read in [*reads, *eval_reads]:
        for sample in read.samples:
            sample.image_options = options
    train = mix_sources(parts, weights, seed)
    if config.max_train_samples is not None:
        train = train[: config.max_train_samples]
    files = [path for read in [*reads, *eval_reads] for path in read.data_files]
    logger.info("Data: %d training samples, %d validation samples", len(train), len(validation))
    return LoadedData(train, validation, rejected, files)


def read_samples(spec_text: str, image_root: str | Path | None = None, data_format: str = "auto") -> list[Sample]:
    """Read every source of `spec_text` (any supported format) into samples, in order.

    Raises one `DataError` listing the records that cannot be read, so evaluation and prediction
    accept the same data as training but never silently skip a sample.
    """
    reads = [read_source(spec, image_root, data_format) for spec in parse_data_spec(spec_text)]
    problems = [problem for read in reads for problem in read.problems]
    if problems:
        listed = "\n  ".join(map(str, problems[:MAX_LISTED_ERRORS]))
        raise DataError(spec_text, f"{len(problems)} records cannot be read:\n  {listed}")
    return [sample for read in reads for sample in read.samples]


def load_train_and_eval(config: DataConfig, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Read the training and validation samples, raising one `DataError` that lists unreadable records."""
    loaded = load_data(config, seed)
    problems = [error for errors in loaded.rejected.values() for error in errors]
    if problems:
        raise DataError(
            "data", f"{len(problems)} records cannot be read:\n  " + "\n  ".join(map(str, problems[:MAX_LISTED_ERRORS]))
        )
    return loaded.train, loaded.validation
