"""Reading JSONL files with one conversation (`messages`) per line."""

from __future__ import annotations

from pathlib import Path

from vlmtune.data.errors import DataError
from vlmtune.data.schema import Sample
from vlmtune.data.sources import SourceSpec, read_source


def read_jsonl(path: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """Read a JSONL file of `{"messages": [...], "images": [...]?, "answers": [...]?}` objects.

    Relative image paths resolve against `image_root`, by default the folder of the file. Blank
    lines are skipped; the first bad line raises its `DataError`, which names the file and line.
    """
    read = read_source(SourceSpec(str(path)), image_root, data_format="messages")
    if read.problems:
        raise read.problems[0]
    if not read.samples:
        raise DataError(str(path), "the file contains no samples.")
    return read.samples
