"""Family resolution options passed through to the processor: the pixel bounds of Qwen-style processors.

Qwen2-VL-style image processors (Qwen2-VL, Qwen2.5-VL, GLM-4V and others) resize each image so its
pixel count lies between a minimum and a maximum, which sets its image tokens. In transformers 5.x
they accept `min_pixels`/`max_pixels` and store them as `size.shortest_edge`/`size.longest_edge`
(both pixel counts there, despite the names); see Qwen2VLImageProcessor.__init__.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from vlmtune.config import ConfigError


def accepts_pixel_bounds(image_processor: Any) -> bool:
    """Return whether the image processor declares `min_pixels`/`max_pixels` options."""
    valid = getattr(getattr(image_processor, "valid_kwargs", None), "__annotations__", {})
    return "min_pixels" in valid and "max_pixels" in valid


def apply_processor_pixel_bounds(processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    """Set the processor's own min/max pixel bounds; raise `ConfigError` for a processor without them."""
    if min_pixels is None and max_pixels is None:
        return
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or not accepts_pixel_bounds(image_processor):
        name = type(image_processor).__name__ if image_processor is not None else type(processor).__name__
        raise ConfigError(
            f"--processor-min-pixels/--processor-max-pixels apply to processors that resize by pixel count "
            f"(Qwen2-VL style), and {name} does not. Use --max-image-pixels/--min-image-pixels instead."
        )
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ConfigError(f"--processor-min-pixels {min_pixels} is larger than --processor-max-pixels {max_pixels}.")
    updates = {}
    if min_pixels is not None:
        updates["shortest_edge"] = min_pixels
    if max_pixels is not None:
        updates["longest_edge"] = max_pixels
    size = image_processor.size
    if dataclasses.is_dataclass(size):
        image_processor.size = dataclasses.replace(size, **updates)
    else:
        image_processor.size = {**dict(size), **updates}
