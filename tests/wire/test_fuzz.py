"""Arbitrary octets never make a parser raise anything but ParseError, nor loop.

Hypothesis's per-example deadline and pytest-timeout bound the time; nothing here asserts speed.
"""

from __future__ import annotations

import contextlib
import struct
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st

from stack.wire import (
    IcmpMessage,
    ParseError,
    TcpSegment,
    parse_icmp,
    parse_ipv4,
    parse_options,
    parse_tcp,
)

from .strategies import addresses

SRC = IPv4Address("198.18.0.1")
DST = IPv4Address("198.18.0.2")


@given(st.binary(max_size=200), st.booleans())
def test_parse_tcp_random_octets(data: bytes, verify: bool) -> None:
    try:
        seg = parse_tcp(data, SRC if verify else None, DST if verify else None)
    except ParseError:
        return
    assert isinstance(seg, TcpSegment)


@st.composite
def plausible_tcp(draw: st.DrawFn) -> bytes:
    """A 20-octet header with a random data offset, followed by random octets (to reach the options)."""
    header = bytearray(draw(st.binary(min_size=20, max_size=20)))
    header[12] = draw(st.integers(0, 15)) << 4 | (header[12] & 0x0F)
    return bytes(header) + draw(st.binary(max_size=60))


@given(plausible_tcp())
def test_parse_tcp_random_options(data: bytes) -> None:
    try:
        seg = parse_tcp(data)
    except ParseError as e:
        assert "data offset" in str(e)
        return
    header_len = (data[12] >> 4) * 4
    assert seg.payload == data[header_len:]
    assert seg == parse_tcp(data)  # deterministic


@given(st.binary(max_size=40))
def test_parse_options_never_raises(space: bytes) -> None:
    parse_options(space)


@st.composite
def plausible_ipv4(draw: st.DrawFn) -> bytes:
    """Random octets under a header whose version, IHL and length are sometimes right."""
    data = bytearray(draw(st.binary(min_size=20, max_size=120)))
    data[0] = draw(st.sampled_from([0x45, 0x46, 0x4F, 0x44, 0x65, data[0]]))
    if draw(st.booleans()):
        data[2:4] = struct.pack("!H", draw(st.integers(0, len(data) + 2)))
    if draw(st.booleans()):
        ihl = min((data[0] & 0x0F) * 4, len(data))
        data[10:12] = b"\x00\x00"
        total = sum(struct.unpack(f"!{ihl // 2}H", data[: ihl // 2 * 2]))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        data[10:12] = struct.pack("!H", ~total & 0xFFFF)
    return bytes(data)


@given(st.binary(max_size=100) | plausible_ipv4(), st.booleans(), st.booleans())
def test_parse_ipv4_random_octets(data: bytes, verify: bool, truncated_ok: bool) -> None:
    try:
        header, payload = parse_ipv4(data, verify_checksum=verify, truncated_ok=truncated_ok)
    except ParseError:
        return
    assert header.version == 4
    assert len(payload) <= header.total_length - header.header_len


@given(st.binary(max_size=100))
def test_parse_icmp_random_octets(data: bytes) -> None:
    try:
        parse_icmp(data)
    except ParseError:
        return


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1),
       st.binary(max_size=80) | plausible_ipv4())
def test_icmp_quote_helpers_random_bodies(type_: int, code: int, rest: int, body: bytes) -> None:
    msg = IcmpMessage(type_, code, rest, body)
    _ = (msg.ident, msg.seq, msg.next_hop_mtu, msg.pointer, msg.gateway, msg.is_error)
    for helper in (msg.quoted, msg.quoted_tcp):
        with contextlib.suppress(ParseError):
            helper()


@given(addresses, addresses, st.binary(max_size=100))
def test_parse_tcp_with_any_addresses(src: IPv4Address, dst: IPv4Address, data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_tcp(data, src, dst)
