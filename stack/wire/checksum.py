"""The Internet checksum (RFC 1071) and the TCP pseudo-header (RFC 9293 section 3.1).

RFC 1071 section 1: the checksum is the 16-bit one's complement of the one's complement sum of
the 16-bit words of the data, an odd final octet being padded on the right with a zero octet.

No Python loop runs per byte or per word. The whole buffer is read as one big-endian integer:
a buffer of words w_k, ..., w_1, w_0 has the value sum(w_i * 65536**i), and since 65536 == 1
(mod 65535) that value is congruent, modulo 65535, to the plain sum of its words. The one's
complement sum with end-around carry (RFC 1071 section 2(B)) is that sum reduced modulo 65535,
except that a non-zero sum which reduces to 0 is written 0xFFFF ("negative zero"); it is 0 only
when every word is zero. `fold16` encodes exactly that edge.
"""

from __future__ import annotations

from ipaddress import IPv4Address

__all__ = [
    "fold16",
    "internet_checksum",
    "ones_complement_sum",
    "pseudo_header_sum",
    "raw_sum",
]



def raw_sum(data: bytes | bytearray | memoryview) -> int:
    """An unfolded partial sum of `data` as 16-bit big-endian words (odd tail padded with zero).

    The result is congruent, modulo 65535, to the sum of the words, and is 0 only when every
    octet is zero. Partial sums of pieces at even offsets may be added together (RFC 1071
    section 2(C): the sum may be computed in parts); a piece of odd length must be the last.
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        # RFC 1071 section 4.1: the odd octet is the high half of a final word padded with zero.
        value <<= 8
    return value


def fold16(total: int) -> int:
    """Fold an unfolded partial sum into the 16-bit one's complement sum (not complemented).

    Returns 0 only for a total of 0; any other multiple of 65535 gives 0xFFFF, as the
    end-around-carry fold of RFC 1071 section 4.1 does.
    """
    if total == 0:
        return 0
    r = total % 0xFFFF
    return r if r else 0xFFFF


def ones_complement_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The folded 16-bit one's complement sum of `data` plus the partial sum `initial`."""
    return fold16(raw_sum(data) + initial)


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The Internet checksum of `data` (RFC 1071): the complement of the one's complement sum.

    `initial` is an unfolded partial sum to include, such as `pseudo_header_sum(...)`.
    Over data that already carries a correct checksum field, the result is 0.
    """
    return ~fold16(raw_sum(data) + initial) & 0xFFFF


def pseudo_header_sum(src: IPv4Address, dst: IPv4Address, proto: int, length: int) -> int:
    """The unfolded partial sum of the TCP/UDP pseudo-header (RFC 9293 section 3.1).

    Pseudo-header: source address, destination address, a zero octet, the protocol number and
    the TCP length (header plus data, in octets), 12 octets in all.
    """
    # The 12 octets as six 16-bit words: an unfolded partial sum as raw_sum's (congruent modulo 65535,
    # and 0 only when every word is), without building the octets.
    a, b = int(src), int(dst)
    return (a >> 16) + (a & 0xFFFF) + (b >> 16) + (b & 0xFFFF) + proto + length
