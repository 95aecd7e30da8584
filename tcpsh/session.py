"""A shell session: runs parsed commands against a Stack and prints what happened.

The same Session serves the interactive prompt, `-c "..."` and `.tcpsh` files; only the way lines
arrive differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from stack.link.capture import PcapWriter
from stack.link.impair import DIRECTIONS, ImpairedLink
from stack.runtime import Stack, StackError, StackTimeout
from stack.tcp import Event, EventKind, State, TcbConfig
from stack.wire.tcp import TcpSegment
from tcpsh import privilege, views
from tcpsh.commands import (
    BY_NAME,
    COMMANDS,
    DEFAULT_TIMEOUT,
    Command,
    CommandError,
    Parsed,
    parse_count,
    parse_duration,
    parse_line,
    parse_percent,
    parse_rate,
    printable,
    unescape,
)


class Quit(Exception):
    """`quit` was typed."""


class Shutdown(Quit):
    """`shutdown` was typed: leave, and stop the daemon when attached to one."""


NEWS = {
    EventKind.ESTABLISHED: "established",
    EventKind.PEER_CLOSED: "peer closed its side (FIN)",
    EventKind.RESET: "connection reset by peer",
    EventKind.REFUSED: "connection refused",
    EventKind.TIMED_OUT: "timed out: no answer after repeated retransmissions (R2)",
    EventKind.TIME_WAIT_OVER: "TIME-WAIT over",
    EventKind.URGENT: "urgent data pending",
}
# News whose message says it all: R1 passed (SHLD-9), ICMP soft errors (SHLD-25), hard errors
# (SHLD-26), and a lower path MTU.
TOLD_AS_IS = (EventKind.RETRANSMITTING, EventKind.NETWORK_ERROR, EventKind.UNREACHABLE, EventKind.PATH_MTU)


def news_text(cid: str, ev: Event) -> str | None:
    """The news line for an event, or None for events that are not told. Asynchronous news is always
    reported (MUST-12, SHLD-9)."""
    if ev.kind is EventKind.DATA:
        return f"data arrived on {cid} ({ev.count} bytes)"
    if ev.kind in TOLD_AS_IS:
        return f"{cid}: {ev.message}"
    if ev.kind in NEWS:
        return f"{cid}: {NEWS[ev.kind]}"
    return None


def toolbar_text(
    address: object, states: dict[str, int], segments_in: int, segments_out: int, retx: int
) -> str:
    """The bottom line: address, connections per state, segments in/out, retransmissions."""
    shown = "  ".join(f"{st}:{n}" for st, n in sorted(states.items()))
    return (
        f" {address}   {shown or 'no connections'}   "
        f"segments in {segments_in} out {segments_out}   retransmissions {retx}"
    )


class Driver:
    """What the prompt and the script runner drive: a Session in this process, or a shell attached to
    a daemon (tcpsh.attach). Both run lines, print to `console`, and print news as it comes."""

    console: Console
    hosts: list[tuple[str, str]]  # HOST:PORT and name, for completion
    _held: list[str] | None  # news held back while a full-screen view is up

    def execute(self, line: str) -> None:
        """Run one line. Raises CommandError or StackError with the one line to show; Quit to leave."""
        raise NotImplementedError

    def connection_states(self) -> list[tuple[str, str]]:
        """(id, state) of every connection, for completion."""
        raise NotImplementedError

    def toolbar(self) -> str:
        """The bottom line of the prompt; never waits."""
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        """False once there is nothing left to drive (the daemon went)."""
        return True

    def prompt_started(self, prompt: Any) -> None:
        """The prompt session that reads lines, for a driver that must end it from another thread."""

    def out(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, highlight=False, markup=False)

    def tell(self, text: str) -> None:
        """News: printed above the prompt now, or once the full-screen view that holds it is left."""
        if self._held is not None:
            self._held.append(text)
            return
        self.console.print(f"[dim]*[/dim] {text}", highlight=False)

    @contextlib.contextmanager
    def holding_news(self) -> Iterator[None]:
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            for text in held:
                self.tell(text)

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


@dataclass
class Session(Driver):
    stack: Stack
    console: Console = field(default_factory=Console)
    # Data read past what `expect` waited for, kept for the next receive or expect on that connection.
    _unread: dict[str, bytearray] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _trace: Any = None  # the tap of `trace on`, if any
    _capture: tuple[PcapWriter, Any] | None = None  # the writer and tap of `capture start`
    _held: list[str] | None = None  # news held back while a full-screen view is up
    hosts: list[tuple[str, str]] = field(default_factory=list)  # HOST:PORT and name, for completion
    toolbar_cache: dict[State, int] = field(default_factory=dict)
    # False when something else tells the stack's news (the daemon, to every attached shell at once).
    own_news: bool = True
    # Shows a live view of these connections (`watch`) where the user is, instead of in this process.
    live_view: Callable[[list[str]], None] | None = None

    def __post_init__(self) -> None:
        if self.own_news:
            self.stack.subscribe(self._on_event)

    # ------------------------------------------------------------------ news

    def _on_event(self, cid: str, ev: Event) -> None:
        text = news_text(cid, ev)
        if text is not None:
            self.tell(text)

    def aside(self, line: str) -> None:
        """A line printed as it happens, outside any command (a traced segment)."""
        self.console.print(line, highlight=False)

    # ------------------------------------------------------------------ running lines

    def execute(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is None:
            return
        handler: Callable[[Parsed], None] = getattr(self, parsed.command.handler_name)
        handler(parsed)

    def connection_states(self) -> list[tuple[str, str]]:
        return [(cid, str(st.state)) for cid, st in self.stack.connections()]

    def toolbar(self) -> str:
        """Reads cached figures only: it never waits for the pool lock."""
        stack = self.stack
        counts = stack.summary()
        if counts is not None:
            self.toolbar_cache = counts
        c = stack.counters
        retx = sum(conn.tcb.retransmissions for conn in list(stack.pool.conns.values()))
        states = {str(st): n for st, n in self.toolbar_cache.items()}
        return toolbar_text(stack.address, states, c.segments_in, c.segments_out, retx)

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
            local_addr=v.get("local"),
            route=v.get("source_route", ()),
            timeout=v.get("timeout", DEFAULT_TIMEOUT),
            wait=not v.get("no_wait", False),
            config=self._open_config(v),
        )
        st = self.stack.status(cid)
        self.out(f"{cid} {st.state} {st.local_addr}:{st.local_port} -> {host}:{port}")

    def _open_config(self, v: dict[str, Any]) -> TcbConfig | None:
        """The stack's defaults, with what this `open` changes (--nodelay, --cc)."""
        changes: dict[str, Any] = {}
        if v.get("nodelay"):
            changes["nagle"] = False
        if "cc" in v:
            changes["cc"] = v["cc"]
        return dataclasses.replace(self.stack.config, **changes) if changes else None

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
            data = privilege.read_bytes(v["file"], "send")
        urgent = v.get("urgent", False)
        n = self.stack.send(v["ID"], data, push=v.get("push", False), urgent=urgent, timeout=v.get("timeout"))
        self.out(f"{v['ID']}: queued {n} bytes" + (" of urgent data" if urgent else ""))

    def do_receive(self, p: Parsed) -> None:
        v = p.values
        cid = v["ID"]
        if "to" in v:
            # The file is opened first: a bad path is told before any data is taken. It is replaced
            # by what arrives; if nothing can be received, it stays as it was (or is not created).
            with privilege.Output(v["to"], "receive") as out:
                data = self._receive(cid, v)
                out.replace(data)
            self.out(f"{cid}: {len(data)} bytes written to {out.path}")
            return
        data = self._receive(cid, v)
        if not data:
            self.out(f"{cid}: end of data (the peer closed its side)")
            return
        self.out(f"{cid}: {len(data)} bytes: {printable(data)}")

    def _receive(self, cid: str, v: dict[str, Any]) -> bytes:
        count = v.get("COUNT", 1 << 30 if v.get("all") else 65536)
        data = self._take_unread(cid, count)
        if len(data) < count and (v.get("all") or not data):
            data += self.stack.receive(
                cid,
                count - len(data),
                timeout=v.get("timeout", DEFAULT_TIMEOUT),
                until_close=v.get("all", False),
            )
        return data

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
            stack = self.stack
            notes = self.impairment_notes() + views.stack_notes(stack.counters, stack.pool, stack.link_drops)
            self.console.print(views.pool_table(stack.connections(), notes=notes))
        else:
            self.console.print(views.tcb_table(cid, self.stack.status(cid)))

    def _conns(self, text: str | None) -> list[str]:
        """Ids named on the line (each must exist), or every connection."""
        if not text:
            return [cid for cid, _ in self.stack.connections()]
        ids = text.replace(",", " ").split()
        for cid in ids:
            self.stack.status(cid)  # raises with "no such connection"
        return ids

    def do_watch(self, p: Parsed) -> None:
        ids = self._conns(p.values.get("ID"))
        if self.live_view is not None:
            self.live_view(ids)
            return
        if not self.console.is_terminal:
            # Not a terminal (a script, a pipe): one snapshot, no live view.
            self.console.print(views.watch_view(self._snapshot(ids), width=self.console.width))
            return
        from tcpsh.watch import render, run_watch

        color = self.console.color_system is not None
        with self.holding_news():
            run_watch(
                lambda relative, width: render(
                    lambda: self._snapshot(ids), relative=relative, width=width, color=color
                )
            )

    def _snapshot(self, ids: list[str]) -> list[tuple[str, Any]]:
        wanted = set(ids)
        return [(cid, st) for cid, st in self.stack.connections() if cid in wanted]

    def do_trace(self, p: Parsed) -> None:
        v = p.values
        if self._trace is not None:
            self.stack.untap(self._trace)
            self._trace = None
        if v["SWITCH"] == "off":
            self.out("trace off")
            return
        only = v.get("ID")
        if only is not None:
            self.stack.status(only)  # raises with "no such connection"
        pool = self.stack.pool

        def tap(direction: str, src: Any, dst: Any, seg: TcpSegment, datagram: bytes) -> None:
            # Runs with the pool lock held: look up the connection, format, print later.
            if direction == "out":
                conn = pool.find(seg.src_port, dst, seg.dst_port)
            else:
                conn = pool.find(seg.dst_port, src, seg.src_port)
            if only is not None and (conn is None or conn.id != only):
                return
            seq_base = ack_base = None
            if conn is not None and conn.tcb.state not in (State.SYN_SENT, State.LISTEN, State.CLOSED):
                iss, irs = conn.tcb.iss, conn.tcb.irs
                seq_base, ack_base = (iss, irs) if direction == "out" else (irs, iss)
            line = views.trace_line(
                time.monotonic() - self.started,
                direction,
                src,
                dst,
                seg,
                seq_base=seq_base,
                ack_base=ack_base,
            )
            self.stack.post(lambda: self.aside(line))

        self._trace = tap
        self.stack.tap(tap)
        self.out(f"trace on{' ' + only if only else ''}: < in, > out; seq and ack relative once synchronized")

    def do_exchange(self, p: Parsed) -> None:
        cid = p.values["ID"]
        steps = self.stack.exchange(cid)
        if not steps:
            self.out(f"{cid}: no segments yet")
            return
        self.out(f"{cid}, as in RFC 9293 section 3.5: our state after each segment; --> sent, <-- received")
        for n, (_, direction, state, seg, length) in enumerate(steps, 1):
            self.out(views.exchange_line(n, direction, state, seg, length))

    def do_capture(self, p: Parsed) -> None:
        v = p.values
        if v["ACTION"] == "stop":
            if self._capture is None:
                raise CommandError("capture: no capture is running")
            self.out(f"capture stopped: {self._stop_capture()}")
            return
        if "FILE" not in v:
            raise CommandError("capture start: missing FILE, for example capture start /tmp/run.pcap")
        if self._capture is not None:
            raise CommandError(f"capture: already writing {self._capture[0].path}; capture stop first")
        with privilege.Output(v["FILE"], "capture") as out:
            writer = out.hand_over(PcapWriter)
        path = out.path

        def tap(direction: str, src: Any, dst: Any, seg: TcpSegment, datagram: bytes) -> None:
            writer.write(bytes(datagram))

        self._capture = (writer, tap)
        self.stack.tap(tap)
        self.out(f"capturing to {path}")

    def _stop_capture(self) -> str:
        assert self._capture is not None
        writer, tap = self._capture
        self.stack.untap(tap)
        writer.close()
        self._capture = None
        return f"{writer.packets} packets in {writer.path}"

    def close(self) -> None:
        """Stop what the session started (trace, capture) before the stack goes."""
        if self._trace is not None:
            self.stack.untap(self._trace)
            self._trace = None
        if self._capture is not None:
            self.out(f"capture stopped: {self._stop_capture()}")

    # ------------------------------------------------------------------ impair

    def _impaired_link(self) -> ImpairedLink:
        link = self.stack.link
        if not isinstance(link, ImpairedLink):
            raise CommandError("impair: this stack's link has no impairment layer")
        return link

    def impairment_notes(self) -> list[str]:
        """One line per direction with an impairment set, for `status`."""
        link = self.stack.link
        if not isinstance(link, ImpairedLink) or not link.active:
            return []
        return [
            f"impairment {d}: {link.settings(d).describe()}" for d in DIRECTIONS if link.settings(d).active
        ]

    def do_impair(self, p: Parsed) -> None:
        v = p.values
        link = self._impaired_link()
        what, value, value2 = v.get("WHAT"), v.get("VALUE"), v.get("VALUE2")
        only_out, only_in = v.get("out", False), v.get("in", False)
        direction = "out" if only_out and not only_in else "in" if only_in and not only_out else "both"
        if what is None:
            for d in DIRECTIONS:
                self.out(f"impairment {d}: {link.settings(d).describe()}")
                self.out(f"  {link.counters(d).describe()}")
            self.out(f"seed {link.seed} ('impair seed {link.seed}' replays the same random choices)")
            return
        if "burst" in v and what != "loss":
            raise CommandError(f"impair {what}: --burst goes with loss")
        if what == "off":
            if value is not None:
                raise CommandError("impair off: takes no value (impair LOSS off turns one off)")
            link.off(direction)
            self._show_impairment(link, direction)
            return
        if value is None:
            raise CommandError(f"impair {what}: missing VALUE; usage: {p.command.usage()}")
        if value2 is not None and what not in ("delay", "reorder"):
            raise CommandError(f"impair {what}: takes one value, not {value} {value2}")
        try:
            if what == "seed":
                if only_out or only_in:
                    raise CommandError("one seed serves both directions; no --in or --out")
                try:
                    seed = int(value, 0)
                except ValueError:
                    raise CommandError(f"{value!r} is not a whole number") from None
                link.reseed(seed)
                self.out(f"seed {seed}")
                return
            changes = self._impair_changes(what, value, value2, v)
        except CommandError as e:
            raise CommandError(f"impair {what}: {e}") from None
        try:
            link.set(direction, **changes)
        except ValueError as e:
            raise CommandError(f"impair: {e}") from None
        self._show_impairment(link, direction)

    @staticmethod
    def _impair_changes(what: str, value: str, value2: str | None, v: dict[str, Any]) -> dict[str, Any]:
        """The Impairment fields that `impair WHAT VALUE [VALUE2]` sets."""
        if what == "loss":
            return {"loss": parse_percent(value), "burst": float(v.get("burst", 0))}
        if what == "delay":
            return {"delay": parse_duration(value), "jitter": parse_duration(value2) if value2 else 0.0}
        if what == "reorder":
            return {"reorder": parse_percent(value), **({"hold": parse_duration(value2)} if value2 else {})}
        if what in ("duplicate", "corrupt"):
            return {what: parse_percent(value)}
        if what == "rate":
            return {"rate": parse_rate(value)}
        if what == "limit":
            return {"limit": parse_count(value)}
        raise AssertionError(what)

    def _show_impairment(self, link: ImpairedLink, direction: str) -> None:
        for d in DIRECTIONS:
            if direction in (d, "both"):
                self.out(f"impairment {d}: {link.settings(d).describe()}")

    def do_set(self, p: Parsed) -> None:
        v = p.values
        cid = v["ID"]
        if "NAME" not in v:
            current = self.stack.defaults() if cid == "default" else self.stack.status(cid).settings
            for name, value in current.items():
                self.out(f"{cid} {name} {value}")
            return
        if "VALUE" not in v:
            raise CommandError(f"set: missing VALUE for {v['NAME']}")
        if cid == "default":
            settings = self.stack.configure_default(v["NAME"], v["VALUE"])
        else:
            settings = self.stack.configure(cid, v["NAME"], v["VALUE"])
        self.out(f"{cid} {v['NAME']} {settings[v['NAME']]}")

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
            except StackTimeout:
                continue  # the deadline check above says what was expected and what came
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
        # In slices, so that an interrupt the daemon raises in this thread (it cannot break into one long
        # time.sleep) takes effect within one; in the shell, Ctrl-C's signal breaks in at once anyway.
        deadline = time.monotonic() + p.values["S"]
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

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

    def do_shutdown(self, p: Parsed) -> None:
        raise Shutdown


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


def history_path() -> Path:
    """~/.local/state/tcpsh/history of the invoking user (under sudo, not root's)."""
    state = os.environ.get("XDG_STATE_HOME")
    if state and not os.environ.get("SUDO_USER"):
        return Path(state) / "tcpsh" / "history"
    return privilege.home() / ".local" / "state" / "tcpsh" / "history"
