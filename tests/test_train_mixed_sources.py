"""Training on several sources in different formats at once, text-only samples included."""

from __future__ import annotations

import json

from datasets import Dataset, Features, Image, Value

from tests.fixtures.data_files import digit, messages_record, sharegpt_record, write_digit_png, write_jsonl
from tests.test_train_tiny import tiny_config
from vlmtune.training.recipe import run_training


def test_mixed_formats_train(tiny_smolvlm_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VLMTUNE_CACHE", str(tmp_path / "cache"))
    for index in range(6):
        write_digit_png(tmp_path / "images", index)
    sharegpt = write_jsonl(
        tmp_path / "sharegpt.jsonl",
        [sharegpt_record([f"images/{i}.png"], "Which digit?", digit(i)[1]) for i in range(6)]
        + [sharegpt_record([], "Say hi.", "hi")] * 2,
    )
    rows = {"image": [digit(i)[0] for i in range(6, 10)], "question": ["Which digit?"] * 4}
    rows["answer"] = [digit(i)[1] for i in range(6, 10)]
    parquet = tmp_path / "qa.parquet"
    features = Features({"image": Image(), "question": Value("string"), "answer": Value("string")})
    Dataset.from_dict(rows, features=features).to_parquet(str(parquet))
    validation = write_jsonl(tmp_path / "eval.jsonl", [messages_record("images/0.png", "Which digit?", digit(0)[1])])

    config = tiny_config(tiny_smolvlm_dir, f"{sharegpt}@1,{parquet}@1", tmp_path / "run")
    config.data.eval_data = str(validation)
    config.data.max_image_pixels = 32
    config.training.max_steps = 2
    config.evaluation.eval_before = False
    summary = run_training(config)

    # 12 samples in all, 6 from each source: 6 of the 8 ShareGPT records and the 4 parquet rows 1.5 times.
    assert summary["train_samples"] == 12
    assert summary["steps"] == 2
    report = json.loads((tmp_path / "run" / "validation_report.json").read_text())
    assert report["splits"]["train"]["formats"] == {"prompt_answer": 6, "sharegpt": 6}
    assert report["problems"] == []
