"""IPv4 fragmentation and reassembly (RFC 791 section 3.2, "Fragmentation and Reassembly").

No I/O and no clock: every call that needs the time takes `now` (seconds, never going backwards).

Reassembly
----------
A datagram being reassembled is keyed by (source, destination, protocol, identification), as RFC 791
says. Its fragments are kept as a sorted list of non-overlapping pieces, and the holes between them
are what is left to fill (the idea of RFC 815's hole descriptors, kept as the gaps of the sorted list
rather than as a list of its own). When the last fragment (More Fragments clear) has said how long the
datagram is and no hole is left, the datagram is handed back, with the header of the first fragment
(offset 0) and its fragment fields cleared.

Robust against a hostile network, as Linux's net/ipv4/ip_fragment.c is:

- Timeout: a datagram still incomplete `timeout` seconds (30 by default, Linux's ipfrag_time) after its
  first fragment arrived is dropped (RFC 791's reassembly timer, RFC 1122 section 3.3.2).
- Memory: the fragments held across all datagrams are bounded (`max_bytes`, 4 MiB by default, Linux's
  ipfrag_high_thresh), each fragment costing its data plus FRAGMENT_OVERHEAD, and so is the number of
  datagrams in progress (`max_datagrams`). A fragment that would exceed either bound is refused and
  counted, never stored; a datagram that loses a fragment that way can never complete, so it is
  dropped at once and its memory freed.
- Overlaps: a fragment that overlaps what is held is a duplicate, ignored, when every octet it carries
  is already held with the same value; any other overlap discards the whole datagram (RFC 5722 section 4
  for IPv6, as Linux does for IPv4 since the FragmentSmack fixes of 2018). Different data for the same
  octets is how an attacker slips a segment past a filter that saw the other copy.
- Tiny fragments (RFC 1858 section 3): for TCP, a fragment at offset 1 (8 octets: it could rewrite
  the flags of the TCP header) is dropped, and so is a first fragment too short to hold the first 20
  octets of the TCP header.
- Size: a datagram that would be longer than 65535 octets (the "ping of death") is dropped.
- Malformed: a fragment other than the last whose length is not a multiple of 8 (RFC 791), an empty
  fragment, a second "last" fragment giving another length or data beyond the end: the datagram is
  dropped (as Linux does).

Fragmentation
-------------
`fragment` cuts a datagram for a link of a given MTU (RFC 791 section 3.2, "An Example
Fragmentation Procedure"): every fragment but the last carries a multiple of 8 octets, and options
whose "copied" flag is clear go only in the first fragment.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from stack.wire.ipv4 import IPV4_HEADER_LEN, IpProto, IPv4Flags, IPv4Header

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DATAGRAMS",
    "DEFAULT_TIMEOUT",
    "FRAGMENT_OVERHEAD",
    "MAX_DATAGRAM",
    "Reassembler",
    "ReassemblyCounters",
    "copied_options",
    "fragment",
]

DEFAULT_TIMEOUT = 30.0  # seconds: Linux's net.ipv4.ipfrag_time
DEFAULT_MAX_BYTES = 4 << 20  # Linux's net.ipv4.ipfrag_high_thresh
DEFAULT_MAX_DATAGRAMS = 1024
FRAGMENT_OVERHEAD = 64  # octets charged per fragment held, beyond its data, so 8-octet fragments cost too
MAX_DATAGRAM = 0xFFFF  # the largest total length an IPv4 header can carry
TCP_MIN_HEADER = 20  # RFC 1858 section 3.2: the first fragment must hold this much of the TCP header

Key = tuple[IPv4Address, IPv4Address, int, int]  # (source, destination, protocol, identification)


@dataclass
class ReassemblyCounters:
    """What reassembly did, since the Reassembler was made. Fragment counts and datagram counts are
    kept apart: each field says which it counts."""

    fragments: int = 0  # fragments offered to add()
    reassembled: int = 0  # datagrams completed and handed back
    timed_out: int = 0  # datagrams dropped incomplete after the timeout
    overlaps: int = 0  # datagrams discarded for a fragment overlapping others with different data
    duplicates: int = 0  # fragments ignored: every octet already held, the same
    dropped: int = 0  # fragments refused, or thrown away with their datagram, for any reason below
    dropped_full: int = 0  # fragments refused because the memory or datagram bound was reached
    tiny: int = 0  # fragments dropped by the tiny-fragment rules of RFC 1858
    too_long: int = 0  # datagrams dropped for a reassembled length over 65535
    malformed: int = 0  # datagrams dropped for an inconsistent fragment (length, end, empty)

    def snapshot(self) -> ReassemblyCounters:
        """A copy that later reassembly does not change."""
        return dataclasses.replace(self)


@dataclass
class _Pending:
    """One datagram being reassembled."""

    deadline: float
    starts: list[int] = field(default_factory=list)  # sorted starts (in octets) of the pieces held
    pieces: dict[int, bytes] = field(default_factory=dict)  # start -> data
    first: IPv4Header | None = None  # the header of the fragment at offset 0, once it has come
    length: int | None = None  # the payload length, once the last fragment has come
    held: int = 0  # octets of data held
    cost: int = 0  # what this datagram is charged against the memory bound

    def complete(self) -> bool:
        return self.first is not None and self.length is not None and self.held == self.length


class Reassembler:
    """IPv4 reassembly for one host (see the module's docstring for the rules).

    Not thread-safe: one thread (the stack's receive thread) feeds it.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_datagrams: int = DEFAULT_MAX_DATAGRAMS,
        counters: ReassemblyCounters | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"reassembly timeout {timeout} must be positive")
        if max_bytes <= 0 or max_datagrams <= 0:
            raise ValueError("reassembly bounds must be positive")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_datagrams = max_datagrams
        self.counters = counters if counters is not None else ReassemblyCounters()
        # Insertion order is deadline order, since `now` never goes back and the timeout is fixed.
        self._pending: dict[Key, _Pending] = {}
        self._memory = 0

    # ------------------------------------------------------------------ observers

    @property
    def in_progress(self) -> int:
        """Datagrams being reassembled."""
        return len(self._pending)

    @property
    def memory(self) -> int:
        """Octets charged against `max_bytes` (data held plus FRAGMENT_OVERHEAD per fragment)."""
        return self._memory

    def next_deadline(self) -> float | None:
        """When the oldest incomplete datagram times out, or None when there is none."""
        for pending in self._pending.values():
            return pending.deadline
        return None

    # ------------------------------------------------------------------ inputs

    def expire(self, now: float) -> int:
        """Drop every datagram whose timeout has passed; returns how many were dropped."""
        dropped = 0
        while self._pending:
            key, pending = next(iter(self._pending.items()))
            if pending.deadline > now:
                break
            self._drop(key)
            dropped += 1
        self.counters.timed_out += dropped
        return dropped

    def add(
        self, header: IPv4Header, payload: bytes | bytearray | memoryview, now: float
    ) -> tuple[IPv4Header, bytes] | None:
        """Take one fragment; the whole datagram (header, payload) when this fragment completes it.

        The header returned is the first fragment's, with More Fragments and the offset cleared and
        the total length of the whole datagram (its checksum is not recomputed: build_ipv4 does that).
        A datagram that is not a fragment is handed straight back. `payload` is copied.
        """
        if not header.is_fragment:
            return header, bytes(payload)
        self.expire(now)
        c = self.counters
        c.fragments += 1
        key: Key = (header.src, header.dst, header.protocol, header.identification)
        chunk = bytes(payload)
        start = header.fragment_offset * 8
        size = len(chunk)
        end = start + size
        last = not header.mf
        pending = self._pending.get(key)

        # RFC 1858 section 3.2: nothing may land where it could rewrite the TCP header's flags, and the
        # first fragment must hold the TCP header's first 20 octets (ports, sequence numbers, flags).
        if header.protocol == IpProto.TCP and (
            header.fragment_offset == 1 or (start == 0 and not last and size < TCP_MIN_HEADER)
        ):
            c.tiny += 1
            c.dropped += 1
            return None
        if end + IPV4_HEADER_LEN > MAX_DATAGRAM:
            c.too_long += 1
            self._drop(key, this=True)
            return None
        if size == 0 or (not last and size % 8):
            c.malformed += 1
            self._drop(key, this=True)
            return None

        if pending is not None:
            verdict = self._check_overlap(pending, start, chunk)
            if verdict == "duplicate":
                c.duplicates += 1
                return None
            if verdict == "overlap":
                c.overlaps += 1
                self._drop(key, this=True)
                return None
            if (last and pending.length is not None and pending.length != end) or (
                pending.length is not None and end > pending.length
            ):
                c.malformed += 1
                self._drop(key, this=True)
                return None
            if last and pending.starts:
                top = pending.starts[-1]
                if top + len(pending.pieces[top]) > end:  # data held beyond the end this fragment gives
                    c.malformed += 1
                    self._drop(key, this=True)
                    return None

        cost = size + FRAGMENT_OVERHEAD
        crowded = pending is None and len(self._pending) >= self.max_datagrams
        if self._memory + cost > self.max_bytes or crowded:
            c.dropped_full += 1
            if pending is not None:
                self._drop(key)  # it can never complete without this fragment
            c.dropped += 1
            return None

        if pending is None:
            pending = self._pending[key] = _Pending(deadline=now + self.timeout)
        bisect.insort(pending.starts, start)
        pending.pieces[start] = chunk
        pending.held += size
        pending.cost += cost
        self._memory += cost
        if start == 0:
            pending.first = header
        if last:
            pending.length = end
        if pending.first is not None and pending.first.header_len + (pending.length or 0) > MAX_DATAGRAM:
            c.too_long += 1
            self._drop(key)
            return None
        if not pending.complete():
            return None

        self._remove(key)
        c.reassembled += 1
        data = b"".join(pending.pieces[s] for s in pending.starts)
        first = pending.first
        assert first is not None and len(data) == pending.length
        whole = dataclasses.replace(
            first,
            flags=first.flags & ~IPv4Flags.MF,
            fragment_offset=0,
            total_length=first.header_len + len(data),
            checksum=0,
        )
        return whole, data

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_overlap(pending: _Pending, start: int, data: bytes) -> str | None:
        """None when [start, start + len(data)) touches nothing held; "duplicate" when every octet of
        it is held with the same value; "overlap" otherwise."""
        end = start + len(data)
        starts = pending.starts
        i = bisect.bisect_right(starts, start) - 1  # the last piece starting at or before `start`
        if i < 0:
            i = 0
        covered = start
        touched = False
        for j in range(i, len(starts)):
            s = starts[j]
            if s >= end:
                break
            piece = pending.pieces[s]
            e = s + len(piece)
            if e <= start:
                continue
            touched = True
            if s > covered:
                return "overlap"  # a hole inside the new fragment: it adds data as well as repeating some
            lo, hi = max(s, start), min(e, end)
            if piece[lo - s : hi - s] != data[lo - start : hi - start]:
                return "overlap"
            covered = hi
        if not touched:
            return None
        return "duplicate" if covered >= end else "overlap"

    def _remove(self, key: Key) -> _Pending | None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            self._memory -= pending.cost
        return pending

    def _drop(self, key: Key, *, this: bool = False) -> None:
        """Throw a datagram away with every fragment it holds (and the one being added, with `this`)."""
        pending = self._remove(key)
        self.counters.dropped += (len(pending.pieces) if pending is not None else 0) + this


def copied_options(options: bytes) -> bytes:
    """The IP options to repeat in every fragment after the first: those whose type has the "copied"
    flag set (RFC 791 section 3.1, "Options"), padded to a 32-bit boundary."""
    out = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # End of Option List
            break
        if kind == 1:  # No Operation
            i += 1
            continue
        if i + 1 >= len(options):
            break
        length = options[i + 1]
        if length < 2 or i + length > len(options):
            break
        if kind & 0x80:
            out += options[i : i + length]
        i += length
    out += bytes(-len(out) % 4)
    return bytes(out)


def fragment(header: IPv4Header, payload: bytes, mtu: int) -> list[tuple[IPv4Header, bytes]]:
    """Cut a datagram into fragments that each fit in `mtu` octets (RFC 791 section 3.2).

    Returns (header, data) pairs for build_ipv4, in order; one pair, unchanged, when the datagram fits.
    Raises ValueError when it must be cut but Don't Fragment is set, or the MTU cannot carry 8 octets.
    """
    options = header.options + bytes(-len(header.options) % 4)
    first_len = IPV4_HEADER_LEN + len(options)
    if first_len + len(payload) <= mtu:
        return [(header, payload)]
    if header.df:
        raise ValueError(f"a datagram of {first_len + len(payload)} octets with DF set exceeds the MTU {mtu}")
    later_options = copied_options(options)
    out: list[tuple[IPv4Header, bytes]] = []
    base = header.fragment_offset * 8  # a fragment may be fragmented again
    pos = 0
    while pos < len(payload):
        opts = options if pos == 0 else later_options
        room = (mtu - IPV4_HEADER_LEN - len(opts)) // 8 * 8
        if room <= 0:
            raise ValueError(f"an MTU of {mtu} cannot carry a fragment")
        piece = payload[pos : pos + room]
        more = pos + len(piece) < len(payload) or header.mf
        flags = (header.flags & ~IPv4Flags.MF) | (IPv4Flags.MF if more else IPv4Flags(0))
        out.append(
            (
                dataclasses.replace(header, options=opts, flags=flags, fragment_offset=(base + pos) // 8),
                piece,
            )
        )
        pos += len(piece)
    return out
