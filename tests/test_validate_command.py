"""The validate command and the validation that training runs first, with both bad-sample policies."""

from __future__ import annotations

import json

import pytest

from tests.fixtures.data_files import messages_record, write_digit_png, write_jsonl
from tests.test_train_tiny import tiny_config
from vlmtune.cli import main
from vlmtune.data.errors import DataError
from vlmtune.training.recipe import run_training


@pytest.fixture
def data_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMTUNE_CACHE", str(tmp_path / "cache"))
    for index in range(4):
        write_digit_png(tmp_path / "images", index)
    records = [messages_record(f"images/{i % 4}.png", "Which digit?", str(i % 4)) for i in range(8)]
    records.insert(2, messages_record("images/absent.png", "Which digit?", "1"))
    train = write_jsonl(tmp_path / "train.jsonl", records)
    validation = write_jsonl(tmp_path / "eval.jsonl", records[:2])
    return train, validation


def validate_args(model_dir, train, validation, report) -> list[str]:
    return [
        "validate",
        "--model",
        str(model_dir),
        "--data",
        str(train),
        "--eval-data",
        str(validation),
        "--max-length",
        "128",
        "--validation-report",
        str(report),
    ]


def test_validate_prints_and_writes_report(tiny_smolvlm_dir, data_files, tmp_path, capsys):
    report = tmp_path / "report.json"
    assert main(validate_args(tiny_smolvlm_dir, *data_files, report)) == 1
    written = json.loads(report.read_text())
    assert written["kind"] == "vlmtune-validation-report"
    assert written["splits"]["train"]["records"] == 9
    assert written["splits"]["train"]["usable_samples"] == 8
    assert written["problems"][0]["source"] == f"{data_files[0]}:3"
    output = capsys.readouterr().out
    assert "train: 9 records, 8 usable" in output
    assert f"[train] {data_files[0]}:3: image file" in output

    assert main([*validate_args(tiny_smolvlm_dir, *data_files, report), "--bad-samples", "skip"]) == 0


def test_validate_does_not_overwrite_other_files(tiny_smolvlm_dir, data_files, tmp_path, capsys):
    report = tmp_path / "notes.json"
    report.write_text("mine")
    assert main(validate_args(tiny_smolvlm_dir, *data_files, report)) == 2
    assert report.read_text() == "mine"
    assert "exists and is not a validation report, so it is not overwritten" in capsys.readouterr().err


def test_training_fails_before_any_step(tiny_smolvlm_dir, data_files, tmp_path):
    config = tiny_config(tiny_smolvlm_dir, data_files[0], tmp_path / "run")
    config.data.eval_data = str(data_files[1])
    with pytest.raises(DataError, match=r"^data: 1 sample cannot be used:\n  \[train\] .*train\.jsonl:3: image file"):
        run_training(config)
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert json.loads((tmp_path / "run" / "validation_report.json").read_text())["bad_samples"] == "fail"


def test_training_skips_bad_samples_and_lists_them(tiny_smolvlm_dir, data_files, tmp_path):
    config = tiny_config(tiny_smolvlm_dir, data_files[0], tmp_path / "run")
    config.data.eval_data = str(data_files[1])
    config.data.bad_samples = "skip"
    config.training.max_steps = 1
    config.evaluation.eval_before = False
    config.evaluation.eval_after = False
    summary = run_training(config)
    assert summary["train_samples"] == 8
    skipped = [json.loads(line) for line in (tmp_path / "run" / "skipped_samples.jsonl").read_text().splitlines()]
    assert [(entry["source"], entry["kind"]) for entry in skipped] == [(f"{data_files[0]}:3", "missing_image")]
