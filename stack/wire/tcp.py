"""The TCP header and its options (RFC 9293 section 3.1, RFC 7323, RFC 2018).

Header layout (RFC 9293 section 3.1, figure 1), 20 octets without options:

    source port (16) | destination port (16)
    sequence number (32)
    acknowledgment number (32)
    data offset (4) | reserved (4) | CWR ECE URG ACK PSH RST SYN FIN (8) | window (16)
    checksum (16) | urgent pointer (16)
    options (0..40 octets, padded to a 32-bit boundary) | data

`parse_tcp` and `build_tcp` are pure functions; `TcpSegment` and `TcpOptions` are immutable.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Final

from stack.wire._fields import octets, uint
from stack.wire.checksum import fold16, internet_checksum, pseudo_header_sum, raw_sum
from stack.wire.errors import ParseError

__all__ = [
    "MAX_OPTION_SPACE",
    "NO_OPTIONS",
    "TCP_HEADER_LEN",
    "Flags",
    "OptionKind",
    "TcpOptions",
    "TcpSegment",
    "build_options",
    "build_tcp",
    "parse_options",
    "parse_tcp",
    "split_segment",
    "tcp_checksum_ok",
]

PROTO_TCP = 6
TCP_HEADER_LEN = 20
MAX_OPTION_SPACE = 40  # data offset is 4 bits: at most 15 words, 5 of them the fixed header


class Flags:
    """The control bits, in header bit order (RFC 9293 section 3.1, RFC 3168 for CWR/ECE).

    Plain ints, combined with | and tested with &: every segment is tested a dozen times on its way
    through the TCB, and an enum.Flag operation is a Python-level call each time."""

    FIN: Final = 0x01
    SYN: Final = 0x02
    RST: Final = 0x04
    PSH: Final = 0x08
    ACK: Final = 0x10
    URG: Final = 0x20
    ECE: Final = 0x40
    CWR: Final = 0x80

    NAMES: Final = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")

    @staticmethod
    def names(bits: int) -> str:
        """The bits set, by name, joined with | ("SYN|ACK"); "0" for none."""
        return "|".join(n for i, n in enumerate(Flags.NAMES) if bits >> i & 1) or "0"


class OptionKind(enum.IntEnum):
    """Option kinds this codec decodes (RFC 9293 section 3.2, RFC 7323, RFC 2018)."""

    EOL = 0  # End of Option List, RFC 9293 section 3.2
    NOP = 1  # No-Operation, RFC 9293 section 3.2
    MSS = 2  # Maximum Segment Size, length 4, RFC 9293 section 3.2
    WSCALE = 3  # Window Scale, length 3, RFC 7323 section 2.2
    SACK_PERMITTED = 4  # length 2, RFC 2018 section 2
    SACK = 5  # length 2 + 8n, RFC 2018 section 3
    TIMESTAMPS = 8  # length 10, RFC 7323 section 3.2


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
    flags: int = 0  # the control bits (Flags)
    window: int = 0
    urgent: int = 0
    options: TcpOptions = field(default=NO_OPTIONS)
    payload: bytes = b""

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload octets plus one each for SYN and FIN (RFC 9293 section 3.3.1)."""
        return len(self.payload) + (1 if self.flags & Flags.SYN else 0) + (1 if self.flags & Flags.FIN else 0)


_HEADER = struct.Struct("!HHIIBBHHH")
_CHECKSUM = struct.Struct("!H")
_U16 = struct.Struct("!H")
_TS = struct.Struct("!II")



# --- options -----------------------------------------------------------------------------------------------


def parse_options(buf: bytes | bytearray | memoryview) -> TcpOptions:
    """Decode the option space of a TCP header (the octets between offset 20 and the data offset).

    RFC 9293 section 3.2 and 3.1 "Options":
    - kind 0 (EOL) ends the list; what follows is padding and is not read;
    - kind 1 (NOP) is one octet, skipped;
    - every other kind has a length octet counting kind and length octets.
    MUST-64: options may begin on any octet; they are read octet by octet, never by word.
    MUST-6: an option of a kind not known here is skipped by its length and kept in `unknown`.
    A known kind with a length it cannot have (e.g. MSS with length 5) is skipped by its length
    and ignored. Several options of the same kind: the last one wins.
    MUST-7: an illegal length (0 or 1, or one running past the option space, or a kind octet with
    no room for its length octet) never raises: parsing stops there, and the result carries what
    was decoded before it with `malformed=True`. The index strictly increases, so no input loops.
    """
    data = bytes(buf)
    end = len(data)
    mss: int | None = None
    wscale: int | None = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None
    unknown: list[tuple[int, bytes]] = []
    malformed = False
    i = 0
    while i < end:
        kind = data[i]
        if kind == 0:  # EOL, RFC 9293 section 3.2
            break
        if kind == 1:  # NOP, RFC 9293 section 3.2
            i += 1
            continue
        if i + 1 >= end:  # no room for the length octet (MUST-7)
            malformed = True
            break
        length = data[i + 1]
        if length < 2 or i + length > end:  # illegal length (MUST-7)
            malformed = True
            break
        if kind == 2:  # MSS, RFC 9293 section 3.2: kind 2, length 4, 16-bit MSS
            if length == 4:
                mss = _U16.unpack_from(data, i + 2)[0]
        elif kind == 3:  # Window Scale, RFC 7323 section 2.2: kind 3, length 3, shift.cnt
            if length == 3:
                wscale = data[i + 2]
        elif kind == 4:  # SACK-permitted, RFC 2018 section 2: kind 4, length 2
            if length == 2:
                sack_permitted = True
        elif kind == 5:  # SACK, RFC 2018 section 3: kind 5, length 2 + 8n, n pairs of 32-bit edges
            if length >= 10 and (length - 2) % 8 == 0:
                edges = struct.unpack_from(f"!{(length - 2) // 4}I", data, i + 2)
                sack_blocks = tuple(zip(edges[0::2], edges[1::2], strict=True))
        elif kind == 8:  # Timestamps, RFC 7323 section 3.2: kind 8, length 10, TSval, TSecr
            if length == 10:
                timestamps = _TS.unpack_from(data, i + 2)
        else:  # MUST-6: unknown kind, skipped by its length
            unknown.append((kind, data[i + 2 : i + length]))
        i += length
    return TcpOptions(
        mss=mss,
        wscale=wscale,
        sack_permitted=sack_permitted,
        sack_blocks=sack_blocks,
        timestamps=timestamps,
        unknown=tuple(unknown),
        malformed=malformed,
    )


def _timestamps_only(opts: TcpOptions) -> bytes:
    """The options of a segment that carries timestamps alone (most segments of a connection that
    negotiated them), as build_options writes them, without its checks; b"" for any other options."""
    ts = opts.timestamps
    if ts is None or opts.sack_blocks or opts.mss is not None or opts.wscale is not None or opts.unknown:
        return b""
    if opts.sack_permitted or not (0 <= ts[0] <= 0xFFFFFFFF and 0 <= ts[1] <= 0xFFFFFFFF):
        return b""
    return b"\x01\x01\x08\x0a" + _TS.pack(ts[0], ts[1])


def build_options(opts: TcpOptions) -> bytes:
    """Encode options in Linux's order and layout, zero-padded to a 32-bit boundary.

    Layout (as Linux's tcp_options_write, so a SYN comes out byte for byte as Linux's):
        MSS                     02 04 mm mm
        SACK-permitted + TS     04 02 08 0a TSval TSecr      (TS alone: 01 01 08 0a TSval TSecr)
        SACK-permitted alone    01 01 04 02
        window scale            01 03 03 ss
        SACK blocks             01 01 05 ll left right ...
        unknown options         kind len data, in order, unaligned
    then zero octets up to a multiple of 4 (MUST-69: padding is zeros; a zero is also EOL).
    `malformed` is not encodable and is ignored. Entries of `unknown` are written verbatim, so a
    known kind placed there (e.g. a bad-length MSS) is sent as given.
    Raises ValueError naming the field when a value is out of range or the options exceed 40 octets.
    """
    parts: list[bytes] = []
    if opts.mss is not None:
        parts.append(struct.pack("!BBH", 2, 4, uint("MSS option", opts.mss, 16)))
    if opts.timestamps is not None:
        try:
            tsval, tsecr = opts.timestamps
        except (TypeError, ValueError):
            raise ValueError("timestamps must be a (TSval, TSecr) pair") from None
        lead = b"\x04\x02" if opts.sack_permitted else b"\x01\x01"
        parts.append(lead + b"\x08\x0a" + _TS.pack(uint("TSval", tsval, 32), uint("TSecr", tsecr, 32)))
    elif opts.sack_permitted:
        parts.append(b"\x01\x01\x04\x02")
    if opts.wscale is not None:
        parts.append(b"\x01\x03\x03" + bytes((uint("window scale option", opts.wscale, 8),)))
    if opts.sack_blocks:
        blocks = []
        for n, block in enumerate(opts.sack_blocks):
            try:
                left, right = block
            except (TypeError, ValueError):
                raise ValueError(f"SACK block {n} must be a (left, right) pair") from None
            blocks.append(_TS.pack(uint(f"SACK block {n} left edge", left, 32),
                                   uint(f"SACK block {n} right edge", right, 32)))
        parts.append(bytes((1, 1, 5, 2 + 8 * len(blocks))) + b"".join(blocks))
    for kind, data in opts.unknown:
        kind = uint("unknown option kind", kind, 8)
        if kind < 2:
            raise ValueError(f"unknown option kind {kind} is EOL/NOP, which carry no length or data")
        payload = octets(f"option {kind} data", data)
        if len(payload) > MAX_OPTION_SPACE - 2:
            raise ValueError(f"option {kind} data of {len(payload)} octets exceeds the option space")
        parts.append(bytes((kind, 2 + len(payload))) + payload)
    out = b"".join(parts)
    if len(out) > MAX_OPTION_SPACE:
        raise ValueError(f"TCP options take {len(out)} octets, more than the {MAX_OPTION_SPACE} available")
    return out + bytes(-len(out) % 4)


# --- segments ----------------------------------------------------------------------------------------------


def parse_tcp(
    data: bytes | bytearray | memoryview,
    src: IPv4Address | None = None,
    dst: IPv4Address | None = None,
) -> TcpSegment:
    """Decode one TCP segment (header, options and data) per RFC 9293 section 3.1.

    With `src` and `dst` (the IPv4 addresses of the carrying datagram) the checksum is verified
    over the pseudo-header, header and data (RFC 9293 section 3.1, MUST-2/MUST-3); with both None
    it is not (for packets whose checksum the NIC has not filled in yet). The payload is copied
    into bytes. Raises ParseError naming the field for a truncated header, a data offset below 5
    or past the end, or a bad checksum. Malformed options never raise (see `parse_options`).
    """
    n = len(data)
    if n < TCP_HEADER_LEN:
        raise ParseError(f"TCP header truncated: {n} octets, need at least {TCP_HEADER_LEN}")
    src_port, dst_port, seq, ack, offset_byte, flags, window, checksum, urgent = _HEADER.unpack_from(data)
    data_offset = offset_byte >> 4
    header_len = data_offset * 4
    if data_offset < 5:
        raise ParseError(f"TCP data offset {data_offset} is less than 5")
    if header_len > n:
        raise ParseError(
            f"TCP data offset {data_offset} ({header_len} octets) runs past the segment ({n} octets)"
        )
    if src is not None or dst is not None:
        if src is None or dst is None:
            raise ValueError("parse_tcp needs both src and dst to verify the checksum, or neither")
        if internet_checksum(data, pseudo_header_sum(src, dst, PROTO_TCP, n)) != 0:
            raise ParseError(f"bad TCP checksum 0x{checksum:04x}")
    options = NO_OPTIONS
    if header_len > TCP_HEADER_LEN:
        options = parse_options(memoryview(data)[TCP_HEADER_LEN:header_len])
    return TcpSegment(
        src_port, dst_port, seq, ack, flags, window, urgent, options, bytes(data[header_len:])
    )


def build_tcp(seg: TcpSegment, src: IPv4Address, dst: IPv4Address, *, offload: bool = False) -> bytes:
    """Encode `seg` as a TCP segment from `src` to `dst`, checksum filled in (MUST-2).

    The data offset is computed from the options, which are padded with zeros to a 32-bit
    boundary (MUST-69). The checksum covers the pseudo-header, header and data (RFC 9293 section 3.1).
    With `offload`, the checksum field holds only the folded, uncomplemented sum of the pseudo-header
    (of the whole segment's length), for a link that completes it (Linux's CHECKSUM_PARTIAL, which a
    virtio_net_hdr with NEEDS_CSUM asks for); the data is then not summed in Python at all.
    Raises ValueError naming the field when a value does not fit its header field.
    """
    payload = seg.payload if type(seg.payload) is bytes else octets("payload", seg.payload)
    opts = seg.options
    options = b"" if opts is NO_OPTIONS else _timestamps_only(opts) or build_options(opts)
    header_len = TCP_HEADER_LEN + len(options)
    length = header_len + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"TCP segment of {length} octets does not fit the 16-bit pseudo-header length")
    fields = (seg.src_port, seg.dst_port, seg.seq, seg.ack, (header_len // 4) << 4, seg.flags, seg.window)
    try:
        header = _HEADER.pack(*fields, 0, seg.urgent) + options
    except struct.error:
        # Something does not fit its field: the checks name it (this path is never the usual one).
        uint("source port", seg.src_port, 16)
        uint("destination port", seg.dst_port, 16)
        uint("sequence number", seg.seq, 32)
        uint("acknowledgment number", seg.ack, 32)
        uint("flags", seg.flags, 8)
        uint("window", seg.window, 16)
        uint("urgent pointer", seg.urgent, 16)
        raise
    if offload:
        checksum = fold16(pseudo_header_sum(src, dst, PROTO_TCP, length))
    else:
        # The header has even length, so the payload's words stay aligned when summed apart (RFC 1071 2(C)).
        total = raw_sum(header) + raw_sum(payload) + pseudo_header_sum(src, dst, PROTO_TCP, length)
        checksum = ~fold16(total) & 0xFFFF
    return header[:16] + _CHECKSUM.pack(checksum) + header[18:] + payload


def split_segment(seg: TcpSegment, size: int) -> list[TcpSegment]:
    """Cut a segment carrying more than `size` octets of data into segments of `size` (the last may be
    shorter), as Linux's GSO cuts a large one (tcp_gso_segment): the same header and options on each,
    the sequence number advancing, CWR on the first only, PSH and FIN on the last only. A segment that
    fits is returned as it is. Urgent data is never sent this way (the pointer would need moving)."""
    data = seg.payload
    if len(data) <= size:
        return [seg]
    if size <= 0:
        raise ValueError(f"segment size {size} must be more than zero")
    last = len(data) - 1 - (len(data) - 1) % size
    first_flags = seg.flags & ~(Flags.PSH | Flags.FIN)
    pieces = []
    for at in range(0, len(data), size):
        flags = seg.flags if at == last else first_flags
        if at:
            flags &= ~Flags.CWR
        seq = (seg.seq + at) & 0xFFFFFFFF
        pieces.append(
            TcpSegment(seg.src_port, seg.dst_port, seq, seg.ack, flags, seg.window, seg.urgent, seg.options,
                       data[at : at + size])
        )
    return pieces


def tcp_checksum_ok(data: bytes | bytearray | memoryview, src: IPv4Address, dst: IPv4Address) -> bool:
    """Whether the checksum of the TCP segment `data` from `src` to `dst` is correct (RFC 9293 3.1)."""
    return internet_checksum(data, pseudo_header_sum(src, dst, PROTO_TCP, len(data))) == 0
