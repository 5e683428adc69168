"""Data sources: the `--data` syntax, and reading each source (files, folders, Hugging Face datasets).

A source is `LOCATION[#SPLIT][@WEIGHT]` and several sources are separated by commas. LOCATION is
a local file or folder, or `hub:ORG/NAME[:CONFIG]` for a Hugging Face Hub dataset. Reading never
stops at the first bad record: every problem is collected so the validation report can list all
of them at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmtune.data.errors import DataError
from vlmtune.data.formats import FORMATS, record_to_sample
from vlmtune.data.schema import Sample

HUB_PREFIX = "hub:"
JSON_SUFFIXES = (".jsonl", ".json")
TABLE_SUFFIXES = (".parquet", ".arrow", ".csv")
IMAGEFOLDER_METADATA = ("metadata.jsonl", "metadata.csv", "metadata.parquet")


@dataclass(frozen=True)
class SourceSpec:
    location: str
    """Local path, or `ORG/NAME` of a Hub dataset when `hub` is set."""

    split: str | None = None
    """Split of a Hugging Face dataset. None: `train` (the only split of a single file)."""

    weight: float | None = None
    """Relative sampling weight when several sources are mixed. None: the source's own size."""

    hub: bool = False
    config_name: str | None = None
    """Configuration (subset) of a Hub dataset."""

    def describe(self) -> str:
        name = f"{HUB_PREFIX}{self.location}" if self.hub else self.location
        if self.config_name:
            name += f":{self.config_name}"
        return name


@dataclass
class SourceRead:
    spec: SourceSpec
    samples: list[Sample] = field(default_factory=list)
    problems: list[DataError] = field(default_factory=list)
    data_files: list[Path] = field(default_factory=list)
    """Local files the samples come from (for the validation cache key)."""


def parse_data_spec(text: str) -> list[SourceSpec]:
    """Parse `--data`: comma-separated `LOCATION[#SPLIT][@WEIGHT]` entries."""
    specs = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise DataError(text, "empty source in the --data list (two commas or a trailing comma).")
        weight = None
        if "@" in entry:
            entry, _, weight_text = entry.rpartition("@")
            try:
                weight = float(weight_text)
            except ValueError as error:
                raise DataError(raw.strip(), f"weight {weight_text!r} is not a number.") from error
            if weight <= 0:
                raise DataError(raw.strip(), f"weight {weight_text} must be positive.")
        split = None
        if "#" in entry:
            entry, _, split = entry.rpartition("#")
        hub = entry.startswith(HUB_PREFIX)
        config_name = None
        if hub:
            entry = entry.removeprefix(HUB_PREFIX)
            entry, _, config_name = entry.partition(":")
            if entry.count("/") != 1:
                raise DataError(raw.strip(), f"{HUB_PREFIX}{entry} is not a Hub dataset id of the form ORG/NAME.")
        specs.append(SourceSpec(entry, split or None, weight, hub, config_name or None))
    return specs


def read_source(spec: SourceSpec, image_root: str | Path | None, data_format: str = "auto") -> SourceRead:
    """Read every record of one source into samples, collecting each bad record as a problem."""
    if data_format != "auto" and data_format not in FORMATS:
        raise DataError(spec.describe(), f"unknown data format {data_format!r}; use auto or {', '.join(FORMATS)}.")
    result = SourceRead(spec)
    if spec.hub:
        records = _hub_records(spec)
        root = Path(image_root) if image_root else Path.cwd()
    else:
        path = Path(spec.location).expanduser()
        if not path.exists():
            fix = "Check the --data / --eval-data path."
            if re.fullmatch(r"[\w.-]+/[\w.-]+", spec.location):
                fix += f" For a Hugging Face Hub dataset, write {HUB_PREFIX}{spec.location}."
            raise DataError(str(path), "data file or folder not found.", fix)
        root = Path(image_root) if image_root else (path if path.is_dir() else path.parent)
        records = _local_records(path, spec, result.data_files)
    for where, record in records:
        if isinstance(record, DataError):
            result.problems.append(record)
            continue
        try:
            result.samples.append(record_to_sample(record, where, root, data_format))
        except DataError as error:
            result.problems.append(error)
    if not result.samples and not result.problems:
        raise DataError(spec.describe(), "the source contains no samples.")
    return result


Records = Iterator[tuple[str, Any]]
"""(where, record) pairs; a record that could not even be parsed is given as a DataError."""


def _local_records(path: Path, spec: SourceSpec, data_files: list[Path]) -> Records:
    if path.is_file():
        data_files.append(path)
        if path.suffix == ".jsonl":
            return _jsonl_records(path)
        if path.suffix == ".json":
            return _json_records(path)
        if path.suffix in TABLE_SUFFIXES:
            from datasets import Dataset

            readers = {".parquet": Dataset.from_parquet, ".arrow": Dataset.from_file, ".csv": Dataset.from_csv}
            dataset = readers[path.suffix](str(path))
            return _dataset_records(dataset, f"{path}[{spec.split or 'train'}]")
        raise DataError(
            str(path),
            f"unsupported data file type {path.suffix!r}.",
            "Use .jsonl, .json, .parquet, .arrow or .csv, a saved dataset folder or an image folder.",
        )
    data_files.extend(sorted(item for item in path.rglob("*") if item.is_file()))
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        return _saved_dataset_records(path, spec)
    if any((path / name).is_file() for name in IMAGEFOLDER_METADATA):
        from datasets import load_dataset

        split = spec.split or "train"
        dataset = load_dataset("imagefolder", data_dir=str(path), split=split)
        return _dataset_records(dataset, f"{path}[{split}]")
    raise DataError(
        str(path),
        "the folder is neither a saved dataset (save_to_disk) nor an image folder with a metadata file.",
        f"Add one of {', '.join(IMAGEFOLDER_METADATA)} (with a file_name column), or point --data at a file.",
    )


def _saved_dataset_records(path: Path, spec: SourceSpec) -> Records:
    from datasets import DatasetDict, load_from_disk

    loaded = load_from_disk(str(path))
    if isinstance(loaded, DatasetDict):
        split = spec.split or "train"
        if split not in loaded:
            raise DataError(str(path), f"the saved dataset has no split {split!r}; it has {', '.join(loaded)}.")
        return _dataset_records(loaded[split], f"{path}[{split}]")
    return _dataset_records(loaded, f"{path}[{spec.split or 'train'}]")


def _hub_records(spec: SourceSpec) -> Records:
    from datasets import load_dataset

    split = spec.split or "train"
    dataset = load_dataset(spec.location, spec.config_name, split=split)
    return _dataset_records(dataset, f"{spec.describe()}[{split}]")


def _jsonl_records(path: Path) -> Records:
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_number}"
            try:
                yield where, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as error:
                yield (
                    where,
                    DataError(where, f"invalid JSON ({error.msg} at column {error.colno}).", "Fix or remove the line."),
                )


def _json_records(path: Path) -> Records:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}:{error.lineno}", f"invalid JSON ({error.msg} at column {error.colno}).", "Fix the file."
        ) from error
    if isinstance(content, dict) and isinstance(content.get("data"), list):
        content = content["data"]
    if not isinstance(content, list):
        raise DataError(str(path), 'a .json data file must hold a list of records (or {"data": [...]}).')
    for index, record in enumerate(content):
        yield f"{path}#{index}", record


def _dataset_records(dataset: Any, name: str) -> Records:
    dataset = _undecoded_images(dataset)
    for index, record in enumerate(dataset):
        yield f"{name}#{index}", record


def _undecoded_images(dataset: Any) -> Any:
    """Cast `Image` and `Video` columns (and lists of them) to their encoded form, `{"bytes", "path"}`.

    Decoding is left to the dataset's `__getitem__`, so it happens once, in the DataLoader workers
    and the validation pass, with this project's mode conversion, size limits and frame sampling.
    """
    from datasets import Image, LargeList, List, Sequence, Video

    for name, feature in dataset.features.items():
        if isinstance(feature, Image | Video) and feature.decode:
            dataset = dataset.cast_column(name, type(feature)(decode=False))
        elif isinstance(feature, List | LargeList | Sequence) and isinstance(feature.feature, Image | Video):
            dataset = dataset.cast_column(name, type(feature)(type(feature.feature)(decode=False)))
    return dataset
