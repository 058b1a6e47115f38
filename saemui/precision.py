"""Agreement of two runs' key sets under reduced precision; the function lives in :mod:`saemui.compare`."""

from __future__ import annotations

from saemui.compare import selection_agreement

__all__ = ["selection_agreement"]
