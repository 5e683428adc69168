"""Hugging Face datasets written locally: parquet, arrow, save_to_disk folders and an image folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, Features, Image, List, Value

from tests.fixtures.data_files import digit, digit_pixels_rgb, write_digit_png
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.errors import DataError
from vlmtune.data.sources import SourceSpec, parse_data_spec, read_source

INDICES = [0, 1, 2]


def qa_dataset() -> Dataset:
    """A prompt/answer dataset whose `image` column is the `Image` feature holding PIL images."""
    rows = {"image": [], "question": [], "answer": []}
    for index in INDICES:
        image, label = digit(index)
        rows["image"].append(image)
        rows["question"].append("Which digit?")
        rows["answer"].append(label)
    return Dataset.from_dict(
        rows, features=Features({"image": Image(), "question": Value("string"), "answer": Value("string")})
    )


def check_digits(samples, name: str) -> None:
    assert [sample.source for sample in samples] == [f"{name}#{i}" for i in range(len(INDICES))]
    decoded = ConversationDataset(samples)
    for position, index in enumerate(INDICES):
        assert samples[position].reference_answer() == digit(index)[1]
        assert np.array_equal(np.asarray(decoded[position].images[0]), digit_pixels_rgb(index))


def test_parquet_file(tmp_path):
    path = tmp_path / "d.parquet"
    qa_dataset().to_parquet(str(path))
    read = read_source(SourceSpec(str(path)), None)
    check_digits(read.samples, f"{path}[train]")


def test_arrow_file(tmp_path):
    saved = tmp_path / "saved"
    qa_dataset().save_to_disk(str(saved))
    (arrow,) = saved.glob("*.arrow")
    read = read_source(SourceSpec(str(arrow)), None)
    check_digits(read.samples, f"{arrow}[train]")


def test_load_from_disk_dataset_dict_with_split(tmp_path):
    folder = tmp_path / "dict"
    DatasetDict({"train": qa_dataset(), "test": qa_dataset().select([0])}).save_to_disk(str(folder))
    (spec,) = parse_data_spec(f"{folder}#test")
    assert spec.split == "test"
    assert len(read_source(spec, None).samples) == 1
    check_digits(read_source(SourceSpec(str(folder)), None).samples, f"{folder}[train]")
    with pytest.raises(DataError, match=r"the saved dataset has no split 'dev'; it has train, test\."):
        read_source(SourceSpec(str(folder), split="dev"), None)


def test_messages_with_list_of_images_column(tmp_path):
    messages = [
        {"role": "user", "content": [{"type": "image", "text": None}, {"type": "text", "text": "Which digit?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": digit(0)[1]}]},
    ]
    features = Features(
        {
            "messages": List(
                {"role": Value("string"), "content": List({"type": Value("string"), "text": Value("string")})}
            ),
            "images": List(Image()),
        }
    )
    dataset = Dataset.from_dict({"messages": [messages], "images": [[digit(0)[0]]]}, features=features)
    folder = tmp_path / "saved"
    dataset.save_to_disk(str(folder))
    (sample,) = read_source(SourceSpec(str(folder)), None).samples
    assert sample.format == "messages"
    assert isinstance(sample.images[0], bytes)
    assert np.array_equal(np.asarray(ConversationDataset([sample])[0].images[0]), digit_pixels_rgb(0))


def test_image_folder_with_metadata(tmp_path):
    folder = tmp_path / "folder"
    lines = []
    for index in INDICES:
        write_digit_png(folder, index)
        lines.append(json.dumps({"file_name": f"{index}.png", "question": "Which digit?", "answer": digit(index)[1]}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    samples = read_source(SourceSpec(str(folder)), None).samples
    assert sorted(sample.reference_answer() for sample in samples) == sorted(digit(i)[1] for i in INDICES)
    assert {str(sample.images[0]) for sample in samples} == {str(folder / f"{i}.png") for i in INDICES}


def test_folder_without_metadata_rejected(tmp_path):
    write_digit_png(tmp_path / "plain", 0)
    with pytest.raises(DataError) as raised:
        read_source(SourceSpec(str(tmp_path / "plain")), None)
    assert str(raised.value) == (
        f"{tmp_path / 'plain'}: the folder is neither a saved dataset (save_to_disk) nor an image folder with a "
        "metadata file. Add one of metadata.jsonl, metadata.csv, metadata.parquet (with a file_name column), "
        "or point --data at a file."
    )


def test_hub_source_passes_name_config_and_split(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config_name, split):
        calls.append((name, config_name, split))
        return qa_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (spec,) = parse_data_spec("hub:org/digits:small#validation")
    read = read_source(spec, None)
    assert calls == [("org/digits", "small", "validation")]
    check_digits(read.samples, "hub:org/digits:small[validation]")
