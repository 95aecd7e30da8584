"""The Internet checksum (RFC 1071) against a naive word-by-word reference."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from stack.wire.checksum import fold16, internet_checksum, ones_complement_sum, pseudo_header_sum, raw_sum

from .reference import naive_checksum, naive_sum

# 198.18.0.0/15 only (RFC 2544 benchmarking range)
addresses = st.integers(int(IPv4Address("198.18.0.0")), int(IPv4Address("198.19.255.255"))).map(IPv4Address)


@given(st.binary(max_size=3000))
def test_matches_naive_reference(data: bytes) -> None:
    assert internet_checksum(data) == naive_checksum(data)
    assert ones_complement_sum(data) == naive_sum(data)


@given(st.binary(max_size=3000), st.integers(0, 2**40))
def test_matches_naive_reference_with_initial(data: bytes, initial: int) -> None:
    assert internet_checksum(data, initial) == naive_checksum(data, initial)


@given(st.integers(0, 1600), st.sampled_from([0x00, 0xFF]))
def test_all_zero_and_all_ones(length: int, octet: int) -> None:
    data = bytes([octet]) * length
    assert internet_checksum(data) == naive_checksum(data)


def test_zero_versus_negative_zero_edge() -> None:
    # All-zero data sums to +0 (checksum 0xFFFF); 0xFFFF words sum to -0 (checksum 0).
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(bytes(20)) == 0xFFFF
    assert internet_checksum(b"\xff\xff") == 0
    assert internet_checksum(b"\xff\xff" * 7) == 0
    # Non-zero words whose sum is a multiple of 65535 fold to 0xFFFF, not 0.
    assert internet_checksum(b"\x80\x00\x7f\xff") == 0
    assert fold16(0) == 0
    assert fold16(0xFFFF) == 0xFFFF
    assert fold16(0x1FFFE) == 0xFFFF
    assert fold16(0x10000) == 1


def test_rfc1071_worked_example() -> None:
    # RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to ddf2 (after end-around carry).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


@given(st.binary(max_size=600))
def test_inserting_the_checksum_makes_the_sum_verify(data: bytes) -> None:
    body = data + bytes(len(data) % 2)  # even length so the checksum lands on a word
    c = internet_checksum(body + b"\x00\x00")
    assert internet_checksum(body + struct.pack("!H", c)) == 0


@given(st.binary(min_size=2, max_size=300), st.data())
def test_partial_sums_add(data: bytes, d: st.DataObject) -> None:
    cut = d.draw(st.integers(0, len(data) // 2)) * 2
    assert fold16(raw_sum(data[:cut]) + raw_sum(data[cut:])) == ones_complement_sum(data)


@given(addresses, addresses, st.integers(0, 255), st.integers(0, 0xFFFF))
def test_pseudo_header_sum(src: IPv4Address, dst: IPv4Address, proto: int, length: int) -> None:
    pseudo = src.packed + dst.packed + bytes([0, proto]) + length.to_bytes(2, "big")
    assert fold16(pseudo_header_sum(src, dst, proto, length)) == naive_sum(pseudo)


def test_memoryview_and_bytearray_accepted() -> None:
    data = bytes(range(256)) * 6 + b"\x01"
    assert internet_checksum(memoryview(data)) == naive_checksum(data)
    assert internet_checksum(bytearray(data)) == naive_checksum(data)
    assert internet_checksum(memoryview(data)[3:]) == naive_checksum(data[3:])
