"""The connection pool: connection ids, demultiplexing by 4-tuple, listeners, port choice.

The pool holds no threads. Whoever calls it holds `Pool.lock` (DESIGN.md, "Threads": one lock guards
the pool and every TCB in it). Every TCB Result goes through `_apply`, which sends the segments,
schedules the next deadline, records the news and wakes every waiter on `Pool.changed`.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from stack.tcp import Event, Result, State, Tcb, TcbConfig, TcpError, reset_for
from stack.tcp.isn import IsnSource, Rfc6528Isn
from stack.wire.errors import ParseError
from stack.wire.icmp import IcmpMessage, IcmpType
from stack.wire.tcp import TcpSegment

EPHEMERAL = range(49152, 65536)  # RFC 6335 section 6 dynamic ports
KEEP_CLOSED = 64  # closed connections kept for STATUS and for reading what was left
KEEP_NEWS = 100  # events kept per connection
KEEP_EXCHANGE = 1000  # segments kept per connection for `exchange` (headers only, not the data)

Key = tuple[int, IPv4Address, int]  # (local port, remote address, remote port)


BROADCAST = IPv4Address("255.255.255.255")


def is_unicast(addr: IPv4Address) -> bool:
    """Not multicast, not the limited broadcast, not 0.0.0.0 (MUST-46, MUST-57, MUST-63)."""
    return not (addr.is_multicast or addr.is_unspecified or addr == BROADCAST)


class PoolError(Exception):
    """A user call the pool refuses before any TCB sees it: one line saying why."""


@dataclass(eq=False)
class Conn:
    id: str
    tcb: Tcb
    created: float
    key: Key | None = None
    listening_on: int | None = None
    closed_at: float | None = None
    news: deque[Event] = field(default_factory=lambda: deque(maxlen=KEEP_NEWS))
    # (time, "in" | "out", our state after the segment, the segment without its data, data length)
    exchange: deque[tuple[float, str, State, TcpSegment, int]] = field(
        default_factory=lambda: deque(maxlen=KEEP_EXCHANGE)
    )

    def record(self, now: float, direction: str, seg: TcpSegment) -> None:
        light = dataclasses.replace(seg, payload=b"") if seg.payload else seg
        self.exchange.append((now, direction, self.tcb.state, light, len(seg.payload)))


Emit = Callable[[TcpSegment, IPv4Address, IPv4Address], None]
Schedule = Callable[[Conn, float], None]
Notify = Callable[[Conn, Event], None]


class Pool:
    def __init__(
        self,
        address: IPv4Address,
        emit: Emit,
        schedule: Schedule,
        notify: Notify,
        *,
        config: TcbConfig | None = None,
        isn: IsnSource | None = None,
    ) -> None:
        self.address = address
        self.config = config or TcbConfig()
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._emit = emit
        self._schedule = schedule
        self._notify = notify
        self._isn = isn or Rfc6528Isn()
        self.conns: dict[str, Conn] = {}
        self._by_key: dict[Key, Conn] = {}
        self._listeners: dict[int, list[Conn]] = {}
        self._ids = itertools.count(1)
        self._rng = random.Random()
        self.resets_sent = 0
        self.icmp_ignored = 0  # ICMP errors that matched no connection, or were source quench or redirect
        self.dropped = 0

    # ------------------------------------------------------------------ connections

    def get(self, cid: str) -> Conn:
        conn = self.conns.get(cid)
        if conn is None:
            raise PoolError(f"{cid}: no such connection")
        return conn

    def _new(
        self,
        local_port: int,
        remote: IPv4Address | None,
        rport: int | None,
        config: TcbConfig | None,
        now: float,
    ) -> Conn:
        tcb = Tcb(self.address, local_port, remote, rport, config=config or self.config, isn=self._isn)
        conn = Conn(f"c{next(self._ids)}", tcb, now)
        self.conns[conn.id] = conn
        return conn

    def _port_in_use(self, port: int) -> bool:
        return port in self._listeners or any(k[0] == port for k in self._by_key)

    def ephemeral_port(self, remote: IPv4Address, rport: int) -> int:
        """A local port that no live connection or listener uses."""
        start = self._rng.randrange(len(EPHEMERAL))
        for i in range(len(EPHEMERAL)):
            port = EPHEMERAL[(start + i) % len(EPHEMERAL)]
            if not self._port_in_use(port):
                return port
        raise PoolError(str(TcpError.INSUFFICIENT_RESOURCES) + ": no free local port")

    def open_active(
        self,
        remote: IPv4Address,
        rport: int,
        now: float,
        *,
        local_port: int | None = None,
        config: TcbConfig | None = None,
    ) -> Conn:
        """Active OPEN (RFC 9293 section 3.10.1)."""
        if not is_unicast(remote):
            raise PoolError(f"{remote} is not a unicast address (MUST-46: no OPEN to broadcast or multicast)")
        if not 0 < rport < 65536:
            raise PoolError(f"port {rport} is out of range 1-65535")
        if local_port is None:
            local_port = self.ephemeral_port(remote, rport)
        elif not 0 < local_port < 65536:
            raise PoolError(f"local port {local_port} is out of range 1-65535")
        elif (local_port, remote, rport) in self._by_key:
            raise PoolError(str(TcpError.ALREADY_EXISTS))
        conn = self._new(local_port, remote, rport, config, now)
        self._apply(conn, conn.tcb.open(now, active=True), now)
        return conn

    def open_passive(
        self,
        port: int,
        now: float,
        *,
        remote: IPv4Address | None = None,
        rport: int | None = None,
        config: TcbConfig | None = None,
    ) -> Conn:
        """Passive OPEN: LISTEN on `port`, the foreign socket fully, partly or not specified.

        Any number of passive OPENs may listen on one port at once (MUST-42); a SYN goes to the most
        specific one that matches, and never disturbs the others (MUST-41).
        """
        if not 0 < port < 65536:
            raise PoolError(f"port {port} is out of range 1-65535")
        conn = self._new(port, remote, rport, config, now)
        self._apply(conn, conn.tcb.open(now, active=False), now)
        return conn

    # ------------------------------------------------------------------ arriving segments

    def deliver(self, src: IPv4Address, seg: TcpSegment, now: float) -> None:
        """A segment from `src` to our address: to its connection, else a listener, else a RST (3.10.7.1)."""
        if not is_unicast(src):
            self.dropped += 1  # MUST-63: no SYN (nor anything) from a broadcast or multicast source
            return
        conn = self._by_key.get((seg.dst_port, src, seg.src_port))
        if conn is None:
            conn = self._listener_for(seg.dst_port, src, seg.src_port)
        if conn is None:
            rst = reset_for(seg)
            if rst is not None:
                self.resets_sent += 1
                self._emit(rst, self.address, src)
            return
        res = conn.tcb.segment_arrives(seg, now, src)
        conn.record(now, "in", seg)
        self._apply(conn, res, now)

    def icmp_error(self, src: IPv4Address, msg: IcmpMessage, now: float) -> None:
        """An ICMP error from `src` (RFC 9293 section 3.9.2.2): to the connection whose segment it
        quotes, which judges it. Source quench is ignored (MUST-55); a host takes no redirects."""
        if msg.type in (IcmpType.SOURCE_QUENCH, IcmpType.REDIRECT):
            self.icmp_ignored += 1
            return
        try:
            quoted, _ = msg.quoted()
            sport, dport, seq = msg.quoted_tcp()
        except ParseError:
            self.icmp_ignored += 1
            return
        conn = self.find(sport, quoted.dst, dport) if quoted.src == self.address else None
        if conn is None:
            self.icmp_ignored += 1
            return
        mtu, length = msg.next_hop_mtu, quoted.total_length
        res = conn.tcb.icmp_error(msg.type, msg.code, seq, now, mtu=mtu, quoted_length=length, reporter=src)
        self._apply(conn, res, now)

    def find(self, local_port: int, remote: IPv4Address, rport: int) -> Conn | None:
        """The connection a segment of this 4-tuple belongs to, if any (not listeners)."""
        return self._by_key.get((local_port, remote, rport))

    def _listener_for(self, port: int, src: IPv4Address, sport: int) -> Conn | None:
        best: Conn | None = None
        best_score = -1
        for conn in self._listeners.get(port, ()):
            ra, rp = conn.tcb.remote_addr, conn.tcb.remote_port
            if (ra is not None and ra != src) or (rp and rp != sport):
                continue
            score = (ra is not None) * 2 + bool(rp)
            if score > best_score:
                best, best_score = conn, score
        return best

    # ------------------------------------------------------------------ results

    def apply(self, conn: Conn, res: Result, now: float) -> Result:
        """Carry out what a TCB asked for (callers hold the lock)."""
        self._apply(conn, res, now)
        return res

    def _apply(self, conn: Conn, res: Result, now: float) -> None:
        tcb = conn.tcb
        self._rekey(conn)
        remote = tcb.remote_addr
        for seg in res.segments:
            if remote is not None:
                conn.record(now, "out", seg)
                self._emit(seg, self.address, remote)
        for ev in res.events:
            conn.news.append(ev)
            self._notify(conn, ev)
        if res.deadline is not None:
            self._schedule(conn, res.deadline)
        self.changed.notify_all()

    def _rekey(self, conn: Conn) -> None:
        """Keep the demultiplexing maps in step with the TCB's state and sockets."""
        tcb = conn.tcb
        want_listen = tcb.local_port if tcb.state is State.LISTEN else None
        want_key: Key | None = None
        if tcb.state not in (State.LISTEN, State.CLOSED) and tcb.remote_addr is not None and tcb.remote_port:
            want_key = (tcb.local_port, tcb.remote_addr, tcb.remote_port)
        if conn.listening_on != want_listen:
            if conn.listening_on is not None:
                lst = self._listeners.get(conn.listening_on, [])
                if conn in lst:
                    lst.remove(conn)
                if not lst:
                    self._listeners.pop(conn.listening_on, None)
            if want_listen is not None:
                self._listeners.setdefault(want_listen, []).append(conn)
            conn.listening_on = want_listen
        if conn.key != want_key:
            if conn.key is not None and self._by_key.get(conn.key) is conn:
                del self._by_key[conn.key]
            if want_key is not None:
                self._by_key[want_key] = conn
            conn.key = want_key
        if tcb.state is State.CLOSED and conn.closed_at is None:
            conn.closed_at = 0.0
            self._prune_closed()

    def _prune_closed(self) -> None:
        closed = [c for c in self.conns.values() if c.closed_at is not None]
        for conn in closed[: max(0, len(closed) - KEEP_CLOSED)]:
            del self.conns[conn.id]

    def fire_timer(self, conn: Conn, now: float) -> None:
        """The timer thread calls this when `conn`'s deadline may have come."""
        if self.conns.get(conn.id) is not conn or conn.tcb.deleted:
            return
        deadline = conn.tcb.deadline
        if deadline is None:
            return
        if deadline > now:
            self._schedule(conn, deadline)
            return
        self._apply(conn, conn.tcb.on_timer(now), now)

    def live(self) -> list[Conn]:
        return [c for c in self.conns.values() if c.closed_at is None]
