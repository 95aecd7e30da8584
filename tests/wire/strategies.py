"""Hypothesis strategies for wire values. Addresses come only from 198.18.0.0/15 (RFC 2544)."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import strategies as st

from stack.wire import (
    IcmpMessage,
    IPv4Flags,
    IPv4Header,
    TcpOptions,
    TcpSegment,
)

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFF_FFFF)
KNOWN_KINDS = {0, 1, 2, 3, 4, 5, 8}

# 198.18.0.0/15 is 198.18.0.0 .. 198.19.255.255
addresses = st.integers(int(IPv4Address("198.18.0.0")), int(IPv4Address("198.19.255.255"))).map(IPv4Address)


def option_size(o: TcpOptions) -> int:
    """Octets build_options writes before padding (Linux layout, see stack.wire.tcp.build_options)."""
    size = 0
    if o.mss is not None:
        size += 4
    if o.timestamps is not None:
        size += 12
    elif o.sack_permitted:
        size += 4
    if o.wscale is not None:
        size += 4
    if o.sack_blocks:
        size += 4 + 8 * len(o.sack_blocks)
    size += sum(2 + len(data) for _, data in o.unknown)
    return size


@st.composite
def tcp_options(draw: st.DrawFn, unknown: bool = True) -> TcpOptions:
    """Any encodable TcpOptions (malformed=False) that fits the 40-octet option space."""
    budget = 40
    mss = draw(st.none() | U16)
    if mss is not None:
        budget -= 4
    timestamps = draw(st.none() | st.tuples(U32, U32))
    if timestamps is not None:
        budget -= 12
    sack_permitted = draw(st.booleans())
    if sack_permitted and timestamps is None:
        if budget >= 4:
            budget -= 4
        else:
            sack_permitted = False
    wscale = draw(st.none() | st.integers(0, 255)) if budget >= 4 else None
    if wscale is not None:
        budget -= 4
    max_blocks = min(4, (budget - 4) // 8) if budget >= 12 else 0
    sack_blocks = tuple(draw(st.lists(st.tuples(U32, U32), max_size=max_blocks)))
    if sack_blocks:
        budget -= 4 + 8 * len(sack_blocks)
    unknowns: list[tuple[int, bytes]] = []
    while unknown and budget >= 2 and draw(st.booleans()):
        kind = draw(st.integers(2, 255).filter(lambda k: k not in KNOWN_KINDS))
        data = draw(st.binary(max_size=budget - 2))
        unknowns.append((kind, data))
        budget -= 2 + len(data)
    opts = TcpOptions(
        mss=mss,
        wscale=wscale,
        sack_permitted=sack_permitted,
        sack_blocks=sack_blocks,
        timestamps=timestamps,
        unknown=tuple(unknowns),
    )
    assert option_size(opts) <= 40
    return opts


def tcp_segments(unknown: bool = True, max_payload: int = 1500) -> st.SearchStrategy[TcpSegment]:
    """Any valid TcpSegment."""
    return st.builds(
        TcpSegment,
        src_port=U16,
        dst_port=U16,
        seq=U32,
        ack=U32,
        flags=st.integers(0, 255),
        window=U16,
        urgent=U16,
        options=tcp_options(unknown=unknown),
        payload=st.binary(max_size=max_payload),
    )


def ipv4_headers(protocol: st.SearchStrategy[int] | None = None) -> st.SearchStrategy[IPv4Header]:
    """IPv4 headers as build_ipv4 takes them (ihl/total_length/checksum left at their defaults)."""
    return st.builds(
        IPv4Header,
        src=addresses,
        dst=addresses,
        protocol=protocol if protocol is not None else st.integers(0, 255),
        ttl=st.integers(0, 255),
        dscp=st.integers(0, 63),
        ecn=st.integers(0, 3),
        identification=U16,
        flags=st.integers(0, 7).map(IPv4Flags),
        fragment_offset=st.integers(0, 0x1FFF),
        options=st.integers(0, 10).flatmap(lambda words: st.binary(min_size=4 * words, max_size=4 * words)),
    )


icmp_messages = st.builds(
    IcmpMessage,
    type=st.integers(0, 255),
    code=st.integers(0, 255),
    rest=U32,
    body=st.binary(max_size=600),
)
