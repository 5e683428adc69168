"""Errors for data that cannot be used, each naming the sample it comes from."""

from __future__ import annotations


class DataError(ValueError):
    """A dataset problem found before or during training, with the file and line it comes from."""

    def __init__(self, where: str, problem: str, fix: str | None = None):
        self.where = where
        self.problem = problem
        self.fix = fix
        message = f"{where}: {problem}"
        if fix:
            message += f" {fix}"
        super().__init__(message)
