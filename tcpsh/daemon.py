"""`tcpsh daemon`: the stack with no prompt, driven through a Unix socket by `tcpsh attach` (or any
program speaking docs/protocol.md).

The same stack as the shell's (the same threads, pool and locks, set up by tcpsh.cli.running_stack),
and the same command table: each client gets a Session of its own whose output is rendered into text
for the client's terminal and sent back with the result. News goes to every client at once.

Threads, per client: a reader (reads and checks messages, answers the quick ones), a worker (runs the
client's commands one at a time, in order) and a writer (sends what is queued, so that a client that
does not read never holds up the stack or the others). The main thread accepts clients and stops
everything on SIGTERM, SIGINT or SIGHUP, or when a client types `shutdown`.

Security: the socket is mode 0660, owner root, group `tcpsh` when that group exists (else root's), so
the file system lets only root and that group connect; each peer's credentials (SO_PEERCRED) are logged
and checked again here; files a client's commands name are opened as that client's user.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import grp
import io
import os
import queue
import select
import signal
import socket
import stat
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from stack.runtime import Stack, StackError
from stack.tcp import Event, EventKind
from tcpsh import privilege, protocol
from tcpsh.cli import add_stack_options, check_stack_options, one_line_failure, running_stack
from tcpsh.commands import BY_NAME, CommandError
from tcpsh.protocol import ProtocolError, TooLong
from tcpsh.session import Quit, Session, Shutdown, news_text
from tcpsh.watch import render

DEFAULT_SOCKET = Path("/run/tcpsh/tcpsh.sock")
GROUP = "tcpsh"
GRACE = 5.0  # seconds open connections get to close on the way out, before they are aborted
CHUNK = 256 * 1024  # characters of a command's output in one message
SEND_TIMEOUT = 30  # seconds a client may leave its socket full before it is disconnected
MAX_QUEUED = 64 << 20  # bytes waiting for a client that does not read: past this it is disconnected


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tcpsh daemon",
        description="Run the stack with no prompt, driven through a Unix socket by 'tcpsh attach' "
        "(protocol: docs/protocol.md). With no network options it builds the private lab. Logs go to "
        "stderr; SIGTERM closes the connections (aborting what does not close in time), removes the "
        "lab or firewall rule and the socket, and exits 0.",
    )
    add_stack_options(p)
    p.add_argument(
        "--socket",
        metavar="PATH",
        type=Path,
        default=DEFAULT_SOCKET,
        help=f"the socket to listen on (default {DEFAULT_SOCKET}); mode 0660, group {GROUP} if it exists",
    )
    p.add_argument(
        "--grace",
        metavar="S",
        type=float,
        default=GRACE,
        help=f"on the way out, seconds connections get to close before they are aborted (default {GRACE:g})",
    )
    return p


class DaemonError(Exception):
    """Why the daemon cannot start: one line."""


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"pid {self.pid} uid {self.uid} gid {self.gid}"


def peer_of(sock: socket.socket) -> Peer:
    """The credentials of the process at the other end, as the kernel saw them at connect()."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return Peer(*struct.unpack("3i", creds))


def _proc_groups(pid: int) -> set[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def refusal(peer: Peer, gid: int) -> str | None:
    """Why `peer` may not drive the daemon, or None: only root (or the daemon's own user) and members of
    the socket's group may. The socket's mode already says so; this is the second lock."""
    if peer.uid in (0, os.geteuid()) or peer.gid == gid:
        return None
    members = set(grp.getgrgid(gid).gr_mem) if _has_group(gid) else set()
    if privilege.user(peer.uid, peer.gid).name in members:
        return None
    if gid in _proc_groups(peer.pid):
        return None
    return f"uid {peer.uid} is not root and not in group {_group_name(gid)}"


def _has_group(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
    except KeyError:
        return False
    return True


def _group_name(gid: int) -> str:
    return grp.getgrgid(gid).gr_name if _has_group(gid) else str(gid)


def listen(path: Path) -> tuple[socket.socket, int]:
    """The listening socket at `path`, mode 0660, owner root, group `tcpsh` if it exists (else root's),
    and that group's id. Made before the capabilities are dropped (the chown needs CAP_CHOWN)."""
    try:
        gid = grp.getgrnam(GROUP).gr_gid
    except KeyError:
        gid = 0
    if path.parent == DEFAULT_SOCKET.parent:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        pass
    except OSError as e:
        raise DaemonError(f"cannot use {path}: {e.strerror}") from None
    else:
        if not stat.S_ISSOCK(mode):
            raise DaemonError(f"{path} exists and is not a socket; remove it or choose another --socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            os.unlink(path)  # a socket no one listens on: left by a daemon that was killed
        else:
            raise DaemonError(f"a daemon is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # never wider than 0600 before the chmod below
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise DaemonError(f"cannot listen on {path}: {e.strerror}") from None
    finally:
        os.umask(old)
    try:
        os.chown(path, 0, gid)
        os.chmod(path, 0o660)
        sock.listen(16)
    except OSError as e:
        sock.close()
        os.unlink(path)
        raise DaemonError(f"cannot set up {path}: {e.strerror}") from None
    return sock, gid


def notify(state: str) -> None:
    """Tell systemd (Type=notify, NOTIFY_SOCKET) how the daemon is: READY=1, STOPPING=1."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), address)


class ClientSession(Session):
    """A client's Session: its traced segments go to that client alone."""

    client: Client | None = None

    def aside(self, line: str) -> None:
        if self.client is not None:
            self.client.send(protocol.EVENT, kind="trace", conn=None, text=line)


_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


class Client:
    """One connected program: its credentials, its session and its three threads."""

    def __init__(self, daemon: Daemon, sock: socket.socket, number: int) -> None:
        self.daemon = daemon
        self.sock = sock
        self.number = number
        self.peer = peer_of(sock)
        # A client that stops reading holds its writer at most this long, then is disconnected.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", SEND_TIMEOUT, 0))
        self.session: ClientSession | None = None
        self.width = 80
        self.color: str | None = None
        self.terminal = False
        self.cwd: Path | None = None
        self.user: privilege.Invoker | None = None
        self._out: queue.Queue[bytes | None] = queue.Queue()
        self._queued = 0
        self._queued_lock = threading.Lock()
        self._jobs: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue()
        self._running: int | None = None  # the worker's thread id while a command runs
        self._running_lock = threading.Lock()
        # "run" messages numbered as they come; an interrupt ends every one that came before it: the one
        # running, and those the worker has not started yet (they end "interrupted" without running).
        self._received = 0
        self._interrupted = 0  # the number of the last "run" an interrupt ended
        self.gone = threading.Event()
        self.threads = [
            threading.Thread(target=self._read, name=f"tcpsh-client-{number}", daemon=True),
            threading.Thread(target=self._write, name=f"tcpsh-client-{number}-out", daemon=True),
            threading.Thread(target=self._work, name=f"tcpsh-client-{number}-run", daemon=True),
        ]

    def log(self, text: str) -> None:
        self.daemon.log(f"client {self.number}: {text}")

    def start(self) -> None:
        for t in self.threads:
            t.start()

    # ------------------------------------------------------------------ sending

    def send(self, msg_type: str, /, **fields: Any) -> None:
        """Queue a message for the client; never blocks. A client too far behind is disconnected."""
        if self.gone.is_set():
            return
        try:
            data = protocol.encode(msg_type, **fields)
        except ProtocolError as e:
            data = protocol.encode(protocol.ERROR, id=fields.get("id"), error=str(e))
        with self._queued_lock:
            self._queued += len(data)
            too_far = self._queued > MAX_QUEUED
        if too_far:
            self.log(f"disconnected: more than {MAX_QUEUED} bytes waiting that it does not read")
            self.disconnect()
            return
        self._out.put(data)

    def _write(self) -> None:
        while (data := self._out.get()) is not None:
            with self._queued_lock:
                self._queued -= len(data)
            if self.gone.is_set():
                continue
            try:
                self.sock.sendall(data)
            except OSError:
                self.disconnect()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def disconnect(self) -> None:
        """Stop talking to the client: reading ends, its running command is interrupted."""
        if self.gone.is_set():
            return
        self.gone.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ reading

    def _read(self) -> None:
        why = refusal(self.peer, self.daemon.gid)
        if why is not None:
            self.log(f"refused {self.peer}: {why}")
            self.send(protocol.ERROR, id=None, error=f"refused: {why}")
            self._finish()
            return
        self.log(f"connected: {self.peer}")
        lines = protocol.LineReader()
        try:
            while not self.gone.is_set():
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    if lines.pending:
                        self._bad("the stream ended inside a message (no newline): it was dropped")
                    if self._hung_up():
                        self.disconnect()  # gone, not half-closed: its command is interrupted
                    break
                for item in lines.feed(data):
                    if isinstance(item, TooLong):
                        self._bad(f"a message over {protocol.MAX_LINE} bytes was dropped")
                    else:
                        self._handle(item)
        finally:
            self.log("detached")
            self._finish()

    def _hung_up(self) -> bool:
        """The client closed both ways (it exited or was killed), not only its sending side."""
        poller = select.poll()
        poller.register(self.sock, select.POLLHUP)
        return any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def _finish(self) -> None:
        """Reading is over: the worker finishes what was asked (unless the client is gone), the writer
        sends the results, then the socket is closed."""
        if self.gone.is_set():
            self.interrupt()
        self._jobs.put(None)
        self.daemon.forget(self)
        self.threads[1].join()
        self.sock.close()

    def _bad(self, error: str, msg_id: Any = None) -> None:
        self.log(error)
        self.send(protocol.ERROR, id=msg_id, error=error)

    def _handle(self, line: bytes) -> None:
        msg_id = None
        try:
            msg = protocol.decode(line, types=protocol.CLIENT_TYPES)
            msg_id = protocol.field(msg, "id", (int, str))
            kind = msg["type"]
            if kind == protocol.HELLO:
                self._hello(msg, msg_id)
            elif self.session is None:
                raise ProtocolError(f'the first message is "hello" (protocol version {protocol.VERSION})')
            elif kind == protocol.RUN:
                if protocol.field(msg, "line", str) is None:
                    raise ProtocolError('"run" needs "line", the command to run')
                protocol.field(msg, "width", int)
                if self.daemon.stopping.is_set():
                    raise ProtocolError("the daemon is stopping")
                with self._running_lock:
                    self._received += 1
                    self._jobs.put((self._received, msg))
            elif kind == protocol.INTERRUPT:
                self.interrupt()
            elif kind == protocol.SUMMARY:
                self.send(protocol.SUMMARY, id=msg_id, **self.daemon.summary())
            elif kind == protocol.VIEW:
                self.send(protocol.VIEW, id=msg_id, output=self._view(msg))
        except ProtocolError as e:
            self._bad(str(e), msg_id)
        except StackError as e:
            self.send(protocol.ERROR, id=msg_id, error=str(e))
        except Exception as e:  # a bug here must not take the client's thread or the daemon down
            self._bad(f"internal error: {e!r}", msg_id)

    def _hello(self, msg: dict[str, Any], msg_id: Any) -> None:
        self.width = max(20, protocol.field(msg, "width", int, self.width))
        self.color = protocol.field(msg, "color", str)
        self.terminal = protocol.field(msg, "terminal", bool, False)
        cwd = protocol.field(msg, "cwd", str)
        self.cwd = Path(cwd) if cwd and cwd.startswith("/") else None
        if self.session is None:
            if self.peer.uid not in (0, os.geteuid()):
                self.user = privilege.user(self.peer.uid, self.peer.gid)
            session = ClientSession(
                self.daemon.stack,
                self._console(io.StringIO()),
                _unread=self.daemon.unread,
                hosts=self.daemon.hosts,
                own_news=False,
            )
            session.client = self
            self.session = session
        self.send(
            protocol.WELCOME,
            id=msg_id,
            version=protocol.VERSION,
            pid=os.getpid(),
            client=self.number,
            address=str(self.daemon.stack.address),
            hosts=self.daemon.hosts,
            banner=self.daemon.banner,
        )

    def _console(self, buf: io.StringIO, width: int | None = None) -> Console:
        """Output rendered for the client's terminal: its width, its colours or none."""
        colors = {"standard": "standard", "256": "256", "truecolor": "truecolor"}
        return Console(
            file=buf,
            width=width or self.width,
            color_system=colors.get(self.color or ""),  # type: ignore[arg-type]
            force_terminal=self.terminal,
            force_interactive=False,
            soft_wrap=True,
            highlight=False,
        )

    def _view(self, msg: dict[str, Any]) -> str:
        ids = protocol.field(msg, "ids", list, [])
        if not all(isinstance(i, str) for i in ids):
            raise ProtocolError('"ids" is a list of connection ids')
        wanted = set(ids)
        width = max(40, protocol.field(msg, "width", int, self.width))
        return render(
            lambda: [(cid, st) for cid, st in self.daemon.stack.connections() if cid in wanted],
            relative=protocol.field(msg, "relative", bool, True),
            width=width,
            color=self.color is not None,
        )

    # ------------------------------------------------------------------ running commands

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            if not self.gone.is_set():
                self._run(*job)
        if self.session is not None:
            self.session.close()
        self._out.put(None)  # the writer sends the last results, then ends the stream

    def _run(self, number: int, msg: dict[str, Any]) -> None:
        assert self.session is not None
        line: str = msg["line"]
        buf = io.StringIO()
        self.session.console = self._console(buf, msg.get("width"))
        view: dict[str, Any] | None = None

        def live(ids: list[str]) -> None:
            nonlocal view
            view = {"watch": ids}

        self.session.live_view = live if self.terminal else None
        words = line.split()
        command = BY_NAME[words[0]].name if words and words[0] in BY_NAME else None
        if command is not None:
            self.log(command)  # what each client does, not what it sends (the data may be private)
        ok, error, leave, stop = True, None, False, False
        try:
            with privilege.acting_for(self.user, self.cwd):
                self._execute(line, number)
        except Shutdown:
            leave = stop = True
            self.session.out("the daemon is stopping: open connections are closed, then aborted")
        except Quit:
            leave = True
        except (CommandError, StackError) as e:
            ok, error = False, str(e)
        except KeyboardInterrupt:
            ok, error = False, "interrupted"
        except Exception as e:  # a bug in a handler must not end the client or the daemon
            ok, error = False, f"internal error: {e!r}"
            self.log(f"{line!r}: {error}")
        output = buf.getvalue()
        chunks = [output[i : i + CHUNK] for i in range(0, len(output), CHUNK)] or [""]
        for chunk in chunks[:-1]:  # a long output comes ahead of its result, in pieces
            self.send(protocol.OUTPUT, id=msg.get("id"), text=chunk)
        self.send(
            protocol.RESULT,
            id=msg.get("id"),
            ok=ok,
            error=error,
            output=chunks[-1],
            command=command,
            quit=leave,
            view=view,
        )
        if stop:
            self.daemon.stop(f"shutdown by client {self.number} ({self.peer})")

    def _execute(self, line: str, number: int) -> None:
        """session.execute of "run" message `number`, interruptible by `interrupt` from another thread
        (and not run at all when an interrupt came after it)."""
        assert self.session is not None
        with self._running_lock:
            if number <= self._interrupted:
                raise KeyboardInterrupt
            self._running = threading.get_ident()
        try:
            self.session.execute(line)
        finally:
            with self._running_lock:
                self._running = None
                _set_async_exc(ctypes.c_ulong(threading.get_ident()), None)  # one that came too late

    def interrupt(self) -> None:
        """Interrupt the commands this client sent so far, as Ctrl-C does in the shell: the running one
        by a KeyboardInterrupt in the worker thread (woken if it waits on the pool), the others before
        they start."""
        with self._running_lock:
            self._interrupted = self._received
            if self._running is None:
                return
            _set_async_exc(ctypes.c_ulong(self._running), ctypes.py_object(KeyboardInterrupt))
        pool = self.daemon.stack.pool
        with pool.lock:
            pool.changed.notify_all()


class Daemon:
    def __init__(
        self,
        stack: Stack,
        listener: socket.socket,
        gid: int,
        hosts: list[tuple[str, str]],
        console: Console,
        banner: list[str],
    ) -> None:
        self.stack = stack
        self.listener = listener
        self.gid = gid
        self.hosts = hosts
        self.console = console
        self.banner = banner
        self.unread: dict[str, bytearray] = {}  # shared: data `expect` read past, whoever reads next
        self.clients: dict[int, Client] = {}
        self._lock = threading.Lock()
        self._numbers = iter(range(1, 1 << 62))
        self.stopping = threading.Event()
        self.reason = ""
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        stack.subscribe(self._on_event)

    def log(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def _on_event(self, cid: str, ev: Event) -> None:
        text = news_text(cid, ev)
        if text is None:
            return
        if ev.kind is not EventKind.DATA:
            self.log(text)
        self.broadcast(kind=ev.kind.value, conn=cid, text=text, count=ev.count)

    def broadcast(self, **fields: Any) -> None:
        with self._lock:
            clients = list(self.clients.values())
        for c in clients:
            c.send(protocol.EVENT, **fields)

    def forget(self, client: Client) -> None:
        with self._lock:
            self.clients.pop(client.number, None)

    def summary(self) -> dict[str, Any]:
        conns = self.stack.connections()
        c = self.stack.counters
        return {
            "address": str(self.stack.address),
            "connections": [
                {
                    "id": cid,
                    "state": str(st.state),
                    "local": f"{st.local_addr}:{st.local_port}",
                    "remote": f"{st.remote_addr or '*'}:{st.remote_port or '*'}",
                }
                for cid, st in conns
            ],
            "segments_in": c.segments_in,
            "segments_out": c.segments_out,
            "retransmissions": sum(st.retransmissions for _, st in conns),
        }

    def stop(self, reason: str) -> None:
        """Begin stopping (from a signal handler or any thread): the main thread does the rest."""
        if not self.stopping.is_set():
            self.reason = reason
            self.stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop(signal.Signals(signum).name)

    def serve(self, path: Path, grace: float) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        self.log(f"listening on {path} (mode 0660, owner root, group {_group_name(self.gid)})")
        notify("READY=1")
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.listener, self._wake_r], [], [])
            if self.listener in ready:
                try:
                    sock, _ = self.listener.accept()
                except OSError as e:
                    self.log(f"accept: {e.strerror}")
                    continue
                try:
                    client = Client(self, sock, next(self._numbers))
                except OSError as e:
                    self.log(f"a client went before it could be seen: {e.strerror}")
                    sock.close()
                    continue
                with self._lock:
                    self.clients[client.number] = client
                client.start()
        notify("STOPPING=1")
        self.log(f"{self.reason}: stopping; open connections get {grace:g} s to close, then are aborted")
        self.broadcast(kind="stopping", conn=None, text=f"the daemon is stopping ({self.reason})")
        with self._lock:
            clients = list(self.clients.values())
        for c in clients:
            c.interrupt()
        for cid, how in self.stack.shutdown(grace):
            self.log(f"{cid} {how}")
            self.broadcast(kind=how, conn=cid, text=f"{cid} {how}")
        for c in clients:
            c._out.put(None)  # the writer sends what is queued, then ends the stream
        for c in clients:
            c.threads[1].join(timeout=2)
            c.disconnect()
        os.close(self._wake_r)
        os.close(self._wake_w)
        return 0


class StoppedDuringSetUp(BaseException):
    """SIGTERM or SIGHUP came while the lab or the stack were being set up. A BaseException, as
    KeyboardInterrupt is: a stop, which no `except Exception` on the way out may take for an error."""


def _stop_set_up(signum: int, frame: FrameType | None) -> None:
    raise StoppedDuringSetUp(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    defaults = check_stack_options(args, console)
    if isinstance(defaults, int):
        return defaults
    path: Path = args.socket
    try:
        listener, gid = listen(path)
    except DaemonError as e:
        console.print(f"tcpsh daemon: {e}", style="red", markup=False)
        return 1
    # Until serve() takes the signals over, a stop unwinds the set-up: what was made is removed (the
    # lab's own handler removes the lab first, then calls this one), the socket file too. (A socket left
    # by a stop inside listen() itself is found stale and replaced by the next daemon.)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_set_up)
    banner = io.StringIO()
    try:
        # What the set-up says (the lab's addresses and services) goes to the log and to each shell.
        tee = Console(file=_Tee(sys.stderr, banner), highlight=False, soft_wrap=True, no_color=True)
        with running_stack(args, tee, defaults, switching=True) as (stack, hosts):
            daemon = Daemon(stack, listener, gid, hosts, console, banner.getvalue().splitlines())
            return daemon.serve(path, args.grace)
    except KeyboardInterrupt:
        console.print("interrupted", style="red")
        return 130
    except StoppedDuringSetUp as e:
        console.print(f"{e}: stopped during set-up; what was set up is removed", highlight=False)
        return 0
    except Exception as e:
        return one_line_failure(console, e)
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        console.print("stopped", highlight=False)


class _Tee(io.TextIOBase):
    def __init__(self, *files: Any) -> None:
        self.files = files

    def write(self, text: str) -> int:
        for f in self.files:
            f.write(text)
        return len(text)

    def flush(self) -> None:
        for f in self.files:
            f.flush()
