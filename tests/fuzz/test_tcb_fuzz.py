"""Fuzzing the TCB in memory: random and mutated segments against connections in every state.

Two TCBs are connected by the in-memory wire of tests/core/net.py, with the baseline configuration
(`TcbConfig()`) or the stack's profile (`TcbConfig.full()`: window scale, timestamps, SACK), and
brought into one of the states below. One of them, the target, is then fed segments: random ones
aimed at its windows, real segments of the connection changed a little (or replayed, or reflected),
and encoded segments with damaged octets put through the parser; between them the wire runs, timers
fire and the user calls SEND, RECEIVE, CLOSE, ABORT, FLUSH, STATUS and `set`.

After every call into either TCB (tests/fuzz/fuzzer.py, CheckedTcb): no exception; SND.UNA =< SND.NXT
=< snd_max; the queues bounded (receive queue and out-of-order octets by the receive buffer, the send
queue by the send buffer, out-of-order pieces by ooo_max, the scoreboard by its cap); every timer
finite and, once fired, moved past now; every segment sent encodable and sensible; the events
meaningful (a state change TCP allows, ESTABLISHED and "peer closed" once, DATA counting what became
readable, CLOSED with every ending).

Two kinds of run:

- anything: every segment allowed, whatever it does to the connection (an in-window segment may
  legitimately put junk into the stream or reset it); only the invariants are checked. When the
  target is deleted, it is fed a few more segments and a new pair is built.
- blind: only segments that an off-path attacker could send without knowing the connection's numbers
  (fuzzer.blind_safe: out of the window, RSTs not at RCV.NXT, SYNs and ACKs answered by challenge
  ACKs, exact replays), with the wire running between them. Afterwards the pair must still carry its
  data: each side's stream arrives exactly (compared whole) and both close. Now and then the run
  ends with the one reset a correct TCP believes (a RST at exactly RCV.NXT), which must be reported
  as RESET (REFUSED in SYN-SENT, a return to LISTEN in SYN-RECEIVED from a passive OPEN).

The bulk of the segments come from a seeded generator (hypothesis draws the seed); two more tests
draw every choice from hypothesis, so that a failure there shrinks to a short reproduction. The
number of segments is TCPSH_FUZZ_SEGMENTS (tests/fuzz/budget.py, default 100,000); a failure message
names the run (state, configuration, seed) and the last calls before it, and
`replay("blind", "ESTABLISHED", "full", seed)` runs it again.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.tcp import EventKind, State, Tcb, TcbConfig
from stack.tcp.config import SETTABLE
from stack.tcp.isn import FixedIsn
from stack.tcp.seq import MASK, seq_add, seq_diff
from stack.wire.errors import ParseError
from stack.wire.tcp import Flags, TcpSegment, build_tcp, parse_tcp
from tests.core.net import A_ADDR, B_ADDR, Net, pair
from tests.fuzz import budget
from tests.fuzz.fuzzer import (
    RST,
    CheckedTcb,
    DataSource,
    FuzzFailure,
    Journal,
    RandomSource,
    Source,
    View,
    blind_safe,
    make_blind,
    mutate,
    mutate_bytes,
    random_segment,
)

# Shrinking a failure reruns whole runs many times: give it longer than the suite's two minutes.
pytestmark = pytest.mark.timeout(600)

S = State
CONFIGS: dict[str, Callable[[], TcbConfig]] = {"baseline": TcbConfig, "full": TcbConfig.full}
SIMULTANEOUS = "SYN-RECEIVED (simultaneous open)"
STATES = [
    "LISTEN",
    "SYN-SENT",
    "SYN-RECEIVED",
    SIMULTANEOUS,
    "ESTABLISHED",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "CLOSE-WAIT",
    "CLOSING",
    "LAST-ACK",
    "TIME-WAIT",
]
COMBOS = [(s, c) for s in STATES for c in CONFIGS]

# The in-memory budget: the part of TCPSH_FUZZ_SEGMENTS each kind of seeded test feeds. The drawn
# tests come on top: hypothesis's own choices cost more time per segment.
ANYTHING_SHARE, BLIND_SHARE = 0.6, 0.4
DRAWN_EXAMPLES = 1 / 4000  # examples per segment of the budget, for each drawn test
PER_RUN = 500  # segments per seeded run: long enough to fill queues, short enough to shrink

FED: dict[str, int] = {}  # segments fed per test, for the summary and the checks


# No example database: the inner test functions below share one name across parametrizations, and a
# failure names its seed (or hypothesis prints the blob to reproduce it) instead.
HYPOTHESIS = settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True, database=None)


# ---------------------------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    net: Net
    target: str
    data: dict[str, bytes]
    journal: Journal
    written: dict[str, bool] = field(default_factory=lambda: {"a": False, "b": False})
    closed: dict[str, bool] = field(default_factory=lambda: {"a": False, "b": False})
    a_opened: bool = True
    reset: bool = False  # the run ended with a RST a correct TCP believes

    @property
    def peer(self) -> str:
        return "b" if self.target == "a" else "a"

    def tcb(self, name: str) -> CheckedTcb:
        return self.net.side(name).tcb  # type: ignore[return-value]

    @property
    def t(self) -> CheckedTcb:
        return self.tcb(self.target)

    def call(self, name: str, fn: Callable[[CheckedTcb, float], object]) -> object:
        res = fn(self.tcb(name), self.net.now)
        return self.net.take(name, res)  # type: ignore[arg-type]

    def write(self, name: str) -> None:
        self.call(name, lambda t, now: t.send(self.data[name], now))
        self.written[name] = True

    def close(self, name: str) -> None:
        self.call(name, lambda t, now: t.close(now))
        self.closed[name] = True

    def run_until(self, cond: Callable[[], bool], what: str) -> None:
        for _ in range(100_000):
            if cond():
                return
            if not self.net.step():
                break
        if not cond():
            raise FuzzFailure(f"building the scenario: {what} not reached\n{self.journal.dump()}")

    def delivered(self) -> bool:
        return bytes(self.net.a.received) == self.data["b"] and bytes(self.net.b.received) == self.data["a"]


def _isn(r: Source) -> int:
    return r.pick((1000, MASK - 3000, 0)) if r.coin(0.5) else r.int(0, MASK)


def new_pair(cfg: TcbConfig, r: Source, journal: Journal, *, simultaneous: bool = False) -> Net:
    a_isn, b_isn = _isn(r), _isn(r)
    if simultaneous:
        a = Tcb(A_ADDR, 40000, B_ADDR, 80, config=cfg, isn=FixedIsn(a_isn))
        b = Tcb(B_ADDR, 80, A_ADDR, 40000, config=cfg, isn=FixedIsn(b_isn))
        net = Net(a, b)
    else:
        net = pair(a_isn=a_isn, b_isn=b_isn, a_config=cfg, b_config=cfg)
    net.a.tcb = CheckedTcb(net.a.tcb, "a", journal)  # type: ignore[assignment]
    net.b.tcb = CheckedTcb(net.b.tcb, "b", journal)  # type: ignore[assignment]
    return net


def build(key: str, cfg_name: str, r: Source, title: str, *, most: int = 40_000) -> Scenario:
    """Two TCBs, the target in state `key`, with a stream of up to `most` octets for each side to send."""
    journal = Journal(title)
    size = lambda: r.pick((0, 1, 3000)) if r.coin(0.3) else r.int(0, most)  # noqa: E731
    seed = r.int(0, 1 << 32)
    gen = random.Random(seed)
    data = {"a": gen.randbytes(size()), "b": gen.randbytes(size())}
    cfg = CONFIGS[cfg_name]()
    net = new_pair(cfg, r, journal, simultaneous=key == SIMULTANEOUS)
    if key == "LISTEN":
        sc = Scenario(net, "b", data, journal, a_opened=False)
        return _expect(sc, S.LISTEN)
    sc = Scenario(net, "a", data, journal)
    if key == SIMULTANEOUS:
        sc.call("a", lambda t, now: t.open(now))
        sc.call("b", lambda t, now: t.open(now))
        net.step()  # both SYNs arrive: both SYN-RECEIVED
        return _expect(sc, S.SYN_RECEIVED)
    sc.call("a", lambda t, now: t.open(now))
    if key == "SYN-SENT":
        return _expect(sc, S.SYN_SENT)
    if key == "SYN-RECEIVED":
        net.step()  # the SYN arrives at b
        sc.target = "b"
        return _expect(sc, S.SYN_RECEIVED)
    sc.run_until(lambda: net.states() == (S.ESTABLISHED, S.ESTABLISHED), "ESTABLISHED")
    if key == "ESTABLISHED":
        sc.write("a")
        sc.write("b")
        for _ in range(r.int(0, 6)):
            net.step()
        sc.target = r.pick(("a", "b"))
        return _expect(sc, S.ESTABLISHED)
    if key == "FIN-WAIT-1":
        sc.write("a")
        sc.close("a")
        sc.write("b")
        return _expect(sc, S.FIN_WAIT_1)
    if key in ("FIN-WAIT-2", "CLOSE-WAIT"):
        sc.write("a")
        sc.close("a")
        sc.run_until(lambda: net.states() == (S.FIN_WAIT_2, S.CLOSE_WAIT), "FIN-WAIT-2 / CLOSE-WAIT")
        sc.write("b")
        if key == "CLOSE-WAIT":
            sc.target = "b"
            return _expect(sc, S.CLOSE_WAIT)
        return _expect(sc, S.FIN_WAIT_2)
    # The rest come after both streams have arrived.
    sc.write("a")
    sc.write("b")
    sc.run_until(sc.delivered, "both streams delivered")
    if key == "CLOSING":
        sc.close("a")
        sc.close("b")
        net.step()  # the two FINs cross
        return _expect(sc, S.CLOSING)
    sc.close("a")
    sc.run_until(lambda: net.states() == (S.FIN_WAIT_2, S.CLOSE_WAIT), "FIN-WAIT-2 / CLOSE-WAIT")
    sc.close("b")
    if key == "LAST-ACK":
        sc.target = "b"
        return _expect(sc, S.LAST_ACK)
    sc.run_until(lambda: net.a.tcb.state is S.TIME_WAIT and net.b.tcb.deleted, "TIME-WAIT")
    return _expect(sc, S.TIME_WAIT)


def _expect(sc: Scenario, state: State) -> Scenario:
    assert sc.t.state is state, f"built {sc.t.state}, wanted {state}\n{sc.journal.dump()}"
    return sc


# ---------------------------------------------------------------------------------------------- feeding


def deliver(sc: Scenario, seg: TcpSegment) -> None:
    """`seg` arrives at the target from the peer's address; what the target answers goes on the wire."""
    src = B_ADDR if sc.target == "a" else A_ADDR
    sc.call(sc.target, lambda t, now: t.segment_arrives(seg, now, src))


def real_segment(sc: Scenario, r: Source, *, peer_only: bool) -> TcpSegment | None:
    """A segment of the connection from the wire's log: the peer's as it was, or the target's own
    turned around (a reflection)."""
    log = sc.net.log
    if not log:
        return None
    for _ in range(4):
        _, sender, seg = log[-1 - r.int(0, min(len(log), 64) - 1)]
        if sender == sc.peer:
            return seg
        if not peer_only:
            return TcpSegment(
                seg.dst_port,
                seg.src_port,
                seg.seq,
                seg.ack,
                seg.flags,
                seg.window,
                seg.urgent,
                seg.options,
                seg.payload,
            )
    return None


def damaged(r: Source, seg: TcpSegment, verify: bool) -> TcpSegment | None:
    """`seg` encoded, octets damaged, parsed again (with the checksum checked, or not, as for a
    checksum the NIC vouched for); None when the parser rejects it."""
    src, dst = (B_ADDR, A_ADDR)
    try:
        raw = build_tcp(seg, src, dst)
    except ValueError:
        return None  # random options may not fit the header
    try:
        return parse_tcp(mutate_bytes(r, raw), src, dst) if verify else parse_tcp(mutate_bytes(r, raw))
    except ParseError:
        return None


def fire_timer(sc: Scenario, r: Source) -> None:
    """Jump to the target's deadline (or just past it, or a while after) and fire it."""
    d = sc.t.deadline
    later = r.pick((0.0, 0.0, 0.001, r.int(0, 5000) / 1000))
    sc.net.now = max(sc.net.now, (d if d is not None else sc.net.now) + later)
    sc.call(sc.target, lambda t, now: t.on_timer(now))


SETTING_VALUES = {
    bool: ("on", "off", "maybe"),
    int: ("536", "4k", "64k", "1M", "0", "-1", "3", "junk"),
    float: ("0.001", "0.2", "1", "30", "1e9", "0", "-5", "x"),
    str: ("reno", "cubic", "vegas"),
}


def user_call(sc: Scenario, r: Source) -> None:
    t = sc.t
    kind = r.int(0, 19)
    if kind <= 6:
        n = r.pick((0, 1, r.int(2, 3000), r.int(3000, 70_000)))
        if r.coin(0.03):
            n = t.send_space + 1  # more than the buffer takes: refused whole
        sc.call(sc.target, lambda t, now: t.send(bytes(n), now, push=r.coin(0.5)))
    elif kind <= 10:
        max_bytes = r.pick((0, 1, 100, 1 << 20))
        sc.call(sc.target, lambda t, now: t.receive(max_bytes, now))
    elif kind <= 12:
        sc.call(sc.target, lambda t, now: t.close(now))
    elif kind == 13:
        if r.coin(0.3):
            sc.call(sc.target, lambda t, now: t.abort(now))
    elif kind == 14:
        sc.call(sc.target, lambda t, now: t.flush(now))
    elif kind == 15:
        t.status(sc.net.now)
    elif kind == 16:
        sc.call(sc.target, lambda t, now: t.open(now, active=r.coin(0.5)))
    else:
        name = r.pick(SETTABLE)
        value = r.pick(SETTING_VALUES[type(getattr(t.config, name))])
        sc.call(sc.target, lambda t, now: t.configure(name.replace("_", "-"), value, now))


def fuzz_anything(sc: Scenario, r: Source, budget_left: int, max_ops: int) -> int:
    """Feed the target anything until `budget_left` segments went in, or it was deleted. Returns
    the number of segments fed."""
    fed = 0
    sc.net.side(sc.target).auto_read = r.coin(0.7)  # or the user never reads: the window closes
    for _ in range(max_ops):
        if fed >= budget_left:
            break
        if sc.t.deleted:
            for _ in range(r.int(1, 3)):  # a deleted TCB answers, at most, with a RST
                deliver(sc, random_segment(r, View.of(sc.t.tcb, 40000)))
                fed += 1
            break
        kind = r.int(0, 99)
        if kind < 45:
            seg = random_segment(r, View.of(sc.t.tcb, 40000))
            if seg.flags & RST and seg.seq == sc.t.rcv_nxt and r.coin(0.8):
                seg = replace(seg, seq=seq_add(seg.seq, 1))  # fewer believed resets: longer lives
            deliver(sc, seg)
            fed += 1
        elif kind < 65:
            seg = real_segment(sc, r, peer_only=False)
            if seg is None:
                seg = random_segment(r, View.of(sc.t.tcb, 40000))
            deliver(sc, mutate(r, seg, View.of(sc.t.tcb, 40000)))
            fed += 1
        elif kind < 70:
            base = real_segment(sc, r, peer_only=False) or random_segment(r, View.of(sc.t.tcb, 40000))
            seg = damaged(r, base, verify=r.coin(0.5))
            if seg is not None:
                deliver(sc, seg)
                fed += 1
        elif kind < 80:
            sc.net.step()
        elif kind < 85:
            fire_timer(sc, r)
        else:
            user_call(sc, r)
    # Let the pair run on for a while: whatever the fuzz left behind must not break them later.
    for _ in range(r.int(0, 50)):
        if not sc.net.step():
            break
    return fed


def legit_reset(sc: Scenario) -> None:
    """The one RST a correct TCP believes, and what it must then report (RFC 9293 3.10.7, RFC 5961)."""
    t = sc.t
    st_ = t.state
    if st_ is S.SYN_SENT:
        seg = TcpSegment(t.remote_port, t.local_port, 0, t.snd_max, Flags.RST | Flags.ACK)
    else:
        seg = TcpSegment(t.remote_port, t.local_port, t.rcv_nxt, 0, Flags.RST)
    from_listen = t.from_listen
    before = len(t.events)
    deliver(sc, seg)
    told = [e.kind for e in t.events[before:]]
    if st_ is S.SYN_RECEIVED and from_listen:
        expected = S.LISTEN, []
    elif st_ in (S.SYN_SENT, S.SYN_RECEIVED):
        expected = S.CLOSED, [EventKind.REFUSED, EventKind.CLOSED]
    elif st_ in (S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT):
        expected = S.CLOSED, [EventKind.RESET, EventKind.CLOSED]
    else:
        expected = S.CLOSED, [EventKind.CLOSED]
    assert (t.state, told) == expected, (
        f"RST <SEQ={seg.seq}> at RCV.NXT in {st_}: {t.state} {told}, wanted {expected}\n{sc.journal.dump()}"
    )
    sc.reset = True


def fuzz_blind(sc: Scenario, r: Source, segments: int, *, reset_at: int | None) -> int:
    """Feed the target blind-safe segments, the wire running in the second half; returns the count."""
    fed = 0
    hold = segments // 2  # the first half meets the state as it was built
    ops = 0
    while fed < segments and ops < 4 * segments + 10:
        ops += 1
        t = sc.t
        if t.deleted:
            break
        if reset_at is not None and fed >= reset_at and t.state is not S.LISTEN:
            legit_reset(sc)
            return fed + 1
        v = View.of(t.tcb, 40000)
        kind = r.int(0, 99)
        if kind < 55 or (fed < hold and kind >= 80):
            seg = random_segment(r, v)
            for _ in range(4):
                if blind_safe(v, seg, from_listen=t.from_listen):
                    break
                seg = random_segment(r, v)
            else:
                seg = make_blind(r, v, seg, from_listen=t.from_listen)
        elif kind < 75:
            real = real_segment(sc, r, peer_only=True)
            if real is None:
                continue
            seg = mutate(r, real, v)
            replay = seg == real and not seg.flags & RST
            if not replay and not blind_safe(v, seg, from_listen=t.from_listen):
                seg = make_blind(r, v, seg, from_listen=t.from_listen)
        elif kind < 80:
            base = real_segment(sc, r, peer_only=True) or random_segment(r, v)
            got = damaged(r, base, verify=True)
            if got is None or not blind_safe(v, got, from_listen=t.from_listen):
                continue
            seg = got
        elif kind < 97:
            sc.net.step()
            continue
        else:
            t.status(sc.net.now)
            continue
        deliver(sc, seg)
        fed += 1
    return fed


def finish(sc: Scenario) -> None:
    """Open, write and close what is left, and run the pair until nothing is left to do."""
    net = sc.net
    if not sc.a_opened:
        sc.call("a", lambda t, now: t.open(now))
        sc.a_opened = True
    for _ in range(20_000):
        for name in "ab":
            state = sc.tcb(name).state
            if not sc.written[name] and state in (S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.CLOSE_WAIT):
                sc.write(name)
            if sc.written[name] and not sc.closed[name] and state in (S.ESTABLISHED, S.CLOSE_WAIT):
                sc.close(name)
        if not net.step():
            return
        if net.now > 5000.0:
            break
    raise FuzzFailure(
        f"the pair did not settle (20,000 steps, t={net.now:.1f}): a {net.a.tcb.state}, b {net.b.tcb.state}"
        f"\n{sc.journal.dump()}"
    )


def check_carried(sc: Scenario) -> None:
    """Both streams arrived exactly and both sides closed, unless the run ended with a believed RST."""
    net = sc.net
    # A RST that deletes a TCB in CLOSING, LAST-ACK or TIME-WAIT loses nothing (both FINs were sent,
    # and RFC 9293 takes it, as Linux does without RFC 1337): the data decide, as for a clean close.
    ended = [
        (side.name, e.kind, e.message)
        for side in (net.a, net.b)
        for e in side.events
        if e.kind in (EventKind.RESET, EventKind.REFUSED, EventKind.TIMED_OUT)
    ]
    got = {"a": bytes(net.b.received), "b": bytes(net.a.received)}  # what arrived of each side's stream
    exact = all(got[n] == sc.data[n] for n in "ab")
    if sc.reset:
        assert exact or ended, f"a believed RST, then neither a reset nor the data\n{sc.journal.dump()}"
        return
    assert not ended, f"blind segments ended the connection: {ended}\n{sc.journal.dump()}"
    for n in "ab":
        want, have = sc.data[n], got[n]
        assert have == want, (
            f"{n}'s stream: {len(have)} octets arrived (sha256 {hashlib.sha256(have).hexdigest()[:16]}), "
            f"{len(want)} sent (sha256 {hashlib.sha256(want).hexdigest()[:16]})\n{sc.journal.dump()}"
        )
    assert net.a.tcb.deleted and net.b.tcb.deleted, (net.states(), sc.journal.dump())


# ---------------------------------------------------------------------------------------------- runs


def run_anything(key: str, cfg_name: str, r: Source, segments: int, title: str, most: int = 12_000) -> int:
    fed = 0
    n = 0
    while fed < segments:
        n += 1
        sc = build(key, cfg_name, r, f"{title}, pair {n}", most=most)
        fed += fuzz_anything(sc, r, segments - fed, max_ops=4 * segments + 20)
        if n > 4 * segments + 20:
            break
    return fed


def run_blind(key: str, cfg_name: str, r: Source, segments: int, title: str, most: int = 40_000) -> int:
    sc = build(key, cfg_name, r, title, most=most)
    reset_at = r.int(0, segments) if r.coin(0.15) else None
    fed = fuzz_blind(sc, r, segments, reset_at=reset_at)
    finish(sc)
    check_carried(sc)
    return fed


RUNS = {"anything": run_anything, "blind": run_blind}


def replay(kind: str, key: str, cfg_name: str, seed: int, segments: int = PER_RUN) -> int:
    """Run one seeded run again (the failure message names kind, state, configuration and seed)."""
    return RUNS[kind](key, cfg_name, RandomSource(seed), segments, f"{kind} {key} {cfg_name} seed={seed}")


def seeded(kind: str, key: str, cfg_name: str, fraction: float) -> None:
    """As many seeded runs of PER_RUN segments as this test's share of the budget needs."""
    want = budget.share(fraction, len(COMBOS))
    per_run = min(PER_RUN, want)
    test_id = f"{kind}-{key}-{cfg_name}"
    FED[test_id] = 0

    @settings(HYPOTHESIS, max_examples=math.ceil(want / per_run))
    @given(seed=st.integers(0, (1 << 64) - 1))
    def run(seed: int) -> None:
        FED[test_id] += replay(kind, key, cfg_name, seed, per_run)

    while FED[test_id] < want:
        run()
    assert FED[test_id] >= want


@pytest.mark.parametrize(("key", "cfg_name"), COMBOS)
def test_anything_never_breaks_an_invariant(key: str, cfg_name: str) -> None:
    seeded("anything", key, cfg_name, ANYTHING_SHARE)


@pytest.mark.parametrize(("key", "cfg_name"), COMBOS)
def test_blind_segments_leave_the_connection_carrying_data(key: str, cfg_name: str) -> None:
    seeded("blind", key, cfg_name, BLIND_SHARE)


def drawn(kind: str, cfg_name: str) -> None:
    """Every choice from hypothesis: fewer segments, but a failure shrinks to a short reproduction."""
    test_id = f"drawn-{kind}-{cfg_name}"
    FED[test_id] = 0

    @settings(HYPOTHESIS, max_examples=max(25, math.ceil(budget.total_segments() * DRAWN_EXAMPLES)))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        r = DataSource(data)
        key = r.pick(STATES)
        title = f"drawn {kind} {key} {cfg_name}"
        FED[test_id] += RUNS[kind](key, cfg_name, r, r.int(1, 60), title, most=4000)

    run()
    assert FED[test_id] > 0


@pytest.mark.parametrize("cfg_name", CONFIGS)
@pytest.mark.parametrize("kind", RUNS)
def test_drawn_segments(kind: str, cfg_name: str) -> None:
    drawn(kind, cfg_name)


def test_the_blind_rule_lets_through_what_tcp_must_survive() -> None:
    """blind_safe itself: the segments it refuses are the ones RFC 9293 with RFC 5961 believes."""
    from tests.core.net import connected

    net = connected()
    v = View.of(net.a.tcb)
    ok = lambda seq, ack, flags: blind_safe(v, TcpSegment(80, 40000, seq, ack, flags))  # noqa: E731
    far = seq_add(v.rcv_nxt, v.rcv_wnd + 10)
    assert not ok(v.rcv_nxt, 0, Flags.RST)  # exactly RCV.NXT: believed
    assert ok(seq_add(v.rcv_nxt, 1), 0, Flags.RST)  # elsewhere in the window: a challenge ACK
    assert ok(far, 0, Flags.RST)
    assert ok(v.rcv_nxt, 0, Flags.SYN)  # a challenge ACK
    assert not ok(v.rcv_nxt, v.snd_una, Flags.ACK)  # an acceptable ACK moves the window
    assert ok(v.rcv_nxt, seq_add(v.snd_max, 1), Flags.ACK)  # acknowledges what was never sent
    assert ok(far, v.snd_una, Flags.ACK)
    assert seq_diff(far, v.rcv_nxt) > 0


# Runs that once broke an invariant, replayed on every run: (kind, state, configuration, seed, what broke).
FOUND = [
    (
        "anything",
        "SYN-RECEIVED (simultaneous open)",
        "full",
        563546565,
        "a loss probe after R2 had passed left the retransmission timer due in the past",
    ),
    (
        "anything",
        "ESTABLISHED",
        "full",
        1009,
        "a duplicate ACK after a loss probe, with nothing SACKed, was judged by a time it did not have",
    ),
]


@pytest.mark.parametrize(("kind", "key", "cfg_name", "seed", "what"), FOUND, ids=[f[4] for f in FOUND])
def test_runs_that_once_failed_pass(kind: str, key: str, cfg_name: str, seed: int, what: str) -> None:
    # To the end of its budget without a failure (a last step may feed one segment past it).
    assert replay(kind, key, cfg_name, seed) >= PER_RUN
