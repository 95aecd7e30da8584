"""An in-memory wire between two TCBs with a fake clock: loss, duplication and reordering under test control.

Deterministic: the only randomness is a seeded generator, and time moves only when the network
has nothing to deliver before the next deadline.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from stack.tcp import Event, EventKind, Result, State, Tcb, TcbConfig
from stack.tcp.isn import FixedIsn
from stack.wire.tcp import Flags, TcpOptions, TcpSegment, split_segment

A_ADDR = IPv4Address("198.18.0.1")
B_ADDR = IPv4Address("198.18.0.2")

# (segment, sender name) -> True to drop it
DropRule = Callable[[TcpSegment, str], bool]


@dataclass
class Side:
    name: str
    tcb: Tcb
    events: list[Event] = field(default_factory=list)
    received: bytearray = field(default_factory=bytearray)
    sent: list[TcpSegment] = field(default_factory=list)
    auto_read: bool = True

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]


class Net:
    def __init__(
        self,
        a: Tcb,
        b: Tcb,
        *,
        seed: int = 0,
        latency: float = 0.010,
        loss: float = 0.0,
        dup: float = 0.0,
        reorder: float = 0.0,
        codec: bool = True,
    ) -> None:
        self.now = 0.0
        self.a = Side("a", a)
        self.b = Side("b", b)
        self.rng = random.Random(seed)
        self.latency = latency
        self.loss = loss
        self.dup = dup
        self.reorder = reorder
        self.codec = codec
        self.drop_rules: list[DropRule] = []
        self.log: list[tuple[float, str, TcpSegment]] = []
        self._queue: list[tuple[float, int, str, TcpSegment]] = []
        self._n = 0

    def side(self, name: str) -> Side:
        return self.a if name == "a" else self.b

    def other(self, name: str) -> Side:
        return self.b if name == "a" else self.a

    # -- feeding results into the network

    def take(self, name: str, res: Result) -> Result:
        side = self.side(name)
        side.events.extend(res.events)
        for seg in res.segments:
            self._put(name, seg)
        if side.auto_read:
            self._drain(side)
        return res

    def _put(self, sender: str, seg: TcpSegment) -> None:
        """`sent` keeps what the TCB emitted; the wire (and `log`) carries segments of at most the sender's
        Eff.snd.MSS, a larger one (segmentation offload) cut as the runtime or the link cuts it."""
        side = self.side(sender)
        side.sent.append(seg)
        for piece in split_segment(seg, side.tcb.eff_snd_mss):
            self._wire(sender, piece)

    def _wire(self, sender: str, seg: TcpSegment) -> None:
        self.log.append((self.now, sender, seg))
        if any(rule(seg, sender) for rule in self.drop_rules):
            return
        if self.loss and self.rng.random() < self.loss:
            return
        copies = 2 if self.dup and self.rng.random() < self.dup else 1
        for _ in range(copies):
            delay = self.latency
            if self.reorder and self.rng.random() < self.reorder:
                delay += self.rng.uniform(0, 4 * self.latency)
            self._n += 1
            heapq.heappush(self._queue, (self.now + delay, self._n, sender, seg))

    def _drain(self, side: Side) -> None:
        while side.tcb.readable:
            res = side.tcb.receive(1 << 20, self.now)
            side.received += res.data
            side.events.extend(res.events)
            for seg in res.segments:
                self._put(side.name, seg)

    def _through_codec(self, seg: TcpSegment, src: IPv4Address, dst: IPv4Address) -> TcpSegment:
        from stack.wire.tcp import build_tcp, parse_tcp

        return parse_tcp(build_tcp(seg, src, dst), src, dst)

    # -- running time

    def step(self) -> bool:
        """Advance to the next delivery or deadline and process it. False when nothing is left."""
        times = []
        if self._queue:
            times.append(self._queue[0][0])
        for s in (self.a, self.b):
            d = s.tcb.deadline
            if d is not None and not s.tcb.deleted:
                times.append(d)
        if not times:
            return False
        self.now = max(self.now, min(times))
        while self._queue and self._queue[0][0] <= self.now:
            _, _, sender, seg = heapq.heappop(self._queue)
            dest = self.other(sender)
            if self.codec:
                src, dst = (A_ADDR, B_ADDR) if sender == "a" else (B_ADDR, A_ADDR)
                seg = self._through_codec(seg, src, dst)
            self.take(dest.name, dest.tcb.segment_arrives(seg, self.now, A_ADDR if sender == "a" else B_ADDR))
        for s in (self.a, self.b):
            d = s.tcb.deadline
            if d is not None and d <= self.now:
                self.take(s.name, s.tcb.on_timer(self.now))
        return True

    def run(
        self, until: float | None = None, steps: int = 1_000_000, stop: Callable[[], bool] | None = None
    ) -> None:
        for _ in range(steps):
            if stop is not None and stop():
                return
            if until is not None:
                nxt = self._next_time()
                if nxt is None or nxt > until:
                    self.now = max(self.now, until)
                    return
            if not self.step():
                return
        raise AssertionError("network did not settle")

    def run_until(self, cond: Callable[[], bool], limit: float = 1000.0) -> None:
        """Run until cond() holds; fail if it does not by `limit` seconds of fake time."""
        self.run(until=limit, stop=cond)
        assert cond(), f"condition not reached by t={self.now:.3f}"

    def _next_time(self) -> float | None:
        times = [self._queue[0][0]] if self._queue else []
        for s in (self.a, self.b):
            d = s.tcb.deadline
            if d is not None and not s.tcb.deleted:
                times.append(d)
        return min(times) if times else None

    # -- conveniences

    def states(self) -> tuple[State, State]:
        return self.a.tcb.state, self.b.tcb.state


def pair(
    *,
    a_isn: int = 1000,
    b_isn: int = 5000,
    a_config: TcbConfig | None = None,
    b_config: TcbConfig | None = None,
    a_port: int = 40000,
    b_port: int = 80,
    **net_kw: object,
) -> Net:
    """An active side `a` and a passive side `b` (in LISTEN), not yet connected."""
    a = Tcb(A_ADDR, a_port, B_ADDR, b_port, config=a_config, isn=FixedIsn(a_isn))
    b = Tcb(B_ADDR, b_port, config=b_config, isn=FixedIsn(b_isn))
    net = Net(a, b, **net_kw)  # type: ignore[arg-type]
    net.take("b", b.open(0.0, active=False))
    return net


def connected(**kw: object) -> Net:
    net = pair(**kw)  # type: ignore[arg-type]
    net.take("a", net.a.tcb.open(net.now))
    net.run_until(lambda: net.states() == (State.ESTABLISHED, State.ESTABLISHED))
    return net


# -- helpers for the scenario and property tests (additions; nothing above depends on them)


def send_all(net: Net, data: bytes, chunk: int, limit: float = 60.0) -> None:
    """SEND `data` from `a` in pieces of `chunk` octets, each once the send buffer has room for it, then
    run the network until `b` has received all of it (`limit` seconds of fake time for each step)."""
    a = net.a.tcb
    for at in range(0, len(data), chunk):
        net.run_until(lambda: a.send_space >= chunk, limit=net.now + limit)
        res = a.send(data[at : at + chunk], net.now)
        assert res.error is None, res.error
        net.take("a", res)
    net.run_until(lambda: len(net.b.received) >= len(data), limit=net.now + limit)


def drop_nth(net: Net, pred: DropRule, n: int = 1) -> list[TcpSegment]:
    """Drop only the n-th segment (1-based) for which pred(seg, sender) holds.

    Returns a list that receives the dropped segment, so a test can check the rule fired.
    """
    dropped: list[TcpSegment] = []
    seen = 0

    def rule(seg: TcpSegment, sender: str) -> bool:
        nonlocal seen
        if dropped or not pred(seg, sender):
            return False
        seen += 1
        if seen == n:
            dropped.append(seg)
            return True
        return False

    net.drop_rules.append(rule)
    return dropped


def record_states(net: Net) -> dict[str, list[State]]:
    """Record the states each side passes through, as seen after every result the network takes.

    Returns {"a": [...], "b": [...]}, each starting with the current state and growing by one entry
    per change. Several changes inside one call show as one step.
    """
    paths = {"a": [net.a.tcb.state], "b": [net.b.tcb.state]}
    inner = net.take

    def take(name: str, res: Result) -> Result:
        out = inner(name, res)
        for side in (net.a, net.b):
            if paths[side.name][-1] is not side.tcb.state:
                paths[side.name].append(side.tcb.state)
        return out

    net.take = take  # type: ignore[method-assign]
    return paths


def deliver(net: Net, to: str, seg: TcpSegment) -> Result:
    """Hand a crafted segment straight to one side, as if it came from the other side's address."""
    src = B_ADDR if to == "a" else A_ADDR
    side = net.side(to)
    return net.take(to, side.tcb.segment_arrives(seg, net.now, src))


def ctl(seg: TcpSegment) -> str:
    """The control bits the RFC's figures show, in their spelling: "SYN,ACK", "FIN,ACK", "RST"."""
    bits = (("SYN", Flags.SYN), ("FIN", Flags.FIN), ("RST", Flags.RST), ("ACK", Flags.ACK))
    return ",".join(name for name, flag in bits if seg.flags & flag)


def trace(net: Net, last: int | None = None) -> str:
    """The segment log, one line per segment, for assertion messages."""
    rows = net.log if last is None else net.log[-last:]
    return "\n".join(
        f"{t:10.4f} {s}->{'b' if s == 'a' else 'a'} <SEQ={seg.seq}><ACK={seg.ack}><CTL={ctl(seg)}>"
        f"<WND={seg.window}><LEN={len(seg.payload)}>"
        for t, s, seg in rows
    )


def handshaken(
    config: TcbConfig | None = None,
    *,
    iss: int = 1000,
    irs: int = 5000,
    window: int = 8000,
    mss: int = 1460,
    now: float = 0.0,
    sack: bool = False,
) -> Tcb:
    """Our TCB (198.18.0.1:40000) after an active OPEN to 198.18.0.2:80 answered by a crafted SYN,ACK
    with the peer's `window` and MSS option (and SACK-permitted with `sack`): ESTABLISHED, nothing
    sent yet."""
    tcb = Tcb(A_ADDR, 40000, B_ADDR, 80, config=config or TcbConfig(), isn=FixedIsn(iss))
    tcb.open(now)
    synack = TcpSegment(
        80,
        40000,
        seq=irs,
        ack=(iss + 1) & 0xFFFFFFFF,
        flags=Flags.SYN | Flags.ACK,
        window=window,
        options=TcpOptions(mss=mss, sack_permitted=sack),
    )
    tcb.segment_arrives(synack, now)
    assert tcb.state is State.ESTABLISHED
    return tcb
