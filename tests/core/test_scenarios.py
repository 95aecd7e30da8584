"""Two TCBs on the in-memory wire, walked through the scenarios of RFC 9293 section 3.5 and 3.6.

Every state of the connection state diagram (section 3.3.2, figure 5) and every transition in it is
taken by at least one test here, each on the fake clock and checked by what a user sees: the bytes
delivered, the states, the events, and the segments on the wire where the RFC's figures show them.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable

import pytest

from stack.tcp import EventKind, State, Tcb, TcbConfig, TcpError, reset_for
from stack.tcp.isn import FixedIsn
from stack.tcp.seq import seq_add, seq_diff
from stack.wire.tcp import Flags, TcpSegment
from tests.core.net import (
    A_ADDR,
    B_ADDR,
    Net,
    connected,
    ctl,
    deliver,
    drop_nth,
    pair,
    record_states,
    trace,
)

S = State
A_PORT = 40000
B_PORT = 80
MSL = TcbConfig().msl


# ---------------------------------------------------------------------------------------------- helpers


def figure(net: Net, *, start: int = 0, count: int | None = None) -> list[tuple[str, int, int, str]]:
    """The log as the RFC's figures show it: (sender, SEQ, ACK, CTL), ACK shown only when ACK is set."""
    rows = net.log[start:] if count is None else net.log[start : start + count]
    return [(s, seg.seq, seg.ack if seg.flags & Flags.ACK else 0, ctl(seg)) for _, s, seg in rows]


def sent_by(net: Net, name: str, pred: Callable[[TcpSegment], bool] = lambda seg: True) -> list[float]:
    """Times at which `name` put a segment matching pred on the wire."""
    return [t for t, s, seg in net.log if s == name and pred(seg)]


def is_syn(seg: TcpSegment) -> bool:
    return bool(seg.flags & Flags.SYN) and not seg.flags & Flags.ACK


def is_syn_ack(seg: TcpSegment) -> bool:
    return bool(seg.flags & Flags.SYN) and bool(seg.flags & Flags.ACK)


def is_fin(seg: TcpSegment) -> bool:
    return bool(seg.flags & Flags.FIN)


def is_rst(seg: TcpSegment) -> bool:
    return bool(seg.flags & Flags.RST)


def is_bare_ack(seg: TcpSegment) -> bool:
    return seg.flags & (Flags.SYN | Flags.FIN | Flags.RST) == 0 and not seg.payload


def no_reset(net: Net) -> None:
    for side in (net.a, net.b):
        bad = {EventKind.RESET, EventKind.REFUSED, EventKind.TIMED_OUT} & set(side.kinds())
        assert not bad, f"{side.name} saw {bad}\n{trace(net)}"


def closed_cleanly(net: Net) -> bool:
    return net.a.tcb.state in (S.TIME_WAIT, S.CLOSED) and net.b.tcb.state is S.CLOSED


def converse(net: Net, a_data: bytes = b"", b_data: bytes = b"", *, limit: float = 1000.0) -> None:
    """Open a (unless already open), send both ways, close a then b, and wait for the end.

    Asserts that each side received exactly what the other sent and that nothing was reset.
    """
    a, b = net.a.tcb, net.b.tcb
    if a.state is S.CLOSED and not a.deleted:
        net.take("a", a.open(net.now))
    net.run_until(lambda: net.states() == (S.ESTABLISHED, S.ESTABLISHED), limit)
    if a_data:
        assert net.take("a", a.send(a_data, net.now)).ok
    if b_data:
        assert net.take("b", b.send(b_data, net.now)).ok
    assert net.take("a", a.close(net.now)).ok
    net.run_until(
        lambda: b.state is S.CLOSE_WAIT and len(net.a.received) == len(b_data) and not b.readable, limit
    )
    assert net.take("b", b.close(net.now)).ok
    net.run_until(lambda: closed_cleanly(net), limit)
    assert bytes(net.b.received) == a_data
    assert bytes(net.a.received) == b_data
    assert EventKind.PEER_CLOSED in net.a.kinds()
    assert EventKind.PEER_CLOSED in net.b.kinds()
    no_reset(net)


def fresh(name: str, isn: int, *, passive: bool = False) -> Tcb:
    """A new TCB for side `name` (a "rebooted" host): active ones know their peer."""
    if name == "a":
        if passive:
            return Tcb(A_ADDR, A_PORT, isn=FixedIsn(isn))
        return Tcb(A_ADDR, A_PORT, B_ADDR, B_PORT, isn=FixedIsn(isn))
    if passive:
        return Tcb(B_ADDR, B_PORT, isn=FixedIsn(isn))
    return Tcb(B_ADDR, B_PORT, A_ADDR, A_PORT, isn=FixedIsn(isn))


# ------------------------------------------------------------------------------ opening (3.5, figs 6-8)


def test_three_way_handshake_figure_6() -> None:
    net = pair(a_isn=100, b_isn=300)
    paths = record_states(net)
    assert net.states() == (S.CLOSED, S.LISTEN)
    net.take("a", net.a.tcb.open(net.now))
    assert net.a.tcb.state is S.SYN_SENT
    net.run_until(lambda: net.states() == (S.ESTABLISHED, S.ESTABLISHED))
    net.take("a", net.a.tcb.send(b"data", net.now))
    net.run_until(lambda: bytes(net.b.received) == b"data")

    assert figure(net, count=4) == [
        ("a", 100, 0, "SYN"),  # line 2
        ("b", 300, 101, "SYN,ACK"),  # line 3
        ("a", 101, 301, "ACK"),  # line 4
        ("a", 101, 301, "ACK"),  # line 5, with the data
    ]
    assert net.log[3][2].payload == b"data"
    assert net.log[0][2].options.mss == 1460  # MUST-14: the SYN carries the MSS option
    assert paths == {
        "a": [S.CLOSED, S.SYN_SENT, S.ESTABLISHED],
        "b": [S.LISTEN, S.SYN_RECEIVED, S.ESTABLISHED],
    }
    assert net.a.kinds().count(EventKind.ESTABLISHED) == 1
    assert net.b.kinds().count(EventKind.ESTABLISHED) == 1
    assert net.b.kinds()[-1] is EventKind.DATA


def test_passive_open_from_closed_enters_listen_and_answers_nothing_else() -> None:
    b = fresh("b", 300, passive=True)
    assert b.state is S.CLOSED
    res = b.open(0.0, active=False)
    assert res.ok and not res.segments
    assert b.state is S.LISTEN
    # 3.10.7.2: a RST is ignored, an ACK is answered <SEQ=SEG.ACK><CTL=RST>, other segments are dropped.
    assert not b.segment_arrives(TcpSegment(A_PORT, B_PORT, seq=7, flags=Flags.RST), 0.0, A_ADDR).segments
    res = b.segment_arrives(TcpSegment(A_PORT, B_PORT, seq=7, ack=99, flags=Flags.ACK), 0.0, A_ADDR)
    assert [(s.seq, ctl(s)) for s in res.segments] == [(99, "RST")]
    assert not b.segment_arrives(TcpSegment(A_PORT, B_PORT, seq=7, payload=b"x"), 0.0, A_ADDR).segments
    assert b.state is S.LISTEN


def test_simultaneous_open_figure_7() -> None:
    # MUST-10: two active OPENs at the same time.
    a = fresh("a", 100)
    b = fresh("b", 300)
    net = Net(a, b)
    paths = record_states(net)
    net.take("a", a.open(net.now))
    net.take("b", b.open(net.now))
    assert net.states() == (S.SYN_SENT, S.SYN_SENT)
    net.run_until(lambda: net.states() == (S.SYN_RECEIVED, S.SYN_RECEIVED), limit=1.0)
    assert a.from_listen is False and b.from_listen is False  # MUST-11
    net.run_until(lambda: net.states() == (S.ESTABLISHED, S.ESTABLISHED), limit=10.0)
    assert paths == {
        "a": [S.CLOSED, S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED],
        "b": [S.CLOSED, S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED],
    }
    assert figure(net, count=4) == [
        ("a", 100, 0, "SYN"),
        ("b", 300, 0, "SYN"),
        ("b", 300, 101, "SYN,ACK"),
        ("a", 100, 301, "SYN,ACK"),
    ]
    converse(net, b"from a" * 1000, b"from b" * 1000, limit=100.0)


def test_simultaneous_open_reaches_syn_received_from_syn_sent() -> None:
    # The first half of figure 7 (lines 1-5): both cross SYN-SENT -> SYN-RECEIVED, remembering
    # that they came from an active OPEN (MUST-11).
    a = fresh("a", 100)
    b = fresh("b", 300)
    net = Net(a, b)
    net.take("a", a.open(net.now))
    net.take("b", b.open(net.now))
    net.run_until(lambda: net.states() == (S.SYN_RECEIVED, S.SYN_RECEIVED), limit=1.0)
    assert (a.from_listen, b.from_listen) == (False, False)
    assert figure(net, count=4) == [
        ("a", 100, 0, "SYN"),
        ("b", 300, 0, "SYN"),
        ("b", 300, 101, "SYN,ACK"),
        ("a", 100, 301, "SYN,ACK"),
    ]


def test_send_in_listen_turns_the_connection_active() -> None:
    # LISTEN -> SYN-SENT on SEND (3.10.2) when the passive OPEN named the remote socket.
    a = fresh("a", 100, passive=True)
    b = Tcb(B_ADDR, B_PORT, A_ADDR, A_PORT, isn=FixedIsn(300))
    net = Net(a, b)
    paths = record_states(net)
    net.take("a", a.open(net.now, active=False))
    net.take("b", b.open(net.now, active=False))
    assert net.states() == (S.LISTEN, S.LISTEN)
    assert net.take("b", b.send(b"hello", net.now)).ok
    assert b.state is S.SYN_SENT
    net.run_until(lambda: bytes(net.a.received) == b"hello")
    assert paths == {
        "a": [S.CLOSED, S.LISTEN, S.SYN_RECEIVED, S.ESTABLISHED],
        "b": [S.CLOSED, S.LISTEN, S.SYN_SENT, S.ESTABLISHED],
    }
    assert figure(net, count=3) == [("b", 300, 0, "SYN"), ("a", 100, 301, "SYN,ACK"), ("b", 301, 101, "ACK")]


def test_active_open_on_a_listening_tcb() -> None:
    net = pair(a_isn=100, b_isn=300)
    a = net.a.tcb
    net.take("a", a.open(net.now, active=False))
    assert a.state is S.LISTEN
    net.take("a", a.open(net.now))  # the passive OPEN named the remote socket: now active
    assert a.state is S.SYN_SENT
    net.run_until(lambda: net.states() == (S.ESTABLISHED, S.ESTABLISHED))
    converse(net, b"x" * 3000, b"y" * 3000)


def test_close_in_listen_deletes_the_tcb_and_later_syns_are_refused() -> None:
    net = pair(a_isn=100, b_isn=300)
    paths = record_states(net)
    res = net.take("b", net.b.tcb.close(net.now))
    assert res.ok and not res.segments
    assert net.b.tcb.state is S.CLOSED and net.b.tcb.deleted
    assert EventKind.CLOSED in net.b.kinds()
    # Connection refused: the SYN reaches no connection and is answered <SEQ=0><ACK=101><CTL=RST,ACK>.
    net.take("a", net.a.tcb.open(net.now))
    net.run_until(lambda: net.a.tcb.state is S.CLOSED)
    assert figure(net) == [("a", 100, 0, "SYN"), ("b", 0, 101, "RST,ACK")]
    assert EventKind.REFUSED in net.a.kinds()
    assert net.a.tcb.send(b"x", net.now).error is TcpError.REFUSED
    assert paths == {"a": [S.CLOSED, S.SYN_SENT, S.CLOSED], "b": [S.LISTEN, S.CLOSED]}


def test_connection_refused_by_a_tcb_that_never_opened() -> None:
    # A port with no TCB at all: the host answers with stack.tcp.reset_for (3.10.7.1).
    a = fresh("a", 100)
    b = fresh("b", 300, passive=True)  # never opened: every segment reaches "no connection"
    net = Net(a, b)
    net.take("a", a.open(net.now))
    net.run_until(lambda: a.state is S.CLOSED)
    syn = net.log[0][2]
    assert net.log[1][2] == reset_for(syn)
    assert figure(net) == [("a", 100, 0, "SYN"), ("b", 0, 101, "RST,ACK")]
    assert EventKind.REFUSED in net.a.kinds()
    assert EventKind.CLOSED in net.a.kinds()
    assert a.receive(100, net.now).error is TcpError.REFUSED


def test_reset_for_never_answers_a_reset() -> None:
    assert reset_for(TcpSegment(1, 2, seq=5, flags=Flags.RST)) is None
    assert reset_for(TcpSegment(1, 2, seq=5, ack=9, flags=Flags.RST | Flags.ACK)) is None
    rst = reset_for(TcpSegment(1, 2, seq=5, ack=9, flags=Flags.ACK, payload=b"abc"))
    assert rst is not None and (rst.src_port, rst.dst_port, rst.seq, ctl(rst)) == (2, 1, 9, "RST")
    rst = reset_for(TcpSegment(1, 2, seq=0xFFFFFFFF, flags=Flags.SYN | Flags.FIN, payload=b"ab"))
    assert rst is not None and (rst.seq, rst.ack, ctl(rst)) == (0, 3, "RST,ACK")


def test_recovery_from_old_duplicate_syn_figure_8() -> None:
    net = pair(a_isn=100, b_isn=300)
    paths = record_states(net)
    held = net.a.tcb.open(net.now)  # line 2: a's SYN is still in the network ("...")
    assert net.a.tcb.state is S.SYN_SENT
    # Line 3: an old duplicate SYN reaches b.
    deliver(net, "b", TcpSegment(A_PORT, B_PORT, seq=90, flags=Flags.SYN, window=8192))
    assert net.b.tcb.state is S.SYN_RECEIVED
    # Lines 4-5: b's SYN,ACK acknowledges 91; a answers <SEQ=91><CTL=RST>; b returns to LISTEN.
    net.run_until(lambda: net.b.tcb.state is S.LISTEN)
    assert net.a.tcb.state is S.SYN_SENT
    assert figure(net) == [("b", 300, 91, "SYN,ACK"), ("a", 91, 0, "RST")]
    # Line 6: the real SYN arrives and the handshake proceeds normally (lines 7-8).
    net.take("a", held)
    net.run_until(lambda: net.states() == (S.ESTABLISHED, S.ESTABLISHED))
    assert figure(net, start=2) == [("a", 100, 0, "SYN"), ("b", 300, 101, "SYN,ACK"), ("a", 101, 301, "ACK")]
    assert paths == {
        "a": [S.CLOSED, S.SYN_SENT, S.ESTABLISHED],
        "b": [S.LISTEN, S.SYN_RECEIVED, S.LISTEN, S.SYN_RECEIVED, S.ESTABLISHED],
    }
    assert not {EventKind.RESET, EventKind.REFUSED} & set(net.a.kinds() + net.b.kinds())
    converse(net, b"after the duplicate", b"fine")


def test_old_duplicate_syn_resets_two_passive_sockets_figure_11() -> None:
    a = fresh("a", 100, passive=True)
    b = fresh("b", 300, passive=True)
    net = Net(a, b)
    net.take("a", a.open(net.now, active=False))
    net.take("b", b.open(net.now, active=False))
    paths = record_states(net)
    z = 0xFFFFFFF0
    deliver(net, "b", TcpSegment(A_PORT, B_PORT, seq=z, flags=Flags.SYN, window=8192))  # line 2
    net.run()  # until nothing is left to do
    assert figure(net) == [("b", 300, z + 1, "SYN,ACK"), ("a", z + 1, 0, "RST")]  # lines 3-4
    assert net.states() == (S.LISTEN, S.LISTEN)  # line 5
    assert paths == {"a": [S.LISTEN], "b": [S.LISTEN, S.SYN_RECEIVED, S.LISTEN]}
    assert not net.a.events and not net.b.events  # the users need not be told


def test_close_in_syn_sent_deletes_the_tcb_and_the_listener_recovers() -> None:
    net = pair(a_isn=100, b_isn=300)
    paths = record_states(net)
    net.take("a", net.a.tcb.open(net.now))
    res = net.take("a", net.a.tcb.close(net.now))
    assert res.ok and not res.segments  # 3.10.4 SYN-SENT: delete the TCB, nothing is sent
    assert net.a.tcb.state is S.CLOSED
    net.run()
    # The SYN still reached b; its SYN,ACK reached a deleted TCB, whose RST sent b back to LISTEN.
    assert figure(net) == [("a", 100, 0, "SYN"), ("b", 300, 101, "SYN,ACK"), ("a", 101, 0, "RST")]
    assert paths == {"a": [S.CLOSED, S.SYN_SENT, S.CLOSED], "b": [S.LISTEN, S.SYN_RECEIVED, S.LISTEN]}
    assert EventKind.CLOSED in net.a.kinds() and EventKind.REFUSED not in net.a.kinds()
    # The listener still serves a new connection from the same port.
    net.a.tcb = fresh("a", 7000)
    converse(net, b"second try", b"welcome")


def test_close_in_syn_received_sends_fin_and_the_connection_closes() -> None:
    # SYN-RECEIVED -> FIN-WAIT-1 on CLOSE (3.10.4) with no data queued.
    net = pair(a_isn=100, b_isn=300)
    paths = record_states(net)
    lost = drop_nth(net, lambda seg, s: s == "a" and is_bare_ack(seg))  # the handshake's last ACK
    net.take("a", net.a.tcb.open(net.now))
    net.run_until(lambda: bool(lost))
    assert net.states() == (S.ESTABLISHED, S.SYN_RECEIVED)
    assert net.take("b", net.b.tcb.close(net.now)).ok
    assert net.b.tcb.state is S.FIN_WAIT_1
    net.run_until(lambda: net.states() == (S.CLOSE_WAIT, S.FIN_WAIT_2))
    assert net.take("a", net.a.tcb.send(b"late data", net.now)).ok
    net.take("a", net.a.tcb.close(net.now))
    net.run_until(lambda: net.states() == (S.CLOSED, S.TIME_WAIT))
    assert bytes(net.b.received) == b"late data"
    assert paths == {
        "a": [S.CLOSED, S.SYN_SENT, S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED],
        "b": [S.LISTEN, S.SYN_RECEIVED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT],
    }
    no_reset(net)


# ------------------------------------------------------------------- half-open connections (3.5.1)


def test_half_open_discovery_after_a_reboot_figure_9() -> None:
    net = connected(a_isn=99, b_isn=299)  # b: send 300, receive 100
    assert (net.b.tcb.snd_nxt, net.b.tcb.rcv_nxt) == (300, 100)
    # Line 1: a reboots and forgets the connection; its user opens again.
    net.a.tcb = fresh("a", 400)
    mark = len(net.log)
    net.take("a", net.a.tcb.open(net.now))  # line 3
    net.run_until(lambda: net.b.tcb.state is S.CLOSED)  # line 5-6: b aborts
    assert figure(net, start=mark, count=3) == [
        ("a", 400, 0, "SYN"),
        ("b", 300, 100, "ACK"),  # line 4: what b expects next
        ("a", 100, 0, "RST"),  # line 5: a is unsynchronized and resets
    ]
    assert EventKind.RESET in net.b.kinds()
    assert net.a.tcb.state is S.SYN_SENT  # line 6
    # Line 7: b's host listens again; a's retransmitted SYN makes a plain three-way handshake.
    net.b.tcb = fresh("b", 1300, passive=True)
    net.b.events.clear()
    net.take("b", net.b.tcb.open(net.now, active=False))
    net.a.received.clear()
    net.b.received.clear()
    converse(net, b"reopened", b"after reboot")
    assert figure(net, start=mark + 3, count=2) == [("a", 400, 0, "SYN"), ("b", 1300, 401, "SYN,ACK")]


def test_half_open_discovery_by_data_figure_10() -> None:
    net = connected(a_isn=99, b_isn=299)
    net.a.tcb = fresh("a", 12345, passive=True)  # a rebooted: the connection does not exist
    mark = len(net.log)
    net.take("b", net.b.tcb.send(b"0123456789", net.now))  # line 2
    net.run_until(lambda: net.b.tcb.state is S.CLOSED)
    assert figure(net, start=mark) == [("b", 300, 100, "ACK"), ("a", 100, 0, "RST")]
    assert EventKind.RESET in net.b.kinds()
    assert net.b.tcb.send(b"more", net.now).error is TcpError.RESET
    assert net.b.tcb.receive(10, net.now).error is TcpError.RESET


@pytest.mark.parametrize("forgetter", ["a", "b"])
def test_half_open_after_an_abort_whose_rst_was_lost(forgetter: str) -> None:
    net = connected()
    other = "b" if forgetter == "a" else "a"
    lost = drop_nth(net, lambda seg, s: s == forgetter and is_rst(seg))
    net.take(forgetter, net.side(forgetter).tcb.abort(net.now))
    assert lost and net.side(forgetter).tcb.state is S.CLOSED
    net.run()
    assert net.side(other).tcb.state is S.ESTABLISHED  # it has not heard
    net.take(other, net.side(other).tcb.send(b"anyone there?", net.now))
    net.run_until(lambda: net.side(other).tcb.state is S.CLOSED)
    assert EventKind.RESET in net.side(other).kinds()
    assert EventKind.RESET not in net.side(forgetter).kinds()
    assert bytes(net.side(forgetter).received) == b""


# ------------------------------------------------------------------------------------ closing (3.6)


def test_active_close_figure_12_and_time_wait_lasts_2_msl() -> None:
    net = connected(a_isn=99, b_isn=299)
    paths = record_states(net)
    mark = len(net.log)
    net.take("a", net.a.tcb.close(net.now))  # line 2
    assert net.a.tcb.state is S.FIN_WAIT_1
    assert net.a.tcb.send(b"x", net.now).error is TcpError.CLOSING
    net.run_until(lambda: net.states() == (S.FIN_WAIT_2, S.CLOSE_WAIT))  # line 3
    assert net.b.kinds()[-1] is EventKind.PEER_CLOSED
    assert net.b.tcb.receive(10, net.now).error is TcpError.CLOSING  # no more data will come
    net.take("b", net.b.tcb.close(net.now))  # line 4
    assert net.b.tcb.state is S.LAST_ACK
    net.run_until(lambda: net.a.tcb.state is S.TIME_WAIT)
    t_tw = net.now
    net.run_until(lambda: net.b.tcb.state is S.CLOSED)  # line 5
    assert figure(net, start=mark) == [
        ("a", 100, 300, "FIN,ACK"),
        ("b", 300, 101, "ACK"),
        ("b", 300, 101, "FIN,ACK"),
        ("a", 101, 301, "ACK"),
    ]
    # Line 6: TIME-WAIT lasts 2*MSL (MUST-13), then the TCB is deleted.
    net.run(until=t_tw + 2 * MSL - 0.001)
    assert net.a.tcb.state is S.TIME_WAIT
    net.run_until(lambda: net.a.tcb.state is S.CLOSED)
    assert net.now == pytest.approx(t_tw + 2 * MSL)
    assert net.a.kinds()[-2:] == [EventKind.TIME_WAIT_OVER, EventKind.CLOSED]
    assert paths == {
        "a": [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT, S.CLOSED],
        "b": [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED],
    }
    assert len(net.log) == mark + 4  # nothing more went on the wire
    no_reset(net)


def test_passive_close_close_wait_then_last_ack() -> None:
    # The passive opener closes first: the active opener does the passive close.
    net = connected()
    paths = record_states(net)
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: net.states() == (S.CLOSE_WAIT, S.FIN_WAIT_2))
    assert EventKind.PEER_CLOSED in net.a.kinds()
    # CLOSE-WAIT may still send (half-close from the other end).
    net.take("a", net.a.tcb.send(b"parting words", net.now))
    net.run_until(lambda: bytes(net.b.received) == b"parting words")
    net.take("a", net.a.tcb.close(net.now))
    assert net.a.tcb.state is S.LAST_ACK
    net.run_until(lambda: net.states() == (S.CLOSED, S.TIME_WAIT))
    net.run_until(lambda: net.b.tcb.state is S.CLOSED)
    assert paths == {
        "a": [S.ESTABLISHED, S.CLOSE_WAIT, S.LAST_ACK, S.CLOSED],
        "b": [S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.TIME_WAIT, S.CLOSED],
    }
    no_reset(net)


def test_simultaneous_close_goes_through_closing_figure_13() -> None:
    net = connected(a_isn=99, b_isn=299)
    paths = record_states(net)
    mark = len(net.log)
    net.take("a", net.a.tcb.close(net.now))
    net.take("b", net.b.tcb.close(net.now))
    assert net.states() == (S.FIN_WAIT_1, S.FIN_WAIT_1)
    net.run_until(lambda: net.states() == (S.CLOSING, S.CLOSING))
    net.run_until(lambda: net.states() == (S.TIME_WAIT, S.TIME_WAIT))
    t_tw = net.now
    assert sorted(figure(net, start=mark)) == sorted(
        [
            ("a", 100, 300, "FIN,ACK"),
            ("b", 300, 100, "FIN,ACK"),
            ("a", 101, 301, "ACK"),
            ("b", 301, 101, "ACK"),
        ]
    )
    net.run_until(lambda: net.states() == (S.CLOSED, S.CLOSED))
    assert net.now == pytest.approx(t_tw + 2 * MSL)
    for name in "ab":
        assert paths[name] == [S.ESTABLISHED, S.FIN_WAIT_1, S.CLOSING, S.TIME_WAIT, S.CLOSED]
    no_reset(net)


def test_fin_wait_1_to_time_wait_when_the_fin_acknowledges_ours() -> None:
    # Note 2 of figure 5: FIN-WAIT-1 -> TIME-WAIT when the peer's FIN also acknowledges our FIN.
    net = connected()
    paths = record_states(net)
    a_fin = seq_add(net.a.tcb.snd_nxt, 1)
    lost = drop_nth(net, lambda seg, s: s == "b" and is_bare_ack(seg) and seg.ack == a_fin)
    net.take("a", net.a.tcb.close(net.now))
    net.run_until(lambda: net.b.tcb.state is S.CLOSE_WAIT)
    assert lost
    net.take("b", net.b.tcb.close(net.now))  # <FIN,ACK> acknowledging a's FIN
    net.run_until(lambda: net.states() == (S.TIME_WAIT, S.CLOSED))
    assert paths["a"] == [S.ESTABLISHED, S.FIN_WAIT_1, S.TIME_WAIT]
    assert len(sent_by(net, "a", is_fin)) == 1  # it was not retransmitted
    net.run_until(lambda: net.a.tcb.state is S.CLOSED)
    no_reset(net)


def test_half_close_peer_keeps_sending_into_fin_wait_2() -> None:
    net = connected()
    data = random.Random(7).randbytes(100_000)
    net.take("a", net.a.tcb.close(net.now))
    net.run_until(lambda: net.states() == (S.FIN_WAIT_2, S.CLOSE_WAIT))
    # b keeps sending on its half; a keeps receiving in FIN-WAIT-2.
    chunks = [data[i : i + 7000] for i in range(0, len(data), 7000)]
    for chunk in chunks:
        assert net.take("b", net.b.tcb.send(chunk, net.now)).ok
        net.run(until=net.now + 0.005)
        assert net.a.tcb.state is S.FIN_WAIT_2
    net.run_until(lambda: len(net.a.received) == len(data))
    assert net.a.tcb.state is S.FIN_WAIT_2
    assert bytes(net.a.received) == data
    assert sum(e.count for e in net.a.events if e.kind is EventKind.DATA) == len(data)
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: closed_cleanly(net))
    assert bytes(net.a.received) == data
    no_reset(net)


def test_retransmitted_fin_in_time_wait_is_acknowledged_and_restarts_2_msl() -> None:
    # The lost last ACK: b in LAST-ACK retransmits its FIN; a in TIME-WAIT answers it again.
    net = connected()
    b_fin = seq_add(net.b.tcb.snd_nxt, 1)
    lost = drop_nth(net, lambda seg, s: s == "a" and is_bare_ack(seg) and seg.ack == b_fin)
    assert net.take("a", net.a.tcb.close(net.now)).ok
    net.run_until(lambda: net.b.tcb.state is S.CLOSE_WAIT)
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: net.a.tcb.state is S.TIME_WAIT)
    t_first = net.now
    net.run_until(lambda: net.b.tcb.state is S.CLOSED)
    assert lost
    assert len(sent_by(net, "b", is_fin)) == 2
    t_second = sent_by(net, "b", is_fin)[1] + net.latency
    assert net.a.tcb.state is S.TIME_WAIT
    net.run(until=t_first + 2 * MSL + 0.5)
    assert net.a.tcb.state is S.TIME_WAIT  # the 2*MSL wait started again at the second FIN
    net.run_until(lambda: net.a.tcb.state is S.CLOSED)
    assert net.now == pytest.approx(t_second + 2 * MSL)
    no_reset(net)


# -------------------------------------------------------------------------- RST in each state


def _to_listen() -> tuple[Net, str]:
    return pair(), "b"


def _to_syn_sent() -> tuple[Net, str]:
    net = pair()
    net.drop_rules.append(lambda seg, s: s == "a")  # the SYN never arrives
    net.take("a", net.a.tcb.open(net.now))
    return net, "a"


def _to_syn_received_passive() -> tuple[Net, str]:
    net = pair()
    net.drop_rules.append(lambda seg, s: s == "b")
    net.take("a", net.a.tcb.open(net.now))
    net.run_until(lambda: net.b.tcb.state is S.SYN_RECEIVED)
    return net, "b"


def _to_syn_received_active() -> tuple[Net, str]:
    net = Net(fresh("a", 100), fresh("b", 300))
    net.take("a", net.a.tcb.open(net.now))
    net.take("b", net.b.tcb.open(net.now))
    net.run_until(lambda: net.states() == (S.SYN_RECEIVED, S.SYN_RECEIVED))
    return net, "a"


def _to_syn_received_with_peer_established() -> tuple[Net, str]:
    net = pair()
    net.drop_rules.append(lambda seg, s: s == "a" and is_bare_ack(seg))  # the handshake's last ACK
    net.take("a", net.a.tcb.open(net.now))
    net.run_until(lambda: net.states() == (S.ESTABLISHED, S.SYN_RECEIVED))
    return net, "b"


def _to_established() -> tuple[Net, str]:
    return connected(), "a"


def _to_fin_wait_1() -> tuple[Net, str]:
    net = connected()
    net.drop_rules.append(lambda seg, s: s == "a" and is_fin(seg))
    net.take("a", net.a.tcb.close(net.now))
    return net, "a"


def _to_fin_wait_2() -> tuple[Net, str]:
    net = connected()
    net.take("a", net.a.tcb.close(net.now))
    net.run_until(lambda: net.states() == (S.FIN_WAIT_2, S.CLOSE_WAIT))
    return net, "a"


def _to_close_wait() -> tuple[Net, str]:
    net, _ = _to_fin_wait_2()
    return net, "b"


def _to_closing() -> tuple[Net, str]:
    net = connected()
    net.drop_rules.append(lambda seg, s: is_bare_ack(seg))
    net.take("a", net.a.tcb.close(net.now))
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: net.states() == (S.CLOSING, S.CLOSING))
    return net, "a"


def _to_last_ack() -> tuple[Net, str]:
    net, _ = _to_fin_wait_2()
    net.drop_rules.append(lambda seg, s: s == "a")
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: net.a.tcb.state is S.TIME_WAIT)
    assert net.b.tcb.state is S.LAST_ACK
    return net, "b"


def _to_time_wait() -> tuple[Net, str]:
    net, _ = _to_fin_wait_2()
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: net.states() == (S.TIME_WAIT, S.CLOSED))
    return net, "a"


def _rst_for(net: Net, victim: str) -> TcpSegment:
    tcb = net.side(victim).tcb
    sport, dport = (B_PORT, A_PORT) if victim == "a" else (A_PORT, B_PORT)
    if tcb.state is S.SYN_SENT:
        # SYN-SENT takes a RST only with an acceptable ACK (3.10.7.3).
        return TcpSegment(sport, dport, seq=0, ack=tcb.snd_nxt, flags=Flags.RST | Flags.ACK)
    return TcpSegment(sport, dport, seq=tcb.rcv_nxt, flags=Flags.RST)


ERROR_FOR = {EventKind.RESET: TcpError.RESET, EventKind.REFUSED: TcpError.REFUSED}

RST_CASES = [
    # (builder, state reached, state after the RST, event the user sees)
    (_to_listen, S.LISTEN, S.LISTEN, None),
    (_to_syn_sent, S.SYN_SENT, S.CLOSED, EventKind.REFUSED),
    (_to_syn_received_passive, S.SYN_RECEIVED, S.LISTEN, None),
    (_to_syn_received_active, S.SYN_RECEIVED, S.CLOSED, EventKind.REFUSED),
    (_to_established, S.ESTABLISHED, S.CLOSED, EventKind.RESET),
    (_to_fin_wait_1, S.FIN_WAIT_1, S.CLOSED, EventKind.RESET),
    (_to_fin_wait_2, S.FIN_WAIT_2, S.CLOSED, EventKind.RESET),
    (_to_close_wait, S.CLOSE_WAIT, S.CLOSED, EventKind.RESET),
    (_to_closing, S.CLOSING, S.CLOSED, None),
    (_to_last_ack, S.LAST_ACK, S.CLOSED, None),
    (_to_time_wait, S.TIME_WAIT, S.CLOSED, None),
]


@pytest.mark.parametrize(
    ("build", "state", "after", "event"),
    RST_CASES,
    ids=[f"{c[1].value}{'-active' if c[0] is _to_syn_received_active else ''}" for c in RST_CASES],
)
def test_rst_arriving_in_each_state(
    build: Callable[[], tuple[Net, str]], state: State, after: State, event: EventKind | None
) -> None:
    net, victim = build()
    side = net.side(victim)
    assert side.tcb.state is state
    before = len(side.events)
    res = deliver(net, victim, _rst_for(net, victim))
    assert side.tcb.state is after
    assert not any(is_rst(seg) for seg in res.segments)  # a RST is never answered with a RST
    news = [e.kind for e in side.events[before:]]
    if event is not None:
        assert event in news
        assert side.tcb.send(b"x", net.now).error is ERROR_FOR[event]
    else:
        assert EventKind.RESET not in news and EventKind.REFUSED not in news
    if after is S.CLOSED:
        assert side.tcb.deleted and EventKind.CLOSED in news
        assert side.tcb.deadline is None  # no timers are left running
    if after is S.LISTEN:
        assert not res.segments and side.tcb.deadline is None


def test_reset_in_syn_received_returns_listener_to_serve_the_retransmitted_syn() -> None:
    net, _ = _to_syn_received_passive()
    deliver(net, "b", _rst_for(net, "b"))
    assert net.b.tcb.state is S.LISTEN
    net.drop_rules.clear()
    converse(net, b"ping", b"pong")


def test_rst_with_wrong_sequence_number_gets_a_challenge_ack() -> None:
    # RFC 9293 3.10.7.4 first step (RFC 5961 section 3): an in-window RST that is not exactly RCV.NXT
    # is answered <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and dropped; an out-of-window one is dropped.
    net = connected()
    a = net.a.tcb
    res = deliver(net, "a", TcpSegment(B_PORT, A_PORT, seq=seq_add(a.rcv_nxt, 100), flags=Flags.RST))
    assert [(s.seq, s.ack, ctl(s)) for s in res.segments] == [(a.snd_nxt, a.rcv_nxt, "ACK")]
    res = deliver(net, "a", TcpSegment(B_PORT, A_PORT, seq=seq_add(a.rcv_nxt, 1 << 30), flags=Flags.RST))
    assert not res.segments
    assert a.state is S.ESTABLISHED
    converse(net, b"still", b"alive")


# ------------------------------------------------------------------------------------------- abort


ABORT_CASES = [
    # (builder, aborting side, state it aborts in, does a RST go out)
    (_to_syn_received_with_peer_established, "b", S.SYN_RECEIVED, True),
    (_to_established, "a", S.ESTABLISHED, True),
    (_to_fin_wait_2, "a", S.FIN_WAIT_2, True),
    (_to_close_wait, "b", S.CLOSE_WAIT, True),
]


@pytest.mark.parametrize("aborter", ["a", "b"])
def test_abort_in_established_resets_the_peer(aborter: str) -> None:
    net = connected()
    other = "b" if aborter == "a" else "a"
    data = bytes(range(256)) * 40
    net.take(other, net.side(other).tcb.send(data, net.now))
    net.run_until(lambda: len(net.side(aborter).received) == len(data))
    res = net.take(aborter, net.side(aborter).tcb.abort(net.now))
    assert res.ok
    tcb = net.side(aborter).tcb
    assert [(s.seq, ctl(s)) for s in res.segments] == [(tcb.snd_nxt, "RST")]
    assert tcb.state is S.CLOSED and net.side(aborter).kinds()[-1] is EventKind.CLOSED
    net.run_until(lambda: net.side(other).tcb.state is S.CLOSED)
    assert EventKind.RESET in net.side(other).kinds()
    assert EventKind.RESET not in net.side(aborter).kinds()
    assert net.side(other).tcb.send(b"x", net.now).error is TcpError.RESET
    assert tcb.send(b"x", net.now).error is TcpError.NOT_EXIST


@pytest.mark.parametrize(
    ("build", "aborter", "state"),
    [(c[0], c[1], c[2]) for c in ABORT_CASES] + [(_to_fin_wait_1, "a", S.FIN_WAIT_1)],
    ids=["SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-2", "CLOSE-WAIT", "FIN-WAIT-1"],
)
def test_abort_sends_rst_and_the_peer_is_reset(
    build: Callable[[], tuple[Net, str]], aborter: str, state: State
) -> None:
    net, _ = build()
    net.drop_rules.clear()
    other = "b" if aborter == "a" else "a"
    assert net.side(aborter).tcb.state is state
    res = net.take(aborter, net.side(aborter).tcb.abort(net.now))
    assert [ctl(s) for s in res.segments] == ["RST"]
    net.run_until(lambda: net.side(other).tcb.state is S.CLOSED)
    assert EventKind.RESET in net.side(other).kinds()


@pytest.mark.parametrize(
    ("build", "aborter", "state"),
    [
        (_to_listen, "b", S.LISTEN),
        (_to_syn_sent, "a", S.SYN_SENT),
        (_to_closing, "a", S.CLOSING),
        (_to_last_ack, "b", S.LAST_ACK),
        (_to_time_wait, "a", S.TIME_WAIT),
    ],
    ids=["LISTEN", "SYN-SENT", "CLOSING", "LAST-ACK", "TIME-WAIT"],
)
def test_abort_without_rst_in_states_that_send_none(
    build: Callable[[], tuple[Net, str]], aborter: str, state: State
) -> None:
    # 3.10.5: LISTEN and SYN-SENT, CLOSING, LAST-ACK, TIME-WAIT: delete the TCB, send nothing.
    net, _ = build()
    tcb = net.side(aborter).tcb
    assert tcb.state is state
    res = net.take(aborter, tcb.abort(net.now))
    assert res.ok and not res.segments
    assert tcb.state is S.CLOSED and tcb.deadline is None
    assert tcb.abort(net.now).error is TcpError.NOT_EXIST


def test_abort_flushes_unsent_data_and_the_peer_gets_a_prefix() -> None:
    net = connected()
    data = random.Random(3).randbytes(200_000)
    net.take("a", net.a.tcb.send(data, net.now))
    net.run(until=net.now + 0.05)
    net.take("a", net.a.tcb.abort(net.now))
    net.run_until(lambda: net.b.tcb.state is S.CLOSED)
    assert EventKind.RESET in net.b.kinds()
    got = bytes(net.b.received)
    assert 0 < len(got) < len(data) and data.startswith(got)


# ------------------------------------------------------------------- lost segments are recovered


def _after(pred: Callable[[TcpSegment], bool], sender: str) -> Callable[[TcpSegment, str], bool]:
    return lambda seg, s: s == sender and pred(seg)


A_DATA = random.Random(11).randbytes(30_000)
B_DATA = random.Random(12).randbytes(20_000)


def test_lost_syn_is_retransmitted_after_the_initial_rto() -> None:
    net = pair()
    lost = drop_nth(net, _after(is_syn, "a"))
    net.take("a", net.a.tcb.open(net.now))
    net.run_until(lambda: net.a.tcb.state is S.ESTABLISHED)
    assert lost
    assert sent_by(net, "a", is_syn) == [0.0, 1.0]  # RFC 6298 (2.1): initial RTO of 1 s
    # RFC 6298 (5.7): after a lost SYN the RTO is at least 3 s when data transmission begins.
    assert net.a.tcb.status(net.now).rto >= 3.0
    converse(net, A_DATA, B_DATA)


def test_lost_syn_ack_is_recovered() -> None:
    net = pair()
    lost = drop_nth(net, _after(is_syn_ack, "b"))
    converse(net, A_DATA, B_DATA)
    assert lost
    assert len(sent_by(net, "b", is_syn_ack)) >= 2


@pytest.mark.parametrize("a_sends_data", [True, False])
def test_lost_final_ack_of_the_handshake_is_recovered(a_sends_data: bool) -> None:
    net = pair()
    lost = drop_nth(net, _after(is_bare_ack, "a"))
    net.take("a", net.a.tcb.open(net.now))
    net.run_until(lambda: bool(lost))
    assert net.states() == (S.ESTABLISHED, S.SYN_RECEIVED)
    if a_sends_data:
        # The data segment carries the same ACK and completes b's handshake.
        net.take("a", net.a.tcb.send(A_DATA, net.now))
        net.run_until(lambda: net.b.tcb.state is S.ESTABLISHED)
        net.run_until(lambda: len(net.b.received) == len(A_DATA))
        assert bytes(net.b.received) == A_DATA
        assert len(sent_by(net, "b", is_syn_ack)) == 1
        net.b.received.clear()
        converse(net, b"", B_DATA)
    else:
        # b retransmits its SYN,ACK; a, established, acknowledges it again.
        net.run_until(lambda: net.b.tcb.state is S.ESTABLISHED)
        assert len(sent_by(net, "b", is_syn_ack)) == 2
        converse(net, A_DATA, B_DATA)


@pytest.mark.parametrize("nth", [1, 3, 21])
def test_lost_data_segment_is_retransmitted(nth: int) -> None:
    net = connected()
    lost = drop_nth(net, lambda seg, s: s == "a" and bool(seg.payload), nth)
    converse(net, A_DATA, B_DATA)
    assert lost
    assert net.a.tcb.retransmissions >= 1


def test_lost_fin_is_retransmitted() -> None:
    net = connected()
    lost = drop_nth(net, _after(is_fin, "a"))
    converse(net, A_DATA, B_DATA)
    assert lost
    assert len(sent_by(net, "a", is_fin)) == 2


def test_lost_fin_of_the_passive_closer_is_retransmitted() -> None:
    net = connected()
    lost = drop_nth(net, _after(is_fin, "b"))
    converse(net, A_DATA, B_DATA)
    assert lost
    assert len(sent_by(net, "b", is_fin)) == 2


def test_lost_ack_of_fin_makes_the_fin_go_again() -> None:
    net = connected()
    net.take("a", net.a.tcb.send(A_DATA, net.now))
    net.run_until(lambda: len(net.b.received) == len(A_DATA))
    a_fin = net.a.tcb.snd_nxt
    lost = drop_nth(net, lambda seg, s: s == "b" and is_bare_ack(seg) and seg.ack == seq_add(a_fin, 1))
    net.take("a", net.a.tcb.close(net.now))
    net.run_until(lambda: net.states() == (S.FIN_WAIT_2, S.CLOSE_WAIT))
    assert lost
    assert [seg.seq for _, s, seg in net.log if s == "a" and is_fin(seg)] == [a_fin, a_fin]
    net.take("b", net.b.tcb.send(B_DATA, net.now))
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: closed_cleanly(net))
    assert bytes(net.b.received) == A_DATA and bytes(net.a.received) == B_DATA
    no_reset(net)


# ------------------------------------------------------------------ flow control and zero windows


def _stall_reader(net: Net, size: int) -> bytes:
    """b stops reading; a sends `size` octets and fills b's buffer until the window is zero."""
    data = random.Random(5).randbytes(size)
    net.b.auto_read = False
    assert net.take("a", net.a.tcb.send(data, net.now)).ok
    net.run_until(lambda: net.b.tcb.readable == net.b.tcb.config.rcv_buf, limit=net.now + 10)
    net.run(until=net.now + 1)
    assert net.a.tcb.snd_wnd == 0
    assert net.log[-1][1] == "b" and net.log[-1][2].window == 0
    return data


def _read_all(net: Net) -> None:
    """b's user reads everything it has, and reads as data comes from now on."""
    res = net.b.tcb.receive(1 << 20, net.now)
    net.b.received += res.data
    net.b.auto_read = True
    net.take("b", res)


def test_zero_window_reopens_when_the_reader_reads() -> None:
    net = connected()
    data = _stall_reader(net, 200_000)
    assert len(net.b.received) == 0
    _read_all(net)
    net.run_until(lambda: len(net.b.received) == len(data), limit=net.now + 60)
    assert bytes(net.b.received) == data
    net.b.received.clear()
    converse(net, b"", b"done")


def test_zero_window_is_probed_while_the_reader_stalls() -> None:
    net = connected()
    _stall_reader(net, 200_000)
    t_zero = net.now
    net.run(until=t_zero + 300)
    probes = [t for t in sent_by(net, "a") if t > t_zero]  # a has nothing else to send: all are probes
    assert len(probes) >= 3, trace(net, 5)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(probes)]
    assert all(nxt >= prev for prev, nxt in itertools.pairwise(gaps))  # SHLD-30: backing off
    # MUST-37: as long as the receiver answers the probes the connection stays open.
    assert net.states() == (S.ESTABLISHED, S.ESTABLISHED)
    assert EventKind.TIMED_OUT not in net.a.kinds()


def test_lost_window_update_is_recovered_by_probing() -> None:
    net = connected()
    data = _stall_reader(net, 200_000)
    lost = drop_nth(net, lambda seg, s: s == "b" and seg.window > 0)
    _read_all(net)
    assert lost  # the window update never reaches a
    net.run_until(lambda: len(net.b.received) == len(data), limit=net.now + 300)
    assert bytes(net.b.received) == data


# --------------------------------------------------------------------- retransmission timer (3.8)


def test_r2_gives_up_on_data_with_exponential_backoff() -> None:
    net = connected()
    cfg = net.a.tcb.config
    net.drop_rules.append(lambda seg, s: s == "b")  # b falls silent
    t0 = net.now
    net.take("a", net.a.tcb.send(b"is anybody there?", net.now))
    net.run_until(lambda: net.a.tcb.state is S.CLOSED, limit=t0 + 1000)
    times = sent_by(net, "a", lambda seg: bool(seg.payload))
    assert times[0] == t0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] == pytest.approx(cfg.rto_initial)
    # Each retransmission waits twice as long as the one before (RFC 6298 (5.5)), up to rto_max.
    doubling = [g for g in gaps if g < cfg.rto_max / 2]
    for prev, nxt in itertools.pairwise(doubling):
        assert nxt == pytest.approx(2 * prev)
    assert len(doubling) >= 5
    # R2 (SHLD-11, MUST-20): give up no earlier than r2 after the first transmission, and tell the user.
    assert net.now >= t0 + cfg.r2
    assert net.now <= t0 + cfg.r2 + cfg.rto_max
    assert EventKind.TIMED_OUT in net.a.kinds()
    assert net.a.kinds().count(EventKind.RETRANSMITTING) == 1  # R1 told once (SHLD-9)
    assert net.a.tcb.send(b"x", net.now).error is TcpError.TIMED_OUT
    assert net.b.tcb.state is S.ESTABLISHED  # b never heard of it


@pytest.mark.parametrize("closer", ["a", "b"], ids=["FIN-WAIT-1", "LAST-ACK"])
def test_r2_gives_up_on_a_fin_that_is_never_acknowledged(closer: str) -> None:
    net = connected()
    if closer == "b":
        net.take("a", net.a.tcb.close(net.now))
        net.run_until(lambda: net.states() == (S.FIN_WAIT_2, S.CLOSE_WAIT))
    other = "b" if closer == "a" else "a"
    net.drop_rules.append(lambda seg, s: s == other)
    t0 = net.now
    net.take(closer, net.side(closer).tcb.close(net.now))
    net.run_until(lambda: net.side(closer).tcb.state is S.CLOSED, limit=t0 + 1000)
    fins = sent_by(net, closer, is_fin)
    assert fins[0] == t0 and len(fins) >= 6
    assert net.now >= t0 + net.side(closer).tcb.config.r2
    assert EventKind.TIMED_OUT in net.side(closer).kinds()


def test_syn_to_a_silent_peer_gives_up_no_earlier_than_3_minutes() -> None:
    net = pair()
    net.drop_rules.append(lambda seg, s: s == "a")
    net.take("a", net.a.tcb.open(net.now))
    net.run_until(lambda: net.a.tcb.state is S.CLOSED, limit=1000)
    times = sent_by(net, "a", is_syn)
    assert times[:7] == pytest.approx([0, 1, 3, 7, 15, 31, 63])
    assert net.now >= 180.0  # MUST-23
    assert net.now <= 180.0 + net.a.tcb.config.rto_max
    assert EventKind.TIMED_OUT in net.a.kinds()
    assert net.a.tcb.receive(10, net.now).error is TcpError.TIMED_OUT
    assert net.b.tcb.state is S.LISTEN


def test_rto_converges_to_the_path_rtt() -> None:
    latency = 0.05
    cfg = TcbConfig(rto_min=0.01)
    net = connected(latency=latency, a_config=cfg, b_config=TcbConfig(rto_min=0.01))
    for i in range(30):
        msg = f"request {i}".encode()
        net.take("a", net.a.tcb.send(msg, net.now))
        net.run_until(lambda m=msg: bytes(net.b.received).endswith(m), limit=net.now + 10)
        net.take("b", net.b.tcb.send(msg.upper(), net.now))
        net.run_until(lambda m=msg: bytes(net.a.received).endswith(m.upper()), limit=net.now + 10)
    for name in "ab":
        st = net.side(name).tcb.status(net.now)
        assert st.srtt == pytest.approx(2 * latency, rel=0.05), name
        assert 2 * latency <= st.rto <= 4 * latency, name
    # A loss now is repaired after about one RTO, not the initial 1 s.
    rto = net.a.tcb.status(net.now).rto
    lost = drop_nth(net, lambda seg, s: s == "a" and bool(seg.payload))
    net.take("a", net.a.tcb.send(b"lost once", net.now))
    net.run_until(lambda: bytes(net.b.received).endswith(b"lost once"), limit=net.now + 10)
    assert lost
    first, again = sent_by(net, "a", lambda seg: seg.payload == b"lost once")
    assert again - first == pytest.approx(rto)


# ------------------------------------------------------------------------------ bulk and the wrap


def test_sequence_numbers_wrap_around_2_to_the_32() -> None:
    isn = 0xFFFFFF00
    net = pair(a_isn=isn, b_isn=isn)
    a_data = random.Random(21).randbytes(100_000)
    b_data = random.Random(22).randbytes(100_000)
    converse(net, a_data, b_data)
    assert hashlib.sha256(net.b.received).digest() == hashlib.sha256(a_data).digest()
    assert hashlib.sha256(net.a.received).digest() == hashlib.sha256(b_data).digest()
    # Both directions crossed 2**32: the last octets were numbered from the far side of the wrap.
    for name in "ab":
        tcb = net.side(name).tcb
        assert tcb.snd_una < isn and seq_diff(tcb.snd_una, isn) == 100_002
        assert tcb.rcv_nxt < isn and seq_diff(tcb.rcv_nxt, isn) == 100_002
    seqs = [seg.seq for _, s, seg in net.log if s == "a" and seg.payload]
    assert any(s >= isn for s in seqs) and any(s < isn for s in seqs)


def test_one_megabyte_each_way() -> None:
    net = connected()
    a_data = random.Random(31).randbytes(1 << 20)
    b_data = random.Random(32).randbytes(1 << 20)
    converse(net, a_data, b_data)
    assert hashlib.sha256(net.b.received).hexdigest() == hashlib.sha256(a_data).hexdigest()
    assert hashlib.sha256(net.a.received).hexdigest() == hashlib.sha256(b_data).hexdigest()
    assert sum(e.count for e in net.b.events if e.kind is EventKind.DATA) == len(a_data)
    assert sum(e.count for e in net.a.events if e.kind is EventKind.DATA) == len(b_data)
