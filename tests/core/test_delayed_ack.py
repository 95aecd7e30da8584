"""Delayed ACK (RFC 9293 section 3.8.6.3: SHLD-18, MUST-40, SHLD-19, MUST-58; RFC 5681 4.2)."""

from __future__ import annotations

from ipaddress import IPv4Address

from stack.tcp import TcbConfig
from stack.wire.tcp import Flags, TcpSegment
from tests.core.net import connected

DELAYED = TcbConfig(delayed_ack=True)


def acks_from_b(net) -> list[tuple[float, TcpSegment]]:
    return [(t, seg) for t, s, seg in net.log if s == "b" and seg.flags == Flags.ACK and not seg.payload]


def test_a_lone_segment_is_acknowledged_within_the_delay():
    """MUST-40: under half a second (0.1 s by default)."""
    net = connected(b_config=DELAYED, codec=False)
    before = len(acks_from_b(net))
    t0 = net.now
    net.take("a", net.a.tcb.send(b"x" * 100, net.now))
    net.run_until(lambda: net.a.tcb.snd_una == net.a.tcb.snd_max)
    ((t, ack),) = acks_from_b(net)[before:]
    assert DELAYED.ack_delay <= t - t0 < 0.5
    assert ack.ack == net.a.tcb.snd_max


def test_every_second_full_sized_segment_is_acknowledged_at_once():
    """SHLD-19: an ACK for at least every second full-sized segment."""
    net = connected(b_config=DELAYED, codec=False)
    before = len(acks_from_b(net))
    mss = net.a.tcb.eff_snd_mss
    net.take("a", net.a.tcb.send(b"y" * (2 * mss), net.now))
    t0 = net.now
    net.run_until(lambda: net.a.tcb.snd_una == net.a.tcb.snd_max)
    ((t, _),) = acks_from_b(net)[before:]
    assert t - t0 < 0.1  # one round trip, no timer


def test_half_as_many_acks_for_a_stream():
    """MUST-58: ACKs aggregated; a bulk transfer sees about one ACK for two segments."""
    plain = connected(codec=False)
    delayed = connected(b_config=DELAYED, codec=False)
    data = bytes(200_000)
    for net in (plain, delayed):
        n0 = len(acks_from_b(net))
        net.take("a", net.a.tcb.send(data, net.now))
        net.run_until(lambda net=net: len(net.b.received) == len(data))
        net.run(until=net.now + 1)
        net.n_acks = len(acks_from_b(net)) - n0  # type: ignore[attr-defined]
    assert delayed.n_acks <= 0.6 * plain.n_acks  # type: ignore[attr-defined]
    assert bytes(delayed.b.received) == data


def test_out_of_order_data_is_acknowledged_at_once():
    """RFC 5681 4.2: a segment out of order, and the one that fills the gap, are ACKed immediately."""
    net = connected(b_config=DELAYED, codec=False)
    b = net.b.tcb
    a_port, b_port = net.a.tcb.local_port, b.local_port
    nxt = b.rcv_nxt
    later = TcpSegment(
        a_port,
        b_port,
        seq=(nxt + 10) & 0xFFFFFFFF,
        ack=b.snd_nxt,
        flags=Flags.ACK,
        window=65535,
        payload=b"later",
    )
    res = b.segment_arrives(later, net.now, IPv4Address("198.18.0.1"))
    assert [s.ack for s in res.segments] == [nxt]  # a duplicate ACK, not delayed
    gap = TcpSegment(
        a_port, b_port, seq=nxt, ack=b.snd_nxt, flags=Flags.ACK, window=65535, payload=b"0123456789"
    )
    res = b.segment_arrives(gap, net.now, IPv4Address("198.18.0.1"))
    assert [s.ack for s in res.segments] == [(nxt + 15) & 0xFFFFFFFF]


def test_ack_delay_is_settable_but_stays_under_half_a_second():
    cfg = TcbConfig()
    cfg.set("ack-delay", "0.1")
    assert cfg.ack_delay == 0.1
    try:
        cfg.set("ack-delay", "0.6")
    except ValueError as e:
        assert "MUST-40" in str(e)
    else:
        raise AssertionError("0.6 s was accepted")
