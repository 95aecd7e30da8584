"""Each figure of the benchmark, measured once on the user-space stack and once on Linux alone.

The stack's side is driven from this process through the user calls of stack.runtime.Stack, as the
shell drives it; Linux's side is bench.peer in a lab namespace. Every function returns a plain dict
(JSON-ready); bench.report turns them into the table.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import statistics
import threading
import time
import zlib
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bench import pattern
from bench.labs import BenchError, Labs, Peer
from stack.lab import Lab
from stack.runtime import Stack, StackError
from stack.tcp import State

REQUEST = 100  # octets each way of a connection-rate exchange


def _check_intact(what: str, count: int, crc: int, expected_count: int) -> None:
    if count != expected_count:
        raise BenchError(f"{what}: the receiver got {count} octets of {expected_count}")
    if crc != pattern.crc(count):
        raise BenchError(f"{what}: the {count} octets received are not the ones sent (CRC-32 differs)")


def _mbps(count: int, seconds: float) -> float:
    return count / seconds / 1e6 if seconds > 0 else 0.0


def _stack_counters(stack: Stack, cid: str) -> dict[str, int]:
    st = stack.status(cid)
    return {
        "segments_out": st.segments_out,
        "segments_in": st.segments_in,
        "retransmissions": st.retransmissions,
        "fast_retransmits": st.fast_retransmits,
        "rto_expiries": st.rto_expiries,
    }


class OtherLoad:
    """How many cores the machine's other processes kept busy from now until `cores()`: the CPU time
    /proc/stat counts as user, nice and system, less this process's and its children's (the peers,
    reaped by then), over the wall time. Work the kernel does in softirq context (the veth, the
    network stacks) is in neither."""

    def __init__(self) -> None:
        self._start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float]:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        machine = (int(fields[1]) + int(fields[2]) + int(fields[3])) / os.sysconf("SC_CLK_TCK")
        t = os.times()
        return machine, t.user + t.system + t.children_user + t.children_system, time.monotonic()

    def cores(self) -> float:
        machine, mine, wall = (b - a for a, b in zip(self._start, self._snapshot(), strict=True))
        return max(0.0, (machine - mine) / wall) if wall > 0 else 0.0


class CpuUse:
    """The CPU time this process's threads use from now until `used()`, as cores kept busy (CPU
    seconds over wall seconds), in all and per thread (the caller's, tcpsh-receive, tcpsh-timer)."""

    def __init__(self) -> None:
        self.threads, self.wall = thread_cpu(), time.monotonic()

    def used(self) -> dict[str, Any]:
        threads, wall = thread_cpu(), time.monotonic() - self.wall
        by_thread = {name: sec - self.threads.get(name, 0.0) for name, sec in threads.items()}
        return {
            "cpu_cores": sum(by_thread.values()) / wall,
            "cpu_cores_by_thread": {name: round(sec / wall, 3) for name, sec in by_thread.items() if sec > 0},
            "cpu_seconds_by_thread": {name: round(sec, 3) for name, sec in by_thread.items() if sec > 0},
        }


# -- bulk --------------------------------------------------------------------------------------------


def stack_send(stack: Stack, lab: Lab, size: int, max_seconds: float) -> dict[str, Any]:
    """The stack sends `size` octets (or what `max_seconds` allow) to Linux's sink, then CLOSEs.
    Timed by the sink: from accepting the connection to the end of the stream."""
    with Peer(lab, "kernel", ["sink", "--listen", lab.kernel_addr]) as sink:
        port = sink.ready()
        cid = stack.open(lab.kernel_addr, port, timeout=10)
        cpu = CpuUse()
        deadline = time.monotonic() + max_seconds
        sent = 0
        while sent < size and time.monotonic() < deadline:
            piece = pattern.chunk_at(sent, size - sent)
            stack.send(cid, piece, timeout=max_seconds + 60)  # type: ignore[arg-type]
            sent += len(piece)
        stack.close(cid)
        got = sink.done(timeout=max_seconds + 120)
        used = cpu.used()
        _check_intact("stack → Linux", got["count"], got["crc"], sent)
        seconds = got["t1"] - got["t0"]
        return {
            "octets": sent,
            "seconds": seconds,
            "mb_s": _mbps(sent, seconds),
            "capped": sent < size,
            **used,
            **_stack_counters(stack, cid),
        }


def stack_receive(stack: Stack, lab: Lab, size: int, max_seconds: float) -> dict[str, Any]:
    """Linux's source sends `size` octets (or what `max_seconds` allow) to the stack, which reads
    them to the end of the stream. Timed by the stack: from OPEN's return to the end of the stream."""
    with Peer(
        lab, "kernel", ["source", "--listen", lab.kernel_addr, "--size", size, "--max-seconds", max_seconds]
    ) as source:
        port = source.ready()
        cid = stack.open(lab.kernel_addr, port, timeout=10)
        cpu = CpuUse()
        t0 = time.monotonic()
        count = crc = 0
        while piece := stack.receive(cid, 1 << 20, timeout=60):
            crc = zlib.crc32(piece, crc)
            count += len(piece)
        t1 = time.monotonic()
        used = cpu.used()
        stack.close(cid)
        sent = source.done(timeout=60)["sent"]
        _check_intact("Linux → stack", count, crc, sent)
        return {
            "octets": count,
            "seconds": t1 - t0,
            "mb_s": _mbps(count, t1 - t0),
            "capped": sent < size,
            **used,
            **_stack_counters(stack, cid),
        }


def linux_bulk(labs: Labs, size: int, max_seconds: float) -> dict[str, Any]:
    """The same transfer with Linux at both ends of the reference lab: the client (198.18.1.1) sends
    to a sink it connects to, as the stack does; timed by the sink, as for the stack."""
    lab = labs.linux
    with Peer(lab, "kernel", ["sink", "--listen", lab.kernel_addr]) as sink:
        port = sink.ready()
        with Peer(
            lab,
            "stack",
            [
                "source",
                "--connect",
                f"{lab.kernel_addr}:{port}",
                "--size",
                size,
                "--max-seconds",
                max_seconds,
            ],
        ) as source:
            got = sink.done(timeout=max_seconds + 120)
            sent = source.done(timeout=30)["sent"]
    _check_intact("Linux → Linux", got["count"], got["crc"], sent)
    seconds = got["t1"] - got["t0"]
    return {"octets": sent, "seconds": seconds, "mb_s": _mbps(sent, seconds), "capped": sent < size}


def linux_bulk_download(labs: Labs, size: int, max_seconds: float) -> dict[str, Any]:
    """Linux → Linux the other way round: the client (198.18.1.1) reads from a source it connects to,
    as the stack does when it receives."""
    lab = labs.linux
    with Peer(
        lab, "kernel", ["source", "--listen", lab.kernel_addr, "--size", size, "--max-seconds", max_seconds]
    ) as source:
        port = source.ready()
        with Peer(lab, "stack", ["sink", "--connect", f"{lab.kernel_addr}:{port}"]) as sink:
            got = sink.done(timeout=max_seconds + 120)
        sent = source.done(timeout=30)["sent"]
    _check_intact("Linux → Linux", got["count"], got["crc"], sent)
    seconds = got["t1"] - got["t0"]
    return {"octets": sent, "seconds": seconds, "mb_s": _mbps(sent, seconds), "capped": sent < size}


# -- connection rate ---------------------------------------------------------------------------------


def stack_connect_rate(stack: Stack, lab: Lab, seconds: float) -> dict[str, Any]:
    """The stack as the client: OPEN, send 100 octets, read the 100 of the answer, read to the
    server's FIN, CLOSE; one connection after another for `seconds`, against Linux's server (which
    closes first, so no TIME-WAIT piles up on the client's ports)."""
    with Peer(
        lab, "kernel", ["serve", "--listen", lab.kernel_addr, "--mode", "answer", "--request", REQUEST]
    ) as srv:
        port = srv.ready()
        request = b"q" * REQUEST
        done = errors = 0
        start = time.monotonic()
        deadline = start + seconds
        while time.monotonic() < deadline:
            try:
                cid = stack.open(lab.kernel_addr, port, timeout=5)
                stack.send(cid, request, push=True, timeout=5)
                got = 0
                while got < REQUEST:
                    piece = stack.receive(cid, 65536, timeout=5)
                    if not piece:
                        raise StackError(f"{cid}: closed after {got} octets of the answer")
                    got += len(piece)
                while stack.receive(cid, 65536, timeout=5):
                    pass
                stack.close(cid)
                done += 1
            except StackError:
                errors += 1
        elapsed = time.monotonic() - start
    return {"connections": done, "errors": errors, "seconds": elapsed, "per_s": done / elapsed}


def stack_accept_rate(stack: Stack, lab: Lab, seconds: float, listeners: int = 8) -> dict[str, Any]:
    """Linux's clients against passive OPENs of the stack. A passive OPEN serves one connection, so
    `listeners` threads each keep one listening: LISTEN, wait for ESTABLISHED, read 100 octets, send
    100, CLOSE (the stack closes first), LISTEN again."""
    port = 8080
    stop = threading.Event()
    served = [0]
    failed: list[str] = []
    lock = threading.Lock()
    answer = b"a" * REQUEST

    def serve_one() -> None:
        cid = stack.listen(port)
        try:
            while not stack.wait_state(cid, State.ESTABLISHED, timeout=0.2):
                if stop.is_set():
                    return
            got = 0
            while got < REQUEST:
                piece = stack.receive(cid, 65536, timeout=5)
                if not piece:
                    break
                got += len(piece)
            stack.send(cid, answer, push=True, timeout=5)
            stack.close(cid)
            with lock:
                served[0] += 1
        finally:
            if stop.is_set():
                with contextlib.suppress(StackError):
                    if stack.status(cid).state in (State.LISTEN, State.SYN_RECEIVED):
                        stack.abort(cid)

    def worker() -> None:
        while not stop.is_set():
            try:
                serve_one()
            except StackError as e:
                with lock:
                    failed.append(str(e))
                time.sleep(0.01)  # a refused LISTEN is not retried in a tight loop

    threads = [
        threading.Thread(target=worker, name=f"bench-listen-{i}", daemon=True) for i in range(listeners)
    ]
    for t in threads:
        t.start()
    try:
        with Peer(
            lab, "kernel", ["rate", "--connect", f"{lab.stack_addr}:{port}", "--seconds", seconds]
        ) as client:
            result = client.done(timeout=seconds + 60)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    return {
        **result,
        "per_s": result["connections"] / result["seconds"],
        "served": served[0],
        "server_errors": len(failed),
        "listeners": listeners,
    }


def linux_connect_rate(labs: Labs, seconds: float) -> dict[str, Any]:
    """The same exchange with Linux at both ends of the reference lab."""
    lab = labs.linux
    with Peer(
        lab, "kernel", ["serve", "--listen", lab.kernel_addr, "--mode", "answer", "--request", REQUEST]
    ) as srv:
        port = srv.ready()
        with Peer(
            lab, "stack", ["rate", "--connect", f"{lab.kernel_addr}:{port}", "--seconds", seconds]
        ) as client:
            result = client.done(timeout=seconds + 60)
    return {**result, "per_s": result["connections"] / result["seconds"]}


# -- latency -----------------------------------------------------------------------------------------


def _summary(samples_us: list[float]) -> dict[str, Any]:
    ordered = sorted(samples_us)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "round_trips": len(ordered),
        "median_us": statistics.median(ordered),
        "p99_us": p99,
        "mean_us": statistics.fmean(ordered),
        "min_us": ordered[0],
        "max_us": ordered[-1],
    }


def latency(stack: Stack, labs: Labs, count: int, blocks: int = 10, warmup: int = 100) -> dict[str, Any]:
    """One octet to an echo server and back, `count` times on one connection (after `warmup`), for the
    stack and for Linux, in `blocks` blocks taken in turn, so that both meet the same load on the
    machine. The stack's connection has Nagle off (as TCP_NODELAY on Linux's sockets); each round
    trip is timed around SEND and RECEIVE in the calling thread."""
    lab = labs.stack
    with (
        Peer(lab, "kernel", ["serve", "--listen", lab.kernel_addr, "--mode", "echo"]) as srv,
        Peer(labs.linux, "kernel", ["serve", "--listen", labs.linux.kernel_addr, "--mode", "echo"]) as ref,
    ):
        port = srv.ready()
        ref_port = ref.ready()
        config = dataclasses.replace(stack.config, nagle=False)
        cid = stack.open(lab.kernel_addr, port, timeout=10, config=config)
        clock = time.perf_counter

        def round_trips(n: int) -> list[float]:
            samples = []
            for _ in range(n):
                t = clock()
                stack.send(cid, b"x", push=True)
                if not stack.receive(cid, 1, timeout=5):
                    raise BenchError("the echo server closed")
                samples.append((clock() - t) * 1e6)
            return samples

        with Peer(
            labs.linux,
            "stack",
            ["rtt", "--connect", f"{labs.linux.kernel_addr}:{ref_port}", "--warmup", warmup],
        ) as client:
            round_trips(warmup)
            client.ready()
            ours: list[float] = []
            linux: list[float] = []
            for i in range(blocks):
                n = count // blocks + (1 if i < count % blocks else 0)
                ours += round_trips(n)
                client.tell(str(n))
                linux += client.done(timeout=60 + n / 100)["samples"]
        stack.close(cid)
    return {"stack": _summary(ours), "linux": _summary(linux), "blocks": blocks}


# -- scale -------------------------------------------------------------------------------------------


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError("no VmRSS in /proc/self/status")


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process, by the name Python gave the thread."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        name = names.get(int(task.name), f"thread {task.name}")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return out


def stack_scale(
    stack: Stack, lab: Lab, connections: int, idle_seconds: float, active: int, rounds: int, batch: int = 500
) -> dict[str, Any]:
    """`connections` established connections to Linux's echo server, opened `batch` at a time; the
    resident memory they add (RSS after, less RSS before, over N); the process's CPU time while they
    sit idle for `idle_seconds`, over that wall time; then `active` of them each sending 100 octets
    and reading them back, all at once, `rounds` times. Every connection is aborted at the end."""
    with Peer(lab, "kernel", ["serve", "--listen", lab.kernel_addr, "--mode", "echo"]) as srv:
        port = srv.ready()
        kernel = IPv4Address(str(lab.kernel_addr))
        cids: list[str] = []
        gc.collect()
        rss0 = rss_bytes()
        start = time.monotonic()
        try:
            while len(cids) < connections:
                opened = [
                    stack.open(kernel, port, wait=False) for _ in range(min(batch, connections - len(cids)))
                ]
                for cid in opened:
                    if not stack.wait_state(cid, State.ESTABLISHED, timeout=60):
                        raise BenchError(f"{cid}: not established within 60 s ({stack.status(cid).state})")
                cids.extend(opened)
            open_seconds = time.monotonic() - start
            gc.collect()
            rss1 = rss_bytes()

            threads0, cpu0, wall0 = thread_cpu(), cpu_seconds(), time.monotonic()
            time.sleep(idle_seconds)
            threads1, cpu1, wall1 = thread_cpu(), cpu_seconds(), time.monotonic()
            idle_wall = wall1 - wall0
            rss2 = rss_bytes()

            message = b"m" * REQUEST
            chosen = cids[:active]
            round_times = []
            cpu_a, wall_a = cpu_seconds(), time.monotonic()
            for _ in range(rounds):
                t = time.monotonic()
                for cid in chosen:
                    stack.send(cid, message, push=True, timeout=30)
                for cid in chosen:
                    got = 0
                    while got < REQUEST:
                        piece = stack.receive(cid, 65536, timeout=30)
                        if not piece:
                            raise BenchError(f"{cid}: the echo server closed")
                        got += len(piece)
                round_times.append(time.monotonic() - t)
            active_wall = time.monotonic() - wall_a
            active_cpu = cpu_seconds() - cpu_a
        finally:
            for cid in cids:
                with contextlib.suppress(StackError):
                    stack.abort(cid)
    return {
        "connections": connections,
        "open_seconds": open_seconds,
        "opened_per_s": connections / open_seconds,
        "rss_before": rss0,
        "rss_after": rss1,
        "rss_after_idle": rss2,
        "bytes_per_conn": (rss1 - rss0) / connections,
        "idle_seconds": idle_wall,
        "idle_cpu_seconds": cpu1 - cpu0,
        "idle_cpu_percent": 100 * (cpu1 - cpu0) / idle_wall,
        "idle_cpu_by_thread": {
            name: round(threads1.get(name, 0.0) - before, 3)
            for name, before in threads0.items()
            if threads1.get(name, 0.0) - before > 0
        },
        "active": len(chosen),
        "rounds": rounds,
        "round_seconds_median": statistics.median(round_times),
        "round_seconds_max": max(round_times),
        "active_round_trips_per_s": len(chosen) * rounds / active_wall,
        "active_cpu_percent": 100 * active_cpu / active_wall,
    }
