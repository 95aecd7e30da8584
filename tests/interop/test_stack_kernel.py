"""The user-space Stack (stack.runtime) against the Linux kernel's TCP, in the lab.

DESIGN.md, "Quality bars": interoperation is proven against the kernel's TCP, not only stack-to-stack.
Each test drives the Stack through its user calls on the lab's stack side (198.18.0.1) and checks what a
user would check on the kernel's side (198.18.0.2): the lab's services, curl, tcpdump, ss, and small
standalone Python programs run in the kernel's namespace that report what their sockets saw.

Network rule: traffic only to the addresses of the lab these tests build (198.18.0.0/15).
No test sleeps in place of a condition: they wait on process output, on Stack.wait_state, on RECEIVE
with a timeout, or on a segment seen through Stack.tap.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import http.client
import io
import json
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

import dpkt
import pytest

from stack.lab import Lab
from stack.runtime import Stack, StackError
from stack.services import pattern, pattern_bytes, pattern_sha256
from stack.tcp import Event, EventKind, State
from stack.wire.tcp import Flags
from tests.interop.conftest import KernelProcess, wait_for
from tests.interop.transfer import (
    SINK_SERVER,
    Seen,
    Trace,
    download,
    kernel_ns_run,
    nft_in_kernel_ns,
    random_loss,
    upload,
)

pytestmark = pytest.mark.root

KernelPython = Callable[..., KernelProcess]

ECHO, DISCARD, HTTP = 7, 9, 80
CLOSED_PORT = 6  # nothing listens there on the kernel's side
BIG = 20_000_000


# -- programs run in the kernel's namespace (standard library only) ---------------------------------------

SHUT_WR_SERVER = r"""
import hashlib, socket, sys
addr, greeting_len = sys.argv[1], int(sys.argv[2])
srv = socket.create_server((addr, 0))
print("READY", srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
srv.close()
conn.sendall(hashlib.shake_128(b"greeting").digest(greeting_len))
conn.shutdown(socket.SHUT_WR)
print("SHUT", flush=True)
h, n = hashlib.sha256(), 0
while piece := conn.recv(1 << 16):
    h.update(piece)
    n += len(piece)
print("EOF", n, h.hexdigest(), flush=True)
conn.close()
"""
"""Accept one connection, send a greeting, shut down the write side, then read to end of stream."""

RESET_REPORTER = r"""
import errno, socket, sys
srv = socket.create_server((sys.argv[1], 0))
print("READY", srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
srv.close()
print("GOT", conn.recv(100).decode(), flush=True)
try:
    n = 0
    while piece := conn.recv(1 << 16):
        n += len(piece)
    print("EOF", n, flush=True)
except OSError as e:
    print("ERROR", errno.errorcode.get(e.errno, e.errno), flush=True)
"""
"""Accept one connection, print the first data, then report how reading ended: EOF or the errno."""

RESETTING_SERVER = r"""
import socket, struct, sys
srv = socket.create_server((sys.argv[1], 0))
print("READY", srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
srv.close()
print("GOT", conn.recv(100).decode(), flush=True)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()  # linger 0: the connection is aborted with a RST
print("ABORTED", flush=True)
"""

ECHO_SERVER = r"""
import socket, sys, threading
srv = socket.create_server((sys.argv[1], 0), backlog=int(sys.argv[2]))
print("READY", srv.getsockname()[1], flush=True)
def echo(conn):
    with conn:
        while piece := conn.recv(1 << 16):
            conn.sendall(piece)
while True:
    conn, peer = srv.accept()
    threading.Thread(target=echo, args=(conn,), daemon=True).start()
"""
"""An echo server with a listen backlog as large as asked (the lab's services listen with Python's
socketserver default of 5: fifty SYNs at once overflow it, and the kernel's SYN cookies then answer
the second data segment of a connection whose handshake ACK it dropped with a RST)."""

HTTP_CLIENT = r"""
import http.client, json, sys
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=20)
conn.request("GET", sys.argv[3], headers={"User-Agent": "kernel-side"})
resp = conn.getresponse()
body = resp.read()
print(json.dumps({"status": resp.status, "reason": resp.reason,
                  "headers": dict(resp.getheaders()), "body": body.decode("latin-1")}), flush=True)
"""
"""An HTTP/1.1 client on the kernel's TCP: GET a path, print status, headers and body as JSON."""


# -- helpers ---------------------------------------------------------------------------------------------


def receive_exactly(stack: Stack, cid: str, n: int, timeout: float = 10.0) -> bytes:
    """RECEIVE until `n` octets have come (or the stream ends)."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < n:
        piece = stack.receive(cid, n - len(out), timeout=max(0.01, deadline - time.monotonic()))
        if not piece:
            break
        out += piece
    return bytes(out)


def receive_to_end(stack: Stack, cid: str, timeout: float = 30.0) -> bytes:
    """RECEIVE until the end of the stream (RECEIVE returns b"")."""
    out = bytearray()
    deadline = time.monotonic() + timeout
    while piece := stack.receive(cid, 1 << 20, timeout=max(0.01, deadline - time.monotonic())):
        out += piece
    return bytes(out)


def split_http(raw: bytes) -> http.client.HTTPResponse:
    """Parse a whole HTTP/1.1 response with the standard library's parser."""

    class _Raw:
        def makefile(self, mode: str) -> io.BytesIO:
            return io.BytesIO(raw)

    response = http.client.HTTPResponse(_Raw())  # type: ignore[arg-type]
    response.begin()
    return response


def http_get(stack: Stack, lab: Lab, path: str) -> tuple[str, bytes]:
    """GET `path` from the kernel's HTTP service over the stack; returns (id, whole response)."""
    cid = stack.open(lab.kernel_addr, HTTP, timeout=5)
    request = f"GET {path} HTTP/1.1\r\nHost: {lab.kernel_addr}\r\nConnection: close\r\n\r\n"
    stack.send(cid, request.encode(), push=True)
    return cid, receive_to_end(stack, cid)


def serve_http_once(stack: Stack, cid: str, response: bytes, timeout: float = 10.0) -> bytes:
    """On a listening connection: wait for a client, read its request head, answer, close."""
    assert stack.wait_state(cid, State.ESTABLISHED, timeout), f"no client came: {stack.status(cid).state}"
    request = bytearray()
    while b"\r\n\r\n" not in request:
        piece = stack.receive(cid, 65536, timeout=timeout)
        assert piece, f"the client closed after {bytes(request)!r}"
        request += piece
    stack.send(cid, response, push=True)
    stack.close(cid)
    return bytes(request)


def kernel_sockets(lab: Lab, state: str, stack_port: int) -> list[str]:
    """The kernel's TCP sockets in `state` (ss's spelling) whose peer is the stack's `stack_port`."""
    out = kernel_ns_run(lab, ["ss", "-Htn", "state", state, "dport", "=", f":{stack_port}"])
    return [line for line in out.splitlines() if line.strip()]


def no_internal_errors(stack: Stack) -> None:
    assert stack.errors == [], f"the stack's threads reported errors: {stack.errors}"


# -- data through the kernel's services ------------------------------------------------------------------


def test_echo_round_trip(lab_stack: Stack, stack_lab: Lab) -> None:
    stack = lab_stack
    cid = stack.open(stack_lab.kernel_addr, ECHO, timeout=5)
    status = stack.status(cid)
    assert status.state is State.ESTABLISHED
    assert (status.remote_addr, status.remote_port) == (stack_lab.kernel_addr, ECHO)
    wait_for(
        lambda: bool(kernel_sockets(stack_lab, "established", status.local_port)),
        5,
        "the kernel's side to be ESTABLISHED",
    )

    message = b"hello, Linux: this is tcpsh\r\n"
    assert stack.send(cid, message, push=True) == len(message)
    assert receive_exactly(stack, cid, len(message)) == message

    stack.close(cid)
    # The echo service closes when it reads our FIN; its FIN brings us to TIME-WAIT.
    assert stack.wait_state(cid, State.TIME_WAIT, 5), stack.status(cid).state
    assert stack.receive(cid, 100, timeout=1) == b""
    wait_for(lambda: not kernel_sockets(stack_lab, "all", status.local_port), 5, "the kernel to forget it")
    no_internal_errors(stack)


def test_http_get_index(lab_stack: Stack, stack_lab: Lab) -> None:
    cid, raw = http_get(lab_stack, stack_lab, "/")
    response = split_http(raw)
    body = response.read()
    assert response.status == 200, raw[:200]
    assert int(response.getheader("Content-Length", "-1")) == len(body)
    assert response.getheader("Content-Type", "").startswith("text/html")
    assert b"<title>tcpsh lab</title>" in body and str(stack_lab.kernel_addr).encode() in body
    # The same page as the kernel's own TCP gets it (curl inside the kernel's namespace).
    curl = ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "10"]
    assert body == kernel_ns_run(stack_lab, [*curl, f"http://{stack_lab.kernel_addr}/"]).encode()
    # The server closed first (Connection: close): we are in CLOSE-WAIT until we close too.
    assert lab_stack.status(cid).state is State.CLOSE_WAIT
    lab_stack.close(cid)
    assert lab_stack.wait_state(cid, State.CLOSED, 5), lab_stack.status(cid).state


def test_http_get_bytes_by_hash(lab_stack: Stack, stack_lab: Lab) -> None:
    n = 1_000_003
    cid, raw = http_get(lab_stack, stack_lab, f"/bytes/{n}")
    lab_stack.close(cid)
    response = split_http(raw)
    body = response.read()
    assert response.status == 200
    assert int(response.getheader("Content-Length", "-1")) == n
    assert len(body) == n
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(n)


def test_open_to_closed_port_is_refused(lab_stack: Stack, stack_lab: Lab) -> None:
    with pytest.raises(StackError, match="refused"):
        lab_stack.open(stack_lab.kernel_addr, CLOSED_PORT, timeout=5)
    # Refused is refused: the stack is no worse for it.
    cid = lab_stack.open(stack_lab.kernel_addr, ECHO, timeout=5)
    lab_stack.send(cid, b"still here", push=True)
    assert receive_exactly(lab_stack, cid, 10) == b"still here"


def test_fifty_connections_at_once_each_gets_its_own_bytes(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    stack = lab_stack
    count = 50
    server = kernel_python(ECHO_SERVER, stack_lab.kernel_addr, 128)
    (echo_port,) = server.expect("READY ")
    cids = [stack.open(stack_lab.kernel_addr, int(echo_port), wait=False) for _ in range(count)]
    for cid in cids:
        assert stack.wait_state(cid, State.ESTABLISHED, 10), f"{cid}: {stack.status(cid).state}"
    ports = {stack.status(cid).local_port for cid in cids}
    assert len(ports) == count, "two connections share a local port"

    payloads = {
        cid: f"<{cid} #{i}>".encode() + hashlib.shake_128(f"payload {i}".encode()).digest(500 + 211 * i)
        for i, cid in enumerate(cids)
    }
    for cid, data in payloads.items():  # every connection has data in flight before any is read
        assert stack.send(cid, data, push=True) == len(data)
    for cid, data in reversed(payloads.items()):
        got = receive_exactly(stack, cid, len(data), timeout=15)
        assert got == data, f"{cid}: {len(got)} octets back, first {got[:20]!r}, want {data[:20]!r}"
    # All fifty are open at once on the kernel's side too.
    established = kernel_ns_run(
        stack_lab, ["ss", "-Htn", "state", "established", "sport", "=", f":{echo_port}"]
    )
    assert {int(line.split()[-1].rpartition(":")[2]) for line in established.splitlines()} >= ports
    for cid in cids:
        stack.close(cid)
    for cid in cids:
        assert stack.wait_state(cid, State.TIME_WAIT, 10), f"{cid}: {stack.status(cid).state}"
    no_internal_errors(stack)


# -- the kernel as the client ----------------------------------------------------------------------------


def closed_cleanly(stack: Stack, cid: str, trace: Trace) -> None:
    """Both sides closed without a RST: TIME-WAIT when our FIN went first, CLOSED (through LAST-ACK) when
    the client had read the whole response and closed before our CLOSE came."""
    wait_for(lambda: stack.status(cid).state in (State.TIME_WAIT, State.CLOSED), 5, "both sides to close")
    assert not any(s.seg.flags & Flags.RST for s in trace.segments), trace.dump()
    # One FIN each way: the same FIN sent again (a retransmission, a tail loss probe) is the same FIN.
    fins = {(s.direction, (s.seq + s.length) % 2**32) for s in trace.segments if s.seg.flags & Flags.FIN}
    assert len(fins) == 2 and {d for d, _ in fins} == {"in", "out"}, trace.dump()


def fixed_response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + b"Connection: close\r\n\r\n"
        + body
    )


def test_curl_fetches_from_a_passive_open(lab_stack: Stack, stack_lab: Lab) -> None:
    stack = lab_stack
    trace = Trace(stack)
    cid = stack.listen(8080)
    assert stack.status(cid).state is State.LISTEN
    body = b"served by tcpsh, a TCP in user space\n" * 100
    response = fixed_response(body)
    curl = stack_lab.run_in_kernel_ns(
        [
            "curl",
            "--silent",
            "--show-error",
            "--include",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            f"http://{stack_lab.stack_addr}:8080/hello",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        request = serve_http_once(stack, cid, response)
        out, err = curl.communicate(timeout=20)
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    assert curl.returncode == 0, err.decode(errors="replace")
    assert out == response
    assert request.startswith(b"GET /hello HTTP/1.1\r\n")
    assert b"\r\nHost: " + str(stack_lab.stack_addr).encode() + b":8080\r\n" in request
    status = stack.status(cid)
    assert (status.remote_addr, status.passive) == (stack_lab.kernel_addr, True)
    closed_cleanly(stack, cid, trace)
    no_internal_errors(stack)


def test_python_client_fetches_from_a_passive_open(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    stack = lab_stack
    trace = Trace(stack)
    cid = stack.listen(8081)
    body = hashlib.shake_128(b"body").digest(150_000).hex().encode()  # 300 kB: many windows
    client = kernel_python(HTTP_CLIENT, stack_lab.stack_addr, 8081, "/python")
    request = serve_http_once(stack, cid, fixed_response(body))
    report = json.loads(client.readline(timeout=20))
    assert client.wait() == 0
    assert report["status"] == 200 and report["reason"] == "OK"
    assert report["headers"]["Content-Length"] == str(len(body))
    assert report["body"].encode("latin-1") == body
    assert request.startswith(b"GET /python HTTP/1.1\r\n") and b"User-Agent: kernel-side" in request
    closed_cleanly(stack, cid, trace)


# -- closing: half-close both ways, abort, reset, TIME-WAIT ----------------------------------------------


def test_stack_closes_first_and_still_receives_in_fin_wait_2(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    stack = lab_stack
    trace = Trace(stack)
    reply_len = 300_000
    server = kernel_python(SINK_SERVER, stack_lab.kernel_addr, reply_len)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    request = hashlib.shake_128(b"request").digest(50_000)
    stack.send(cid, request)
    stack.close(cid)

    count, digest = server.expect("EOF ")  # the kernel read our FIN as end of stream
    assert (int(count), digest) == (len(request), hashlib.sha256(request).hexdigest())
    assert stack.wait_state(cid, State.FIN_WAIT_2, 5), stack.status(cid).state

    server.tell("go")  # only now does the kernel send: all of it arrives in FIN-WAIT-2
    data = receive_to_end(stack, cid)
    assert len(data) == reply_len
    assert data == hashlib.shake_128(b"reply").digest(reply_len)
    assert server.expect("SENT ") == [str(reply_len)]
    assert server.wait() == 0
    ours = stack.status(cid).local_port

    def kernel_fins(segs: list[Seen]) -> list[Seen]:
        return [s for s in segs if not s.out and s.port == ours and s.flags & Flags.FIN]

    fin = trace.wait_for(kernel_fins, 5, "the kernel's FIN")[0]  # type: ignore[index]
    fin_end = (fin.seq + fin.length + 1) % 2**32
    trace.wait_for(
        lambda segs: [s for s in segs if s.out and s.port == ours and s.ack == fin_end],
        5,
        "the stack's ACK of the kernel's FIN",
    )
    if not stack.wait_state(cid, State.TIME_WAIT, 5):
        # RFC 9293 3.10.7.4: a RST ends TIME-WAIT (as in Linux). The only one allowed here answers our ACK of
        # a segment the kernel sent again after the FIN, once it had closed (seen on a loaded machine).
        after = [s for s in trace.of(ours) if s.at >= fin.at and not s.out and s is not fin]
        again = [s for s in after if not s.flags & Flags.RST]
        resets = [s for s in after if s.flags & Flags.RST]
        assert stack.status(cid).state is State.CLOSED and again and resets, trace.dump()
    no_internal_errors(stack)


def test_kernel_shuts_down_writing_first_and_still_receives(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    stack = lab_stack
    greeting_len = 100_000
    server = kernel_python(SHUT_WR_SERVER, stack_lab.kernel_addr, greeting_len)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)

    greeting = receive_to_end(stack, cid)
    assert greeting == hashlib.shake_128(b"greeting").digest(greeting_len)
    assert stack.receive(cid, 100, timeout=1) == b""  # the end of the stream, again
    assert stack.status(cid).state is State.CLOSE_WAIT
    server.expect("SHUT")

    reply = hashlib.shake_128(b"half-closed reply").digest(400_000)
    assert stack.send(cid, reply, push=True) == len(reply)
    stack.close(cid)
    count, digest = server.expect("EOF ")
    assert (int(count), digest) == (len(reply), hashlib.sha256(reply).hexdigest())
    assert server.wait() == 0
    assert stack.wait_state(cid, State.CLOSED, 5), stack.status(cid).state  # LAST-ACK, then CLOSED
    no_internal_errors(stack)


def test_abort_resets_the_kernel_side(lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython) -> None:
    stack = lab_stack
    server = kernel_python(RESET_REPORTER, stack_lab.kernel_addr)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    stack.send(cid, b"ping", push=True)
    assert server.expect("GOT ") == ["ping"]

    stack.abort(cid)
    assert server.expect("ERROR ") == [errno.errorcode[errno.ECONNRESET]]
    assert stack.status(cid).state is State.CLOSED
    with pytest.raises(StackError):
        stack.send(cid, b"after abort")
    local_port = stack.status(cid).local_port
    assert not kernel_sockets(stack_lab, "all", local_port)


def test_kernel_reset_is_reported_to_the_user(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    stack = lab_stack
    server = kernel_python(RESETTING_SERVER, stack_lab.kernel_addr)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    stack.send(cid, b"ping", push=True)
    assert server.expect("GOT ") == ["ping"]
    server.expect("ABORTED")
    with pytest.raises(StackError, match="reset"):
        stack.receive(cid, 100, timeout=5)
    assert stack.status(cid).state is State.CLOSED


def test_time_wait_acknowledges_a_retransmitted_fin(lab_stack: Stack, stack_lab: Lab) -> None:
    """RFC 9293 3.10.7.4, TIME-WAIT: a retransmitted FIN is acknowledged and 2 MSL restarts.

    The stack's ACK of the kernel's FIN is lost once: an nftables rule in the kernel's namespace drops
    it on arrival (INPUT hook, before the kernel's TCP sees it), so the kernel, in LAST-ACK, sends its
    FIN again. (Dropping it in the stack's namespace's OUTPUT hook works too, but makes the raw
    socket's sendto fail with EPERM instead of losing the segment on the wire.)
    """
    stack = lab_stack
    trace = Trace(stack)
    cid = stack.open(stack_lab.kernel_addr, ECHO, timeout=5)
    stack.send(cid, b"x", push=True)
    assert receive_exactly(stack, cid, 1) == b"x"
    status = stack.status(cid)
    port, fin_seq = status.local_port, status.rcv_nxt  # the kernel's FIN will take sequence number rcv_nxt

    table = f"tcpsh_test_{port}"
    kernel_ns_run(
        stack_lab,
        ["nft", "-f", "-"],
        stdin=(
            f"table ip {table} {{\n"
            f"  chain in {{\n"
            f"    type filter hook input priority 0; policy accept;\n"
            f"    ip saddr {stack_lab.stack_addr} tcp sport {port} tcp dport {ECHO} "
            f"tcp ackseq {(fin_seq + 1) % 2**32} tcp flags == ack counter drop\n"
            f"  }}\n"
            f"}}\n"
        ),
    )

    def dropped() -> int:
        text = kernel_ns_run(stack_lab, ["nft", "list", "table", "ip", table])
        match = re.search(r"counter packets (\d+)", text)
        return int(match.group(1)) if match else 0

    try:
        stack.close(cid)
        assert stack.wait_state(cid, State.TIME_WAIT, 5), f"{stack.status(cid).state}\n{trace.dump()}"
        wait_for(lambda: dropped() >= 1, 5, "the firewall to drop the ACK of the kernel's FIN")
        first_deadline = time.monotonic() + stack.status(cid).timers["time-wait"]
        assert kernel_sockets(stack_lab, "last-ack", port), "the kernel should still wait for our ACK"
    finally:
        kernel_ns_run(stack_lab, ["nft", "delete", "table", "ip", table])

    def fins(segments: list[Seen]) -> list[int]:
        return [i for i, s in enumerate(segments) if s.direction == "in" and s.seg.flags & Flags.FIN]

    def acked_again(segments: list[Seen]) -> bool:
        found = fins(segments)
        return len(found) >= 2 and any(
            s.direction == "out" and s.seg.flags & Flags.ACK and s.seg.ack == (fin_seq + 1) % 2**32
            for s in segments[found[1] + 1 :]
        )

    trace.wait_for(acked_again, 10, "the kernel's FIN again and the stack's ACK of it")
    first, second = (trace.segments[i].seg for i in fins(trace.segments)[:2])
    assert first.seq == second.seq == fin_seq, trace.dump()
    assert stack.status(cid).state is State.TIME_WAIT
    second_deadline = time.monotonic() + stack.status(cid).timers["time-wait"]
    assert second_deadline > first_deadline + 0.1, "2 MSL was not restarted by the retransmitted FIN"
    wait_for(lambda: not kernel_sockets(stack_lab, "last-ack", port), 5, "the kernel to get our ACK")
    assert not any(s.seg.flags & Flags.RST for s in trace.segments), trace.dump()
    no_internal_errors(stack)


# -- bulk: 20 MB each way, by hash ---------------------------------------------------------------------


def test_20mb_stack_to_kernel(lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython) -> None:
    assert upload(lab_stack, stack_lab, kernel_python, BIG) == (BIG, pattern_sha256(BIG))
    no_internal_errors(lab_stack)


def test_20mb_kernel_to_stack(lab_stack: Stack, stack_lab: Lab) -> None:
    assert download(lab_stack, stack_lab, BIG) == (BIG, pattern_sha256(BIG))
    no_internal_errors(lab_stack)


def test_20mb_each_way_at_once(lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython) -> None:
    """An upload and a download on two connections at the same time, from two threads."""
    results: dict[str, object] = {}

    def run(name: str, fn: Callable[[], tuple[int, str]]) -> None:
        try:
            results[name] = fn()
        except BaseException as e:  # reported by the main thread
            results[name] = e

    threads = [
        threading.Thread(target=run, args=("up", lambda: upload(lab_stack, stack_lab, kernel_python, BIG))),
        threading.Thread(target=run, args=("down", lambda: download(lab_stack, stack_lab, BIG))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "a transfer did not finish within 90 s"
    expected = (BIG, pattern_sha256(BIG))
    for name in ("up", "down"):
        if isinstance(results[name], BaseException):
            raise results[name]  # type: ignore[misc]
        assert results[name] == expected, name
    no_internal_errors(lab_stack)


def test_echo_sends_and_receives_concurrently_on_one_connection(lab_stack: Stack, stack_lab: Lab) -> None:
    """5 MB through the kernel's echo: one thread SENDs while another RECEIVEs on the same connection.

    Neither could finish alone: the echo stops reading once what it sends back is not being read.
    """
    stack = lab_stack
    n = 5_000_000
    data = pattern_bytes(n)
    cid = stack.open(stack_lab.kernel_addr, ECHO, timeout=5)
    failure: list[BaseException] = []

    def sender() -> None:
        try:
            stack.send(cid, data, timeout=60)
            stack.close(cid)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=sender)
    thread.start()
    got = receive_to_end(stack, cid, timeout=60)
    thread.join(60)
    assert not failure, failure
    assert len(got) == n
    assert hashlib.sha256(got).hexdigest() == pattern_sha256(n)
    assert stack.wait_state(cid, State.TIME_WAIT, 10), stack.status(cid).state
    no_internal_errors(stack)


# -- what the wire shows -------------------------------------------------------------------------------


def tcp_checksum_ok(ip_raw: bytes) -> bool:
    """The TCP checksum of an IPv4 datagram, checked with dpkt's Internet checksum (independent of ours)."""
    ihl = (ip_raw[0] & 0x0F) * 4
    (total,) = struct.unpack_from("!H", ip_raw, 2)
    tcp = ip_raw[ihl:total]
    pseudo = ip_raw[12:16] + ip_raw[16:20] + struct.pack("!BBH", 0, 6, len(tcp))
    return dpkt.in_cksum(pseudo + tcp) == 0


def test_capture_of_a_clean_session(
    lab_stack: Stack, stack_lab: Lab, kernel_process: Callable[..., KernelProcess], tmp_path: Path
) -> None:
    stack = lab_stack
    pcap = tmp_path / "session.pcap"
    argv = [
        "tcpdump",
        "--immediate-mode",
        "-n",
        "-U",
        "-Z",
        "root",
        "-i",
        stack_lab.kernel_if,
        "-w",
        str(pcap),
    ]
    tcpdump = kernel_process(["sh", "-c", 'exec "$@" 2>&1', "tcpdump", *argv])  # its stderr, line by line
    try:
        wait_until = time.monotonic() + 10
        while "listening on" not in tcpdump.readline(timeout=max(0.01, wait_until - time.monotonic())):
            pass

        cid = stack.open(stack_lab.kernel_addr, ECHO, timeout=5)
        port = stack.status(cid).local_port
        message = b"a clean session, start to end " * 200
        stack.send(cid, message, push=True)
        assert receive_exactly(stack, cid, len(message)) == message
        stack.close(cid)
        assert stack.wait_state(cid, State.TIME_WAIT, 5)
        wait_for(lambda: not kernel_sockets(stack_lab, "all", port), 5, "the kernel to close its side")
    finally:
        tcpdump.proc.send_signal(signal.SIGINT)  # tcpdump writes out what it holds and exits
        assert tcpdump.wait(timeout=10) == 0
    (dropped,) = re.findall(r"^(\d+) packets dropped by kernel$", tcpdump.rest(), re.M)
    assert dropped == "0", "tcpdump missed packets"

    ours: list[tuple[bytes, dpkt.tcp.TCP]] = []
    theirs: list[tuple[bytes, dpkt.tcp.TCP]] = []
    payload_in = bytearray()
    with pcap.open("rb") as f:
        for _ts, frame in dpkt.pcap.Reader(f):
            eth = dpkt.ethernet.Ethernet(frame)
            if not isinstance(eth.data, dpkt.ip.IP) or not isinstance(eth.data.data, dpkt.tcp.TCP):
                continue
            ip, tcp = eth.data, eth.data.data
            ip_raw = frame[14 : 14 + ip.len]
            if socket.inet_ntoa(ip.src) == str(stack_lab.stack_addr) and tcp.sport == port:
                ours.append((ip_raw, tcp))
            elif socket.inet_ntoa(ip.src) == str(stack_lab.kernel_addr) and tcp.dport == port:
                theirs.append((ip_raw, tcp))
                payload_in += tcp.data

    assert ours and theirs, f"nothing captured for port {port}"
    for ip_raw, tcp in ours:
        assert dpkt.in_cksum(ip_raw[: (ip_raw[0] & 0x0F) * 4]) == 0, "bad IPv4 header checksum"
        assert tcp_checksum_ok(ip_raw), f"bad TCP checksum on segment seq={tcp.seq} flags={tcp.flags:#x}"
    everything = [tcp for _, tcp in ours + theirs]
    assert not [t for t in everything if t.flags & dpkt.tcp.TH_RST], "a RST in a session that closed cleanly"
    # Ours by offset in the stream: a tail loss probe (RFC 8985 7.3) may send the last segment again when
    # the kernel's ACK is slow on a busy machine; it must carry the same octets, and be one the stack
    # counted.
    isn = next(t.seq for _, t in ours if t.flags & dpkt.tcp.TH_SYN)
    sent_out: dict[int, bytes] = {}
    for _, t in ours:
        if t.data:
            offset = (t.seq - isn - 1) & 0xFFFFFFFF
            assert sent_out.setdefault(offset, t.data) == t.data, f"offset {offset} sent with other data"
    probes = stack.status(cid).loss_probes
    sent_again = sum(1 for _, t in ours if t.data) - len(sent_out)
    assert sent_again <= probes, f"{sent_again} segments sent again, {probes} of them loss probes"
    for side in (ours, theirs):
        assert sum(1 for _, t in side if t.flags & dpkt.tcp.TH_SYN) == 1
        fins = [t.seq + len(t.data) for _, t in side if t.flags & dpkt.tcp.TH_FIN]
        assert len(set(fins)) == 1 and len(fins) <= 1 + (probes if side is ours else 0), fins
    payload_out = b"".join(data for _, data in sorted(sent_out.items()))
    assert payload_out == message and bytes(payload_in) == message
    assert ours[-1][1].flags == dpkt.tcp.TH_ACK  # the last word is our ACK of the kernel's FIN


# -- bad input from the wire -------------------------------------------------------------------------


def tcp_header(sport: int, dport: int, seq: int, ack: int, offset: int, flags: int, checksum: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, 65535, checksum, 0)


def ipv4_header(
    src: IPv4Address,
    dst: IPv4Address,
    payload_len: int,
    *,
    ihl: int = 5,
    total: int | None = None,
    version: int = 4,
    good_checksum: bool = True,
) -> bytes:
    total_length = 20 + payload_len if total is None else total
    header = struct.pack(
        "!BBHHHBBH4s4s", (version << 4) | ihl, 0, total_length, 1, 0x4000, 64, 6, 0, src.packed, dst.packed
    )
    checksum = dpkt.in_cksum(header)
    if not good_checksum:
        checksum ^= 0x5A5A
    return header[:10] + struct.pack("!H", checksum) + header[12:]


def test_bad_packets_do_not_stop_the_receive_thread(lab_stack: Stack, stack_lab: Lab) -> None:
    stack = lab_stack
    rng = random.Random(9293)
    cid = stack.open(stack_lab.kernel_addr, ECHO, timeout=5)
    stack.send(cid, b"before", push=True)
    assert receive_exactly(stack, cid, 6) == b"before"
    status = stack.status(cid)
    before = stack.counters.bad_packets
    datagrams_before = stack.counters.datagrams_in

    # TCP from the kernel's namespace (the kernel writes a correct IPv4 header around it).
    tcp_garbage: list[bytes] = []
    tcp_garbage += [rng.randbytes(n) for n in range(1, 20)]  # shorter than a TCP header
    tcp_garbage += [tcp_header(40000, 7777, 1, 0, off, 0x02, 0) for off in range(5)]  # offset below 5
    tcp_garbage += [tcp_header(40000, 7777, 1, 0, 15, 0x02, 0) + b"\x01" * 8]  # offset past the end
    # In the connection's own window and 4-tuple, but with a wrong checksum: never to be delivered.
    evil = tcp_header(ECHO, status.local_port, status.rcv_nxt, status.snd_nxt, 5, 0x18, 0xBAD) + b"EVIL"
    tcp_garbage += [evil] * 3
    tcp_garbage += [rng.randbytes(rng.randrange(20, 120)) for _ in range(200)]  # random: checksums wrong
    surely_bad = 19 + 5 + 1 + 3

    # IPv4 itself malformed, as whole frames through a packet socket to the stack's MAC address.
    src, dst = stack_lab.kernel_addr, stack_lab.stack_addr
    body = tcp_header(40000, 7777, 1, 0, 5, 0x02, 0)
    ip_garbage = [
        ipv4_header(src, dst, len(body), ihl=4) + body,  # IHL below 5
        ipv4_header(src, dst, len(body), ihl=15) + body,  # IHL past the datagram
        ipv4_header(src, dst, len(body), total=1400) + body,  # total length past the frame
        ipv4_header(src, dst, len(body), total=10) + body,  # total length below the header
        ipv4_header(src, dst, len(body), version=6) + body,  # not version 4
        ipv4_header(src, dst, len(body), good_checksum=False) + body,  # header checksum wrong
    ]

    with stack_lab.enter_kernel_ns():
        raw_tcp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
        packet = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    with raw_tcp, packet:
        for datagram in tcp_garbage:
            raw_tcp.sendto(datagram, (str(dst), 0))
        mac = bytes.fromhex(stack_lab.stack_mac.replace(":", ""))
        for datagram in ip_garbage:
            packet.sendto(datagram, (stack_lab.kernel_if, 0x0800, 0, 0, mac))
    sent = len(tcp_garbage) + len(ip_garbage)
    wait_for(lambda: stack.counters.datagrams_in >= datagrams_before + sent, 10, "the stack to read them all")

    assert stack.counters.bad_packets - before >= surely_bad + len(ip_garbage), stack.counters
    # The connection never saw EVIL: what comes back is exactly what we send.
    stack.send(cid, b"after", push=True)
    assert receive_exactly(stack, cid, 5) == b"after"
    assert stack.status(cid).state is State.ESTABLISHED
    # And a new connection works as well as ever.
    other = stack.open(stack_lab.kernel_addr, ECHO, timeout=5)
    stack.send(other, b"a new connection", push=True)
    assert receive_exactly(stack, other, 16) == b"a new connection"
    for c in (cid, other):
        stack.close(c)
        assert stack.wait_state(c, State.TIME_WAIT, 5)
    no_internal_errors(stack)


# -- flow control, keep-alive, loss ----------------------------------------------------------------------

HOLDING_SINK = r"""
import hashlib, socket, sys
srv = socket.create_server((sys.argv[1], 0))
print("READY", srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
srv.close()
conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
print("HOLDING", flush=True)
sys.stdin.readline()  # read nothing until the test says so: the window closes
h, n = hashlib.sha256(), 0
while piece := conn.recv(1 << 16):
    h.update(piece)
    n += len(piece)
print("EOF", n, h.hexdigest(), flush=True)
conn.close()
"""
"""As SINK_SERVER, but reading only once a line comes on stdin, with a small receive buffer."""

KEEPALIVE_SERVER = r"""
import socket, sys
srv = socket.create_server((sys.argv[1], 0))
print("READY", srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
srv.close()
conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
print("KEEPALIVE", flush=True)
try:
    print("GOT", conn.recv(100).decode(), flush=True)
except OSError as e:
    print("ERROR", e, flush=True)
"""
"""Accept one connection and probe it with keep-alives after 1 s idle, every 1 s, giving up after 2."""


def test_kernel_closes_its_window_and_the_stack_probes_until_it_opens(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    """RFC 9293 3.8.6.1 (MUST-35, MUST-36): a zero window is probed, and the data flows once it opens."""
    stack = lab_stack
    trace = Trace(stack)
    server = kernel_python(HOLDING_SINK, stack_lab.kernel_addr)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    server.expect("HOLDING")
    n = 3_000_000
    failure: list[BaseException] = []

    def sender() -> None:
        try:
            for piece in pattern(n):
                stack.send(cid, piece, timeout=60)
            stack.close(cid)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        wait_for(lambda: stack.status(cid).snd_wnd == 0, 10, "the kernel to close its window")

        def probes_answered(segments: list[Seen]) -> bool:
            """Probes the stack sent once the window was zero, each answered by the kernel (still zero)."""
            closed_at = next(
                (i for i, s in enumerate(segments) if s.direction == "in" and not s.seg.window), None
            )
            if closed_at is None:
                return False
            count, probing = 0, False
            for s in segments[closed_at + 1 :]:
                if s.direction == "out" and len(s.seg.payload) <= 1:
                    probing = True
                elif s.direction == "in" and probing and s.seg.window == 0:
                    count, probing = count + 1, False
            return count >= 2

        trace.wait_for(probes_answered, 10, "two zero-window probes, each answered")
        assert stack.status(cid).state is State.ESTABLISHED
        server.tell("go")
        count, digest = server.expect("EOF ", timeout=60)
    finally:
        thread.join(60)
    assert not failure, failure
    assert (int(count), digest) == (n, pattern_sha256(n))
    assert stack.wait_state(cid, State.TIME_WAIT, 10), stack.status(cid).state
    no_internal_errors(stack)


def test_stack_closes_its_window_and_the_kernel_resumes_when_it_reads(
    lab_stack: Stack, stack_lab: Lab
) -> None:
    """The kernel fills the stack's receive buffer; the stack advertises a zero window and, once the
    user reads, opens it again; every byte arrives, in order."""
    stack = lab_stack
    trace = Trace(stack)
    n = 2 * stack.config.rcv_buf  # more than the buffer holds, whatever the profile says it is
    cid = stack.open(stack_lab.kernel_addr, HTTP, timeout=5)
    stack.send(cid, f"GET /bytes/{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), push=True)
    wait_for(lambda: stack.status(cid).rcv_wnd == 0, 10, "the stack's receive buffer to fill")
    full = stack.status(cid)
    # Full but for less than one MSS (receiver SWS avoidance, MUST-39, never offers less), to within
    # one unit of the scaled window field (RFC 7323 2.3: what it cannot express, rounded up).
    unit = 1 << full.rcv_shift
    assert -unit < stack.config.rcv_buf - full.recv_queued < full.rcv_mss + unit
    trace.wait_for(
        lambda segments: any(s.direction == "out" and s.seg.window == 0 for s in segments),
        5,
        "the stack to advertise a zero window",
    )
    raw = receive_to_end(stack, cid, timeout=60)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert len(body) == n
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(n)
    stack.close(cid)
    assert stack.wait_state(cid, State.CLOSED, 5), stack.status(cid).state
    no_internal_errors(stack)


def test_kernel_keepalive_probes_are_answered(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    """Linux's keep-alive probe (SEG.SEQ = RCV.NXT - 1, no data) is an unacceptable segment, which
    RFC 9293 3.10.7.4 answers with an ACK (PyTCP did not, and its peers reset the connection)."""
    stack = lab_stack
    trace = Trace(stack)
    server = kernel_python(KEEPALIVE_SERVER, stack_lab.kernel_addr)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    server.expect("KEEPALIVE")
    rcv_nxt = stack.status(cid).rcv_nxt

    def answered(segments: list[Seen]) -> bool:
        count = 0
        for i, s in enumerate(segments):
            if s.direction == "in" and s.seg.seq == (rcv_nxt - 1) % 2**32 and not s.seg.payload:
                count += any(
                    t.direction == "out" and t.seg.flags & Flags.ACK and t.seg.ack == rcv_nxt
                    for t in segments[i + 1 :]
                )
        return count >= 3  # more probes than TCP_KEEPCNT (2): every one was answered

    trace.wait_for(answered, 15, "three keep-alive probes, each answered")
    assert stack.status(cid).state is State.ESTABLISHED
    stack.send(cid, b"alive", push=True)
    assert server.expect("GOT ") == ["alive"]  # the kernel kept the connection: it was never reset
    no_internal_errors(stack)


def test_three_duplicate_acks_bring_a_fast_retransmit(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    """RFC 5681 3.2: one data segment is lost; Linux answers the segments after it with duplicate
    ACKs; the stack resends the lost one on the third, without waiting for its retransmission timer
    (set to 3 s for this connection, so that a timeout cannot pass for a fast retransmit)."""
    stack = lab_stack
    trace = Trace(stack)
    server = kernel_python(SINK_SERVER, stack_lab.kernel_addr, 0)
    (port,) = server.expect("READY ")
    slow_timer = dataclasses.replace(stack.config, rto_min=3.0, rto_initial=3.0)
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5, config=slow_timer)
    warm_up = pattern_bytes(200_000)  # grows the congestion window well past 4 segments
    stack.send(cid, warm_up, push=True)
    wait_for(lambda: stack.status(cid).send_unacked + stack.status(cid).send_queued == 0, 10, "warm-up ACKed")
    status = stack.status(cid)
    lost = status.snd_nxt
    remove = nft_in_kernel_ns(
        stack_lab,
        f"tcpsh_loss_{status.local_port}",
        f"  set seen {{ type ipv4_addr; flags dynamic; }}\n"
        f"  chain in {{\n"
        f"    type filter hook input priority 0; policy accept;\n"
        f"    ip saddr {stack_lab.stack_addr} tcp sport {status.local_port} tcp sequence {lost} "
        f"ip saddr @seen accept\n"
        f"    ip saddr {stack_lab.stack_addr} tcp sport {status.local_port} tcp sequence {lost} "
        f"add @seen {{ ip saddr }} counter drop\n"
        f"  }}",
    )
    try:
        burst = hashlib.shake_128(b"burst").digest(30_000)  # about twenty segments
        stack.send(cid, burst, push=True)

        def resent(segments: list[Seen]) -> bool:
            sent = [s for s in segments if s.direction == "out" and s.seg.seq == lost and s.seg.payload]
            return len(sent) >= 2

        trace.wait_for(resent, 2.0, "the lost segment to be sent again, before the 3 s timer")
        segments = list(trace.segments)
        first, again = (i for i, s in enumerate(segments) if s.direction == "out" and s.seg.seq == lost)
        dup_acks = [s for s in segments[first:again] if s.direction == "in" and s.seg.ack == lost]
        assert len(dup_acks) >= 3, trace.dump()
    finally:
        remove()
    stack.close(cid)
    count, digest = server.expect("EOF ")
    data = warm_up + burst
    assert (int(count), digest) == (len(data), hashlib.sha256(data).hexdigest())
    no_internal_errors(stack)


def test_lossy_link_each_way_by_hash(lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython) -> None:
    """5% of the packets lost at random both ways while the stack sends and receives at once: every byte
    still arrives (tests/interop/test_transport.py measures the transfers one way at a time)."""
    stack = lab_stack
    n = 500_000
    results: dict[str, object] = {}

    def run(name: str, fn: Callable[[], tuple[int, str]]) -> None:
        try:
            results[name] = fn()
        except BaseException as e:
            results[name] = e

    threads = [
        threading.Thread(target=run, args=("up", lambda: upload(stack, stack_lab, kernel_python, n))),
        threading.Thread(target=run, args=("down", lambda: download(stack, stack_lab, n))),
    ]
    with random_loss(stack_lab, 5) as loss:
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
    assert not any(t.is_alive() for t in threads), "a transfer did not finish within 90 s"
    for name in ("up", "down"):
        if isinstance(results[name], BaseException):
            raise results[name]  # type: ignore[misc]
        assert results[name] == (n, pattern_sha256(n)), name
    assert loss.to_kernel[1] > 0 and loss.to_stack[1] > 0, f"nothing was lost: {loss}"
    no_internal_errors(stack)


# -- more of what the kernel does -------------------------------------------------------------------------

URGENT_SENDER = r"""
import socket, sys
srv = socket.create_server((sys.argv[1], 0))
print("READY", srv.getsockname()[1], flush=True)
conn, peer = srv.accept()
conn.sendall(b"abc")
conn.send(b"!", socket.MSG_OOB)
conn.sendall(b"def")
conn.close()
print("SENT", flush=True)
"""

CONNECT_REPORTER = r"""
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10).close()
    print("CONNECTED", flush=True)
except OSError as e:
    print("ERROR", errno.errorcode.get(e.errno, e.errno), flush=True)
"""


def test_urgent_data_from_the_kernel_arrives_in_line(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    """send(MSG_OOB) sets URG; RFC 9293 3.8.5: urgent data stays in the stream, and the user is told."""
    stack = lab_stack
    events: list[tuple[str, Event]] = []
    stack.subscribe(lambda cid, event: events.append((cid, event)))
    server = kernel_python(URGENT_SENDER, stack_lab.kernel_addr)
    (port,) = server.expect("READY ")
    cid = stack.open(stack_lab.kernel_addr, int(port), timeout=5)
    assert receive_to_end(stack, cid, timeout=10) == b"abc!def"
    server.expect("SENT")
    assert any(c == cid and e.kind is EventKind.URGENT for c, e in events), events
    stack.close(cid)
    assert stack.wait_state(cid, State.CLOSED, 5), stack.status(cid).state
    no_internal_errors(stack)


def test_kernel_connecting_where_the_stack_does_not_listen_is_refused(
    lab_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    """RFC 9293 3.10.7.1: a SYN to no connection is answered with a RST: the kernel's connect() is refused."""
    client = kernel_python(CONNECT_REPORTER, stack_lab.stack_addr, 8090)
    assert client.expect("ERROR ") == [errno.errorcode[errno.ECONNREFUSED]]
    assert lab_stack.pool.resets_sent >= 1


def test_two_passive_opens_on_one_port_serve_two_kernel_clients(lab_stack: Stack, stack_lab: Lab) -> None:
    """MUST-42: several passive OPENs may wait on one port; each takes one of the kernel's connections."""
    stack = lab_stack
    listeners = [stack.listen(8091), stack.listen(8091)]
    curl = ["curl", "--silent", "--show-error", "--noproxy", "*", "--max-time", "10"]
    clients = [
        stack_lab.run_in_kernel_ns(
            [*curl, f"http://{stack_lab.stack_addr}:8091/{i}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for i in range(2)
    ]
    try:
        paths = set()
        for cid in listeners:
            request = serve_http_once(stack, cid, fixed_response(f"answer from {cid}".encode()))
            paths.add(request.split(b" ")[1])
        outputs = {c.communicate(timeout=10)[0] for c in clients}
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
    assert paths == {b"/0", b"/1"}
    assert outputs == {f"answer from {cid}".encode() for cid in listeners}
    assert stack.status(listeners[0]).remote_port != stack.status(listeners[1]).remote_port
