"""The connection pool: connection ids, demultiplexing by 4-tuple, listeners, port choice.

The pool holds no threads. Whoever calls it holds `Pool.lock` (DESIGN.md, "Threads": one lock guards
the pool and every TCB in it). Every TCB Result goes through `_apply`, which sends the segments,
schedules the next deadline, records the news and wakes the threads waiting for that connection
(`Pool.wait_for`) and those waiting on `Pool.changed`.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import operator
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import NamedTuple

from stack.tcp import Event, Result, State, Tcb, TcbConfig, TcbStatus, TcpError, reset_for
from stack.tcp.isn import FixedIsn, IsnSource, Rfc6528Isn
from stack.tcp.syncookie import SynCookies
from stack.wire.errors import ParseError
from stack.wire.icmp import IcmpMessage, IcmpType
from stack.wire.tcp import Flags, TcpOptions, TcpSegment

EPHEMERAL = range(49152, 65536)  # RFC 6335 section 6 dynamic ports
KEEP_CLOSED = 64  # closed connections kept for STATUS and for reading what was left
KEEP_NEWS = 100  # events kept per connection
KEEP_EXCHANGE = 1000  # segments kept per connection for `exchange` (headers only, not the data)

# The header fields of a segment, all but its data, as the exchange log keeps them: one tuple taken in C
# (no copy of the segment for every one in and out), made a TcpSegment again only when the log is read.
_HEADER_FIELDS = tuple(f.name for f in dataclasses.fields(TcpSegment) if f.name != "payload")
_header_of = operator.attrgetter(*_HEADER_FIELDS)

Key = tuple[int, IPv4Address, int]  # (local port, remote address, remote port)


BROADCAST = IPv4Address("255.255.255.255")


def is_unicast(addr: IPv4Address) -> bool:
    """Not multicast, not the limited broadcast, not 0.0.0.0 (MUST-46, MUST-57, MUST-63)."""
    return not (addr.is_multicast or addr.is_unspecified or addr == BROADCAST)


class PoolError(Exception):
    """A user call the pool refuses before any TCB sees it: one line saying why."""


class Changed(threading.Condition):
    """`Pool.changed`, the condition of the pool lock. Its `notify_all` wakes every thread waiting on
    the pool, those waiting for one connection (`Pool.wait_for`) too, so that whoever interrupts a
    waiting user call (the daemon, for a client's Ctrl-C) need not know how it waits."""

    def __init__(self, lock: threading.Lock, waiting: dict[Conn, list[threading.Lock]]) -> None:
        super().__init__(lock)
        self._waiting = waiting

    def notify_all(self) -> None:
        super().notify_all()  # raises, as any condition's, when the lock is not held
        for waiters in self._waiting.values():
            for waiter in waiters:
                waiter.release()
        self._waiting.clear()

    def notify_changed(self) -> None:
        """Wake only the threads waiting on the condition itself (for any change)."""
        super().notify_all()


@dataclass(eq=False, slots=True)
class Conn:
    """One connection of the pool. Slots and plain lists (an empty deque alone takes 624 octets): an
    idle connection is mostly its TCB."""

    id: str
    tcb: Tcb
    created: float
    key: Key | None = None
    listening_on: int | None = None
    closed_at: float | None = None
    # The last KEEP_NEWS events (at most twice as many are held between trims).
    news: list[Event] = field(default_factory=list)
    # (time, "in" | "out", our state after the segment, its header fields, data length): the last
    # KEEP_EXCHANGE segments (at most twice as many between trims); read it with `exchange_log`.
    exchange: list[tuple[float, str, State, tuple[object, ...], int]] = field(default_factory=list)

    # A passive OPEN's half-open connections (SYN-RECEIVED), each a TCB of its own until one of them
    # completes the handshake and becomes this connection; and what the listener did under load.
    parent: Conn | None = None
    embryos: list[Conn] = field(default_factory=list)
    held_news: list[Event] = field(default_factory=list)
    syn_cookies_sent: int = 0
    syn_cookies_taken: int = 0
    syns_refused: int = 0
    dscp_in: int = 0  # the Diffserv field of the last segment that arrived (MAY-9)
    # A source route (RFC 9293 3.9.2.1): the hops before the remote address. One the user gave at
    # OPEN (MUST-51) stands (MUST-52); else the return route of the last segment that came by one
    # (MUST-53; a later one overrides an earlier, SHLD-24).
    route: tuple[IPv4Address, ...] = ()
    route_given: bool = False

    def record(self, now: float, direction: str, seg: TcpSegment) -> None:
        log = self.exchange
        log.append((now, direction, self.tcb.state, _header_of(seg), len(seg.payload)))
        if len(log) > 2 * KEEP_EXCHANGE:
            del log[:-KEEP_EXCHANGE]

    def exchange_log(self) -> list[tuple[float, str, State, TcpSegment, int]]:
        """The last KEEP_EXCHANGE segments: (time, direction, our state after, the segment without its
        data, data length)."""
        return [
            (t, way, state, TcpSegment(**dict(zip(_HEADER_FIELDS, header, strict=True))), n)
            for t, way, state, header, n in self.exchange[-KEEP_EXCHANGE:]
        ]

    def tell(self, event: Event) -> None:
        news = self.news
        news.append(event)
        if len(news) > 2 * KEEP_NEWS:
            del news[:-KEEP_NEWS]


Route = tuple[IPv4Address, ...]


class IpParams(NamedTuple):
    """How a connection's datagrams go: TTL (MUST-49), DSCP (MUST-48), the hops of a source route before
    the remote address (MUST-51), and Eff.snd.MSS, the size into which a segment larger than it (when
    the TCB's segmentation offload is on) is cut before the wire."""

    ttl: int
    dscp: int
    route: Route
    mss: int

# (segment, source, destination, the connection's IpParams; None: the stack's own)
Emit = Callable[[TcpSegment, IPv4Address, IPv4Address, "IpParams | None"], None]
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
        # Waiters on the pool lock (as a threading.Condition's): those of `wait_for(conn)`, woken only by
        # a change to their connection, and those on `changed`, woken by any change.
        self._waiting: dict[Conn, list[threading.Lock]] = {}
        self.changed = Changed(self.lock, self._waiting)
        self._emit = emit
        self._schedule = schedule
        self._notify = notify
        self._isn = isn or Rfc6528Isn()
        self.conns: dict[str, Conn] = {}
        self._by_key: dict[Key, Conn] = {}
        self._ports: dict[int, int] = {}  # local port -> how many keys in _by_key hold it
        self._closed: list[tuple[int, Conn]] = []  # heap of closed connections still in `conns`
        self._listeners: dict[int, list[Conn]] = {}
        self._ids = itertools.count(1)
        self._rng = random.Random()
        self._cookies = SynCookies()
        self.resets_sent = 0
        self.acks_coalesced = 0  # bare ACKs not sent, a later one of the same batch saying more
        # While a batch of arriving segments is taken (begin_batch .. end_batch), each connection's
        # bare ACKs wait here and only the last goes out: ACK coalescing, as GRO gives Linux's TCP.
        self._held_acks: dict[Conn, tuple[float, TcpSegment, IPv4Address, IpParams]] | None = None
        self.icmp_ignored = 0  # ICMP errors that matched no connection, or were source quench or redirect
        self.dropped = 0

    # ------------------------------------------------------------------ waiting

    def wait_for(self, conn: Conn, timeout: float | None) -> None:
        """Wait (the lock held) until `conn` changes, `changed.notify_all()` is called, or `timeout`
        passes; the lock is released meanwhile and held again on return, as `Condition.wait` does.

        A condition per connection on the pool lock: a change wakes only the threads waiting for that
        connection (and those on `changed`), not every thread blocked in a user call, so that eight
        passive OPENs waiting in eight threads are not all woken, each to take the GIL and the lock in
        turn, by every segment of every connection."""
        waiter = threading.Lock()
        waiter.acquire()
        self._waiting.setdefault(conn, []).append(waiter)
        self.lock.release()
        try:
            if timeout is None:
                waiter.acquire()
            elif timeout > 0:
                waiter.acquire(True, timeout)
        finally:
            self.lock.acquire()
            waiters = self._waiting.get(conn)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiting[conn]

    def _wake(self, conn: Conn) -> None:
        """Something changed on `conn` (the lock held): wake its waiters and those on `changed`."""
        waiters = self._waiting.pop(conn, None)
        if waiters:
            for waiter in waiters:
                waiter.release()
        self.changed.notify_changed()

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
        return port in self._listeners or port in self._ports

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
        local_addr: IPv4Address | None = None,
        route: tuple[IPv4Address, ...] = (),
        config: TcbConfig | None = None,
    ) -> Conn:
        """Active OPEN (RFC 9293 section 3.10.1). The local address may be given (MUST-43); the stack
        has one, so it must be that one."""
        if local_addr is not None and local_addr != self.address:
            raise PoolError(f"{local_addr} is not this stack's address ({self.address})")
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
        self._check_room()
        if len(route) > 8:
            raise PoolError(f"a source route holds at most 8 hops before the destination, not {len(route)}")
        conn = self._new(local_port, remote, rport, config, now)
        conn.route, conn.route_given = tuple(route), bool(route)
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
        self._check_room()
        conn = self._new(port, remote, rport, config, now)
        self._apply(conn, conn.tcb.open(now, active=False), now)
        return conn

    # ------------------------------------------------------------------ arriving segments

    def deliver(
        self,
        src: IPv4Address,
        seg: TcpSegment,
        now: float,
        dscp: int = 0,
        route: tuple[IPv4Address, ...] | None = None,
    ) -> None:
        """A segment from `src` to our address: to its connection, else a listener, else a RST (3.10.7.1).
        `dscp` is the Diffserv field it came with, kept for STATUS (MAY-9); `route` the return route of
        a completed source route it came by (MUST-53)."""
        if not is_unicast(src):
            self.dropped += 1  # MUST-63: no SYN (nor anything) from a broadcast or multicast source
            return
        conn = self._by_key.get((seg.dst_port, src, seg.src_port))
        if conn is None:
            conn = self._listener_for(seg.dst_port, src, seg.src_port)
            if conn is not None and self._to_listener(conn, src, seg, now, route):
                return
        if conn is None:
            rst = reset_for(seg)
            if rst is not None:
                self.resets_sent += 1
                self._emit(rst, self.address, src, None)
            return
        tcb = conn.tcb
        # A route is believed only from a segment the connection took: one that moved RCV.NXT or
        # SND.UNA on, a SYN in LISTEN, or the peer's SYN again (its ISN). A forged segment it drops
        # must not redirect the connection.
        if route and (tcb.state is State.LISTEN or (seg.flags & Flags.SYN and seg.seq == tcb.irs)):
            _take_route(conn, route)
        before = (tcb.rcv_nxt, tcb.snd_una)
        res = tcb.segment_arrives(seg, now, src)
        if route and (tcb.rcv_nxt, tcb.snd_una) != before and tcb.state is not State.CLOSED:
            _take_route(conn, route)
        conn.record(now, "in", seg)
        conn.dscp_in = dscp
        # Only the ACKs of data may wait for the end of a batch: one answering anything else (a challenge
        # ACK to a forged RST or SYN, RFC 5961) goes at once, as its own answer.
        self._apply(conn, res, now, coalesce=bool(seg.payload))

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

    # ------------------------------------------------------------------ listeners under load

    def _to_listener(
        self, listener: Conn, src: IPv4Address, seg: TcpSegment, now: float, route: Route | None
    ) -> bool:
        """A segment for a passive OPEN from a peer it has no connection with.

        In LISTEN, the passive OPEN's own TCB takes a SYN as RFC 9293 3.10.7.2 says (and goes to
        SYN-RECEIVED). While it is half-open, more SYNs start half-open connections of their own, up
        to the backlog, and past it get a SYN cookie (RFC 4987 section 3.6) with nothing kept; the
        first handshake to complete becomes the passive OPEN's connection. So a flood of SYNs from
        nowhere never keeps a real client out. An ACK that returns a cookie opens the connection.
        Returns False for what the listener's own TCB should see (in LISTEN: a RST, an ACK, ...)."""
        f = seg.flags
        syn = bool(f & Flags.SYN) and not f & (Flags.ACK | Flags.RST)
        if listener.tcb.state is State.LISTEN:
            if f & Flags.ACK and not f & (Flags.SYN | Flags.RST):
                return self._cookie_returns(listener, src, seg, now, route)
            return False
        if syn:
            if 1 + len(listener.embryos) < listener.tcb.config.backlog and self._room():
                self._embryo(listener, src, seg, now, route)
            else:
                self._send_cookie(listener, src, seg, now)
        elif not (f & Flags.ACK and self._cookie_returns(listener, src, seg, now, route)):
            rst = reset_for(seg)  # 3.10.7.2 as LISTEN would answer it: an ACK is bad, a RST ignored
            if rst is not None:
                self.resets_sent += 1
                self._emit(rst, self.address, src, None)
        return True

    def _check_room(self) -> None:
        if not self._room():
            limit = self.config.max_connections
            raise PoolError(f"{TcpError.INSUFFICIENT_RESOURCES}: {limit} connections (max-connections)")

    def _room(self) -> bool:
        held = len(self._by_key) + sum(len(lst) for lst in self._listeners.values())
        return held < self.config.max_connections

    def _child_tcb(self, listener: Conn, isn: IsnSource) -> Tcb:
        """A TCB for one SYN to `listener`, with its settings (so SYN-RECEIVED ends after
        syn_received_timeout, as the passive OPEN's own does)."""
        cfg = listener.tcb.config.copy()
        ra, rp = listener.tcb._listen_remote
        tcb = Tcb(self.address, listener.tcb.local_port, ra, rp, config=cfg, isn=isn)
        tcb.open(0.0, active=False)
        return tcb

    def _embryo(
        self, listener: Conn, src: IPv4Address, seg: TcpSegment, now: float, route: Route | None
    ) -> None:
        child = Conn(f"{listener.id}~", self._child_tcb(listener, self._isn), now, parent=listener)
        _take_route(child, route)
        listener.embryos.append(child)
        res = child.tcb.segment_arrives(seg, now, src)
        child.record(now, "in", seg)
        self._apply(child, res, now)

    def _send_cookie(self, listener: Conn, src: IPv4Address, seg: TcpSegment, now: float) -> None:
        """The backlog is full: answer with the SYN,ACK a TCB would send, its ISS a cookie, and forget."""
        mss = seg.options.mss or 536
        iss, mss = self._cookies.make(now, (src, seg.src_port, self.address, seg.dst_port), seg.seq, mss)
        tcb = self._child_tcb(listener, FixedIsn(iss))
        res = tcb.segment_arrives(_cookie_syn(seg, mss), now, src)
        for out in res.segments:
            self._emit(out, self.address, src, None)
        listener.syn_cookies_sent += 1

    def _cookie_returns(
        self, listener: Conn, src: IPv4Address, seg: TcpSegment, now: float, route: Route | None
    ) -> bool:
        """An ACK for no connection: if ACK - 1 is a cookie of ours, the handshake it completes opens
        the connection, rebuilt from the SYN the cookie stands for."""
        client_isn = (seg.seq - 1) & 0xFFFFFFFF
        iss = (seg.ack - 1) & 0xFFFFFFFF
        mss = self._cookies.check(now, (src, seg.src_port, self.address, seg.dst_port), client_isn, iss)
        if mss is None or not self._room():
            return False
        syn = TcpSegment(seg.src_port, seg.dst_port, seq=client_isn, flags=Flags.SYN, window=seg.window)
        child = Conn(f"{listener.id}~", self._child_tcb(listener, FixedIsn(iss)), now, parent=listener)
        _take_route(child, route)
        child.tcb.segment_arrives(_cookie_syn(syn, mss), now, src)  # its SYN,ACK went out as the cookie
        listener.embryos.append(child)
        listener.syn_cookies_taken += 1
        res = child.tcb.segment_arrives(seg, now, src)
        child.record(now, "in", seg)
        self._apply(child, res, now)
        return True

    def _settle_embryo(self, child: Conn, now: float) -> None:
        """A half-open connection that completed its handshake becomes the passive OPEN it answered
        (RFC 9293: the TCB of the passive OPEN is the connection), or another one on the port that
        would take it; one that failed or timed out is forgotten (the user need not be told)."""
        listener = child.parent
        assert listener is not None
        st = child.tcb.state
        if st is State.SYN_RECEIVED:
            return
        listener.embryos.remove(child)
        child.parent = None
        self._unkey(child)
        if st in (State.LISTEN, State.CLOSED):
            return
        tcb = child.tcb
        target = listener if _listening(listener) else None
        if target is None and tcb.remote_addr is not None and tcb.remote_port:
            target = self._listener_for(tcb.local_port, tcb.remote_addr, tcb.remote_port)
        if target is None:
            listener.syns_refused += 1
            res = tcb.abort(now)
            for out in res.segments:
                self._emit(out, self.address, tcb.remote_addr or self.address, None)
            return
        half_open = target.tcb if target.tcb.state is State.SYN_RECEIVED else None
        target.tcb = tcb
        if not target.route_given:
            target.route = child.route
        target.exchange.clear()
        target.exchange.extend(child.exchange)
        self._rekey(target)
        if half_open is not None:
            # The passive OPEN's own handshake has not completed: it goes on as a half-open one.
            waiting = Conn(f"{target.id}~", half_open, now, parent=target)
            target.embryos.append(waiting)
            self._rekey(waiting)
            if half_open.deadline is not None:
                self._schedule(waiting, half_open.deadline)
        for ev in child.held_news:
            target.tell(ev)
            self._notify(target, ev)
        if tcb.deadline is not None:
            self._schedule(target, tcb.deadline)
        self._wake(target)

    def _unkey(self, conn: Conn) -> None:
        if conn.key is not None and self._by_key.get(conn.key) is conn:
            self._key_del(conn.key)
        conn.key = None

    def _key_add(self, key: Key, conn: Conn) -> None:
        if key not in self._by_key:
            self._ports[key[0]] = self._ports.get(key[0], 0) + 1
        self._by_key[key] = conn

    def _key_del(self, key: Key) -> None:
        del self._by_key[key]
        left = self._ports[key[0]] - 1
        if left:
            self._ports[key[0]] = left
        else:
            del self._ports[key[0]]

    def find(self, local_port: int, remote: IPv4Address, rport: int) -> Conn | None:
        """The connection a segment of this 4-tuple belongs to, if any (not listeners)."""
        return self._by_key.get((local_port, remote, rport))

    def _listener_for(self, port: int, src: IPv4Address, sport: int) -> Conn | None:
        """The passive OPEN a SYN from src:sport goes to: the most specific, and one in LISTEN before
        one whose own handshake is under way."""
        best: Conn | None = None
        best_score = -1
        for conn in self._listeners.get(port, ()):
            ra, rp = conn.tcb._listen_remote
            if (ra is not None and ra != src) or (rp and rp != sport):
                continue
            score = (ra is not None) * 4 + bool(rp) * 2 + (conn.tcb.state is State.LISTEN)
            if score > best_score:
                best, best_score = conn, score
        return best

    # ------------------------------------------------------------------ results

    def apply(self, conn: Conn, res: Result, now: float) -> Result:
        """Carry out what a TCB asked for (callers hold the lock)."""
        self._apply(conn, res, now)
        return res

    def _apply(self, conn: Conn, res: Result, now: float, *, coalesce: bool = False) -> None:
        tcb = conn.tcb
        self._rekey(conn)
        remote = tcb.remote_addr
        ip = IpParams(tcb.config.ttl, tcb.config.dscp, conn.route, tcb.eff_snd_mss)  # passed to IP
        held = self._held_acks
        for seg in res.segments:
            if remote is None:
                continue
            if held is not None:
                if held.pop(conn, None) is not None:
                    self.acks_coalesced += 1  # this segment carries a newer ACK than the one held
                if coalesce and tcb.sack_ok and seg.flags == Flags.ACK and not seg.payload:
                    # A bare ACK of data waits for the end of the batch; a later one replaces it (its
                    # ACK, window and SACK blocks say all the earlier said). Only with SACK: a peer
                    # without it counts duplicate ACKs to find a loss (RFC 5681 3.2), and each must go.
                    held[conn] = (now, seg, remote, ip)
                    continue
            self._send(conn, now, seg, remote, ip)
        if conn.parent is not None:
            # Half-open: its news waits for it to become a connection the user sees.
            conn.held_news.extend(res.events)
            if res.deadline is not None:
                self._schedule(conn, res.deadline)
            listener = conn.parent
            self._settle_embryo(conn, now)
            self._wake(listener)
            return
        for ev in res.events:
            conn.tell(ev)
            self._notify(conn, ev)
        if res.deadline is not None:
            self._schedule(conn, res.deadline)
        if conn.tcb.state is State.CLOSED and conn.embryos:
            for child in list(conn.embryos):  # the passive OPEN is gone: so are its half-open connections
                self._settle_embryo_gone(child, now)
        self._wake(conn)

    def begin_batch(self) -> None:
        """Segments of one batch from the link follow (lock held): hold each connection's bare ACKs."""
        self._held_acks = {}

    def end_batch(self) -> None:
        """The batch is taken (lock held): send each connection's last bare ACK."""
        held, self._held_acks = self._held_acks, None
        for conn, (now, seg, remote, ip) in (held or {}).items():
            self._send(conn, now, seg, remote, ip)

    def _send(self, conn: Conn, now: float, seg: TcpSegment, remote: IPv4Address, ip: IpParams) -> None:
        """One segment of `conn` to the wire, recorded in its exchange log."""
        conn.record(now, "out", seg)
        self._emit(seg, self.address, remote, ip)

    def _settle_embryo_gone(self, child: Conn, now: float) -> None:
        res = child.tcb.abort(now)
        remote = child.tcb.remote_addr
        for out in res.segments:
            if remote is not None:
                self._emit(out, self.address, remote, None)
        if child.parent is not None:
            child.parent.embryos.remove(child)
            child.parent = None
        self._unkey(child)

    def _rekey(self, conn: Conn) -> None:
        """Keep the demultiplexing maps in step with the TCB's state and sockets."""
        tcb = conn.tcb
        want_listen = tcb.local_port if _listening(conn) else None
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
                self._key_del(conn.key)
            if want_key is not None:
                self._key_add(want_key, conn)
            conn.key = want_key
        if tcb.state is State.CLOSED and conn.closed_at is None:
            conn.closed_at = 0.0
            if self.conns.get(conn.id) is conn:
                heapq.heappush(self._closed, (int(conn.id[1:]), conn))  # ids are "c" and a count
                self._prune_closed()

    def _prune_closed(self) -> None:
        """Forget the closed connections beyond the last KEEP_CLOSED, oldest first (without a scan of
        every connection, of which thousands may be in TIME-WAIT)."""
        while len(self._closed) > KEEP_CLOSED:
            _, conn = heapq.heappop(self._closed)
            del self.conns[conn.id]

    def fire_timer(self, conn: Conn, now: float) -> None:
        """The timer thread calls this when `conn`'s deadline may have come."""
        known = conn.parent is not None and conn in conn.parent.embryos
        if (not known and self.conns.get(conn.id) is not conn) or conn.tcb.deleted:
            return
        deadline = conn.tcb.deadline
        if deadline is None:
            return
        if deadline > now:
            self._schedule(conn, deadline)
            return
        self._apply(conn, conn.tcb.on_timer(now), now)

    def status(self, conn: Conn, now: float) -> TcbStatus:
        """STATUS of a connection, with what the pool knows of a passive OPEN under load."""
        st = conn.tcb.status(now)
        if conn.dscp_in or conn.route:
            st = dataclasses.replace(st, dscp_in=conn.dscp_in, route=tuple(str(hop) for hop in conn.route))
        if conn.embryos or conn.syn_cookies_sent:
            st = dataclasses.replace(
                st,
                half_open=len(conn.embryos),
                syn_cookies_sent=conn.syn_cookies_sent,
                syn_cookies_taken=conn.syn_cookies_taken,
            )
        return st

    def live(self) -> list[Conn]:
        return [c for c in self.conns.values() if c.closed_at is None]


def _cookie_syn(syn: TcpSegment, mss: int) -> TcpSegment:
    """The SYN as a cookie remembers it: its sequence number and an MSS, no other option."""
    only_mss = TcpOptions(mss=mss)
    return TcpSegment(syn.src_port, syn.dst_port, syn.seq, 0, Flags.SYN, syn.window, options=only_mss)


def _listening(conn: Conn) -> bool:
    """A passive OPEN takes new SYNs in LISTEN, and while its own handshake is under way (as half-open
    connections of their own)."""
    st = conn.tcb.state
    return conn.parent is None and conn.closed_at is None and (
        st is State.LISTEN or (st is State.SYN_RECEIVED and conn.tcb.from_listen)
    )


def _take_route(conn: Conn, route: tuple[IPv4Address, ...] | None) -> None:
    """A segment came by a completed source route: its return route is the connection's from now on
    (MUST-53, SHLD-24), unless the user gave one at OPEN (MUST-52)."""
    if route and not conn.route_given:
        conn.route = route
