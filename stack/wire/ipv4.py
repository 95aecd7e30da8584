"""The IPv4 header (RFC 791 section 3.1).

    version (4) | IHL (4) | DSCP (6) | ECN (2) | total length (16)
    identification (16) | flags (3) | fragment offset (13)
    time to live (8) | protocol (8) | header checksum (16)
    source address (32)
    destination address (32)
    options (0..40 octets, padded to a 32-bit boundary)

The type-of-service octet of RFC 791 is read as DSCP (RFC 2474) and ECN (RFC 3168).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

from stack.wire._fields import octets, uint
from stack.wire.checksum import internet_checksum
from stack.wire.errors import ParseError

__all__ = [
    "IPV4_HEADER_LEN",
    "PROTO_ICMP",
    "PROTO_TCP",
    "IPv4Flags",
    "IPv4Header",
    "IpProto",
    "build_ipv4",
    "parse_ipv4",
    "recorded_route",
    "source_route_option",
]

IPV4_HEADER_LEN = 20
MAX_IPV4_OPTIONS = 40


class IpProto(enum.IntEnum):
    """Protocol numbers (IANA "Assigned Internet Protocol Numbers", RFC 791 section 3.1 "Protocol")."""

    ICMP = 1
    TCP = 6
    UDP = 17


PROTO_ICMP = IpProto.ICMP
PROTO_TCP = IpProto.TCP


class IPv4Flags(enum.IntFlag):
    """The 3-bit flags field (RFC 791 section 3.1): bit 0 reserved (must be zero), DF, MF."""

    MF = 0x1  # more fragments
    DF = 0x2  # don't fragment
    RESERVED = 0x4


@dataclass(frozen=True, slots=True, kw_only=True)
class IPv4Header:
    """An IPv4 header. Keyword-only; `src`, `dst` and `protocol` are required.

    `build_ipv4` computes `ihl`, `total_length` and `checksum` itself and ignores the values here;
    `parse_ipv4` fills them in from the wire. `options` are the raw option octets (not decoded).
    """

    src: IPv4Address
    dst: IPv4Address
    protocol: int
    ttl: int = 64
    dscp: int = 0
    ecn: int = 0
    identification: int = 0
    flags: IPv4Flags = IPv4Flags(0)  # noqa: RUF009 (an immutable value)
    fragment_offset: int = 0  # in units of 8 octets
    options: bytes = b""
    ihl: int = 5  # header length in 32-bit words
    total_length: int = 0
    checksum: int = 0

    @property
    def version(self) -> int:
        """Always 4: only IPv4 is parsed or built."""
        return 4

    @property
    def header_len(self) -> int:
        """The header length in octets (IHL * 4)."""
        return self.ihl * 4

    @property
    def df(self) -> bool:
        """Don't Fragment (RFC 791 section 3.1)."""
        return bool(self.flags & IPv4Flags.DF)

    @property
    def mf(self) -> bool:
        """More Fragments (RFC 791 section 3.1)."""
        return bool(self.flags & IPv4Flags.MF)

    @property
    def is_fragment(self) -> bool:
        """Whether this datagram is a fragment (MF set or a non-zero offset); no reassembly is done here."""
        return self.mf or self.fragment_offset != 0


_HEADER = struct.Struct("!BBHHHBBH4s4s")
_FAST = struct.Struct("!BBHHHBBHII")  # the same, the addresses as 32-bit ints
_IP_FLAGS = tuple(IPv4Flags(i) for i in range(8))


def parse_ipv4(
    data: bytes | bytearray | memoryview,
    *,
    verify_checksum: bool = True,
    truncated_ok: bool = False,
) -> tuple[IPv4Header, memoryview]:
    """Decode an IPv4 datagram into its header and a zero-copy memoryview of its payload.

    Checks (RFC 791 section 3.1): version 4; IHL at least 5 and within the buffer; total length
    at least the header length and within the buffer; the header checksum (RFC 791 "Header
    Checksum", computed as RFC 1071). Octets beyond `total_length` (link-layer padding, e.g. of a
    short Ethernet frame) are cut off. Options are not interpreted, only kept as raw octets.

    The payload view refers to `data`: copy it if `data` is a buffer that will be reused.
    `truncated_ok=True` accepts a buffer shorter than `total_length` (the quoted datagram inside an
    ICMP error, RFC 792); the payload is then whatever is present.
    Raises ParseError naming the field.
    """
    n = len(data)
    if n < IPV4_HEADER_LEN:
        raise ParseError(f"IPv4 header truncated: {n} octets, need at least {IPV4_HEADER_LEN}")
    ver_ihl, tos, total_length, ident, flags_frag, ttl, proto, checksum, src, dst = _HEADER.unpack_from(data)
    version = ver_ihl >> 4
    if version != 4:
        raise ParseError(f"IPv4 version is {version}, not 4")
    ihl = ver_ihl & 0x0F
    header_len = ihl * 4
    if ihl < 5:
        raise ParseError(f"IPv4 IHL {ihl} is less than 5")
    if header_len > n:
        raise ParseError(f"IPv4 IHL {ihl} ({header_len} octets) runs past the buffer ({n} octets)")
    if total_length < header_len:
        raise ParseError(f"IPv4 total length {total_length} is less than the header length {header_len}")
    if total_length > n and not truncated_ok:
        raise ParseError(f"IPv4 total length {total_length} runs past the buffer ({n} octets)")
    view = memoryview(data)
    if verify_checksum and internet_checksum(view[:header_len]) != 0:
        raise ParseError(f"bad IPv4 header checksum 0x{checksum:04x}")
    header = IPv4Header(
        src=IPv4Address(src),
        dst=IPv4Address(dst),
        protocol=proto,
        ttl=ttl,
        dscp=tos >> 2,
        ecn=tos & 0x03,
        identification=ident,
        flags=_IP_FLAGS[flags_frag >> 13],
        fragment_offset=flags_frag & 0x1FFF,
        options=bytes(view[IPV4_HEADER_LEN:header_len]),
        ihl=ihl,
        total_length=total_length,
        checksum=checksum,
    )
    return header, view[header_len:total_length]


def build_ipv4(header: IPv4Header, payload: bytes | bytearray | memoryview) -> bytes:
    """Encode an IPv4 datagram: `header` followed by `payload`.

    The options are padded with zero octets (End of Option List, RFC 791 section 3.1) to a 32-bit
    boundary; IHL, total length and the header checksum are computed here, whatever `header` holds.
    Raises ValueError naming the field when a value does not fit.
    """
    options = octets("IPv4 options", header.options)
    options += bytes(-len(options) % 4)
    if len(options) > MAX_IPV4_OPTIONS:
        raise ValueError(f"IPv4 options take {len(options)} octets, more than {MAX_IPV4_OPTIONS}")
    body = octets("payload", payload)
    header_len = IPV4_HEADER_LEN + len(options)
    total_length = header_len + len(body)
    if total_length > 0xFFFF:
        raise ValueError(f"IPv4 total length {total_length} exceeds 65535")
    if not isinstance(header.src, IPv4Address) or not isinstance(header.dst, IPv4Address):
        raise ValueError("IPv4 src and dst must be ipaddress.IPv4Address values")
    dscp, ecn, flags, offset = header.dscp, header.ecn, header.flags, header.fragment_offset
    if 0 <= dscp < 64 and 0 <= ecn < 4 and 0 <= flags < 8 and 0 <= offset < 8192:
        # Every sub-field fits: one pack, whose own range checks cover the whole fields (the path of
        # every datagram the stack sends; a value out of range takes the checks below, which name it).
        try:
            fields = _FAST.pack(
                0x40 | (header_len // 4), dscp << 2 | ecn, total_length, header.identification,
                flags << 13 | offset, header.ttl, header.protocol, 0, int(header.src), int(header.dst),
            ) + options
        except struct.error:
            pass
        else:
            return fields[:10] + internet_checksum(fields).to_bytes(2, "big") + fields[12:] + body
    fields = _HEADER.pack(
        0x40 | (header_len // 4),
        (uint("DSCP", header.dscp, 6) << 2) | uint("ECN", header.ecn, 2),
        total_length,
        uint("identification", header.identification, 16),
        (uint("IPv4 flags", header.flags, 3) << 13) | uint("fragment offset", header.fragment_offset, 13),
        uint("TTL", header.ttl, 8),
        uint("protocol", header.protocol, 8),
        0,
        header.src.packed,
        header.dst.packed,
    ) + options
    checksum = internet_checksum(fields)
    return fields[:10] + checksum.to_bytes(2, "big") + fields[12:] + body


# --- source routes (RFC 791 section 3.1, RFC 1122 section 3.2.1.8) ---------------------------------------

LSRR = 131  # loose source and record route
SSRR = 137  # strict source and record route


def source_route_option(route: tuple[IPv4Address, ...] | list[IPv4Address]) -> bytes:
    """A loose source route option listing `route` (the hops after the first one, ending with the final
    destination), its pointer at the first entry. At most 9 addresses fit in 40 octets of options."""
    if not 1 <= len(route) <= 9:
        raise ValueError(f"a source route holds 1 to 9 addresses, not {len(route)}")
    data = b"".join(hop.packed for hop in route)
    return bytes((LSRR, 3 + len(data), 4)) + data


def recorded_route(options: bytes) -> tuple[IPv4Address, ...] | None:
    """The addresses a datagram recorded on its way, if it carries a completed (loose or strict) source
    route: the pointer is past the end, so every entry was replaced by a hop's address. None when it
    carries no such option or a malformed one."""
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # End of Option List
            return None
        if kind == 1:  # No Operation
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2 or i + options[i + 1] > len(options):
            return None
        length = options[i + 1]
        if kind in (LSRR, SSRR) and length >= 3:
            pointer = options[i + 2]
            data = options[i + 3 : i + length]
            if pointer <= length or len(data) % 4:
                return None  # not completed: the datagram is not at its final destination
            return tuple(IPv4Address(data[k : k + 4]) for k in range(0, len(data), 4))
        i += length
    return None
