"""Errors of the bridge, as types; the command line turns them into one-line messages."""

from __future__ import annotations

from pathlib import Path


class BadInput(Exception):
    """A model directory, spec or decisions file that cannot be used (exit code 2).

    Carries the file and the offending part so that the message names both.
    """

    def __init__(self, path: Path | str, part: str, problem: str) -> None:
        self.path = Path(path)
        self.part = part
        self.problem = problem
        super().__init__(f"{self.path}: {part}: {problem}" if part else f"{self.path}: {problem}")
