"""Nagle's algorithm (RFC 9293 section 3.7.4: SHLD-7) and turning it off (MUST-17)."""

from __future__ import annotations

from ipaddress import IPv4Address

from stack.tcp import Tcb, TcbConfig
from stack.wire.tcp import Flags, TcpSegment
from tests.core.net import connected, handshaken

A = IPv4Address("198.18.0.1")
B = IPv4Address("198.18.0.2")
ISS, IRS = 1000, 5000


def established(nagle: bool = True) -> Tcb:
    return handshaken(TcbConfig(nagle=nagle), iss=ISS, irs=IRS, window=60000, mss=1000, now=0.01)


def ack(n: int) -> TcpSegment:
    return TcpSegment(80, 40000, seq=IRS + 1, ack=n, flags=Flags.ACK, window=60000)


def test_small_segment_waits_while_data_is_unacknowledged():
    tcb = established()
    (first,) = tcb.send(b"a" * 10, 0.1).segments  # nothing in flight: it goes
    assert first.payload == b"a" * 10
    assert tcb.send(b"b" * 10, 0.11).segments == []  # held behind the unacknowledged ten
    assert tcb.send(b"c" * 10, 0.12).segments == []
    (gathered,) = tcb.segment_arrives(ack(ISS + 11), 0.2).segments
    assert gathered.seq == ISS + 11 and gathered.payload == b"b" * 10 + b"c" * 10


def test_full_sized_segments_are_never_held():
    tcb = established()
    tcb.send(b"a" * 10, 0.1)
    res = tcb.send(b"x" * 2500, 0.11)
    assert [len(s.payload) for s in res.segments] == [1000, 1000]  # the 500 short one waits


def test_nagle_off_sends_at_once():
    """MUST-17: the application can turn the algorithm off."""
    tcb = established(nagle=False)
    tcb.send(b"a" * 10, 0.1)
    (second,) = tcb.send(b"b" * 10, 0.11).segments
    assert second.payload == b"b" * 10
    on = established()
    on.send(b"a" * 10, 0.1)
    on.configure("nagle", "off", 0.105)
    assert [s.payload for s in on.send(b"b" * 10, 0.11).segments] == [b"b" * 10]


def test_many_small_writes_become_few_segments_between_two_tcbs():
    net = connected(a_config=TcbConfig(nagle=True), codec=False)
    sent_before = len(net.a.sent)
    for i in range(200):
        net.take("a", net.a.tcb.send(bytes([i]) * 5, net.now))
    net.run_until(lambda: len(net.b.received) == 1000)
    assert bytes(net.b.received) == b"".join(bytes([i]) * 5 for i in range(200))
    assert len(net.a.sent) - sent_before <= 5  # one, then the rest gathered in one segment
