"""TCP header and options codec: known answers, the RFC 9293 MUSTs, round trips, validation."""

from __future__ import annotations

import dataclasses
import struct
from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stack.wire import (
    NO_OPTIONS,
    Flags,
    ParseError,
    TcpOptions,
    TcpSegment,
    build_options,
    build_tcp,
    parse_options,
    parse_tcp,
    tcp_checksum_ok,
)

from .reference import naive_tcp_checksum
from .strategies import addresses, tcp_options, tcp_segments

SRC = IPv4Address("198.18.0.1")
DST = IPv4Address("198.18.0.2")


def segment_bytes(
    sport: int, dport: int, seq: int, ack: int, flags: int, window: int, options: bytes,
    payload: bytes = b"", urgent: int = 0, src: IPv4Address = SRC, dst: IPv4Address = DST,
) -> bytes:
    """A TCP segment assembled by hand with struct, checksum by the naive reference."""
    assert len(options) % 4 == 0
    offset = (20 + len(options)) // 4
    raw = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, window, 0, urgent)
    raw += options + payload
    checksum = naive_tcp_checksum(raw, src, dst)
    return raw[:16] + struct.pack("!H", checksum) + raw[18:]


# --- known answers: segments laid out exactly as Linux writes them ------------------------------------------

# Linux SYN (tcp_options_write): MSS 1460, SACK-permitted + timestamps, NOP, window scale 7.
LINUX_SYN_OPTIONS = (
    bytes([2, 4]) + struct.pack("!H", 1460)
    + bytes([4, 2, 8, 10]) + struct.pack("!II", 0x0A0B0C0D, 0)
    + bytes([1, 3, 3, 7])
)
LINUX_SYN = segment_bytes(40000, 80, 0x12345678, 0, 0x02, 64240, LINUX_SYN_OPTIONS)


def test_linux_syn_parsed_field_by_field() -> None:
    assert len(LINUX_SYN) == 40
    seg = parse_tcp(LINUX_SYN, SRC, DST)
    assert seg.src_port == 40000
    assert seg.dst_port == 80
    assert seg.seq == 0x12345678
    assert seg.ack == 0
    assert seg.flags == Flags.SYN
    assert seg.window == 64240
    assert seg.urgent == 0
    assert seg.options.mss == 1460
    assert seg.options.sack_permitted is True
    assert seg.options.timestamps == (0x0A0B0C0D, 0)
    assert seg.options.wscale == 7
    assert seg.options.sack_blocks == ()
    assert seg.options.unknown == ()
    assert seg.options.malformed is False
    assert seg.payload == b""
    assert seg.seg_len == 1


def test_linux_syn_built_byte_for_byte() -> None:
    seg = TcpSegment(
        40000, 80, seq=0x12345678, flags=Flags.SYN, window=64240,
        options=TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(0x0A0B0C0D, 0)),
    )
    assert build_tcp(seg, SRC, DST) == LINUX_SYN


def test_linux_syn_without_timestamps_built_byte_for_byte() -> None:
    # net.ipv4.tcp_timestamps=0: MSS, NOP NOP SACK-permitted, NOP window scale.
    options = bytes([2, 4, 0x05, 0xB4, 1, 1, 4, 2, 1, 3, 3, 7])
    expected = segment_bytes(40001, 7, 1, 0, 0x02, 64240, options)
    seg = TcpSegment(40001, 7, seq=1, flags=Flags.SYN, window=64240,
                     options=TcpOptions(mss=1460, wscale=7, sack_permitted=True))
    assert build_tcp(seg, SRC, DST) == expected
    assert parse_tcp(expected, SRC, DST) == seg


def test_linux_data_segment_with_timestamps_and_sack() -> None:
    # ACK with data: NOP NOP TS, NOP NOP SACK with two blocks.
    options = (bytes([1, 1, 8, 10]) + struct.pack("!II", 100, 200)
               + bytes([1, 1, 5, 18]) + struct.pack("!IIII", 1000, 2000, 3000, 4000))
    payload = b"hello, world\n"
    expected = segment_bytes(80, 40000, 0xFFFFFFF0, 0x12345679, 0x18, 502, options, payload)
    seg = parse_tcp(expected, SRC, DST)
    assert seg.flags == Flags.ACK | Flags.PSH
    assert seg.seq == 0xFFFFFFF0
    assert seg.ack == 0x12345679
    assert seg.options == TcpOptions(timestamps=(100, 200), sack_blocks=((1000, 2000), (3000, 4000)))
    assert seg.payload == payload
    assert build_tcp(seg, SRC, DST) == expected


def test_all_eight_flag_bits() -> None:
    raw = segment_bytes(1, 2, 3, 4, 0xFF, 5, b"")
    seg = parse_tcp(raw, SRC, DST)
    every = Flags.CWR | Flags.ECE | Flags.URG | Flags.ACK | Flags.PSH | Flags.RST | Flags.SYN | Flags.FIN
    assert seg.flags == every
    assert seg.flags & Flags.CWR and seg.flags & Flags.ECE
    assert Flags.names(seg.flags) == "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR"
    ecn_syn = parse_tcp(segment_bytes(1, 2, 3, 4, 0xC2, 5, b""), SRC, DST)
    assert ecn_syn.flags == Flags.CWR | Flags.ECE | Flags.SYN


def test_urgent_pointer_and_reserved_bits() -> None:
    raw = bytearray(segment_bytes(1, 2, 3, 4, 0x20, 5, b"", b"x", urgent=1))
    assert parse_tcp(bytes(raw), SRC, DST).urgent == 1
    raw[12] |= 0x0F  # the reserved bits beside the data offset are ignored
    assert parse_tcp(bytes(raw)).flags == Flags.URG


def test_no_options_gives_the_shared_empty_value() -> None:
    seg = parse_tcp(segment_bytes(1, 2, 3, 4, 0x10, 5, b""), SRC, DST)
    assert seg.options == NO_OPTIONS
    assert len(build_tcp(TcpSegment(1, 2), SRC, DST)) == 20


# --- header errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 19])
def test_truncated_header(length: int) -> None:
    with pytest.raises(ParseError, match="TCP header truncated"):
        parse_tcp(LINUX_SYN[:length])


@pytest.mark.parametrize("offset", [0, 1, 4])
def test_data_offset_below_five(offset: int) -> None:
    raw = bytearray(LINUX_SYN)
    raw[12] = offset << 4
    with pytest.raises(ParseError, match="data offset"):
        parse_tcp(bytes(raw))


def test_data_offset_past_the_end() -> None:
    raw = bytearray(segment_bytes(1, 2, 3, 4, 0x10, 5, b""))
    raw[12] = 6 << 4
    with pytest.raises(ParseError, match="data offset"):
        parse_tcp(bytes(raw))
    with pytest.raises(ParseError, match="data offset"):
        parse_tcp(LINUX_SYN[:39])


def test_checksum_not_verified_without_addresses() -> None:
    raw = bytearray(LINUX_SYN)
    raw[16] ^= 0xFF
    assert parse_tcp(bytes(raw)).options.mss == 1460
    with pytest.raises(ParseError, match="bad TCP checksum"):
        parse_tcp(bytes(raw), SRC, DST)


def test_checksum_needs_both_addresses() -> None:
    with pytest.raises(ValueError, match="both src and dst"):
        parse_tcp(LINUX_SYN, SRC, None)


def test_checksum_covers_the_pseudo_header() -> None:
    assert tcp_checksum_ok(LINUX_SYN, SRC, DST)
    assert not tcp_checksum_ok(LINUX_SYN, DST, IPv4Address("198.18.0.3"))
    with pytest.raises(ParseError, match="bad TCP checksum"):
        parse_tcp(LINUX_SYN, SRC, IPv4Address("198.18.0.3"))


@given(tcp_segments(max_payload=300), st.data())
def test_single_flipped_bit_is_detected(seg: TcpSegment, data: st.DataObject) -> None:
    raw = bytearray(build_tcp(seg, SRC, DST))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    assert not tcp_checksum_ok(bytes(raw), SRC, DST)
    with pytest.raises(ParseError):
        parse_tcp(bytes(raw), SRC, DST)


def test_memoryview_input_gives_bytes_payload() -> None:
    raw = segment_bytes(1, 2, 3, 4, 0x18, 5, b"", b"abc")
    seg = parse_tcp(memoryview(b"pad" + raw)[3:], SRC, DST)
    assert seg.payload == b"abc" and type(seg.payload) is bytes
    assert parse_tcp(bytearray(raw), SRC, DST) == seg


# --- options: the MUSTs of RFC 9293 section 3.1/3.2 and 3.7 -------------------------------------------------


def test_must6_unknown_option_skipped_by_length_and_recorded() -> None:
    opts = parse_options(bytes([30, 6, 0xDE, 0xAD, 0xBE, 0xEF, 2, 4, 0x05, 0xB4, 0, 0]))
    assert opts.unknown == ((30, b"\xde\xad\xbe\xef"),)
    assert opts.mss == 1460
    assert not opts.malformed
    # An unknown option with length 2 has no data.
    assert parse_options(bytes([254, 2, 3, 3, 9, 0])).unknown == ((254, b""),)
    assert parse_options(bytes([254, 2, 3, 3, 9, 0])).wscale == 9


def test_must6_in_a_whole_segment() -> None:
    options = bytes([2, 4, 0x02, 0x18, 99, 4, 1, 2])
    seg = parse_tcp(segment_bytes(1, 2, 3, 0, 0x02, 5, options), SRC, DST)
    assert seg.options == TcpOptions(mss=536, unknown=((99, b"\x01\x02"),))


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        # length 0 and 1 for a kind with a length octet: stop, keep what came before
        (bytes([2, 4, 0x05, 0xB4, 30, 0, 3, 3, 7, 0, 0, 0]), TcpOptions(mss=1460, malformed=True)),
        (bytes([2, 4, 0x05, 0xB4, 30, 1, 3, 3, 7, 0, 0, 0]), TcpOptions(mss=1460, malformed=True)),
        (bytes([2, 0, 0, 0]), TcpOptions(malformed=True)),
        (bytes([8, 1, 0, 0]), TcpOptions(malformed=True)),
        # length running past the option space
        (bytes([3, 3, 5, 2, 8, 0x05, 0xB4]), TcpOptions(wscale=5, malformed=True)),
        (bytes([1, 1, 8, 10]) + bytes(4), TcpOptions(malformed=True)),
        (bytes([5, 0xFF, 0, 0]), TcpOptions(malformed=True)),
        # a kind octet with no room left for its length octet
        (bytes([1, 1, 1, 30]), TcpOptions(malformed=True)),
        (bytes([4, 2, 1, 2]), TcpOptions(sack_permitted=True, malformed=True)),
    ],
)
def test_must7_illegal_length_never_raises(space: bytes, expected: TcpOptions) -> None:
    assert parse_options(space) == expected
    # and in a whole segment, padded to a word boundary
    options = space + bytes(-len(space) % 4)
    seg = parse_tcp(segment_bytes(1, 2, 3, 4, 0x12, 5, options, b"data"), SRC, DST)
    assert seg.options.malformed
    assert seg.payload == b"data"


@given(st.binary(max_size=40))
def test_must7_any_option_space_parses_without_raising(space: bytes) -> None:
    opts = parse_options(space)
    assert isinstance(opts, TcpOptions)


def test_must7_worst_cases_terminate() -> None:
    for space in (bytes([1]) * 40, bytes([30, 1]) * 20, bytes([30, 2]) * 20, bytes([255]) * 40, bytes(40)):
        parse_options(space)
    assert parse_options(bytes([30, 2]) * 20).unknown == ((30, b""),) * 20


def test_must64_options_at_odd_alignment() -> None:
    # NOP, then MSS at offset 1, window scale at offset 5, timestamps at offset 8, SACK-permitted at 18.
    space = (bytes([1, 2, 4, 0x05, 0xB4, 3, 3, 14, 8, 10]) + struct.pack("!II", 7, 8)
             + bytes([4, 2, 5, 10]) + struct.pack("!II", 1, 2) + bytes([0, 0]))
    assert len(space) == 32
    opts = parse_options(space)
    assert opts == TcpOptions(
        mss=1460, wscale=14, sack_permitted=True, timestamps=(7, 8), sack_blocks=((1, 2),)
    )
    assert parse_tcp(segment_bytes(1, 2, 3, 4, 0x02, 5, space), SRC, DST).options == opts


def _encode(kind: str, opts: TcpOptions) -> bytes:
    if kind == "mss":
        return struct.pack("!BBH", 2, 4, opts.mss)
    if kind == "wscale":
        return bytes([3, 3, opts.wscale])
    if kind == "sackok":
        return bytes([4, 2])
    if kind == "ts":
        return struct.pack("!BBII", 8, 10, *opts.timestamps)
    edges = [e for block in opts.sack_blocks for e in block]
    return struct.pack(f"!BB{len(edges)}I", 5, 2 + 4 * len(edges), *edges)


@given(tcp_options(unknown=False), st.data())
def test_must64_any_order_any_alignment(opts: TcpOptions, data: st.DataObject) -> None:
    present = [k for k, on in (("mss", opts.mss is not None), ("wscale", opts.wscale is not None),
                               ("sackok", opts.sack_permitted), ("ts", opts.timestamps is not None),
                               ("sack", bool(opts.sack_blocks))) if on]
    order = data.draw(st.permutations(present))
    parts = [_encode(k, opts) for k in order]
    size = sum(map(len, parts))
    space = b""
    for part in parts:
        nops = data.draw(st.integers(0, 40 - size))
        size += nops
        space += b"\x01" * nops + part
    assert parse_options(space) == opts


def test_known_option_with_wrong_length_is_skipped_and_ignored() -> None:
    space = bytes([2, 6, 0x05, 0xB4, 0, 0, 3, 4, 7, 0, 8, 9] + [0] * 7 + [4, 2])
    assert parse_options(space) == TcpOptions(sack_permitted=True)
    assert parse_options(bytes([5, 2, 5, 11] + [0] * 9)) == TcpOptions()
    assert parse_options(bytes([4, 3, 0, 2, 4, 0x05, 0xB4])) == TcpOptions(mss=1460)


def test_eol_ends_the_list() -> None:
    assert parse_options(bytes([2, 4, 0x05, 0xB4, 0, 3, 3, 7])) == TcpOptions(mss=1460)
    assert parse_options(bytes([0, 2, 4, 0x05, 0xB4])) == TcpOptions()


def test_last_of_repeated_options_wins() -> None:
    assert parse_options(bytes([2, 4, 0, 1, 2, 4, 0, 2])).mss == 2


@pytest.mark.parametrize("blocks", [1, 2, 3, 4])
def test_sack_block_counts(blocks: int) -> None:
    edges = list(range(1, 2 * blocks + 1))
    space = struct.pack(f"!BB{2 * blocks}I", 5, 2 + 8 * blocks, *edges)
    assert parse_options(space).sack_blocks == tuple(zip(edges[0::2], edges[1::2], strict=True))


@pytest.mark.parametrize("unknown_len", [0, 1, 2, 3, 5])
def test_must69_padding_is_zeros(unknown_len: int) -> None:
    opts = TcpOptions(mss=1460, unknown=((77, b"\xff" * unknown_len),))
    raw = build_tcp(TcpSegment(1, 2, options=opts, payload=b"\xee"), SRC, DST)
    header_len = (raw[12] >> 4) * 4
    used = 20 + 4 + 2 + unknown_len
    assert header_len % 4 == 0
    assert header_len == used + (-used % 4)
    assert raw[used:header_len] == bytes(header_len - used)
    assert raw[header_len:] == b"\xee"
    assert parse_tcp(raw, SRC, DST).options == opts


def test_build_options_layout() -> None:
    assert build_options(NO_OPTIONS) == b""
    assert build_options(TcpOptions(timestamps=(1, 2))) == bytes([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
    assert build_options(TcpOptions(sack_permitted=True)) == bytes([1, 1, 4, 2])
    assert build_options(TcpOptions(wscale=0)) == bytes([1, 3, 3, 0])
    assert build_options(TcpOptions(unknown=((30, b"a"),))) == bytes([30, 3, 97, 0])
    # malformed is not encodable: it is ignored
    assert build_options(TcpOptions(mss=1, malformed=True)) == bytes([2, 4, 0, 1])


# --- round trips --------------------------------------------------------------------------------------------


@given(tcp_segments(), addresses, addresses)
def test_build_then_parse_is_identity(seg: TcpSegment, src: IPv4Address, dst: IPv4Address) -> None:
    raw = build_tcp(seg, src, dst)
    assert len(raw) % 4 == len(seg.payload) % 4
    assert parse_tcp(raw, src, dst) == seg
    assert raw[16:18] == naive_tcp_checksum(raw, src, dst).to_bytes(2, "big")


@given(tcp_options())
def test_options_round_trip(opts: TcpOptions) -> None:
    space = build_options(opts)
    assert len(space) % 4 == 0 and len(space) <= 40
    assert parse_options(space) == opts


@given(tcp_segments(max_payload=100))
def test_parse_then_build_is_identity_for_built_segments(seg: TcpSegment) -> None:
    raw = build_tcp(seg, SRC, DST)
    assert build_tcp(parse_tcp(raw, SRC, DST), SRC, DST) == raw


# --- validation on build ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"src_port": -1}, "source port"),
        ({"src_port": 65536}, "source port"),
        ({"dst_port": 70000}, "destination port"),
        ({"seq": 2**32}, "sequence number"),
        ({"seq": -1}, "sequence number"),
        ({"ack": 2**32}, "acknowledgment number"),
        ({"window": 65536}, "window"),
        ({"urgent": 65536}, "urgent pointer"),
        ({"flags": 256}, "flags"),
        ({"seq": 1.5}, "sequence number must be an integer"),
        ({"payload": "text"}, "payload must be bytes"),
        ({"options": TcpOptions(mss=65536)}, "MSS"),
        ({"options": TcpOptions(wscale=256)}, "window scale"),
        ({"options": TcpOptions(timestamps=(2**32, 0))}, "TSval"),
        ({"options": TcpOptions(timestamps=(0, -1))}, "TSecr"),
        ({"options": TcpOptions(sack_blocks=((0, 2**32),))}, "SACK block 0 right edge"),
        ({"options": TcpOptions(sack_blocks=((1, 2),) * 5)}, "more than the 40"),
        ({"options": TcpOptions(timestamps=(1, 2), sack_blocks=((1, 2),) * 4)}, "more than the 40"),
        ({"options": TcpOptions(unknown=((1, b""),))}, "EOL/NOP"),
        ({"options": TcpOptions(unknown=((300, b""),))}, "unknown option kind"),
        ({"options": TcpOptions(unknown=((30, bytes(39)),))}, "exceeds the option space"),
        ({"payload": bytes(65536 - 20)}, "pseudo-header length"),
    ],
)
def test_build_rejects_out_of_range(changes: dict[str, object], message: str) -> None:
    seg = dataclasses.replace(TcpSegment(1, 2), **changes)
    with pytest.raises(ValueError, match=message):
        build_tcp(seg, SRC, DST)


def test_build_accepts_int_subclasses_and_bytes_like() -> None:
    class Seq(int):
        pass

    seg = TcpSegment(1, 2, seq=Seq(5), flags=Flags.ACK, payload=bytearray(b"ab"))  # type: ignore[arg-type]
    expected = TcpSegment(1, 2, seq=5, flags=Flags.ACK, payload=b"ab")
    assert parse_tcp(build_tcp(seg, SRC, DST), SRC, DST) == expected


def test_largest_segment_fits() -> None:
    seg = TcpSegment(1, 2, flags=Flags.ACK, payload=bytes(65535 - 20))
    assert parse_tcp(build_tcp(seg, SRC, DST), SRC, DST) == seg
