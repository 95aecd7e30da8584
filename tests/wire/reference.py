"""Naive reference implementations used as test oracles (deliberately slow and literal)."""

from __future__ import annotations

from ipaddress import IPv4Address


def naive_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 section 4.1, literally: add 16-bit words, pad an odd octet, fold the carries."""
    total = initial
    if len(data) % 2:
        data += b"\x00"
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def naive_checksum(data: bytes, initial: int = 0) -> int:
    """The complement of `naive_sum`."""
    return ~naive_sum(data, initial) & 0xFFFF


def naive_tcp_checksum(segment: bytes, src: IPv4Address, dst: IPv4Address) -> int:
    """The TCP checksum of `segment` (its checksum field taken as zero), pseudo-header per RFC 9293 3.1."""
    zeroed = segment[:16] + b"\x00\x00" + segment[18:]
    pseudo = src.packed + dst.packed + b"\x00\x06" + len(segment).to_bytes(2, "big")
    return naive_checksum(pseudo + zeroed)
