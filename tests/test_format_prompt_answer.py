"""Question/answer columns (VQA style) and prefix/suffix columns (PaliGemma style)."""

from __future__ import annotations

from tests.fixtures.data_files import write_digit_png, write_jsonl
from vlmtune.data.sources import SourceSpec, read_source


def test_question_answer_and_prefix_suffix(tmp_path):
    write_digit_png(tmp_path / "i", 7)
    records = [
        {"image": "i/7.png", "question": "Which digit?", "answer": "7"},
        {"image": "i/7.png", "prefix": "ocr", "suffix": "7"},
        {"question": "Two plus two?", "answers": ["4", "four"]},
    ]
    path = write_jsonl(tmp_path / "qa.jsonl", records)
    read = read_source(SourceSpec(str(path)), None)
    assert read.problems == []
    first, second, third = read.samples
    assert first.format == second.format == third.format == "prompt_answer"
    assert first.messages == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which digit?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "7"}]},
    ]
    assert first.images == [tmp_path / "i" / "7.png"]
    assert second.messages[0]["content"][1] == {"type": "text", "text": "ocr"}
    assert third.images == []
    assert third.reference_answer() == "4"


def test_forced_format_reports_missing_columns(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"image": "x.png", "question": "q"}])
    (error,) = read_source(SourceSpec(str(path)), None, data_format="prompt_answer").problems
    assert str(error) == (
        f"{path}:1: expected a string question (question/prefix/prompt/query) and a string answer "
        "(answer/suffix/response/answers)."
    )


def test_csv_columns(tmp_path):
    write_digit_png(tmp_path / "i", 8)
    path = tmp_path / "qa.csv"
    path.write_text("image,question,answer\ni/8.png,Which digit?,8\n")
    (sample,) = read_source(SourceSpec(str(path)), None).samples
    assert sample.source == f"{path}[train]#0"
    assert sample.images == [tmp_path / "i" / "8.png"]
    assert sample.reference_answer() == "8"
