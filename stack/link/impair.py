"""The impairment layer: loss, delay, reordering, duplication, corruption and a rate limit, between the
stack and any link, in either direction, seeded so that a run can be replayed.

`ImpairedLink(inner)` wraps a link (the `Link` protocol of stack/runtime.py) and is one itself. Each
direction has its own `Impairment` settings, counters and random generator: "out" is what the stack
sends, "in" is what it receives. Settings change at any time, from any thread:

    link = ImpairedLink(RawLink(...), seed=42)
    link.set("out", loss=0.02)                  # 2% random loss on what the stack sends
    link.set("both", delay=0.05, jitter=0.01)   # 50 ms +- 10 ms each way
    link.set("in", loss=0.05, burst=3)          # 5% loss in bursts of 3 packets on average
    link.counters("out").dropped                # how many were lost so far
    link.off()                                  # back to a plain pass-through

Each datagram goes through these stages, in this order:

1. loss: dropped with probability `loss`. With `burst` (the mean length of a run of losses, in
   packets) the losses come in runs, from the two-state Gilbert model (Gilbert-Elliott with every packet
   lost in the bad state and none in the good): from the bad state the chance of going good is
   1/burst; from the good state the chance of going bad is chosen so that the long-run loss is `loss`.
2. duplication: with probability `duplicate` a second copy follows the first.
3. corruption: with probability `corrupt` one random bit is flipped somewhere after the IPv4 header,
   so the TCP (or ICMP) checksum no longer holds. An arriving frame that is corrupted is marked for
   checksum verification, so the stack checks it even where the link said the device had. (This relies
   on an outgoing datagram carrying its final checksum, as the raw link's do: a link that left the
   checksum for the kernel to fill in would hide the flip.)
4. rate limit: `rate` bits per second; each datagram takes len*8/rate seconds on a bottleneck that
   sends one at a time (a token bucket one packet deep), queueing behind those before it.
5. delay: `delay` seconds, plus or minus up to `jitter` (uniform), never below zero. With jitter,
   packets overtake each other as they would on a real path.
6. reordering: with probability `reorder` a datagram is held back until the next one has gone
   (it then follows that one), or for at most `hold` seconds when no other comes.
7. a queue of at most `limit` datagrams waiting on 4-6 per direction; beyond it they are dropped
   (counted as dropped), like a router's full queue.

When a direction has nothing set and nothing waiting, it is a pass-through: one attribute check per
call. Counters count only while an impairment is set. Outbound datagrams that must wait are sent by a
small scheduler thread (a heap and a condition, no polling), started when first needed and stopped by
`close()`; inbound frames that must wait are held in a heap and handed out by a later `receive()`,
whose wait is cut short to the next one due.

Every random choice comes from the direction's own `random.Random`, seeded from the link's seed, so
the same seed and the same packets give the same losses, copies, flips and order.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any, Protocol

from stack.link.raw import Frame

DIRECTIONS = ("out", "in")
MAX_SECONDS = 60.0  # the longest delay, jitter or hold accepted: packets wait in memory


class InnerLink(Protocol):
    """What ImpairedLink needs of the link it wraps (the Link protocol of stack/runtime.py)."""

    address: IPv4Address
    mtu: int

    def send(self, datagram: bytes, dst: IPv4Address) -> None: ...

    def receive(self, timeout: float | None, wakeup: int | None = None) -> Iterable[Any]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------- settings


def percent(p: float) -> str:
    """A probability as the shell writes it: 0.05 -> '5%'."""
    return f"{p * 100:.6g}%"


def duration(s: float) -> str:
    """Seconds as the shell writes them: 0.05 -> '50ms'."""
    if abs(s) >= 1:
        return f"{s:.6g}s"
    if abs(s) >= 0.001 or s == 0:
        return f"{s * 1000:.6g}ms"
    return f"{s * 1_000_000:.6g}us"


def bitrate(bps: float) -> str:
    """Bits per second as the shell writes them: 10e6 -> '10mbit'."""
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.6g}{unit}"
    return f"{bps:.6g}bit"


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} {value!r} is not a number")
    return float(value)


def _fraction(name: str, value: object) -> None:
    v = _number(name, value)
    if not 0 <= v <= 1:
        raise ValueError(f"{name} {percent(v)} is out of range 0-100%")


def _seconds(name: str, value: object, *, positive: bool = False) -> None:
    v = _number(name, value)
    if v < 0:
        raise ValueError(f"{name} {duration(v)} must be zero or more")
    if positive and v == 0:
        raise ValueError(f"{name} must be more than zero")
    if v > MAX_SECONDS:
        raise ValueError(f"{name} {duration(v)} is more than the {MAX_SECONDS:g}s allowed")


@dataclass(frozen=True)
class Impairment:
    """What one direction does to the datagrams that pass. Probabilities are fractions (0.05 is 5%),
    times are seconds, the rate is bits per second. The defaults do nothing.

    Raises ValueError with one line naming the setting when a value is out of range.
    """

    loss: float = 0.0  # probability that a datagram is dropped
    burst: float = 0.0  # mean length of a run of losses in packets (>= 1); 0: each loss independent
    delay: float = 0.0  # seconds added to every datagram
    jitter: float = 0.0  # up to this many seconds more or less, uniformly
    reorder: float = 0.0  # probability that a datagram is held back behind the next one
    hold: float = 0.01  # the longest a reordered datagram waits for the next one, seconds
    duplicate: float = 0.0  # probability that a datagram is sent twice
    corrupt: float = 0.0  # probability that one bit past the IPv4 header is flipped
    rate: float | None = None  # bits per second; None: no limit
    limit: int = 1000  # datagrams that may wait in this direction's queue; more are dropped

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate", "corrupt"):
            _fraction(name, getattr(self, name))
        burst = _number("burst", self.burst)
        if burst != 0 and not 1 <= burst <= 1000:
            raise ValueError(f"burst {burst:g} must be 1 packet or more, up to 1000 (0: independent losses)")
        if burst and 0 < self.loss < 1 and self.loss > burst / (1 + burst):
            raise ValueError(
                f"loss {percent(self.loss)} cannot come in bursts of {burst:g}: at most "
                f"{percent(burst / (1 + burst))} can (a longer burst allows more)"
            )
        _seconds("delay", self.delay)
        _seconds("jitter", self.jitter)
        _seconds("hold", self.hold, positive=True)
        if self.rate is not None:
            rate = _number("rate", self.rate)
            if rate <= 0:
                raise ValueError(f"rate {rate:g} must be more than 0 bits per second (off: no limit)")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise ValueError(f"limit {self.limit!r} must be a whole number of datagrams, 1 or more")

    @property
    def active(self) -> bool:
        """Whether this changes anything at all."""
        return bool(
            self.loss or self.delay or self.jitter or self.reorder or self.duplicate or self.corrupt
            or self.rate is not None
        )

    def describe(self) -> str:
        """One line, in the words of the `impair` command: 'loss 5% in bursts of 3, delay 50ms ±10ms'."""
        parts = []
        if self.loss:
            bursts = f" in bursts of {self.burst:g}" if self.burst else ""
            parts.append(f"loss {percent(self.loss)}{bursts}")
        if self.delay or self.jitter:
            jitter = f" ±{duration(self.jitter)}" if self.jitter else ""
            parts.append(f"delay {duration(self.delay)}{jitter}")
        if self.reorder:
            parts.append(f"reorder {percent(self.reorder)} (held up to {duration(self.hold)})")
        if self.duplicate:
            parts.append(f"duplicate {percent(self.duplicate)}")
        if self.corrupt:
            parts.append(f"corrupt {percent(self.corrupt)}")
        if self.rate is not None:
            parts.append(f"rate {bitrate(self.rate)}")
        if parts and self.limit != Impairment.limit:
            parts.append(f"queue limit {self.limit}")
        return ", ".join(parts) or "off"


SETTINGS = tuple(f.name for f in dataclasses.fields(Impairment))


@dataclass
class ImpairCounters:
    """What one direction did, counted while an impairment was set."""

    passed: int = 0  # datagrams handed on (to the wire, or to the stack), copies included
    dropped: int = 0  # lost, or dropped on a full queue
    duplicated: int = 0  # extra copies made
    reordered: int = 0  # held back behind a later datagram
    corrupted: int = 0  # had a bit flipped
    delayed: int = 0  # had to wait (delay, jitter, rate limit or reordering)

    def describe(self) -> str:
        return "  ".join(f"{f.name} {getattr(self, f.name)}" for f in dataclasses.fields(self))


# ---------------------------------------------------------------------- one direction


@dataclass(eq=False)
class _Entry:
    """A datagram on its way: when it is due, its place in line, its bytes and what came with it."""

    due: float
    order: int
    data: bytes
    item: object  # the destination (out) or the original frame (in)
    corrupted: bool = False
    waiting: bool = True  # still in the heap to be handed on (False once handed on or replaced)

    def __lt__(self, other: _Entry) -> bool:
        return (self.due, self.order) < (other.due, other.order)


def flip_bit(data: bytes, rng: random.Random) -> bytes | None:
    """`data` with one random bit flipped after the IPv4 header (within the IPv4 total length), or
    None when there is nothing after the header to flip."""
    if len(data) < 20:
        return None
    start = (data[0] & 0x0F) * 4
    end = min(len(data), int.from_bytes(data[2:4], "big"))
    if end <= start:
        return None
    bit = rng.randrange((end - start) * 8)
    out = bytearray(data)
    out[start + bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _rng(seed: int, direction: str) -> random.Random:
    return random.Random(f"{direction}:{seed}")


class _Direction:
    """The settings, state and queue of one direction. Every method is called with `cv` held."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.cv = threading.Condition(threading.Lock())
        self.settings = Impairment()
        self.counters = ImpairCounters()
        self.rng = _rng(seed, name)
        self.bad = False  # the Gilbert model's state: in a burst of losses
        self.busy_until = 0.0  # the rate limit: when the bottleneck is free again
        self.held: _Entry | None = None  # a reordered datagram waiting for the next one
        self.heap: list[_Entry] = []
        self.order = itertools.count()
        # Read without the lock on every datagram: True when settings are set or datagrams wait.
        self.engaged = False

    def configure(self, settings: Impairment) -> None:
        self.settings = settings
        self.refresh()

    def reseed(self, seed: int) -> None:
        self.rng = _rng(seed, self.name)
        self.bad = False

    def refresh(self) -> None:
        self.engaged = self.settings.active or bool(self.heap)

    def _lost(self, s: Impairment) -> bool:
        if not s.loss:
            return False
        if s.loss >= 1:
            return True
        if not s.burst:
            return self.rng.random() < s.loss
        leave_bad = 1 / s.burst
        enter_bad = s.loss * leave_bad / (1 - s.loss)
        if self.bad:
            self.bad = self.rng.random() >= leave_bad
        else:
            self.bad = self.rng.random() < enter_bad
        return self.bad

    def process(self, data: bytes, item: object, now: float) -> list[_Entry]:
        """What becomes of one datagram: the entries to hand on, in order. Those due by `now` go at
        once (in the order given); the caller queues the others with `push`."""
        s = self.settings
        c = self.counters
        rng = self.rng
        if self._lost(s):
            c.dropped += 1
            return []
        copies = 1
        if s.duplicate and rng.random() < s.duplicate:
            copies = 2
            c.duplicated += 1
        out: list[_Entry] = []
        for _ in range(copies):
            entry = _Entry(now, next(self.order), data, item)
            if s.corrupt and rng.random() < s.corrupt:
                flipped = flip_bit(data, rng)
                if flipped is not None:
                    entry.data, entry.corrupted = flipped, True
                    c.corrupted += 1
            if s.rate is not None:
                self.busy_until = max(now, self.busy_until) + len(entry.data) * 8 / s.rate
                entry.due = self.busy_until
            if s.delay or s.jitter:
                entry.due += max(0.0, s.delay + (rng.uniform(-s.jitter, s.jitter) if s.jitter else 0.0))
            held = self.held
            if held is not None:
                self.held = None
                if held.waiting:  # not yet let go by its hold time: it follows this one
                    held.waiting = False
                    out.append(entry)
                    out.append(_Entry(entry.due, next(self.order), held.data, held.item, held.corrupted))
                    continue
            if s.reorder and rng.random() < s.reorder:
                c.reordered += 1
                entry.due += s.hold
                self.held = entry
            out.append(entry)
        return out

    def push(self, entry: _Entry) -> bool:
        """Queue an entry that is not yet due; False (and counted as dropped) when the queue is full."""
        if len(self.heap) >= self.settings.limit:
            self.counters.dropped += 1
            entry.waiting = False
            return False
        self.counters.delayed += 1
        heapq.heappush(self.heap, entry)
        self.engaged = True
        return True

    def pop_due(self, now: float) -> list[_Entry]:
        """Take every queued entry due by `now`, in order (entries replaced meanwhile are skipped)."""
        due = []
        while self.heap and self.heap[0].due <= now:
            entry = heapq.heappop(self.heap)
            if entry.waiting:
                entry.waiting = False
                due.append(entry)
        # a held datagram let go by its hold time must not be released again by the next datagram
        if self.held is not None and not self.held.waiting:
            self.held = None
        self.refresh()
        return due

    def next_due(self) -> float | None:
        while self.heap and not self.heap[0].waiting:
            heapq.heappop(self.heap)
        self.refresh()
        return self.heap[0].due if self.heap else None


# ---------------------------------------------------------------------- the link


class ImpairedLink:
    """A link that impairs what passes through another: `set` the impairment of each direction.

    It has the inner link's `address`, `mtu` and `fileno()` (and any other attribute of it). `send` may be
    called from several threads; `set`, `off`, `reseed` and `counters` from any thread.
    """

    def __init__(
        self,
        inner: InnerLink,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wrap `inner`. `seed` makes the random choices repeatable (default: a random seed, shown by
        `seed`); `clock` gives the time in seconds and must run with real time (the scheduler waits
        on it)."""
        self.inner = inner
        self.clock = clock
        self.seed = int.from_bytes(os.urandom(4), "big") >> 1 if seed is None else seed
        self._out = _Direction("out", self.seed)
        self._in = _Direction("in", self.seed)
        self._wire = threading.Lock()  # inner.send from the caller and from the scheduler, one at a time
        self._thread: threading.Thread | None = None
        self._closing = False
        self.errors: list[str] = []  # the last few send failures of the scheduler thread

    # ------------------------------------------------------------------ the inner link's face

    @property
    def address(self) -> IPv4Address:
        return self.inner.address

    @property
    def mtu(self) -> int:
        return self.inner.mtu

    @property
    def offload(self) -> bool:
        """Whether the stack may hand over TCP datagrams longer than the MSS (`send_tcp`): only when the
        inner link can cut them and nothing is impaired or waiting either way, since an impairment
        must see, drop, copy, corrupt and delay single segments as a wire would."""
        return bool(getattr(self.inner, "offload", False)) and not self.active and not self._out.engaged

    @property
    def gso_max(self) -> int:
        """The inner link's largest TCP payload for one `send_tcp` (0 when it has none)."""
        return int(getattr(self.inner, "gso_max", 0))

    def __getattr__(self, name: str) -> Any:
        """Anything else (fileno, interface, ...) is the inner link's."""
        if name == "inner":  # not yet set: during construction or unpickling
            raise AttributeError(name)
        return getattr(self.inner, name)

    # ------------------------------------------------------------------ settings

    def _directions(self, direction: str) -> list[_Direction]:
        if direction == "both":
            return [self._out, self._in]
        if direction == "out":
            return [self._out]
        if direction == "in":
            return [self._in]
        raise ValueError(f"direction {direction!r} is one of out, in, both")

    def set(self, direction: str, **changes: Any) -> None:
        """Change some settings of one direction ("out", "in" or "both"), keeping the others:
        `link.set("out", loss=0.02)`. Names and units are those of `Impairment`. Raises ValueError
        (and changes nothing) for an unknown name or a value out of range."""
        unknown = [name for name in changes if name not in SETTINGS]
        if unknown:
            raise ValueError(f"unknown impairment {unknown[0]!r} (known: {', '.join(SETTINGS)})")
        dirs = self._directions(direction)
        new = [dataclasses.replace(d.settings, **changes) for d in dirs]  # validates all first
        for d, settings in zip(dirs, new, strict=True):
            with d.cv:
                d.configure(settings)

    def apply(self, direction: str, settings: Impairment) -> None:
        """Replace the settings of one direction ("out", "in" or "both") as a whole."""
        for d in self._directions(direction):
            with d.cv:
                d.configure(settings)

    def off(self, direction: str = "both") -> None:
        """No impairment any more; datagrams already waiting still go when due."""
        self.apply(direction, Impairment())

    def settings(self, direction: str) -> Impairment:
        (d,) = self._directions(direction)
        return d.settings

    @property
    def active(self) -> bool:
        """Whether any impairment is set, either way."""
        return self._out.settings.active or self._in.settings.active

    def reseed(self, seed: int) -> None:
        """Start both directions' random choices again from `seed` (and out of any loss burst)."""
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed {seed!r} is not a whole number")
        self.seed = seed
        for d in (self._out, self._in):
            with d.cv:
                d.reseed(seed)

    def counters(self, direction: str) -> ImpairCounters:
        """A copy of one direction's counters."""
        (d,) = self._directions(direction)
        with d.cv:
            return dataclasses.replace(d.counters)

    def reset_counters(self) -> None:
        for d in (self._out, self._in):
            with d.cv:
                d.counters = ImpairCounters()

    # ------------------------------------------------------------------ out

    def send(self, datagram: bytes, dst: IPv4Address) -> None:
        """Send one IPv4 datagram through the outbound impairment."""
        d = self._out
        if not d.engaged:
            self.inner.send(datagram, dst)
            return
        now = self.clock()
        with d.cv:
            if self._closing:
                return
            entries = d.process(datagram, dst, now)
            at_once = [e for e in entries if e.due <= now]
            top = d.heap[0] if d.heap else None
            for e in entries:
                if e.due > now:
                    d.push(e)
            if d.heap and d.heap[0] is not top:
                self._start_scheduler()
                d.cv.notify()
            d.counters.passed += len(at_once)
        if at_once:
            with self._wire:
                for e in at_once:
                    self.inner.send(e.data, e.item)  # type: ignore[arg-type]

    def send_tcp(self, datagram: bytes, dst: IPv4Address, ip_header_len: int, mss: int) -> None:
        """A TCP datagram for the inner link to cut into segments of `mss` (PacketLink.send_tcp). Should
        an impairment have been set since the caller read `offload`, it is cut here instead (in
        software, checksums completed) and each segment goes through `send` and the impairment."""
        if self.offload:
            self.inner.send_tcp(datagram, dst, ip_header_len, mss)  # type: ignore[attr-defined]
            return
        from stack.link.packet import segment

        for piece in segment(datagram, ip_header_len, mss):
            self.send(piece, dst)

    def _start_scheduler(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._schedule_loop, name="tcpsh-impair", daemon=True)
            self._thread.start()

    def _schedule_loop(self) -> None:
        """Send each queued outbound datagram when it is due; sleep until the next one, or until woken."""
        d = self._out
        while True:
            with d.cv:
                while True:
                    if self._closing:
                        return
                    due_at = d.next_due()
                    now = self.clock()
                    if due_at is not None and due_at <= now:
                        break
                    d.cv.wait(None if due_at is None else due_at - now)
                due = d.pop_due(now)
                d.counters.passed += len(due)
            with self._wire:
                for e in due:
                    try:
                        self.inner.send(e.data, e.item)  # type: ignore[arg-type]
                    except OSError as err:
                        self.errors = [*self.errors[-9:], f"send to {e.item}: {err.strerror or err}"]

    # ------------------------------------------------------------------ in

    def receive(self, timeout: float | None, wakeup: int | None = None) -> Iterable[Any]:
        """Wait up to `timeout` for frames from the inner link, and return those due after the inbound
        impairment: frames it holds back come out of a later call, which waits no longer than until
        the next one is due."""
        d = self._in
        if not d.engaged:
            return self.inner.receive(timeout, wakeup)
        with d.cv:
            due_at = d.next_due()
        if due_at is not None:
            left = max(0.0, due_at - self.clock())
            timeout = left if timeout is None else min(timeout, left)
        frames = list(self.inner.receive(timeout, wakeup))
        now = self.clock()
        out: list[Any] = []
        with d.cv:
            ready: list[_Entry] = []
            for frame in frames:
                for e in d.process(frame.data, frame, now):
                    if e.due <= now:
                        ready.append(e)
                    else:
                        d.push(e)
            ready = d.pop_due(now) + ready
            d.counters.passed += len(ready)
        for e in ready:
            out.append(Frame(e.data, True) if e.corrupted else e.item)
        return out

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Stop the scheduler thread (datagrams still waiting are dropped) and close the inner link."""
        with self._out.cv:
            self._closing = True
            self._out.cv.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.inner.close()
