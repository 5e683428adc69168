"""Each metric against values worked out by hand in the comments."""

from __future__ import annotations

import pytest

from vlmtune.evaluation import metrics
from vlmtune.evaluation.metrics import (
    METRICS,
    anls,
    bleu,
    box_iou,
    character_error_rate,
    compute_metrics,
    exact_match_accuracy,
    json_field_accuracy,
    json_validity,
    normalize_vqa_answer,
    parse_metric_names,
    relaxed_accuracy,
    rouge_l,
    vqa_accuracy,
    vqa_score,
)


def test_exact_match_normalises_and_accepts_any_reference():
    # "Seven." -> "seven" matches; "8" is one of ["9", "8"]; "x" != "y": 2 of 3.
    assert exact_match_accuracy(["Seven.", "8", "x"], ["seven", ["9", "8"], "y"]) == pytest.approx(2 / 3)


def test_relaxed_accuracy_uses_five_percent_tolerance():
    # 104 vs 100: 4% (hit); 106 vs 100: 6% (miss); "1,000" is 1000 (hit); "cat" vs "Cat" exact (hit).
    assert relaxed_accuracy(["104", "106", "1,000", "cat"], ["100", "100", "1000", "Cat"]) == pytest.approx(0.75)
    # A zero reference needs an exact zero; a percent sign is ignored.
    assert relaxed_accuracy(["0.1", "12%"], ["0", "12"]) == pytest.approx(0.5)


def test_vqa_normalisation():
    assert normalize_vqa_answer("The two dogs!") == "2 dogs"
    assert normalize_vqa_answer("isnt it") == "isn't it"
    assert normalize_vqa_answer("3.5") == "3.5"
    assert normalize_vqa_answer("1,000 end.") == "1000 end"


def test_vqa_accuracy_with_annotator_answers():
    # 3 of 10 annotators said "2": leaving out one of them leaves 2 matches (2/3), the other 7
    # subsets keep 3 matches (1): (3 * 2/3 + 7 * 1) / 10 = 0.9.
    assert vqa_score("two", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    # 4 of 10 say "dog": every subset keeps at least 3 matches.
    assert vqa_score("A dog", ["dog"] * 4 + ["cat"] * 6) == pytest.approx(1.0)
    # Two references, one matching: subsets give 0 and 1/3, mean 1/6.
    assert vqa_score("1,000", ["1000", "one thousand"]) == pytest.approx(1 / 6)
    # A single reference is a plain match after normalisation.
    assert vqa_score("Yes.", "yes") == 1.0
    mean = (0.9 + 1.0 + 1 / 6 + 1.0) / 4
    predictions = ["two", "A dog", "1,000", "Yes."]
    references = [["2"] * 3 + ["3"] * 7, ["dog"] * 4 + ["cat"] * 6, ["1000", "one thousand"], "yes"]
    assert vqa_accuracy(predictions, references) == pytest.approx(mean)


def test_anls_threshold_and_best_reference():
    # hello/hallo: 1 edit / 5 = 0.2 -> 0.8; abc/xyz: 1.0 -> 0; case and spaces normalised -> 1;
    # abcdef/abcxyz: 3 / 6 = 0.5, not below the 0.5 threshold -> 0. Mean 1.8 / 4 = 0.45.
    predictions = ["hello", "abc", "Invoice  No", "abcdef"]
    references = ["hallo", "xyz", ["x", "invoice no"], "abcxyz"]
    assert anls(predictions, references) == pytest.approx(0.45)


def test_character_error_rate():
    # One substitution in each of two 4- and 5-character references: 2 / 9.
    assert character_error_rate(["abcd", "hello"], ["abxd", "hallo"]) == pytest.approx(2 / 9)
    # The closer of two references is used.
    assert character_error_rate(["kitten"], [["sitting", "kitten"]]) == 0.0
    # An empty reference: its 2 predicted characters are insertions; abc/abd adds 1 edit over 3 characters.
    assert character_error_rate(["ab", "abc"], ["", "abd"]) == pytest.approx(1.0)


def test_bleu_against_hand_computed_precisions():
    # Clipped n-gram precisions of "the cat sat on the mat" against "the cat sat on a mat":
    # 5/6, 3/5, 2/4, 1/3; equal lengths, so no brevity penalty: (1/12) ** 0.25.
    assert bleu(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx((1 / 12) ** 0.25, abs=1e-6)
    assert bleu(["the cat sat on the mat"], [["a dog", "the cat sat on the mat"]]) == pytest.approx(1.0)


def test_rouge_l():
    # LCS "the cat": P = R = 2/3 -> F 2/3. "a b c d" vs "a c": LCS 2, P 1/2, R 1 -> F 2/3.
    assert rouge_l(["the cat sat", "a b c d"], ["the cat on", "a c"]) == pytest.approx(2 / 3)


def test_json_validity():
    predictions = ['{"a": 1}', "```json\n[1, 2]\n```", "not json", '{"a": }']
    assert json_validity(predictions, [""] * 4) == pytest.approx(0.5)


def test_json_field_accuracy():
    reference = '{"name": "Acme", "total": 12.5, "items": [{"qty": 2}]}'
    # name matches after normalisation, total matches, items.0.qty differs: 2 of 3; invalid JSON: 0.
    predictions = ['{"name": "acme", "total": 12.5, "items": [{"qty": 3}]}', "{broken"]
    assert json_field_accuracy(predictions, [reference, reference]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="not valid JSON"):
        json_field_accuracy(["{}"], ["oops"])


def test_box_iou():
    # [0,0,10,10] vs [5,5,15,15]: intersection 25, union 175 -> 1/7; same box in another notation -> 1;
    # no box in the answer -> 0.
    predictions = ["[0, 0, 10, 10]", "(0, 0), (10, 10)", "no box"]
    references = ["[5, 5, 15, 15]", '{"bbox": [0, 0, 10, 10]}', "[1, 1, 2, 2]"]
    assert box_iou(predictions, references) == pytest.approx((1 / 7 + 1 + 0) / 3)


def test_registry_and_names():
    assert parse_metric_names("exact_match, anls") == ["exact_match", "anls"]
    assert parse_metric_names(None) == ["exact_match"]
    with pytest.raises(ValueError, match=r"Unknown metric nope\. Available metrics: exact_match"):
        parse_metric_names("exact_match,nope")
    assert set(METRICS) == {
        "exact_match",
        "relaxed_accuracy",
        "vqa_accuracy",
        "anls",
        "cer",
        "bleu",
        "rouge_l",
        "json_validity",
        "json_field_accuracy",
        "box_iou",
    }
    assert compute_metrics(["exact_match", "cer"], ["abcd"], ["abxd"]) == {"exact_match": 0.0, "cer": 0.25}


def test_length_mismatch_and_empty_reference_list_rejected():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        metrics.anls(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty list of references"):
        exact_match_accuracy(["a"], [[]])
