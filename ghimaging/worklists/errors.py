"""The error of a worklist template that does not compile, is not allowed
(:mod:`.sandbox`) or does not render."""

from __future__ import annotations


class RenderError(ValueError):
    """A template that does not compile or render; ``line`` when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message
