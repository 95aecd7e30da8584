"""Selective acknowledgment: the sender's scoreboard (RFC 6675) and the receiver's blocks (RFC 2018).

No I/O and no time: the TCB feeds the SACK blocks of arriving ACKs into a `Scoreboard` and asks it
which octets are SACKed, which are lost, how much is in the network (the "pipe") and where the next
hole is. Sequence numbers are 32-bit and compared modulo 2**32 from SND.UNA.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from stack.tcp.seq import seq_add, seq_diff, seq_gt, seq_lt

DUP_THRESH = 3  # RFC 6675 section 2 (and RFC 5681's three duplicate ACKs)
MAX_RANGES = 512  # a peer cannot make the scoreboard grow without bound (issue: memory per connection)

Range = tuple[int, int]  # [left, right): left edge, and the octet after the right edge (RFC 2018 section 3)


class Scoreboard:
    """The SACKed ranges above SND.UNA, disjoint and in sequence order (RFC 6675 section 3)."""

    def __init__(self) -> None:
        self.ranges: list[Range] = []

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def clear(self) -> None:
        self.ranges.clear()

    @property
    def sacked(self) -> int:
        """Octets SACKed and not yet cumulatively acknowledged."""
        return sum(seq_diff(r, left) for left, r in self.ranges)

    @property
    def highest(self) -> int | None:
        """The octet after the highest SACKed one (RFC 6675 "the highest octet covered by any SACK")."""
        return self.ranges[-1][1] if self.ranges else None

    def update(self, blocks: Iterable[Range], una: int, snd_max: int) -> int:
        """Take the blocks of one ACK whose cumulative point is `una`; return the octets newly SACKed.

        A block is believed only if it lies inside [una, snd_max] (RFC 2018 section 3: a block
        reports data the sender sent). One at or below `una` is a D-SACK (RFC 2883 section 4): it
        reports a duplicate, which changes nothing here, and is tolerated. Everything else (edges
        reversed, beyond what was sent) is ignored rather than believed.
        """
        before = self.sacked
        offsets = [(seq_diff(a, una), seq_diff(b, una)) for a, b in self.ranges]
        limit = seq_diff(snd_max, una)
        for left, right in blocks:
            lo, hi = seq_diff(left, una), seq_diff(right, una)
            if hi <= 0 or lo >= hi or hi > limit:
                continue  # D-SACK below una, an empty or reversed block, or a block past what we sent
            offsets.append((max(0, lo), hi))
        offsets.sort()
        merged: list[list[int]] = []
        for lo, hi in offsets:
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        if len(merged) > MAX_RANGES:
            del merged[MAX_RANGES:]  # the highest ranges are forgotten; a retransmission may repeat them
        self.ranges = [(seq_add(una, lo), seq_add(una, hi)) for lo, hi in merged]
        return max(0, self.sacked - before)

    def advance(self, una: int) -> None:
        """SND.UNA moved to `una`: forget what it covers."""
        kept: list[Range] = []
        for left, right in self.ranges:
            if seq_gt(right, una):
                kept.append((una if seq_lt(left, una) else left, right))
        self.ranges = kept

    def sacked_at(self, seq: int) -> int | None:
        """If octet `seq` is SACKed, the end of its range; else None."""
        for left, right in self.ranges:
            if seq_lt(seq, left):
                return None
            if seq_lt(seq, right):
                return right
        return None

    def next_sacked(self, seq: int) -> int | None:
        """The left edge of the first SACKed range above octet `seq`, if any."""
        for left, _ in self.ranges:
            if seq_gt(left, seq):
                return left
        return None

    def sacked_below(self, seq: int) -> int:
        """Octets SACKed below octet `seq` (and above SND.UNA)."""
        total = 0
        for left, right in self.ranges:
            if not seq_lt(left, seq):
                break
            total += seq_diff(right if seq_lt(right, seq) else seq, left)
        return total

    def lost_point(self, mss: int) -> int | None:
        """IsLost (RFC 6675 section 4): an unSACKed octet is lost when DupThresh discontiguous SACKed
        ranges, or more than (DupThresh - 1) * SMSS SACKed octets, lie above it. Those above-counts only
        grow downwards, so every unSACKed octet below the returned point is lost, none above it."""
        total = 0
        for count, (left, right) in enumerate(reversed(self.ranges), start=1):
            total += seq_diff(right, left)
            if count >= DUP_THRESH or total > (DUP_THRESH - 1) * mss:
                return left
        return None

    def is_lost(self, seq: int, mss: int) -> bool:
        point = self.lost_point(mss)
        return point is not None and seq_lt(seq, point) and self.sacked_at(seq) is None

    def holes(self, una: int, snd_max: int) -> Iterator[Range]:
        """The unSACKed ranges between SND.UNA and the highest octet sent."""
        start = una
        for left, right in self.ranges:
            if seq_lt(start, left):
                yield start, left
            start = right
        if seq_lt(start, snd_max):
            yield start, snd_max

    def pipe(self, una: int, snd_max: int, high_rxt: int, mss: int) -> int:
        """SetPipe (RFC 6675 section 4): octets believed to be in the network. Each unSACKed octet
        counts once if it is not lost, and once more if it was retransmitted (it lies below
        `high_rxt`, the end of the highest retransmission)."""
        lost = self.lost_point(mss)
        pipe = 0
        for left, right in self.holes(una, snd_max):
            size = seq_diff(right, left)
            if lost is not None and seq_lt(left, lost):
                pipe += max(0, size - seq_diff(right if seq_lt(right, lost) else lost, left))
            else:
                pipe += size
            if seq_lt(left, high_rxt):
                pipe += seq_diff(right if seq_lt(right, high_rxt) else high_rxt, left)
        return pipe

    def next_hole(self, start: int, below: int, una: int, snd_max: int, mss: int) -> Range | None:
        """The first unSACKed segment of up to `mss` octets at or above `start` that begins below
        `below` (NextSeg rules 1 and 3 of RFC 6675 section 4 differ only in `below`)."""
        for left, right in self.holes(una, snd_max):
            if not seq_lt(start, right):
                continue
            first = start if seq_gt(start, left) else left
            if not seq_lt(first, below):
                return None
            return first, min(seq_diff(right, first), mss)
        return None


def receiver_blocks(spans: Sequence[Range], recent: Sequence[int], room: int) -> tuple[Range, ...]:
    """The SACK blocks for an ACK (RFC 2018 section 4), from `spans`, the out-of-order queue's
    contiguous ranges in sequence order, and `recent`, the sequence numbers of the latest
    out-of-order arrivals, newest first.

    The first block holds the segment that triggered this ACK; then the most recently reported ones;
    then, while there is room, the others from the highest down.
    """
    chosen: list[Range] = []
    for seq in recent:
        for block in spans:
            if not seq_lt(seq, block[0]) and seq_lt(seq, block[1]):
                if block not in chosen:
                    chosen.append(block)
                break
    for block in reversed(spans):
        if len(chosen) >= room:
            break
        if block not in chosen:
            chosen.append(block)
    return tuple(chosen[:room])
