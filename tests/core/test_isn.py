"""Initial sequence numbers per RFC 6528 (MUST-8, SHLD-1, MUST-9)."""

from __future__ import annotations

from ipaddress import IPv4Address

from stack.tcp.isn import Rfc6528Isn
from stack.tcp.seq import MOD, seq_diff

A = IPv4Address("198.18.0.1")
B = IPv4Address("198.18.0.2")


def test_isn_advances_with_a_4_microsecond_clock():
    """MUST-8: a clock-driven component, M, one tick per 4 us."""
    gen = Rfc6528Isn(key=b"k" * 16)
    first = gen(10.0, A, 40000, B, 80)
    later = gen(11.0, A, 40000, B, 80)
    assert seq_diff(later, first) == 250_000
    assert seq_diff(gen(10.000004, A, 40000, B, 80), first) == 1


def test_isn_depends_on_every_part_of_the_four_tuple():
    """SHLD-1: F(localip, localport, remoteip, remoteport, key) separates connections."""
    gen = Rfc6528Isn(key=b"k" * 16)
    base = gen(5.0, A, 40000, B, 80)
    variants = {
        gen(5.0, B, 40000, B, 80),
        gen(5.0, A, 40001, B, 80),
        gen(5.0, A, 40000, A, 80),
        gen(5.0, A, 40000, B, 81),
    }
    assert base not in variants
    assert len(variants) == 4


def test_isn_cannot_be_predicted_without_the_key():
    """MUST-9: two stacks (two keys) give unrelated ISNs for the same 4-tuple and time."""
    one = Rfc6528Isn(key=b"a" * 16)(5.0, A, 40000, B, 80)
    two = Rfc6528Isn(key=b"b" * 16)(5.0, A, 40000, B, 80)
    assert one != two
    assert Rfc6528Isn()(5.0, A, 40000, B, 80) != Rfc6528Isn()(5.0, A, 40000, B, 80)


def test_isn_is_a_32_bit_number_and_wraps():
    gen = Rfc6528Isn(key=b"k" * 16)
    for t in (0.0, 17_179.86918, 1e6):
        assert 0 <= gen(t, A, 1, B, 2) < MOD
