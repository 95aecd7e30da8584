"""Against a hostile peer: the RFC 5961 challenge ACK rate limit (section 7), and urgent data sent and
received (MUST-30 to MUST-33), checked segment by segment."""

from __future__ import annotations

import pytest

from stack.tcp import EventKind, State, TcbConfig
from tests.core.net import connected
from tests.core.test_segments import ACK, IRS, ISS, NOW, RST, SYN, URG, arrive, established, out, seg


@pytest.mark.parametrize(
    "forged",
    [
        seg(IRS + 100, ISS + 1, RST),  # RST in the window, not at RCV.NXT (RFC 5961 section 3)
        seg(IRS + 1, ISS + 1, SYN),  # SYN in a synchronized state (section 4)
        seg(IRS + 1, ISS - 200_000, ACK),  # ACK below SND.UNA - MAX.SND.WND (section 5)
    ],
    ids=["rst", "syn", "old-ack"],
)
def test_challenge_acks_are_limited_per_second(forged):
    """RFC 5961 section 7: at most challenge_ack_limit challenge ACKs a second; the rest are counted."""
    tcb = established(TcbConfig(challenge_ack_limit=3))
    answered = [arrive(tcb, forged, NOW + k * 0.01).segments for k in range(5)]
    assert answered == [[out(ISS + 1, IRS + 1, ACK)]] * 3 + [[], []]
    assert arrive(tcb, forged, NOW + 1.0).segments == [out(ISS + 1, IRS + 1, ACK)]  # a new second
    st = tcb.status(NOW + 1.0)
    assert (st.challenge_acks, st.challenge_acks_suppressed) == (4, 2)
    assert tcb.state is State.ESTABLISHED


def test_each_connection_has_its_own_challenge_ack_budget():
    """A budget shared by every connection leaks which guess hit (CVE-2016-5696): each has its own."""
    a, b = established(TcbConfig(challenge_ack_limit=2)), established(TcbConfig(challenge_ack_limit=2))
    for _ in range(5):
        arrive(a, seg(IRS + 100, ISS + 1, RST))
    assert arrive(b, seg(IRS + 100, ISS + 1, RST)).segments == [out(ISS + 1, IRS + 1, ACK)]


def test_urgent_pointer_beyond_16_bits_is_0xffff_then_exact():
    """MUST-31: urgent data of any length. While SND.UP is more than 65535 ahead the pointer says 65535,
    as Linux does; then the exact offset."""
    tcb = established(TcbConfig(rcv_buf=1 << 20, snd_buf=1 << 20))
    tcb.cc.cwnd = 1 << 20
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=65535))  # the peer's window opens to 64 KiB
    res = tcb.send(bytes(100_000), NOW, urgent=True)
    assert res.segments and all(s.flags & URG for s in res.segments)
    assert res.segments[0].urgent == 0xFFFF
    assert tcb.snd_up == ISS + 1 + 100_000
    for s in res.segments:
        assert s.urgent == min(0xFFFF, ISS + 1 + 100_000 - s.seq)


def test_urgent_data_end_to_end_is_told_and_counted_until_read():
    """MUST-30, MUST-32, MUST-33: the receiver is told urgent data is pending, STATUS says how much is
    unread, and it reads in line; segments after the urgent data carry no URG."""
    net = connected()
    a, b = net.a, net.b
    b.auto_read = False
    net.take("a", a.tcb.send(b"normal ", net.now))
    net.take("a", a.tcb.send(b"URGENT", net.now, push=True, urgent=True))
    net.run_until(lambda: b.tcb.readable == 13)
    assert EventKind.URGENT in b.kinds()
    assert b.tcb.status(net.now).urgent_pending == 13  # up to the end of the urgent data, from the read point
    assert b.tcb.receive(100, net.now).data == b"normal URGENT"
    assert b.tcb.status(net.now).urgent_pending == 0
    net.take("a", a.tcb.send(b"after", net.now))
    net.run_until(lambda: b.tcb.readable == 5)
    last = [s for t, side, s in net.log if side == "a" and s.payload == b"after"]
    assert last and not last[0].flags & URG


def test_a_rst_carrying_data_resets_all_the_same():
    """SHLD-2: a RST may carry data (a diagnostic); it is processed as any RST, its data ignored."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, RST, payload=b"bye: shutting down"))
    assert tcb.state is State.CLOSED
    assert [e.kind for e in res.events][:1] == [EventKind.RESET]
    assert res.segments == []
