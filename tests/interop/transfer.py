"""Bulk transfers between the user-space Stack and the kernel's TCP in the lab, checked by SHA-256,
and the tools around them: commands in either namespace, nftables tables of a test's own, random
loss on the wire both ways, and the kernel namespace's TCP counters.

Shared by tests/interop/test_stack_kernel.py and tests/interop/test_transport.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address

import pytest

from stack.lab import Lab
from stack.runtime import Stack
from stack.services import pattern, pattern_sha256
from stack.tcp import State, TcbConfig, TcbStatus
from stack.wire.tcp import Flags, TcpSegment
from tests.interop.conftest import KernelProcess, wait_for

KernelPython = Callable[..., KernelProcess]

HTTP = 80

SINK_SERVER = r"""
import hashlib, socket, sys
addr, reply_len = sys.argv[1], int(sys.argv[2])
srv = socket.create_server((addr, 0))
print("READY", srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
srv.close()
h, n = hashlib.sha256(), 0
while piece := conn.recv(1 << 16):
    h.update(piece)
    n += len(piece)
print("EOF", n, h.hexdigest(), flush=True)
if reply_len:
    sys.stdin.readline()  # the test says when
    conn.sendall(hashlib.shake_128(b"reply").digest(reply_len))
    print("SENT", reply_len, flush=True)
conn.close()
"""
"""Accept one connection, read it to end of stream hashing what came, print `EOF count sha256`;
with a reply length, wait for a line on stdin, send that many bytes (shake_128(b"reply")), close."""


# -- commands and nftables in the lab's namespaces ---------------------------------------------------------


def _ns_run(
    spawn: Callable[..., subprocess.Popen[bytes]], argv: list[str], stdin: str | None, timeout: float
) -> str:
    proc = spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(stdin.encode() if stdin else None, timeout=timeout)
    assert proc.returncode == 0, f"{argv}: status {proc.returncode}: {err.decode(errors='replace')}"
    return out.decode()


def kernel_ns_run(lab: Lab, argv: list[str], stdin: str | None = None, timeout: float = 10.0) -> str:
    """Run a command in the kernel's namespace to completion; its stdout (fails on a non-zero status)."""
    return _ns_run(lab.run_in_kernel_ns, argv, stdin, timeout)


def stack_ns_run(lab: Lab, argv: list[str], stdin: str | None = None, timeout: float = 10.0) -> str:
    """Run a command in the stack's namespace to completion; its stdout (fails on a non-zero status)."""
    return _ns_run(lab.run_in_stack_ns, argv, stdin, timeout)


def nft_in_kernel_ns(lab: Lab, table: str, body: str) -> Callable[[], None]:
    """Install an nftables table in the kernel's namespace; returns the function that removes it."""
    kernel_ns_run(lab, ["nft", "-f", "-"], stdin=f"table ip {table} {{\n{body}\n}}\n")
    return lambda: kernel_ns_run(lab, ["nft", "delete", "table", "ip", table])


@dataclass
class Loss:
    """What the random-loss rules counted: packets seen and dropped, each way."""

    to_kernel: tuple[int, int] = (0, 0)
    to_stack: tuple[int, int] = (0, 0)

    def __str__(self) -> str:
        def pct(seen_dropped: tuple[int, int]) -> str:
            seen, dropped = seen_dropped
            return f"{dropped}/{seen} ({100 * dropped / max(1, seen):.1f}%)"

        return f"dropped stack→linux {pct(self.to_kernel)}, linux→stack {pct(self.to_stack)}"


def _counted(ruleset: str) -> tuple[int, int]:
    """(packets seen, packets dropped) from a listing of the table random_loss builds."""
    seen, dropped = (int(n) for n in re.findall(r"counter packets (\d+)", ruleset))
    return seen, dropped


@contextlib.contextmanager
def random_loss(lab: Lab, percent: int, table: str = "tcpsh_random_loss") -> Iterator[Loss]:
    """Drop `percent`% of the packets between the stack and the kernel, at random, each way.

    Stack → kernel: the kernel's namespace drops them in its input hook, as a lossy wire would.
    Kernel → stack: dropping in the kernel's output hook would lose nothing, for the kernel's TCP
    takes a locally refused packet (EPERM from the hook) as not sent and sends it again later, without
    counting a loss. So they are dropped on the stack's side of the wire, in a netdev ingress hook on
    the stack's interface: after the veth, before the stack's packet socket (bound to IPv4, it is
    served after the ingress hook). Both tables are removed on the way out, whatever happened; the
    yielded Loss holds their counters by then.
    """
    if not 0 < percent < 100:
        raise ValueError(f"loss is a percentage between 0 and 100, not {percent}")
    drop = f"numgen random mod 100 < {percent} counter drop"
    kernel_ns_run(
        lab,
        ["nft", "-f", "-"],
        stdin=(
            f"table ip {table} {{\n"
            f"  chain in {{\n"
            f"    type filter hook input priority 0; policy accept;\n"
            f"    ip saddr {lab.stack_addr} counter\n"
            f"    ip saddr {lab.stack_addr} {drop}\n"
            f"  }}\n"
            f"}}\n"
        ),
    )
    loss = Loss()
    try:
        stack_ns_run(
            lab,
            ["nft", "-f", "-"],
            stdin=(
                f"table netdev {table} {{\n"
                f"  chain in {{\n"
                f'    type filter hook ingress device "{lab.stack_if}" priority 0; policy accept;\n'
                f"    ip saddr {lab.kernel_addr} counter\n"
                f"    ip saddr {lab.kernel_addr} {drop}\n"
                f"  }}\n"
                f"}}\n"
            ),
        )
        try:
            yield loss
        finally:
            loss.to_stack = _counted(stack_ns_run(lab, ["nft", "list", "table", "netdev", table]))
            stack_ns_run(lab, ["nft", "delete", "table", "netdev", table])
    finally:
        loss.to_kernel = _counted(kernel_ns_run(lab, ["nft", "list", "table", "ip", table]))
        kernel_ns_run(lab, ["nft", "delete", "table", "ip", table])


@contextlib.contextmanager
def one_mss_segments(lab: Lab) -> Iterator[None]:
    """The kernel sends segments of one MSS each (gso_max_segs 1 on its veth), as a real path carries
    them, not 64 KB ones the veth would hand over whole; put back as it was on the way out."""
    dev = lab.kernel_if
    (link,) = json.loads(kernel_ns_run(lab, ["ip", "-details", "-json", "link", "show", "dev", dev]))
    kernel_ns_run(lab, ["ip", "link", "set", "dev", dev, "gso_max_segs", "1"])
    try:
        yield
    finally:
        kernel_ns_run(lab, ["ip", "link", "set", "dev", dev, "gso_max_segs", str(link["gso_max_segs"])])


def kernel_tcp_counters(lab: Lab) -> dict[str, int]:
    """The kernel namespace's TCP and IP counters (nstat: totals, ignoring and writing no history file)."""
    counters: dict[str, int] = {}
    for line in kernel_ns_run(lab, ["nstat", "--ignore", "--noupdate", "--zeros"]).splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].isdigit():
            counters[words[0]] = int(words[1])
    return counters


# -- transfers -------------------------------------------------------------------------------------------


@dataclass
class Transfer:
    """One transfer as its receiver saw it, and the stack's connection at its end."""

    size: int  # octets sent
    count: int  # octets the receiver counted
    digest: str  # SHA-256 of what the receiver got
    seconds: float  # from the stack's OPEN to the receiver's end of stream
    cid: str
    status: TcbStatus  # the stack's connection, once both sides had closed
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def outcome(self) -> tuple[int, str]:
        return self.count, self.digest

    @property
    def intact(self) -> bool:
        """Every octet, in order, exactly once: the count and hash the sender's pattern has."""
        return self.outcome == (self.size, pattern_sha256(self.size))


def send_to_kernel(
    stack: Stack,
    lab: Lab,
    kernel_python: KernelPython,
    n: int,
    *,
    receiver: str = SINK_SERVER,
    args: Sequence[object] = (0,),
    config: TcbConfig | None = None,
    timeout: float = 90.0,
) -> Transfer:
    """Send the /bytes pattern's first `n` octets to a kernel-side `receiver` program, then CLOSE.

    The receiver takes the kernel's address and `args`, prints `READY port`, accepts one connection
    and prints `EOF count sha256` at its end; the lines it prints before that are kept in the
    result's notes["said"].
    """
    server = kernel_python(receiver, lab.kernel_addr, *args)
    (port,) = server.expect("READY ")
    start = time.monotonic()
    cid = stack.open(lab.kernel_addr, int(port), timeout=5, config=config)
    for piece in pattern(n):
        stack.send(cid, piece, timeout=timeout)
    stack.close(cid)
    said = []
    while not (line := server.readline(timeout=timeout)).startswith("EOF "):
        said.append(line)
    seconds = time.monotonic() - start
    count, digest = line.split()[1:]
    assert server.wait() == 0
    # The stack closed first: it ends in TIME-WAIT, or CLOSED from there when a RST came (RFC 9293
    # 3.10.7.4; Linux answers a late copy of the stack's last ACK with one once it has closed).
    ended = (State.TIME_WAIT, State.CLOSED)
    wait_for(lambda: stack.status(cid).state in ended, 10, "the stack's side to close")
    states = [state for _, _, state, _, _ in stack.exchange(cid)]
    assert State.TIME_WAIT in states, f"the stack never reached TIME-WAIT: {states[-5:]}"
    return Transfer(n, int(count), digest, seconds, cid, stack.status(cid), {"said": said})


def receive_from_kernel(
    stack: Stack,
    lab: Lab,
    n: int,
    *,
    before_reading: Callable[[str], None] | None = None,
    timeout: float = 90.0,
) -> Transfer:
    """GET /bytes/N from the kernel's HTTP service, hashing the body as it comes.

    `before_reading(cid)`, if given, runs once the response head is in and before the body is read.
    """
    start = time.monotonic()
    cid = stack.open(lab.kernel_addr, HTTP, timeout=5)
    stack.send(cid, f"GET /bytes/{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), push=True)
    head = bytearray()
    while b"\r\n\r\n" not in head:
        piece = stack.receive(cid, 65536, timeout=10)
        assert piece, f"the server closed after {bytes(head)!r}"
        head += piece
    head, _, first = bytes(head).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") or head.startswith(b"HTTP/1.0 200 "), head
    assert f"\r\nContent-Length: {n}".encode() in head, head
    if before_reading is not None:
        before_reading(cid)
    digest = hashlib.sha256(first)
    count = len(first)
    deadline = time.monotonic() + timeout
    while piece := stack.receive(cid, 1 << 20, timeout=max(0.01, deadline - time.monotonic())):
        digest.update(piece)
        count += len(piece)
    seconds = time.monotonic() - start
    stack.close(cid)
    assert stack.wait_state(cid, State.CLOSED, 10), stack.status(cid).state
    return Transfer(n, count, digest.hexdigest(), seconds, cid, stack.status(cid))


def upload(stack: Stack, lab: Lab, kernel_python: KernelPython, n: int) -> tuple[int, str]:
    """Send the /bytes pattern's first `n` octets to a kernel-side sink; return its count and hash."""
    return send_to_kernel(stack, lab, kernel_python, n).outcome


def download(stack: Stack, lab: Lab, n: int) -> tuple[int, str]:
    """GET /bytes/N from the kernel's HTTP service; return the body's count and hash."""
    return receive_from_kernel(stack, lab, n).outcome


# -- segments seen by the stack -------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One segment through Stack.tap, in order."""

    direction: str  # "in" or "out"
    src: IPv4Address
    dst: IPv4Address
    seg: TcpSegment
    at: float

    @property
    def out(self) -> bool:
        """Sent by the stack."""
        return self.direction == "out"

    @property
    def port(self) -> int:
        """The stack's port."""
        return self.seg.src_port if self.out else self.seg.dst_port

    @property
    def flags(self) -> int:
        return self.seg.flags

    @property
    def seq(self) -> int:
        return self.seg.seq

    @property
    def ack(self) -> int:
        return self.seg.ack

    @property
    def length(self) -> int:
        return len(self.seg.payload)


class Trace:
    """Every segment the stack sends or receives, with a way to wait for one."""

    def __init__(self, stack: Stack) -> None:
        self.segments: list[Seen] = []
        self._cv = threading.Condition()
        stack.tap(self._tap)

    def _tap(self, direction: str, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, *_: object) -> None:
        # (*_: later versions of Stack.tap also pass the whole datagram)
        with self._cv:
            self.segments.append(Seen(direction, src, dst, seg, time.monotonic()))
            self._cv.notify_all()

    def wait_for(self, pred: Callable[[list[Seen]], object], timeout: float, what: str) -> object:
        with self._cv:
            result = self._cv.wait_for(lambda: pred(self.segments), timeout)
        if not result:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}; trace:\n{self.dump()}")
        return result

    def __len__(self) -> int:
        with self._cv:
            return len(self.segments)

    def since(self, index: int, port: int) -> list[Seen]:
        """The segments from the `index`-th on, of the stack's connection on `port`."""
        with self._cv:
            return [s for s in self.segments[index:] if s.port == port]

    def of(self, port: int) -> list[Seen]:
        """The segments of the connection on this port of either side, so far."""
        with self._cv:
            return [s for s in self.segments if port in (s.seg.src_port, s.seg.dst_port)]

    def dump(self) -> str:
        with self._cv:
            segments = list(self.segments)
        t0 = segments[0].at if segments else 0.0
        return "\n".join(describe(s, t0) for s in segments)


def describe(s: Seen, t0: float = 0.0) -> str:
    seg = s.seg
    flags = "".join(
        c
        for c, f in zip(
            "FSRPAU", (Flags.FIN, Flags.SYN, Flags.RST, Flags.PSH, Flags.ACK, Flags.URG), strict=True
        )
        if seg.flags & f
    )
    return (
        f"{s.at - t0:8.4f} {s.direction:3} {s.src}:{seg.src_port} > {s.dst}:{seg.dst_port} [{flags}] "
        f"seq={seg.seq} ack={seg.ack} win={seg.window} len={len(seg.payload)}"
    )
