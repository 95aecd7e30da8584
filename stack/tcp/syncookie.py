"""SYN cookies (RFC 4987 section 3.6): when a listener's backlog is full, its SYN,ACK carries all the
state it needs in the ISS, and no TCB is kept until the ACK that returns it.

    ISS = t (5 bits) | MSS index (3 bits) | MAC (24 bits)

t counts 64-second periods; the MAC is keyed by a secret of the stack's own and covers the 4-tuple,
the client's ISN and t. An ACK is believed when ACK - 1 carries a MAC that matches for the current
or the previous period. Like every SYN cookie, it costs the options it cannot carry: the connection
it opens has the MSS it encodes and no window scale, timestamps or SACK.
"""

from __future__ import annotations

import hashlib
import os
from ipaddress import IPv4Address

PERIOD = 64.0  # seconds a t value lasts
MSS_TABLE = (536, 1220, 1440, 1460, 8960)  # what the cookie can say; the client's MSS rounds down


Flow = tuple[IPv4Address, int, IPv4Address, int]  # the SYN's source address and port, destination and port


class SynCookies:
    def __init__(self, secret: bytes | None = None) -> None:
        self._key = secret or os.urandom(16)

    def _mac(self, t: int, flow: Flow, client_isn: int) -> int:
        src, sport, dst, dport = flow
        h = hashlib.blake2s(key=self._key, digest_size=4)
        h.update(src.packed + dst.packed)
        h.update(sport.to_bytes(2, "big") + dport.to_bytes(2, "big"))
        h.update(client_isn.to_bytes(4, "big") + t.to_bytes(4, "big"))
        return int.from_bytes(h.digest(), "big") & 0xFFFFFF

    def make(self, now: float, flow: Flow, client_isn: int, mss: int) -> tuple[int, int]:
        """The ISS for a SYN of `flow` with the client's ISN and MSS option; and the MSS the cookie
        records (the largest in the table not above the client's)."""
        index = max((i for i, m in enumerate(MSS_TABLE) if m <= mss), default=0)
        t = int(now // PERIOD)
        iss = ((t & 0x1F) << 27) | (index << 24) | self._mac(t, flow, client_isn)
        return iss, MSS_TABLE[index]

    def check(self, now: float, flow: Flow, client_isn: int, iss: int) -> int | None:
        """The MSS recorded in `iss` if it is a cookie this stack made for that SYN in the last two
        periods; else None."""
        index = (iss >> 24) & 0x7
        if index >= len(MSS_TABLE):
            return None
        now_t = int(now // PERIOD)
        for t in (now_t, now_t - 1):
            if t & 0x1F == iss >> 27 and self._mac(t, flow, client_isn) == iss & 0xFFFFFF:
                return MSS_TABLE[index]
        return None
