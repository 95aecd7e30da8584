"""A shell session: runs parsed commands against a Stack and prints what happened.

The same Session serves the interactive prompt, `-c "..."` and `.tcpsh` files; only the way lines
arrive differs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stack.runtime import Stack, StackError
from stack.tcp import Event, EventKind, State, TcbStatus
from tcpsh.commands import (
    BY_NAME,
    COMMANDS,
    DEFAULT_TIMEOUT,
    Command,
    CommandError,
    Parsed,
    parse_line,
    printable,
    unescape,
)


class Quit(Exception):
    """`quit` was typed."""


STATE_STYLE = {
    State.ESTABLISHED: "bold green",
    State.LISTEN: "cyan",
    State.SYN_SENT: "yellow",
    State.SYN_RECEIVED: "yellow",
    State.CLOSED: "dim",
    State.TIME_WAIT: "magenta",
}

NEWS = {
    EventKind.ESTABLISHED: "established",
    EventKind.PEER_CLOSED: "peer closed its side (FIN)",
    EventKind.RESET: "connection reset by peer",
    EventKind.REFUSED: "connection refused",
    EventKind.TIMED_OUT: "timed out: no answer after repeated retransmissions (R2)",
    EventKind.TIME_WAIT_OVER: "TIME-WAIT over",
    EventKind.URGENT: "urgent data pending",
}


@dataclass
class Session:
    stack: Stack
    console: Console = field(default_factory=Console)
    intro: str = ""
    # Called with a line to print from another thread (the news of the stack); set by the prompt.
    _pending: list[str] = field(default_factory=list)
    # Data read past what `expect` waited for, kept for the next receive or expect on that connection.
    _unread: dict[str, bytearray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stack.subscribe(self._on_event)

    # ------------------------------------------------------------------ news

    def _on_event(self, cid: str, ev: Event) -> None:
        """Asynchronous news is always reported (MUST-12, SHLD-9)."""
        if ev.kind is EventKind.DATA:
            text = f"data arrived on {cid} ({ev.count} bytes)"
        elif ev.kind is EventKind.RETRANSMITTING:
            text = f"{cid}: {ev.message}"
        elif ev.kind in NEWS:
            text = f"{cid}: {NEWS[ev.kind]}"
        else:
            return
        self.console.print(f"[dim]*[/dim] {text}", highlight=False)

    # ------------------------------------------------------------------ running lines

    def execute(self, line: str) -> None:
        """Run one line. Raises CommandError or StackError with the one line to show; Quit to leave."""
        parsed = parse_line(line)
        if parsed is None:
            return
        handler: Callable[[Parsed], None] = getattr(self, parsed.command.handler_name)
        handler(parsed)

    def run_lines(self, lines: Iterable[str], source: str) -> int:
        """Run lines of a script; stop at the first failure with `SOURCE:LINE: message`. Exit status."""
        for n, line in enumerate(lines, 1):
            try:
                self.execute(line)
            except Quit:
                return 0
            except (CommandError, StackError) as e:
                self.console.print(f"{source}:{n}: {e}", style="red", highlight=False, markup=False)
                return 1
            except KeyboardInterrupt:
                self.console.print(f"{source}:{n}: interrupted", style="red", highlight=False)
                return 130
        return 0

    def out(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, highlight=False, markup=False)

    # ------------------------------------------------------------------ handlers

    def do_open(self, p: Parsed) -> None:
        v = p.values
        if "passive" in v:
            if "HOST:PORT" in v:
                raise CommandError("open: give HOST:PORT or --passive PORT, not both")
            remote, rport = v.get("remote", (None, None))
            cid = self.stack.listen(v["passive"], remote=remote, remote_port=rport)
            self.out(f"{cid} LISTEN on port {v['passive']}")
            return
        if "HOST:PORT" not in v:
            raise CommandError("open: missing HOST:PORT (or --passive PORT)")
        host, port = v["HOST:PORT"]
        cid = self.stack.open(
            host,
            port,
            local_port=v.get("local_port"),
            timeout=v.get("timeout", DEFAULT_TIMEOUT),
            wait=not v.get("no_wait", False),
        )
        st = self.stack.status(cid)
        self.out(f"{cid} {st.state} {st.local_addr}:{st.local_port} -> {host}:{port}")

    def do_send(self, p: Parsed) -> None:
        v = p.values
        sources = [k for k in ("TEXT", "file", "hex") if k in v]
        if len(sources) != 1:
            raise CommandError("send: give exactly one of TEXT, --file PATH, --hex HEX")
        if "TEXT" in v:
            data = unescape(v["TEXT"])
        elif "hex" in v:
            data = v["hex"]
        else:
            path = Path(v["file"]).expanduser()
            try:
                data = path.read_bytes()
            except OSError as e:
                raise CommandError(f"send: cannot read {path}: {e.strerror}") from None
        n = self.stack.send(v["ID"], data, push=v.get("push", False), timeout=v.get("timeout"))
        self.out(f"{v['ID']}: queued {n} bytes")

    def do_receive(self, p: Parsed) -> None:
        v = p.values
        cid = v["ID"]
        count = v.get("COUNT", 1 << 30 if v.get("all") else 65536)
        data = self._take_unread(cid, count)
        if len(data) < count and (v.get("all") or not data):
            data += self.stack.receive(
                cid,
                count - len(data),
                timeout=v.get("timeout", DEFAULT_TIMEOUT),
                until_close=v.get("all", False),
            )
        if "to" in v:
            path = Path(v["to"]).expanduser()
            try:
                path.write_bytes(data)
            except OSError as e:
                raise CommandError(f"receive: cannot write {path}: {e.strerror}") from None
            self.out(f"{cid}: {len(data)} bytes written to {path}")
            return
        if not data:
            self.out(f"{cid}: end of data (the peer closed its side)")
            return
        self.out(f"{cid}: {len(data)} bytes: {printable(data)}")

    def do_close(self, p: Parsed) -> None:
        self.stack.close(p.values["ID"])
        self.out(f"{p.values['ID']} {self.stack.status(p.values['ID']).state}")

    def do_abort(self, p: Parsed) -> None:
        self.stack.abort(p.values["ID"])
        self.out(f"{p.values['ID']} aborted")

    def do_flush(self, p: Parsed) -> None:
        n = self.stack.flush(p.values["ID"])
        self.out(f"{p.values['ID']}: dropped {n} queued bytes")

    def do_status(self, p: Parsed) -> None:
        cid = p.values.get("ID")
        if cid is None:
            self.console.print(pool_table(self.stack.connections()))
        else:
            self.console.print(tcb_table(cid, self.stack.status(cid)))

    def do_wait(self, p: Parsed) -> None:
        v = p.values
        timeout = v.get("timeout", DEFAULT_TIMEOUT)
        if not self.stack.wait_state(v["ID"], v["STATE"], timeout):
            now = self.stack.status(v["ID"]).state
            raise CommandError(f"{v['ID']} is {now}, not {v['STATE']}, after {timeout:g} s")
        self.out(f"{v['ID']} {v['STATE']}")

    def do_expect(self, p: Parsed) -> None:
        v = p.values
        cid = v["ID"]
        want = unescape(v["TEXT"])
        timeout = v.get("timeout", DEFAULT_TIMEOUT)
        deadline = time.monotonic() + timeout
        got = bytearray(self._take_unread(cid, 1 << 62))
        while want not in got:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandError(
                    f"{cid}: {printable(want)!r} not received within {timeout:g} s; "
                    f"got {len(got)} bytes: {printable(bytes(got[-80:]))}"
                )
            try:
                chunk = self.stack.receive(cid, 65536, timeout=left)
            except StackError as e:
                raise CommandError(f"{e}; {printable(want)!r} not received") from None
            if not chunk:
                raise CommandError(f"{cid}: the peer closed before {printable(want)!r} arrived")
            got += chunk
        end = got.index(want) + len(want)
        if end < len(got):
            self._unread[cid] = got[end:]
        self.out(f"{cid}: got {printable(want)}")

    def _take_unread(self, cid: str, limit: int) -> bytes:
        buf = self._unread.get(cid)
        if not buf:
            return b""
        data = bytes(buf[:limit])
        del buf[:limit]
        if not buf:
            del self._unread[cid]
        return data

    def do_sleep(self, p: Parsed) -> None:
        time.sleep(p.values["S"])

    def do_echo(self, p: Parsed) -> None:
        self.out(p.values.get("TEXT", ""))

    def do_help(self, p: Parsed) -> None:
        name = p.values.get("COMMAND")
        if name is None:
            t = Table(show_header=False, box=None)
            for c in COMMANDS:
                t.add_row(f"[bold]{c.name}[/bold]", c.summary)
            self.console.print(t)
            self.out("help COMMAND shows its arguments and an example.")
            return
        cmd = BY_NAME.get(name)
        if cmd is None:
            raise CommandError(f"help: unknown command {name!r}")
        self.console.print(command_help(cmd))

    def do_quit(self, p: Parsed) -> None:
        raise Quit


def command_help(cmd: Command) -> Table:
    t = Table(title=f"{cmd.usage()}", title_justify="left", show_header=False, box=None)
    t.add_row("", cmd.summary)
    for a in cmd.args:
        t.add_row(f"  {a.name}", a.help + (" (optional)" if a.optional else ""))
    for o in cmd.opts:
        t.add_row(f"  {o.flag}", o.help)
    if cmd.aliases:
        t.add_row("  also", ", ".join(cmd.aliases))
    t.add_row("example", cmd.example)
    return t


def pool_table(conns: list[tuple[str, TcbStatus]]) -> Table:
    t = Table(title="connections")
    for col in (
        "id",
        "state",
        "local",
        "remote",
        "snd.una",
        "snd.nxt",
        "snd.wnd",
        "rcv.nxt",
        "rcv.wnd",
        "unacked",
        "queued",
        "readable",
    ):
        t.add_column(col, justify="right" if col not in ("id", "state", "local", "remote") else "left")
    for cid, s in conns:
        remote = f"{s.remote_addr or '*'}:{s.remote_port or '*'}"
        t.add_row(
            cid,
            f"[{STATE_STYLE.get(s.state, 'white')}]{s.state}[/]",
            f"{s.local_addr}:{s.local_port}",
            remote,
            str(s.snd_una),
            str(s.snd_nxt),
            str(s.snd_wnd),
            str(s.rcv_nxt),
            str(s.rcv_wnd),
            str(s.send_unacked),
            str(s.send_queued),
            str(s.recv_queued),
        )
    if not conns:
        t.caption = "no connections yet: try 'open HOST:PORT'"
    return t


def tcb_table(cid: str, s: TcbStatus) -> Table:
    t = Table(title=f"{cid} {s.state}", show_header=False)
    t.add_column("variable")
    t.add_column("value", justify="right")
    rows: list[tuple[str, Any]] = [
        ("local", f"{s.local_addr}:{s.local_port}"),
        ("remote", f"{s.remote_addr or '*'}:{s.remote_port or '*'}"),
        ("ISS", s.iss),
        ("SND.UNA", s.snd_una),
        ("SND.NXT", s.snd_nxt),
        ("SND.WND", s.snd_wnd),
        ("SND.UP", s.snd_up),
        ("SND.WL1", s.snd_wl1),
        ("SND.WL2", s.snd_wl2),
        ("IRS", s.irs),
        ("RCV.NXT", s.rcv_nxt),
        ("RCV.WND", s.rcv_wnd),
        ("RCV.UP", s.rcv_up),
        ("send MSS", s.snd_mss),
        ("receive MSS", s.rcv_mss),
        ("RTO", f"{s.rto:.3f} s"),
        ("SRTT", "-" if s.srtt is None else f"{s.srtt * 1000:.2f} ms"),
        ("RTTVAR", "-" if s.rttvar is None else f"{s.rttvar * 1000:.2f} ms"),
        ("cwnd", s.cwnd),
        ("ssthresh", s.ssthresh),
        ("congestion control", s.cc),
        ("send queued / unacked", f"{s.send_queued} / {s.send_unacked}"),
        ("receive queued / out of order", f"{s.recv_queued} / {s.ooo_queued}"),
        ("segments in / out", f"{s.segments_in} / {s.segments_out}"),
        ("retransmissions", s.retransmissions),
    ]
    for name, left in s.timers.items():
        rows.append((f"timer {name}", f"{left:.3f} s"))
    for k, val in rows:
        t.add_row(k, str(val))
    return t


def history_path() -> Path:
    """~/.local/state/tcpsh/history of the invoking user (under sudo, not root's)."""
    state = os.environ.get("XDG_STATE_HOME")
    if state and not os.environ.get("SUDO_USER"):
        return Path(state) / "tcpsh" / "history"
    user = os.environ.get("SUDO_USER")
    home = Path(os.path.expanduser(f"~{user}")) if user else Path.home()
    return home / ".local" / "state" / "tcpsh" / "history"
