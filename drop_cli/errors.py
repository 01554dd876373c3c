"""The exceptions the CLI turns into one red line and a non-zero exit.

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

_IN_WORKER = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")


class DropError(Exception):
    """A user-facing error: what is wrong (``message``) and what to do about it (``hint``)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        if _IN_WORKER.match(message):  # re-raised by a DataLoader: the worker's own line, not its traceback
            message = message.rstrip().rsplit("\n", 1)[-1].split(": ", 1)[-1]
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class DatasetError(DropError):
    """The dataset folder is missing, empty or not in the expected layout."""


class LabelsError(DropError):
    """A labels file is missing, unfinished or does not match the request."""


class RecipeError(DropError):
    """A recipe file or override is missing, malformed, or has a wrong key or value."""


class ModelFileError(DropError):
    """A model file (the pose labeler's network) cannot be obtained or is corrupt."""


class DiskError(DropError):
    """An output could not be written (``errno``: the OSError's code: no space, read-only, ...)."""

    def __init__(self, message: str, hint: str | None = None, errno: int | None = None):
        super().__init__(message, hint)
        self.errno = errno


class Interrupted(DropError):
    """Ctrl-C: what was kept, and the command that continues the work."""

    exit_code = 130


def lookup(table: dict, key: str, what: str):
    """``table[key]``, or a DropError listing the valid keys and the closest match."""
    if key in table:
        return table[key]
    raise DropError(f"unknown {what} {key!r}.", hint=_choices_hint(key, table))


def _choices_hint(key: str, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    by_lower = {c.lower(): c for c in choices}  # case-insensitive: 'Market1501' finds 'market1501'
    close = difflib.get_close_matches(str(key).lower(), list(by_lower), n=1)
    hint = f"Did you mean {by_lower[close[0]]!r}? " if close else ""
    return hint + "Choose one of: " + ", ".join(choices) + "."
