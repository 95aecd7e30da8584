"""Properties of two TCBs over a bad wire: whatever the loss, duplication, reordering, ISNs and write
pattern, every octet arrives once, in order, both ways, and the connection closes cleanly.

Every segment goes through the wire codec (build_tcp, then parse_tcp with the checksum checked).
Time is the network's fake clock; hypothesis draws the seed that drives the wire's randomness.

The TCBs are configured not to give up (R2 of a day): on a wire that loses 30 % of segments in
both directions a run of unlucky retransmissions is expected now and then, and giving up then is
correct behaviour (tested in test_scenarios), not a delivery failure.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from dataclasses import dataclass, field

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stack.tcp import EventKind, State, TcbConfig
from stack.tcp.seq import MASK
from stack.wire.tcp import Flags
from tests.core.net import Net, pair, trace

S = State
PATIENT = TcbConfig(r2=86_400.0, r2_syn=86_400.0)
FAKE_TIME_LIMIT = 200_000.0  # seconds on the fake clock

isns = st.one_of(
    st.integers(0, MASK),
    st.integers(MASK - 300_000, MASK),  # both directions cross 2**32 during the transfer
    st.integers(0, 64),
)


@dataclass
class Plan:
    seed: int
    loss: float
    dup: float
    reorder: float
    a_isn: int
    b_isn: int
    a_size: int
    b_size: int
    a_chunks: list[int]
    b_chunks: list[int]
    gap: float  # fake seconds between two writes of one side
    b_waits_for_fin: bool  # b closes only after a's FIN (otherwise the closes may cross)
    latency: float = 0.01

    def data(self, name: str) -> bytes:
        size = self.a_size if name == "a" else self.b_size
        return random.Random(f"{self.seed}-{name}").randbytes(size)


@st.composite
def plans(draw: st.DrawFn, max_size: int = 200_000, max_loss: float = 0.3) -> Plan:
    return Plan(
        seed=draw(st.integers(0, 2**32 - 1)),
        loss=draw(st.sampled_from([0.0, 0.01, 0.1, 0.2, max_loss]) | st.floats(0.0, max_loss)),
        dup=draw(st.sampled_from([0.0, 0.2]) | st.floats(0.0, 0.2)),
        reorder=draw(st.sampled_from([0.0, 0.5]) | st.floats(0.0, 0.5)),
        a_isn=draw(isns),
        b_isn=draw(isns),
        a_size=draw(st.sampled_from([0, 1, max_size]) | st.integers(0, max_size)),
        b_size=draw(st.sampled_from([0, 1, max_size]) | st.integers(0, max_size)),
        a_chunks=draw(st.lists(st.integers(1, 40_000), min_size=1, max_size=8)),
        b_chunks=draw(st.lists(st.integers(1, 40_000), min_size=1, max_size=8)),
        gap=draw(st.sampled_from([0.0, 0.001, 0.05])),
        b_waits_for_fin=draw(st.booleans()),
    )


MAX_WRITES = 200


def cut(data: bytes, sizes: list[int]) -> deque[bytes]:
    """Cut data into writes whose sizes cycle through `sizes`, at most MAX_WRITES of them."""
    floor = -(-len(data) // MAX_WRITES)
    out: deque[bytes] = deque()
    i = k = 0
    while i < len(data):
        n = max(sizes[k % len(sizes)], floor)
        out.append(data[i : i + n])
        i += n
        k += 1
    return out


@dataclass
class Run:
    net: Net
    sent: dict[str, bytes]
    writes: dict[str, deque[bytes]]
    next_write: dict[str, float] = field(default_factory=lambda: {"a": 0.0, "b": 0.0})
    closed: dict[str, bool] = field(default_factory=lambda: {"a": False, "b": False})
    steps: int = 0


def start(plan: Plan) -> Run:
    net = pair(
        a_isn=plan.a_isn,
        b_isn=plan.b_isn,
        a_config=PATIENT,
        b_config=PATIENT,
        seed=plan.seed,
        loss=plan.loss,
        dup=plan.dup,
        reorder=plan.reorder,
        latency=plan.latency,
        codec=True,
    )
    sent = {name: plan.data(name) for name in "ab"}
    run = Run(
        net, sent, {name: cut(sent[name], plan.a_chunks if name == "a" else plan.b_chunks) for name in "ab"}
    )
    net.take("a", net.a.tcb.open(net.now))
    return run


def due(run: Run, plan: Plan) -> list[tuple[str, str]]:
    """The user calls to make now: ("a" or "b", "send" or "close")."""
    net = run.net
    calls = []
    for name in "ab":
        state = net.side(name).tcb.state
        if run.writes[name]:
            # b is passive: it may send once a SYN has arrived; a may queue data in SYN-SENT.
            writable = state in (S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT) or (
                name == "a" and state is S.SYN_SENT
            )
            if writable and net.now >= run.next_write[name]:
                calls.append((name, "send"))
        elif not run.closed[name]:
            if name == "a":
                # CLOSE in SYN-SENT would delete the connection (3.10.4): a closes once established.
                ready = state in (S.ESTABLISHED, S.CLOSE_WAIT)
            elif plan.b_waits_for_fin:
                ready = state is S.CLOSE_WAIT
            else:
                ready = state in (S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT)
            if ready:
                calls.append((name, "close"))
    return calls


def user_step(run: Run, plan: Plan) -> bool:
    """Make the user calls that are due now. True if there was one."""
    net = run.net
    calls = due(run, plan)
    for name, call in calls:
        tcb = net.side(name).tcb
        state = tcb.state
        if call == "send":
            res = net.take(name, tcb.send(run.writes[name].popleft(), net.now))
            run.next_write[name] = net.now + plan.gap
        else:
            res = net.take(name, tcb.close(net.now))
            run.closed[name] = True
        assert res.ok, f"{name}: {call} refused in {state}: {res.error}\n{trace(net, 30)}"
    return bool(calls)


def finished(run: Run) -> bool:
    a, b = run.net.a.tcb, run.net.b.tcb
    return (a.deleted or a.state is S.TIME_WAIT) and b.deleted


def check_invariants(run: Run) -> None:
    """What a receiving user has seen is never more than, nor different from, what was sent."""
    for name, other in (("a", "b"), ("b", "a")):
        side = run.net.side(name)
        got = side.received
        sent = run.sent[other]
        assert len(got) <= len(sent), f"{name} received {len(got)} > {len(sent)} sent"
        assert sent.startswith(got), f"{name} received bytes that were not sent at offset <= {len(got)}"
        reported = sum(e.count for e in side.events if e.kind is EventKind.DATA)
        assert reported <= len(sent), f"{name} was told of {reported} octets, {len(sent)} sent"


def drive(run: Run, plan: Plan, *, every_step: bool = False) -> None:
    """Run the network and the two users until both connections have ended.

    Fails, with the end of the segment log, when nothing is left to happen before the end (a
    deadlock), when the fake clock passes FAKE_TIME_LIMIT, or when far more segments went out than
    the data can explain (a segment storm).
    """
    net = run.net
    budget = 5_000 + (len(run.sent["a"]) + len(run.sent["b"])) // 10 + 4 * MAX_WRITES
    while not finished(run):
        if user_step(run, plan):
            continue
        assert net.now < FAKE_TIME_LIMIT, f"no end by t={net.now}\n{trace(net, 30)}"
        assert len(net.log) <= budget, f"{len(net.log)} segments by t={net.now}\n{trace(net, 30)}"
        pending = [run.next_write[n] for n in "ab" if run.writes[n] and run.next_write[n] > net.now]
        assert pending or net._next_time() is not None, f"stuck in {net.states()}\n{trace(net, 30)}"
        if every_step:
            if not net.step():
                net.now = min(pending)
            check_invariants(run)
            continue
        horizon = min([*pending, net.now + 30.0])
        net.run(until=horizon, stop=lambda: finished(run) or bool(due(run, plan)))


def check_outcome(run: Run, plan: Plan) -> None:
    net = run.net
    msg = f"{plan}\n{trace(net, 40)}"
    for name, other in (("a", "b"), ("b", "a")):
        side = net.side(name)
        assert hashlib.sha256(side.received).hexdigest() == hashlib.sha256(run.sent[other]).hexdigest(), (
            f"{name} received {len(side.received)} of {len(run.sent[other])} octets, or different ones\n{msg}"
        )
        bad = {EventKind.RESET, EventKind.REFUSED, EventKind.TIMED_OUT} & set(side.kinds())
        assert not bad, f"{name} saw {bad}\n{msg}"
        assert side.kinds().count(EventKind.PEER_CLOSED) == 1, msg
        # b may CLOSE in SYN-RECEIVED and go to FIN-WAIT-1 without passing ESTABLISHED (figure 5).
        established = side.kinds().count(EventKind.ESTABLISHED)
        assert established == 1 if name == "a" else established <= 1, msg
        reported = sum(e.count for e in side.events if e.kind is EventKind.DATA)
        assert reported == len(run.sent[other]), msg
    assert net.a.tcb.state in (S.TIME_WAIT, S.CLOSED), msg
    assert net.b.tcb.state is S.CLOSED, msg


WORST = Plan(
    seed=1,
    loss=0.3,
    dup=0.2,
    reorder=0.5,
    a_isn=MASK - 100,
    b_isn=MASK - 150_000,
    a_size=200_000,
    b_size=200_000,
    a_chunks=[1, 1460, 40_000, 3],
    b_chunks=[700],
    gap=0.001,
    b_waits_for_fin=False,
)
CROSSING_CLOSES = Plan(
    seed=2,
    loss=0.2,
    dup=0.2,
    reorder=0.5,
    a_isn=MASK,
    b_isn=0,
    a_size=5_000,
    b_size=5_000,
    a_chunks=[5_000],
    b_chunks=[5_000],
    gap=0.0,
    b_waits_for_fin=False,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
@example(WORST)
@example(CROSSING_CLOSES)
def test_exact_stream_both_ways_and_clean_close(plan: Plan) -> None:
    run = start(plan)
    drive(run, plan)
    check_invariants(run)
    check_outcome(run, plan)


def _check_segment_bounds(run: Run) -> None:
    """No segment has SEQ, or SEQ+LEN, outside [ISS, ISS+total+2]; no ACK outside the peer's space."""
    net = run.net
    for t, name, seg in net.log:
        other = "b" if name == "a" else "a"
        me, peer = net.side(name).tcb, net.side(other).tcb
        total = len(run.sent[name])
        rel = (seg.seq - me.iss) & MASK
        assert rel + seg.seg_len <= total + 2, f"t={t} {name} SEQ={seg.seq} ISS={me.iss} total={total}"
        if seg.flags & Flags.ACK:
            rel_ack = (seg.ack - peer.iss) & MASK
            assert rel_ack <= len(run.sent[other]) + 2, f"t={t} {name} ACK={seg.ack} peer ISS={peer.iss}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans(max_size=30_000))
@example(CROSSING_CLOSES)
def test_never_more_than_was_sent_and_sequence_numbers_stay_in_range(plan: Plan) -> None:
    run = start(plan)
    drive(run, plan, every_step=True)
    check_outcome(run, plan)
    _check_segment_bounds(run)
