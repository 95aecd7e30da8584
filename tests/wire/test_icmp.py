"""ICMP codec (RFC 792, RFC 1191): known answers, quoted datagrams, round trips, validation."""

from __future__ import annotations

import dataclasses
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import (
    Flags,
    IcmpMessage,
    IcmpType,
    IPv4Flags,
    IPv4Header,
    ParamProblemCode,
    ParseError,
    TcpOptions,
    TcpSegment,
    TimeExceededCode,
    UnreachCode,
    build_icmp,
    build_ipv4,
    build_tcp,
    echo_reply,
    echo_request,
    icmp_error,
    parse_icmp,
    parse_ipv4,
)

from .reference import naive_checksum
from .strategies import icmp_messages, tcp_segments

SRC = IPv4Address("198.18.0.1")
DST = IPv4Address("198.18.0.2")
ROUTER = IPv4Address("198.19.0.1")


def icmp_bytes(type_: int, code: int, rest: bytes, body: bytes) -> bytes:
    """An ICMP message assembled by hand, checksum by the naive reference."""
    raw = bytes([type_, code, 0, 0]) + rest + body
    return raw[:2] + struct.pack("!H", naive_checksum(raw)) + raw[4:]


ECHO = icmp_bytes(8, 0, struct.pack("!HH", 0x1234, 7), b"abcdefghijklmnopqrstuvw")  # odd length body


def test_echo_request_known_answer() -> None:
    msg = parse_icmp(ECHO)
    assert msg.type == IcmpType.ECHO_REQUEST and msg.code == 0
    assert msg.ident == 0x1234 and msg.seq == 7
    assert msg.body == b"abcdefghijklmnopqrstuvw"
    assert msg.checksum == int.from_bytes(ECHO[2:4], "big")
    assert not msg.is_error and msg.next_hop_mtu is None
    assert build_icmp(echo_request(0x1234, 7, b"abcdefghijklmnopqrstuvw")) == ECHO


def test_echo_reply() -> None:
    reply = echo_reply(parse_icmp(ECHO))
    assert reply == IcmpMessage(IcmpType.ECHO_REPLY, 0, (0x1234 << 16) | 7, b"abcdefghijklmnopqrstuvw")
    raw = build_icmp(reply)
    assert raw == icmp_bytes(0, 0, struct.pack("!HH", 0x1234, 7), b"abcdefghijklmnopqrstuvw")
    assert parse_icmp(raw).ident == 0x1234
    with pytest.raises(ValueError, match="not an echo request"):
        echo_reply(reply)


@pytest.mark.parametrize("length", [0, 4, 7])
def test_truncated(length: int) -> None:
    with pytest.raises(ParseError, match="ICMP header truncated"):
        parse_icmp(ECHO[:length])


@given(st.integers(0, len(ECHO) * 8 - 1))
def test_checksum_detects_a_flipped_bit(bit: int) -> None:
    raw = bytearray(ECHO)
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ParseError, match="bad ICMP checksum"):
        parse_icmp(bytes(raw))


# --- error messages and their quoted datagram -------------------------------------------------------------

SYN = build_tcp(
    TcpSegment(40000, 80, seq=0xFEEDF00D, flags=Flags.SYN, window=64240,
               options=TcpOptions(mss=1460, sack_permitted=True, timestamps=(1, 0), wscale=7)),
    SRC, DST,
)
ORIGINAL = build_ipv4(IPv4Header(src=SRC, dst=DST, protocol=6, identification=99, flags=IPv4Flags.DF), SYN)


def test_fragmentation_needed_known_answer() -> None:
    # RFC 1191 section 4: unused (16) | next-hop MTU (16), then IP header + 64 bits of data (RFC 792).
    raw = icmp_bytes(3, 4, struct.pack("!HH", 0, 1400), ORIGINAL[:28])
    msg = parse_icmp(raw)
    assert msg.type == IcmpType.DEST_UNREACHABLE and msg.code == UnreachCode.FRAGMENTATION_NEEDED
    assert msg.next_hop_mtu == 1400
    assert msg.is_error
    header, data = msg.quoted()
    assert header == parse_ipv4(ORIGINAL)[0]
    assert header.total_length == len(ORIGINAL) > len(msg.body)
    assert data == SYN[:8]
    assert msg.quoted_tcp() == (40000, 80, 0xFEEDF00D)
    assert build_icmp(icmp_error(IcmpType.DEST_UNREACHABLE, UnreachCode.FRAGMENTATION_NEEDED,
                                 ORIGINAL, mtu=1400)) == raw


def test_port_unreachable_has_no_mtu() -> None:
    msg = parse_icmp(build_icmp(icmp_error(IcmpType.DEST_UNREACHABLE, UnreachCode.PORT, ORIGINAL)))
    assert msg.next_hop_mtu is None
    assert msg.quoted_tcp() == (40000, 80, 0xFEEDF00D)


def test_time_exceeded_and_source_quench() -> None:
    for type_, code in ((IcmpType.TIME_EXCEEDED, TimeExceededCode.TTL_EXCEEDED), (IcmpType.SOURCE_QUENCH, 0)):
        raw = build_icmp(icmp_error(type_, code, ORIGINAL))
        assert raw[4:8] == bytes(4)
        msg = parse_icmp(raw)
        assert (msg.type, msg.code) == (type_, code)
        assert msg.quoted_tcp() == (40000, 80, 0xFEEDF00D)


def test_parameter_problem_pointer() -> None:
    msg = icmp_error(IcmpType.PARAMETER_PROBLEM, ParamProblemCode.POINTER, ORIGINAL, pointer=8)
    raw = build_icmp(msg)
    assert raw[4:8] == bytes([8, 0, 0, 0])
    assert parse_icmp(raw).pointer == 8


def test_redirect_gateway() -> None:
    msg = icmp_error(IcmpType.REDIRECT, 1, ORIGINAL, gateway=ROUTER)
    raw = build_icmp(msg)
    assert raw[4:8] == ROUTER.packed
    assert parse_icmp(raw).gateway == ROUTER
    with pytest.raises(ValueError, match="gateway"):
        icmp_error(IcmpType.REDIRECT, 1, ORIGINAL)


def test_quote_with_ip_options_and_more_than_64_bits() -> None:
    original = build_ipv4(IPv4Header(src=SRC, dst=DST, protocol=6, options=b"\x94\x04\x00\x00"), SYN)
    quoted = icmp_error(IcmpType.TIME_EXCEEDED, 0, original)
    assert len(quoted.body) == 24 + 8
    msg = IcmpMessage(IcmpType.TIME_EXCEEDED, 0, 0, original[:100])  # RFC 1812 routers quote more
    header, data = msg.quoted()
    assert header.options == b"\x94\x04\x00\x00"
    assert data == SYN[:76]
    assert msg.quoted_tcp() == (40000, 80, 0xFEEDF00D)


def test_quoted_errors() -> None:
    with pytest.raises(ParseError, match="carries no quoted datagram"):
        parse_icmp(ECHO).quoted()
    with pytest.raises(ParseError, match="quoted datagram: IPv4 header truncated"):
        IcmpMessage(3, 1, 0, ORIGINAL[:12]).quoted()
    with pytest.raises(ParseError, match="quoted datagram: IPv4 version"):
        IcmpMessage(3, 1, 0, b"\x60" + ORIGINAL[1:28]).quoted()
    with pytest.raises(ParseError, match="quoted TCP header truncated"):
        IcmpMessage(3, 1, 0, ORIGINAL[:24]).quoted_tcp()
    udp = build_ipv4(IPv4Header(src=SRC, dst=DST, protocol=17), bytes(8))
    with pytest.raises(ParseError, match="not TCP"):
        IcmpMessage(3, 3, 0, udp).quoted_tcp()


def test_quote_checksum_not_verified() -> None:
    bad = bytearray(ORIGINAL[:28])
    bad[8] -= 1  # a router decremented TTL in the quote without fixing the checksum
    assert IcmpMessage(11, 0, 0, bytes(bad)).quoted_tcp() == (40000, 80, 0xFEEDF00D)


def test_icmp_error_rejects_non_error_types() -> None:
    with pytest.raises(ValueError, match="not an error message"):
        icmp_error(IcmpType.ECHO_REQUEST, 0, ORIGINAL)


@given(tcp_segments(max_payload=64), st.sampled_from([3, 4, 11, 12]), st.integers(0, 15))
def test_quoted_tcp_of_any_segment(seg: TcpSegment, type_: int, code: int) -> None:
    original = build_ipv4(IPv4Header(src=SRC, dst=DST, protocol=6), build_tcp(seg, SRC, DST))
    msg = parse_icmp(build_icmp(icmp_error(type_, code, original, mtu=576)))
    assert msg.quoted_tcp() == (seg.src_port, seg.dst_port, seg.seq)


# --- round trips and validation -----------------------------------------------------------------------------


@given(icmp_messages)
def test_build_then_parse_is_identity(msg: IcmpMessage) -> None:
    raw = build_icmp(msg)
    assert naive_checksum(raw) == 0
    parsed = parse_icmp(raw)
    assert parsed == dataclasses.replace(msg, checksum=parsed.checksum)
    assert build_icmp(parsed) == raw


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=100))
def test_echo_round_trip(ident: int, seq: int, data: bytes) -> None:
    msg = parse_icmp(build_icmp(echo_request(ident, seq, data)))
    assert (msg.type, msg.ident, msg.seq, msg.body) == (IcmpType.ECHO_REQUEST, ident, seq, data)


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (IcmpMessage(256), "ICMP type"),
        (IcmpMessage(8, 256), "ICMP code"),
        (IcmpMessage(8, 0, 2**32), "rest of header"),
        (IcmpMessage(8, 0, 0, "text"), "ICMP body must be bytes"),  # type: ignore[arg-type]
    ],
)
def test_build_rejects_out_of_range(msg: IcmpMessage, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_icmp(msg)


def test_helpers_reject_out_of_range() -> None:
    with pytest.raises(ValueError, match="echo identifier"):
        echo_request(65536, 0)
    with pytest.raises(ValueError, match="echo sequence number"):
        echo_request(0, -1)
    with pytest.raises(ValueError, match="next-hop MTU"):
        icmp_error(3, 4, ORIGINAL, mtu=70000)
