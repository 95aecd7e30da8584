"""The protocol between `tcpsh daemon` and the programs that drive it (`tcpsh attach`, or any other).

Line-delimited JSON over a Unix stream socket: each message is one JSON object on one line, UTF-8,
ended by a newline, at most MAX_LINE bytes with it. Every message carries the protocol version `v`
and a `type`. docs/protocol.md is the reference; this module is the codec both sides use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

VERSION = 1
MAX_LINE = 1 << 20  # bytes in one message, its newline included

# Client to daemon.
HELLO, RUN, INTERRUPT, SUMMARY, VIEW = "hello", "run", "interrupt", "summary", "view"
# Daemon to client (and "summary" and "view" as the answers to those requests).
WELCOME, OUTPUT, RESULT, EVENT, ERROR = "welcome", "output", "result", "event", "error"

CLIENT_TYPES = (HELLO, RUN, INTERRUPT, SUMMARY, VIEW)


class ProtocolError(Exception):
    """A message that cannot be taken: str() is the one line sent back in an `error` message."""


def encode(msg_type: str, /, **fields: Any) -> bytes:
    """One message of this type as a line: the version first, then the fields."""
    line = json.dumps({"v": VERSION, "type": msg_type, **fields}, separators=(",", ":"), ensure_ascii=False)
    data = line.encode() + b"\n"
    if len(data) > MAX_LINE:
        raise ProtocolError(f"message of {len(data)} bytes is over the limit of {MAX_LINE}")
    return data


def decode(line: bytes, *, types: tuple[str, ...] | None = None) -> dict[str, Any]:
    """One line (without its newline) as a message; ProtocolError saying what is wrong with it.

    The version is checked before anything else, so that a client of another version is told so
    rather than that its messages look odd."""
    try:
        text = line.decode()
    except UnicodeDecodeError as e:
        raise ProtocolError(f"not UTF-8 (byte {e.start})") from None
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"not JSON: {e.msg} at column {e.colno}") from None
    except RecursionError:
        raise ProtocolError("not JSON this side can read: nested too deeply") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"a message is a JSON object, not {type(msg).__name__}")
    version = msg.get("v")
    if version != VERSION:
        if version is None:
            raise ProtocolError(f'no protocol version: every message carries "v": {VERSION}')
        raise ProtocolError(
            f"protocol version {version!r} is not spoken here; this side speaks version {VERSION}"
        )
    kind = msg.get("type")
    if not isinstance(kind, str):
        raise ProtocolError('no "type" in the message')
    if types is not None and kind not in types:
        raise ProtocolError(f"unknown message type {kind!r} (known: {', '.join(types)})")
    return msg


def field(msg: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    """msg[name] checked to be of `kind` (bool is not taken for int); `default` when it is absent."""
    if name not in msg or msg[name] is None:
        return default
    value = msg[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ProtocolError(f"{name!r} must be {names}, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class TooLong:
    """A line went past MAX_LINE: it was dropped (`size` bytes of it seen when this was noticed)."""

    size: int


class LineReader:
    """Splits a byte stream into lines of at most `limit` bytes (newline included).

    A longer line is dropped whole, without being held in memory: `feed` reports it once as TooLong,
    then skips everything up to its newline; the lines after it come as usual."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[bytes | TooLong]:
        out: list[bytes | TooLong] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            if self._skipping:
                if end < 0:
                    return out
                self._skipping = False
                start = end + 1
                continue
            piece = data[start:] if end < 0 else data[start:end]
            if len(self._buf) + len(piece) + 1 > self.limit:
                out.append(TooLong(len(self._buf) + len(piece)))
                self._buf.clear()
                if end < 0:
                    self._skipping = True
                    return out
                start = end + 1
                continue
            self._buf += piece
            if end < 0:
                return out
            out.append(bytes(self._buf))
            self._buf.clear()
            start = end + 1
        return out

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held (a half message when the stream ends)."""
        return len(self._buf)
