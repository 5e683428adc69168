"""Opening images: every common mode converted to RGB, with errors that name the sample."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from vlmtune.data.errors import DataError
from vlmtune.data.schema import ImageSource


def load_image(source: ImageSource, where: str) -> Image.Image:
    """Decode `source` into an RGB image with its EXIF orientation applied.

    `where` names the sample (file and line) in the error raised for a missing or unreadable image.
    """
    image = source if isinstance(source, Image.Image) else _open(source, where)
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except (OSError, ValueError) as error:
        raise DataError(
            where, f"image {_describe(source)} cannot be decoded ({error}).", "Replace or remove the file."
        ) from error


def _open(source: ImageSource, where: str) -> Image.Image:
    if isinstance(source, bytes):
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        stream = Path(source)
        if not stream.is_file():
            raise DataError(where, f"image file {stream} not found.", "Check the path or set --image-root.")
    try:
        return Image.open(stream)
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(
            where, f"image {_describe(source)} is not a readable image ({error}).", "Replace or remove the file."
        ) from error


def _describe(source: ImageSource) -> str:
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<{source.mode} image {source.size[0]}x{source.size[1]}>"
    return str(source)
