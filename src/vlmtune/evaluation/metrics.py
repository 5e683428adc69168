"""Task metrics over (prediction, reference) pairs."""

from __future__ import annotations

import re
import unicodedata

_TRAILING_PUNCTUATION = ".!?,;:"


def normalize_answer(text: str) -> str:
    """Normalise an answer for exact match: Unicode NFKC, case-folded, whitespace collapsed,
    surrounding quotes and trailing sentence punctuation removed."""
    text = unicodedata.normalize("NFKC", text).casefold().strip()
    text = re.sub(r"\s+", " ", text)
    text = text.strip("\"'`")
    return text.rstrip(_TRAILING_PUNCTUATION).strip()


def exact_match(prediction: str, reference: str) -> bool:
    """Return whether the normalised prediction equals the normalised reference."""
    return normalize_answer(prediction) == normalize_answer(reference)


def exact_match_accuracy(predictions: list[str], references: list[str]) -> float:
    """Return the fraction of exact matches (0.0 for empty input)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references.")
    if not predictions:
        return 0.0
    return sum(exact_match(p, r) for p, r in zip(predictions, references, strict=True)) / len(predictions)
