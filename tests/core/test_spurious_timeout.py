"""Spurious retransmission timeouts found by the timestamps and undone: Eifel detection (RFC 3522) and
the Eifel response (RFC 4015), by crafted segments.

A timeout is spurious when the segments it took for lost were only late, or their ACKs were (a path
or a host stalled for longer than the RTO). The first ACK after the timeout's retransmission then
echoes a timestamp older than that retransmission: it acknowledges the originals. The sender goes on
with new data instead of sending the whole window again, and gets its congestion window back."""

from __future__ import annotations

from ipaddress import IPv4Address

from stack.tcp import Tcb, TcbConfig
from stack.tcp.isn import FixedIsn
from stack.tcp.tcb import RTX
from stack.wire.tcp import Flags, TcpOptions, TcpSegment

A, B = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")
ISS, IRS = 10_000, 20_000
BASE = ISS + 1
SEG = 1000 - 12  # Eff.snd.MSS: the peer's MSS less the timestamps option


def sender(timestamps: bool = True) -> Tcb:
    """ESTABLISHED with timestamps, five segments of data sent at t=0.1 (TSval 100), none acknowledged."""
    tcb = Tcb(A, 40000, B, 80, config=TcbConfig(timestamps=timestamps), isn=FixedIsn(ISS))
    tcb.open(0.0)
    synack = TcpSegment(80, 40000, seq=IRS, ack=BASE, flags=Flags.SYN | Flags.ACK, window=60_000,
                        options=TcpOptions(mss=1000, timestamps=(500, 0) if timestamps else None))
    tcb.segment_arrives(synack, 0.02)
    tcb.cc.cwnd = 10 * SEG
    tcb.send(bytes(5 * (1000 - 12 * timestamps)), 0.1)
    return tcb


def ack(n: int, echo: int | None) -> TcpSegment:
    return TcpSegment(80, 40000, seq=IRS + 1, ack=BASE + n, flags=Flags.ACK, window=60_000,
                      options=TcpOptions(timestamps=None if echo is None else (600, echo)))


def timed_out(tcb: Tcb) -> float:
    """Let the retransmission timer expire: the first segment goes again, cwnd is one segment."""
    due = 0.1 + tcb.status(0.1).timers[RTX]
    (again,) = tcb.on_timer(due).segments
    assert (again.seq, len(again.payload)) == (BASE, SEG)
    assert again.options.timestamps == (int(due * 1000), 500)
    assert tcb.rto_expiries == 1 and tcb.cc.cwnd == SEG
    return due


def test_an_ack_echoing_the_originals_undoes_the_timeout_and_new_data_follows() -> None:
    tcb = sender()
    due = timed_out(tcb)
    # The ACK of the first two originals, late: it echoes their TSval, 100.
    res = tcb.segment_arrives(ack(2 * SEG, echo=100), due + 0.001)
    assert tcb.spurious_timeouts == 1
    # Nothing is sent again: the three still in flight were sent once and are on their way.
    assert [s for s in res.segments if s.payload] == []
    status = tcb.status(due + 0.001)
    assert status.snd_nxt == BASE + 5 * SEG
    # RFC 4015 step 5: cwnd = FlightSize + min(bytes_acked, IW), ssthresh = pipe_prev (slow start's).
    assert tcb.cc.cwnd == 3 * SEG + 2 * SEG and tcb.cc.ssthresh == 1 << 30
    # New data goes at once, from SND.MAX.
    sent = tcb.send(bytes(SEG), due + 0.002).segments
    assert [(s.seq, len(s.payload)) for s in sent] == [(BASE + 5 * SEG, SEG)]


def test_an_ack_echoing_the_retransmission_is_a_real_loss_and_go_back_n_goes_on() -> None:
    tcb = sender()
    due = timed_out(tcb)
    res = tcb.segment_arrives(ack(SEG, echo=int(due * 1000)), due + 0.02)
    assert tcb.spurious_timeouts == 0
    # Slow start from one segment: two more go, the next of the window sent again.
    assert [(s.seq - BASE, len(s.payload)) for s in res.segments if s.payload] == [(SEG, SEG), (2 * SEG, SEG)]
    assert tcb.cc.cwnd == 2 * SEG


def test_without_timestamps_a_timeout_stands() -> None:
    tcb = sender(timestamps=False)
    due = 0.1 + tcb.status(0.1).timers[RTX]
    tcb.on_timer(due)
    res = tcb.segment_arrives(ack(2 * 1000, echo=None), due + 0.001)
    assert tcb.spurious_timeouts == 0
    assert [(s.seq - BASE, len(s.payload)) for s in res.segments if s.payload] == [(2000, 1000), (3000, 1000)]
