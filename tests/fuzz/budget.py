"""How many segments the fuzzers feed: TCPSH_FUZZ_SEGMENTS (default 100,000) in memory, a tenth of
that (at least 2,000) as raw packets over the lab link. Raise it for a longer run:

    TCPSH_FUZZ_SEGMENTS=2000000 .venv/bin/python -m pytest tests/fuzz
"""

from __future__ import annotations

import math
import os

DEFAULT_SEGMENTS = 100_000


def total_segments() -> int:
    text = os.environ.get("TCPSH_FUZZ_SEGMENTS", "").strip().replace("_", "")
    if not text:
        return DEFAULT_SEGMENTS
    try:
        value = int(float(text))
    except ValueError:
        raise ValueError(f"TCPSH_FUZZ_SEGMENTS must be a number of segments, not {text!r}") from None
    if value < 1:
        raise ValueError("TCPSH_FUZZ_SEGMENTS must be at least 1")
    return value


def share(fraction: float, parts: int) -> int:
    """One test's part of the in-memory total: `fraction` of it split over `parts` tests."""
    return max(1, math.ceil(total_segments() * fraction / parts))


def lab_packets() -> int:
    return max(2_000, total_segments() // 10)
