"""Selective acknowledgments: the receiver's blocks (RFC 2018), the sender's scoreboard and loss recovery
(RFC 6675), D-SACK tolerated (RFC 2883), and the bounds on what a peer's blocks can do.

Crafted segments against a TCB in a known state check the exact segments that answer them; two TCBs
over the in-memory wire check whole recoveries against NewReno alone."""

from __future__ import annotations

import hashlib
import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp import State, Tcb, TcbConfig
from stack.tcp.sack import Scoreboard, receiver_blocks
from stack.tcp.tcb import RTX
from stack.wire.tcp import Flags, TcpOptions, TcpSegment
from tests.core.net import A_ADDR, B_ADDR, connected, drop_nth, handshaken, trace

ISS, IRS, MSS = 10_000, 20_000, 1000
BASE = ISS + 1  # the first data octet we send
PEER = IRS + 1  # the first data octet the peer sends
SACK = TcbConfig(sack=True)


def sender(cwnd_segments: int = 20, window: int = 60_000, *, tlp: bool = True) -> Tcb:
    """ESTABLISHED with SACK negotiated, MSS 1000, the peer's window 60000, cwnd opened wide."""
    config = TcbConfig(sack=True, tlp=tlp)
    tcb = handshaken(config, iss=ISS, irs=IRS, window=window, mss=MSS, now=0.01, sack=True)
    assert tcb.sack_ok
    tcb.cc.cwnd = cwnd_segments * MSS
    return tcb


def ack(n: int, *blocks: tuple[int, int], window: int = 60_000) -> TcpSegment:
    """An ACK from the peer, with SACK blocks given as offsets from BASE."""
    sack = tuple(((BASE + a) & 0xFFFFFFFF, (BASE + b) & 0xFFFFFFFF) for a, b in blocks)
    return TcpSegment(80, 40000, seq=PEER, ack=(BASE + n) & 0xFFFFFFFF, flags=Flags.ACK, window=window,
                      options=TcpOptions(sack_blocks=sack))


def data(offset: int, size: int = MSS) -> TcpSegment:
    """A data segment from the peer at PEER + offset."""
    return TcpSegment(80, 40000, seq=PEER + offset, ack=BASE, flags=Flags.ACK, window=60_000,
                      payload=bytes(size))


def offsets(segments: list[TcpSegment]) -> list[tuple[int, int]]:
    return [((s.seq - BASE) & 0xFFFFFFFF, len(s.payload)) for s in segments if s.payload]


# ---------------------------------------------------------------------- negotiation (RFC 2018 section 2)


def test_syn_offers_sack_permitted_when_configured():
    tcb = Tcb(A_ADDR, 40000, B_ADDR, 80, config=SACK)
    (syn,) = tcb.open(0.0).segments
    assert syn.options.sack_permitted
    (plain,) = Tcb(A_ADDR, 40001, B_ADDR, 80).open(0.0).segments
    assert not plain.options.sack_permitted


def test_syn_ack_carries_sack_permitted_only_if_the_syn_did():
    for offered in (True, False):
        tcb = Tcb(B_ADDR, 80, config=SACK)
        tcb.open(0.0, active=False)
        syn = TcpSegment(40000, 80, seq=IRS, flags=Flags.SYN, window=8000,
                         options=TcpOptions(mss=1460, sack_permitted=offered))
        (synack,) = tcb.segment_arrives(syn, 0.0, A_ADDR).segments
        assert synack.options.sack_permitted is offered
        assert tcb.sack_ok is offered


def test_sack_not_used_when_only_the_peer_offers_it():
    tcb = handshaken(TcbConfig(), sack=True)
    assert not tcb.sack_ok


# ---------------------------------------------------------------------- receiver (RFC 2018 section 4)


def receiver(config: TcbConfig = SACK) -> Tcb:
    """Our TCB as the receiver, SACK negotiated."""
    tcb = handshaken(config, iss=ISS, irs=IRS, window=60_000, mss=MSS, now=0.01, sack=True)
    return tcb


def sack_of(segment: TcpSegment) -> list[tuple[int, int]]:
    return [((a - PEER) & 0xFFFFFFFF, (b - PEER) & 0xFFFFFFFF) for a, b in segment.options.sack_blocks]


def test_out_of_order_data_is_acked_at_once_with_its_block_first():
    tcb = receiver()
    (a,) = tcb.segment_arrives(data(1000), 0.1).segments
    assert a.ack == PEER and sack_of(a) == [(1000, 2000)]
    (b,) = tcb.segment_arrives(data(3000), 0.1).segments
    assert b.ack == PEER and sack_of(b) == [(3000, 4000), (1000, 2000)]  # the newest block first
    (c,) = tcb.segment_arrives(data(2000), 0.1).segments
    assert sack_of(c) == [(1000, 4000)]  # joined into one block
    (d,) = tcb.segment_arrives(data(0), 0.1).segments
    assert d.ack == PEER + 4000 and d.options.sack_blocks == ()  # the gap filled: no block left
    assert tcb.readable == 4000


def test_four_blocks_fit_without_timestamps_and_three_with_them():
    tcb = receiver()
    for k in range(5):
        res = tcb.segment_arrives(data(1000 + 2000 * k), 0.1)
    (last,) = res.segments
    assert sack_of(last) == [(9000, 10000), (7000, 8000), (5000, 6000), (3000, 4000)]
    assert receiver_blocks([(1, 2), (3, 4), (5, 6), (7, 8)], [3], 3) == ((3, 4), (7, 8), (5, 6))


def test_a_duplicate_out_of_order_segment_is_held_once():
    tcb = receiver()
    for _ in range(3):
        tcb.segment_arrives(data(2000), 0.1)
    tcb.segment_arrives(data(1500, 1000), 0.1)  # overlaps the first half
    tcb.segment_arrives(data(2500, 200), 0.1)  # inside what is held
    assert tcb.status(0.1).ooo_queued == 1500
    tcb.segment_arrives(data(0, 1500), 0.1)
    assert tcb.readable == 3000 and tcb.status(0.1).ooo_queued == 0


def test_out_of_order_queue_holds_at_most_ooo_max_pieces():
    tcb = receiver(TcbConfig(sack=True, ooo_max=2))
    for k in range(4):
        tcb.segment_arrives(data(1000 + 2000 * k, 10), 0.1)
    assert tcb.status(0.1).ooo_queued == 20  # two pieces held, two dropped (the peer sends them again)
    res = tcb.segment_arrives(data(0, 1000), 0.1)
    assert res.segments[0].ack == PEER + 1010


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 5999), max_size=12, unique=True),
    order=st.randoms(use_true_random=False),
    dups=st.integers(0, 6),
)
def test_any_segmentation_order_and_duplication_delivers_the_stream_exactly_once(cuts, order, dups):
    stream = random.Random(5).randbytes(6000)
    edges = [0, *sorted(cuts), len(stream)]
    pieces = [(a, stream[a:b]) for a, b in itertools.pairwise(edges)]
    pieces += [order.choice(pieces) for _ in range(dups)]
    order.shuffle(pieces)
    tcb = receiver(TcbConfig(sack=True, rcv_buf=8000))
    for off, text in pieces:
        seg = TcpSegment(80, 40000, seq=PEER + off, ack=BASE, flags=Flags.ACK, window=60_000, payload=text)
        tcb.segment_arrives(seg, 0.1)
        assert tcb.status(0.1).ooo_queued + tcb.readable <= 8000
    assert tcb.receive(10_000, 0.2).data == stream
    assert tcb.status(0.2).ooo_queued == 0


# ---------------------------------------------------------------------- the scoreboard (RFC 6675)


def test_scoreboard_merges_blocks_and_ignores_what_it_cannot_believe():
    sb = Scoreboard()
    una, top = 1000, 20_000
    assert sb.update([(3000, 4000), (5000, 6000)], una, top) == 2000
    assert sb.update([(4000, 5000)], una, top) == 1000  # fills between: one range now
    assert sb.ranges == [(3000, 6000)]
    assert sb.update([(500, 900)], una, top) == 0  # D-SACK below SND.UNA (RFC 2883): tolerated, no effect
    assert sb.update([(7000, 6000), (19_000, 21_000)], una, top) == 0  # reversed; beyond what was sent
    assert sb.update([(800, 1500)], una, top) == 500  # the part above SND.UNA counts
    assert sb.ranges == [(1000, 1500), (3000, 6000)]
    sb.advance(3500)
    assert sb.ranges == [(3500, 6000)]


def test_scoreboard_across_the_2_32_wrap():
    sb = Scoreboard()
    una = 0xFFFF_F000
    sb.update([(0xFFFF_F800, 0x0000_0400)], una, 0x0000_1000)
    assert sb.sacked == 0xC00
    assert sb.sacked_at(0xFFFF_FFFF) == 0x400
    assert list(sb.holes(una, 0x1000)) == [(0xFFFF_F000, 0xFFFF_F800), (0x400, 0x1000)]
    sb.advance(0x100)
    assert sb.ranges == [(0x100, 0x400)]


def test_is_lost_after_three_ranges_or_more_than_two_segments_sacked_above():
    sb = Scoreboard()
    sb.update([(2000, 3000), (4000, 5000)], 1000, 10_000)
    assert not sb.is_lost(1000, MSS)  # two ranges, 2000 octets: not more than 2 * SMSS
    sb.update([(6000, 6100)], 1000, 10_000)
    assert sb.is_lost(1000, MSS)  # three ranges above
    assert not sb.is_lost(3000, MSS)  # two ranges, 1100 octets above
    assert not sb.is_lost(2500, MSS)  # SACKed octets are not lost


def test_pipe_counts_what_is_in_the_network():
    """SetPipe: an unSACKed octet counts once unless lost, and once more if retransmitted."""
    sb = Scoreboard()
    sb.update([(2000, 5000)], 1000, 8000)  # 3000 SACKed: [1000, 2000) is lost
    assert sb.pipe(1000, 8000, high_rxt=1000, mss=MSS) == 3000  # only [5000, 8000)
    assert sb.pipe(1000, 8000, high_rxt=2000, mss=MSS) == 4000  # plus the retransmission


# ---------------------------------------------------------------------- sender: recovery by RFC 6675


def peer_acks(tcb: Tcb, arrived: list[tuple[int, int]], now: float) -> list[TcpSegment]:
    """What the peer's ACKs, one per arrival in `arrived` (offset, length), bring out of the sender."""
    have: list[tuple[int, int]] = []
    out: list[TcpSegment] = []
    for off, n in arrived:
        have = sorted([*have, (off, off + n)])
        cum = 0
        blocks: list[tuple[int, int]] = []
        for a, b in have:
            if a <= cum:
                cum = max(cum, b)
            elif blocks and blocks[-1][1] == a:
                blocks[-1] = (blocks[-1][0], b)
            else:
                blocks.append((a, b))
        out += tcb.segment_arrives(ack(cum, *blocks[-4:]), now).segments
    return out


def test_third_duplicate_ack_with_sack_retransmits_the_first_hole_and_sets_cwnd_to_ssthresh():
    tcb = sender()
    tcb.send(bytes(10_240), 0.02)  # 11 segments in flight
    flight = tcb.snd_max - tcb.snd_una
    assert tcb.segment_arrives(ack(0, (1000, 2000)), 0.05).segments == []
    assert tcb.segment_arrives(ack(0, (1000, 3000)), 0.05).segments == []
    res = tcb.segment_arrives(ack(0, (1000, 4000)), 0.06)
    assert offsets(res.segments) == [(0, 1000)]
    assert tcb.cc.ssthresh == max(flight // 2, 2 * MSS) and tcb.cc.cwnd == tcb.cc.ssthresh  # no inflation
    assert tcb.fast_retransmits == 1 and tcb.status(0.06).in_recovery
    # the full ACK ends recovery
    tcb.segment_arrives(ack(10_240), 0.1)
    assert not tcb.status(0.1).in_recovery
    assert tcb.cc.cwnd == min(tcb.cc.ssthresh, 2 * MSS)


def test_three_losses_in_one_window_are_repaired_in_one_recovery_without_resending_sacked_data():
    tcb = sender()
    tcb.send(bytes(11_000), 0.02)
    lost = {0, 3000, 6000}
    arrivals = [(k * MSS, MSS) for k in range(11) if k * MSS not in lost]
    resent = peer_acks(tcb, arrivals, 0.05)
    # Each hole goes again once, lowest first, as the scoreboard shows it lost; nothing SACKed goes.
    assert offsets(resent) == [(0, 1000), (3000, 1000), (6000, 1000)]
    # Their arrival brings the cumulative ACK to the end; no timer expired on the way.
    have = [*arrivals, (0, MSS), (3000, MSS), (6000, MSS)]
    peer_acks(tcb, have, 0.08)
    assert tcb.snd_una == tcb.snd_max and not tcb.status(0.08).in_recovery
    assert tcb.rto_expiries == 0 and tcb.fast_retransmits == 1 and tcb.retransmissions == 3


def test_a_lost_retransmission_is_sent_again_once_later_data_is_sacked_not_after_a_timeout():
    """RFC 8985 section 6.2 for retransmissions: the hole at 0 is sent again at 0.06; data sent after that
    (at 0.07) is SACKed while 0 is still missing, so the retransmission was lost in its turn, and the
    sender sends it once more at once. Data SACKed that went out before the retransmission says nothing
    about it."""
    tcb = sender()
    tcb.send(bytes(11_000), 0.02)
    tcb.segment_arrives(ack(0, (1000, 2000)), 0.05)
    tcb.segment_arrives(ack(0, (1000, 3000)), 0.05)
    assert offsets(tcb.segment_arrives(ack(0, (1000, 4000)), 0.06).segments) == [(0, 1000)]
    assert (0, 1000) not in offsets(tcb.segment_arrives(ack(0, (1000, 9000)), 0.065).segments)
    after = offsets(tcb.send(bytes(3000), 0.07).segments)  # new data, sent after the retransmission
    assert after and after[0][0] == 11_000
    # SACKs of what was sent at 0.02 only: the hole is not sent again.
    assert (0, 1000) not in offsets(tcb.segment_arrives(ack(0, (1000, 11_000)), 0.2).segments)
    # The first octet sent at 0.07 is SACKed, 0 is not: the retransmission was lost.
    res = tcb.segment_arrives(ack(0, (1000, 12_000)), 0.21)
    assert (0, 1000) in offsets(res.segments)
    assert tcb.rto_expiries == 0 and tcb.retransmissions == 2


def test_sack_blocks_the_sender_cannot_believe_change_nothing():
    tcb = sender()
    tcb.send(bytes(5000), 0.02)
    for bogus in [(6000, 7000), (3000, 2000), (-4000, -3000), (100_000, 200_000)]:
        assert tcb.segment_arrives(ack(0, bogus), 0.05).segments == []
    assert tcb.status(0.05).sacked == 0
    assert tcb.retransmissions == 0 and tcb.state is State.ESTABLISHED
    assert tcb.snd_una == BASE and tcb.snd_max == BASE + 5000


def test_go_back_after_a_timeout_steps_over_sacked_data():
    """RFC 6675 section 5.1: after the timer expires, SACKed data is not sent again (no loss probe
    first: tests/core/test_loss_probe.py has those)."""
    tcb = sender(tlp=False)
    tcb.send(bytes(5000), 0.02)
    tcb.segment_arrives(ack(0, (1000, 2000)), 0.05)
    tcb.segment_arrives(ack(0, (1000, 2000), (3000, 4000)), 0.05)  # two duplicates: not yet lost
    due = tcb._timers[RTX]
    (first,) = tcb.on_timer(due).segments
    assert offsets([first]) == [(0, 1000)] and tcb.cc.cwnd == MSS
    res = tcb.segment_arrives(ack(2000, (3000, 4000)), due + 0.01)  # the peer had [1000, 2000) already
    assert offsets(res.segments) == [(2000, 1000), (4000, 1000)]


def test_recovery_with_sack_is_quicker_than_newreno_alone_and_both_are_exact():
    """Several losses in one window over the in-memory wire: both repair them without a timeout;
    NewReno needs a round trip per loss, SACK repairs them in about one."""
    took = {}
    for use_sack in (False, True):
        cfg = TcbConfig(sack=use_sack, rcv_buf=200_000)
        net = connected(a_config=cfg, b_config=cfg, latency=0.02)
        a = net.a.tcb
        stream = random.Random(9).randbytes(300_000)
        net.take("a", a.send(stream[:100_000], net.now))
        net.run_until(lambda n=net: len(n.b.received) == 100_000)
        a.cc.cwnd = a.cc.ssthresh = 60 * a.eff_snd_mss  # a wide window, as after slow start
        drops = [drop_nth(net, lambda seg, s: s == "a" and bool(seg.payload), n=k) for k in (5, 15, 25, 35)]
        t0 = net.now
        net.take("a", a.send(stream[100_000:], net.now))
        net.run_until(lambda n=net: len(n.b.received) == 300_000, limit=t0 + 30)
        assert hashlib.sha256(net.b.received).digest() == hashlib.sha256(stream).digest()
        assert all(drops), trace(net, 40)
        assert a.rto_expiries == 0, trace(net, 40)
        assert a.sack_ok is use_sack
        took[use_sack] = net.now - t0
    assert took[True] < took[False], took


# ---------------------------------------------------------------------- silly window syndrome


def test_sender_waits_for_the_window_to_open_rather_than_send_a_silly_segment():
    """MUST-38 (3.8.6.2.1): less than an MSS, less than what is queued and less than half the largest
    window offered: wait; the persist timer's expiry overrides the wait."""
    tcb = handshaken(iss=ISS, irs=IRS, window=8000, mss=MSS, now=0.01)
    tcb.cc.cwnd = 20 * MSS
    tcb.send(bytes(8000), 0.02)
    tcb.segment_arrives(ack(8000, window=0), 0.05)  # all acknowledged, window closed
    tcb.send(bytes(5000), 0.06)
    res = tcb.segment_arrives(ack(8000, window=300), 0.07)  # opens by 300 < 4000 = 8000 / 2
    assert res.segments == []
    assert "persist" in tcb.status(0.07).timers
    due = 0.07 + tcb.status(0.07).timers["persist"]
    (seg,) = tcb.on_timer(due).segments  # the override: what the window allows goes
    assert offsets([seg]) == [(8000, 300)]
    res = tcb.segment_arrives(ack(8300, window=4000), due + 0.01)  # half the largest window: send it
    assert offsets(res.segments) == [(8300, 1000), (9300, 1000), (10300, 1000), (11300, 1000)]


def test_receiver_opens_its_window_only_by_a_full_segment_at_a_time():
    """MUST-39 (3.8.6.2.2): the right edge moves only by min(RCV.BUFF / 2, MSS) or more."""
    tcb = handshaken(TcbConfig(rcv_buf=4000, mtu=1040), iss=ISS, irs=IRS, window=8000, mss=MSS, now=0.01)
    (full,) = tcb.segment_arrives(data(0, 4000), 0.1).segments
    assert full.window == 0
    assert tcb.receive(900, 0.2).segments == []  # 900 free: no update
    (probe_answer,) = tcb.segment_arrives(data(4000, 1), 0.3).segments
    assert probe_answer.window == 0  # the edge has not moved
    (update,) = tcb.receive(200, 0.4).segments  # 1100 free >= min(2000, 1000)
    assert update.window == 1100 and update.ack == PEER + 4000


@settings(max_examples=150, deadline=None)
@given(arrivals=st.lists(st.tuples(st.integers(0, 15_000), st.integers(1, 3000), st.integers(0, 4000))))
def test_sack_blocks_always_describe_what_is_held_and_lead_with_the_trigger(arrivals):
    """Whatever arrives, in whatever pieces, and whatever the user reads meanwhile: the blocks are the
    out-of-order data held, exactly, and the first holds the segment that triggered the ACK (RFC 2018
    section 4), also when a segment covers pieces held before (a resegmented retransmission)."""
    tcb = receiver(TcbConfig(sack=True, rcv_buf=20_000))
    for off, n, read in arrivals:
        seg = TcpSegment(80, 40000, PEER + off, BASE, Flags.ACK, window=60_000, payload=bytes(n))
        res = tcb.segment_arrives(seg, 0.1)
        held: list[tuple[int, int]] = []
        for s, text, _ in tcb._ooo:
            if held and held[-1][1] == s:
                held[-1] = (held[-1][0], s + len(text))
            elif text:
                held.append((s, s + len(text)))
        for out in res.segments:
            blocks = out.options.sack_blocks
            assert all(b in held for b in blocks) and len(blocks) == min(4, len(held)), (blocks, held)
            trigger_held = any(a <= seg.seq < b for a, b in held)
            if blocks and trigger_held:
                assert blocks[0][0] <= seg.seq < blocks[0][1], (blocks, seg.seq)
        if read:
            tcb.receive(read, 0.1)
