"""Fixtures for the interop tests: a lab (stack.lab.Lab) shared by the session, and helpers.

Every test here is marked `root`. Without root, or where network namespaces cannot be built, the
tests skip with the reason outside CI and FAIL in CI (CI=true): a skipped interop test there would
be a hidden failure (the suite-wide rule in tests/conftest.py says the same for every skip).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from stack.firewall import FirewallError
from stack.lab import Lab, LabUnavailable
from stack.link.impair import ImpairedLink
from stack.link.packet import PacketLink
from stack.link.raw import RawLink
from stack.runtime import Stack, heap_frozen
from stack.tcp import TcbConfig

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
IMPAIR_SEED = 6  # the lab stack's impairment layer draws from this seed
ETH_P_IP = 0x0800


def cannot_run(reason: str) -> None:
    """Fail in CI, skip elsewhere, saying why."""
    if IN_CI:
        pytest.fail(f"interop test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        cannot_run("the interop tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to build network namespaces")


def make_lab(**kwargs: object) -> Lab:
    """A Lab, or the test is failed (CI) or skipped (elsewhere) when this machine cannot build one."""
    require_root()
    try:
        return Lab(**kwargs)  # type: ignore[arg-type]
    except LabUnavailable as exc:
        cannot_run(str(exc))
    except FirewallError as exc:
        if "not found" in str(exc) or "not installed" in str(exc):
            cannot_run(str(exc))
        raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """One lab for the whole session; tests must leave it as they found it."""
    the_lab = make_lab()
    try:
        yield the_lab
    finally:
        the_lab.close()


@pytest.fixture
def fresh_lab() -> Iterator[Lab]:
    """A lab of the test's own, for tests that change or remove it."""
    the_lab = make_lab()
    try:
        yield the_lab
    finally:
        the_lab.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll a real condition until it holds, failing after `timeout` seconds (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


# -- the user-space Stack on a lab, and processes on the kernel's side (tests/interop/test_stack_*.py) --


@pytest.fixture(scope="module")
def stack_lab() -> Iterator[Lab]:
    """A lab of the module's own, for tests that run the user-space Stack against the kernel's TCP."""
    the_lab = make_lab()
    try:
        yield the_lab
    finally:
        the_lab.close()


def started_stack(lab: Lab, kind: type[RawLink]) -> Iterator[Stack]:
    """A started Stack on `lab`'s stack side over a link of `kind`, wrapped in the impairment layer;
    afterwards every connection still open is closed (aborted when the kernel does not answer within a
    second) and the threads are stopped; the sockets go with them."""
    ns = lab.enter_stack_ns()
    inner = PacketLink(lab.stack_if, lab.stack_addr, namespace=ns, gro=True) if kind is PacketLink else kind(
        lab.stack_if, lab.stack_addr, namespace=ns
    )
    link = ImpairedLink(inner, seed=IMPAIR_SEED)
    the_stack = Stack(link, config=TcbConfig.full(mtu=link.mtu, rto_min=0.2)).start()
    try:
        with heap_frozen():  # as tcpsh does: the test session's heap is no collector's work meanwhile
            yield the_stack
    finally:
        try:
            the_stack.shutdown(grace=1.0)
        finally:
            the_stack.stop()


@pytest.fixture
def lab_stack(stack_lab: Lab) -> Iterator[Stack]:
    """A started Stack holding the lab's stack-side address, on the plain link (RawLink).

    RTO minimum 0.2 s (as Linux's) so that a lost segment costs little time. The link is wrapped in
    the impairment layer, a pass-through until a test sets something on `stack.link` (seeded, so that
    each test's random draws start from the same seed). The stack's profile cuts its large segments in
    software on this link (no segment on the wire is larger than the MSS).
    """
    yield from started_stack(stack_lab, RawLink)


@pytest.fixture
def fast_stack(stack_lab: Lab) -> Iterator[Stack]:
    """As `lab_stack`, on the fast link (`tcpsh --lab`'s default): PacketLink, so that the kernel cuts
    the stack's 64 KB segments (segmentation offload, on in `TcbConfig.full()`), with GRO on the stack's
    veth, so that it joins the segments that arrive (where the sending veth lets it)."""
    yield from started_stack(stack_lab, PacketLink)


class Wire:
    """Packets written from the kernel's namespace onto the lab's veth, addressed to the stack's link
    address: what a host or router on the Linux side of the wire can send (bytes, or scapy packets)."""

    def __init__(self, lab: Lab) -> None:
        with lab.enter_kernel_ns():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        self.to = (lab.kernel_if, ETH_P_IP, 0, 0, bytes.fromhex(lab.stack_mac.replace(":", "")))

    def send(self, *packets: object) -> None:
        for p in packets:
            self.sock.sendto(p if isinstance(p, bytes) else bytes(p), self.to)  # type: ignore[arg-type]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def wire(stack_lab: Lab) -> Iterator[Wire]:
    the_wire = Wire(stack_lab)
    try:
        yield the_wire
    finally:
        the_wire.close()


class KernelProcess:
    """A process in the lab's kernel namespace whose stdout is read line by line, with timeouts."""

    def __init__(self, lab: Lab, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc: subprocess.Popen[bytes] = lab.run_in_kernel_ns(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._buffer = b""

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace").strip() or "(empty)"

    def readline(self, timeout: float = 10.0) -> str:
        """The next line of stdout, without its newline; fails the test on EOF or timeout."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{self.argv[:3]}: no line on stdout within {timeout:g} s")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            piece = os.read(fd, 65536)
            if not piece:
                self.proc.wait(timeout=5)
                pytest.fail(
                    f"{self.argv[:3]} exited (status {self.proc.returncode}) before a full line; "
                    f"stdout so far {self._buffer[:200]!r}; stderr: {self._stderr()}"
                )
            self._buffer += piece
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    def expect(self, prefix: str, timeout: float = 10.0) -> list[str]:
        """Read the next line, check that it starts with `prefix`, return its words after the prefix."""
        line = self.readline(timeout)
        assert line.startswith(prefix), f"expected a line starting {prefix!r}, got {line!r}"
        return line[len(prefix) :].split()

    def rest(self) -> str:
        """Everything left on stdout once the process has exited."""
        assert self.proc.stdout is not None
        return (self._buffer + self.proc.stdout.read()).decode(errors="replace")

    def tell(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.argv[:3]} still running after {timeout:g} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@pytest.fixture
def kernel_process(stack_lab: Lab) -> Iterator[Callable[..., KernelProcess]]:
    """Start processes in the kernel's namespace: `kernel_process(argv)`; killed after the test."""
    started: list[KernelProcess] = []

    def start(argv: Sequence[str]) -> KernelProcess:
        proc = KernelProcess(stack_lab, argv)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture
def kernel_python(kernel_process: Callable[..., KernelProcess]) -> Callable[..., KernelProcess]:
    """Run a standalone Python program (its source text) in the kernel's namespace, with arguments."""

    def start(source: str, *args: object) -> KernelProcess:
        return kernel_process([sys.executable, "-I", "-c", source, *map(str, args)])

    return start
