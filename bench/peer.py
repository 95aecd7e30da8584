"""Linux's side of the benchmark: small programs on the kernel's own sockets, each run inside a lab
namespace as `python -m bench.peer MODE ...` (standard library only).

A program that listens prints `READY <port>` once it does; every program that finishes prints one
`DONE <json>` line with what it measured (times are time.monotonic(), CLOCK_MONOTONIC, the same clock
in every process of the machine) and exits 0. Each stops when its stdin reaches end of file, so a
benchmark that dies takes its peers with it.

    sink    --listen ADDR | --connect ADDR:PORT
            one connection read to its end: {"count", "crc", "t0" (established), "t1" (end of stream)}
    source  --listen ADDR | --connect ADDR:PORT  --size N [--max-seconds S]
            one connection, the bench.pattern bytes until N are sent or S seconds pass, then close
    serve   --listen ADDR [--port P] --mode echo|answer [--request N]
            many connections at once (epoll): `echo` sends back what comes until the client closes;
            `answer` reads N bytes, sends N bytes back and closes first. Runs until stopped.
    rate    --connect ADDR:PORT --seconds S [--request N] [--concurrency C]
            connect, send N bytes, read N bytes, read to the server's close, close; as many times as
            S seconds allow: {"connections", "seconds", "errors"}
    rtt     --connect ADDR:PORT [--warmup W]
            one connection, TCP_NODELAY: send one byte, read it back; W times, then READY, then N
            times for each line N on stdin: {"samples": the round trips in µs}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import select
import socket
import sys
import threading
import time
import zlib
from collections.abc import Sequence

from bench import pattern

BACKLOG = 65535  # the kernel caps it at net.core.somaxconn, which the benchmark raises in the namespace


def say(word: str, payload: object = None) -> None:
    line = (
        word
        if payload is None
        else f"{word} {payload if isinstance(payload, str | int) else json.dumps(payload)}"
    )
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _watch_stdin() -> None:
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    os._exit(0)


def _more_files() -> None:
    """Room for tens of thousands of sockets (root may raise the hard limit)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 65536), max(hard, 65536)))
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _listener(addr: str, port: int = 0) -> socket.socket:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(BACKLOG)
    return srv


def _one_connection(args: argparse.Namespace) -> socket.socket:
    """The one connection of `sink` or `source`: accepted (after READY) or made."""
    if args.listen:
        srv = _listener(args.listen)
        say("READY", srv.getsockname()[1])
        conn, _ = srv.accept()
        srv.close()
        return conn
    return socket.create_connection(_address(args.connect), timeout=30)


def sink(args: argparse.Namespace) -> None:
    conn = _one_connection(args)
    conn.settimeout(None)
    t0 = time.monotonic()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    count = crc = 0
    while n := conn.recv_into(buf):
        crc = zlib.crc32(view[:n], crc)
        count += n
    t1 = time.monotonic()
    conn.close()
    say("DONE", {"count": count, "crc": crc, "t0": t0, "t1": t1})


def source(args: argparse.Namespace) -> None:
    conn = _one_connection(args)
    conn.settimeout(None)
    t0 = time.monotonic()
    deadline = t0 + args.max_seconds
    sent = 0
    while sent < args.size and time.monotonic() < deadline:
        piece = pattern.chunk_at(sent, args.size - sent)
        conn.sendall(piece)
        sent += len(piece)
    conn.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        while conn.recv(65536):  # the receiver closes once it has read everything
            pass
    t1 = time.monotonic()
    conn.close()
    say("DONE", {"sent": sent, "t0": t0, "t1": t1})


def serve(args: argparse.Namespace) -> None:
    """Many connections in one thread: epoll, blocking sockets touched only when they are readable."""
    _more_files()
    srv = _listener(args.listen, args.port)
    srv.setblocking(False)
    poller = select.epoll()
    poller.register(srv.fileno(), select.EPOLLIN)
    conns: dict[int, list] = {}  # fd -> [socket, octets read so far]
    answer = b"a" * args.request
    say("READY", srv.getsockname()[1])

    def drop(fd: int) -> None:
        sock = conns.pop(fd)[0]
        with contextlib.suppress(OSError):
            poller.unregister(fd)
        sock.close()

    while True:
        for fd, _events in poller.poll():
            if fd == srv.fileno():
                while True:
                    try:
                        sock, _ = srv.accept()
                    except BlockingIOError:
                        break
                    except OSError:
                        break  # out of files or memory: the client sees its connection refused or reset
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[sock.fileno()] = [sock, 0]
                    poller.register(sock.fileno(), select.EPOLLIN)
                continue
            entry = conns.get(fd)
            if entry is None:
                continue
            sock = entry[0]
            try:
                data = sock.recv(65536)
                if not data:
                    drop(fd)
                elif args.mode == "echo":
                    sock.sendall(data)
                else:
                    entry[1] += len(data)
                    if entry[1] >= args.request:
                        sock.sendall(answer)
                        drop(fd)  # the server closes first: its side keeps TIME-WAIT, not the client's
            except OSError:
                drop(fd)


def rate(args: argparse.Namespace) -> None:
    target = _address(args.connect)
    request = b"q" * args.request
    start = time.monotonic()
    deadline = start + args.seconds
    totals = {"connections": 0, "errors": 0}
    lock = threading.Lock()

    def client() -> None:
        done = errors = 0
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(target, timeout=10) as sock:
                    sock.sendall(request)
                    got = 0
                    while got < args.request:
                        piece = sock.recv(65536)
                        if not piece:
                            raise ConnectionError("closed before the answer")
                        got += len(piece)
                    while sock.recv(65536):  # to the server's FIN
                        pass
                done += 1
            except OSError:
                errors += 1
        with lock:
            totals["connections"] += done
            totals["errors"] += errors

    threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    say("DONE", {**totals, "seconds": time.monotonic() - start})


def rtt(args: argparse.Namespace) -> None:
    """Round trips in blocks, each when told: a line `N` on stdin times N more; end of file ends it
    (so the benchmark can interleave Linux's blocks with the stack's)."""
    with socket.create_connection(_address(args.connect), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        clock = time.perf_counter

        def round_trips(n: int) -> list[float]:
            samples = []
            for _ in range(n):
                t = clock()
                sock.sendall(b"x")
                if not sock.recv(1):
                    raise ConnectionError("the echo server closed")
                samples.append(round((clock() - t) * 1e6, 1))
            return samples

        round_trips(args.warmup)
        say("READY", 0)
        while line := sys.stdin.readline():
            say("DONE", {"samples": round_trips(int(line))})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode_name", required=True)

    def endpoint(p: argparse.ArgumentParser, *, listen: bool = True) -> None:
        group = p.add_mutually_exclusive_group(required=True)
        if listen:
            group.add_argument("--listen", metavar="ADDR")
        group.add_argument("--connect", metavar="ADDR:PORT")

    p = modes.add_parser("sink")
    endpoint(p)
    p.set_defaults(run=sink)
    p = modes.add_parser("source")
    endpoint(p)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--max-seconds", type=float, default=3600.0)
    p.set_defaults(run=source)
    p = modes.add_parser("serve")
    p.add_argument("--listen", metavar="ADDR", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--mode", choices=("echo", "answer"), required=True)
    p.add_argument("--request", type=int, default=100)
    p.set_defaults(run=serve)
    p = modes.add_parser("rate")
    endpoint(p, listen=False)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--request", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=1)
    p.set_defaults(run=rate)
    p = modes.add_parser("rtt")
    endpoint(p, listen=False)
    p.add_argument("--warmup", type=int, default=100)
    p.set_defaults(run=rtt)
    args = parser.parse_args(argv)

    if args.run is not rtt:  # rtt reads its stdin itself, to its end
        threading.Thread(target=_watch_stdin, name="stdin-watch", daemon=True).start()
    args.run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
