"""The values the TCP core hands back: states, errors, events, and the result of every call."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from stack.wire.tcp import TcpSegment


class State(enum.Enum):
    """Connection states, spelled as RFC 9293 section 3.3.2 spells them."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, text: str) -> State:
        """Accept the RFC spelling in any case, with '-' or '_' ("time-wait", "TIME_WAIT")."""
        key = text.strip().upper().replace("_", "-")
        for s in cls:
            if s.value == key:
                return s
        raise ValueError(f"unknown state {text!r}; states are {', '.join(s.value for s in cls)}")


SYNCHRONIZED = frozenset(
    {
        State.ESTABLISHED,
        State.FIN_WAIT_1,
        State.FIN_WAIT_2,
        State.CLOSE_WAIT,
        State.CLOSING,
        State.LAST_ACK,
        State.TIME_WAIT,
    }
)


class TcpError(enum.Enum):
    """The error responses of RFC 9293 section 3.10, text as the RFC gives it."""

    NOT_EXIST = "connection does not exist"
    ALREADY_EXISTS = "connection already exists"
    CLOSING = "connection closing"
    REMOTE_UNSPECIFIED = "remote socket unspecified"
    INSUFFICIENT_RESOURCES = "insufficient resources"
    ILLEGAL = "connection illegal for this process"
    RESET = "connection reset"
    REFUSED = "connection refused"
    TIMED_OUT = "connection aborted due to user timeout"
    UNREACHABLE = "connection aborted: destination unreachable"

    def __str__(self) -> str:
        return f"error: {self.value}"


class EventKind(enum.Enum):
    """What a connection tells its user without being asked (the RFC's "signal")."""

    ESTABLISHED = "established"
    DATA = "data"  # data is readable; Event.count octets arrived
    URGENT = "urgent"  # the peer has urgent data ahead of what the user consumed
    PEER_CLOSED = "peer closed"  # FIN received: "connection closing" (3.10.7.4, eighth)
    RESET = "reset"  # "connection reset" (MUST-12)
    REFUSED = "refused"  # "connection refused"
    TIMED_OUT = "timed out"  # R2 passed: the connection is aborted (MUST-20)
    RETRANSMITTING = "retransmitting"  # R1 passed: told once per episode (SHLD-9)
    CLOSED = "closed"  # the TCB is deleted; Event.reason says why
    TIME_WAIT_OVER = "time-wait over"
    BAD_SEGMENT = "bad segment"  # a segment was dropped as malformed (counted)
    NETWORK_ERROR = "network error"  # an ICMP soft error: reported, the connection goes on (SHLD-25)
    UNREACHABLE = "unreachable"  # an ICMP hard error aborted the connection (SHLD-26)
    PATH_MTU = "path MTU"  # fragmentation needed: segments are smaller from now on (RFC 1191)


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    message: str = ""
    count: int = 0


@dataclass(slots=True)
class Result:
    """What a call or an event asks of the caller: segments to send, news for the user, the next deadline.

    `error` is the RFC's error response when a user call is refused; `data` is what RECEIVE returned.
    """

    segments: list[TcpSegment] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    deadline: float | None = None
    error: TcpError | None = None
    data: bytes = b""
    push: bool = False
    count: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None
