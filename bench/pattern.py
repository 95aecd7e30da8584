"""The bytes every bulk transfer carries, and the check its receiver makes.

Byte i of a transfer is BLOCK[i % len(BLOCK)], where BLOCK is 1,000,003 seeded pseudo-random bytes:
a prime length, so the pattern never lines up with a segment, a window or a 64 KiB read, and a piece
delivered out of place changes the CRC-32 that the receiver computes as it reads. The CRC costs the
stack's receiver and Linux's receiver the same (zlib runs at gigabytes a second), so the ratio of the
two stays fair. Standard library only: Linux's side of the benchmark (bench.peer) imports it too.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from functools import cache

BLOCK_LEN = 1_000_003
SEED = 8
CHUNK = 1 << 18  # what a sender hands to SEND (or sendall) at a time


@cache
def block() -> bytes:
    return random.Random(SEED).randbytes(BLOCK_LEN)


@cache
def _doubled() -> memoryview:
    """The block followed by its first CHUNK bytes, so any chunk is one slice."""
    b = block()
    return memoryview(b + b[:CHUNK])


def chunk_at(offset: int, length: int = CHUNK) -> memoryview:
    """`length` (at most CHUNK) bytes of the pattern from stream offset `offset`, without copying."""
    start = offset % BLOCK_LEN
    return _doubled()[start : start + min(length, CHUNK)]


def chunks(size: int) -> Iterator[memoryview]:
    """The first `size` bytes of the pattern, CHUNK at a time."""
    offset = 0
    while offset < size:
        piece = chunk_at(offset, size - offset)
        yield piece
        offset += len(piece)


def crc(size: int) -> int:
    """The CRC-32 of the first `size` bytes of the pattern (what an intact receiver reports)."""
    value = 0
    for piece in chunks(size):
        value = zlib.crc32(piece, value)
    return value
