"""Decoding every common image mode to RGB, and the errors for missing, corrupt and truncated files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.data_files import digit, digit_pixels_rgb
from vlmtune.data.errors import DataError
from vlmtune.data.images import load_image


def gray(index: int) -> np.ndarray:
    return np.asarray(digit(index)[0])


def decoded(path) -> np.ndarray:
    image = load_image(path, "s")
    assert image.mode == "RGB"
    return np.asarray(image)


def test_rgba_transparent_pixels_become_white(tmp_path):
    pixels = gray(0)
    alpha = np.full_like(pixels, 255)
    alpha[:, :4] = 0
    rgba = np.dstack([pixels, pixels, pixels, alpha])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    expected = digit_pixels_rgb(0).copy()
    expected[:, :4] = 255
    assert np.array_equal(decoded(tmp_path / "a.png"), expected)


def test_palette_image(tmp_path):
    image = Image.new("P", (8, 8))
    image.putpalette([value for level in range(256) for value in (level, level, level)])
    image.putdata(gray(1).flatten().tolist())
    image.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    assert np.array_equal(decoded(tmp_path / "p.png"), digit_pixels_rgb(1))


def test_cmyk_jpeg(tmp_path):
    digit(2)[0].convert("RGB").convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    difference = np.abs(decoded(tmp_path / "c.jpg").astype(int) - digit_pixels_rgb(2).astype(int))
    assert difference.max() <= 12


def test_sixteen_bit_grayscale_scaled_not_clipped(tmp_path):
    Image.fromarray(gray(3).astype(np.uint16) * 257).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert np.array_equal(decoded(tmp_path / "g16.png"), digit_pixels_rgb(3))


def test_animated_gif_first_frame(tmp_path):
    first, second = digit(4)[0], digit(5)[0]
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second], duration=100, loop=0)
    assert Image.open(tmp_path / "anim.gif").n_frames == 2
    assert np.array_equal(decoded(tmp_path / "anim.gif"), digit_pixels_rgb(4))


def test_exif_orientation_applied(tmp_path):
    wide = np.hstack([gray(6), np.zeros((8, 8), dtype=np.uint8)])
    image = Image.fromarray(wide, mode="L")
    exif = Image.Exif()
    exif[0x0112] = 6  # The camera was rotated: display the pixels turned 90 degrees clockwise.
    image.save(tmp_path / "rotated.png", exif=exif)
    result = decoded(tmp_path / "rotated.png")
    assert result.shape == (16, 8, 3)
    assert np.array_equal(result[..., 0], np.rot90(wide, k=-1))


def test_missing_file_named(tmp_path):
    with pytest.raises(DataError) as raised:
        load_image(tmp_path / "nope.png", "d.jsonl:7")
    assert raised.value.kind == "missing_image"
    assert (
        str(raised.value)
        == f"d.jsonl:7: image file {tmp_path / 'nope.png'} not found. Check the path or set --image-root."
    )


def test_corrupt_file_named(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError) as raised:
        load_image(tmp_path / "bad.png", "d.jsonl:8")
    assert raised.value.kind == "corrupt_image"
    path = tmp_path / "bad.png"
    assert str(raised.value) == (
        f"d.jsonl:8: image {path} is not a readable image (cannot identify image file '{path}'). "
        "Replace or remove the file."
    )


def test_truncated_file_named(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="PNG")
    (tmp_path / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(DataError) as raised:
        load_image(tmp_path / "cut.png", "d.jsonl:9")
    assert raised.value.kind == "corrupt_image"
    message = str(raised.value)
    assert message.startswith(f"d.jsonl:9: image {tmp_path / 'cut.png'} cannot be decoded (")
    assert "truncated" in message
    assert message.endswith("; the file may be truncated or corrupt. Replace or remove the file.")
