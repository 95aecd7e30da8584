"""Tail loss probes (RFC 8985 section 7) and lost retransmissions over the in-memory wire.

A loss at the tail of what is in flight (the last segments, or the last ACK) leaves no later segment to
bring duplicate ACKs: without a probe only the retransmission timer repairs it, a second or more. The
probe goes after two smoothed round trips, and its answer starts fast recovery."""

from __future__ import annotations

import hashlib
import random

import pytest

from stack.tcp import State, Tcb, TcbConfig
from stack.tcp.isn import FixedIsn
from stack.tcp.tcb import RTX, TLP
from stack.wire.tcp import Flags, TcpOptions, TcpSegment
from tests.core.net import A_ADDR, B_ADDR, connected, send_all

ISS, IRS, MSS = 10_000, 20_000, 1000
BASE = ISS + 1
RTT = 0.02


def sender(sack: bool = True) -> Tcb:
    """ESTABLISHED after a handshake of one 20 ms round trip (SRTT 20 ms), MSS 1000, cwnd wide open."""
    tcb = Tcb(A_ADDR, 40000, B_ADDR, 80, config=TcbConfig(sack=sack), isn=FixedIsn(ISS))
    tcb.open(0.0)
    synack = TcpSegment(80, 40000, seq=IRS, ack=BASE, flags=Flags.SYN | Flags.ACK, window=60_000,
                        options=TcpOptions(mss=MSS, sack_permitted=sack))
    tcb.segment_arrives(synack, RTT)
    assert tcb.state is State.ESTABLISHED and tcb.rto.srtt == RTT
    tcb.cc.cwnd = 20 * MSS
    return tcb


def ack(n: int, *blocks: tuple[int, int]) -> TcpSegment:
    return TcpSegment(80, 40000, seq=IRS + 1, ack=BASE + n, flags=Flags.ACK, window=60_000,
                      options=TcpOptions(sack_blocks=tuple((BASE + a, BASE + b) for a, b in blocks)))


def offsets(segments: list[TcpSegment]) -> list[tuple[int, int]]:
    return [(s.seq - BASE, len(s.payload)) for s in segments if s.payload]


def test_the_last_segment_goes_again_two_round_trips_after_the_tail_and_well_before_the_timer() -> None:
    tcb = sender()
    tcb.send(bytes(5000), 0.1)  # five segments, all in flight; their ACKs are lost
    status = tcb.status(0.1)
    assert status.timers[TLP] < status.timers[RTX]
    due = 0.1 + status.timers[TLP]
    assert due - 0.1 == pytest.approx(2 * RTT)
    assert tcb.on_timer(due - 0.001).segments == []
    probe = tcb.on_timer(due).segments
    assert offsets(probe) == [(4000, 1000)]  # the last segment sent
    assert tcb.loss_probes == 1 and tcb.rto_expiries == 0
    # The peer had everything: its ACK ends the episode, with no timer left.
    tcb.segment_arrives(ack(5000), due + RTT)
    assert not tcb.status(due + RTT).timers


def test_the_answer_to_a_probe_starts_fast_recovery_of_the_tail() -> None:
    tcb = sender()
    tcb.send(bytes(5000), 0.1)
    tcb.segment_arrives(ack(2000), 0.12)  # the last three are lost
    due = 0.12 + tcb.status(0.12).timers[TLP]
    assert offsets(tcb.on_timer(due).segments) == [(4000, 1000)]
    # The probe arrives: the peer SACKs it, which shows the two before it lost.
    res = tcb.segment_arrives(ack(2000, (4000, 5000)), due + RTT)
    assert offsets(res.segments) == [(2000, 1000)]
    assert tcb.status(due + RTT).in_recovery
    # Its repair arrives: the partial ACK lets the next hole go (RFC 6675: the pipe paces recovery).
    res = tcb.segment_arrives(ack(3000, (4000, 5000)), due + 2 * RTT)
    assert offsets(res.segments) == [(3000, 1000)]
    tcb.segment_arrives(ack(5000), due + 3 * RTT)
    assert not tcb.status(due + 3 * RTT).in_recovery and tcb.rto_expiries == 0


def test_after_a_probe_a_segment_overtaken_by_the_next_is_not_taken_for_lost() -> None:
    """The probe went because the ACKs were slow, not lost (a busy host). The next ACK SACKs the
    segment sent right after SND.UNA's: reordering by one place, within RFC 8985's reordering window of
    SRTT/4, so nothing is resent; then the overtaken segment arrives and the ACK covers everything."""
    tcb = sender()
    tcb.send(bytes(5000), 0.1)
    tcb.segment_arrives(ack(2000), 0.12)
    due = 0.12 + tcb.status(0.12).timers[TLP]
    assert offsets(tcb.on_timer(due).segments) == [(4000, 1000)]
    res = tcb.segment_arrives(ack(2000, (3000, 4000)), due + 0.001)  # 3000 was sent with 2000
    assert offsets(res.segments) == [] and tcb.fast_retransmits == 0
    assert not tcb.status(due + 0.001).in_recovery
    # The probe's answer SACKs it too: the probe went a PTO after 2000, which is lost by then.
    res = tcb.segment_arrives(ack(2000, (3000, 5000)), due + RTT)
    assert offsets(res.segments) == [(2000, 1000)] and tcb.fast_retransmits == 1


def test_after_a_probe_the_overtaken_segment_arriving_ends_it_without_a_retransmission() -> None:
    tcb = sender()
    tcb.send(bytes(5000), 0.1)
    tcb.segment_arrives(ack(2000), 0.12)
    due = 0.12 + tcb.status(0.12).timers[TLP]
    tcb.on_timer(due)
    tcb.segment_arrives(ack(2000, (3000, 4000)), due + 0.001)
    tcb.segment_arrives(ack(5000, (4000, 5000)), due + 0.002)  # the held segment, then the probe's D-SACK
    assert (tcb.retransmissions, tcb.fast_retransmits, tcb.rto_expiries) == (1, 0, 0)  # the probe alone
    assert not tcb.status(due + 0.002).timers


def test_a_probe_sends_new_data_when_there_is_some_the_window_allows() -> None:
    tcb = sender()
    tcb.cc.cwnd = 3 * MSS
    tcb.send(bytes(5000), 0.1)  # three segments go (cwnd), two wait
    assert tcb.status(0.1).send_queued == 2000
    due = 0.1 + tcb.status(0.1).timers[TLP]
    assert offsets(tcb.on_timer(due).segments) == [(3000, 1000)]


def test_without_sack_there_is_no_probe_and_the_timer_repairs_the_tail() -> None:
    tcb = sender(sack=False)
    tcb.send(bytes(5000), 0.1)
    assert TLP not in tcb.status(0.1).timers
    assert tcb.status(0.1).timers[RTX] >= 1.0


def lossy_transfer(tlp: bool) -> Tcb:
    """20 MB over the in-memory wire losing 2% of everything each way (seeded), the sender's SEND calls
    refilling its buffer; the sender once it is all delivered, intact."""
    net = connected(a_config=TcbConfig.full(tlp=tlp), b_config=TcbConfig.full(), latency=0.0003, seed=3,
                    codec=False)
    net.loss = 0.02
    a = net.a.tcb
    data = random.Random(4).randbytes(20_000_000)
    send_all(net, data, 500_000)
    assert hashlib.sha256(net.b.received).digest() == hashlib.sha256(data).digest()
    return a


def test_probes_and_lost_retransmissions_found_by_time_spare_most_retransmission_timeouts() -> None:
    """The same seeded lossy transfer with RFC 8985's probes and without: both repair most losses by
    fast recovery; with them, the timer fires for far fewer (here: a tail whose probe's ACK was lost
    too; RFC 8985 7.3 allows one probe until an ACK)."""
    without, with_tlp = lossy_transfer(False), lossy_transfer(True)
    assert without.fast_retransmits > 100 and with_tlp.fast_retransmits > 100
    assert without.loss_probes == 0 and with_tlp.loss_probes > 0
    assert with_tlp.rto_expiries * 2 < without.rto_expiries, (with_tlp.rto_expiries, without.rto_expiries)


def test_a_probe_never_sends_again_what_the_peer_has_sacked() -> None:
    """The tail was SACKed above a hole too small for RFC 6675 to call lost: the probe goes into the
    hole, not onto the last segment, which the peer holds already."""
    tcb = sender()
    tcb.send(bytes(5000), 0.1)
    tcb.segment_arrives(ack(2000), 0.12)
    tcb.segment_arrives(ack(2000, (4000, 5000)), 0.121)  # one SACKed segment: not yet a loss
    assert not tcb.status(0.121).in_recovery
    due = 0.121 + tcb.status(0.121).timers[TLP]
    assert offsets(tcb.on_timer(due).segments) == [(2000, 1000)]
    assert tcb.loss_probes == 1
