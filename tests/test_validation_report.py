"""The validation pass and its report: every problem kind counted, token numbers against a hand count.

Hand count with the tiny SmolVLM processor (the demo's image geometry: each 8x8 digit becomes one
32x32 image of 4 image tokens, wrapped as <fake_token_around_image><global-img> ... <fake_token_around_image>):

* "Say hi." -> "hi", text only: <|im_start|> User : Ġ S ay Ġ h i . <end_of_utterance> Ċ
  A ssistant : Ġ h i <end_of_utterance> Ċ = 20 text tokens; supervised Ġ h i <end_of_utterance> = 4.
* the same with one image before the text: the Ġ after "User:" goes, the 2 wrapper tokens and 4
  image tokens come in: 22 text + 4 image = 26 tokens.
* with two images: 25 text (3 more wrapper tokens) + 8 image = 33 tokens.
"""

from __future__ import annotations

import json

import pytest

from tests.fixtures.data_files import messages_record, sharegpt_record, write_digit_png, write_jsonl
from vlmtune.collation.collator import TrainingCollator
from vlmtune.config import DataConfig
from vlmtune.data.errors import DataError
from vlmtune.data.loading import load_data
from vlmtune.demo.model import END_OF_UTTERANCE
from vlmtune.validation import run as validation_run
from vlmtune.validation.pipeline import SKIPPED_FILE, apply_policy, validate_data
from vlmtune.validation.report import format_report

MAX_LENGTH = 64


@pytest.fixture
def dataset(tmp_path):
    """Write a training file with one sample of every problem kind, and a clean validation file."""
    for index in range(3):
        write_digit_png(tmp_path / "images", index)
    (tmp_path / "images" / "bad.png").write_bytes(b"garbage")
    literal = messages_record("images/0.png", "Say hi. <image>", "hi")
    mismatch = sharegpt_record(["images/0.png"], "Say hi.", "hi")
    mismatch["images"].append("images/1.png")
    train = write_jsonl(
        tmp_path / "train.jsonl",
        [
            messages_record("images/0.png", "Say hi.", "hi"),
            messages_record("images/1.png", "Say hi.", "hi"),
            messages_record("images/2.png", "Say hi.", "hi"),
            sharegpt_record(["images/0.png", "images/1.png"], "Say hi.", "hi"),
            messages_record(None, "Say hi.", "hi"),
            messages_record("images/absent.png", "Say hi.", "hi"),
            messages_record("images/bad.png", "Say hi.", "hi"),
            mismatch,
            messages_record("images/0.png", "Say hi.", ""),
            messages_record(None, "Say hi. " * 30, "hi"),
            literal,
        ],
    )
    validation = write_jsonl(
        tmp_path / "eval.jsonl", [messages_record(f"images/{i}.png", "Say hi.", "hi") for i in (0, 1)]
    )
    return train, validation


def config_for(train, validation, **overrides) -> DataConfig:
    values = {
        "data": str(train),
        "eval_data": str(validation),
        "max_length": MAX_LENGTH,
        "validation_cache": False,
        "num_proc": 1,
    }
    return DataConfig(**{**values, **overrides})


def collator_for(processor) -> TrainingCollator:
    return TrainingCollator(processor, [END_OF_UTTERANCE], MAX_LENGTH)


def test_report_counts_match_hand_count(tiny_processor, dataset):
    config = config_for(*dataset)
    validated = validate_data(load_data(config, seed=0), collator_for(tiny_processor), config)
    train = validated.report["splits"]["train"]

    assert train["records"] == 11
    assert train["usable_samples"] == 5
    assert train["formats"] == {"messages": 8, "sharegpt": 1}
    assert train["images_per_sample"] == {"0": 2, "1": 6, "2": 1}
    assert train["problems"] == {
        "invalid_record": 0,
        "missing_image": 1,
        "corrupt_image": 1,
        "image_size": 0,
        "placeholder_mismatch": 2,
        "no_supervised_token": 1,
        "too_long": 1,
    }
    assert train["over_max_length"] == 1
    # Measured: the five usable samples (26, 26, 26, 33, 20) and the over-long one (224 text tokens).
    assert train["tokens"]["total"] == {
        "count": 6,
        "total": 355,
        "min": 20,
        "mean": 59.17,
        "p50": 26.0,
        "p95": 176.25,
        "max": 224,
    }
    assert train["tokens"]["image"]["total"] == 20
    assert train["tokens"]["image"]["max"] == 8
    assert train["tokens"]["text"]["total"] == 22 * 3 + 25 + 20 + 224
    assert train["budget"] == {"tokens": 131, "image_tokens": 20, "supervised_tokens": 20, "images": 5, "videos": 0}
    assert validated.report["splits"]["validation"]["budget"] == {
        "tokens": 52,
        "image_tokens": 8,
        "supervised_tokens": 8,
        "images": 2,
        "videos": 0,
    }
    assert [sample.source.rsplit(":", 1)[1] for sample in validated.train] == ["1", "2", "3", "4", "5"]


def test_problem_messages_and_skip_file(tiny_processor, dataset, tmp_path):
    train_path, validation_path = dataset
    config = config_for(train_path, validation_path, bad_samples="skip")
    validated = validate_data(load_data(config, seed=0), collator_for(tiny_processor), config)
    skipped = tmp_path / "run" / SKIPPED_FILE
    skipped.parent.mkdir()
    apply_policy(validated, "skip", tmp_path / "report.json", skipped)
    entries = [json.loads(line) for line in skipped.read_text().splitlines()]
    assert [(entry["source"].rsplit(":", 1)[1], entry["kind"]) for entry in entries] == [
        ("8", "placeholder_mismatch"),
        ("9", "no_supervised_token"),
        ("6", "missing_image"),
        ("7", "corrupt_image"),
        ("10", "too_long"),
        ("11", "placeholder_mismatch"),
    ]
    reasons = {entry["source"].rsplit(":", 1)[1]: entry["reason"] for entry in entries}
    assert reasons["10"] == (
        "the sample is 224 tokens long (0 image tokens), over max_length=64; it is not truncated because that "
        "could cut an image's tokens or the answer. Raise --max-length, lower --max-image-pixels or shorten the "
        "conversation."
    )
    assert reasons["11"] == (
        "the text contains the image token <image> 1 time besides its 1 image part, so the processor would "
        "expect more images than the sample has. Remove the token from the text and mark each image with an image part."
    )
    assert (
        reasons["6"]
        == f"image file {tmp_path / 'images' / 'absent.png'} not found. Check the path or set --image-root."
    )


def test_fail_policy_lists_first_problems(tiny_processor, dataset, tmp_path):
    config = config_for(*dataset)
    validated = validate_data(load_data(config, seed=0), collator_for(tiny_processor), config)
    with pytest.raises(DataError) as raised:
        apply_policy(validated, "fail", tmp_path / "report.json", None)
    message = str(raised.value)
    assert message.startswith(f"data: 6 samples cannot be used:\n  [train] {dataset[0]}:8: the conversation has 1")
    assert message.endswith(
        f"Fix or remove them, or pass --bad-samples skip to train without them. Full report: {tmp_path / 'report.json'}"
    )
    assert message.count("\n  [train]") == 3
    assert "\n  ... and 3 more, listed in the report" in message


def test_cache_reused_and_invalidated(tiny_processor, dataset, tmp_path, monkeypatch):
    config = config_for(*dataset, validation_cache=True)
    collator = collator_for(tiny_processor)
    cache = tmp_path / "cache"
    first = validate_data(load_data(config, seed=0), collator, config, cache_folder=cache)

    checked = []
    original = validation_run.check_sample

    def counting(sample, settings):
        checked.append(sample.source)
        return original(sample, settings)

    monkeypatch.setattr(validation_run, "check_sample", counting)
    second = validate_data(load_data(config, seed=0), collator, config, cache_folder=cache)
    assert checked == []
    assert second.report == first.report

    write_digit_png(tmp_path / "images", 5).replace(tmp_path / "images" / "2.png")
    validate_data(load_data(config, seed=0), collator, config, cache_folder=cache)
    assert [source.rsplit(":", 1)[1] for source in checked] == ["3"]

    validate_data(load_data(config, seed=0), collator, config_for(*dataset, max_length=100), cache_folder=cache)
    assert len(checked) == 1 + 9 + 2


def test_parallel_pass_matches_serial(tiny_processor, tmp_path):
    for index in range(4):
        write_digit_png(tmp_path / "images", index)
    records = [messages_record(f"images/{i % 4}.png", "Say hi.", "hi") for i in range(30)]
    records += [messages_record("images/absent.png", "Say hi.", "hi"), messages_record(None, "Say hi.", "hi")]
    train = write_jsonl(tmp_path / "train.jsonl", records)
    validation = write_jsonl(tmp_path / "eval.jsonl", records[:2])
    collator = collator_for(tiny_processor)
    serial = validate_data(load_data(config_for(train, validation), 0), collator, config_for(train, validation))
    parallel_config = config_for(train, validation, num_proc=2)
    parallel = validate_data(load_data(parallel_config, 0), collator, parallel_config)
    assert parallel.report["splits"] == serial.report["splits"]
    assert parallel.report["splits"]["train"]["budget"]["tokens"] == 30 * 26 + 20


def test_printed_report_lines(tiny_processor, dataset):
    config = config_for(*dataset)
    validated = validate_data(load_data(config, seed=0), collator_for(tiny_processor), config)
    lines = format_report(validated.report).splitlines()
    assert lines[:10] == [
        "Data validation (max_length 64, bad samples: fail)",
        "train: 11 records, 5 usable",
        "  formats: messages 8, sharegpt 1",
        "  images per sample: 0 image(s): 2, 1 image(s): 6, 2 image(s): 1",
        "  problems: missing_image 1, corrupt_image 1, placeholder_mismatch 2, no_supervised_token 1, too_long 1",
        "  text tokens per sample: min 20, mean 55.83, median 22.0, p95 174.25, max 224",
        "  image tokens per sample: min 0, mean 3.33, median 4.0, p95 7.0, max 8",
        "  total tokens per sample: min 20, mean 59.17, median 26.0, p95 176.25, max 224",
        "  one epoch: 131 tokens (20 image, 20 supervised), 5 images",
        "validation: 2 records, 2 usable",
    ]
