"""The parts of the fuzzers: where random choices come from, random and mutated segments, the blind
attacker's rule, and the invariants checked after every call into a TCB.

- A `Source` makes every random choice. `RandomSource` draws from a seeded `random.Random` (fast: the
  bulk of the segments); `DataSource` draws from hypothesis (shrinkable: a failure comes back as a
  short list of small numbers). The generators are the same for both.
- `random_segment` aims its numbers at the target's windows as they are at that moment: sequence
  numbers near RCV.NXT and the right edge, acknowledgments near SND.UNA, SND.NXT and SND.UNA -
  MAX.SND.WND, SACK blocks inside and outside what was sent, timestamps near TS.Recent, bad window
  scales, and now and then numbers from anywhere. `mutate` changes a real segment a little.
- `blind_safe` tells whether a correct TCP must come through a segment unharmed: one an off-path
  attacker could send without knowing the connection's numbers exactly. An in-window RST at exactly
  RCV.NXT, an acceptable ACK in the window, a SYN to a listener: those a correct TCP takes, so they
  are not blind-safe.
- `CheckedTcb` stands in front of a Tcb: every call goes through it and is followed by the checks of
  `check_tcb` and `check_result`; a failure names the call, the state and the last calls before it.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st

from stack.tcp import Event, EventKind, Result, State, Tcb, TcbStatus, TcpError
from stack.tcp.sack import MAX_RANGES
from stack.tcp.seq import MASK, seq_add, seq_diff, seq_ge, seq_gt, seq_in, seq_le, seq_lt
from stack.tcp.types import SYNCHRONIZED
from stack.wire.tcp import NO_OPTIONS, Flags, TcpOptions, TcpSegment, build_tcp

T = TypeVar("T")

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = (
    Flags.FIN,
    Flags.SYN,
    Flags.RST,
    Flags.PSH,
    Flags.ACK,
    Flags.URG,
    Flags.ECE,
    Flags.CWR,
)
NO_FLAGS = 0
ALL_FLAGS = 0xFF

# Control-bit combinations worth trying often; any of the 256 comes up now and then as well.
FLAG_MIX = (
    ACK,
    ACK | PSH,
    ACK,
    SYN,
    SYN | ACK,
    RST,
    RST | ACK,
    FIN | ACK,
    FIN | ACK | PSH,
    FIN,
    NO_FLAGS,
    URG | ACK,
    URG | ACK | PSH,
    SYN | FIN,
    SYN | RST,
    RST | FIN,
    ALL_FLAGS,
    ACK | ECE | CWR,
    SYN | ECE | CWR,
)
# Option kinds the stack does not know (echo, echo reply, MD5, user timeout, MPTCP, fast open, experiment).
UNKNOWN_KINDS = (6, 7, 19, 28, 30, 34, 254)

# Deviations the fuzzers found and that are not fixed yet; each one named here is tolerated by the checks
# (remove it once fixed, and the fuzzers hold the fix). The four found so far are fixed: SACK blocks
# at RCV.NXT, TS.Recent taken before the RST/SYN/ACK checks, the R2 deadline's rounding, and stale
# SACK spans after a segment replaced held pieces.
KNOWN: set[str] = set()


# ---------------------------------------------------------------------------------------------- sources


class Source(Protocol):
    def int(self, lo: int, hi: int) -> int: ...

    def pick(self, options: Sequence[T]) -> T: ...

    def coin(self, p: float) -> bool: ...

    def blob(self, n: int) -> bytes: ...


class RandomSource:
    """Choices from a seeded generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def coin(self, p: float) -> bool:
        return self.rng.random() < p

    def blob(self, n: int) -> bytes:
        return self.rng.randbytes(n)


class DataSource:
    """Choices drawn from hypothesis, so that a failing run shrinks: every choice moves towards its
    simplest value (0, the first option, False)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def int(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[T]) -> T:
        return options[self.data.draw(st.integers(0, len(options) - 1))]

    def coin(self, p: float) -> bool:
        return self.data.draw(st.integers(0, 999)) >= 1000 - p * 1000

    def blob(self, n: int) -> bytes:
        return bytes(n)  # the content of the data never decides anything in the TCB


# ---------------------------------------------------------------------------------------------- the target


@dataclass
class View:
    """What the generators aim at: the numbers of the connection under attack."""

    state: State
    local_port: int
    remote_port: int
    rcv_nxt: int
    rcv_wnd: int
    snd_una: int
    snd_nxt: int
    snd_max: int
    max_snd_wnd: int
    iss: int
    irs: int
    ts_recent: int = 0
    ts_now: int = 0
    mss: int = 1460
    ts_ok: bool = False
    last_ack_sent: int = 0

    @classmethod
    def of(cls, tcb: Tcb, default_port: int = 0) -> View:
        return cls(
            tcb.state,
            tcb.local_port,
            tcb.remote_port or default_port,
            tcb.rcv_nxt,
            getattr(tcb, "_accept_wnd", tcb.rcv_wnd),  # what it takes, maybe a little past what it offers
            tcb.snd_una,
            tcb.snd_nxt,
            tcb.snd_max,
            tcb.max_snd_wnd,
            tcb.iss,
            tcb.irs,
            tcb.ts_recent,
            tcb._ts_now,
            tcb.eff_snd_mss,
            tcb.ts_ok,
            tcb._last_ack_sent,
        )

    @classmethod
    def of_status(cls, s: TcbStatus) -> View:
        return cls(
            s.state,
            s.local_port,
            s.remote_port or 0,
            s.rcv_nxt,
            s.rcv_wnd,
            s.snd_una,
            s.snd_nxt,
            s.snd_max,
            s.max_snd_wnd,
            s.iss,
            s.irs,
            mss=s.snd_mss,
            ts_ok=s.timestamps,
            last_ack_sent=s.rcv_nxt,
        )


def _delta(r: Source) -> int:
    kind = r.int(0, 9)
    if kind <= 3:
        return 0
    sign = -1 if r.coin(0.5) else 1
    if kind <= 6:
        return sign * r.int(1, 64)
    if kind <= 8:
        return sign * r.int(65, 100_000)
    return sign * r.int(1, 1 << 31)


def random_seq(r: Source, v: View) -> int:
    base = r.int(0, 7)
    if base == 7:
        return r.int(0, MASK)
    anchor = (
        v.rcv_nxt,
        v.rcv_nxt + v.rcv_wnd,  # the right edge
        v.rcv_nxt + max(1, v.rcv_wnd) // 2,
        v.rcv_nxt - 1,  # a keep-alive's
        v.rcv_nxt - max(1, v.rcv_wnd),  # a window's worth behind
        v.irs,
        v.rcv_nxt,
    )[base]
    return (anchor + _delta(r)) & MASK


def random_ack(r: Source, v: View) -> int:
    base = r.int(0, 6)
    if base == 6:
        return r.int(0, MASK)
    anchor = (v.snd_una, v.snd_nxt, v.snd_max, v.snd_una - v.max_snd_wnd, v.iss, v.snd_max + 1)[base]
    return (anchor + _delta(r)) & MASK


def random_sack_block(r: Source, v: View) -> tuple[int, int]:
    if r.coin(0.15):
        return r.int(0, MASK), r.int(0, MASK)
    flight = max(0, seq_diff(v.snd_max, v.snd_una))
    left = (v.snd_una + r.int(-3000, flight + 3000)) & MASK
    right = (left + r.int(-100, 6000)) & MASK
    if r.coin(0.3):
        left, right = (v.snd_una + r.int(0, flight)) & MASK, (v.snd_una + r.int(0, flight)) & MASK
    return left, right


def random_timestamps(r: Source, v: View) -> tuple[int, int]:
    kind = r.int(0, 5)
    if kind == 5:
        tsval = r.int(0, MASK)
    else:
        anchor = (v.ts_recent, v.ts_recent + (1 << 31) - 1, v.ts_recent - 1, 0, v.ts_recent + 1)[kind]
        tsval = (anchor + _delta(r)) & MASK
    tsecr = r.pick((v.ts_now, 0, (v.ts_now - r.int(0, 5000)) & MASK, (v.ts_now + r.int(1, 1 << 31)) & MASK))
    return tsval, tsecr


def random_options(r: Source, v: View) -> TcpOptions:
    if r.coin(0.45):
        return NO_OPTIONS
    mss = r.pick((None, None, None, 0, 1, 536, 1460, 65535)) if r.coin(0.4) else None
    wscale = r.pick((None, None, 0, 7, 14, 15, 255)) if r.coin(0.3) else None
    blocks: tuple[tuple[int, int], ...] = ()
    if r.coin(0.4):
        blocks = tuple(random_sack_block(r, v) for _ in range(r.int(1, 4)))
    ts = random_timestamps(r, v) if r.coin(0.5) else None
    unknown: tuple[tuple[int, bytes], ...] = ()
    if r.coin(0.1):
        unknown = ((r.pick(UNKNOWN_KINDS), r.blob(r.int(0, 8))),)
    return TcpOptions(
        mss=mss,
        wscale=wscale,
        sack_permitted=r.coin(0.15),
        sack_blocks=blocks,
        timestamps=ts,
        unknown=unknown,
        malformed=r.coin(0.05),
    )


def random_payload(r: Source, v: View) -> bytes:
    kind = r.int(0, 19)
    if kind <= 10:
        return b""
    if kind <= 12:
        return r.blob(1)
    if kind <= 15:
        return r.blob(r.int(2, 100))
    if kind <= 18:
        return r.blob(r.int(101, max(101, v.mss)))
    return r.blob(r.int(v.mss, 3 * v.mss))


def random_segment(r: Source, v: View) -> TcpSegment:
    """A segment from the peer's port to ours, its numbers aimed near the target's windows."""
    flags = r.pick(FLAG_MIX) if r.coin(0.85) else r.int(0, 255)
    sport, dport = v.remote_port, v.local_port
    if r.coin(0.03):
        sport, dport = r.int(0, 65535), r.int(0, 65535)
    window = r.pick((0, 1, 1024, 65535)) if r.coin(0.5) else r.int(0, 65535)
    return TcpSegment(
        sport,
        dport,
        seq=random_seq(r, v),
        ack=random_ack(r, v),
        flags=flags,
        window=window,
        urgent=0 if r.coin(0.85) else r.int(0, 65535),
        options=random_options(r, v),
        payload=random_payload(r, v),
    )


def _flip(value: int, bits: int, r: Source) -> int:
    return value ^ (1 << r.int(0, bits - 1))


def mutate(r: Source, seg: TcpSegment, v: View) -> TcpSegment:
    """One to three small changes to a real segment (none at all: an exact replay)."""
    for _ in range(r.int(1, 3)):
        kind = r.int(0, 11)
        if kind == 0:
            seg = replace(seg, seq=(seg.seq + r.int(-3, 3) * r.pick((1, 1, 100, 1460))) & MASK)
        elif kind == 1:
            seg = replace(seg, ack=(seg.ack + r.int(-3, 3) * r.pick((1, 1, 100, 1460))) & MASK)
        elif kind == 2:
            seg = replace(seg, seq=_flip(seg.seq, 32, r))
        elif kind == 3:
            seg = replace(seg, ack=_flip(seg.ack, 32, r))
        elif kind == 4:
            seg = replace(seg, flags=seg.flags ^ (1 << r.int(0, 7)))
        elif kind == 5:
            seg = replace(seg, window=_flip(seg.window, 16, r) if r.coin(0.5) else r.pick((0, 1, 65535)))
        elif kind == 6:
            seg = replace(seg, urgent=r.int(0, 65535), flags=seg.flags | URG)
        elif kind == 7:
            seg = replace(seg, options=_mutate_options(r, seg.options, v))
        elif kind == 8:
            seg = replace(seg, payload=_mutate_payload(r, seg.payload))
        elif kind == 9:
            seg = replace(seg, seq=(v.rcv_nxt + r.int(-2, 2)) & MASK)
        elif kind == 10:
            pass  # replayed as it was
        else:
            seg = replace(seg, flags=seg.flags | r.pick((RST, SYN, FIN)))
    return seg


def _mutate_options(r: Source, opts: TcpOptions, v: View) -> TcpOptions:
    kind = r.int(0, 5)
    if kind == 0:
        return NO_OPTIONS
    if kind == 1 and opts.timestamps is not None:
        tsval, tsecr = opts.timestamps
        return replace(opts, timestamps=((tsval + _delta(r)) & MASK, (tsecr + _delta(r)) & MASK))
    if kind == 2 and opts.sack_blocks:
        blocks = [((a + _delta(r)) & MASK, (b + _delta(r)) & MASK) for a, b in opts.sack_blocks]
        return replace(opts, sack_blocks=tuple(blocks))
    if kind == 3:
        return replace(opts, wscale=r.pick((0, 14, 15, 255)), mss=r.pick((None, 0, 1, 65535)))
    if kind == 4:
        return replace(opts, malformed=True)
    return replace(opts, sack_blocks=(random_sack_block(r, v),), timestamps=random_timestamps(r, v))


def _mutate_payload(r: Source, payload: bytes) -> bytes:
    kind = r.int(0, 3)
    if kind == 0:
        return payload[: r.int(0, len(payload))]
    if kind == 1:
        return payload + r.blob(r.int(1, 200))
    if kind == 2 and payload:
        i = r.int(0, len(payload) - 1)
        return payload[:i] + bytes((payload[i] ^ 0xFF,)) + payload[i + 1 :]
    return b""


def mutate_bytes(r: Source, raw: bytes) -> bytes:
    """Octet-level damage to an encoded segment: flipped bits, overwritten octets, a random data
    offset, option octets, truncation, junk appended."""
    b = bytearray(raw)
    for _ in range(r.int(1, 4)):
        kind = r.int(0, 6)
        if kind == 0 and b:
            i = r.int(0, len(b) - 1)
            b[i] ^= 1 << r.int(0, 7)
        elif kind == 1 and b:
            b[r.int(0, len(b) - 1)] = r.int(0, 255)
        elif kind == 2 and len(b) > 12:
            b[12] = (r.int(0, 15) << 4) | (b[12] & 0x0F)
        elif kind == 3 and len(b) > 20:
            for i in range(20, min(len(b), 20 + r.int(1, 40))):
                b[i] = r.int(0, 255)
        elif kind == 4:
            del b[r.int(0, len(b)) :]
        elif kind == 5:
            b += r.blob(r.int(1, 64))
        else:
            b[20:20] = bytes((r.pick((2, 3, 4, 5, 8, 0, 1, 254)), r.int(0, 40)))  # an option squeezed in
    return bytes(b)


# ------------------------------------------------------------------------------------------- the blind rule


def acceptable(v: View, seq: int, seg_len: int) -> bool:
    """The sequence number test of RFC 9293 section 3.10.7.4, Table 6, with RCV.WND of zero letting an
    ACK, URG or RST at exactly RCV.NXT through (MUST-66)."""
    nxt, wnd = v.rcv_nxt, v.rcv_wnd
    if seg_len == 0:
        return seq == nxt if wnd == 0 else seq_in(nxt, seq, seq_add(nxt, wnd))
    if wnd == 0:
        return seq == nxt  # processed for its ACK, URG or RST, the text dropped
    end = seq_add(nxt, wnd)
    return seq_in(nxt, seq, end) or seq_in(nxt, seq_add(seq, seg_len - 1), end)


def blind_safe(v: View, seg: TcpSegment, *, from_listen: bool = True) -> bool:
    """True when a correct TCP must take no harm from `seg`: it can neither reset the connection, nor
    put data into the stream, nor move SND.UNA or the send window (RFC 9293 3.10.7 with RFC 5961).

    What fails this test is what a correct TCP believes: an in-window RST at exactly RCV.NXT, a SYN to
    a listener or in SYN-RECEIVED, and any in-window segment whose ACK is acceptable. The test is
    conservative (PAWS would drop some of these; no matter)."""
    f = seg.flags
    st_ = v.state
    if st_ in (State.CLOSED, State.LISTEN):
        return not (f & SYN and not f & (RST | ACK))
    if st_ is State.SYN_SENT:
        ack_ok = bool(f & ACK) and seq_lt(v.iss, seg.ack) and seq_le(seg.ack, v.snd_max)
        if f & RST:
            return not ack_ok
        if f & SYN:
            return bool(f & ACK) and not ack_ok  # a bad ACK is answered with a RST, the SYN dropped
        return True
    if not acceptable(v, seg.seq, seg.seg_len):
        return True  # answered with an ACK (or, in SYN-RECEIVED, the SYN,ACK again) and dropped
    poisons = v.ts_ok and seg.options.timestamps and seq_le(seg.seq, v.last_ack_sent)
    if "ts-recent-before-checks" in KNOWN and poisons:
        return False  # its TSval becomes TS.Recent before the checks below drop it
    if f & RST:
        return seg.seq != v.rcv_nxt  # elsewhere in the window: a challenge ACK (RFC 5961 section 3)
    if f & SYN:
        return not (st_ is State.SYN_RECEIVED and from_listen)  # a challenge ACK (RFC 5961 section 4)
    if not f & ACK:
        return True  # dropped
    low = seq_add(v.snd_una, -v.max_snd_wnd)
    return seq_gt(seg.ack, v.snd_max) or seq_lt(seg.ack, low)  # a challenge ACK (RFC 5961 section 5)


def make_blind(r: Source, v: View, seg: TcpSegment, *, from_listen: bool = True) -> TcpSegment:
    """`seg` moved where a blind attacker's segments land when its guess is wrong: its sequence
    number outside the window (and no SYN for a listener)."""
    if v.state in (State.CLOSED, State.LISTEN):
        return replace(seg, flags=seg.flags & ~SYN | (ACK if r.coin(0.5) else NO_FLAGS))
    if v.state is State.SYN_SENT:
        return replace(seg, flags=seg.flags & ~(SYN | RST) | ACK)
    past = seq_add(v.rcv_nxt, v.rcv_wnd + seg.seg_len + r.int(1, 1 << 20))
    seg = replace(seg, seq=past if r.coin(0.5) else seq_add(v.rcv_nxt, -seg.seg_len - r.int(1, 1 << 20)))
    return seg if blind_safe(v, seg, from_listen=from_listen) else replace(seg, flags=RST | ACK)


# ---------------------------------------------------------------------------------------------- invariants

# Every state a call may lead to, in one step or several (RFC 9293 figure 5, with the returns to
# LISTEN and the resets; a TCB once deleted never comes back).
_EDGES: dict[State, set[State]] = {
    State.CLOSED: {State.LISTEN, State.SYN_SENT},
    State.LISTEN: {State.SYN_RECEIVED, State.SYN_SENT, State.CLOSED},
    State.SYN_SENT: {State.SYN_RECEIVED, State.ESTABLISHED, State.CLOSED},
    State.SYN_RECEIVED: {State.ESTABLISHED, State.FIN_WAIT_1, State.LISTEN, State.CLOSED},
    State.ESTABLISHED: {State.FIN_WAIT_1, State.CLOSE_WAIT, State.CLOSED},
    State.FIN_WAIT_1: {State.FIN_WAIT_2, State.CLOSING, State.TIME_WAIT, State.CLOSED},
    State.FIN_WAIT_2: {State.TIME_WAIT, State.CLOSED},
    State.CLOSE_WAIT: {State.LAST_ACK, State.CLOSED},
    State.CLOSING: {State.TIME_WAIT, State.CLOSED},
    State.LAST_ACK: {State.CLOSED},
    State.TIME_WAIT: {State.CLOSED},
}


def _closure() -> dict[State, frozenset[State]]:
    out: dict[State, frozenset[State]] = {}
    for start in State:
        seen = {start}
        todo = [start]
        while todo:
            for nxt in _EDGES[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        out[start] = frozenset(seen)
    return out


REACHABLE = _closure()
LIMIT = 65535 << 14  # the largest window RFC 7323 can express
A_ADDR = IPv4Address("198.18.0.1")
B_ADDR = IPv4Address("198.18.0.2")
_TIMERS_OF_TIME_WAIT = {"time-wait"}


class FuzzFailure(AssertionError):
    """An exception escaped the TCB, or an invariant broke; the message holds the reproduction."""


def _fmt_seg(seg: TcpSegment) -> str:
    bits = (("SYN", SYN), ("FIN", FIN), ("RST", RST), ("ACK", ACK), ("PSH", PSH), ("URG", URG), ("ECE", ECE))
    names = [n for n, f in (*bits, ("CWR", CWR)) if seg.flags & f]
    o = seg.options
    opts = []
    if o.mss is not None:
        opts.append(f"mss={o.mss}")
    if o.wscale is not None:
        opts.append(f"ws={o.wscale}")
    if o.sack_permitted:
        opts.append("sackok")
    if o.sack_blocks:
        opts.append("sack=" + ",".join(f"{a}-{b}" for a, b in o.sack_blocks))
    if o.timestamps is not None:
        opts.append(f"ts={o.timestamps[0]}/{o.timestamps[1]}")
    if o.unknown:
        opts.append(f"unknown={[k for k, _ in o.unknown]}")
    if o.malformed:
        opts.append("malformed")
    return (
        f"<{seg.src_port}>{seg.dst_port} SEQ={seg.seq} ACK={seg.ack} CTL={','.join(names) or '-'} "
        f"WND={seg.window} UP={seg.urgent} LEN={len(seg.payload)}" + (f" [{' '.join(opts)}]" if opts else "")
    )


def describe(tcb: Tcb) -> str:
    return (
        f"{tcb.state} SND.UNA={tcb.snd_una} SND.NXT={tcb.snd_nxt} snd_max={tcb.snd_max} "
        f"SND.WND={tcb.snd_wnd} RCV.NXT={tcb.rcv_nxt} RCV.WND={tcb.rcv_wnd} ISS={tcb.iss} IRS={tcb.irs} "
        f"sndq={len(tcb._sndq)}@{tcb._sndq_seq} rcvq={len(tcb._rcvq)} ooo={len(tcb._ooo)}/{tcb._ooo_len} "
        f"sacked={len(tcb._sb.ranges)} ts_recent={tcb.ts_recent} timers={tcb._timers}"
    )


class Journal:
    """The last calls into the TCBs of one run, for the failure message, and the run's description."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.calls: deque[tuple[str, str, float, Any, State, State]] = deque(maxlen=40)

    def note(self, who: str, call: str, now: float, arg: Any, before: State, after: State) -> None:
        self.calls.append((who, call, now, arg, before, after))

    def dump(self) -> str:
        lines = [f"run: {self.title}", "last calls (oldest first):"]
        for who, call, now, arg, before, after in self.calls:
            shown = _fmt_seg(arg) if isinstance(arg, TcpSegment) else ("" if arg is None else repr(arg))
            lines.append(f"  t={now:.4f} {who}.{call}({shown}) {before} -> {after}")
        return "\n".join(lines)


def _check(cond: bool, what: str | Callable[[], str]) -> None:
    """`what` says what broke; a function, so that its text is only made when needed."""
    if not cond:
        raise FuzzFailure(what if isinstance(what, str) else what())


def check_tcb(tcb: Tcb, *, peak_rcv_buf: int, peak_snd_buf: int, peak_ooo: int, deep: bool) -> None:
    """The invariants of one TCB between calls (plain tests first: this runs after every call). The
    bounds are the largest the user has set: lowering one does not empty a queue."""
    st_ = tcb.state
    snd_una, snd_nxt, snd_max = tcb.snd_una, tcb.snd_nxt, tcb.snd_max
    if not seq_le(snd_una, snd_nxt):
        raise FuzzFailure("SND.UNA > SND.NXT")
    if not seq_le(snd_nxt, snd_max):
        raise FuzzFailure("SND.NXT > snd_max")
    sndq = len(tcb._sndq)
    if sndq > peak_snd_buf:
        raise FuzzFailure(f"send queue {sndq} > snd_buf {peak_snd_buf}")
    held = len(tcb._rcvq) + tcb._ooo_len
    if held > peak_rcv_buf + (1 << tcb.rcv_shift) or tcb._ooo_len < 0:
        raise FuzzFailure(f"receive queue + out-of-order octets {held} > rcv_buf {peak_rcv_buf}")
    pieces, spans = len(tcb._ooo), len(tcb._ooo_spans)
    if pieces > peak_ooo or (spans > peak_ooo and "ooo-spans-stale" not in KNOWN):
        raise FuzzFailure(f"{pieces} out-of-order pieces, {spans} spans > ooo_max {peak_ooo}")
    if len(tcb._sb.ranges) > MAX_RANGES:
        raise FuzzFailure(f"scoreboard of {len(tcb._sb.ranges)} ranges")
    if not (0 <= tcb.snd_wnd <= LIMIT and 0 <= tcb.max_snd_wnd <= LIMIT):
        raise FuzzFailure(f"SND.WND {tcb.snd_wnd}, MAX.SND.WND {tcb.max_snd_wnd}")
    if not (0 <= tcb.snd_shift <= 14 and 0 <= tcb.rcv_shift <= 14):
        raise FuzzFailure("window shift out of 0..14")
    cc = tcb.cc
    if not (cc.cwnd > 0 and cc.ssthresh > 0 and math.isfinite(tcb.rto.rto) and tcb.rto.rto > 0):
        raise FuzzFailure(f"cwnd {cc.cwnd} ssthresh {cc.ssthresh} RTO {tcb.rto.rto}")
    timers = tcb._timers
    for name, t in timers.items():
        if not math.isfinite(t):
            raise FuzzFailure(f"timer {name} at {t}")
    if st_ is State.CLOSED:
        if timers or sndq:
            raise FuzzFailure(f"CLOSED with timers {timers} or queued data")
        return
    if st_ is State.LISTEN:
        if timers:
            raise FuzzFailure(f"LISTEN with timers {timers}")
        return
    if st_ is State.TIME_WAIT and set(timers) != _TIMERS_OF_TIME_WAIT:
        raise FuzzFailure(f"TIME-WAIT with timers {timers}")
    flight = seq_diff(snd_max, snd_una)
    if not 0 <= flight <= sndq + 2:
        raise FuzzFailure(f"{flight} octets in flight with {sndq} queued")
    off = seq_diff(snd_una, tcb._sndq_seq)
    if off not in (-1, 0, 1):
        raise FuzzFailure(f"SND.UNA {snd_una} is {off} from the send queue's start")
    if st_ is not State.SYN_SENT and not seq_ge(tcb._rcv_adv, tcb.rcv_nxt):
        raise FuzzFailure("the advertised right edge is left of RCV.NXT")
    if deep or len(tcb._ooo) <= 16:
        _check_ooo(tcb)
    if deep or len(tcb._sb.ranges) <= 16:
        _check_scoreboard(tcb)


def _check_ooo(tcb: Tcb) -> None:
    total = 0
    prev_end: int | None = None
    far = getattr(tcb, "_rcv_far", tcb._rcv_adv)  # the furthest right edge offered
    for seq, text, _fin in tcb._ooo:
        total += len(text)
        end = seq_add(seq, len(text))
        if not seq_ge(seq, tcb.rcv_nxt):
            raise FuzzFailure(f"out-of-order piece at {seq} is left of RCV.NXT {tcb.rcv_nxt}")
        if not seq_le(end, far):
            raise FuzzFailure(f"out-of-order piece {seq}-{end} past the window's right edge {far}")
        if prev_end is not None and not seq_le(prev_end, seq):
            raise FuzzFailure(f"out-of-order pieces overlap or are unsorted at {seq}")
        prev_end = end
    if total != tcb._ooo_len:
        raise FuzzFailure(f"out-of-order octets counted {tcb._ooo_len}, held {total}")
    prev = None
    for left, right in tcb._ooo_spans:
        if not seq_lt(left, right):
            raise FuzzFailure(f"empty SACK span {left}-{right}")
        if prev is not None and "ooo-spans-stale" not in KNOWN and not seq_lt(prev, left):
            raise FuzzFailure(f"SACK spans overlap, touch or are unsorted at {left}")
        prev = right


def _check_scoreboard(tcb: Tcb) -> None:
    prev = None
    for left, right in tcb._sb.ranges:
        if not seq_lt(left, right):
            raise FuzzFailure(f"empty scoreboard range {left}-{right}")
        if not (seq_ge(left, tcb.snd_una) and seq_le(right, tcb.snd_max)):
            raise FuzzFailure(f"scoreboard range {left}-{right} outside SND.UNA {tcb.snd_una}..{tcb.snd_max}")
        if prev is not None and not seq_lt(prev, left):
            raise FuzzFailure(f"scoreboard ranges overlap or are unsorted at {left}")
        prev = right


def check_segment_out(tcb: Tcb, seg: TcpSegment) -> None:
    """A segment the TCB asks to send: encodable, and its control bits and options make sense."""
    if not isinstance(seg, TcpSegment):
        raise FuzzFailure(f"not a segment: {seg!r}")
    if not (0 <= seg.seq <= MASK and 0 <= seg.ack <= MASK and 0 <= seg.window <= 0xFFFF):
        raise FuzzFailure(f"a header field out of range: {seg!r}")
    if not 0 <= seg.urgent <= 0xFFFF:
        raise FuzzFailure(f"urgent pointer out of range: {seg!r}")
    if seg.options is not NO_OPTIONS:  # options may not fit in 40 octets
        try:
            build_tcp(seg, A_ADDR, B_ADDR)
        except ValueError as e:
            raise FuzzFailure(f"unencodable segment {_fmt_seg(seg)}: {e}") from None
    f = int(seg.flags)
    wrong = ""
    if f & RST and (f & (SYN | FIN) or seg.payload):
        wrong = "RST with SYN, FIN or data"
    elif f & SYN and (f & FIN or seg.options.mss is None):
        wrong = "SYN with FIN or without MSS"
    elif seg.payload and not f & ACK:
        wrong = "data without ACK"
    elif len(seg.payload) > max(1, tcb.eff_snd_mss, tcb.config.gso_max):
        wrong = f"more data than the MSS {tcb.eff_snd_mss} and gso_max {tcb.config.gso_max}"
    elif len(seg.payload) > tcb.eff_snd_mss and (len(seg.payload) % tcb.eff_snd_mss and not f & PSH):
        # Segmentation offload: whole segments of the MSS, but for the end of what was queued (PSH).
        wrong = f"a large segment not cut into whole segments of the MSS {tcb.eff_snd_mss}"
    blocks = seg.options.sack_blocks
    if blocks and not wrong:
        if len(blocks) > (3 if seg.options.timestamps else 4):
            wrong = "too many SACK blocks"
        lowest = seq_ge if "sack-at-rcv-nxt" in KNOWN else seq_gt
        if any(not (seq_lt(left, right) and lowest(left, seg.ack)) for left, right in blocks):
            wrong = "a SACK block empty or not above the ACK"
    if wrong:
        raise FuzzFailure(f"{wrong}: {_fmt_seg(seg)}")


# Events that end a connection come with CLOSED in the same result.
_ENDING = {EventKind.RESET, EventKind.REFUSED, EventKind.TIMED_OUT, EventKind.TIME_WAIT_OVER}
_AFTER_FIN = {State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT, State.CLOSED}


class CheckedTcb:
    """A Tcb behind a checkpoint: every call is journalled and followed by the invariants."""

    def __init__(self, tcb: Tcb, name: str, journal: Journal) -> None:
        self._tcb = tcb
        self._name = name
        self._journal = journal
        self._calls = 0
        self._peak_rcv = tcb.config.rcv_buf
        self._peak_snd = tcb.config.snd_buf
        self._peak_ooo = tcb.config.ooo_max
        self._established = 0  # ESTABLISHED and PEER_CLOSED events since the last LISTEN
        self._peer_closed = 0
        self.events: list[Event] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tcb, name)

    @property
    def tcb(self) -> Tcb:
        return self._tcb

    # -- the calls

    def open(self, now: float, *, active: bool = True) -> Result:
        return self._call(
            "open", now, "active" if active else "passive", lambda: self._tcb.open(now, active=active)
        )

    def send(self, data: bytes, now: float, *, push: bool = False) -> Result:
        return self._call("send", now, len(data), lambda: self._tcb.send(data, now, push=push))

    def receive(self, max_bytes: int, now: float) -> Result:
        res = self._call("receive", now, max_bytes, lambda: self._tcb.receive(max_bytes, now))
        if len(res.data) > max_bytes:
            raise FuzzFailure(self._fail(f"RECEIVE({max_bytes}) returned {len(res.data)} octets"))
        return res

    def close(self, now: float) -> Result:
        return self._call("close", now, None, lambda: self._tcb.close(now))

    def abort(self, now: float) -> Result:
        return self._call("abort", now, None, lambda: self._tcb.abort(now))

    def flush(self, now: float) -> Result:
        return self._call("flush", now, None, lambda: self._tcb.flush(now))

    def configure(self, name: str, value: str, now: float) -> Result:
        """`set`: a ValueError for bad input is the answer expected, not a failure."""
        try:
            replace(self._tcb.config).set(name, value)  # on a copy: is the input good?
        except ValueError:
            return Result()
        res = self._call("configure", now, f"{name}={value}", lambda: self._tcb.configure(name, value, now))
        self._peak_rcv = max(self._peak_rcv, self._tcb.config.rcv_buf)
        self._peak_snd = max(self._peak_snd, self._tcb.config.snd_buf)
        self._peak_ooo = max(self._peak_ooo, self._tcb.config.ooo_max)
        return res

    def icmp_error(self, type_: int, code: int, seq: int, now: float, **kw: Any) -> Result:
        arg = f"type={type_} code={code} seq={seq} {kw}"
        return self._call("icmp_error", now, arg, lambda: self._tcb.icmp_error(type_, code, seq, now, **kw))

    def segment_arrives(self, seg: TcpSegment, now: float, remote_addr: IPv4Address | None = None) -> Result:
        return self._call(
            "segment_arrives", now, seg, lambda: self._tcb.segment_arrives(seg, now, remote_addr)
        )

    def on_timer(self, now: float) -> Result:
        res = self._call("on_timer", now, None, lambda: self._tcb.on_timer(now))
        d = self._tcb.deadline
        if d is not None and not d > now and not ("r2-deadline-rounding" in KNOWN and d == now):
            raise FuzzFailure(self._fail(f"on_timer({now}) left a deadline at {d}: the timer would spin"))
        return res

    def status(self, now: float) -> TcbStatus:
        try:
            s = self._tcb.status(now)
        except Exception as exc:
            raise FuzzFailure(self._fail(f"status raised {exc!r}")) from exc
        if s.state is not self._tcb.state or not all(v >= 0 for v in s.timers.values()):
            raise FuzzFailure(self._fail(f"STATUS disagrees: {s}"))
        return s

    # -- the checks

    def _fail(self, what: str) -> str:
        return f"{self._name}: {what}\n{self._name} now: {describe(self._tcb)}\n{self._journal.dump()}"

    def _call(self, call: str, now: float, arg: Any, fn: Callable[[], Result]) -> Result:
        tcb = self._tcb
        before = tcb.state
        readable = tcb.readable
        try:
            res = fn()
        except FuzzFailure:
            raise
        except Exception as exc:
            self._journal.note(self._name, call, now, arg, before, tcb.state)
            raise FuzzFailure(self._fail(f"{call} raised {exc!r} in {before}")) from exc
        self._journal.note(self._name, call, now, arg, before, tcb.state)
        self._calls += 1
        try:
            self._check_result(call, res, before, readable)
            deep = self._calls % 32 == 0
            check_tcb(
                tcb,
                peak_rcv_buf=self._peak_rcv,
                peak_snd_buf=self._peak_snd,
                peak_ooo=self._peak_ooo,
                deep=deep,
            )
        except FuzzFailure as e:
            raise FuzzFailure(self._fail(f"after {call}: {e}")) from None
        self.events.extend(res.events)
        return res

    def _check_result(self, call: str, res: Result, before: State, readable: int) -> None:
        tcb = self._tcb
        after = tcb.state
        _check(isinstance(res, Result), lambda: f"{call} returned {res!r}")
        _check(res.error is None or isinstance(res.error, TcpError), lambda: f"error {res.error!r}")
        _check(
            isinstance(res.data, bytes) and (call == "receive" or not res.data),
            "data from a call not RECEIVE",
        )
        _check(
            res.deadline == tcb.deadline,
            lambda: f"Result.deadline {res.deadline} but the TCB's is {tcb.deadline}",
        )
        _check(after in REACHABLE[before], lambda: f"{before} -> {after} is no transition of TCP")
        if before is State.CLOSED and tcb._opened and call != "open":
            _check(not res.events, lambda: f"a deleted TCB told {res.events}")
        for seg in res.segments:
            check_segment_out(tcb, seg)
        kinds = [e.kind for e in res.events]
        for e in res.events:
            if not (isinstance(e, Event) and isinstance(e.kind, EventKind) and e.count >= 0):
                raise FuzzFailure(f"event {e!r}")
        closed = kinds.count(EventKind.CLOSED)
        if before is not State.CLOSED and after is State.CLOSED:
            _check(closed == 1, lambda: f"{before} -> CLOSED with events {kinds}")
        else:
            _check(closed == 0, lambda: f"CLOSED told in {before} -> {after}")
        if closed != 1 and any(k in kinds for k in _ENDING):
            raise FuzzFailure(f"an ending without CLOSED: {kinds}")
        if EventKind.TIME_WAIT_OVER in kinds:
            _check(before is State.TIME_WAIT, lambda: f"TIME-WAIT over in {before}")
        if after is State.LISTEN and before is not State.LISTEN:
            self._established = self._peer_closed = 0
        n_est = kinds.count(EventKind.ESTABLISHED)
        if n_est:
            _check(before in (State.SYN_SENT, State.SYN_RECEIVED), lambda: f"ESTABLISHED told in {before}")
            self._established += n_est
            _check(self._established == 1, "ESTABLISHED told twice")
        elif before in (State.SYN_SENT, State.SYN_RECEIVED) and after in SYNCHRONIZED and call != "close":
            raise FuzzFailure(f"{before} -> {after} without ESTABLISHED")
        n_fin = kinds.count(EventKind.PEER_CLOSED)
        if n_fin:
            _check(after in _AFTER_FIN, lambda: f"PEER_CLOSED told with the state {after}")
            self._peer_closed += n_fin
            _check(self._peer_closed == 1, "PEER_CLOSED told twice")
        data = sum(e.count for e in res.events if e.kind is EventKind.DATA)
        _check(
            all(e.count > 0 for e in res.events if e.kind is EventKind.DATA),
            lambda: f"empty DATA event {kinds}",
        )
        if not closed:
            grew = tcb.readable - readable + len(res.data)
            _check(data == grew, lambda: f"DATA events say {data} octets, the receive queue grew by {grew}")
