"""Write scikit-learn's handwritten digits as PNG files plus JSONL conversations.

The 1,797 real 8x8 scans ship inside scikit-learn, so the demo needs no download. Pixel values
0-16 are scaled to 0-255 grayscale. The validation split is a fixed, seeded 20% of the scans.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from vlmtune.paths import cache_root

QUESTION = "Which digit is shown?"
VALIDATION_FRACTION = 0.2
SPLIT_SEED = 0
# Bump when the files written below change, so a stale cached copy is not reused.
DATA_VERSION = 1


def demo_data_dir() -> Path:
    """Return the cache folder the digits dataset is written into."""
    return cache_root() / "data" / f"digits-v{DATA_VERSION}"


def digit_conversation(image_path: str, digit: int) -> dict:
    """Return one JSONL record: a user turn with the image and the question, and the answer."""
    return {
        "messages": [
            {"role": "user", "content": [{"type": "image", "image": image_path}, {"type": "text", "text": QUESTION}]},
            {"role": "assistant", "content": [{"type": "text", "text": str(digit)}]},
        ]
    }


def write_digits_dataset(output_dir: Path | None = None) -> tuple[Path, Path]:
    """Write the dataset once and return the (train, validation) JSONL paths.

    Files go to a temporary sibling folder that is renamed at the end, so an interrupted write is
    never mistaken for a complete dataset.
    """
    output_dir = Path(output_dir) if output_dir is not None else demo_data_dir()
    train_path, validation_path = output_dir / "train.jsonl", output_dir / "validation.jsonl"
    if train_path.is_file() and validation_path.is_file():
        return train_path, validation_path

    digits = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(digits.images))
    num_validation = round(len(order) * VALIDATION_FRACTION)
    validation_indices = set(order[:num_validation].tolist())

    staging = output_dir.with_name(output_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    with (staging / "train.jsonl").open("w") as train, (staging / "validation.jsonl").open("w") as validation:
        for index in order.tolist():
            pixels = (digits.images[index] * (255 / 16)).round().astype(np.uint8)
            relative = f"images/{index:04d}.png"
            Image.fromarray(pixels, mode="L").save(staging / relative)
            record = digit_conversation(relative, int(digits.target[index]))
            handle = validation if index in validation_indices else train
            handle.write(json.dumps(record) + "\n")

    shutil.rmtree(output_dir, ignore_errors=True)
    staging.rename(output_dir)
    return train_path, validation_path
