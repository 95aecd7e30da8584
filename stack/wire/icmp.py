"""ICMP messages (RFC 792), with the next-hop MTU of RFC 1191 section 4.

Every message (RFC 792, "Message Formats"):

    type (8) | code (8) | checksum (16)
    four octets whose meaning depends on the type ("rest of header")
    body: echo data, or for the error messages the quoted original datagram
    (its Internet header plus at least the first 64 bits of its data)

The rest of header is kept as one 32-bit int, `rest`, and read through properties:
`ident`/`seq` (echo, timestamp, information), `next_hop_mtu` (destination unreachable code 4,
RFC 1191 section 4), `pointer` (parameter problem) and `gateway` (redirect).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from stack.wire._fields import octets, uint
from stack.wire.checksum import internet_checksum
from stack.wire.errors import ParseError
from stack.wire.ipv4 import IpProto, IPv4Header, parse_ipv4

__all__ = [
    "ICMP_ERROR_TYPES",
    "IcmpMessage",
    "IcmpType",
    "ParamProblemCode",
    "RedirectCode",
    "TimeExceededCode",
    "UnreachCode",
    "build_icmp",
    "echo_reply",
    "echo_request",
    "icmp_error",
    "parse_icmp",
]

ICMP_HEADER_LEN = 8


class IcmpType(enum.IntEnum):
    """ICMP types of RFC 792."""

    ECHO_REPLY = 0
    DEST_UNREACHABLE = 3
    SOURCE_QUENCH = 4
    REDIRECT = 5
    ECHO_REQUEST = 8
    TIME_EXCEEDED = 11
    PARAMETER_PROBLEM = 12
    TIMESTAMP = 13
    TIMESTAMP_REPLY = 14
    INFO_REQUEST = 15
    INFO_REPLY = 16


class UnreachCode(enum.IntEnum):
    """Destination-unreachable codes: 0-5 RFC 792, 6-12 RFC 1122 section 3.2.2.1, 13-15 RFC 1812 5.2.7.1."""

    NET = 0
    HOST = 1
    PROTOCOL = 2
    PORT = 3
    FRAGMENTATION_NEEDED = 4  # "fragmentation needed and DF set"; carries the next-hop MTU (RFC 1191)
    SOURCE_ROUTE_FAILED = 5
    NET_UNKNOWN = 6
    HOST_UNKNOWN = 7
    SOURCE_HOST_ISOLATED = 8
    NET_PROHIBITED = 9
    HOST_PROHIBITED = 10
    NET_TOS = 11
    HOST_TOS = 12
    ADMIN_PROHIBITED = 13
    HOST_PRECEDENCE_VIOLATION = 14
    PRECEDENCE_CUTOFF = 15


class TimeExceededCode(enum.IntEnum):
    """Time-exceeded codes (RFC 792)."""

    TTL_EXCEEDED = 0
    REASSEMBLY_EXCEEDED = 1


class RedirectCode(enum.IntEnum):
    """Redirect codes (RFC 792)."""

    NET = 0
    HOST = 1
    TOS_NET = 2
    TOS_HOST = 3


class ParamProblemCode(enum.IntEnum):
    """Parameter-problem codes (RFC 792 code 0; RFC 1108 code 1; RFC 1812 code 2)."""

    POINTER = 0
    MISSING_OPTION = 1
    BAD_LENGTH = 2


# The messages that quote the datagram that caused them (RFC 792; RFC 1122 section 3.2.2).
ICMP_ERROR_TYPES = frozenset(
    {
        IcmpType.DEST_UNREACHABLE,
        IcmpType.SOURCE_QUENCH,
        IcmpType.REDIRECT,
        IcmpType.TIME_EXCEEDED,
        IcmpType.PARAMETER_PROBLEM,
    }
)

_HEADER = struct.Struct("!BBHI")
_QUOTED_TCP = struct.Struct("!HHI")


@dataclass(frozen=True, slots=True)
class IcmpMessage:
    """One ICMP message. `type` and `code` are plain ints (compare with IcmpType/UnreachCode...).

    `checksum` is what was on the wire after `parse_icmp` (already verified); `build_icmp`
    computes its own and ignores this field.
    """

    type: int
    code: int = 0
    rest: int = 0  # the 4 octets after the checksum, big-endian
    body: bytes = b""
    checksum: int = 0

    @property
    def ident(self) -> int:
        """Identifier of an echo, timestamp or information message (RFC 792): the high 16 bits of rest."""
        return self.rest >> 16

    @property
    def seq(self) -> int:
        """Sequence number of an echo, timestamp or information message (RFC 792): the low 16 bits."""
        return self.rest & 0xFFFF

    @property
    def next_hop_mtu(self) -> int | None:
        """Next-hop MTU of a "fragmentation needed" message (RFC 1191 section 4), else None.

        0 means the router predates RFC 1191 and did not say.
        """
        if self.type == IcmpType.DEST_UNREACHABLE and self.code == UnreachCode.FRAGMENTATION_NEEDED:
            return self.rest & 0xFFFF
        return None

    @property
    def pointer(self) -> int:
        """Octet offset of the bad field in a parameter-problem message (RFC 792): the high octet."""
        return self.rest >> 24

    @property
    def gateway(self) -> IPv4Address:
        """Gateway internet address of a redirect message (RFC 792)."""
        return IPv4Address(self.rest)

    @property
    def is_error(self) -> bool:
        """Whether the message is an error that quotes the datagram that caused it."""
        return self.type in ICMP_ERROR_TYPES

    def quoted(self) -> tuple[IPv4Header, bytes]:
        """The quoted original datagram of an error message: its IPv4 header and the data quoted after it.

        RFC 792: the body is the original "Internet Header + 64 bits of Original Data Datagram";
        RFC 1812 section 4.3.2.3 routers may quote more, which is returned too (up to the original
        total length). The quoted header's checksum is not verified and its total length may exceed
        what was quoted. Raises ParseError if this is not an error message or the quote is malformed.
        """
        if not self.is_error:
            raise ParseError(f"ICMP type {self.type} carries no quoted datagram")
        try:
            header, payload = parse_ipv4(self.body, verify_checksum=False, truncated_ok=True)
        except ParseError as e:
            raise ParseError(f"quoted datagram: {e}") from None
        return header, bytes(payload)

    def quoted_tcp(self) -> tuple[int, int, int]:
        """(source port, destination port, sequence number) of a quoted TCP segment.

        These are the first 64 bits of the TCP header (RFC 9293 section 3.1), which RFC 792 guarantees
        are quoted. Raises ParseError if the quoted datagram is not TCP or is cut short.
        """
        header, data = self.quoted()
        if header.protocol != IpProto.TCP:
            raise ParseError(f"quoted datagram protocol is {header.protocol}, not TCP")
        if len(data) < _QUOTED_TCP.size:
            raise ParseError(f"quoted TCP header truncated: {len(data)} octets, need {_QUOTED_TCP.size}")
        src_port, dst_port, seq = _QUOTED_TCP.unpack_from(data)
        return src_port, dst_port, seq


def parse_icmp(data: bytes | bytearray | memoryview) -> IcmpMessage:
    """Decode an ICMP message and verify its checksum (RFC 792: one's complement sum from the type on).

    Raises ParseError naming the field for a message under 8 octets or a bad checksum.
    Any type and code is accepted.
    """
    n = len(data)
    if n < ICMP_HEADER_LEN:
        raise ParseError(f"ICMP header truncated: {n} octets, need at least {ICMP_HEADER_LEN}")
    type_, code, checksum, rest = _HEADER.unpack_from(data)
    if internet_checksum(data) != 0:
        raise ParseError(f"bad ICMP checksum 0x{checksum:04x}")
    return IcmpMessage(type_, code, rest, bytes(data[ICMP_HEADER_LEN:]), checksum)


def build_icmp(msg: IcmpMessage) -> bytes:
    """Encode an ICMP message with its checksum computed (RFC 792). Raises ValueError naming the field."""
    body = octets("ICMP body", msg.body)
    header = _HEADER.pack(uint("ICMP type", msg.type, 8), uint("ICMP code", msg.code, 8), 0,
                          uint("ICMP rest of header", msg.rest, 32))
    checksum = internet_checksum(header + body)
    return header[:2] + checksum.to_bytes(2, "big") + header[4:] + body


def echo_request(ident: int, seq: int, data: bytes = b"") -> IcmpMessage:
    """An echo request (RFC 792, type 8) with the given identifier, sequence number and data."""
    rest = (uint("echo identifier", ident, 16) << 16) | uint("echo sequence number", seq, 16)
    return IcmpMessage(IcmpType.ECHO_REQUEST, 0, rest, octets("echo data", data))


def echo_reply(request: IcmpMessage) -> IcmpMessage:
    """The echo reply (RFC 792, type 0) to `request`: same identifier, sequence number and data."""
    if request.type != IcmpType.ECHO_REQUEST:
        raise ValueError(f"ICMP type {request.type} is not an echo request")
    return IcmpMessage(IcmpType.ECHO_REPLY, 0, request.rest, request.body)


def icmp_error(
    type_: int,
    code: int,
    original: bytes | bytearray | memoryview,
    *,
    mtu: int = 0,
    pointer: int = 0,
    gateway: IPv4Address | None = None,
) -> IcmpMessage:
    """An error message quoting `original` (an IPv4 datagram): its header plus 64 bits of its data (RFC 792).

    `mtu` fills the next-hop MTU of destination unreachable code 4 (RFC 1191 section 4), `pointer`
    that of parameter problem, `gateway` that of redirect. Raises ValueError for a non-error type.
    """
    if type_ not in ICMP_ERROR_TYPES:
        raise ValueError(f"ICMP type {type_} is not an error message")
    original = octets("original datagram", original)
    ihl = original[0] & 0x0F if original else 5
    quote = original[: ihl * 4 + 8]
    if type_ == IcmpType.DEST_UNREACHABLE:
        rest = uint("next-hop MTU", mtu, 16)
    elif type_ == IcmpType.PARAMETER_PROBLEM:
        rest = uint("parameter problem pointer", pointer, 8) << 24
    elif type_ == IcmpType.REDIRECT:
        if gateway is None:
            raise ValueError("a redirect needs a gateway address")
        rest = int(gateway)
    else:
        rest = 0
    return IcmpMessage(type_, uint("ICMP code", code, 8), rest, quote)
