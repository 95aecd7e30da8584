"""A hostile network against the stack, from the Linux side of the lab (issue 7, "How it is proven"):
forged RSTs and SYNs against established transfers each way (RFC 5961), a flood of 10,000 spoofed SYNs
against a passive OPEN while a real client connects (RFC 4987), ICMP fragmentation needed in the middle
of a transfer (RFC 1191), and ICMP unreachable messages judged by the sequence number they quote
(RFC 5927). Every transfer is checked by the SHA-256 of every byte.

The attacks are built with scapy, a packet library the project does not write, and written from the
kernel's namespace straight onto the lab's veth through a packet socket: the stack sees them as it
would see them from a host or router on the wire. Forged segments carry the kernel side's address and
port; their sequence numbers are aimed from the live STATUS of the connection under attack.

Network rule: traffic only inside the lab these tests build (198.18.0.0/15). The spoofed SYN sources
are in 198.19.0.0/16, part of that range; the stack's answers to them go to the kernel's namespace
(which forwards nothing) over the lab's veth, by a route of the test's own. No test sleeps in place
of a condition: each waits for its packets to reach the stack (seen through Stack.tap), on a STATUS
field, on an event, or on a program's output. Times are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import pytest

from stack.lab import Lab
from stack.runtime import Stack, StackError
from stack.services import pattern, pattern_bytes, pattern_sha256
from stack.tcp import Event, EventKind, State, TcbStatus
from stack.tcp.seq import seq_diff
from stack.wire.tcp import Flags, TcpSegment
from tests.interop.conftest import Wire, wait_for
from tests.interop.transfer import (
    SINK_SERVER,
    KernelPython,
    Seen,
    Trace,
    Transfer,
    kernel_ns_run,
    nft_in_kernel_ns,
    one_mss_segments,
    receive_from_kernel,
    send_to_kernel,
    stack_ns_run,
)

scapy = pytest.importorskip("scapy.all")

pytestmark = pytest.mark.root

UP, DOWN = "stack-to-linux", "linux-to-stack"
SIZE = 8_000_000  # octets each transfer carries


@pytest.fixture(scope="module", autouse=True)
def wire_sized_segments(stack_lab: Lab) -> Iterator[None]:
    """The kernel sends segments of one MSS each (gso_max_segs 1 on its veth), as a real path carries
    them, for this module's tests."""
    with one_mss_segments(stack_lab):
        yield


# -- the attacker's wire, and what reaches the stack --------------------------------------------------------


def connection_news(stack: Stack) -> list[tuple[str, Event]]:
    news: list[tuple[str, Event]] = []
    stack.subscribe(lambda cid, event: news.append((cid, event)))
    return news


def kinds(news: list[tuple[str, Event]], cid: str) -> list[EventKind]:
    return [e.kind for c, e in list(news) if c == cid]


def first_established(news: list[tuple[str, Event]]) -> str:
    """The id of the first connection to report ESTABLISHED (each test opens one at a time)."""
    found: list[str] = []

    def seen() -> bool:
        found[:] = [c for c, e in list(news) if e.kind is EventKind.ESTABLISHED][:1]
        return bool(found)

    wait_for(seen, 10, "a connection to be established")
    return found[0]


class Attack:
    """Run `fn` beside a transfer, in a thread of its own; `join()` raises what it raised (a failed
    assertion, pytest.fail from wait_for)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn,), name="attack", daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:
            self.error = e

    def join(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the attack did not end within {timeout:g} s"
        if self.error is not None:
            raise self.error


def seconds_since(start: float) -> float:
    return round(time.monotonic() - start, 2)


# -- forged RSTs and SYNs (RFC 5961) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Forgery:
    """A RST or SYN from the kernel side's address and port, at sequence number `seq`."""

    what: str  # how it was aimed, for the messages: "RST at RCV.NXT+1000"
    flags: int  # Flags.RST or Flags.SYN
    seq: int
    inside: bool  # aimed inside the receive window

    def packet(self, lab: Lab, st: TcbStatus) -> object:
        ip = scapy.IP(src=str(lab.kernel_addr), dst=str(lab.stack_addr))
        flags = "R" if self.flags == Flags.RST else "S"
        return ip / scapy.TCP(
            sport=st.remote_port, dport=st.local_port, flags=flags, seq=self.seq, window=8192
        )


def aimed(st: TcbStatus, flag: int, offset: int, name: str, *, inside: bool) -> Forgery:
    sign = "+" if offset >= 0 else "-"
    where = f"{Flags.names(flag)} at RCV.NXT{sign}{name}"
    return Forgery(where, int(flag), (st.rcv_nxt + offset) % (1 << 32), inside)


def out_of_window(st: TcbStatus) -> list[Forgery]:
    """Below RCV.NXT (data already taken) and a quarter of the sequence space above it: outside the
    window whatever arrives meanwhile, for RCV.NXT only moves up and the window is under 1 GiB."""
    return [
        aimed(st, Flags.RST, -1, "1", inside=False),
        aimed(st, Flags.RST, -(1 << 30), "2^30", inside=False),
        aimed(st, Flags.RST, 1 << 30, "2^30", inside=False),
        aimed(st, Flags.SYN, -1, "1", inside=False),
        aimed(st, Flags.SYN, 1 << 30, "2^30", inside=False),
    ]


def in_window(st: TcbStatus, moving: bool) -> list[Forgery]:
    """In the window, never at RCV.NXT for a RST. While Linux sends (`moving`), RCV.NXT runs ahead of
    the STATUS the aim was taken from, so the forgeries go to the far half of the window, where the
    data arriving before them cannot reach; while the stack sends, RCV.NXT stands still and they go
    next to it too (and a SYN exactly at it, which RFC 793 would have taken as a reset)."""
    wnd = st.rcv_wnd
    if moving:
        return [
            aimed(st, Flags.RST, wnd // 2, "wnd/2", inside=True),
            aimed(st, Flags.RST, wnd - 1, "wnd-1", inside=True),
            aimed(st, Flags.SYN, wnd // 2 + 1, "wnd/2+1", inside=True),
            aimed(st, Flags.SYN, wnd - 2, "wnd-2", inside=True),
        ]
    return [
        aimed(st, Flags.RST, 1, "1", inside=True),
        aimed(st, Flags.RST, 1000, "1000", inside=True),
        aimed(st, Flags.RST, wnd // 2, "wnd/2", inside=True),
        aimed(st, Flags.SYN, 0, "0", inside=True),
        aimed(st, Flags.SYN, wnd // 2 + 1, "wnd/2+1", inside=True),
    ]


def progress(st: TcbStatus, direction: str) -> int:
    """Octets of the transfer delivered so far: acknowledged (stack sending) or received (Linux sending)."""
    if direction == UP:
        return seq_diff(st.snd_una, st.iss) - 1
    return seq_diff(st.rcv_nxt, st.irs) - 1


@dataclass
class Volley:
    at: int  # octets of the transfer delivered when it was aimed
    sent: list[Forgery]
    challenge_acks: int  # what the stack's counters moved by
    suppressed: int


def forge_during(
    stack: Stack, lab: Lab, wire: Wire, segments: Trace, news: list[tuple[str, Event]], direction: str
) -> tuple[list[Volley], list[Volley]]:
    """At 1 MB and again at 3 MB of the transfer: first a volley out of the window, then one in it,
    each aimed from a fresh STATUS; each is waited for at the stack and its effect on the challenge-ACK
    counters read. Returns (out-of-window volleys, in-window volleys)."""
    cid = first_established(news)
    outside: list[Volley] = []
    inside: list[Volley] = []

    def fire(st: TcbStatus, forgeries: list[Forgery]) -> Volley:
        mark = len(segments)
        wire.send(*(f.packet(lab, st) for f in forgeries))
        wait_for(lambda: arrived(segments, mark, st.local_port, forgeries), 10, f"the forgeries {forgeries}")
        after = stack.status(cid)
        return Volley(
            progress(st, direction),
            forgeries,
            after.challenge_acks - st.challenge_acks,
            after.challenge_acks_suppressed - st.challenge_acks_suppressed,
        )

    def window_open(into: list[TcbStatus]) -> bool:
        """A STATUS with the window open wide enough that its far half is well ahead of the data."""
        st = stack.status(cid)
        into[:] = [st]
        return st.rcv_wnd >= 256 * 1024

    aim: list[TcbStatus] = []
    for mark in (1_000_000, 3_000_000):
        wait_for(lambda m=mark: progress(stack.status(cid), direction) >= m, 30, f"{mark} octets through")
        st = stack.status(cid)
        assert st.state is State.ESTABLISHED, st.state
        outside.append(fire(st, out_of_window(st)))
        wait_for(lambda: window_open(aim), 10, "the stack's receive window to be open")
        inside.append(fire(aim[0], in_window(aim[0], moving=direction == DOWN)))
        assert stack.status(cid).state is State.ESTABLISHED
    return outside, inside


@pytest.mark.parametrize("direction", [UP, DOWN])
def test_forged_resets_and_syns_do_not_break_a_transfer(
    direction: str, lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython, wire: Wire
) -> None:
    """RSTs and SYNs forged from Linux's address and port while 8 MB go one way: a SYN anywhere and a
    RST in the window each bring one challenge ACK (RFC 5961 sections 3.2 and 4.2), a RST outside it
    is dropped without one; the connection is never reset and every octet arrives. The limit on
    challenge ACKs a second (section 7, tests/core/test_hardening.py) is raised here so that every
    answer can be counted."""
    stack = lab_stack
    stack.configure_default("challenge-ack-limit", "1000")
    segments = Trace(stack)
    news = connection_news(stack)
    volleys: dict[str, list[Volley]] = {}

    def attack() -> None:
        volleys["outside"], volleys["inside"] = forge_during(
            stack, stack_lab, wire, segments, news, direction
        )

    start = time.monotonic()
    attacker = Attack(attack)
    t: Transfer = (
        send_to_kernel(stack, stack_lab, kernel_python, SIZE)
        if direction == UP
        else receive_from_kernel(stack, stack_lab, SIZE)
    )
    attacker.join()
    print(f"\n{direction}: {SIZE} octets in {t.seconds:.2f} s, test {seconds_since(start)} s")
    for v in volleys["outside"] + volleys["inside"]:
        print(
            f"  at {v.at}: {[f.what for f in v.sent]} -> {v.challenge_acks} challenge ACKs, "
            f"{v.suppressed} suppressed"
        )

    assert t.intact, f"{t.count} octets, SHA-256 {t.digest}"
    broken = [k for k in kinds(news, t.cid) if k in (EventKind.RESET, EventKind.TIMED_OUT)]
    assert not broken, f"the connection was broken: {broken}"
    for v in volleys["outside"]:
        # RFC 5961: a RST out of the window is dropped in silence (3.2); a SYN gets a challenge ACK
        # whatever its sequence number (4.2).
        expected = (len(challenged(v.sent)), 0)
        assert (v.challenge_acks, v.suppressed) == expected, f"out of the window at {v.at}: {v}"
    for v in volleys["inside"]:
        assert (v.challenge_acks, v.suppressed) == (len(v.sent), 0), f"in the window at {v.at}: {v}"
    total = sum(len(challenged(v.sent)) for v in volleys["outside"] + volleys["inside"])
    assert t.status.challenge_acks == total, t.status
    assert stack.errors == [], stack.errors


def arrived(trace: Trace, index: int, port: int, forgeries: list[Forgery]) -> bool:
    """Every one of `forgeries` has reached the stack since the `index`-th segment (the tap runs under
    the stack's lock: once a segment is in the trace, what it did is done)."""
    came = Counter((int(s.flags), s.seq) for s in trace.since(index, port) if not s.out)
    wanted = Counter((f.flags, f.seq) for f in forgeries)
    return all(came[key] >= n for key, n in wanted.items())


def challenged(forgeries: list[Forgery]) -> list[Forgery]:
    """The forgeries RFC 5961 answers with a challenge ACK: a RST in the window, a SYN anywhere."""
    return [f for f in forgeries if f.inside or f.flags == Flags.SYN]


def answers(log: list[Seen], forgeries: list[Forgery]) -> list[list[Seen]] | None:
    """What the stack sent after each forgery and before the next, from `log` (one connection's
    segments, on a connection where nothing else moves); None until the last one has been answered."""
    keys = [(f.flags, f.seq) for f in forgeries]
    found: list[list[Seen]] = []
    for s in log:
        if not s.out and (int(s.flags), s.seq) in keys[len(found) : len(found) + 1]:
            found.append([])
        elif s.out and found:
            found[-1].append(s)
    return found if len(found) == len(forgeries) and found[-1] else None


QUIET_SIZE = 1_000_000


def test_each_forgery_answered_as_rfc_5961_says_on_a_quiet_connection(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython, wire: Wire
) -> None:
    """Between two halves of an upload, with everything sent acknowledged and nothing moving, each
    forgery's answer is seen on its own: a RST out of the window gets none (RFC 5961 section 3.2: it
    is silently dropped); a SYN anywhere, or a RST in the window, gets one challenge ACK,
    <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (sections 3.2 and 4.2). Then the upload goes on, intact."""
    stack = lab_stack
    segments = Trace(stack)
    news = connection_news(stack)
    server = kernel_python(SINK_SERVER, stack_lab.kernel_addr, 0)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    pieces, handed = pattern(2 * QUIET_SIZE), 0
    for piece in pieces:  # the first half
        handed += stack.send(cid, piece, timeout=30)
        if handed >= QUIET_SIZE:
            break

    def quiet() -> bool:
        st = stack.status(cid)
        return st.send_queued == st.send_unacked == 0 and not st.timers

    wait_for(quiet, 10, "everything sent to be acknowledged, and no timer running")
    st = stack.status(cid)
    forgeries = [
        *out_of_window(st),
        aimed(st, Flags.RST, 1, "1", inside=True),
        aimed(st, Flags.SYN, 0, "0", inside=True),
        aimed(st, Flags.SYN, st.rcv_wnd - 1, "wnd-1", inside=True),
        aimed(st, Flags.RST, st.rcv_wnd // 2, "wnd/2", inside=True),  # answered: the wait ends there
    ]
    mark = len(segments)
    wire.send(*(f.packet(stack_lab, st) for f in forgeries))
    answered: list[list[list[Seen]]] = []

    def all_answered() -> bool:
        found = answers(segments.since(mark, st.local_port), forgeries)
        answered[:] = [found] if found is not None else []
        return found is not None

    wait_for(all_answered, 10, "the last forgery's challenge ACK")
    after = stack.status(cid)
    challenge = (Flags.ACK, st.snd_nxt, st.rcv_nxt, 0)
    for forgery, sent in zip(forgeries, answered[0], strict=True):
        got = [(s.flags & ~Flags.PSH, s.seq, s.ack, s.length) for s in sent]
        if forgery.flags == Flags.RST and not forgery.inside:
            assert got == [], f"{forgery.what} was answered: {got}"
        else:
            assert got == [challenge], f"{forgery.what}: {got}, not one ACK {challenge}"
    assert after.challenge_acks - st.challenge_acks == len(challenged(forgeries)), after
    assert (after.state, after.snd_nxt, after.rcv_nxt) == (State.ESTABLISHED, st.snd_nxt, st.rcv_nxt)

    for piece in pieces:
        stack.send(cid, piece, timeout=30)
    stack.close(cid)
    count, digest = server.expect("EOF ", timeout=30)
    assert (int(count), digest) == (2 * QUIET_SIZE, pattern_sha256(2 * QUIET_SIZE))
    assert not {EventKind.RESET, EventKind.TIMED_OUT} & set(kinds(news, cid)), kinds(news, cid)


def test_a_reset_exactly_at_rcv_nxt_resets_the_connection(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython, wire: Wire
) -> None:
    """The control for the tests above: the same forgery, aimed the same way at RCV.NXT itself, in the
    middle of an upload, resets the connection (RFC 5961 section 3.2, case 1)."""
    stack = lab_stack
    segments = Trace(stack)
    news = connection_news(stack)
    server = kernel_python(SINK_SERVER, stack_lab.kernel_addr, 0)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    pieces = pattern(SIZE)
    for piece in pieces:
        stack.send(cid, piece, timeout=30)
        if progress(stack.status(cid), UP) >= 1_000_000:
            break
    st = stack.status(cid)
    assert st.state is State.ESTABLISHED and st.send_unacked + st.send_queued > 0, st
    rst = aimed(st, Flags.RST, 0, "0", inside=True)
    mark = len(segments)
    wire.send(rst.packet(stack_lab, st))
    wait_for(lambda: arrived(segments, mark, st.local_port, [rst]), 10, "the forged RST")
    assert stack.wait_state(cid, State.CLOSED, 5), stack.status(cid).state
    assert EventKind.RESET in kinds(news, cid), kinds(news, cid)
    with pytest.raises(StackError, match="connection reset"):
        stack.send(cid, next(pieces), timeout=5)


# -- a SYN flood against a passive OPEN (RFC 4987) ------------------------------------------------------

FLOOD = 10_000
SPOOFED = IPv4Network("198.19.0.0/16")
FLOOD_PORT = 8080
ECHOED = 200_000
SYN_RECEIVED_TIMEOUT = 3.0  # seconds a half-open connection is kept: short, so that the test sees them go


@pytest.fixture
def spoofed_sources_routed(stack_lab: Lab) -> Iterator[None]:
    """The stack's namespace routes 198.19.0.0/16 through the kernel's side, as a host's default route
    would: the stack's SYN,ACKs to the spoofed sources go over the veth, and the kernel's namespace,
    which forwards nothing, drops them."""
    via = str(stack_lab.kernel_addr)
    assert kernel_ns_run(stack_lab, ["sysctl", "-n", "net.ipv4.ip_forward"]).strip() == "0"
    stack_ns_run(stack_lab, ["ip", "route", "add", str(SPOOFED), "via", via])
    try:
        yield
    finally:
        stack_ns_run(stack_lab, ["ip", "route", "del", str(SPOOFED), "via", via])


def spoofed_syns(lab: Lab, port: int, n: int, seed: int) -> list[bytes]:
    """`n` SYNs from random addresses of 198.19.0.0/16 and random ports, with random sequence numbers
    and an MSS option: one scapy packet, its fields changed and the whole built again for each."""
    rng = random.Random(seed)
    base = int(SPOOFED.network_address)
    syn = scapy.IP(dst=str(lab.stack_addr)) / scapy.TCP(
        dport=port, flags="S", window=64240, options=[("MSS", 1460)]
    )
    built = []
    for _ in range(n):
        syn.src = str(IPv4Address(base + rng.randrange(1, 65535)))
        syn[scapy.TCP].sport = rng.randrange(1024, 65536)
        syn[scapy.TCP].seq = rng.getrandbits(32)
        built.append(bytes(syn))  # checksums computed afresh
    return built


class SynArrivals:
    """The SYNs reaching the stack's port, in order, through Stack.tap: which were the flood's, and
    when the flood's last one came."""

    def __init__(self, stack: Stack, port: int, last_seq: int) -> None:
        self.port, self.last_seq = port, last_seq
        self.order: list[bool] = []  # True: a spoofed SYN of the flood; False: the real client's
        self.last_at: float | None = None
        stack.tap(self._tap)

    def _tap(self, direction: str, src: IPv4Address, dst: object, seg: TcpSegment, *_: object) -> None:
        if direction != "in" or seg.dst_port != self.port or not seg.flags & Flags.SYN:
            return
        spoofed = src in SPOOFED
        self.order.append(spoofed)
        if spoofed and seg.seq == self.last_seq:
            self.last_at = time.monotonic()

    def client_amid_flood(self) -> tuple[int, int]:
        """(flood SYNs before the client's first SYN, flood SYNs after it)."""
        order = list(self.order)
        first = order.index(False)
        return first, sum(order[first:])


def test_a_syn_flood_does_not_keep_a_real_client_out(
    lab_stack: Stack, stack_lab: Lab, wire: Wire, spoofed_sources_routed: None
) -> None:
    """10,000 spoofed SYNs as fast as one packet socket sends them, against a passive OPEN with the
    default backlog (128). A real client of the kernel's namespace connects in the middle of the flood
    (its SYN reaches the stack between the flood's) and gets back what it sent; the passive OPEN never
    holds more half-open connections than its backlog and answers the rest with SYN cookies; the
    flood's half-open connections time out; the stack's threads live through it all."""
    stack = lab_stack
    config = dataclasses.replace(stack.config, syn_received_timeout=SYN_RECEIVED_TIMEOUT)
    assert config.backlog == 128
    start = time.monotonic()
    syns = spoofed_syns(stack_lab, FLOOD_PORT, FLOOD, seed=4987)
    built = seconds_since(start)
    arrivals = SynArrivals(stack, FLOOD_PORT, int(scapy.IP(syns[-1])[scapy.TCP].seq))
    cid = stack.listen(FLOOD_PORT, config=config)
    half_open_seen = [0]

    def watch_half_open() -> int:
        n = stack.status(cid).half_open
        half_open_seen[0] = max(half_open_seen[0], n)
        return n

    # The stack's side: the passive OPEN's connection, once a handshake completes, sends back all it
    # received, and closes when the test says.
    release = threading.Event()
    times: dict[str, float] = {}

    def echo() -> None:
        assert stack.wait_state(cid, State.ESTABLISHED, 60), stack.status(cid).state
        times["established"] = seconds_since(start)
        data = stack.receive(cid, 1 << 30, timeout=60, until_close=True)
        stack.send(cid, data, timeout=30)
        assert release.wait(60)
        stack.close(cid)

    echoer = Attack(echo)
    halfway = threading.Event()

    def flood() -> None:
        times["flood start"] = seconds_since(start)
        for i, syn in enumerate(syns):
            if i == FLOOD // 2:
                halfway.set()
            wire.send(syn)
        times["flood sent"] = seconds_since(start)

    flooder = Attack(flood)
    assert halfway.wait(30), "the flood never got halfway"
    with stack_lab.enter_kernel_ns():
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        times["client start"] = seconds_since(start)
        payload = pattern_bytes(ECHOED)
        client.settimeout(30)
        client.connect((str(stack_lab.stack_addr), FLOOD_PORT))
        times["client connected"] = seconds_since(start)
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        back = bytearray()
        while len(back) < ECHOED and (piece := client.recv(1 << 16)):
            back += piece
            watch_half_open()
        times["echo back"] = seconds_since(start)
        flooder.join()
        wait_for(lambda: arrivals.last_at is not None, 30, "the flood's last SYN to reach the stack")
        during = stack.status(cid)
        # SYN-RECEIVED is bounded in time: the flood's half-open connections time out (the timer
        # thread at work), while the connection they could not keep out stays open.
        wait_for(lambda: watch_half_open() == 0, 4 * SYN_RECEIVED_TIMEOUT, "every half-open one to go")
        times["half-open timed out"] = seconds_since(start)
        release.set()
        echoer.join()
        assert client.recv(1) == b"", "the stack's side did not close"
    finally:
        release.set()
        client.close()
    assert arrivals.last_at is not None
    times["flood through"] = round(arrivals.last_at - start, 2)
    before, after = arrivals.client_amid_flood()
    st = stack.status(cid)
    print(
        f"\nSYN flood: {FLOOD} SYNs built in {built} s; {len(arrivals.order)} SYNs reached the stack "
        f"({before} of the flood before the client's first, {after} after); times {times}; passive OPEN: "
        f"half-open at most {half_open_seen[0]}, {during.half_open} once the flood was through, SYN "
        f"cookies sent {st.syn_cookies_sent}, taken {st.syn_cookies_taken}; "
        f"test {seconds_since(start)} s"
    )

    assert bytes(back) == payload, f"{len(back)} octets back, SHA-256 {hashlib.sha256(back).hexdigest()}"
    assert before > 0 and after > 0, f"the client's SYN did not come amid the flood: {before}, {after}"
    assert half_open_seen[0] <= config.backlog and during.half_open <= config.backlog
    assert st.syn_cookies_sent > 0 or st.syn_cookies_taken > 0, st
    assert all(t.is_alive() for t in stack._threads), stack._threads
    assert stack.errors == [], stack.errors[:5]


# -- ICMP errors (RFC 5927, RFC 1191) ---------------------------------------------------------------------


def icmp_error(lab: Lab, st: TcbStatus, code: int, seq: int, *, mtu: int = 0, length: int = 1500) -> object:
    """ICMP destination unreachable from the kernel's address, quoting a datagram of the stack's: its
    IPv4 header (stack to kernel, TCP, `length` octets) and the first 8 octets of its TCP header, with
    the connection's ports and sequence number `seq` (what RFC 792 asks a router to quote)."""
    quoted_ip = scapy.IP(src=str(lab.stack_addr), dst=str(lab.kernel_addr), proto=6, len=length, flags="DF")
    tcp8 = bytes(scapy.TCP(sport=st.local_port, dport=st.remote_port, seq=seq % (1 << 32), flags="A"))[:8]
    icmp = scapy.ICMP(type=3, code=code, nexthopmtu=mtu) if code == 4 else scapy.ICMP(type=3, code=code)
    return (
        scapy.IP(src=str(lab.kernel_addr), dst=str(lab.stack_addr))
        / icmp
        / scapy.Raw(bytes(quoted_ip)[:20] + tcp8)
    )


NARROW_MTU = 1000
NARROW_MSS = NARROW_MTU - 40


@contextlib.contextmanager
def narrowed_path(lab: Lab, port: int) -> Iterator[Callable[[], int]]:
    """The path from the stack narrows to NARROW_MTU: the kernel's namespace drops every datagram of the
    stack's connection from `port` longer than that, as a router on a narrower link would drop one with
    Don't Fragment set. Yields the function that counts the datagrams dropped so far."""
    table = "tcpsh_test_narrow_path"
    remove = nft_in_kernel_ns(
        lab,
        table,
        "chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f"    ip saddr {lab.stack_addr} tcp sport {port} ip length > {NARROW_MTU} counter drop\n"
        "}",
    )

    def dropped() -> int:
        listing = kernel_ns_run(lab, ["nft", "list", "table", "ip", table])
        return int(re.findall(r"counter packets (\d+)", listing)[0])

    try:
        yield dropped
    finally:
        remove()


def test_fragmentation_needed_lowers_the_segment_size_in_the_middle_of_an_upload(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython, wire: Wire
) -> None:
    """After 1 MB of an 8 MB upload, the path narrows to 1000 octets and the stack's big segments are
    lost. Two "fragmentation needed" messages quoting sequence numbers not in flight change nothing;
    one quoting SND.UNA brings the path MTU down to 1000 and every data segment after it within it, and
    the upload completes through the narrow path with every octet intact (RFC 1191, RFC 5927)."""
    stack = lab_stack
    segments = Trace(stack)
    news = connection_news(stack)
    narrow = contextlib.ExitStack()
    seen: dict[str, TcbStatus] = {}  # STATUS before the path narrowed, after the ignored ICMPs, after it
    dropped: list[Callable[[], int]] = []  # counts what the narrow path dropped
    marks: dict[str, int] = {}

    def attack() -> None:
        cid = first_established(news)
        wait_for(lambda: progress(stack.status(cid), UP) >= 1_000_000, 30, "1 MB through")
        seen["before"] = st = stack.status(cid)
        dropped.append(narrow.enter_context(narrowed_path(stack_lab, st.local_port)))
        # The big segments in flight are lost: the retransmission timer fires on SND.UNA, held there.
        wait_for(lambda: stack.status(cid).rto_expiries > st.rto_expiries, 10, "the lost segment's timeout")
        st = stack.status(cid)
        assert st.snd_una != st.snd_max and dropped[0]() > 0, st

        wire.send(
            icmp_error(stack_lab, st, 4, st.snd_una - 100_000, mtu=NARROW_MTU),  # long acknowledged
            icmp_error(stack_lab, st, 4, st.snd_max + 100_000, mtu=NARROW_MTU),  # never sent
        )
        wait_for(lambda: stack.status(cid).icmp_ignored == st.icmp_ignored + 2, 10, "the ICMPs not in flight")
        seen["ignored"] = ignored = stack.status(cid)

        wire.send(icmp_error(stack_lab, ignored, 4, ignored.snd_una, mtu=NARROW_MTU))
        wait_for(lambda: stack.status(cid).path_mtu != ignored.path_mtu, 10, "the path MTU to fall")
        marks["segments"] = len(segments)
        marks["dropped"] = dropped[0]()
        seen["believed"] = stack.status(cid)

    start = time.monotonic()
    with narrow:
        attacker = Attack(attack)
        t = send_to_kernel(stack, stack_lab, kernel_python, SIZE)
        attacker.join()
        dropped_in_all = dropped[0]()
    before, ignored, believed = seen["before"], seen["ignored"], seen["believed"]
    later = [s.length for s in segments.since(marks["segments"], before.local_port) if s.out and s.length]
    print(
        f"\nfragmentation needed: {SIZE} octets in {t.seconds:.2f} s (test {seconds_since(start)} s); "
        f"path MTU {before.path_mtu} -> {believed.path_mtu}, MSS {before.snd_mss} -> {believed.snd_mss}; "
        f"ICMP ignored {before.icmp_ignored} -> {ignored.icmp_ignored}; {len(later)} data segments "
        f"after, largest {max(later, default=0)}; dropped by the narrow path {marks['dropped']} before "
        f"the MTU fell, {dropped_in_all} in all"
    )
    assert t.intact, f"{t.count} octets, SHA-256 {t.digest}"
    assert ignored.icmp_ignored == before.icmp_ignored + 2 and ignored.icmp_errors == before.icmp_errors
    assert (ignored.path_mtu, ignored.snd_mss) == (before.path_mtu, before.snd_mss), (before, ignored)
    assert before.path_mtu == stack.link.mtu and before.snd_mss > NARROW_MSS, before
    assert believed.path_mtu == NARROW_MTU and believed.snd_mss <= NARROW_MSS, believed
    assert t.status.path_mtu == NARROW_MTU and t.status.snd_mss <= NARROW_MSS, t.status
    assert later and max(later) <= NARROW_MSS, sorted(set(later))[-5:]
    assert dropped_in_all == marks["dropped"], "datagrams too big for the path after the MTU fell"
    assert EventKind.PATH_MTU in kinds(news, t.cid)
    assert stack.errors == [], stack.errors


def test_port_unreachable_quoting_data_in_flight_aborts_the_connection(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython, wire: Wire
) -> None:
    """With data in flight (Linux's side drops it, as a host whose TCP port went away would), ICMP
    errors quoting a sequence number outside [SND.UNA, SND.MAX) are ignored; host unreachable quoting
    one in flight is a soft error, reported with the connection kept; port unreachable quoting one in
    flight aborts it with UNREACHABLE (RFC 5927 section 4.1, RFC 1122 section 4.2.3.9)."""
    stack = lab_stack
    news = connection_news(stack)
    server = kernel_python(SINK_SERVER, stack_lab.kernel_addr, 0)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    local = stack.status(cid).local_port
    remove = nft_in_kernel_ns(
        stack_lab,
        "tcpsh_test_gone_away",
        "chain input {\n"
        "    type filter hook input priority filter; policy accept;\n"
        f"    ip saddr {stack_lab.stack_addr} tcp sport {local} drop\n"
        "}",
    )
    try:
        # Five whole segments, within the initial window: all of it goes at once, and nothing waits to be
        # sent. So SND.MAX stays where it is while the ICMPs come (a loss probe, or the timer, resends;
        # new data would have made the "not yet sent" quote below one in flight).
        stack.send(cid, pattern_bytes(5 * stack.status(cid).snd_mss))
        st = stack.status(cid)
        assert seq_diff(st.snd_max, st.snd_una) > 0 and st.send_queued == 0, st

        wire.send(
            icmp_error(stack_lab, st, 3, st.snd_una - 1),  # acknowledged (our SYN)
            icmp_error(stack_lab, st, 3, st.snd_max),  # not yet sent
        )
        wait_for(lambda: stack.status(cid).icmp_ignored == st.icmp_ignored + 2, 10, "the ICMPs not in flight")
        assert stack.status(cid).state is State.ESTABLISHED
        assert not {EventKind.UNREACHABLE, EventKind.NETWORK_ERROR} & set(kinds(news, cid))

        wire.send(icmp_error(stack_lab, st, 1, st.snd_una))  # host unreachable: soft
        wait_for(lambda: EventKind.NETWORK_ERROR in kinds(news, cid), 10, "the soft error's news")
        soft = stack.status(cid)
        assert soft.state is State.ESTABLISHED and "host unreachable" in soft.soft_error, soft

        wire.send(icmp_error(stack_lab, st, 3, seq_diff(st.snd_max, st.snd_una) // 2 + st.snd_una))
        wait_for(lambda: EventKind.UNREACHABLE in kinds(news, cid), 10, "the connection to be aborted")
    finally:
        remove()
    assert stack.status(cid).state is State.CLOSED
    with pytest.raises(StackError, match="destination unreachable"):
        stack.send(cid, b"more", timeout=5)
    assert stack.errors == [], stack.errors
