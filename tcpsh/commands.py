"""The command language: one table defines every command once.

The parser, the completer, `help`, the script runner and the docs all read COMMANDS. A command is a
name, positional arguments, options, a one-line summary, an example and a handler.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from stack.tcp import State
from stack.tcp.config import settable_names
from stack.tcp.congestion import algorithm

if TYPE_CHECKING:
    from tcpsh.session import Session


class CommandError(Exception):
    """Bad input: str() is the one line to show. The shell and every connection carry on."""


# ---------------------------------------------------------------------- value kinds


def parse_port(text: str) -> int:
    try:
        port = int(text, 0)
    except ValueError:
        raise CommandError(f"{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise CommandError(f"port {port} is out of range 1-65535")
    return port


def parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a number") from None
    if value < 0 or value != value:
        raise CommandError(f"{text!r} must be zero or more")
    return value


def parse_count(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise CommandError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise CommandError(f"{text!r} must be more than zero")
    return value


def parse_address(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise CommandError(f"{text!r} is not an IPv4 address") from None


def parse_hostport(text: str) -> tuple[IPv4Address, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise CommandError(f"{text!r}: expected HOST:PORT, for example 198.18.0.2:7")
    return parse_address(host), parse_port(port)


def parse_host_optional_port(text: str) -> tuple[IPv4Address, int | None]:
    if ":" in text:
        return parse_hostport(text)
    return parse_address(text), None


def parse_route(text: str) -> tuple[IPv4Address, ...]:
    """GW1,GW2,...: the hops of a loose source route before the destination (at most 8)."""
    hops = tuple(parse_address(part) for part in text.split(",") if part)
    if not 1 <= len(hops) <= 8:
        raise CommandError(f"{text!r}: a source route is 1 to 8 addresses, comma-separated")
    return hops


def parse_state(text: str) -> State:
    try:
        return State.parse(text)
    except ValueError as e:
        raise CommandError(str(e)) from None


def parse_percent(text: str) -> float:
    """A probability written as a percentage, `5%` or `0.5%` (the % may be left out): 0.05, 0.005.
    `off` is 0. The range is checked by the impairment itself."""
    if text.lower() == "off":
        return 0.0
    try:
        value = float(text.removesuffix("%"))
    except ValueError:
        raise CommandError(f"{text!r} is not a percentage (for example 5% or 0.5%)") from None
    if value != value:
        raise CommandError(f"{text!r} is not a percentage (for example 5% or 0.5%)")
    return value / 100


_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_RATE_UNITS = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1.0}


def _with_unit(text: str, units: dict[str, float]) -> tuple[float, float] | None:
    """(number, scale) of text like `50ms` or `10mbit`, the longest unit matching; None if none does."""
    low = text.lower()
    for unit in sorted(units, key=len, reverse=True):
        if low.endswith(unit):
            try:
                value = float(low.removesuffix(unit))
            except ValueError:
                return None
            return (value, units[unit]) if value == value else None
    return None


def parse_duration(text: str) -> float:
    """A time with its unit, `50ms`, `0.05s` or `500us`, in seconds; `off` is 0."""
    if text.lower() == "off":
        return 0.0
    found = _with_unit(text, _TIME_UNITS)
    if found is None:
        raise CommandError(f"{text!r} is not a time with its unit (for example 50ms, 0.2s, 500us)")
    return found[0] * found[1]


def parse_rate(text: str) -> float | None:
    """A rate in bits per second, `10mbit`, `500kbit`, `1gbit` or a plain number of bits per second;
    `off` (no limit) is None."""
    if text.lower() == "off":
        return None
    found = _with_unit(text, _RATE_UNITS)
    if found is None:
        try:
            found = (float(text), 1.0)
        except ValueError:
            raise CommandError(f"{text!r} is not a rate (for example 10mbit, 500kbit, 1gbit)") from None
    return found[0] * found[1]


def unescape(text: str) -> bytes:
    r"""TEXT with \r \n \t \\ \0 and \xNN escapes, as bytes (UTF-8 for everything else)."""
    out = bytearray()
    i = 0
    simple = {"n": b"\n", "r": b"\r", "t": b"\t", "\\": b"\\", "0": b"\0", '"': b'"', "'": b"'"}
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        if i + 1 >= len(text):
            raise CommandError("TEXT ends with a lone backslash")
        nxt = text[i + 1]
        if nxt in simple:
            out += simple[nxt]
            i += 2
        elif nxt == "x":
            hexpart = text[i + 2 : i + 4]
            try:
                if len(hexpart) != 2:
                    raise ValueError
                out.append(int(hexpart, 16))
            except ValueError:
                raise CommandError(f"bad escape \\x{hexpart}: \\x takes two hex digits") from None
            i += 4
        else:
            raise CommandError(f"unknown escape \\{nxt} (known: \\r \\n \\t \\\\ \\0 \\xNN)")
    return bytes(out)


def parse_hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", " "))
    except ValueError:
        raise CommandError(f"{text!r} is not hex (pairs of hex digits, spaces or colons between)") from None


def printable(data: bytes) -> str:
    r"""Bytes shown readably: printable ASCII as is, \r \n \t and \xNN for the rest."""
    out = []
    for b in data:
        if b == 0x0A:
            out.append("\\n")
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x09:
            out.append("\\t")
        elif b == 0x5C:
            out.append("\\\\")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return "".join(out)


def split_words(line: str) -> list[str]:
    r"""Split a command line into words: blanks separate, "..." and '...' quote, # starts a comment.

    Backslash sequences are kept as written (TEXT arguments are unescaped later), so `\r\n` means the
    same inside and outside quotes; `\"` inside double quotes does not end them.
    """
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\" and i + 1 < len(line) and quote == '"':
                cur.append(line[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
            else:
                cur.append(ch)
            i += 1
            continue
        if ch in " \t":
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
        elif ch == "#" and not in_word:
            break
        elif ch in "\"'":
            quote, in_word = ch, True
        elif ch == "\\" and i + 1 < len(line):
            cur.append(line[i : i + 2])
            in_word = True
            i += 2
            continue
        else:
            cur.append(ch)
            in_word = True
        i += 1
    if quote:
        raise CommandError(f"unclosed {quote} quote")
    if in_word:
        words.append("".join(cur))
    return words


def split_commands(text: str) -> list[str]:
    """`-c` text: commands separated by `;`, except inside quotes."""
    out: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\" and quote == '"' and i + 1 < len(text):
                cur.append(text[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == ";":
            out.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


# ---------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str  # conn, hostport, port, text, count, state, seconds, word
    help: str
    optional: bool = False
    rest: bool = False  # takes the rest of the line as one string
    choices: tuple[str, ...] = ()  # for kind "choice": the words allowed


@dataclass(frozen=True)
class Opt:
    flag: str
    kind: str  # flag (no value), seconds, port, path, hex, text, host
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


Handler = Callable[["Session", dict[str, Any]], None]


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    example: str
    handler_name: str
    args: tuple[Arg, ...] = ()
    opts: tuple[Opt, ...] = ()
    aliases: tuple[str, ...] = field(default=())

    def usage(self) -> str:
        parts = [self.name]
        for a in self.args:
            parts.append(f"[{a.name}]" if a.optional else a.name)
        for o in self.opts:
            parts.append(f"[{o.flag}]" if o.kind == "flag" else f"[{o.flag} {o.kind.upper()}]")
        return " ".join(parts)


IMPAIRMENTS = ("loss", "delay", "reorder", "duplicate", "corrupt", "rate", "limit", "seed", "off")
CONN = Arg("ID", "conn", "a connection id, as `open` printed it (c1, c2, ...)")
TIMEOUT = Opt("--timeout", "seconds", "give up after this many seconds")

COMMANDS: tuple[Command, ...] = (
    Command(
        "open",
        "OPEN a connection: active to HOST:PORT (waits for ESTABLISHED), or passive with --passive PORT",
        "open 198.18.0.2:7",
        "do_open",
        (Arg("HOST:PORT", "hostport", "where to connect", optional=True),),
        (
            Opt("--passive", "port", "LISTEN on this local port (passive OPEN)"),
            Opt("--remote", "host", "with --passive: accept only this HOST or HOST:PORT"),
            Opt("--local-port", "port", "local port for an active OPEN (default: a free ephemeral port)"),
            Opt("--local", "address", "local address for an active OPEN: the stack's own (MUST-43)"),
            Opt("--source-route", "route", "go by these hops, comma-separated, then HOST (MUST-51)"),
            Opt("--no-wait", "flag", "return at once after sending the SYN"),
            Opt("--nodelay", "flag", "turn Nagle's algorithm off for this connection (MUST-17)"),
            Opt("--cc", "cc", "congestion control for this connection: reno (RFC 5681) or cubic (RFC 9438)"),
            TIMEOUT,
        ),
    ),
    Command(
        "send",
        "SEND data: TEXT with \\r \\n \\t \\xNN escapes, or --file PATH, or --hex HEX",
        'send c1 "GET / HTTP/1.0\\r\\n\\r\\n"',
        "do_send",
        (CONN, Arg("TEXT", "text", "the data, with escapes", optional=True, rest=True)),
        (
            Opt("--push", "flag", "set PUSH: deliver promptly (MAY-15)"),
            Opt("--urgent", "flag", "send it as urgent data: URG and the urgent pointer (MUST-30)"),
            Opt("--file", "path", "send the contents of this file"),
            Opt("--hex", "hex", "send these bytes, given in hex"),
            TIMEOUT,
        ),
    ),
    Command(
        "receive",
        "RECEIVE data that has arrived (waits for some), at most COUNT bytes",
        "receive c1 --timeout 2",
        "do_receive",
        (CONN, Arg("COUNT", "count", "read at most this many bytes", optional=True)),
        (
            TIMEOUT,
            Opt("--to", "path", "write the data to this file (replacing it) instead of the screen"),
            Opt("--all", "flag", "read until the peer closes its side (FIN)"),
        ),
        aliases=("recv",),
    ),
    Command(
        "close",
        "CLOSE: send FIN after queued data; receiving goes on (half-close)",
        "close c1",
        "do_close",
        (CONN,),
    ),
    Command("abort", "ABORT: send RST and delete the connection", "abort c1", "do_abort", (CONN,)),
    Command(
        "flush",
        "FLUSH: drop queued data that lies right of the send window (MAY-14)",
        "flush c1",
        "do_flush",
        (CONN,),
    ),
    Command(
        "status",
        "STATUS: every connection in one table, or every variable of one",
        "status c1",
        "do_status",
        (Arg("ID", "conn", "one connection", optional=True),),
    ),
    Command(
        "set",
        "change a setting of one connection (cc, buffers, Nagle, delayed ACK, keep-alive, R1, R2, RTO "
        "bounds, MSL), or with ID 'default' of connections opened from now on; with no NAME, list them",
        "set c1 keepalive on",
        "do_set",
        (
            Arg("ID", "conn", "a connection id, or 'default' for connections opened from now on"),
            Arg("NAME", "choice", "the setting", optional=True, choices=tuple(settable_names(at_open=True))),
            Arg("VALUE", "word", "on/off, a number (seconds, count, bytes: 64k, 4M), a name", optional=True),
        ),
    ),
    Command(
        "wait",
        "wait until a connection reaches STATE (ESTABLISHED, CLOSE-WAIT, TIME-WAIT, CLOSED, ...)",
        "wait c1 CLOSE-WAIT --timeout 5",
        "do_wait",
        (CONN, Arg("STATE", "state", "a state as RFC 9293 spells it")),
        (TIMEOUT,),
    ),
    Command(
        "expect",
        "read until TEXT has arrived; fails on timeout or close",
        'expect c1 "200 OK" --timeout 5',
        "do_expect",
        (CONN, Arg("TEXT", "text", "the data to wait for, with escapes", rest=True)),
        (TIMEOUT,),
    ),
    Command(
        "watch",
        "live view of the connections: sequence spaces (RFC 9293 figures 3 and 4), windows, timers",
        "watch c1",
        "do_watch",
        (Arg("ID", "conns", "the connections to show (default: all)", optional=True, rest=True),),
    ),
    Command(
        "trace",
        "print each segment in and out as it happens, tcpdump style",
        "trace on c1",
        "do_trace",
        (
            Arg("SWITCH", "choice", "on or off", choices=("on", "off")),
            Arg("ID", "conn", "only this connection (default: all)", optional=True),
        ),
    ),
    Command(
        "exchange",
        "the connection's segments so far, drawn as in the figures of RFC 9293 section 3.5",
        "exchange c1",
        "do_exchange",
        (CONN,),
    ),
    Command(
        "capture",
        "write every segment in and out to a pcap file (tcpdump -r, Wireshark)",
        "capture start /tmp/c1.pcap",
        "do_capture",
        (
            Arg("ACTION", "choice", "start or stop", choices=("start", "stop")),
            Arg("FILE", "path", "the pcap file to write, replacing it (with start)", optional=True),
        ),
    ),
    Command(
        "impair",
        "impair the link: loss, delay, reorder, duplicate, corrupt, rate; alone, show settings and counts",
        "impair loss 5% --burst 3",
        "do_impair",
        (
            Arg(
                "WHAT",
                "choice",
                "loss, delay, reorder, duplicate, corrupt, rate, limit (the queue), seed, or off (all)",
                optional=True,
                choices=IMPAIRMENTS,
            ),
            Arg(
                "VALUE",
                "word",
                "a percentage (5%), a time (50ms), a rate (10mbit) or a seed; off turns one off",
                optional=True,
            ),
            Arg(
                "VALUE2",
                "word",
                "delay: the jitter (10ms); reorder: the longest hold (10ms)",
                optional=True,
            ),
        ),
        (
            Opt("--burst", "count", "loss: the mean length of a run of losses, in packets"),
            Opt("--out", "flag", "only what the stack sends (default: both ways)"),
            Opt("--in", "flag", "only what the stack receives (default: both ways)"),
        ),
    ),
    Command("sleep", "pause for S seconds", "sleep 0.5", "do_sleep", (Arg("S", "seconds", "seconds"),)),
    Command(
        "echo",
        "print TEXT",
        'echo "step 2"',
        "do_echo",
        (Arg("TEXT", "word", "what to print", optional=True, rest=True),),
    ),
    Command(
        "help",
        "list the commands, or explain one",
        "help send",
        "do_help",
        (Arg("COMMAND", "word", "a command name", optional=True),),
    ),
    Command(
        "quit",
        "leave: open connections are closed, then aborted if they do not finish; attached to a daemon, "
        "detach and leave them open (as Ctrl-D does)",
        "quit",
        "do_quit",
        aliases=("exit",),
    ),
    Command(
        "shutdown",
        "stop the daemon this shell is attached to: its connections are closed, then aborted if they do "
        "not finish, and every attached shell is told; in a shell of its own, the same as quit",
        "shutdown",
        "do_shutdown",
    ),
)

BY_NAME: dict[str, Command] = {}
for _c in COMMANDS:
    BY_NAME[_c.name] = _c
    for _a in _c.aliases:
        BY_NAME[_a] = _c

DEFAULT_TIMEOUT = 10.0


@dataclass
class Parsed:
    command: Command
    values: dict[str, Any]


def _convert(kind: str, text: str) -> Any:
    if kind in ("conn", "conns", "word", "text", "path", "choice"):
        return text
    if kind == "hostport":
        return parse_hostport(text)
    if kind == "address":
        return parse_address(text)
    if kind == "route":
        return parse_route(text)
    if kind == "host":
        return parse_host_optional_port(text)
    if kind == "port":
        return parse_port(text)
    if kind == "count":
        return parse_count(text)
    if kind == "seconds":
        return parse_float(text)
    if kind == "state":
        return parse_state(text)
    if kind == "hex":
        return parse_hex(text)
    if kind == "cc":
        try:
            algorithm(text)
        except ValueError as e:
            raise CommandError(str(e)) from None
        return text
    raise AssertionError(kind)


def parse_line(line: str) -> Parsed | None:
    """Parse one command line. None for a blank line or a comment; CommandError for bad input."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    words = split_words(stripped)
    if not words:
        return None
    name = words[0]
    cmd = BY_NAME.get(name)
    if cmd is None:
        near = difflib.get_close_matches(name, list(BY_NAME), n=1, cutoff=0.6)
        hint = f"; did you mean '{near[0]}'?" if near else "; type 'help' for the list"
        raise CommandError(f"unknown command {name!r}{hint}")
    values: dict[str, Any] = {}
    positional: list[str] = []
    opts = {o.flag: o for o in cmd.opts}
    i = 1
    while i < len(words):
        w = words[i]
        if w.startswith("--") and len(w) > 2:
            opt = opts.get(w)
            if opt is None:
                known = ", ".join(opts) or "none"
                near = difflib.get_close_matches(w, list(opts), n=1, cutoff=0.6)
                hint = f"did you mean {near[0]}? " if near else ""
                raise CommandError(f"{name}: unknown option {w} ({hint}options: {known})")
            if opt.kind == "flag":
                values[opt.dest] = True
                i += 1
                continue
            if i + 1 >= len(words):
                raise CommandError(f"{name}: {w} needs a value ({opt.help})")
            values[opt.dest] = _convert(opt.kind, words[i + 1])
            i += 2
            continue
        positional.append(w)
        i += 1
    for n, arg in enumerate(cmd.args):
        if arg.rest:
            if n < len(positional):
                values[arg.name] = " ".join(positional[n:])
                positional = positional[: n + 1]
            break
        if n < len(positional):
            value = _convert(arg.kind, positional[n])
            if arg.choices and value not in arg.choices:
                raise CommandError(f"{name}: {arg.name} is one of {', '.join(arg.choices)}, not {value!r}")
            values[arg.name] = value
    if len(positional) > len(cmd.args):
        raise CommandError(f"{name}: too many arguments; usage: {cmd.usage()}")
    for arg in cmd.args:
        if not arg.optional and arg.name not in values:
            raise CommandError(f"{name}: missing {arg.name}; usage: {cmd.usage()}")
    return Parsed(cmd, values)
