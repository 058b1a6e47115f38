"""One exception type for every user-facing failure.

The CLI prints ``saemui: error: <message>`` and exits with status 2 for these; anything else is a bug and keeps
its traceback. Messages are one line and name the file/field and what was expected.
"""

from __future__ import annotations


class SaemuiError(Exception):
    """A problem with the user's input or environment, reported as a one-line message."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
