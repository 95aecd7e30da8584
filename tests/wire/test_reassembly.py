"""IPv4 reassembly and fragmentation (stack/wire/reassembly.py; RFC 791 section 3.2, RFC 815, RFC 1858,
RFC 5722's overlap rule): in order, out of order, duplicates, overlaps, the timeout, the memory and
datagram bounds, tiny fragments, over-long datagrams, and a property over any fragmentation in any
order. scapy's fragment() and defragment() are the oracle the project does not write."""

from __future__ import annotations

import dataclasses
import itertools
import random
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.wire import IpProto, IPv4Flags, IPv4Header, build_ipv4, parse_ipv4
from stack.wire.reassembly import (
    FRAGMENT_OVERHEAD,
    Reassembler,
    copied_options,
    fragment,
)

SRC = IPv4Address("198.18.0.2")
DST = IPv4Address("198.18.0.1")
T0 = 1000.0


def header(proto: int = IpProto.ICMP, ident: int = 0x4242, **kw: object) -> IPv4Header:
    return IPv4Header(src=SRC, dst=DST, protocol=proto, identification=ident, **kw)  # type: ignore[arg-type]


def frag(
    data: bytes,
    start: int,
    size: int,
    *,
    last: bool | None = None,
    proto: int = IpProto.ICMP,
    ident: int = 0x4242,
) -> tuple[IPv4Header, bytes]:
    """The fragment of `data` holding octets [start, start + size)."""
    assert start % 8 == 0
    more = start + size < len(data) if last is None else not last
    h = header(proto, ident, flags=IPv4Flags.MF if more else IPv4Flags(0), fragment_offset=start // 8)
    return h, data[start : start + size]


def cut(data: bytes, size: int, **kw: object) -> list[tuple[IPv4Header, bytes]]:
    return [frag(data, s, size, **kw) for s in range(0, len(data), size)]  # type: ignore[arg-type]


Frag = tuple[IPv4Header, bytes]


def feed(r: Reassembler, frags: list[Frag], now: float = T0) -> list[Frag]:
    out = []
    for h, d in frags:
        whole = r.add(h, d, now)
        if whole is not None:
            out.append(whole)
    return out


DATA = bytes(random.Random(791).randbytes(3000))


# ---------------------------------------------------------------------- the ordinary cases


def test_in_order() -> None:
    r = Reassembler()
    frags = cut(DATA, 1480)
    assert len(frags) == 3
    assert r.add(*frags[0], T0) is None
    assert r.add(*frags[1], T0) is None
    assert r.in_progress == 1 and r.memory == 2960 + 2 * FRAGMENT_OVERHEAD
    whole = r.add(*frags[2], T0)
    assert whole is not None
    h, data = whole
    assert data == DATA
    assert h.fragment_offset == 0 and not h.mf and not h.is_fragment
    assert h.total_length == 20 + len(DATA)
    assert (h.src, h.dst, h.protocol, h.identification) == (SRC, DST, IpProto.ICMP, 0x4242)
    assert r.in_progress == 0 and r.memory == 0
    assert r.counters.reassembled == 1 and r.counters.fragments == 3
    # The header is good to build again: the kernel's parse of it gives the whole datagram.
    back, payload = parse_ipv4(build_ipv4(h, data))
    assert bytes(payload) == DATA and not back.is_fragment


def test_out_of_order_last_first_and_the_first_fragment_header_is_kept() -> None:
    r = Reassembler()
    frags = cut(DATA, 8 * 50)
    first_h = dataclasses.replace(frags[0][0], ttl=7, dscp=46, flags=IPv4Flags.MF)
    frags[0] = (first_h, frags[0][1])
    order = [frags[-1], *frags[1:-1][::-1], frags[0]]
    results = feed(r, order)
    assert len(results) == 1
    h, data = results[0]
    assert data == DATA and h.ttl == 7 and h.dscp == 46


def test_first_fragment_last_completes_it() -> None:
    r = Reassembler()
    frags = cut(DATA, 1000)  # 1000 is a multiple of 8
    assert feed(r, frags[1:]) == []
    assert r.add(*frags[0], T0) is not None


def test_not_a_fragment_passes_straight_through() -> None:
    r = Reassembler()
    h = header()
    assert r.add(h, memoryview(b"whole"), T0) == (h, b"whole")
    assert r.counters.fragments == 0 and r.in_progress == 0


def test_interleaved_datagrams_kept_apart_by_the_key() -> None:
    r = Reassembler()
    other = bytes(reversed(DATA))
    a = cut(DATA, 1480, ident=1)
    b = cut(other, 1480, ident=2)
    third = IPv4Address("198.18.0.3")
    c = [(dataclasses.replace(h, src=third), d) for h, d in cut(DATA[:2000], 1480, ident=1)]
    d = [(dataclasses.replace(h, protocol=IpProto.UDP), x) for h, x in cut(other[:1600], 1480, ident=1)]
    mixed = [x for group in itertools.zip_longest(a, b, c, d) for x in group if x is not None]
    results = {(h.src, h.protocol, h.identification): data for h, data in feed(r, mixed)}
    assert results == {
        (SRC, IpProto.ICMP, 1): DATA,
        (SRC, IpProto.ICMP, 2): other,
        (IPv4Address("198.18.0.3"), IpProto.ICMP, 1): DATA[:2000],
        (SRC, IpProto.UDP, 1): other[:1600],
    }


def test_a_late_duplicate_after_completion_starts_over_and_times_out() -> None:
    r = Reassembler(timeout=5)
    frags = cut(DATA, 1480)
    assert len(feed(r, frags)) == 1
    assert r.add(*frags[1], T0 + 1) is None
    assert r.in_progress == 1
    assert r.expire(T0 + 6) == 1 and r.memory == 0


# ---------------------------------------------------------------------- duplicates and overlaps


def test_exact_duplicates_are_ignored() -> None:
    r = Reassembler()
    frags = cut(DATA, 1480)
    assert feed(r, [frags[0], frags[0], frags[2], frags[2], frags[0]]) == []
    assert r.counters.duplicates == 3 and r.counters.dropped == 0
    assert r.memory == 1480 + 40 + 2 * FRAGMENT_OVERHEAD  # duplicates cost nothing
    results = feed(r, [frags[1]])
    assert [d for _, d in results] == [DATA]
    assert r.counters.overlaps == 0


def test_a_fragment_inside_what_is_held_with_the_same_data_is_a_duplicate() -> None:
    r = Reassembler()
    frags = cut(DATA, 1480)
    feed(r, frags[:2])
    assert r.add(*frag(DATA, 1472, 16), T0) is None  # across the join of the first two, same octets
    assert r.add(*frag(DATA, 8, 80), T0) is None  # inside the first
    assert r.counters.duplicates == 2 and r.counters.overlaps == 0
    assert feed(r, frags[2:])[0][1] == DATA


@pytest.mark.parametrize(
    ("start", "size"),
    [
        (8, 80),  # inside the first fragment
        (1472, 16),  # across the join of the first two
        (0, 1480),  # the first fragment itself, one octet changed
    ],
)
def test_overlap_with_different_data_discards_the_datagram(start: int, size: int) -> None:
    r = Reassembler()
    frags = cut(DATA, 1480)
    feed(r, frags[:2])
    evil = bytearray(DATA)
    evil[start + size // 2] ^= 0xFF
    assert r.add(*frag(bytes(evil), start, size), T0) is None
    assert r.counters.overlaps == 1 and r.in_progress == 0 and r.memory == 0
    assert r.counters.dropped == 3  # the two held and the one that overlapped them
    # What was held is gone: the last fragment now starts a new datagram that cannot complete.
    assert feed(r, frags[2:]) == []
    assert r.in_progress == 1


def test_partial_overlap_discards_even_with_the_same_data() -> None:
    """RFC 5722 section 4: an overlap that adds data is not a duplicate."""
    r = Reassembler()
    r.add(*frag(DATA, 0, 1480), T0)
    assert r.add(*frag(DATA, 1400, 1480), T0) is None  # 80 octets again and 1400 new ones
    assert r.counters.overlaps == 1 and r.in_progress == 0


def test_a_fragment_spanning_a_hole_between_pieces_is_an_overlap() -> None:
    r = Reassembler()
    feed(r, [frag(DATA, 0, 800), frag(DATA, 1600, 800)])
    assert r.add(*frag(DATA, 0, 2400), T0) is None
    assert r.counters.overlaps == 1 and r.in_progress == 0


def test_the_classic_teardrop_is_discarded() -> None:
    """Teardrop: a second fragment that starts inside the first and ends inside it too."""
    r = Reassembler()
    r.add(*frag(DATA, 0, 48, last=False), T0)
    assert r.add(*frag(b"\x00" * 3000, 24, 4, last=True), T0) is None
    assert r.in_progress == 0


# ---------------------------------------------------------------------- the timeout


def test_missing_last_fragment_times_out() -> None:
    r = Reassembler(timeout=30)
    frags = cut(DATA, 1480)
    feed(r, frags[:2])
    assert r.next_deadline() == T0 + 30
    assert r.expire(T0 + 29.9) == 0 and r.in_progress == 1
    assert r.expire(T0 + 30) == 1
    assert r.in_progress == 0 and r.memory == 0 and r.counters.timed_out == 1
    assert r.counters.dropped == 2
    assert r.next_deadline() is None
    # The last fragment after the timeout starts over and never completes.
    assert r.add(*frags[2], T0 + 31) is None and r.in_progress == 1


def test_the_timer_starts_at_the_first_fragment_and_is_not_pushed_back() -> None:
    r = Reassembler(timeout=10)
    frags = cut(DATA, 8 * 40)
    r.add(*frags[0], T0)
    for i, f in enumerate(frags[1:-1], start=1):
        r.add(*f, T0 + i)  # one a second, the last still missing at T0 + 10
    assert r.expire(T0 + 10) == 1


def test_add_expires_others_as_it_goes() -> None:
    r = Reassembler(timeout=1)
    a = cut(DATA, 1480, ident=1)
    b = cut(DATA, 1480, ident=2)
    r.add(*a[0], T0)
    r.add(*b[0], T0 + 0.5)
    r.add(*b[1], T0 + 1.2)  # a's time is up
    assert r.counters.timed_out == 1 and r.in_progress == 1
    assert r.add(*b[2], T0 + 1.3) is not None


def test_a_bad_timeout_or_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Reassembler(timeout=0)
    with pytest.raises(ValueError, match="bounds"):
        Reassembler(max_bytes=0)


# ---------------------------------------------------------------------- the bounds


def test_memory_bound_refuses_new_fragments_instead_of_growing() -> None:
    bound = 10 * (1480 + FRAGMENT_OVERHEAD)
    r = Reassembler(max_bytes=bound)
    # First fragments of many datagrams that never complete: an attacker's or a lossy path's.
    for ident in range(100):
        r.add(*frag(DATA, 0, 1480, ident=ident), T0)
        assert r.memory <= bound
    assert r.in_progress == 10 and r.memory == bound
    assert r.counters.dropped_full == 90 and r.counters.dropped == 90
    # Once they time out, room comes back and a whole datagram gets through.
    assert feed(r, cut(DATA, 1480, ident=500), now=T0 + 31)[0][1] == DATA
    assert r.counters.timed_out == 10


def test_a_datagram_that_loses_a_fragment_to_the_bound_is_dropped_at_once() -> None:
    bound = 2 * (1480 + FRAGMENT_OVERHEAD) + 200
    r = Reassembler(max_bytes=bound)
    frags = cut(DATA, 1480)
    other = cut(DATA, 1480, ident=10)
    feed(r, [frags[0], other[0]])  # full now
    assert r.add(*frags[1], T0) is None  # refused: the datagram can never complete, so it goes
    assert r.counters.dropped_full == 1 and r.in_progress == 1 and r.counters.dropped == 2
    assert r.memory == 1480 + FRAGMENT_OVERHEAD
    assert feed(r, other[1:])[0][1] == DATA
    assert r.memory == 0


def test_tiny_fragments_are_charged_their_overhead() -> None:
    r = Reassembler(max_bytes=100 * (8 + FRAGMENT_OVERHEAD))
    for start in range(0, 8 * 1000, 16):  # every other 8-octet piece: nothing ever completes
        r.add(*frag(bytes(16000), start, 8), T0)
    assert r.memory <= 100 * (8 + FRAGMENT_OVERHEAD)
    assert r.counters.dropped_full > 0


def test_datagram_count_bound() -> None:
    r = Reassembler(max_datagrams=3)
    for ident in range(5):
        r.add(*frag(DATA, 0, 1480, ident=ident), T0)
    assert r.in_progress == 3 and r.counters.dropped_full == 2
    # A fragment of a datagram already in progress is still taken.
    assert r.add(*frag(DATA, 1480, 1480, ident=0), T0) is None
    assert r.counters.dropped_full == 2


# ---------------------------------------------------------------------- tiny fragments (RFC 1858)


def test_tcp_fragment_at_offset_one_is_dropped() -> None:
    r = Reassembler()
    data = bytes(range(256)) * 4
    r.add(*frag(data, 0, 24, proto=IpProto.TCP), T0)
    assert r.add(*frag(data, 8, 16, proto=IpProto.TCP), T0) is None  # would rewrite the flags octet
    assert r.counters.tiny == 1 and r.counters.dropped == 1
    assert r.memory == 24 + FRAGMENT_OVERHEAD


def test_offset_one_is_fine_for_other_protocols() -> None:
    r = Reassembler()
    data = bytes(range(32))
    feed(r, [frag(data, 0, 8), frag(data, 8, 8)])
    assert feed(r, [frag(data, 16, 16)])[0][1] == data
    assert r.counters.tiny == 0


def test_tcp_first_fragment_shorter_than_the_header_is_dropped() -> None:
    r = Reassembler()
    data = bytes(range(200))
    assert r.add(*frag(data, 0, 16, proto=IpProto.TCP), T0) is None
    assert r.counters.tiny == 1 and r.in_progress == 0
    assert r.add(*frag(data, 0, 24, proto=IpProto.TCP), T0) is None  # 20 octets and more: taken
    assert r.counters.tiny == 1 and r.in_progress == 1


# ---------------------------------------------------------------------- size and malformed


def test_a_datagram_over_65535_octets_is_dropped() -> None:
    r = Reassembler()
    big = bytes(70000)
    frags = [frag(big, s, 1480) for s in range(0, 64000, 1480)]
    feed(r, frags)
    # The "ping of death": a last fragment at the highest offset, ending past 65535.
    assert r.add(*frag(big, 8189 * 8, 1000, last=True), T0) is None
    assert r.counters.too_long == 1 and r.in_progress == 0 and r.memory == 0
    assert r.counters.reassembled == 0 and r.counters.dropped == len(frags) + 1


def test_options_in_the_first_fragment_count_toward_65535() -> None:
    r = Reassembler()
    size = 65535 - 20 - 4  # fits with a bare header, not with 8 octets of options
    data = bytes(size)
    first_h, first_d = frag(data, 0, 1480)
    first_h = dataclasses.replace(first_h, options=b"\x01" * 8, ihl=7)
    rest = [frag(data, s, 1480) for s in range(1480, size, 1480)]
    assert feed(r, [*rest, (first_h, first_d)]) == []
    assert r.counters.too_long == 1


def test_malformed_fragments_drop_the_datagram() -> None:
    r = Reassembler()
    r.add(*frag(DATA, 0, 1480), T0)
    assert r.add(*frag(DATA, 1480, 100, last=False), T0) is None  # not a multiple of 8, not the last
    assert r.counters.malformed == 1 and r.in_progress == 0
    r.add(*frag(DATA, 0, 1480), T0)
    assert r.add(*frag(DATA, 1480, 0, last=True), T0) is None  # empty
    assert r.counters.malformed == 2 and r.in_progress == 0
    feed(r, [frag(DATA, 0, 1480), frag(DATA, 2960, 40, last=True)])
    assert r.add(*frag(DATA, 1480, 8, last=True), T0) is None  # a second end, elsewhere
    assert r.counters.malformed == 3 and r.in_progress == 0
    feed(r, [frag(DATA, 0, 1480), frag(DATA, 2960, 40, last=True)])
    assert r.add(*frag(bytes(4000), 3000, 8, last=False), T0) is None  # past the end
    assert r.in_progress == 0
    feed(r, [frag(DATA, 1480, 1480, last=False)])
    assert r.add(*frag(DATA, 8, 1000, last=True), T0) is None  # an end before data already held
    assert r.in_progress == 0 and r.counters.malformed == 5


# ---------------------------------------------------------------------- fragmentation


def test_fragment_fits_unchanged() -> None:
    h = header()
    assert fragment(h, b"x" * 1480, 1500) == [(h, b"x" * 1480)]


def test_fragment_cuts_at_multiples_of_eight_and_reassembles() -> None:
    h = header(ident=7)
    pieces = fragment(h, DATA, 1500)
    assert [len(d) for _, d in pieces] == [1480, 1480, 40]
    assert [p.fragment_offset for p, _ in pieces] == [0, 185, 370]
    assert [p.mf for p, _ in pieces] == [True, True, False]
    assert feed(Reassembler(), pieces)[0][1] == DATA


def test_fragment_refuses_df_and_a_tiny_mtu() -> None:
    with pytest.raises(ValueError, match="DF"):
        fragment(header(flags=IPv4Flags.DF), DATA, 1500)
    with pytest.raises(ValueError, match="MTU"):
        fragment(header(), DATA, 27)


def test_only_copied_options_go_into_later_fragments() -> None:
    record_route = bytes([7, 7, 4, 0, 0, 0, 0])  # copied flag clear
    security = bytes([0x82, 4, 0xAB, 0xCD])  # copied flag set (RFC 1108 basic security)
    options = record_route + b"\x01" + security
    assert copied_options(options) == security
    assert copied_options(b"\x00" + security) == b""  # nothing after End of Option List
    pieces = fragment(header(options=options), DATA, 600)
    assert pieces[0][0].options == options
    assert all(p.options == security for p, _ in pieces[1:])
    assert feed(Reassembler(), pieces)[0][1] == DATA


# ---------------------------------------------------------------------- scapy as the oracle


def test_scapy_fragments_reassemble_and_ours_defragment_in_scapy() -> None:
    scapy_all = pytest.importorskip("scapy.all")
    packet = scapy_all.IP(src=str(SRC), dst=str(DST), id=0x1234, proto=6) / scapy_all.Raw(DATA)
    frags = scapy_all.fragment(packet, fragsize=1000)
    assert len(frags) == 3
    r = Reassembler()
    results = []
    for f in reversed(frags):
        h, payload = parse_ipv4(bytes(f))
        if (whole := r.add(h, payload, T0)) is not None:
            results.append(whole)
    assert [d for _, d in results] == [DATA]

    ours = [scapy_all.IP(build_ipv4(h, d)) for h, d in fragment(header(ident=0x77), DATA, 700)]
    joined = scapy_all.defragment(ours)
    assert len(joined) == 1 and bytes(joined[0].payload) == DATA


# ---------------------------------------------------------------------- the property


@st.composite
def fragmentations(draw: st.DrawFn) -> tuple[bytes, list[tuple[IPv4Header, bytes]]]:
    """A random datagram cut in two or more at random multiples of 8, in a random order, with random
    duplicates. A TCP datagram's first fragment holds at least 24 octets (RFC 1858 would drop less)."""
    proto = draw(st.sampled_from([IpProto.ICMP, IpProto.UDP, IpProto.TCP]))
    least = 24 if proto == IpProto.TCP else 8
    size = draw(st.integers(least + 1, 6000))
    data = draw(st.binary(min_size=size, max_size=size))
    units = (size - 1) // 8  # the cuts that leave something after them: 8, 16, ..., 8 * units
    cuts = draw(st.sets(st.integers(least // 8, units), min_size=1, max_size=40))
    bounds = [0, *sorted(c * 8 for c in cuts), size]
    frags = [frag(data, a, b - a, proto=proto) for a, b in itertools.pairwise(bounds)]
    dupes = draw(st.lists(st.sampled_from(frags), max_size=10))
    return data, draw(st.permutations(frags + dupes))


@settings(max_examples=300, deadline=None)
@given(fragmentations())
def test_any_fragmentation_in_any_order_with_duplicates_gives_back_the_datagram(
    case: tuple[bytes, list[tuple[IPv4Header, bytes]]],
) -> None:
    data, order = case
    r = Reassembler()
    results = feed(r, order)
    # Duplicates that come after completion start the datagram over (as on Linux), and complete it
    # again when they cover it all: the same octets again, never anything else.
    assert results and all(d == data for _, d in results)
    assert len(results) == r.counters.reassembled
    assert r.counters.overlaps == r.counters.tiny == r.counters.malformed == 0
    for h, _ in results:
        assert h.total_length == 20 + len(data) and not h.is_fragment
    # In order with no duplicates, exactly once.
    plain = sorted(dict.fromkeys(order), key=lambda f: f[0].fragment_offset)
    assert [d for _, d in feed(Reassembler(), plain)] == [data]
