"""dpkt as an independent oracle: what we build, dpkt reads the same; what dpkt builds, we read the same.

dpkt's checksum (dpkt.in_cksum, little-endian word sums) and its pseudo-header code are a second,
separate implementation of RFC 1071 and RFC 9293 section 3.1.
"""

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
    TcpOptions,
    TcpSegment,
    UnreachCode,
    build_icmp,
    build_ipv4,
    build_tcp,
    echo_request,
    icmp_error,
    parse_icmp,
    parse_ipv4,
    parse_tcp,
)

from .strategies import U16, U32, addresses, icmp_messages, ipv4_headers, tcp_options, tcp_segments

dpkt = pytest.importorskip("dpkt")

SRC = IPv4Address("198.18.0.1")
DST = IPv4Address("198.18.0.2")


def decode_dpkt_options(space: bytes) -> TcpOptions:
    """Turn dpkt.tcp.parse_opts' (kind, data) list into TcpOptions, independently of our parser."""
    fields: dict[str, object] = {}
    unknown: list[tuple[int, bytes]] = []
    for entry in dpkt.tcp.parse_opts(space):
        assert entry is not None, f"dpkt found a malformed option in {space.hex()}"
        kind, data = entry
        if kind in (dpkt.tcp.TCP_OPT_EOL, dpkt.tcp.TCP_OPT_NOP):
            continue
        if kind == dpkt.tcp.TCP_OPT_MSS:
            fields["mss"] = struct.unpack("!H", data)[0]
        elif kind == dpkt.tcp.TCP_OPT_WSCALE:
            fields["wscale"] = data[0]
        elif kind == dpkt.tcp.TCP_OPT_SACKOK:
            fields["sack_permitted"] = True
        elif kind == dpkt.tcp.TCP_OPT_TIMESTAMP:
            fields["timestamps"] = struct.unpack("!II", data)
        elif kind == dpkt.tcp.TCP_OPT_SACK:
            edges = struct.unpack(f"!{len(data) // 4}I", data)
            fields["sack_blocks"] = tuple(zip(edges[0::2], edges[1::2], strict=True))
        else:
            unknown.append((kind, data))
    return TcpOptions(unknown=tuple(unknown), **fields)  # type: ignore[arg-type]


def dpkt_tcp_checksum(raw_tcp: bytes, src: IPv4Address, dst: IPv4Address) -> int:
    """The TCP checksum dpkt computes for `raw_tcp` (its own field zeroed) inside an IPv4 datagram."""
    t = dpkt.tcp.TCP(raw_tcp)
    t.sum = 0
    ip = dpkt.ip.IP(src=src.packed, dst=dst.packed, p=6, data=t)
    bytes(ip)  # dpkt fills in zero checksums while packing
    return int(t.sum)


def dpkt_checksum_of(raw: bytes, checksum_at: int) -> int:
    """dpkt.in_cksum over `raw` with its 16-bit checksum field at `checksum_at` zeroed."""
    return int(dpkt.in_cksum(raw[:checksum_at] + b"\x00\x00" + raw[checksum_at + 2 :]))


# --- TCP ----------------------------------------------------------------------------------------------------


@given(tcp_segments(), addresses, addresses)
def test_dpkt_reads_our_tcp(seg: TcpSegment, src: IPv4Address, dst: IPv4Address) -> None:
    raw = build_tcp(seg, src, dst)
    t = dpkt.tcp.TCP(raw)
    assert t.sport == seg.src_port
    assert t.dport == seg.dst_port
    assert t.seq == seg.seq
    assert t.ack == seg.ack
    assert t.flags == int(seg.flags)  # dpkt's 9-bit field: the reserved/NS bit is zero
    assert t.win == seg.window
    assert t.urp == seg.urgent
    assert t.off * 4 == 20 + len(t.opts)
    assert len(t.opts) % 4 == 0
    assert decode_dpkt_options(bytes(t.opts)) == seg.options
    assert bytes(t.data) == seg.payload
    assert t.sum == dpkt_tcp_checksum(raw, src, dst)


_OPTION_KINDS = ("mss", "wscale", "sackok", "ts", "sack")


def encode_option_parts(opts: TcpOptions) -> list[bytes]:
    """Each option of `opts` encoded on its own (kind, length, data), by hand."""
    parts = []
    if opts.mss is not None:
        parts.append(struct.pack("!BBH", 2, 4, opts.mss))
    if opts.wscale is not None:
        parts.append(bytes([3, 3, opts.wscale]))
    if opts.sack_permitted:
        parts.append(bytes([4, 2]))
    if opts.timestamps is not None:
        parts.append(struct.pack("!BBII", 8, 10, *opts.timestamps))
    if opts.sack_blocks:
        edges = [e for block in opts.sack_blocks for e in block]
        parts.append(struct.pack(f"!BB{len(edges)}I", 5, 2 + 4 * len(edges), *edges))
    parts.extend(bytes([kind, 2 + len(data)]) + data for kind, data in opts.unknown)
    return parts


@st.composite
def dpkt_segments(draw: st.DrawFn) -> tuple[bytes, TcpSegment, IPv4Address, IPv4Address]:
    """A TCP segment inside an IPv4 datagram, both packed by dpkt; options in any order and alignment."""
    opts = draw(tcp_options())
    parts = draw(st.permutations(encode_option_parts(opts)))
    size = sum(map(len, parts))
    space = b""
    for part in parts:
        nops = draw(st.integers(0, 40 - size))
        size += nops
        space += b"\x01" * nops + part
    space += bytes(-len(space) % 4)
    seg = TcpSegment(
        src_port=draw(U16), dst_port=draw(U16), seq=draw(U32), ack=draw(U32),
        flags=draw(st.integers(0, 255)), window=draw(U16), urgent=draw(U16),
        options=opts, payload=draw(st.binary(max_size=1500)),
    )
    src, dst = draw(addresses), draw(addresses)
    t = dpkt.tcp.TCP(sport=seg.src_port, dport=seg.dst_port, seq=seg.seq, ack=seg.ack, flags=int(seg.flags),
                     win=seg.window, urp=seg.urgent, off=5 + len(space) // 4, opts=space, data=seg.payload)
    ip = dpkt.ip.IP(src=src.packed, dst=dst.packed, p=6, ttl=draw(st.integers(1, 255)), id=draw(U16),
                    df=draw(st.integers(0, 1)), data=t)
    return bytes(ip), seg, src, dst


def _sorted_unknown(opts: TcpOptions) -> TcpOptions:
    return dataclasses.replace(opts, unknown=tuple(sorted(opts.unknown)))


@given(dpkt_segments())
def test_we_read_dpkt_tcp(case: tuple[bytes, TcpSegment, IPv4Address, IPv4Address]) -> None:
    raw, expected, src, dst = case
    header, payload = parse_ipv4(raw)  # dpkt's IP header checksum verified here
    assert (header.src, header.dst, header.protocol) == (src, dst, 6)
    seg = parse_tcp(payload, header.src, header.dst)  # and dpkt's TCP checksum here
    assert dataclasses.replace(seg, options=_sorted_unknown(seg.options)) == dataclasses.replace(
        expected, options=_sorted_unknown(expected.options)
    )


def test_dpkt_reads_a_linux_style_syn() -> None:
    seg = TcpSegment(40000, 80, seq=1, flags=Flags.SYN, window=64240,
                     options=TcpOptions(mss=1460, wscale=7, sack_permitted=True, timestamps=(5, 0)))
    t = dpkt.tcp.TCP(build_tcp(seg, SRC, DST))
    assert [o for o in dpkt.tcp.parse_opts(bytes(t.opts))] == [
        (2, b"\x05\xb4"), (4, b""), (8, struct.pack("!II", 5, 0)), (1, b""), (3, b"\x07"),
    ]


# --- IPv4 ---------------------------------------------------------------------------------------------------


@given(ipv4_headers(protocol=st.sampled_from([6, 17, 1, 47, 253])), st.binary(max_size=1500))
def test_dpkt_reads_our_ipv4(header: IPv4Header, payload: bytes) -> None:
    raw = build_ipv4(header, payload)
    ip = dpkt.ip.IP(raw)
    assert ip.v == 4
    assert ip.hl == 5 + len(header.options) // 4
    assert ip.tos == header.dscp << 2 | header.ecn
    assert ip.len == len(raw)
    assert ip.id == header.identification
    assert (ip.rf, ip.df, ip.mf) == (
        bool(header.flags & IPv4Flags.RESERVED), header.df, header.mf
    )
    assert ip.offset == header.fragment_offset  # both in units of 8 octets
    assert ip.ttl == header.ttl
    assert ip.p == header.protocol
    assert ip.src == header.src.packed and ip.dst == header.dst.packed
    assert bytes(ip.opts) == header.options
    assert ip.sum == dpkt_checksum_of(raw[: ip.hl * 4], 10)
    assert raw[ip.hl * 4 :] == payload


@given(ipv4_headers(), st.binary(max_size=600))
def test_we_read_dpkt_ipv4(header: IPv4Header, payload: bytes) -> None:
    ip = dpkt.ip.IP(
        src=header.src.packed, dst=header.dst.packed, p=header.protocol, ttl=header.ttl,
        tos=header.dscp << 2 | header.ecn, id=header.identification,
        rf=int(bool(header.flags & IPv4Flags.RESERVED)), df=int(header.df), mf=int(header.mf),
        offset=header.fragment_offset, opts=header.options, data=payload,
    )
    ip.hl = 5 + len(header.options) // 4
    ip.len = 20 + len(header.options) + len(payload)
    parsed, body = parse_ipv4(bytes(ip))
    assert bytes(body) == payload
    assert parsed == dataclasses.replace(header, ihl=ip.hl, total_length=ip.len, checksum=ip.sum)


# --- ICMP ---------------------------------------------------------------------------------------------------


@given(icmp_messages)
def test_dpkt_checksums_our_icmp(msg: IcmpMessage) -> None:
    raw = build_icmp(msg)
    icmp = dpkt.icmp.ICMP(raw)
    assert (icmp.type, icmp.code) == (msg.type, msg.code)
    assert icmp.sum == dpkt_checksum_of(raw, 2)


@given(U16, U16, st.binary(max_size=200))
def test_dpkt_reads_our_echo(ident: int, seq: int, data: bytes) -> None:
    icmp = dpkt.icmp.ICMP(build_icmp(echo_request(ident, seq, data)))
    assert icmp.type == dpkt.icmp.ICMP_ECHO
    assert (icmp.data.id, icmp.data.seq, bytes(icmp.data.data)) == (ident, seq, data)


@given(U16, U16, st.binary(max_size=200), st.sampled_from([0, 8]))
def test_we_read_dpkt_echo(ident: int, seq: int, data: bytes, type_: int) -> None:
    raw = bytes(dpkt.icmp.ICMP(type=type_, code=0, data=dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=data)))
    msg = parse_icmp(raw)
    assert (msg.type, msg.code, msg.ident, msg.seq, msg.body) == (type_, 0, ident, seq, data)


@given(tcp_segments(max_payload=40), st.integers(68, 0xFFFF))
def test_dpkt_reads_our_fragmentation_needed(seg: TcpSegment, mtu: int) -> None:
    original = build_ipv4(IPv4Header(src=SRC, dst=DST, protocol=6), build_tcp(seg, SRC, DST))
    msg = icmp_error(IcmpType.DEST_UNREACHABLE, UnreachCode.FRAGMENTATION_NEEDED, original, mtu=mtu)
    raw = build_icmp(msg)
    icmp = dpkt.icmp.ICMP(raw)
    assert (icmp.type, icmp.code, icmp.data.mtu) == (3, 4, mtu)
    quoted = icmp.data.ip
    assert (quoted.src, quoted.dst, quoted.p) == (SRC.packed, DST.packed, 6)
    assert struct.unpack("!HHI", bytes(quoted.data)[:8]) == (seg.src_port, seg.dst_port, seg.seq)


@given(U16, U16, U32, st.integers(68, 0xFFFF))
def test_we_read_dpkt_fragmentation_needed(sport: int, dport: int, seq: int, mtu: int) -> None:
    tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, flags=dpkt.tcp.TH_ACK, data=b"x" * 100)
    original = dpkt.ip.IP(src=SRC.packed, dst=DST.packed, p=6, data=tcp)
    quote = bytes(original)[:28]
    unreach = dpkt.icmp.ICMP.Unreach(mtu=mtu, data=quote)
    raw = bytes(dpkt.icmp.ICMP(type=3, code=4, data=unreach))
    msg = parse_icmp(raw)
    assert msg.next_hop_mtu == mtu
    header, _ = msg.quoted()
    assert (header.src, header.dst, header.total_length) == (SRC, DST, 140)
    assert msg.quoted_tcp() == (sport, dport, seq)
