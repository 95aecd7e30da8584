"""`tcpsh attach`: the shell, or a script, driving a running `tcpsh daemon` through its socket.

The prompt, completion, news lines, scripts and `watch` are the shell's own (tcpsh.prompt,
tcpsh.session.Driver, tcpsh.watch); only where a line runs differs: the daemon runs it with the same
command table and sends back the output, rendered for this terminal. The protocol is docs/protocol.md.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from rich.console import Console

from tcpsh import protocol
from tcpsh.cli import add_color_option, add_script_options, make_console, run_given
from tcpsh.commands import CommandError
from tcpsh.daemon import DEFAULT_SOCKET, GROUP
from tcpsh.protocol import ProtocolError, TooLong
from tcpsh.session import Driver, Quit, toolbar_text

ANSWER_TIMEOUT = 5.0  # seconds for the daemon to answer a request that runs no command
SUMMARY_EVERY = 1.0  # seconds between refreshes of the bottom line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tcpsh attach",
        description="The tcpsh shell, driving a running 'tcpsh daemon'. Ctrl-D (or quit) detaches and "
        "leaves the connections open; 'shutdown' stops the daemon. With FILE.tcpsh or -c, run those "
        "commands against the daemon and exit, with the same exit status as in a shell of its own.",
    )
    add_script_options(p)
    p.add_argument(
        "--socket",
        metavar="PATH",
        type=Path,
        default=DEFAULT_SOCKET,
        help=f"the daemon's socket ({DEFAULT_SOCKET})",
    )
    add_color_option(p)
    return p


class AttachError(Exception):
    """Why the shell cannot talk to the daemon: one line."""


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError as e:
        sock.close()
        if e.errno == errno.ENOENT:
            why = "no daemon there (start one with 'tcpsh daemon')"
        elif e.errno in (errno.EACCES, errno.EPERM):
            why = f"permission denied: only root and group {GROUP} may attach"
        elif e.errno == errno.ECONNREFUSED:
            why = "no daemon listening (a socket left by one that was killed?)"
        else:
            why = e.strerror or str(e)
        raise AttachError(f"cannot attach to {path}: {why}") from None
    return sock


class Remote(Driver):
    """The shell's side of a connection to the daemon. A reader thread takes every message: news is
    printed as it comes, answers go to whoever waits for them."""

    def __init__(self, path: Path, console: Console) -> None:
        self.path = path
        self.console = console
        self.hosts = []
        self._held = None
        self.sock = connect(path)
        self._ids = itertools.count(1)
        self._waiting: dict[int, Callable[[dict[str, Any] | None], None]] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self.gone: str | None = None  # why the daemon's end closed
        self._summary: dict[str, Any] | None = None
        self._summary_at = 0.0
        self._summary_asked = False
        self._prompt: PromptSession[str] | None = None
        self._reader = threading.Thread(target=self._read, name="tcpsh-attach", daemon=True)
        self._reader.start()
        welcome = self.ask(
            protocol.HELLO,
            width=self.width(),
            color=None if console.no_color else console.color_system,
            terminal=console.is_terminal,
            cwd=os.getcwd(),
        )
        self.hosts = [(str(h), str(n)) for h, n in welcome.get("hosts", [])]
        self.welcome = welcome

    def width(self) -> int:
        return self.console.width

    # ------------------------------------------------------------------ the wire

    def _send(self, msg_type: str, /, **fields: Any) -> None:
        data = protocol.encode(msg_type, **fields)
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError as e:
                raise CommandError(f"the daemon has gone ({e.strerror})") from None

    def _read(self) -> None:
        lines = protocol.LineReader()
        try:
            while True:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                for item in lines.feed(data):
                    if isinstance(item, TooLong):
                        self.out(
                            f"tcpsh: a message from the daemon over {protocol.MAX_LINE} bytes was dropped"
                        )
                        continue
                    try:
                        self._take(protocol.decode(item))
                    except ProtocolError as e:
                        self.out(f"tcpsh: a message from the daemon: {e}", style="red")
        finally:
            self.gone = self.gone or "the daemon closed the connection"
            with self._lock:
                waiting, self._waiting = self._waiting, {}
            for deliver in waiting.values():
                deliver(None)
            self._leave_prompt()

    def _take(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == protocol.EVENT:
            text = str(msg.get("text", ""))
            if msg.get("kind") == "trace":
                self.console.print(text, highlight=False, markup=False)
            else:
                if msg.get("kind") == "stopping":
                    self.gone = text
                self.tell(text)
            return
        msg_id = msg.get("id")
        with self._lock:
            deliver = self._waiting.get(msg_id) if isinstance(msg_id, int) else None
            if deliver is not None and kind != protocol.OUTPUT:
                del self._waiting[msg_id]
        if deliver is not None:
            deliver(msg)
        elif kind == protocol.ERROR:
            error = str(msg.get("error", ""))
            if error.startswith("refused"):
                self.gone = f"the daemon {error}"  # then it closes the connection
            else:
                self.out(f"tcpsh: the daemon says: {error}", style="red")

    def request(
        self, msg_type: str, deliver: Callable[[dict[str, Any] | None], None], /, **fields: Any
    ) -> None:
        """Send a request; `deliver` gets each answer to it (output pieces, then the last), or None when
        the daemon goes first."""
        msg_id = next(self._ids)
        with self._lock:
            if self.gone is None:
                self._waiting[msg_id] = deliver
        if self.gone is not None:
            raise CommandError(self.gone)
        self._send(msg_type, id=msg_id, **fields)

    def ask(self, msg_type: str, /, timeout: float | None = ANSWER_TIMEOUT, **fields: Any) -> dict[str, Any]:
        """A request and its answer, with the output pieces that came before it joined in `output`.
        CommandError with the daemon's reason for an error; KeyboardInterrupt (Ctrl-C) interrupts the
        command the daemon runs for it."""
        answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.request(msg_type, answers.put, **fields)
        pieces: list[str] = []
        interrupted = False
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                msg = answers.get(timeout=left)
            except queue.Empty:
                raise CommandError(f"the daemon did not answer within {timeout:g} s") from None
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                self._send(protocol.INTERRUPT)  # the result comes, saying "interrupted"
                continue
            if msg is None:
                raise CommandError(self.gone or "the daemon closed the connection")
            if msg["type"] == protocol.OUTPUT:
                pieces.append(str(msg.get("text", "")))
                continue
            if msg["type"] == protocol.ERROR:
                raise CommandError(str(msg.get("error")))
            if pieces:
                msg["output"] = "".join(pieces) + str(msg.get("output", ""))
            if interrupted:
                msg["interrupted"] = True
            return msg

    # ------------------------------------------------------------------ the Driver

    def execute(self, line: str) -> None:
        if not line.strip():
            return
        result = self.ask(protocol.RUN, timeout=None, line=line, width=self.width())
        output = str(result.get("output") or "")
        if output:
            self.console.file.write(output)
            self.console.file.flush()
        if result.get("interrupted") and result.get("error") == "interrupted":
            raise KeyboardInterrupt
        view = result.get("view")
        if isinstance(view, dict) and isinstance(view.get("watch"), list):
            self.watch([str(i) for i in view["watch"]])
        if result.get("quit"):
            raise Quit
        if not result.get("ok"):
            raise CommandError(str(result.get("error")))

    def watch(self, ids: list[str]) -> None:
        """The live view, drawn here and rendered by the daemon, asked for again at each refresh."""
        from tcpsh.watch import run_watch

        def render(relative: bool, width: int) -> str:
            try:
                return str(self.ask(protocol.VIEW, ids=ids, relative=relative, width=width).get("output", ""))
            except CommandError as e:
                return f"{e}\n"

        with self.holding_news():
            run_watch(render)

    def connection_states(self) -> list[tuple[str, str]]:
        with contextlib.suppress(CommandError):
            self._keep_summary(self.ask(protocol.SUMMARY))
        return [(str(c["id"]), str(c["state"])) for c in (self._summary or {}).get("connections", [])]

    def _keep_summary(self, msg: dict[str, Any] | None) -> None:
        self._summary_asked = False
        if msg is not None and msg.get("type") == protocol.SUMMARY:
            self._summary = msg
            self._summary_at = time.monotonic()

    def toolbar(self) -> str:
        """From the last summary the daemon sent; a newer one is asked for, never waited for."""
        if self.gone is not None:
            return f" {self.gone}"
        if time.monotonic() - self._summary_at > SUMMARY_EVERY and not self._summary_asked:
            self._summary_asked = True
            with contextlib.suppress(CommandError):
                self.request(protocol.SUMMARY, self._keep_summary)
        s = self._summary
        if s is None:
            return f" {self.welcome.get('address', '')}"
        states: dict[str, int] = {}
        for c in s.get("connections", []):
            states[str(c["state"])] = states.get(str(c["state"]), 0) + 1
        return toolbar_text(s["address"], states, s["segments_in"], s["segments_out"], s["retransmissions"])

    @property
    def alive(self) -> bool:
        return self.gone is None

    def prompt_started(self, prompt: PromptSession[str]) -> None:
        self._prompt = prompt

    def _leave_prompt(self) -> None:
        """The daemon went: a prompt waiting for a line ends, as Ctrl-D would end it."""
        app = self._prompt.app if self._prompt is not None else None
        loop = app.loop if app is not None else None
        if app is None or loop is None or not app.is_running:
            return

        def leave() -> None:
            if app.is_running and not app.is_done:
                app.exit(exception=EOFError())

        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(leave)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(timeout=2)
        self.sock.close()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    console = make_console(no_color=args.no_color)
    try:
        remote = Remote(args.socket, console)
    except (AttachError, CommandError) as e:
        console.print(f"tcpsh: {e}", style="red", highlight=False, markup=False)
        return 1
    try:
        status = run_given(remote, args, console)
        if args.commands is None and not args.files:
            from tcpsh.prompt import interact

            w = remote.welcome
            console.print(
                f"attached to the tcpsh daemon at {args.socket} (pid {w.get('pid')}), as client "
                f"{w.get('client')}",
                highlight=False,
                markup=False,
            )
            for line in w.get("banner", []):
                console.print(str(line), highlight=False, markup=False)
            interact(
                remote, leaving="Ctrl-D detaches (the connections stay open), 'shutdown' stops the daemon"
            )
            console.print(remote.gone or "detached: the connections stay open in the daemon", highlight=False)
        return status
    except KeyboardInterrupt:
        console.print("interrupted", style="red")
        return 130
    finally:
        remote.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
