"""Window scale and timestamps (RFC 7323): negotiated on the SYNs, windows past 64 KiB, RTT from echoed
timestamps, PAWS; and nothing of it when the peer does not offer it."""

from __future__ import annotations

import hashlib
import itertools
import random
from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp import State, Tcb, TcbConfig
from stack.tcp.isn import FixedIsn
from stack.wire.tcp import Flags, TcpOptions, TcpSegment
from tests.core.net import connected

A = IPv4Address("198.18.0.1")
B = IPv4Address("198.18.0.2")
ISS, IRS = 1000, 5000


def test_syn_offers_window_scale_and_timestamps():
    tcb = Tcb(A, 40000, B, 80, config=TcbConfig.full(rcv_buf=1 << 20), isn=FixedIsn(ISS))
    (syn,) = tcb.open(12.345).segments
    # 1 MiB needs shift 5
    assert syn.options == TcpOptions(mss=1460, wscale=5, sack_permitted=True, timestamps=(12345, 0))
    assert syn.window == 65535  # a SYN's window is never scaled


def test_both_sides_agree_then_windows_are_scaled_and_timestamps_echoed():
    tcb = Tcb(A, 40000, B, 80, config=TcbConfig.full(rcv_buf=1 << 20), isn=FixedIsn(ISS))
    tcb.open(1.0)
    synack = TcpSegment(
        80,
        40000,
        seq=IRS,
        ack=ISS + 1,
        flags=Flags.SYN | Flags.ACK,
        window=1000,
        options=TcpOptions(mss=1460, wscale=7, timestamps=(777, 1000)),
    )
    (ack,) = tcb.segment_arrives(synack, 1.05).segments
    assert (tcb.snd_shift, tcb.rcv_shift, tcb.ts_ok) == (7, 5, True)
    assert ack.options.timestamps == (1050, 777)
    assert ack.window == (1 << 20) >> 5  # 1 MiB of buffer, in units of 32
    assert tcb.rcv_wnd == 1 << 20
    assert tcb.status(1.05).srtt is not None  # the SYN,ACK's echo of 1000 timed the handshake
    # the peer's windows from now on are scaled by 2**7
    tcb.segment_arrives(
        TcpSegment(
            80,
            40000,
            seq=IRS + 1,
            ack=ISS + 1,
            flags=Flags.ACK,
            window=1000,
            options=TcpOptions(timestamps=(778, 1050)),
        ),
        1.1,
    )
    assert tcb.snd_wnd == 1000 << 7
    assert tcb.eff_snd_mss == 1460 - 12  # room for the timestamps option on every segment


def test_a_peer_without_the_options_gets_none():
    """RFC 7323 2.2 and 3.2: only when both SYNs carry them; a SYN,ACK never offers what the SYN lacked."""
    listener = Tcb(B, 80, config=TcbConfig.full(), isn=FixedIsn(IRS))
    listener.open(0.0, active=False)
    plain_syn = TcpSegment(40000, 80, seq=ISS, flags=Flags.SYN, window=65535, options=TcpOptions(mss=1460))
    (synack,) = listener.segment_arrives(plain_syn, 0.1, A).segments
    assert synack.options == TcpOptions(mss=1460)
    listener.segment_arrives(
        TcpSegment(40000, 80, seq=ISS + 1, ack=IRS + 1, flags=Flags.ACK, window=700), 0.2
    )
    assert listener.state is State.ESTABLISHED
    assert (listener.snd_shift, listener.rcv_shift, listener.ts_ok) == (0, 0, False)
    assert listener.snd_wnd == 700  # not scaled
    (data,) = listener.send(b"hi", 0.3).segments
    assert data.options == TcpOptions() and data.window <= 65535


def test_paws_drops_an_old_duplicate_and_acknowledges():
    """RFC 7323 5.3 R1: a segment whose TSval is older than TS.Recent is not acceptable."""
    tcb = Tcb(A, 40000, B, 80, config=TcbConfig.full(rcv_buf=1 << 20), isn=FixedIsn(ISS))
    tcb.open(1.0)
    tcb.segment_arrives(
        TcpSegment(
            80,
            40000,
            seq=IRS,
            ack=ISS + 1,
            flags=Flags.SYN | Flags.ACK,
            window=1000,
            options=TcpOptions(mss=1460, wscale=7, timestamps=(5000, 1000)),
        ),
        1.05,
    )
    fresh = TcpSegment(
        80,
        40000,
        seq=IRS + 1,
        ack=ISS + 1,
        flags=Flags.ACK,
        window=1000,
        options=TcpOptions(timestamps=(5001, 1050)),
        payload=b"new",
    )
    tcb.segment_arrives(fresh, 1.1)
    assert tcb.readable == 3 and tcb.ts_recent == 5001
    old = TcpSegment(
        80,
        40000,
        seq=IRS + 4,
        ack=ISS + 1,
        flags=Flags.ACK,
        window=1000,
        options=TcpOptions(timestamps=(4000, 900)),
        payload=b"old",
    )
    (reply,) = tcb.segment_arrives(old, 1.2).segments
    assert reply.flags == Flags.ACK and reply.ack == IRS + 4 and not reply.payload
    assert tcb.readable == 3  # the old text was not taken


def test_large_windows_carry_a_transfer_through_loss_and_reordering():
    full = TcbConfig.full()
    net = connected(a_config=full, b_config=TcbConfig.full(), loss=0.02, reorder=0.2, seed=11)
    a, b = net.a.tcb, net.b.tcb
    assert (a.snd_shift, a.rcv_shift, a.ts_ok, b.ts_ok) == (7, 7, True, True)  # 4 MiB of buffer needs shift 7
    data = random.Random(4).randbytes(3_000_000)
    chunk = 500_000  # within the send buffer; the rest goes as the buffer drains
    for i in range(0, len(data), chunk):
        net.run_until(lambda: a.send_space >= chunk, limit=net.now + 600)
        assert net.take("a", a.send(data[i : i + chunk], net.now)).ok
        if i == 0:
            net.run_until(lambda: a.snd_wnd > 65535, limit=net.now + 10)  # the window went past 16 bits
    net.run_until(lambda: len(net.b.received) == len(data), limit=net.now + 600)
    assert hashlib.sha256(net.b.received).digest() == hashlib.sha256(data).digest()
    assert a.status(net.now).srtt is not None


def test_rtt_from_timestamps_follows_the_path():
    cfg = TcbConfig.full(rto_min=0.01)
    # b acknowledges at once, so that what a measures is the path and not b's ACK delay
    net = connected(a_config=cfg, b_config=TcbConfig.full(rto_min=0.01, delayed_ack=False), latency=0.05)
    for _ in range(20):
        net.take("a", net.a.tcb.send(b"x" * 100, net.now))
        net.run(until=net.now + 0.5)
    srtt = net.a.tcb.status(net.now).srtt
    assert srtt is not None and 0.09 <= srtt <= 0.12  # two 50 ms legs, in whole milliseconds


def test_full_and_baseline_peers_still_talk():
    net = connected(a_config=TcbConfig.full(), b_config=TcbConfig())
    assert (net.a.tcb.ts_ok, net.a.tcb.snd_shift, net.b.tcb.ts_ok) == (False, 0, False)
    net.take("a", net.a.tcb.send(b"plain", net.now))
    net.run_until(lambda: bytes(net.b.received) == b"plain")


def test_scaled_windows_across_the_2_32_wrap_with_loss_and_sack():
    """Sequence numbers that wrap in the middle of a transfer with scaled windows and SACK: nothing
    lost, nothing twice."""
    near = 0xFFFF_FFFF - 400_000
    net = connected(
        a_config=TcbConfig.full(), b_config=TcbConfig.full(), a_isn=near, b_isn=near - 7, loss=0.02, seed=5
    )
    a, b = net.a.tcb, net.b.tcb
    assert a.sack_ok and b.sack_ok and a.snd_shift == 7
    up = random.Random(6).randbytes(1_000_000)
    down = random.Random(7).randbytes(1_000_000)
    net.take("a", a.send(up, net.now))
    net.take("b", b.send(down, net.now))
    net.run_until(lambda: len(net.b.received) == len(up) and len(net.a.received) == len(down), limit=600)
    assert hashlib.sha256(net.b.received).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(net.a.received).digest() == hashlib.sha256(down).digest()
    assert a.snd_una < near and b.snd_una < near  # both wrapped past 2**32
    assert a.rto_expiries <= a.fast_retransmits


def synack_with(options: TcpOptions) -> Tcb:
    tcb = Tcb(A, 40000, B, 80, config=TcbConfig.full(rcv_buf=1 << 20), isn=FixedIsn(ISS))
    tcb.open(0.0)
    synack = TcpSegment(80, 40000, IRS, ISS + 1, Flags.SYN | Flags.ACK, window=1000, options=options)
    tcb.segment_arrives(synack, 0.01)
    assert tcb.state is State.ESTABLISHED
    return tcb


def test_a_window_scale_above_14_is_taken_as_14():
    """RFC 7323 section 2.3: a shift above 14 MUST be used as 14."""
    tcb = synack_with(TcpOptions(mss=1460, wscale=200))
    assert tcb.snd_shift == 14
    tcb.segment_arrives(TcpSegment(80, 40000, seq=IRS + 1, ack=ISS + 1, flags=Flags.ACK, window=4), 0.02)
    assert tcb.snd_wnd == 4 << 14


def test_a_zero_mss_is_taken_as_no_mss_option():
    tcb = synack_with(TcpOptions(mss=0))
    assert tcb.snd_mss == 536  # MUST-15's default
    assert tcb.eff_snd_mss == 536


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(1, 1448), min_size=1, max_size=60), reads=st.lists(st.integers(0, 40_000)))
def test_a_scaled_window_never_moves_its_right_edge_left(sizes, reads):
    """SHLD-14 with window scaling: the 16-bit field cannot say every window, so it is rounded up while
    the buffer has the room, and ACK + (SEG.WND << shift) never falls below an edge offered before by a
    scale unit or more (RFC 7323 section 2.4), however the user reads; what lies there is still taken
    (the next test)."""
    tcb = synack_with(TcpOptions(mss=1460, wscale=7))
    assert tcb.rcv_shift == 5
    seq, edge = IRS + 1, 0
    reads = iter(reads)
    for n in sizes:
        data = TcpSegment(80, 40000, seq, ISS + 1, Flags.ACK | Flags.PSH, window=1000, payload=bytes(n))
        res = tcb.segment_arrives(data, 0.1)
        seq += n
        res.segments += tcb.receive(next(reads, 0), 0.1).segments
        for out in res.segments:
            right = out.ack + (out.window << 5)
            assert right > edge - (1 << 5), (out, edge)
            edge = max(edge, right)


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 60_000), min_size=40, max_size=80))
def test_a_reader_that_stops_gets_a_zero_window_and_everything_offered_is_taken(sizes):
    """Never reading: the window closes to zero, the buffer never holds more than rcv_buf, and a peer
    that fills the furthest edge it was ever offered has every octet taken (RFC 7323 section 2.4: a
    scaled window may show its edge up to 2**shift - 1 octets to the left; data sent there is not lost)."""
    tcb = synack_with(TcpOptions(mss=1460, wscale=7))
    buf = tcb.config.rcv_buf
    seq = IRS + 1
    edge = tcb.rcv_nxt + tcb.rcv_wnd
    for size in itertools.chain(sizes, itertools.repeat(60_000)):
        n = min(size, edge - seq)
        if n <= 0:
            break
        data = TcpSegment(80, 40000, seq, ISS + 1, Flags.ACK, window=1000, payload=bytes(n))
        res = tcb.segment_arrives(data, 0.1)
        assert tcb.rcv_nxt == seq + n, "data inside an edge offered before was refused"
        seq += n
        assert tcb.readable < buf + (1 << tcb.rcv_shift)
        for out in res.segments:
            edge = max(edge, out.ack + (out.window << tcb.rcv_shift))
    assert tcb.rcv_wnd == 0
    # full but for what receiver SWS avoidance (MUST-39) leaves, to within the window's scale unit
    unit = 1 << tcb.rcv_shift
    assert -unit < buf - tcb.readable < tcb.config.mss_to_advertise + unit
