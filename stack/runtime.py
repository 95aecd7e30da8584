"""The threads and the thread-safe user-call API (DESIGN.md, "Threads").

- The caller's thread (the shell) issues user calls; blocking ones wait on a condition of the pool lock
  (`Pool.wait_for`, woken by changes to their connection; `Pool.changed` for any change), never polling.
- The receive thread reads the link, parses, and hands segments to the pool.
- The timer thread sleeps until the earliest deadline on a heap (stale entries are skipped when they
  come up: nothing ever scans every connection on a tick) and fires what is due.
- One lock guards the pool and every TCB; a second guards the sending socket.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import heapq
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address
from typing import Protocol

from stack.host import Conn, IpParams, Pool, PoolError, Route, is_unicast
from stack.tcp import Event, State, TcbConfig, TcbStatus, TcpError
from stack.tcp.isn import IsnSource
from stack.wire.errors import ParseError
from stack.wire.icmp import IcmpType, build_icmp, echo_reply, parse_icmp
from stack.wire.ipv4 import (
    IpProto,
    IPv4Flags,
    IPv4Header,
    build_ipv4,
    parse_ipv4,
    recorded_route,
    source_route_option,
)
from stack.wire.reassembly import Reassembler, ReassemblyCounters, fragment
from stack.wire.tcp import TcpSegment, build_tcp, parse_tcp, split_segment


class Link(Protocol):
    address: IPv4Address
    mtu: int

    def send(self, datagram: bytes, dst: IPv4Address) -> None: ...

    def receive(self, timeout: float | None, wakeup: int | None = None) -> Iterable[object]: ...

    def close(self) -> None: ...


KEEP_ERRORS = 100


class StackError(Exception):
    """A user call failed; str() is the one line to show."""


class StackTimeout(StackError):
    """A blocking user call gave up after its timeout; the connection is as it was."""


Listener = Callable[[str, Event], None]
# (direction "in" | "out", source, destination, the segment, the whole IPv4 datagram); called with the
# pool lock held, so a tap must be quick and must not call back into the stack.
SegmentTap = Callable[[str, IPv4Address, IPv4Address, TcpSegment, bytes], None]


@dataclass
class Counters:
    datagrams_in: int = 0
    segments_in: int = 0
    segments_out: int = 0
    bad_packets: int = 0  # malformed IPv4, TCP or ICMP, a bad checksum: dropped
    not_for_us: int = 0
    icmp_in: int = 0  # ICMP messages to our address that parsed
    icmp_out: int = 0  # ICMP messages sent (echo replies)
    echo_replies: int = 0  # echo requests answered
    icmp_errors: int = 0  # error messages handed to the pool (destination unreachable, time exceeded...)
    icmp_ignored: int = 0  # other ICMP types, and echo requests from an address that is not unicast
    send_failures: int = 0  # datagrams the link refused (no route, a full queue)
    offloaded: int = 0  # datagrams the link cut into segments (its pieces are in segments_out)
    other_protocols: int = 0  # datagrams of a protocol other than TCP or ICMP: dropped
    # What IPv4 reassembly did: fragments in, datagrams reassembled, fragments dropped, and why
    # (timeouts, overlaps, the memory bound, tiny fragments...). The Reassembler's own counters.
    reassembly: ReassemblyCounters = field(default_factory=ReassemblyCounters)


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """Keep every object alive on entry out of the cyclic garbage collector's walks until exit
    (gc.freeze, then gc.unfreeze): for the application that runs a Stack, around its life.

    A full collection walks every tracked object while it holds the GIL, and the stack's receive and
    timer threads wait for it. Measured on the 2-core machine: 14 ms with the shell imported (38,500
    objects), 90 to 290 ms in a test session (140,000 to 230,000). Past 200 ms, the minimum RTO on
    both sides, the peer times out a connection that lost nothing, and the timer thread may fire a
    retransmission timeout before the receive thread reads the ACKs that came meanwhile. What was
    alive before the stack started lives about as long as it does and needs no walking."""
    gc.freeze()  # garbage among them waits for the unfreeze: a collection now would be the same pause
    try:
        yield
    finally:
        gc.unfreeze()


class Stack:
    """A TCP/IP stack on one link and one address."""

    def __init__(
        self,
        link: Link,
        *,
        config: TcbConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        isn: IsnSource | None = None,
        ttl: int = 64,
        reassembler: Reassembler | None = None,
    ) -> None:
        """`reassembler` holds the IPv4 reassembly settings (timeout, memory bound); the defaults are
        Linux's. Its counters become `counters.reassembly`."""
        self.link = link
        self.address = link.address
        self.clock = clock
        self.ttl = ttl
        self.counters = Counters()
        self.reassembler = reassembler or Reassembler()
        self.counters.reassembly = self.reassembler.counters
        self._next_expiry = 0.0
        self.config = config or TcbConfig.full(mtu=link.mtu)
        self.pool = Pool(self.address, self._emit, self._schedule, self._notify, config=self.config, isn=isn)
        self._send_lock = threading.Lock()
        self._ip_id = itertools.count(1)
        self._timer_cv = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Conn]] = []
        self._heap_n = itertools.count()
        # Per connection with an entry on the heap: [its entry's time, its entry's number, the latest
        # deadline asked for]. A later deadline rides on the entry already there (see _schedule).
        self._armed: dict[Conn, list[float]] = {}
        self._listeners: list[Listener] = []
        self._taps: list[SegmentTap] = []
        self._news: list[tuple[str, Event]] = []
        self._posted: list[Callable[[], None]] = []
        self._deliver_lock = threading.Lock()
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._threads = [
            threading.Thread(target=self._receive_loop, name="tcpsh-receive", daemon=True),
            threading.Thread(target=self._timer_loop, name="tcpsh-timer", daemon=True),
        ]
        # What went wrong inside the stack's threads (a bug, never a network condition): the last
        # KEEP_ERRORS of them, so that nothing grows without bound.
        self.errors: list[str] = []
        self.last_send_failure = ""

    def _error(self, message: str) -> None:
        self.errors.append(message)
        del self.errors[:-KEEP_ERRORS]

    @property
    def link_drops(self) -> int:
        """Datagrams the kernel dropped on the link before the receive thread read them (a full receive
        queue): loss on this host, which the peer repairs like loss on the wire. 0 on a link without."""
        return int(getattr(self.link, "drops", 0))

    # ------------------------------------------------------------------ life cycle

    def start(self) -> Stack:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stop the threads and close the link. Connections are left as they are (see shutdown)."""
        if self._stopping:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        with self._timer_cv:
            self._timer_cv.notify_all()
        for t in self._threads:
            if t.is_alive() and t is not threading.current_thread():
                t.join(timeout=5)
        self.link.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def shutdown(self, grace: float = 2.0) -> list[tuple[str, str]]:
        """Close every open connection, wait up to `grace` seconds, abort what is left.

        Returns (id, "closed" | "aborted") for each connection that was open.
        """
        outcome: list[tuple[str, str]] = []
        with self.pool.lock:
            live = [c for c in self.pool.live() if c.tcb.state is not State.TIME_WAIT]
            for c in live:
                now = self.clock()
                self.pool.apply(c, c.tcb.close(now), now)
            deadline = self.clock() + grace

            def settled() -> bool:
                return all(c.tcb.state in (State.CLOSED, State.TIME_WAIT) for c in live)

            self._wait(settled, deadline)
            for c in live:
                if c.tcb.state in (State.CLOSED, State.TIME_WAIT):
                    outcome.append((c.id, "closed"))
                else:
                    now = self.clock()
                    self.pool.apply(c, c.tcb.abort(now), now)
                    outcome.append((c.id, "aborted"))
        self._deliver_news()
        return outcome

    # ------------------------------------------------------------------ observers

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(conn_id, event)` for every event, outside the pool lock."""
        self._listeners.append(listener)

    def tap(self, fn: SegmentTap) -> None:
        """Call `fn(direction, src, dst, segment, datagram)` for each TCP segment in or out."""
        self._taps.append(fn)

    def untap(self, fn: SegmentTap) -> None:
        if fn in self._taps:
            self._taps.remove(fn)

    # ------------------------------------------------------------------ pool callbacks (lock held)

    def _ip_header(
        self,
        src: IPv4Address,
        dst: IPv4Address,
        protocol: int,
        *,
        df: bool = True,
        dscp: int = 0,
        ttl: int | None = None,
    ) -> IPv4Header:
        """The IPv4 header of a datagram the stack sends (the one place they are made)."""
        return IPv4Header(
            src=src,
            dst=dst,
            protocol=protocol,
            ttl=self.ttl if ttl is None else ttl,
            dscp=dscp,
            identification=next(self._ip_id) & 0xFFFF,
            flags=IPv4Flags.DF if df else IPv4Flags(0),
        )

    def _transmit(self, datagram: bytes, dst: IPv4Address, cut: tuple[int, int] | None = None) -> bool:
        """Send one datagram under the send lock; False (counted in `send_failures`) when it failed.
        With `cut` (IP header length, MSS), a TCP datagram the link completes and cuts (`send_tcp`)."""
        with self._send_lock:
            try:
                if cut:
                    self.link.send_tcp(datagram, dst, *cut)  # type: ignore[attr-defined]
                else:
                    self.link.send(datagram, dst)
                return True
            except OSError as e:
                # The network's answer (no route, a full queue), not the stack's fault: counted, and
                # the last one kept for `status`, never piling up.
                self.counters.send_failures += 1
                self.last_send_failure = f"send to {dst}: {e.strerror or e}"
                return False

    def _emit(self, seg: TcpSegment, src: IPv4Address, dst: IPv4Address, ip: IpParams | None = None) -> None:
        """Send one segment of a connection (or the stack's own, `ip` None). A segment longer than the
        connection's Eff.snd.MSS (the TCB's segmentation offload) is cut by the link when it can (one
        datagram, the kernel cuts it and completes the checksums), else here, in software: either way
        no segment on the wire is longer than Eff.snd.MSS."""
        ttl, dscp, route, mss = ip or (self.ttl, 0, (), 0)
        if mss and len(seg.payload) > mss:
            link = self.link
            if getattr(link, "offload", False) and not route and len(seg.payload) <= link.gso_max:  # type: ignore[attr-defined]
                self._emit_offloaded(seg, src, dst, ttl, dscp, mss)
                return
            for piece in split_segment(seg, mss):
                self._emit_one(piece, src, dst, ttl, dscp, route)
            return
        self._emit_one(seg, src, dst, ttl, dscp, route)

    def _emit_one(
        self, seg: TcpSegment, src: IPv4Address, dst: IPv4Address, ttl: int, dscp: int, route: Route
    ) -> None:
        tcp = build_tcp(seg, src, dst)  # the pseudo-header names the final destination (RFC 9293 3.1)
        header = self._ip_header(src, dst, IpProto.TCP, ttl=ttl, dscp=dscp)
        if route:
            # A source route (RFC 791 3.1): to the first hop, the rest and the destination in the option.
            header = dataclasses.replace(header, dst=route[0], options=source_route_option((*route[1:], dst)))
            dst = route[0]
        datagram = build_ipv4(header, tcp)
        for fn in self._taps:
            fn("out", src, dst, seg, datagram)
        if self._transmit(datagram, dst):
            self.counters.segments_out += 1

    def _emit_offloaded(
        self, seg: TcpSegment, src: IPv4Address, dst: IPv4Address, ttl: int, dscp: int, mss: int
    ) -> None:
        """One datagram that the link cuts into segments of `mss` (DESIGN.md, "The fast path"). Taps see
        the segments the wire will carry, as a capture on the interface would."""
        header = self._ip_header(src, dst, IpProto.TCP, ttl=ttl, dscp=dscp)
        datagram = build_ipv4(header, build_tcp(seg, src, dst, offload=True))
        if self._taps:
            for piece in split_segment(seg, mss):
                wire = build_ipv4(header, build_tcp(piece, src, dst))
                for fn in self._taps:
                    fn("out", src, dst, piece, wire)
        if self._transmit(datagram, dst, cut=(header.header_len, mss)):
            self.counters.segments_out += -(-len(seg.payload) // mss)
            self.counters.offloaded += 1

    def _schedule(self, conn: Conn, deadline: float) -> None:
        """The connection's next deadline is `deadline` (its TCB's, after a Result).

        Most segments move a deadline later (an ACK restarts the retransmission timer, data starts
        the delayed-ACK timer): that only notes the new time on the connection's entry, which comes
        up no later, and the timer thread then moves it on to the new time without the pool lock.
        Only an earlier deadline pushes an entry, and only an entry that becomes the earliest wakes
        the timer thread, so it is not woken for every segment."""
        with self._timer_cv:
            armed = self._armed.get(conn)
            if armed is not None and armed[0] <= deadline:
                armed[2] = deadline
                return
            n = next(self._heap_n)
            self._armed[conn] = [deadline, n, deadline]  # an entry already there goes stale
            heapq.heappush(self._heap, (deadline, n, conn))
            if self._heap[0][2] is conn:
                self._timer_cv.notify()

    def _notify(self, conn: Conn, event: Event) -> None:
        if self._listeners:  # a listener hears what happens from the time it subscribes
            self._news.append((conn.id, event))

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` soon, outside the pool lock, in order with the news (for taps that print)."""
        self._posted.append(fn)

    def _deliver_news(self, *, wait: bool = False) -> None:
        """Hand queued events to the listeners and run posted calls, one thread at a time so that
        they come out in the order they happened; called without the pool lock.

        A user call waits (`wait`) so that its news is out before it returns; the stack's threads
        never wait: the thread delivering at the moment delivers what they queued too."""
        if not self._news and not self._posted and not self._deliver_lock.locked():
            # Nothing queued, and no thread in the middle of delivering (what it took from the queues
            # may be this call's news): nothing to wait for. The common case, and no lock taken.
            return
        while True:
            if not self._deliver_lock.acquire(blocking=wait):
                return
            try:
                self._deliver_queued()
            finally:
                self._deliver_lock.release()
            with self.pool.lock:
                if not self._news and not self._posted:
                    return

    def _deliver_queued(self) -> None:
        while True:
            with self.pool.lock:
                news, self._news = self._news, []
                posted, self._posted = self._posted, []
            for call in posted:
                try:
                    call()
                except Exception as e:
                    self._error(f"posted: {e!r}")
            if not news and not posted:
                return
            for cid, ev in news:
                for fn in list(self._listeners):
                    try:
                        fn(cid, ev)
                    except Exception as e:  # a listener's bug never stops the stack
                        self._error(f"listener: {e!r}")

    # ------------------------------------------------------------------ threads

    def _receive_loop(self) -> None:
        while not self._stopping:
            try:
                frames = list(self.link.receive(0.5, self._wake_r))
            except (OSError, ValueError) as e:
                if self._stopping:
                    return
                self._error(f"receive: {e}")
                continue
            self._expire_fragments()
            if not frames:
                continue
            with self.pool.lock:
                now = self.clock()
                self.pool.begin_batch()  # ACK coalescing: one bare ACK per connection for the batch
                try:
                    for frame in frames:
                        try:
                            self._input(frame.data, frame.verify_checksum, now)  # type: ignore[attr-defined]
                        except ParseError:
                            self.counters.bad_packets += 1
                        except Exception as e:  # a bad packet never stops the receive thread
                            self.counters.bad_packets += 1
                            self._error(f"input: {e!r}")
                finally:
                    self.pool.end_batch()
            self._deliver_news()

    def _expire_fragments(self) -> None:
        """Drop datagrams whose reassembly timed out; at most twice a second (the receive thread only)."""
        now = self.clock()
        if now < self._next_expiry:
            return
        self._next_expiry = now + 0.5
        self.reassembler.expire(now)

    def _input(self, data: bytes, verify: bool, now: float) -> None:
        """One datagram from the link (pool lock held): reassembled if a fragment, then TCP to the pool,
        ICMP answered or handed on, anything else dropped. Raises ParseError for a malformed one."""
        self.counters.datagrams_in += 1
        ip, payload = parse_ipv4(data)
        if ip.dst != self.address:
            self.counters.not_for_us += 1
            return
        if ip.is_fragment:
            # RFC 791 section 3.2 and RFC 1122 section 3.3.2: reassemble, then process the whole.
            whole = self.reassembler.add(ip, payload, now)
            if whole is None:
                return
            ip, payload = whole
            data = b""  # the whole datagram is built again only if a tap wants it
            verify = True  # no checksum offload covers a reassembled datagram
        if ip.protocol == IpProto.TCP:
            self._input_tcp(ip, payload, data, verify, now)
        elif ip.protocol == IpProto.ICMP:
            self._input_icmp(ip, payload, now)
        else:
            self.counters.other_protocols += 1

    def _input_tcp(
        self, ip: IPv4Header, payload: bytes | memoryview, data: bytes, verify: bool, now: float
    ) -> None:
        seg = parse_tcp(payload, ip.src, ip.dst) if verify else parse_tcp(payload)
        self.counters.segments_in += 1
        if self._taps:
            data = data or build_ipv4(ip, payload)
            for fn in self._taps:
                fn("in", ip.src, ip.dst, seg, data)
        recorded = recorded_route(ip.options) if ip.options else None
        back = tuple(reversed(recorded)) if recorded else None  # RFC 1122 3.2.1.8: the reverse route
        self.pool.deliver(ip.src, seg, now, ip.dscp, back)

    def _input_icmp(self, ip: IPv4Header, payload: bytes | memoryview, now: float) -> None:
        """ICMP (RFC 792, RFC 1122 section 3.2.2): echo answered, errors handed to the pool, the rest
        ignored. Raises ParseError for a malformed message."""
        msg = parse_icmp(payload)
        self.counters.icmp_in += 1
        if msg.type == IcmpType.ECHO_REQUEST:
            # RFC 1122 section 3.2.2.6: the reply goes from the address the request was sent to, which
            # is ours (so never a broadcast or multicast one), to a source that must be unicast.
            if not (is_unicast(ip.dst) and is_unicast(ip.src)) or ip.src.is_loopback:
                self.counters.icmp_ignored += 1
                return
            reply = build_icmp(echo_reply(msg))
            header = self._ip_header(ip.dst, ip.src, IpProto.ICMP, df=False, dscp=ip.dscp)
            try:
                pieces = fragment(header, reply, self.link.mtu)
            except ValueError as e:
                self._error(f"echo reply to {ip.src}: {e}")
                return
            for piece_header, piece in pieces:
                if not self._transmit(build_ipv4(piece_header, piece), ip.src):
                    return
            self.counters.echo_replies += 1
            self.counters.icmp_out += 1
        elif msg.is_error:
            self.counters.icmp_errors += 1
            handler = getattr(self.pool, "icmp_error", None)  # the pool's ICMP error processing
            if handler is not None:
                handler(ip.src, msg, now)
        else:
            self.counters.icmp_ignored += 1

    def _due(self, now: float) -> list[Conn]:
        """The connections whose deadline has come (the timer lock held), taken off the heap."""
        due: list[Conn] = []
        while self._heap and self._heap[0][0] <= now:
            _, n, conn = heapq.heappop(self._heap)
            armed = self._armed.get(conn)
            if armed is None or armed[1] != n:
                continue  # stale: an earlier deadline replaced it, or it was fired
            if armed[2] > now:
                # The deadline moved on since this entry was pushed: follow it.
                armed[0], armed[1] = armed[2], next(self._heap_n)
                heapq.heappush(self._heap, (armed[0], armed[1], conn))
                continue
            del self._armed[conn]
            due.append(conn)
        return due

    def _timer_loop(self) -> None:
        while not self._stopping:
            with self._timer_cv:
                now = self.clock()
                due = self._due(now)
                if not due:
                    timeout = self._heap[0][0] - now if self._heap else None
                    self._timer_cv.wait(timeout)
                    continue
            with self.pool.lock:
                now = self.clock()
                for conn in dict.fromkeys(due):
                    try:
                        self.pool.fire_timer(conn, now)
                    except Exception as e:
                        self._error(f"timer: {e!r}")
            self._deliver_news()

    # ------------------------------------------------------------------ user calls

    def _wait(self, pred: Callable[[], bool], deadline: float | None, conn: Conn | None = None) -> bool:
        """Wait (pool lock held) until pred() or the deadline; True if pred() holds. With `conn`, pred()
        depends on that connection alone, and only a change to it wakes this thread."""
        wait = self.pool.changed.wait if conn is None else partial(self.pool.wait_for, conn)
        while not pred():
            if self._stopping:
                return False
            if deadline is None:
                wait(1.0)
            else:
                left = deadline - self.clock()
                if left <= 0:
                    return pred()
                wait(left)
        return True

    def _conn(self, cid: str) -> Conn:
        try:
            return self.pool.get(cid)
        except PoolError as e:
            raise StackError(str(e)) from None

    def _check(self, conn: Conn, error: TcpError | None) -> None:
        if error is not None:
            raise StackError(f"{conn.id}: {error}")

    def _call(self, fn: Callable[[], object]) -> object:
        try:
            return fn()
        except PoolError as e:
            raise StackError(str(e)) from None
        finally:
            self._deliver_news(wait=True)

    def open(
        self,
        remote: IPv4Address,
        port: int,
        *,
        local_port: int | None = None,
        local_addr: IPv4Address | None = None,
        route: tuple[IPv4Address, ...] = (),
        timeout: float | None = None,
        wait: bool = True,
        config: TcbConfig | None = None,
    ) -> str:
        """Active OPEN; with `wait`, return once ESTABLISHED (or raise on refusal, timeout, reset)."""

        def run() -> str:
            with self.pool.lock:
                conn = self.pool.open_active(
                    remote,
                    port,
                    self.clock(),
                    local_port=local_port,
                    local_addr=local_addr,
                    route=route,
                    config=config,
                )
                if not wait:
                    return conn.id
                deadline = None if timeout is None else self.clock() + timeout
                try:
                    ok = self._wait(lambda: conn.tcb.state is not State.SYN_SENT, deadline, conn)
                except KeyboardInterrupt:
                    # The user gave up on this OPEN: the attempt goes with it (no id was shown).
                    now = self.clock()
                    self.pool.apply(conn, conn.tcb.abort(now), now)
                    raise
                if conn.tcb.state is State.CLOSED:
                    raise StackError(f"{conn.id}: {conn.tcb.receive(0, self.clock()).error}")
                if not ok:
                    now = self.clock()
                    self.pool.apply(conn, conn.tcb.abort(now), now)
                    raise StackTimeout(f"{conn.id}: no answer from {remote}:{port} within {timeout:g} s")
                return conn.id

        return self._call(run)  # type: ignore[return-value]

    def listen(
        self,
        port: int,
        *,
        remote: IPv4Address | None = None,
        remote_port: int | None = None,
        config: TcbConfig | None = None,
    ) -> str:
        """Passive OPEN."""

        def run() -> str:
            with self.pool.lock:
                return self.pool.open_passive(
                    port, self.clock(), remote=remote, rport=remote_port, config=config
                ).id

        return self._call(run)  # type: ignore[return-value]

    def send(
        self, cid: str, data: bytes, *, push: bool = False, urgent: bool = False, timeout: float | None = None
    ) -> int:
        """SEND all of `data`, waiting for buffer space as needed (all of it urgent with `urgent`).
        Returns the octets queued."""

        def run() -> int:
            with self.pool.lock:
                conn = self._conn(cid)
                tcb = conn.tcb
                deadline = None if timeout is None else self.clock() + timeout
                view = memoryview(data)
                sent = 0
                while sent < len(data) or not data:
                    # A low-water mark, as Linux's writers wake when a third of the buffer is free: one
                    # wake-up per quarter of the send buffer, not one per ACK that frees a little.
                    low = max(1, min(len(data) - sent, tcb.config.snd_buf // 4))
                    room = lambda low=low: tcb.send_space >= low or tcb.state is State.CLOSED  # noqa: E731
                    if not self._wait(room, deadline, conn):
                        raise StackTimeout(f"{cid}: send timed out after {sent} of {len(data)} bytes")
                    chunk = bytes(view[sent : sent + tcb.send_space])
                    now = self.clock()
                    res = self.pool.apply(conn, tcb.send(chunk, now, push=push, urgent=urgent), now)
                    self._check(conn, res.error)
                    sent += len(chunk)
                    if not data:
                        break
                return sent

        return self._call(run)  # type: ignore[return-value]

    def receive(
        self, cid: str, max_bytes: int = 65536, *, timeout: float | None = None, until_close: bool = False
    ) -> bytes:
        """RECEIVE: wait for data (or the peer's FIN), return what is there, up to max_bytes.

        With until_close, keep reading until the peer has closed its side (or the timeout).
        Returns b"" at the end of the stream; raises on errors and on a timeout with nothing read.
        """

        def run() -> bytes:
            with self.pool.lock:
                conn = self._conn(cid)
                tcb = conn.tcb
                deadline = None if timeout is None else self.clock() + timeout
                out = bytearray()

                def ended() -> bool:
                    return tcb.state in (
                        State.CLOSE_WAIT,
                        State.CLOSING,
                        State.LAST_ACK,
                        State.TIME_WAIT,
                        State.CLOSED,
                    )

                while len(out) < max_bytes:
                    ok = self._wait(lambda: tcb.readable > 0 or ended(), deadline, conn)
                    now = self.clock()
                    res = self.pool.apply(conn, tcb.receive(max_bytes - len(out), now), now)
                    out += res.data
                    if res.data:
                        if not until_close:
                            break
                        continue
                    if res.error is not None:
                        if res.error in (TcpError.CLOSING, TcpError.NOT_EXIST) and (out or ended()):
                            break
                        self._check(conn, res.error)
                    if not ok:
                        if out:
                            break
                        raise StackTimeout(f"{cid}: nothing received within {timeout:g} s")
                return bytes(out)

        return self._call(run)  # type: ignore[return-value]

    def _simple(self, cid: str, call: str) -> int:
        def run() -> int:
            with self.pool.lock:
                conn = self._conn(cid)
                now = self.clock()
                res = self.pool.apply(conn, getattr(conn.tcb, call)(now), now)
                self._check(conn, res.error)
                return res.count

        return self._call(run)  # type: ignore[return-value]

    def close(self, cid: str) -> None:
        self._simple(cid, "close")

    def abort(self, cid: str) -> None:
        self._simple(cid, "abort")

    def flush(self, cid: str) -> int:
        return self._simple(cid, "flush")

    def status(self, cid: str) -> TcbStatus:
        with self.pool.lock:
            return self.pool.status(self._conn(cid), self.clock())

    def connections(self) -> list[tuple[str, TcbStatus]]:
        with self.pool.lock:
            now = self.clock()
            return [(c.id, self.pool.status(c, now)) for c in self.pool.conns.values()]

    def configure(self, cid: str, name: str, value: str) -> dict[str, str]:
        """`set`: change one setting of a connection; returns its settings after the change."""

        def run() -> dict[str, str]:
            with self.pool.lock:
                conn = self._conn(cid)
                now = self.clock()
                try:
                    self.pool.apply(conn, conn.tcb.configure(name, value, now), now)
                except ValueError as e:
                    raise StackError(f"{cid}: {e}") from None
                return conn.tcb.config.describe()

        return self._call(run)  # type: ignore[return-value]

    def defaults(self) -> dict[str, str]:
        """The settings connections opened from now on start with."""
        with self.pool.lock:
            return self.config.describe(at_open=True)

    def configure_default(self, name: str, value: str) -> dict[str, str]:
        """`set default`: change a setting for connections opened from now on."""
        with self.pool.lock:
            try:
                self.config.set(name, value, at_open=True)
            except ValueError as e:
                raise StackError(f"default: {e}") from None
            return self.config.describe(at_open=True)

    def exchange(self, cid: str) -> list[tuple[float, str, State, TcpSegment, int]]:
        """The connection's segments so far: (time, direction, our state after, header, data length)."""
        with self.pool.lock:
            return self._conn(cid).exchange_log()

    def summary(self) -> dict[State, int] | None:
        """Connections per state, or None when the pool is busy (for a toolbar that must not wait)."""
        if not self.pool.lock.acquire(blocking=False):
            return None
        try:
            counts: dict[State, int] = {}
            for c in self.pool.conns.values():
                counts[c.tcb.state] = counts.get(c.tcb.state, 0) + 1
            return counts
        finally:
            self.pool.lock.release()

    def wait_state(self, cid: str, state: State, timeout: float | None = None) -> bool:
        with self.pool.lock:
            conn = self._conn(cid)
            deadline = None if timeout is None else self.clock() + timeout
            return self._wait(lambda: conn.tcb.state is state, deadline, conn)
