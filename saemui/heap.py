"""Return freed heap memory to the OS between batches (glibc; a no-op elsewhere).

Batches of different shapes free and re-allocate tensors of many sizes. glibc keeps freed chunks resident, and
its dynamic mmap threshold moves multi-MB tensors from mmap onto the heap once one such block has been freed, so
the heap fragments and peak RSS crept up with the number of batches (docs/performance.md, "memory"). One
``malloc_trim(0)`` per batch gives the free pages back; it costs well under a millisecond.
"""

from __future__ import annotations

import ctypes
import functools
import sys


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # e.g. musl, which has no malloc_trim
        return None


def trim_heap() -> bool:
    """Release free heap pages to the OS; False when the C library cannot (not glibc)."""
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
