"""Fast retransmit and NewReno fast recovery (RFC 5681 3.2, RFC 6582), limited transmit (RFC 3042).

Two TCBs over the in-memory wire: a lost segment is sent again after three duplicate ACKs, well before
the retransmission timer; crafted ACKs check the exact segment and the congestion window."""

from __future__ import annotations

import hashlib
import random
from ipaddress import IPv4Address

from stack.tcp import EventKind, State, Tcb
from stack.wire.tcp import Flags, TcpSegment
from tests.core.net import connected, drop_nth, handshaken, trace

RTO_MIN = 1.0  # the default: a recovery that waited for the timer would take at least this long


def payload_of(net, name: str, seq: int) -> list[float]:
    return [t for t, s, seg in net.log if s == name and seg.seq == seq and seg.payload]


def test_one_lost_segment_is_resent_after_three_duplicate_acks_not_after_rto():
    net = connected()
    data = random.Random(1).randbytes(60_000)
    a = net.a.tcb
    # let the window open first, then lose the 10th data segment of a burst
    net.take("a", a.send(data[:20_000], net.now))
    net.run_until(lambda: len(net.b.received) == 20_000)
    lost = drop_nth(net, lambda seg, s: s == "a" and bool(seg.payload), n=10)
    t0 = net.now
    net.take("a", a.send(data[20_000:], net.now))
    net.run_until(lambda: len(net.b.received) == len(data), limit=t0 + 5)
    assert bytes(net.b.received) == data
    assert lost, "the drop rule never fired"
    times = payload_of(net, "a", lost[0].seq)
    assert len(times) == 2, trace(net, 20)
    assert times[1] - times[0] < RTO_MIN / 2  # three RTTs of 20 ms, not an RTO
    assert a.retransmissions == 1
    assert EventKind.RETRANSMITTING not in net.a.kinds()


def test_two_losses_in_one_window_are_repaired_by_a_partial_ack():
    """RFC 6582: the partial ACK after the first repair triggers the second, without a timeout."""
    net = connected()
    data = random.Random(2).randbytes(80_000)
    a = net.a.tcb
    net.take("a", a.send(data[:20_000], net.now))
    net.run_until(lambda: len(net.b.received) == 20_000)
    first = drop_nth(net, lambda seg, s: s == "a" and bool(seg.payload), n=5)
    second = drop_nth(net, lambda seg, s: s == "a" and bool(seg.payload), n=9)
    t0 = net.now
    net.take("a", a.send(data[20_000:], net.now))
    net.run_until(lambda: len(net.b.received) == len(data), limit=t0 + 5)
    assert hashlib.sha256(net.b.received).digest() == hashlib.sha256(data).digest()
    assert first and second
    for lost in (first[0], second[0]):
        times = payload_of(net, "a", lost.seq)
        assert len(times) == 2 and times[1] - times[0] < RTO_MIN / 2, trace(net, 30)
    assert a.retransmissions == 2


def test_exact_stream_through_random_loss_without_timeouts_dominating():
    net = connected(loss=0.03, seed=7)
    data = random.Random(3).randbytes(300_000)
    net.take("a", net.a.tcb.send(data, net.now))
    net.run_until(lambda: len(net.b.received) == len(data), limit=600)
    assert bytes(net.b.received) == data


# ---------------------------------------------------------------------- crafted segments

A = IPv4Address("198.18.0.1")
B = IPv4Address("198.18.0.2")
ISS, IRS, MSS = 10_000, 20_000, 1000


def sender(window: int = 60_000) -> Tcb:
    """ESTABLISHED with a peer window of `window`, MSS 1000, and cwnd opened to 20 segments."""
    tcb = handshaken(iss=ISS, irs=IRS, window=window, mss=MSS, now=0.01)
    tcb.cc.cwnd = 20 * MSS
    return tcb


def ack(n: int, window: int = 60_000) -> TcpSegment:
    return TcpSegment(80, 40000, seq=IRS + 1, ack=n, flags=Flags.ACK, window=window)


def test_third_duplicate_ack_retransmits_exactly_the_first_unacked_segment():
    tcb = sender()
    tcb.send(bytes(range(256)) * 40, 0.02)  # 10240 octets: 11 segments in flight
    assert tcb.snd_max == ISS + 1 + 10240
    assert tcb.segment_arrives(ack(ISS + 1 + 2000), 0.05).segments == []  # new data acked
    first = tcb.segment_arrives(ack(ISS + 1 + 2000), 0.06).segments
    second = tcb.segment_arrives(ack(ISS + 1 + 2000), 0.06).segments
    assert first == [] and second == []  # nothing new to send (all of it is in flight)
    flight = tcb.snd_max - tcb.snd_una
    res = tcb.segment_arrives(ack(ISS + 1 + 2000), 0.07)
    (seg,) = res.segments
    assert seg.seq == ISS + 1 + 2000 and len(seg.payload) == MSS
    assert seg.payload == (bytes(range(256)) * 40)[2000:3000]
    assert tcb.cc.ssthresh == max(flight // 2, 2 * MSS)
    assert tcb.cc.cwnd == tcb.cc.ssthresh + 3 * MSS
    assert tcb.snd_nxt == tcb.snd_max  # new data continues after, not from SND.UNA
    # a fourth duplicate inflates the window by one segment
    before = tcb.cc.cwnd
    tcb.segment_arrives(ack(ISS + 1 + 2000), 0.08)
    assert tcb.cc.cwnd == before + MSS
    # the full ACK ends recovery with cwnd = min(ssthresh, FlightSize + SMSS)
    tcb.segment_arrives(ack(tcb.snd_max), 0.1)
    assert tcb.cc.cwnd == min(tcb.cc.ssthresh, MSS + MSS)
    assert tcb.state is State.ESTABLISHED


def test_a_window_update_is_not_a_duplicate_ack():
    """RFC 5681 section 2 (e): an ACK that changes the window does not count."""
    tcb = sender()
    tcb.send(bytes(5000), 0.02)
    for w in (50_000, 40_000, 30_000):
        assert tcb.segment_arrives(ack(ISS + 1, window=w), 0.05).segments == []
    assert tcb.retransmissions == 0


def test_limited_transmit_sends_new_data_on_the_first_two_duplicates():
    """RFC 3042: each of the first two duplicate ACKs lets one new segment out."""
    tcb = sender()
    tcb.cc.cwnd = 4 * MSS
    tcb.send(bytes(8000), 0.02)
    assert tcb.snd_max == ISS + 1 + 4000
    one = tcb.segment_arrives(ack(ISS + 1), 0.05).segments
    two = tcb.segment_arrives(ack(ISS + 1), 0.05).segments
    assert [s.seq for s in one] == [ISS + 1 + 4000]
    assert [s.seq for s in two] == [ISS + 1 + 5000]
