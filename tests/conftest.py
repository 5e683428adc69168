"""Test setup: no network access to the Hub, and a cache folder inside the repository."""

from __future__ import annotations

import os
from pathlib import Path

# Set before transformers or huggingface_hub are imported by any test module.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("VLMTUNE_CACHE", str(Path(__file__).resolve().parent.parent / ".cache" / "tests"))

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from tests.fixtures.smolvlm import build_tiny_smolvlm, build_tiny_smolvlm_processor


@pytest.fixture(scope="session")
def tiny_smolvlm_dir(tmp_path_factory) -> Path:
    """A tiny random-weight SmolVLM saved to disk, shared by the session."""
    return build_tiny_smolvlm(tmp_path_factory.mktemp("tiny-smolvlm"))


@pytest.fixture
def tiny_processor():
    return build_tiny_smolvlm_processor()


def write_digit_jsonl(folder: Path, indices: list[int], name: str = "data.jsonl") -> Path:
    """Write real digit scans as PNG files plus a JSONL of conversations; return the JSONL path."""
    digits = load_digits()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in indices:
        pixels = (digits.images[index] * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / "images" / f"{index}.png")
        lines.append(
            json.dumps(
                {
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "image", "image": f"images/{index}.png"},
                                {"type": "text", "text": "Which digit is shown?"},
                            ],
                        },
                        {"role": "assistant", "content": [{"type": "text", "text": str(digits.target[index])}]},
                    ]
                }
            )
        )
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def digit_jsonl(tmp_path) -> Path:
    return write_digit_jsonl(tmp_path, list(range(24)))
