"""Reading JSONL conversations and the errors for bad input, each naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_digit_jsonl
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.errors import DataError
from vlmtune.data.jsonl import read_jsonl
from vlmtune.data.loading import split_validation


def write_lines(path: Path, records: list) -> Path:
    path.write_text("\n".join(record if isinstance(record, str) else json.dumps(record) for record in records) + "\n")
    return path


def good_record(image: str = "images/0.png", answer: str = "0") -> dict:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Which digit?"}]},
            {"role": "assistant", "content": answer},
        ]
    }


def test_read_digits_jsonl(tmp_path):
    path = write_digit_jsonl(tmp_path, [0, 1, 2])
    samples = read_jsonl(path)
    assert len(samples) == 3
    assert samples[1].source == f"{path}:2"
    assert samples[0].images == [tmp_path / "images" / "0.png"]
    assert samples[0].messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "Which digit is shown?"}]
    assert samples[0].reference_answer() == "0"
    loaded = ConversationDataset(samples)[0]
    assert loaded.images[0].mode == "RGB"
    assert loaded.images[0].size == (8, 8)


def test_string_content_and_images_column(tmp_path):
    write_digit_jsonl(tmp_path, [3])
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Digit?"}]},
            {"role": "assistant", "content": "3"},
        ],
        "images": ["images/3.png"],
    }
    sample = read_jsonl(write_lines(tmp_path / "d.jsonl", [record]))[0]
    assert sample.images == [tmp_path / "images" / "3.png"]
    assert sample.messages[1]["content"] == [{"type": "text", "text": "3"}]


def test_openai_image_url_part(tmp_path):
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "pics/a.png"}}]},
            {"role": "assistant", "content": "a"},
        ]
    }
    sample = read_jsonl(write_lines(tmp_path / "d.jsonl", [record]), image_root=tmp_path / "root")[0]
    assert sample.images == [tmp_path / "root" / "pics" / "a.png"]


def test_malformed_json_line(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [good_record(), '{"messages": [', good_record()])
    with pytest.raises(DataError, match=r"d\.jsonl:2: invalid JSON"):
        read_jsonl(path)


def test_no_assistant_turn(tmp_path):
    record = {"messages": [{"role": "user", "content": "hello"}]}
    path = write_lines(tmp_path / "d.jsonl", [good_record(), record])
    with pytest.raises(DataError, match=r"d\.jsonl:2: the sample has no assistant message"):
        read_jsonl(path)


def test_empty_assistant_answer(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [good_record(answer="  ")])
    with pytest.raises(DataError, match=r"d\.jsonl:1: the sample has no assistant message with text"):
        read_jsonl(path)


def test_unknown_role(tmp_path):
    record = {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}
    with pytest.raises(DataError, match=r"d\.jsonl:1: message 0: unknown role 'robot'"):
        read_jsonl(write_lines(tmp_path / "d.jsonl", [record]))


def test_images_column_count_mismatch(tmp_path):
    record = good_record()
    record["images"] = ["images/extra.png"]
    with pytest.raises(DataError, match="lists 2 images but its messages have 1 image part"):
        read_jsonl(write_lines(tmp_path / "d.jsonl", [record]))


def test_missing_image_file(tmp_path):
    samples = read_jsonl(write_lines(tmp_path / "d.jsonl", [good_record(image="images/nope.png")]))
    with pytest.raises(DataError, match=r"d\.jsonl:1: image file .*nope\.png not found"):
        ConversationDataset(samples)[0]


def test_unreadable_image_file(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "0.png").write_bytes(b"not a png at all")
    samples = read_jsonl(write_lines(tmp_path / "d.jsonl", [good_record()]))
    with pytest.raises(DataError, match=r"d\.jsonl:1: image .*0\.png is not a readable image"):
        ConversationDataset(samples)[0]


def test_missing_data_file(tmp_path):
    with pytest.raises(DataError, match=r"absent\.jsonl: data file or folder not found"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_validation_split_deterministic(tmp_path):
    samples = read_jsonl(write_digit_jsonl(tmp_path, list(range(20))))
    train_a, validation_a = split_validation(samples, 0.25, seed=3)
    _, validation_b = split_validation(samples, 0.25, seed=3)
    assert [s.source for s in validation_a] == [s.source for s in validation_b]
    assert len(validation_a) == 5
    assert len(train_a) == 15
    assert not {s.source for s in train_a} & {s.source for s in validation_a}


def test_validation_split_bad_fraction_and_size(tmp_path):
    from vlmtune.config import ConfigError

    samples = read_jsonl(write_digit_jsonl(tmp_path, [0]))
    with pytest.raises(ConfigError, match=r"^--eval-fraction must be above 0 and at most 0\.5, got 0\.0\."):
        split_validation(samples, 0.0, seed=3)
    with pytest.raises(DataError) as raised:
        split_validation(samples, 0.25, seed=3)
    assert (
        str(raised.value)
        == "data: 1 sample cannot be split into training and validation. Pass --eval-data or add samples."
    )
