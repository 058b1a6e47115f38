"""Shared pieces of the property-based fuzz suite (tests/test_fuzz_*.py).

Property of every reader of a user file: it returns a valid result, or raises :class:`saemui.SaemuiError` whose
message is one line and names the file (and the field where there is one). Any other exception fails the test
and Hypothesis shrinks the input to a minimal case.

Profiles: ``saemui-fuzz`` (default: derandomized, fixed small example budget, the whole suite in well under a
minute on one core) and ``saemui-fuzz-long`` (``HYPOTHESIS_PROFILE=saemui-fuzz-long``: random seed, 20× the
examples), e.g. ``HYPOTHESIS_PROFILE=saemui-fuzz-long python -m pytest tests/test_fuzz_*.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from saemui import SaemuiError

_COMMON = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
    print_blob=True,
)
settings.register_profile("saemui-fuzz", derandomize=True, database=None, max_examples=25, **_COMMON)
settings.register_profile("saemui-fuzz-long", max_examples=500, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "saemui-fuzz")
if PROFILE not in ("saemui-fuzz", "saemui-fuzz-long"):
    PROFILE = "saemui-fuzz"


def fuzz(scale: float = 1.0) -> settings:
    """The active profile with ``scale`` × its example budget (slow readers use < 1)."""
    base = settings.get_profile(PROFILE)
    return settings(base, max_examples=max(3, int(base.max_examples * scale)))


def expect_ok_or_error(call: Callable[[], Any], *names: str) -> Any:
    """``call()``; a SaemuiError must be one line naming one of ``names`` (file paths); returns None then."""
    try:
        return call()
    except SaemuiError as e:
        msg = str(e)
        assert "\n" not in msg and msg.strip() == msg, msg
        assert any(n in msg for n in names), f"error does not name {names}: {msg}"
        return None


# -- values -------------------------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from(
    ["", " ", "\u2028", "\x85", "\r", "\ufeff", "é", "日本語", "🙂", "\x00", "a" * 5000, "\\", '"', "\t\n"]
)
TEXT = st.one_of(st.text(max_size=40), ODD_TEXT)
HUGE_INT = "\x01huge-int\x01"  # dumps() writes a 5000-digit integer literal in its place
FLOATS = st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, 1.5, -2.0]) | st.floats(allow_nan=False)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), FLOATS, TEXT, st.just(HUGE_INT))
JSON_VALUES = st.recursive(
    SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c, max_size=3), max_leaves=8
)


def dumps(obj: Any) -> str:
    """JSON text in which every :data:`HUGE_INT` is a 5000-digit integer (Python's json refuses it on read)."""
    return json.dumps(obj, ensure_ascii=False).replace(json.dumps(HUGE_INT), "9" * 5000)


# -- byte-level mutations -----------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_ops: int = 3) -> bytes:
    """``data`` after up to ``max_ops`` random corruptions: flip, delete, insert, truncate, duplicate, BOM, CRLF."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(
            st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate", "bom", "crlf", "nul"])
        )
        n = len(b)
        i = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip" and n:
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "delete" and n:
            del b[i : i + draw(st.integers(1, 16))]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "truncate":
            del b[i:]
        elif op == "duplicate" and n:
            b[i:i] = b[i : i + draw(st.integers(1, 64))]
        elif op == "bom":
            b[0:0] = b"\xef\xbb\xbf"
        elif op == "crlf":
            b = bytearray(bytes(b).replace(b"\n", b"\r\n"))
        elif op == "nul":
            b[i:i] = b"\x00"
    return bytes(b)
