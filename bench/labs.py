"""The benchmark's network: two labs built with stack.lab.Lab, the peers that run in them, loss.

    lab "stack":  198.18.0.1 the user-space stack  <-- veth -->  198.18.0.2 Linux (bench.peer)
    lab "linux":  198.18.1.1 Linux (bench.peer)    <-- veth -->  198.18.1.2 Linux (bench.peer)

The second lab is the reference: the same Lab code builds the same kind of veth pair (MTU 1500, IPv6
off), and the same peer programs run at both of its ends, so a figure of the stack and Linux's figure
for the same transfer come from the same run, the same machine and the same kind of link. It has no
firewall rule: Linux's TCP answers on both sides. The stack's lab is left exactly as tcpsh --lab
builds it (its firewall rule, nothing else on its address).

Everything is removed when the `with` block ends, on an exception and on Ctrl-C (Lab.close), and the
peers exit when the benchmark's end of their stdin closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from stack import netns
from stack.lab import Lab

REPO_ROOT = Path(__file__).resolve().parent.parent

STACK_LAB = {"stack_addr": "198.18.0.1", "kernel_addr": "198.18.0.2"}
LINUX_LAB = {"stack_addr": "198.18.1.1", "kernel_addr": "198.18.1.2"}

# Per-namespace sysctls for tens of thousands of connections on Linux's side of either lab.
SYSCTLS = {
    "net/core/somaxconn": "65535",
    "net/ipv4/tcp_max_syn_backlog": "65535",
}


class BenchError(RuntimeError):
    """A peer failed or did not answer; the message says which and what it wrote."""


@dataclass
class Labs:
    stack: Lab  # the user-space stack at stack_addr, Linux at kernel_addr
    linux: Lab  # Linux at both ends: the reference


@contextlib.contextmanager
def build() -> Iterator[Labs]:
    with (
        Lab(services=False, **STACK_LAB) as stack_lab,
        Lab(services=False, firewall=False, **LINUX_LAB) as ref,
    ):
        for ns in (stack_lab.kernel_ns, ref.stack_ns, ref.kernel_ns):
            set_sysctls(ns, SYSCTLS)
        yield Labs(stack_lab, ref)


def set_sysctls(ns: str, values: dict[str, str]) -> None:
    with netns.entered(ns):  # /proc/sys/net shows the namespace of the thread that opens it
        for name, value in values.items():
            Path("/proc/sys", name).write_text(value)


class Peer:
    """One bench.peer program in a lab namespace; its stdout read line by line with timeouts."""

    def __init__(self, lab: Lab, side: str, args: Sequence[object]) -> None:
        self.what = (
            f"peer {' '.join(map(str, args[:1]))} in {lab.kernel_ns if side == 'kernel' else lab.stack_ns}"
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-P", "-m", "bench.peer", *map(str, args)]
        spawn = lab.run_in_kernel_ns if side == "kernel" else lab.run_in_stack_ns
        self._stderr: IO[bytes] = tempfile.TemporaryFile(prefix="tcpsh-bench-peer-")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] = spawn(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        self._buffer = b""

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-2000:] or "(nothing)"

    def line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{self.what}: no answer within {timeout:g} s")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            piece = os.read(fd, 1 << 16)
            if not piece:
                status = self.proc.wait(timeout=5)
                raise BenchError(f"{self.what} exited with status {status}; stderr: {self.stderr()}")
            self._buffer += piece
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    def ready(self, timeout: float = 15.0) -> int:
        """The port it listens on, from its READY line."""
        line = self.line(timeout)
        if not line.startswith("READY "):
            raise BenchError(f"{self.what} said {line!r} instead of READY")
        return int(line.split()[1])

    def done(self, timeout: float) -> dict[str, Any]:
        line = self.line(timeout)
        if not line.startswith("DONE "):
            raise BenchError(f"{self.what} said {line!r} instead of DONE")
        return json.loads(line[5:])

    def tell(self, line: str) -> None:
        """A line on its stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout, self._stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- loss --------------------------------------------------------------------------------------------


def _nft(lab: Lab, side: str, script: str) -> str:
    spawn = lab.run_in_kernel_ns if side == "kernel" else lab.run_in_stack_ns
    proc = spawn(["nft", "-f", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(script.encode(), timeout=10)
    if proc.returncode != 0:
        raise BenchError(f"nft in {lab.tag} ({side}): {err.decode(errors='replace').strip()}")
    return out.decode()


def _is_tso(name: str) -> bool:
    """A TCP segmentation offload feature: tx-tcp-segmentation, and its ECN, AccECN, mangle-ID and IPv6
    kinds. veth lets its peer join what it sends (GRO) only when every one of them is off."""
    return name.startswith("tx-tcp") and name.endswith("segmentation")


Features = dict[str, dict[str, bool]]


def _features(lab: Lab, wanted: Callable[[str, str], bool | None]) -> Features:
    """Set features on both veth ends of `lab`: `wanted(ifname, feature)` says the new state, or None to
    leave it; returns what the changed ones were, to be given back to `_restore`."""
    from pyroute2.ethtool import Ethtool

    before: Features = {}
    for ns, ifname in ((lab.stack_ns, lab.stack_if), (lab.kernel_ns, lab.kernel_if)):
        with netns.entered(ns):
            tool = Ethtool()
            try:
                features = tool.get_features(ifname)
                before[ifname] = {}
                for name, feature in features.features.items():
                    value = wanted(ifname, name)
                    if value is not None:
                        before[ifname][name] = feature.enable
                        feature.enable = value
                tool.set_features(ifname, features)
            finally:
                tool.close()
    return before


def _restore(lab: Lab, before: Features) -> None:
    _features(lab, lambda ifname, name: before.get(ifname, {}).get(name))


@contextlib.contextmanager
def segments_of_mtu(lab: Lab) -> Iterator[None]:
    """TCP segmentation offload (TSO) off on both veth ends of `lab` for the block, then as it was: every
    frame that crosses the veth is one segment of at most the MTU, as on a wire without offloads (with
    TSO on, Linux hands the veth frames of up to 64 KB that cross it whole). The receiving end may still
    join them (GRO), as a NIC does, where GRO is on."""
    before = _features(lab, lambda _ifname, name: False if _is_tso(name) else None)
    try:
        yield
    finally:
        _restore(lab, before)


@contextlib.contextmanager
def receive_offload(lab: Lab, on: bool) -> Iterator[None]:
    """GRO on (or off) at both veth ends of `lab` for the block, then as it was."""
    before = _features(lab, lambda _ifname, name: on if name == "rx-gro" else None)
    try:
        yield
    finally:
        _restore(lab, before)


@contextlib.contextmanager
def random_loss(lab: Lab, percent: float) -> Iterator[dict[str, tuple[int, int]]]:
    """Drop `percent`% of the packets each way, at random, as each arrives from the veth: a netdev
    ingress hook on both ends, after the wire and before either side's TCP or packet socket sees it
    (so the sender never learns of the loss from its own host, as it would from a drop in its output
    path). Segmentation offload and GRO are off meanwhile, so that a packet is one segment of at most the
    MTU.

    Yields a dict that holds, once the block is left, (packets seen, packets dropped) for "forward"
    (from the stack_addr end to the kernel_addr end) and "back"; everything is put back however the
    block ends."""
    table = "tcpsh_bench_loss"
    permille = round(percent * 10)
    ends = {
        "forward": ("kernel", lab.kernel_if, lab.stack_addr),
        "back": ("stack", lab.stack_if, lab.kernel_addr),
    }
    counted: dict[str, tuple[int, int]] = {}
    installed: list[tuple[str, str]] = []
    # GRO off too: the ingress hook comes after it, and a drop there would take a whole joined frame.
    with segments_of_mtu(lab), receive_offload(lab, False):
        try:
            for name, (side, ifname, source) in ends.items():
                _nft(
                    lab,
                    side,
                    f"table netdev {table} {{\n"
                    f"  chain in {{\n"
                    f'    type filter hook ingress device "{ifname}" priority 0; policy accept;\n'
                    f"    ip saddr {source} counter\n"
                    f"    ip saddr {source} numgen random mod 1000 < {permille} counter drop\n"
                    f"  }}\n"
                    f"}}\n",
                )
                installed.append((name, side))
            yield counted
        finally:
            for name, side in installed:
                listing = _nft(lab, side, f"list table netdev {table}\n")
                numbers = [int(n) for n in re.findall(r"counter packets (\d+)", listing)]
                counted[name] = (numbers[0], numbers[1]) if len(numbers) >= 2 else (0, 0)
                _nft(lab, side, f"delete table netdev {table}\n")
