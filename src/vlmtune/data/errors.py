"""Errors for data that cannot be used, each naming the sample it comes from."""

from __future__ import annotations

PROBLEM_KINDS = (
    "invalid_record",
    "missing_image",
    "corrupt_image",
    "image_size",
    "placeholder_mismatch",
    "no_supervised_token",
    "too_long",
)
"""Problem categories that the validation report counts, in the order it lists them."""


class DataError(ValueError):
    """A dataset problem found before or during training, with the file and line it comes from.

    `kind` is one of PROBLEM_KINDS, so the validation report can count problems by category.
    """

    def __init__(self, where: str, problem: str, fix: str | None = None, kind: str = "invalid_record"):
        self.where = where
        self.problem = problem
        self.fix = fix
        self.kind = kind
        message = f"{where}: {problem}"
        if fix:
            message += f" {fix}"
        super().__init__(message)


def counted(count: int, noun: str) -> str:
    """Return `count` and `noun`, with the noun in the plural unless the count is one ("1 image", "2 images")."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
