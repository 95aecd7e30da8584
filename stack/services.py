"""The lab's far-side services, served by the Linux kernel's TCP: a standalone program.

    python -m stack.services --address ADDR [--port NAME=PORT ...] [--ready-fd N] [--exit-on-eof]

Implements the service list of DESIGN.md "The lab":

- echo, TCP port 7 (RFC 862): every byte received is sent back, until the client closes.
- discard, TCP port 9 (RFC 863): every byte received is thrown away, until the client closes.
- daytime, TCP port 13 (RFC 867): one line with the date and time, then the server closes.
- chargen, TCP port 19 (RFC 864): the classic rotating pattern of 72 printable characters and CR LF
  per line, sent until the client closes or resets; what the client sends is thrown away.
- HTTP/1.1, TCP port 80 (RFC 9112): `/` a small HTML page naming the lab, `/bytes/N` N bytes of the
  deterministic pattern below (N at most 100 MB), `POST /echo` the request body sent back.

It uses the standard library only, and runs as a process of its own inside the lab's kernel-side
namespace, so that it never shares the shell's interpreter. Once every listener is bound it prints one
line, `READY name=port ...`, to stdout (or to the file descriptor given with --ready-fd). SIGTERM,
SIGINT or SIGHUP stop it with exit status 0; with --exit-on-eof it also stops when its stdin reaches
end of file, which happens when the process that started it dies without cleaning up.

The /bytes pattern is language-neutral, so any client can check it: the content is the concatenation
of 64 KiB chunks, chunk i being the first 65536 bytes of SHAKE128(b"tcpsh/bytes/" + str(i)), and
/bytes/N is its first N bytes. It never repeats, so lost, duplicated or reordered segments all change
the hash.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import html
import os
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, ClassVar

SERVICES: Mapping[str, int] = MappingProxyType(
    {"echo": 7, "discard": 9, "daytime": 13, "chargen": 19, "http": 80}
)
"""The default port of each service."""

BYTES_LIMIT = 100 * 1000 * 1000
"""The largest N that /bytes/N and POST /echo accept (100 MB)."""

PATTERN_CHUNK = 65536
_CHUNK_SEED = b"tcpsh/bytes/"

# A peer that closed or reset: the connection is over, which is not an error of the service.
_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


def pattern_chunk(index: int) -> bytes:
    """Chunk `index` of the /bytes pattern: SHAKE128(b"tcpsh/bytes/" + str(index)), 65536 bytes."""
    return hashlib.shake_128(_CHUNK_SEED + str(index).encode()).digest(PATTERN_CHUNK)


def pattern(n: int) -> Iterator[bytes]:
    """The first `n` bytes of the /bytes pattern, in pieces of at most 64 KiB."""
    if n < 0:
        raise ValueError("n must be >= 0")
    index = 0
    while n > 0:
        chunk = pattern_chunk(index)
        yield chunk[:n]
        n -= len(chunk)
        index += 1


def pattern_bytes(n: int) -> bytes:
    """The first `n` bytes of the /bytes pattern as one bytes object."""
    return b"".join(pattern(n))


def pattern_sha256(n: int) -> str:
    """The SHA-256 (hex) of the first `n` bytes of the /bytes pattern, without holding them at once."""
    digest = hashlib.sha256()
    for piece in pattern(n):
        digest.update(piece)
    return digest.hexdigest()


CHARGEN_PRINTABLE = bytes(range(32, 127))
"""RFC 864: the 95 printing ASCII characters, space to tilde, in order."""
CHARGEN_LINE = 72


def chargen_line(index: int) -> bytes:
    """Line `index` of the RFC 864 pattern: 72 characters starting one further along each line, CR LF."""
    start = index % len(CHARGEN_PRINTABLE)
    doubled = CHARGEN_PRINTABLE * 2
    return doubled[start : start + CHARGEN_LINE] + b"\r\n"


CHARGEN_CYCLE = b"".join(chargen_line(i) for i in range(len(CHARGEN_PRINTABLE)))
"""One full period of the chargen stream: 95 lines of 74 bytes."""


def daytime_line(now: float | None = None) -> bytes:
    """RFC 867 leaves the format free; this is its example's: "Weekday, Month Day, Year HH:MM:SS-Zone"."""
    moment = time.localtime(now)
    return time.strftime("%A, %B %d, %Y %H:%M:%S-%Z", moment).encode("ascii", "replace") + b"\r\n"


class _StreamServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 overflows when many connections open at once
    daemon_threads = True
    block_on_close = False


class _Handler(socketserver.BaseRequestHandler):
    request: socket.socket

    def handle(self) -> None:
        with contextlib.suppress(*_GONE):
            self.serve(self.request)

    def serve(self, sock: socket.socket) -> None:
        raise NotImplementedError


class EchoHandler(_Handler):
    """RFC 862: send back whatever arrives; close when the client has closed."""

    def serve(self, sock: socket.socket) -> None:
        while data := sock.recv(65536):
            sock.sendall(data)


class DiscardHandler(_Handler):
    """RFC 863: throw away whatever arrives; close when the client has closed."""

    def serve(self, sock: socket.socket) -> None:
        while sock.recv(65536):
            pass


class DaytimeHandler(_Handler):
    """RFC 867: send the date and time as one line, then close."""

    def serve(self, sock: socket.socket) -> None:
        sock.sendall(daytime_line())


class ChargenHandler(_Handler):
    """RFC 864: send the rotating pattern until the client closes or resets; discard what it sends.

    The socket is watched for reading while it is written, so a FIN from the client ends the stream
    even when the client has stopped reading and the send would block.
    """

    _buffer: ClassVar[bytes] = CHARGEN_CYCLE * (1 + 65536 // len(CHARGEN_CYCLE) + 1)

    def serve(self, sock: socket.socket) -> None:
        period = len(CHARGEN_CYCLE)
        view = memoryview(self._buffer)
        position = 0
        sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
            while True:
                for _key, events in selector.select():
                    if events & selectors.EVENT_READ:
                        try:
                            if not sock.recv(65536):
                                return  # the client closed: so does chargen
                        except BlockingIOError:
                            pass
                    if events & selectors.EVENT_WRITE:
                        try:
                            sent = sock.send(view[position : position + 65536])
                        except BlockingIOError:
                            continue
                        position = (position + sent) % period


class HttpHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (RFC 9112) with persistent connections: `/`, `/bytes/N`, `POST /echo`."""

    protocol_version = "HTTP/1.1"
    server_version = "tcpsh-lab"
    sys_version = ""
    verbose: ClassVar[bool] = False
    lab_name: ClassVar[str] = "tcpsh lab"
    ports: ClassVar[Mapping[str, int]] = SERVICES

    def log_message(self, format: str, *args: Any) -> None:
        if self.verbose:
            super().log_message(format, *args)

    def _head(self, status: HTTPStatus, length: int, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _text(self, status: HTTPStatus, text: str, body: bool = True) -> None:
        data = (text + "\n").encode()
        self._head(status, len(data), "text/plain; charset=utf-8")
        if body:
            self.wfile.write(data)

    def _index(self) -> bytes:
        rows = "".join(
            f"<li>{html.escape(name)}: TCP port {port}</li>" for name, port in sorted(self.ports.items())
        )
        host = html.escape(self.server.server_address[0] if self.server.server_address else "")
        return (
            "<!DOCTYPE html>\n<html><head><title>tcpsh lab</title></head><body>\n"
            f"<h1>{html.escape(self.lab_name)}</h1>\n"
            f"<p>The Linux kernel's TCP on {host}, serving:</p>\n<ul>{rows}</ul>\n"
            "<p><code>/bytes/N</code> returns N bytes of the lab pattern; "
            "<code>POST /echo</code> returns the request body.</p>\n</body></html>\n"
        ).encode()

    def _get(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            page = self._index()
            self._head(HTTPStatus.OK, len(page), "text/html; charset=utf-8")
            if body:
                self.wfile.write(page)
            return
        if path.startswith("/bytes/"):
            text = path[len("/bytes/") :]
            if not text.isdigit():
                self._text(HTTPStatus.BAD_REQUEST, f"/bytes/N needs a whole number, not {text!r}", body)
                return
            n = int(text)
            if n > BYTES_LIMIT:
                self._text(HTTPStatus.BAD_REQUEST, f"/bytes/N is limited to N <= {BYTES_LIMIT}", body)
                return
            self._head(HTTPStatus.OK, n, "application/octet-stream")
            if body:
                for piece in pattern(n):
                    self.wfile.write(piece)
            return
        self._text(HTTPStatus.NOT_FOUND, f"no such page: {path}", body)

    def do_GET(self) -> None:
        self._get(body=True)

    def do_HEAD(self) -> None:
        self._get(body=False)

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/echo":
            self._text(HTTPStatus.NOT_FOUND, f"no such page: {self.path}")
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._text(HTTPStatus.LENGTH_REQUIRED, "POST /echo needs a Content-Length")
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.strip().isdigit():
            self.close_connection = True
            self._text(HTTPStatus.LENGTH_REQUIRED, "POST /echo needs a Content-Length")
            return
        length = int(length_text)
        if length > BYTES_LIMIT:
            self.close_connection = True
            self._text(HTTPStatus.CONTENT_TOO_LARGE, f"POST /echo is limited to {BYTES_LIMIT} bytes")
            return
        self._head(HTTPStatus.OK, length, self.headers.get("Content-Type", "application/octet-stream"))
        remaining = length
        while remaining:
            piece = self.rfile.read(min(remaining, 65536))
            if not piece:
                self.close_connection = True
                return
            self.wfile.write(piece)
            remaining -= len(piece)

    def handle(self) -> None:
        with contextlib.suppress(*_GONE):
            super().handle()


class _HttpServer(ThreadingHTTPServer):
    allow_reuse_address = True
    request_queue_size = 128  # socketserver's 5 overflows when many connections open at once
    daemon_threads = True
    block_on_close = False


HANDLERS: Mapping[str, type[socketserver.BaseRequestHandler]] = MappingProxyType(
    {
        "echo": EchoHandler,
        "discard": DiscardHandler,
        "daytime": DaytimeHandler,
        "chargen": ChargenHandler,
        "http": HttpHandler,
    }
)


class Services:
    """Every service bound to `address`, each served by a thread of its own (one more per connection)."""

    def __init__(
        self,
        address: str,
        ports: Mapping[str, int] = SERVICES,
        *,
        lab_name: str = "tcpsh lab",
        verbose: bool = False,
    ) -> None:
        unknown = set(ports) - set(HANDLERS)
        if unknown:
            raise ValueError(f"unknown services: {', '.join(sorted(unknown))}")
        self.servers: dict[str, socketserver.TCPServer] = {}
        self._threads: list[threading.Thread] = []
        handler_http = type("LabHttpHandler", (HttpHandler,), {"verbose": verbose, "lab_name": lab_name})
        try:
            for name, port in ports.items():
                if name == "http":
                    self.servers[name] = _HttpServer((address, port), handler_http)
                else:
                    self.servers[name] = _StreamServer((address, port), HANDLERS[name])
        except BaseException:
            self.close()
            raise
        handler_http.ports = self.ports

    @property
    def ports(self) -> dict[str, int]:
        """The port each service is bound to (differs from the request when it asked for port 0)."""
        return {name: server.server_address[1] for name, server in self.servers.items()}

    def start(self) -> None:
        """Start accepting connections on every listener."""
        for name, server in self.servers.items():
            thread = threading.Thread(
                target=server.serve_forever, args=(0.1,), name=f"service-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        """Stop accepting and close the listeners. Connections in progress die with the process."""
        if self._threads:
            # shutdown() waits for its serve_forever loop to notice; let all of them notice at once.
            stoppers = [threading.Thread(target=server.shutdown) for server in self.servers.values()]
            for stopper in stoppers:
                stopper.start()
            for stopper in stoppers:
                stopper.join()
        for server in self.servers.values():
            server.server_close()


def _parse_port(text: str) -> tuple[str, int]:
    name, sep, port = text.partition("=")
    if not sep or name not in HANDLERS or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected NAME=PORT with NAME one of {', '.join(HANDLERS)} and PORT 0..65535, not {text!r}"
        )
    return name, int(port)


def _watch_stdin() -> None:
    """Stop the process (SIGTERM to itself) when stdin reaches end of file: the parent is gone."""
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """Bind every service, announce READY, serve until SIGTERM/SIGINT/SIGHUP (or stdin EOF); exit 0."""
    parser = argparse.ArgumentParser(prog="python -m stack.services", description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="0.0.0.0", help="IPv4 address to bind (default: all)")
    parser.add_argument(
        "--port",
        action="append",
        type=_parse_port,
        default=[],
        metavar="NAME=PORT",
        help="override one service's port (0: any free port); repeatable",
    )
    parser.add_argument("--only", help="comma-separated services to run (default: all)")
    parser.add_argument("--ready-fd", type=int, help="write the READY line to this fd instead of stdout")
    parser.add_argument("--exit-on-eof", action="store_true", help="exit when stdin reaches end of file")
    parser.add_argument("--tag", default="tcpsh lab", help="the lab's name, shown on the HTTP index page")
    parser.add_argument("--verbose", action="store_true", help="log HTTP requests to stderr")
    args = parser.parse_args(argv)

    ports = dict(SERVICES)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in SERVICES]
        if unknown:
            parser.error(f"unknown services: {', '.join(unknown)}")
        ports = {name: SERVICES[name] for name in wanted}
    ports.update((name, port) for name, port in args.port if name in ports)  # --only wins over --port

    # Block the stop signals in every thread, then wait for them in this one with sigwait: no
    # handler runs in the middle of the servers' code, and the wait needs no polling.
    stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    try:
        services = Services(args.address, ports, lab_name=args.tag, verbose=args.verbose)
    except OSError as exc:
        where = "" if exc.errno != errno.EADDRINUSE else " (a port is in use)"
        print(f"services: cannot bind on {args.address}{where}: {exc}", file=sys.stderr)
        return 1
    services.start()
    if args.exit_on_eof:
        threading.Thread(target=_watch_stdin, name="stdin-watch", daemon=True).start()

    ready = "READY " + " ".join(f"{name}={port}" for name, port in services.ports.items()) + "\n"
    if args.ready_fd is not None:
        os.write(args.ready_fd, ready.encode())
        os.close(args.ready_fd)
    else:
        sys.stdout.write(ready)
        sys.stdout.flush()

    signal.sigwait(stop_signals)
    services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
