"""Opening images: every common source and mode converted to RGB, with errors that name the sample.

Sources are local paths, http(s) URLs (downloaded once into an on-disk cache), base64 data URIs,
raw encoded bytes and PIL images. Modes such as RGBA, palette, CMYK, grayscale and 16-bit are
converted to 8-bit RGB, EXIF orientation is applied and animated files give their first frame.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlmtune.data.errors import DataError
from vlmtune.data.schema import ImageSource
from vlmtune.paths import cache_root

URL_PREFIXES = ("http://", "https://")
DATA_URI_PREFIX = "data:"

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".wmv"})
"""File name endings that suggest a video given where an image was expected."""


@dataclass(frozen=True)
class ImageOptions:
    """Settings for fetching, checking and resizing images (video frames included) before the
    processor receives them, and for sampling frames from videos."""

    max_pixels: int | None = None
    """Downscale (keeping the aspect ratio) any image with more pixels than this."""

    min_pixels: int | None = None
    """Upscale (keeping the aspect ratio) any image with fewer pixels than this."""

    max_aspect_ratio: float = 50.0
    """Reject an image whose long side is more than this many times its short side."""

    decode_pixel_limit: int = 89_478_485
    """Reject a file whose header declares more pixels than this before decoding it, because a small
    compressed file can expand into gigabytes (a decompression bomb). The default is Pillow's own
    warning threshold."""

    url_timeout: float = 30.0
    """Seconds to wait for an http(s) image server."""

    url_max_bytes: int = 50_000_000
    """Largest http(s) image download accepted, in bytes."""

    url_cache_dir: str | None = None
    """Folder for downloaded images. None: <vlmtune cache>/images."""

    video_fps: float = 2.0
    """Frames sampled per second of a video file. Also the assumed rate of a video given as frames
    without its own `fps`. Higher: more frames and more tokens per second of video."""

    video_max_frames: int = 32
    """Maximum number of frames kept per video. A longer video is sampled evenly across its whole
    length instead."""


DEFAULT_OPTIONS = ImageOptions()


def load_image(source: ImageSource, where: str, options: ImageOptions = DEFAULT_OPTIONS) -> Image.Image:
    """Decode `source` into an RGB image with its EXIF orientation applied and the size limits enforced.

    `where` names the sample (file and line) in the `DataError` raised for a missing, unreadable or
    out-of-limits image.
    """
    image = source if isinstance(source, Image.Image) else _open(source, where, options)
    described = _describe(source)
    width, height = image.size
    if width * height > options.decode_pixel_limit:
        raise DataError(
            where,
            f"image {described} is {width}x{height} pixels, over the decoding limit of "
            f"{options.decode_pixel_limit} pixels.",
            "Shrink the file or raise --decode-pixel-limit if the image is genuine.",
            kind="image_size",
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        image = to_rgb(image)
    except (OSError, ValueError, SyntaxError) as error:
        raise DataError(
            where,
            f"image {described} cannot be decoded ({error}); the file may be truncated or corrupt.",
            "Replace or remove the file.",
            kind="corrupt_image",
        ) from error
    return resize_to_limits(image, described, where, options)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Transparent pixels are composited onto white because their stored colour is arbitrary, and
    16-bit or 32-bit grayscale is scaled to 8 bits rather than clipped (Pillow's own conversion
    clips values above 255, which turns most 16-bit scans white).
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        peak = 65535.0 if image.mode.startswith("I;16") or high > 255 else 255.0
        if image.mode == "F" and high <= 1.0 and low >= 0.0:
            peak = 1.0
        scaled = np.clip(pixels / peak * 255.0, 0, 255).round().astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_to_limits(image: Image.Image, described: str, where: str, options: ImageOptions) -> Image.Image:
    """Apply the aspect-ratio check and the min/max pixel limits, keeping the aspect ratio."""
    width, height = image.size
    ratio = max(width, height) / max(1, min(width, height))
    if ratio > options.max_aspect_ratio:
        raise DataError(
            where,
            f"image {described} is {width}x{height} pixels, an aspect ratio of {ratio:.1f}:1, over the "
            f"limit of {options.max_aspect_ratio:g}:1.",
            "Crop or pad the image, or raise --max-aspect-ratio.",
            kind="image_size",
        )
    pixels = width * height
    scale = 1.0
    if options.max_pixels is not None and pixels > options.max_pixels:
        scale = math.sqrt(options.max_pixels / pixels)
    elif options.min_pixels is not None and pixels < options.min_pixels:
        scale = math.sqrt(options.min_pixels / pixels)
    if scale == 1.0:
        return image
    # Rounding down when shrinking (and up when enlarging) keeps the result inside the limit.
    rounding = math.floor if scale < 1 else math.ceil
    size = (max(1, rounding(width * scale)), max(1, rounding(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _open(source: ImageSource, where: str, options: ImageOptions) -> Image.Image:
    stream: io.BytesIO | Path
    if isinstance(source, bytes):
        stream = io.BytesIO(source)
    elif isinstance(source, str) and source.startswith(DATA_URI_PREFIX):
        stream = io.BytesIO(decode_data_uri(source, where))
    elif isinstance(source, str) and source.startswith(URL_PREFIXES):
        stream = fetch_url(source, where, options)
    else:
        stream = Path(source)
        if not stream.is_file():
            raise DataError(
                where, f"image file {stream} not found.", "Check the path or set --image-root.", kind="missing_image"
            )
    try:
        return Image.open(stream)
    except Image.DecompressionBombError as error:
        raise DataError(
            where,
            f"image {_describe(source)} is too large to decode safely ({error}).",
            "Shrink the file.",
            kind="image_size",
        ) from error
    except (UnidentifiedImageError, OSError) as error:
        fix = "Replace or remove the file."
        if isinstance(source, str | Path) and Path(str(source)).suffix.lower() in VIDEO_SUFFIXES:
            fix = 'For a video, use a {"type": "video"} part (or the `video`/`videos` column) instead of an image.'
        raise DataError(
            where,
            f"image {_describe(source)} is not a readable image ({error}).",
            fix,
            kind="corrupt_image",
        ) from error


def decode_data_uri(uri: str, where: str) -> bytes:
    """Return the bytes of a `data:image/...;base64,...` URI."""
    header, separator, payload = uri.partition(",")
    if not separator or not header.endswith(";base64"):
        raise DataError(
            where,
            f"data URI {uri[:40]!r}... is not base64-encoded.",
            "Use the form data:image/png;base64,<data>.",
            kind="corrupt_image",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise DataError(
            where, f"data URI {header},... has invalid base64 data ({error}).", kind="corrupt_image"
        ) from error


def url_cache_path(url: str, options: ImageOptions) -> Path:
    """Return where the download of `url` is cached."""
    folder = Path(options.url_cache_dir) if options.url_cache_dir else cache_root() / "images"
    return folder / hashlib.sha256(url.encode()).hexdigest()


def fetch_url(url: str, where: str, options: ImageOptions) -> io.BytesIO:
    """Download `url` (or read it from the cache) with the configured timeout and size limit."""
    cached = url_cache_path(url, options)
    if cached.is_file():
        return io.BytesIO(cached.read_bytes())
    try:
        with urllib.request.urlopen(url, timeout=options.url_timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > options.url_max_bytes:
                raise _too_large(url, where, options)
            # One byte more than the limit tells an oversized body from one exactly at the limit.
            body = response.read(options.url_max_bytes + 1)
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise DataError(
            where,
            f"image URL {url} could not be downloaded ({reason}).",
            "Check the URL, or download the images and use local paths.",
            kind="missing_image",
        ) from error
    if len(body) > options.url_max_bytes:
        raise _too_large(url, where, options)
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Write under a unique name and rename, so parallel workers never read a half-written file.
    partial = cached.with_name(f"{cached.name}.{os.getpid()}.part")
    partial.write_bytes(body)
    partial.replace(cached)
    return io.BytesIO(body)


def _too_large(url: str, where: str, options: ImageOptions) -> DataError:
    return DataError(
        where,
        f"image URL {url} is larger than the download limit of {options.url_max_bytes} bytes.",
        "Raise --url-max-bytes or use a smaller image.",
        kind="image_size",
    )


def _describe(source: ImageSource) -> str:
    if isinstance(source, bytes):
        return f"<{len(source)} bytes>"
    if isinstance(source, Image.Image):
        return f"<{source.mode} image {source.size[0]}x{source.size[1]}>"
    if isinstance(source, str) and source.startswith(DATA_URI_PREFIX):
        return f"<data URI, {len(source)} characters>"
    return str(source)
