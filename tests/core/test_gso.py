"""Segmentation offload in the TCB (`gso_max`, as Linux's TSO/GSO): new data leaves the TCB in segments
of up to 64 KB, each a whole number of Eff.snd.MSS but for the end of the queue, cut before the wire
(tests/core/net.py cuts them as the runtime or the link does); retransmissions go one MSS at a time."""

from __future__ import annotations

import hashlib
import random

from stack.tcp import TcbConfig
from stack.wire.tcp import Flags, TcpSegment, split_segment
from tests.core.net import connected, drop_nth, send_all

GSO = 65_000


def offloading(**kw: object) -> TcbConfig:
    return TcbConfig.full(gso_max=GSO, **kw)  # type: ignore[arg-type]


def test_the_stacks_profile_offloads_and_the_baseline_does_not() -> None:
    assert TcbConfig.full().gso_max > 0 and TcbConfig().gso_max == 0


def data_segments(segs: list[TcpSegment]) -> list[TcpSegment]:
    return [s for s in segs if s.payload]


def test_new_data_leaves_in_large_segments_of_whole_mss_and_arrives_intact() -> None:
    net = connected(a_config=offloading(), b_config=TcbConfig.full())
    a = net.a.tcb
    mss = a.eff_snd_mss
    data = random.Random(7).randbytes(1_000_003)
    send_all(net, data, 200_000)
    assert hashlib.sha256(net.b.received).digest() == hashlib.sha256(data).digest()
    emitted = data_segments(net.a.sent)
    big = [s for s in emitted if len(s.payload) > mss]
    assert big, "no segment larger than the MSS left the TCB"
    assert max(len(s.payload) for s in emitted) <= GSO
    # Each large segment is whole segments of the MSS, unless it ends what was queued (then it has PSH).
    for s in big:
        assert len(s.payload) % mss == 0 or s.flags & Flags.PSH, (len(s.payload), mss)
    on_wire = [seg for _, who, seg in net.log if who == "a" and seg.payload]
    assert max(len(s.payload) for s in on_wire) == mss
    assert a.retransmissions == 0


def test_without_gso_max_no_segment_exceeds_the_mss() -> None:
    net = connected(a_config=TcbConfig.full(gso_max=0), b_config=TcbConfig.full())
    a = net.a.tcb
    data = random.Random(8).randbytes(300_000)
    net.take("a", a.send(data, net.now))
    net.run_until(lambda: len(net.b.received) == len(data), limit=30)
    assert max(len(s.payload) for s in data_segments(net.a.sent)) == a.eff_snd_mss


def test_a_piece_lost_from_a_large_segment_is_resent_as_one_segment_of_the_mss() -> None:
    net = connected(a_config=offloading(), b_config=TcbConfig.full())
    a = net.a.tcb
    mss = a.eff_snd_mss
    data = random.Random(9).randbytes(600_000)
    net.take("a", a.send(data[:100_000], net.now))
    net.run_until(lambda: len(net.b.received) == 100_000, limit=10)
    lost = drop_nth(net, lambda seg, who: who == "a" and bool(seg.payload), n=20)
    marker = len(net.a.sent)
    net.take("a", a.send(data[100_000:], net.now))
    net.run_until(lambda: len(net.b.received) == len(data), limit=net.now + 30)
    assert bytes(net.b.received) == data
    assert lost and len(lost[0].payload) == mss
    again = [s for s in net.a.sent[marker:] if s.seq == lost[0].seq and s.payload]
    assert [len(s.payload) for s in again] == [mss], "resent as one segment of the MSS"
    assert a.retransmissions >= 1 and a.fast_retransmits >= 1


def test_split_segment_cuts_as_linux_gso_does() -> None:
    seg = TcpSegment(
        1, 2, seq=2**32 - 1000, ack=5, flags=Flags.ACK | Flags.PSH | Flags.FIN | Flags.CWR, window=9,
        payload=bytes(range(256)) * 10,
    )
    pieces = split_segment(seg, 1000)
    assert [len(p.payload) for p in pieces] == [1000, 1000, 560]
    assert b"".join(p.payload for p in pieces) == seg.payload
    assert [p.seq for p in pieces] == [2**32 - 1000, 0, 1000]  # modulo 2**32 (RFC 9293 3.4)
    assert [p.flags for p in pieces] == [Flags.ACK | Flags.CWR, Flags.ACK, Flags.ACK | Flags.PSH | Flags.FIN]
    assert all(p.ack == 5 and p.window == 9 and p.options == seg.options for p in pieces)
    assert split_segment(seg, 2560) == [seg]
