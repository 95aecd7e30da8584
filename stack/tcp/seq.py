"""Sequence number arithmetic modulo 2**32 (RFC 9293 section 3.4; RFC 1982 serial number comparison).

Every comparison of sequence or acknowledgment numbers in the stack goes through these helpers:
plain integer comparison breaks at the 2**32 wrap.
"""

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32."""
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """a - b as a signed distance in [-2**31, 2**31)."""
    return ((a - b + HALF) & MASK) - HALF


def seq_lt(a: int, b: int) -> bool:
    """a < b modulo 2**32."""
    return seq_diff(a, b) < 0


def seq_le(a: int, b: int) -> bool:
    """a =< b modulo 2**32."""
    return seq_diff(a, b) <= 0


def seq_gt(a: int, b: int) -> bool:
    return seq_diff(a, b) > 0


def seq_ge(a: int, b: int) -> bool:
    return seq_diff(a, b) >= 0


def seq_in(lo: int, x: int, hi: int) -> bool:
    """lo =< x < hi modulo 2**32 (an empty range when lo == hi)."""
    return ((x - lo) & MASK) < ((hi - lo) & MASK)


def seq_max(a: int, b: int) -> int:
    return a if seq_ge(a, b) else b


def seq_min(a: int, b: int) -> int:
    return a if seq_le(a, b) else b
