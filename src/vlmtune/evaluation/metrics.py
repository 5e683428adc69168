"""Task metrics over (prediction, reference) pairs, and the registry that `--metrics` picks from.

Every registered metric is `function(predictions, references) -> float` in [0, 1], higher is
better except `cer` (an error rate). A reference is a string or a list of acceptable strings. A
metric that scores samples one by one takes the best score over a sample's references.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import jiwer
import sacrebleu
from rapidfuzz.distance import Levenshtein
from rouge_score import rouge_scorer

Reference = str | Sequence[str]
Metric = Callable[[Sequence[str], Sequence[Reference]], float]

_TRAILING_PUNCTUATION = ".!?,;:"


def normalize_answer(text: str) -> str:
    """Normalise an answer for exact match: Unicode NFKC, case-folded, whitespace collapsed,
    surrounding quotes and trailing sentence punctuation removed."""
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    text = re.sub(r"\s+", " ", text)
    text = text.strip("\"'`")
    return text.rstrip(_TRAILING_PUNCTUATION).strip()


def reference_list(reference: Reference) -> list[str]:
    """Return a sample's acceptable answers as a non-empty list."""
    references = [reference] if isinstance(reference, str) else list(reference)
    if not references:
        raise ValueError("A sample has an empty list of references; give at least one acceptable answer.")
    return references


def _check_lengths(predictions: Sequence[str], references: Sequence[Reference]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references.")


def _mean_best(predictions: Sequence[str], references: Sequence[Reference], score: Callable[[str, str], float]):
    """Average over samples of the best per-reference score."""
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    total = sum(
        max(score(prediction, option) for option in reference_list(reference))
        for prediction, reference in zip(predictions, references, strict=True)
    )
    return total / len(predictions)


# --- Exact match -------------------------------------------------------------------------------


def exact_match(prediction: str, reference: Reference) -> bool:
    """Return whether the normalised prediction equals one of the normalised references."""
    return any(normalize_answer(prediction) == normalize_answer(option) for option in reference_list(reference))


def exact_match_accuracy(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Return the fraction of exact matches (0.0 for empty input)."""
    return _mean_best(predictions, references, lambda p, r: float(exact_match(p, r)))


# --- Relaxed numeric accuracy ------------------------------------------------------------------

RELAXED_TOLERANCE = 0.05
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


def parse_number(text: str) -> float | None:
    """Return the number a short answer states (`1,234.5`, `12%`, `$3`), or None if it is not one."""
    cleaned = normalize_answer(text).replace(",", "").replace(" ", "")
    cleaned = cleaned.removesuffix("%").lstrip("$€£")
    return float(cleaned) if _NUMBER.match(cleaned) else None


def relaxed_match(prediction: str, reference: str, tolerance: float = RELAXED_TOLERANCE) -> bool:
    """Numbers match within `tolerance` relative to the reference; other answers need an exact match."""
    predicted, expected = parse_number(prediction), parse_number(reference)
    if predicted is None or expected is None:
        return exact_match(prediction, reference)
    if expected == 0:
        return predicted == 0
    return abs(predicted - expected) / abs(expected) <= tolerance


def relaxed_accuracy(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Fraction of answers that are right with 5% relative tolerance on numbers (chart QA convention)."""
    return _mean_best(predictions, references, lambda p, r: float(relaxed_match(p, r)))


# --- VQA accuracy ------------------------------------------------------------------------------

_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_CONTRACTIONS = {
    "dont": "don't",
    "doesnt": "doesn't",
    "isnt": "isn't",
    "arent": "aren't",
    "cant": "can't",
    "wont": "won't",
    "im": "i'm",
    "ive": "i've",
    "youre": "you're",
    "thats": "that's",
    "whats": "what's",
    "wasnt": "wasn't",
    "werent": "weren't",
    "shouldnt": "shouldn't",
    "couldnt": "couldn't",
    "wouldnt": "wouldn't",
}
_VQA_PUNCTUATION = re.compile(r"[;/\[\]\"{}()=+\\_\-><@`,?!*#%^&$|~:]")
_PERIOD_NOT_DECIMAL = re.compile(r"(?<!\d)\.(?!\d)")


def normalize_vqa_answer(text: str) -> str:
    """Normalise an answer the way the VQA benchmark does: lower case, punctuation removed (a comma
    between digits is dropped so `1,000` is `1000`), periods kept only as decimal points, number
    words up to ten written as digits, articles removed and common contractions restored."""
    text = text.replace("\n", " ").replace("\t", " ").strip().lower()
    text = re.sub(r"(?<=\d),(?=\d)", "", text)
    text = _VQA_PUNCTUATION.sub(" ", text)
    text = _PERIOD_NOT_DECIMAL.sub("", text)
    words = []
    for raw_word in text.split():
        word = _NUMBER_WORDS.get(raw_word, raw_word)
        if word in _ARTICLES:
            continue
        words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def vqa_score(prediction: str, reference: Reference) -> float:
    """Score one answer against its annotators' answers with the VQA formula.

    With several references the score is min(1, matches / 3), averaged over the leave-one-out
    subsets of the references (so 3 of 10 annotators agreeing gives 0.9 and 4 give 1.0). With a
    single reference there is no subset to average, so the score is 1 for a match and 0 otherwise.
    """
    answers = [normalize_vqa_answer(option) for option in reference_list(reference)]
    predicted = normalize_vqa_answer(prediction)
    if len(answers) == 1:
        return float(predicted == answers[0])
    scores = []
    for left_out in range(len(answers)):
        matches = sum(1 for index, answer in enumerate(answers) if index != left_out and answer == predicted)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


def vqa_accuracy(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Mean VQA accuracy (see `vqa_score`)."""
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return sum(vqa_score(p, r) for p, r in zip(predictions, references, strict=True)) / len(predictions)


# --- ANLS --------------------------------------------------------------------------------------

ANLS_THRESHOLD = 0.5


def anls_score(prediction: str, reference: str, threshold: float = ANLS_THRESHOLD) -> float:
    """Return 1 - normalised Levenshtein distance, or 0 when that distance reaches `threshold`.

    Both strings are lower-cased with surrounding and repeated whitespace removed, as in the
    DocVQA evaluation.
    """
    predicted = " ".join(prediction.lower().split())
    expected = " ".join(reference.lower().split())
    longest = max(len(predicted), len(expected))
    if longest == 0:
        return 1.0
    distance = Levenshtein.distance(predicted, expected) / longest
    return 1.0 - distance if distance < threshold else 0.0


def anls(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Average Normalised Levenshtein Similarity, threshold 0.5, best reference per sample."""
    return _mean_best(predictions, references, anls_score)


# --- Character error rate, BLEU, ROUGE-L -------------------------------------------------------


def character_error_rate(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Corpus character error rate (jiwer): character edits / reference characters; lower is better.

    With several references per sample, the one closest to the prediction is used.
    """
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    chosen = [
        min(reference_list(reference), key=lambda option, p=prediction: Levenshtein.distance(p, option))
        for prediction, reference in zip(predictions, references, strict=True)
    ]
    if not any(chosen):
        raise ValueError("Character error rate is undefined when every reference is empty.")
    if not all(chosen):
        # jiwer rejects an empty reference; its characters count as zero, every predicted one as an insertion.
        insertions = sum(len(p) for p, r in zip(predictions, chosen, strict=True) if not r)
        kept = [(p, r) for p, r in zip(predictions, chosen, strict=True) if r]
        output = jiwer.process_characters([r for _, r in kept], [p for p, _ in kept])
        edits = output.substitutions + output.deletions + output.insertions + insertions
        return edits / sum(len(r) for _, r in kept)
    return float(jiwer.cer(list(chosen), list(predictions)))


def bleu(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Corpus BLEU from sacrebleu (13a tokenisation), scaled to 0..1; all references of a sample count."""
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    per_sample = [reference_list(reference) for reference in references]
    count = max(len(options) for options in per_sample)
    # sacrebleu takes one stream per reference position; repeating a sample's first reference to
    # fill the streams does not change its clipped n-gram counts or its closest reference length.
    streams = [[options[i] if i < len(options) else options[0] for options in per_sample] for i in range(count)]
    return sacrebleu.corpus_bleu(list(predictions), streams).score / 100


_ROUGE = rouge_scorer.RougeScorer(["rougeL"])


def rouge_l(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Mean ROUGE-L F1 (rouge-score, longest common subsequence of words), best reference per sample."""
    return _mean_best(predictions, references, lambda p, r: _ROUGE.score(r, p)["rougeL"].fmeasure)


# --- JSON --------------------------------------------------------------------------------------

_CODE_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def parse_json_answer(text: str) -> tuple[bool, Any]:
    """Return (valid, value) for an answer that should be JSON; a Markdown code fence is allowed."""
    text = text.strip()
    fenced = _CODE_FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        return True, json.loads(text)
    except json.JSONDecodeError:
        return False, None


def json_validity(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Fraction of predictions that parse as JSON (references are not used)."""
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return sum(parse_json_answer(prediction)[0] for prediction in predictions) / len(predictions)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Map each leaf of nested objects and lists to its path, e.g. `items.0.name`."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = ((str(index), item) for index, item in enumerate(value))
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _same_value(predicted: Any, expected: Any) -> bool:
    if isinstance(expected, str) and isinstance(predicted, str):
        return normalize_answer(predicted) == normalize_answer(expected)
    numeric = (int, float)
    if isinstance(expected, numeric) and isinstance(predicted, numeric):
        if isinstance(expected, bool) or isinstance(predicted, bool):
            return predicted is expected
        return math.isclose(predicted, expected, rel_tol=1e-9, abs_tol=1e-9)
    return predicted == expected


def json_field_score(prediction: str, reference: str) -> float:
    """Fraction of the reference's leaf fields that the prediction has at the same path with the same
    value (strings compared after normalisation); 0 for a prediction that is not valid JSON."""
    valid, expected = parse_json_answer(reference)
    if not valid:
        raise ValueError(f"Reference {reference!r} is not valid JSON, so field accuracy cannot be computed.")
    valid, predicted = parse_json_answer(prediction)
    if not valid:
        return 0.0
    expected_fields = _flatten(expected)
    predicted_fields = _flatten(predicted)
    hits = sum(
        1
        for path, value in expected_fields.items()
        if path in predicted_fields and _same_value(predicted_fields[path], value)
    )
    return hits / len(expected_fields)


def json_field_accuracy(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Mean `json_field_score`, best reference per sample."""
    return _mean_best(predictions, references, json_field_score)


# --- Bounding boxes ----------------------------------------------------------------------------

_BOX_NUMBER = re.compile(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?")


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """Return the first four numbers of `text` as (x1, y1, x2, y2), or None if it has fewer than four.

    `[10, 20, 50, 60]`, `(10,20),(50,60)` and `{"bbox": [10, 20, 50, 60]}` all parse.
    """
    numbers = [float(match) for match in _BOX_NUMBER.findall(text)]
    if len(numbers) < 4:
        return None
    x1, y1, x2, y2 = numbers[:4]
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def box_iou_score(prediction: str, reference: str) -> float:
    """Intersection over union of the predicted and reference boxes; 0 when the prediction has no box."""
    expected = parse_box(reference)
    if expected is None:
        raise ValueError(f"Reference {reference!r} does not contain a box as four numbers x1, y1, x2, y2.")
    predicted = parse_box(prediction)
    if predicted is None:
        return 0.0
    width = min(predicted[2], expected[2]) - max(predicted[0], expected[0])
    height = min(predicted[3], expected[3]) - max(predicted[1], expected[1])
    intersection = max(width, 0.0) * max(height, 0.0)

    def area(box: tuple[float, float, float, float]) -> float:
        return (box[2] - box[0]) * (box[3] - box[1])

    union = area(predicted) + area(expected) - intersection
    if union <= 0:
        return float(predicted == expected)
    return intersection / union


def box_iou(predictions: Sequence[str], references: Sequence[Reference]) -> float:
    """Mean bounding-box IoU, best reference per sample."""
    return _mean_best(predictions, references, box_iou_score)


# --- Registry ----------------------------------------------------------------------------------

METRICS: dict[str, Metric] = {
    "exact_match": exact_match_accuracy,
    "relaxed_accuracy": relaxed_accuracy,
    "vqa_accuracy": vqa_accuracy,
    "anls": anls,
    "cer": character_error_rate,
    "bleu": bleu,
    "rouge_l": rouge_l,
    "json_validity": json_validity,
    "json_field_accuracy": json_field_accuracy,
    "box_iou": box_iou,
}
"""Metric name (as given to --metrics) -> function(predictions, references) -> float."""

DEFAULT_METRICS = ("exact_match",)


def parse_metric_names(names: str | Sequence[str] | None) -> list[str]:
    """Turn `exact_match,anls` (or a list) into known metric names; None or empty: the default."""
    if names is None:
        return list(DEFAULT_METRICS)
    items = names.split(",") if isinstance(names, str) else list(names)
    chosen = [name.strip() for name in items if name.strip()]
    unknown = [name for name in chosen if name not in METRICS]
    if unknown:
        raise ValueError(f"Unknown metric {', '.join(unknown)}. Available metrics: {', '.join(METRICS)}.")
    return list(dict.fromkeys(chosen)) or list(DEFAULT_METRICS)


def compute_metrics(
    names: Sequence[str], predictions: Sequence[str], references: Sequence[Reference]
) -> dict[str, float]:
    """Compute each named metric over the same predictions and references."""
    return {name: METRICS[name](predictions, references) for name in names}
