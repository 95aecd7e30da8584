"""IPv4 header codec (RFC 791 section 3.1): known answers, checks, round trips, validation."""

from __future__ import annotations

import dataclasses
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import (
    PROTO_ICMP,
    PROTO_TCP,
    IpProto,
    IPv4Flags,
    IPv4Header,
    ParseError,
    build_ipv4,
    parse_ipv4,
)

from .reference import naive_checksum
from .strategies import ipv4_headers

SRC = IPv4Address("198.18.0.1")
DST = IPv4Address("198.18.0.2")


def datagram_bytes(
    payload: bytes, *, tos: int = 0, ident: int = 0, flags_frag: int = 0, ttl: int = 64,
    proto: int = 6, options: bytes = b"", src: IPv4Address = SRC, dst: IPv4Address = DST,
) -> bytes:
    """An IPv4 datagram assembled by hand with struct, header checksum by the naive reference."""
    ihl = 5 + len(options) // 4
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, ihl * 4 + len(payload), ident, flags_frag,
                         ttl, proto, 0, src.packed, dst.packed) + options
    checksum = naive_checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


PAYLOAD = bytes(range(40))
KNOWN = datagram_bytes(PAYLOAD, tos=0xB9, ident=0x1C46, flags_frag=0x4000, ttl=64, proto=6)


def test_known_datagram_field_by_field() -> None:
    header, payload = parse_ipv4(KNOWN)
    assert header.version == 4
    assert header.ihl == 5 and header.header_len == 20
    assert header.dscp == 0xB9 >> 2 == 46  # EF
    assert header.ecn == 1
    assert header.total_length == 60
    assert header.identification == 0x1C46
    assert header.flags == IPv4Flags.DF
    assert header.df and not header.mf and not header.is_fragment
    assert header.fragment_offset == 0
    assert header.ttl == 64
    assert header.protocol == PROTO_TCP == IpProto.TCP == 6
    assert header.checksum == int.from_bytes(KNOWN[10:12], "big")
    assert header.src == SRC and header.dst == DST
    assert isinstance(header.src, IPv4Address)
    assert header.options == b""
    assert isinstance(payload, memoryview)
    assert bytes(payload) == PAYLOAD


def test_known_datagram_built_byte_for_byte() -> None:
    header = IPv4Header(src=SRC, dst=DST, protocol=PROTO_TCP, ttl=64, dscp=46, ecn=1,
                        identification=0x1C46, flags=IPv4Flags.DF)
    assert build_ipv4(header, PAYLOAD) == KNOWN


def test_fragment_fields() -> None:
    raw = datagram_bytes(b"x" * 8, flags_frag=0x2000 | 185, proto=PROTO_ICMP)
    header, _ = parse_ipv4(raw)
    assert header.mf and not header.df and header.fragment_offset == 185 and header.is_fragment
    raw = datagram_bytes(b"x" * 8, flags_frag=0x8000 | 0x4000)
    assert parse_ipv4(raw)[0].flags == IPv4Flags.RESERVED | IPv4Flags.DF


def test_link_padding_beyond_total_length_is_cut_off() -> None:
    short = datagram_bytes(b"\x01\x02\x03\x04\x05\x06")
    frame_payload = short + bytes(60 - 14 - len(short))  # Ethernet minimum frame padding
    header, payload = parse_ipv4(frame_payload)
    assert header.total_length == 26
    assert bytes(payload) == b"\x01\x02\x03\x04\x05\x06"


def test_options_are_kept_raw_and_skipped() -> None:
    options = bytes([0x94, 0x04, 0x00, 0x00])  # router alert, RFC 2113
    raw = datagram_bytes(b"data", options=options)
    header, payload = parse_ipv4(raw)
    assert header.ihl == 6 and header.options == options
    assert bytes(payload) == b"data"
    assert build_ipv4(dataclasses.replace(header), b"data") == raw


def test_build_pads_options_with_zeros() -> None:
    raw = build_ipv4(IPv4Header(src=SRC, dst=DST, protocol=6, options=b"\x01\x01\x01"), b"p")
    header, payload = parse_ipv4(raw)
    assert header.ihl == 6
    assert header.options == b"\x01\x01\x01\x00"
    assert bytes(payload) == b"p"


def test_build_ignores_stale_computed_fields() -> None:
    stale = IPv4Header(src=SRC, dst=DST, protocol=6, ihl=9, total_length=3, checksum=0xBEEF)
    header, _ = parse_ipv4(build_ipv4(stale, b"abc"))
    assert (header.ihl, header.total_length) == (5, 23)
    assert header.checksum != 0xBEEF


@pytest.mark.parametrize("length", [0, 1, 19])
def test_truncated_header(length: int) -> None:
    with pytest.raises(ParseError, match="IPv4 header truncated"):
        parse_ipv4(KNOWN[:length])


def _patched(raw: bytes, offset: int, value: bytes) -> bytes:
    """`raw` with `value` written at `offset` and the header checksum recomputed."""
    b = bytearray(raw)
    b[offset:offset + len(value)] = value
    ihl = (b[0] & 0x0F) * 4 if (b[0] & 0x0F) * 4 <= len(b) else 20
    b[10:12] = b"\x00\x00"
    b[10:12] = naive_checksum(bytes(b[:max(ihl, 20)])).to_bytes(2, "big")
    return bytes(b)


@pytest.mark.parametrize("version", [0, 5, 6, 15])
def test_version_must_be_4(version: int) -> None:
    with pytest.raises(ParseError, match=f"IPv4 version is {version}"):
        parse_ipv4(_patched(KNOWN, 0, bytes([version << 4 | 5])))


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ihl_at_least_5(ihl: int) -> None:
    with pytest.raises(ParseError, match="IHL"):
        parse_ipv4(_patched(KNOWN, 0, bytes([0x40 | ihl])))


def test_ihl_past_the_buffer() -> None:
    with pytest.raises(ParseError, match="IHL"):
        parse_ipv4(_patched(KNOWN, 0, b"\x4f")[:40])


def test_total_length_checks() -> None:
    with pytest.raises(ParseError, match="total length 19 is less than"):
        parse_ipv4(_patched(KNOWN, 2, struct.pack("!H", 19)))
    with pytest.raises(ParseError, match="total length 61 runs past"):
        parse_ipv4(_patched(KNOWN, 2, struct.pack("!H", 61)))
    with pytest.raises(ParseError, match="total length 60 runs past"):
        parse_ipv4(KNOWN[:59])
    header, payload = parse_ipv4(KNOWN[:28], truncated_ok=True)
    assert header.total_length == 60 and bytes(payload) == PAYLOAD[:8]


@given(st.integers(0, 20 * 8 - 1))
def test_header_checksum_detects_a_flipped_bit(bit: int) -> None:
    raw = bytearray(KNOWN)
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ParseError):
        parse_ipv4(bytes(raw))


def test_checksum_verification_can_be_skipped() -> None:
    raw = bytearray(KNOWN)
    raw[8] = 1  # TTL changed, checksum left stale
    with pytest.raises(ParseError, match="bad IPv4 header checksum"):
        parse_ipv4(bytes(raw))
    assert parse_ipv4(bytes(raw), verify_checksum=False)[0].ttl == 1


def test_payload_is_a_view_of_the_input() -> None:
    buf = bytearray(KNOWN)
    _, payload = parse_ipv4(buf)
    buf[20] = 0xAA
    assert payload[0] == 0xAA


@given(ipv4_headers(), st.binary(max_size=2000))
def test_build_then_parse_is_identity(header: IPv4Header, payload: bytes) -> None:
    raw = build_ipv4(header, payload)
    assert naive_checksum(raw[: header.header_len + len(header.options)]) == 0
    parsed, body = parse_ipv4(raw)
    assert bytes(body) == payload
    assert parsed == dataclasses.replace(
        header, ihl=5 + len(header.options) // 4, total_length=len(raw), checksum=parsed.checksum
    )
    assert build_ipv4(parsed, body) == raw


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dscp": 64}, "DSCP"),
        ({"ecn": 4}, "ECN"),
        ({"identification": 65536}, "identification"),
        ({"flags": 8}, "IPv4 flags"),
        ({"fragment_offset": 0x2000}, "fragment offset"),
        ({"ttl": 256}, "TTL"),
        ({"ttl": -1}, "TTL"),
        ({"protocol": 256}, "protocol"),
        ({"options": bytes(41)}, "IPv4 options take 44 octets"),
        ({"options": "x"}, "IPv4 options must be bytes"),
        ({"src": "198.18.0.1"}, "IPv4Address"),
    ],
)
def test_build_rejects_out_of_range(changes: dict[str, object], message: str) -> None:
    header = dataclasses.replace(IPv4Header(src=SRC, dst=DST, protocol=6), **changes)
    with pytest.raises(ValueError, match=message):
        build_ipv4(header, b"")


def test_build_rejects_oversized_datagram() -> None:
    with pytest.raises(ValueError, match="total length 65536"):
        build_ipv4(IPv4Header(src=SRC, dst=DST, protocol=6), bytes(65516))
    assert len(build_ipv4(IPv4Header(src=SRC, dst=DST, protocol=6), bytes(65515))) == 65535
