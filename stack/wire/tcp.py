"""The TCP header and its options (RFC 9293 section 3.1, RFC 7323, RFC 2018).

PLACEHOLDER API: types are final; parse_tcp/build_tcp are filled in by the codec work.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Address


class Flags(enum.IntFlag):
    """The control bits, in header bit order (RFC 9293 section 3.1, RFC 3168 for CWR/ECE)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """The options of one segment. None/False/() means absent."""

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None  # (TSval, TSecr)
    unknown: tuple[tuple[int, bytes], ...] = ()  # (kind, data) of options skipped by length, MUST-6
    malformed: bool = False  # an illegal length stopped option parsing (MUST-7)


NO_OPTIONS = TcpOptions()


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """One TCP segment: header fields and payload. Sequence numbers are unsigned 32-bit ints."""

    src_port: int
    dst_port: int
    seq: int = 0
    ack: int = 0
    flags: Flags = Flags(0)
    window: int = 0
    urgent: int = 0
    options: TcpOptions = field(default=NO_OPTIONS)
    payload: bytes = b""

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload octets plus one each for SYN and FIN (RFC 9293 section 3.3.1)."""
        return len(self.payload) + (1 if self.flags & Flags.SYN else 0) + (1 if self.flags & Flags.FIN else 0)


def parse_tcp(data: bytes, src: IPv4Address | None = None, dst: IPv4Address | None = None) -> TcpSegment:
    raise NotImplementedError


def build_tcp(seg: TcpSegment, src: IPv4Address, dst: IPv4Address) -> bytes:
    raise NotImplementedError
