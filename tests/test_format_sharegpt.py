"""The ShareGPT / LLaVA form: `conversations` with `<image>` placeholders and an image list."""

from __future__ import annotations

from tests.fixtures.data_files import sharegpt_record, write_digit_png, write_jsonl
from vlmtune.data.sources import SourceSpec, read_source


def test_multi_image_multi_turn(tmp_path):
    for index in (1, 2):
        write_digit_png(tmp_path / "img", index)
    record = {
        "conversations": [
            {"from": "system", "value": "Read digits."},
            {"from": "human", "value": "<image>\nFirst?"},
            {"from": "gpt", "value": "1"},
            {"from": "human", "value": "And <image> this one?"},
            {"from": "gpt", "value": "2"},
        ],
        "images": ["img/1.png", "img/2.png"],
    }
    path = write_jsonl(tmp_path / "sharegpt.jsonl", [record])
    (sample,) = read_source(SourceSpec(str(path)), None).samples
    assert sample.format == "sharegpt"
    assert sample.images == [tmp_path / "img" / "1.png", tmp_path / "img" / "2.png"]
    assert sample.messages == [
        {"role": "system", "content": [{"type": "text", "text": "Read digits."}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "First?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "1"}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": "And "}, {"type": "image"}, {"type": "text", "text": " this one?"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "2"}]},
    ]


def test_single_image_field_and_text_only(tmp_path):
    write_digit_png(tmp_path, 5)
    single = sharegpt_record(["5.png"], "Digit?", "5")
    single["image"] = single.pop("images")[0]
    text_only = sharegpt_record([], "Hello?", "Hi.")
    path = write_jsonl(tmp_path / "d.jsonl", [single, text_only])
    first, second = read_source(SourceSpec(str(path)), None).samples
    assert first.images == [tmp_path / "5.png"]
    assert second.images == []
    assert second.format == "sharegpt"


def test_placeholder_count_mismatch_named(tmp_path):
    record = sharegpt_record(["a.png"], "Digit?", "5")
    record["images"].append("b.png")
    path = write_jsonl(tmp_path / "d.jsonl", [record])
    (error,) = read_source(SourceSpec(str(path)), None).problems
    assert error.kind == "placeholder_mismatch"
    assert str(error) == (
        f"{path}:1: the conversation has 1 <image> placeholder but the record lists 2 images. "
        "Put one <image> in the text for each image, where the image belongs."
    )


def test_unknown_speaker_named(tmp_path):
    record = {"conversations": [{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}]}
    path = write_jsonl(tmp_path / "d.jsonl", [record])
    (error,) = read_source(SourceSpec(str(path)), None).problems
    assert str(error) == (
        f"{path}:1: turn 0: unknown speaker 'robot'; use one of assistant, gpt, human, model, system, user."
    )
