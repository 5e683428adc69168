"""The `messages` form in JSONL and JSON files, with text-only samples mixed in."""

from __future__ import annotations

import json

import numpy as np

from tests.fixtures.data_files import digit_pixels_rgb, messages_record, write_digit_png, write_jsonl
from vlmtune.data.dataset import ConversationDataset
from vlmtune.data.sources import SourceSpec, read_source


def test_jsonl_messages_with_text_only_sample(tmp_path):
    write_digit_png(tmp_path / "images", 3)
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [messages_record("images/3.png", "Which digit?", "3"), messages_record(None, "Say hi.", "hi")],
    )
    read = read_source(SourceSpec(str(path)), None)
    assert read.problems == []
    first, second = read.samples
    assert (first.source, first.format, first.images) == (f"{path}:1", "messages", [tmp_path / "images" / "3.png"])
    assert second.images == []
    assert second.messages[0]["content"] == [{"type": "text", "text": "Say hi."}]
    decoded = ConversationDataset(read.samples)[0].images[0]
    assert np.array_equal(np.asarray(decoded), digit_pixels_rgb(3))


def test_json_list_file_and_data_key(tmp_path):
    write_digit_png(tmp_path / "images", 4)
    records = [messages_record("images/4.png", "Which digit?", "4")] * 2
    plain = tmp_path / "list.json"
    plain.write_text(json.dumps(records))
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": records}))
    for path in (plain, wrapped):
        samples = read_source(SourceSpec(str(path)), None).samples
        assert [sample.source for sample in samples] == [f"{path}#0", f"{path}#1"]
        assert samples[1].reference_answer() == "4"


def test_bad_records_are_collected_not_raised(tmp_path):
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [messages_record(None, "q", "a"), '{"messages": [', {"text": "no layout"}, messages_record(None, "q", " ")],
    )
    read = read_source(SourceSpec(str(path)), None)
    assert len(read.samples) == 1
    assert [str(error) for error in read.problems] == [
        f"{path}:2: invalid JSON (Expecting value at column 15). Fix or remove the line.",
        f"{path}:3: the record has none of the known layouts (keys: text). Use `messages`, ShareGPT "
        "`conversations`, or question/answer columns (see --data-format).",
        f"{path}:4: the sample has no assistant message with text, so there is nothing to train on. Add an "
        "assistant turn with the expected answer or remove the sample.",
    ]
    assert [error.kind for error in read.problems] == ["invalid_record", "invalid_record", "no_supervised_token"]
