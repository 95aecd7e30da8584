"""Initial sequence numbers per RFC 6528 (RFC 9293 section 3.4.1, MUST-8, MUST-9, SHLD-1).

ISN = M + F(localip, localport, remoteip, remoteport, secretkey), where M is a clock ticking every
4 microseconds and F is a keyed hash (BLAKE2b with a random 16-byte key drawn once per stack), so
the ISN cannot be computed from outside the host (MUST-9).
"""

from __future__ import annotations

import hashlib
import secrets
from ipaddress import IPv4Address
from typing import Protocol

from stack.tcp.seq import MASK


class IsnSource(Protocol):
    def __call__(
        self, now: float, local: IPv4Address | None, lport: int, remote: IPv4Address | None, rport: int
    ) -> int: ...


class Rfc6528Isn:
    """The RFC 6528 generator. `now` is the caller's clock in seconds (the core has no clock of its own)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else secrets.token_bytes(16)

    def __call__(
        self, now: float, local: IPv4Address | None, lport: int, remote: IPv4Address | None, rport: int
    ) -> int:
        m = int(now * 250_000)  # the 4-microsecond timer M
        h = hashlib.blake2b(key=self._key, digest_size=4)
        h.update(local.packed if local else b"\0\0\0\0")
        h.update(lport.to_bytes(2, "big"))
        h.update(remote.packed if remote else b"\0\0\0\0")
        h.update(rport.to_bytes(2, "big"))
        return (m + int.from_bytes(h.digest(), "big")) & MASK


class FixedIsn:
    """A fixed ISN, for tests that need to know the numbers in advance."""

    def __init__(self, isn: int) -> None:
        self.isn = isn & MASK

    def __call__(
        self, now: float, local: IPv4Address | None, lport: int, remote: IPv4Address | None, rport: int
    ) -> int:
        return self.isn
