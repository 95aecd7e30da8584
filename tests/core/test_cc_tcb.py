"""Congestion control as the TCB drives it: the initial window (RFC 5681 / RFC 6928), restart after
idle (RFC 5681 section 4.1), the algorithm chosen per connection and changed on a live one, and RTO
collapse to one segment."""

from __future__ import annotations

import pytest

from stack.tcp import TcbConfig
from stack.tcp.congestion import Cubic, Reno
from stack.tcp.tcb import RTX
from stack.wire.tcp import Flags, TcpSegment
from tests.core.net import handshaken

ISS, IRS, MSS = 10_000, 20_000, 1460
BASE = ISS + 1


def ack(n: int, window: int = 200_000) -> TcpSegment:
    return TcpSegment(80, 40000, seq=IRS + 1, ack=BASE + n, flags=Flags.ACK, window=window)


def first_flight(config: TcbConfig) -> int:
    tcb = handshaken(config, iss=ISS, irs=IRS, window=65535, mss=MSS, now=0.0)
    return sum(len(s.payload) for s in tcb.send(bytes(100_000), 0.01).segments)


def test_initial_window_is_rfc5681_by_default_and_ten_segments_with_iw10():
    assert first_flight(TcbConfig()) == 3 * MSS  # min(4*1460, max(2*1460, 4380)) = 4380: three segments
    assert first_flight(TcbConfig(iw10=True)) == 10 * MSS  # RFC 6928: min(10*MSS, max(2*MSS, 14600))
    assert TcbConfig.full().iw10


def test_restart_after_idle_brings_cwnd_back_to_the_initial_window():
    tcb = handshaken(TcbConfig(), iss=ISS, irs=IRS, window=65535, mss=MSS, now=0.0)
    tcb.cc.cwnd = 20 * MSS
    tcb.send(bytes(2000), 0.01)
    tcb.segment_arrives(ack(2000, 65535), 0.05)
    grown = tcb.cc.cwnd
    assert grown > 4380
    tcb.send(bytes(100), 0.05 + tcb.rto.rto / 2)  # idle less than an RTO: cwnd kept
    tcb.segment_arrives(ack(2100, 65535), 0.6)
    assert tcb.cc.cwnd >= grown
    later = 0.6 + tcb.rto.rto + 0.1  # idle longer than an RTO
    tcb.send(bytes(100_000), later)
    assert tcb.cc.cwnd == 4380  # min(cwnd, IW)


@pytest.mark.parametrize(("name", "cls"), [("reno", Reno), ("cubic", Cubic)])
def test_the_algorithm_is_chosen_per_connection(name, cls):
    tcb = handshaken(TcbConfig(cc=name), iss=ISS, irs=IRS, window=65535, mss=MSS)
    assert type(tcb.cc) is cls and tcb.status(0.0).cc == name


def test_set_cc_on_a_live_connection_keeps_the_window_reached():
    tcb = handshaken(TcbConfig(), iss=ISS, irs=IRS, window=65535, mss=MSS)
    tcb.cc.cwnd, tcb.cc.ssthresh = 30_000, 20_000
    tcb.configure("cc", "cubic", 1.0)
    assert isinstance(tcb.cc, Cubic) and (tcb.cc.cwnd, tcb.cc.ssthresh) == (30_000, 20_000)
    assert tcb.status(1.0).settings["cc"] == "cubic"
    with pytest.raises(ValueError, match="unknown congestion control 'vegas'; known: reno, cubic"):
        tcb.configure("cc", "vegas", 1.0)
    assert isinstance(tcb.cc, Cubic)


@pytest.mark.parametrize("name", ["reno", "cubic"])
def test_rto_collapses_cwnd_to_one_segment_and_sends_one(name):
    tcb = handshaken(TcbConfig(cc=name), iss=ISS, irs=IRS, window=65535, mss=MSS)
    tcb.cc.cwnd = 10 * MSS
    tcb.send(bytes(10 * MSS), 0.01)
    flight = tcb.snd_max - tcb.snd_una
    res = tcb.on_timer(tcb._timers[RTX])
    assert [(s.seq, len(s.payload)) for s in res.segments] == [(BASE, MSS)]
    assert tcb.cc.cwnd == MSS and tcb.rto_expiries == 1
    beta = 0.5 if name == "reno" else 0.7
    assert tcb.cc.ssthresh == max(round(flight * beta), 2 * MSS)
