"""evaluate, predict and chat on a tiny model and adapter with real digit images."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig

from tests.conftest import write_digit_jsonl
from tests.fixtures.adapter import build_tiny_adapter
from vlmtune.cli import main
from vlmtune.config import ModelConfig
from vlmtune.data.errors import DataError
from vlmtune.data.jsonl import read_jsonl
from vlmtune.evaluation.generation import GenerationSettings, generate_answers, generation_kwargs
from vlmtune.evaluation.metrics import anls, exact_match_accuracy
from vlmtune.inference.chat import run_chat
from vlmtune.models.adapters import load_for_inference

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def adapter_dir(tiny_smolvlm_dir, tmp_path_factory):
    return build_tiny_adapter(tiny_smolvlm_dir, tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    return write_digit_jsonl(tmp_path_factory.mktemp("digits"), list(range(6)))


@pytest.fixture(scope="module")
def adapter_model(adapter_dir):
    return load_for_inference(ModelConfig(model=str(adapter_dir), dtype="float32"))


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generation_settings_come_from_the_model_unless_overridden(adapter_model):
    model, tokenizer = adapter_model.model, adapter_model.processor.tokenizer
    end_of_utterance = tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    defaults = generation_kwargs(model, tokenizer, GenerationSettings())
    assert defaults["max_new_tokens"] == 64
    assert defaults["do_sample"] is False
    # The generation config's end-of-turn token first, then the tokenizer's eos, each once.
    assert defaults["eos_token_id"] == list(dict.fromkeys([end_of_utterance, tokenizer.eos_token_id]))

    original = model.generation_config
    model.generation_config = GenerationConfig(eos_token_id=end_of_utterance, max_new_tokens=7, do_sample=True)
    try:
        from_model = generation_kwargs(model, tokenizer, GenerationSettings())
        assert (from_model["max_new_tokens"], from_model["do_sample"]) == (7, True)
        overridden = generation_kwargs(model, tokenizer, GenerationSettings(3, False, 0.5, 0.9))
        assert (overridden["max_new_tokens"], overridden["do_sample"], overridden["temperature"]) == (3, False, None)
        sampled = generation_kwargs(model, tokenizer, GenerationSettings(do_sample=True, temperature=0.5))
        assert sampled["temperature"] == 0.5
    finally:
        model.generation_config = original


def test_greedy_override_of_sampling_config(adapter_model, digits):
    model, processor = adapter_model.model, adapter_model.processor
    samples = read_jsonl(digits)[:2]
    greedy = generate_answers(model, processor, samples, max_new_tokens=4)
    original = model.generation_config
    sampling = GenerationConfig(**original.to_dict())
    sampling.update(do_sample=True, temperature=5.0, top_k=50)
    model.generation_config = sampling
    try:
        settings = GenerationSettings(max_new_tokens=4, do_sample=False)
        assert generate_answers(model, processor, samples, settings=settings) == greedy
        # Sampling at temperature 5 from the model's config: not the greedy answers every time.
        torch.manual_seed(0)
        sampled = [generate_answers(model, processor, samples, max_new_tokens=4) for _ in range(3)]
        assert any(answers != greedy for answers in sampled)
    finally:
        model.generation_config = original


def test_batched_generation_matches_one_by_one(adapter_model, digits):
    samples = read_jsonl(digits)
    batched = generate_answers(adapter_model.model, adapter_model.processor, samples, batch_size=4, max_new_tokens=4)
    single = [
        generate_answers(adapter_model.model, adapter_model.processor, [sample], batch_size=1, max_new_tokens=4)[0]
        for sample in samples
    ]
    assert batched == single
    assert len(batched) == 6


def test_evaluate_adapter_against_its_base(adapter_dir, digits, tmp_path, capsys):
    output = tmp_path / "eval"
    args = ["evaluate", "--model", str(adapter_dir), "--data", str(digits), "--output-dir", str(output)]
    args += ["--metrics", "exact_match,anls", "--baseline", "base", "--max-new-tokens", "4", "--dtype", "float32"]
    assert main(args) == 0

    report = json.loads((output / "metrics.json").read_text())
    records = read_lines(output / "predictions.jsonl")
    baseline_records = read_lines(output / "predictions_baseline.jsonl")
    assert report["num_samples"] == 6
    assert len(records) == 6
    assert len(baseline_records) == 6
    assert [record["reference"] for record in records] == ["0", "1", "2", "3", "4", "5"]
    assert records[0]["source"].endswith("data.jsonl:1")
    predictions = [record["prediction"] for record in records]
    references = [record["reference"] for record in records]
    assert report["metrics"]["exact_match"] == exact_match_accuracy(predictions, references)
    assert report["metrics"]["anls"] == anls(predictions, references)
    baseline_predictions = [record["prediction"] for record in baseline_records]
    assert report["baseline"]["metrics"]["anls"] == anls(baseline_predictions, references)
    assert report["difference"]["anls"] == pytest.approx(
        report["metrics"]["anls"] - report["baseline"]["metrics"]["anls"]
    )
    assert report["model"] == f"{adapter_dir} on {report['baseline']['model']}"
    printed = capsys.readouterr().out
    assert "difference" in printed
    assert "anls" in printed

    # The same folder again is rejected, so the report above is not overwritten.
    before = (output / "metrics.json").read_text()
    assert main(args) == 2
    assert (output / "metrics.json").read_text() == before


def test_evaluate_rejects_unknown_metric_and_missing_data(adapter_dir, digits, tmp_path, capsys):
    base = ["evaluate", "--model", str(adapter_dir), "--output-dir", str(tmp_path / "e")]
    assert main([*base, "--data", str(digits), "--metrics", "accuracy"]) == 2
    assert "Unknown metric accuracy" in capsys.readouterr().err
    assert main(base) == 2
    assert "needs --data" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_evaluate_uses_every_acceptable_answer(tiny_smolvlm_dir, tmp_path):
    data = write_digit_jsonl(tmp_path, [0, 1])
    # List what the model generates as a further acceptable answer, so exact match must be 1.
    samples = read_jsonl(data)
    loaded = load_for_inference(ModelConfig(model=str(tiny_smolvlm_dir), dtype="float32"))
    generated = generate_answers(loaded.model, loaded.processor, samples, max_new_tokens=3)
    lines = [json.loads(line) for line in data.read_text().splitlines()]
    for line, answer in zip(lines, generated, strict=True):
        line["answers"] = [answer]
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    output = tmp_path / "eval"
    args = ["evaluate", "--model", str(tiny_smolvlm_dir), "--data", str(data), "--output-dir", str(output)]
    assert main([*args, "--max-new-tokens", "3", "--dtype", "float32"]) == 0
    assert json.loads((output / "metrics.json").read_text())["metrics"]["exact_match"] == 1.0
    assert read_lines(output / "predictions.jsonl")[0]["references"] == ["0", generated[0]]


def test_predict_image_folder_and_dataset(adapter_dir, adapter_model, digits, tmp_path):
    images = digits.parent / "images"
    output = tmp_path / "folder.jsonl"
    args = ["predict", "--model", str(adapter_dir), "--images", str(images), "--prompt", "Which digit is shown?"]
    assert main([*args, "--output", str(output), "--max-new-tokens", "4", "--dtype", "float32"]) == 0
    records = read_lines(output)
    assert [Path(record["source"]).name for record in records] == [f"{i}.png" for i in range(6)]
    # Asking the same question about the same image must give the dataset's generated answer.
    expected = generate_answers(
        adapter_model.model, adapter_model.processor, read_jsonl(digits), batch_size=2, max_new_tokens=4
    )
    assert [record["prediction"] for record in records] == expected

    dataset_output = tmp_path / "data.jsonl"
    args = ["predict", "--model", str(adapter_dir), "--data", str(digits), "--output", str(dataset_output)]
    assert main([*args, "--max-new-tokens", "4", "--dtype", "float32"]) == 0
    dataset_records = read_lines(dataset_output)
    assert [record["prediction"] for record in dataset_records] == expected
    assert dataset_records[3]["reference"] == "3"

    assert main([*args, "--max-new-tokens", "4"]) == 2  # the output file exists now


def test_predict_argument_errors(adapter_dir, tmp_path, capsys):
    assert main(["predict", "--model", str(adapter_dir), "--output", str(tmp_path / "p.jsonl")]) == 2
    assert "exactly one of --data" in capsys.readouterr().err
    assert main(["predict", "--images", str(tmp_path), "--output", str(tmp_path / "p.jsonl")]) == 2
    assert "--images needs --prompt" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", "--images", str(empty), "--prompt", "?", "--output", str(tmp_path / "p.jsonl")]) == 2
    assert "contains no images" in capsys.readouterr().err


def test_chat_keeps_history_images_and_reset(adapter_model, digits):
    image = digits.parent / "images" / "3.png"
    typed = io.StringIO(
        "/image missing.png\n"
        f"/image {image}\n"
        "Which digit is shown?\n"
        "Are you sure?\n"
        "/bogus\n"
        "/reset\n"
        "Hello\n"
        "/quit\n"
        "never read\n"
    )
    shown = io.StringIO()
    settings = GenerationSettings(max_new_tokens=4)
    session = run_chat(adapter_model.model, adapter_model.processor, settings, typed, shown)
    output = shown.getvalue()
    assert "image file missing.png not found" in output
    assert f"(image {image} attached to your next message)" in output
    assert "unknown command /bogus" in output
    assert "(new conversation)" in output
    assert output.count("model> ") == 3
    # After /reset only the last exchange remains, without an image.
    assert [message["role"] for message in session.messages] == ["user", "assistant"]
    assert session.images == []
    assert typed.readline() == "never read\n"

    # The first reply is the answer to the image question, as predict would give it.
    first_reply = output.split("model> ")[1].splitlines()[0]
    sample = read_jsonl(digits)[3]
    expected = generate_answers(adapter_model.model, adapter_model.processor, [sample], settings=settings)[0]
    assert first_reply == expected


def test_chat_command_reads_stdin(tiny_smolvlm_dir, digits):
    image = digits.parent / "images" / "1.png"
    typed = f"/image {image}\nWhich digit is shown?\n"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "vlmtune.cli", "chat", "--model", str(tiny_smolvlm_dir)]
    command += ["--max-new-tokens", "3", "--dtype", "float32", "--system", "Answer with one digit."]
    finished = subprocess.run(
        command, check=False, input=typed, capture_output=True, text=True, timeout=300, env=environment, cwd=REPOSITORY
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.count("model> ") == 1
    assert "attached to your next message" in finished.stdout


def test_chat_rejects_bad_start_image(adapter_model):
    shown = io.StringIO()
    run_chat(adapter_model.model, adapter_model.processor, GenerationSettings(), io.StringIO(""), shown, "nope.png")
    assert "image file nope.png not found" in shown.getvalue()


def test_image_folder_error_names_folder(tmp_path):
    from vlmtune.inference.predict import image_folder_samples

    with pytest.raises(DataError, match="image folder not found"):
        image_folder_samples(tmp_path / "absent", "?")
