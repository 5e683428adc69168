"""Reading JSONL files with one conversation per line."""

from __future__ import annotations

import json
from pathlib import Path

from vlmtune.data.errors import DataError
from vlmtune.data.messages import normalize_messages
from vlmtune.data.schema import Sample


def read_jsonl(path: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """Read a JSONL file of `{"messages": [...], "images": [...]?, "answers": [...]?}` objects, one per line.

    Relative image paths resolve against `image_root`, by default the folder of the file. Blank
    lines are skipped; every other problem raises a `DataError` naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "data file not found.", "Check the --data / --eval-data path.")
    root = Path(image_root) if image_root is not None else path.parent

    samples = []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    where, f"invalid JSON ({error.msg} at column {error.colno}).", "Fix or remove the line."
                ) from error
            if not isinstance(record, dict) or "messages" not in record:
                raise DataError(where, "expected a JSON object with a `messages` list.")
            images = record.get("images")
            if images is not None and not isinstance(images, list):
                images = [images]
            sample = normalize_messages(record["messages"], where, root, images)
            answers = record.get("answers", [])
            if not isinstance(answers, list) or not all(isinstance(answer, str) for answer in answers):
                raise DataError(where, "`answers` must be a list of strings (further acceptable answers).")
            sample.answers = answers
            samples.append(sample)

    if not samples:
        raise DataError(str(path), "the file contains no samples.")
    return samples
