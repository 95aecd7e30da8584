"""Range checks shared by the builders: a clear ValueError naming the field."""

from __future__ import annotations

import operator
from typing import Any


def uint(name: str, value: Any, bits: int) -> int:
    """`value` as an int in 0 .. 2**bits - 1, or ValueError naming `name`.

    Anything with __index__ is accepted (int, IntFlag, an int subclass for sequence numbers).
    """
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, not {type(value).__name__}") from None
    if not 0 <= v < 1 << bits:
        raise ValueError(f"{name} {v} out of range 0..{(1 << bits) - 1}")
    return v


def octets(name: str, value: Any) -> bytes:
    """`value` as bytes (any bytes-like object), or ValueError naming `name`."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise ValueError(f"{name} must be bytes, not {type(value).__name__}")
