"""Pixel limits applied with the aspect ratio kept, extreme shapes and decompression bombs rejected."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

from vlmtune.config import ConfigError
from vlmtune.data.errors import DataError
from vlmtune.data.images import ImageOptions, load_image
from vlmtune.data.processor_options import apply_processor_pixel_bounds


def save(tmp_path, width: int, height: int, name: str = "i.png"):
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / name)
    return tmp_path / name


def test_max_pixels_downscales_keeping_aspect(tmp_path):
    path = save(tmp_path, 64, 32)
    assert load_image(path, "s", ImageOptions(max_pixels=512)).size == (32, 16)
    assert load_image(path, "s", ImageOptions(max_pixels=64 * 32)).size == (64, 32)


def test_min_pixels_upscales_keeping_aspect(tmp_path):
    path = save(tmp_path, 8, 8)
    assert load_image(path, "s", ImageOptions(min_pixels=256)).size == (16, 16)


def test_extreme_aspect_ratio_rejected(tmp_path):
    path = save(tmp_path, 200, 2)
    with pytest.raises(DataError) as raised:
        load_image(path, "d.jsonl:3", ImageOptions())
    assert raised.value.kind == "image_size"
    assert str(raised.value) == (
        f"d.jsonl:3: image {path} is 200x2 pixels, an aspect ratio of 100.0:1, over the limit of 50:1. "
        "Crop or pad the image, or raise --max-aspect-ratio."
    )
    assert load_image(path, "s", ImageOptions(max_aspect_ratio=100)).size == (200, 2)


def test_decode_pixel_limit_checked_before_decoding(tmp_path):
    path = save(tmp_path, 100, 100)
    with pytest.raises(DataError) as raised:
        load_image(path, "d.jsonl:4", ImageOptions(decode_pixel_limit=9999))
    assert raised.value.kind == "image_size"
    assert str(raised.value) == (
        f"d.jsonl:4: image {path} is 100x100 pixels, over the decoding limit of 9999 pixels. "
        "Shrink the file or raise --decode-pixel-limit if the image is genuine."
    )


class QwenStyleProcessor:
    def __init__(self):
        self.image_processor = Qwen2VLImageProcessor()


def test_processor_pixel_bounds_change_qwen_grid():
    processor = QwenStyleProcessor()
    image = Image.new("RGB", (640, 480))
    before = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"].tolist()
    apply_processor_pixel_bounds(processor, 56 * 56, 28 * 28 * 16)
    after = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"].tolist()
    assert before == [[1, 34, 46]]
    # At most 28*28*16 pixels: 6x8 patches of 14 pixels, that is 12 image tokens after the 2x2 merge.
    assert after == [[1, 6, 8]]


def test_processor_pixel_bounds_rejected_for_other_processors(tiny_processor):
    with pytest.raises(ConfigError) as raised:
        apply_processor_pixel_bounds(tiny_processor, None, 1000)
    assert str(raised.value) == (
        "--processor-min-pixels/--processor-max-pixels apply to processors that resize by pixel count "
        "(Qwen2-VL style), and SmolVLMImageProcessor does not. Use --max-image-pixels/--min-image-pixels instead."
    )
