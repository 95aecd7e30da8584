"""Keep-alive (RFC 9293 section 3.8.4; MAY-5, MUST-24 to MUST-29, SHLD-12, MAY-6)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from stack.tcp import EventKind, State, Tcb, TcbConfig
from stack.wire.tcp import Flags, TcpSegment
from tests.core.net import connected, handshaken

A = IPv4Address("198.18.0.1")
B = IPv4Address("198.18.0.2")
ISS, IRS = 1000, 5000


def established(**settings: object) -> Tcb:
    return handshaken(TcbConfig(**settings), iss=ISS, irs=IRS)  # type: ignore[arg-type]


def answer(tcb: Tcb, now: float) -> None:
    """The peer's ACK to a probe: <SEQ=RCV.NXT of ours><ACK=SND.NXT>."""
    tcb.segment_arrives(TcpSegment(80, 40000, seq=IRS + 1, ack=ISS + 1, flags=Flags.ACK, window=8000), now)


def test_keepalive_is_off_by_default_and_the_idle_time_at_least_two_hours():
    """MUST-25, MUST-28."""
    cfg = TcbConfig()
    assert cfg.keepalive is False and cfg.keepalive_idle >= 7200
    tcb = established()
    assert tcb.deadline is None  # an idle connection runs no timer at all


def test_probe_after_idle_time_has_no_data_and_sits_one_below_snd_nxt():
    """MUST-24 (the application asks), MUST-26 (only after the idle time), SHLD-12 (no data)."""
    tcb = established(keepalive=True, keepalive_idle=10.0, keepalive_interval=2.0)
    assert tcb.deadline == 10.0
    res = tcb.on_timer(10.0)
    (probe,) = res.segments
    assert (probe.seq, probe.ack, probe.flags, probe.payload) == (ISS, IRS + 1, Flags.ACK, b"")
    answer(tcb, 10.01)
    assert tcb.deadline == pytest.approx(20.01)  # idle again from the answer


def test_garbage_octet_when_asked():
    """MAY-6."""
    tcb = established(keepalive=True, keepalive_idle=5.0, keepalive_garbage=True)
    (probe,) = tcb.on_timer(5.0).segments
    assert probe.seq == ISS and probe.payload == b"\0"


def test_unanswered_probes_are_repeated_before_giving_up():
    """MUST-29: one lost ACK never kills a connection; only keepalive_probes unanswered ones do."""
    tcb = established(keepalive=True, keepalive_idle=10.0, keepalive_interval=2.0, keepalive_probes=3)
    times = []
    while tcb.state is not State.CLOSED:
        t = tcb.deadline
        assert t is not None
        res = tcb.on_timer(t)
        times += [t for _ in res.segments]
    assert times == [10.0, 12.0, 14.0]
    assert tcb.status(16.0).state is State.CLOSED
    assert tcb.receive(10, 16.0).error is not None


def test_no_probe_while_data_is_outstanding():
    """MUST-26: keep-alive is for idle connections; data in flight has its own timer."""
    tcb = established(keepalive=True, keepalive_idle=10.0)
    tcb.send(b"x", 1.0)
    assert "keep-alive" not in tcb.status(1.0).timers
    answer_data = TcpSegment(80, 40000, seq=IRS + 1, ack=ISS + 2, flags=Flags.ACK, window=8000)
    tcb.segment_arrives(answer_data, 2.0)
    assert tcb.status(2.0).timers == {"keep-alive": 10.0}


def test_set_turns_keepalive_on_for_one_connection_only():
    cfg = TcbConfig()
    one = Tcb(A, 1, B, 2, config=cfg)
    two = Tcb(A, 3, B, 4, config=cfg)
    one.configure("keepalive", "on", 0.0)
    one.configure("keepalive-idle", "60", 0.0)
    assert one.config.keepalive and one.config.keepalive_idle == 60.0
    assert not two.config.keepalive and not cfg.keepalive
    with pytest.raises(ValueError, match="on or off"):
        one.configure("keepalive", "maybe", 0.0)
    with pytest.raises(ValueError, match="unknown setting"):
        one.configure("colour", "blue", 0.0)
    with pytest.raises(ValueError, match="more than zero"):
        one.configure("keepalive-idle", "-1", 0.0)


def test_a_live_peer_keeps_answering_for_hours():
    """Between two TCBs: the peer answers each probe (as an unacceptable segment, with an ACK), so
    the connection stays open however long it is idle."""
    net = connected(a_config=TcbConfig(keepalive=True, keepalive_idle=600.0, keepalive_interval=30.0))
    net.run(until=6 * 3600)
    assert net.states() == (State.ESTABLISHED, State.ESTABLISHED)
    probes = [seg for t, s, seg in net.log if s == "a" and t > 1 and seg.seq == net.a.tcb.snd_max - 1]
    assert len(probes) >= 30
    assert EventKind.TIMED_OUT not in net.a.kinds()
