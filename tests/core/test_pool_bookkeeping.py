"""The pool's own bookkeeping, kept cheap per segment and per connection: the exchange log, the news,
the local ports in use, the closed connections kept, and the waits of user calls (woken only by their
own connection). No threads but one waiter, no sockets, no timing."""

from __future__ import annotations

import dataclasses
import threading
from ipaddress import IPv4Address

from stack.host import KEEP_CLOSED, KEEP_EXCHANGE, KEEP_NEWS, Conn, Pool
from stack.tcp import Event, EventKind, State, TcbConfig
from stack.tcp.isn import FixedIsn
from stack.wire.tcp import Flags, TcpOptions, TcpSegment

US = IPv4Address("198.18.0.1")
PEER = IPv4Address("198.18.0.2")
WAIT = 10.0


def make_pool() -> tuple[Pool, list[TcpSegment]]:
    out: list[TcpSegment] = []
    pool = Pool(US, lambda seg, src, dst, ip: out.append(seg), lambda c, t: None, lambda c, e: None)
    pool.lock.acquire()
    return pool, out


def establish(pool: Pool, out: list[TcpSegment], rport: int = 7) -> Conn:
    """An active OPEN, completed by a SYN,ACK from PEER."""
    conn = pool.open_active(PEER, rport, 0.0)
    syn = out[-1]
    synack = TcpSegment(
        rport, syn.src_port, seq=500, ack=syn.seq + 1, flags=Flags.SYN | Flags.ACK, window=8000
    )
    pool.deliver(PEER, synack, 0.01)
    assert conn.tcb.state is State.ESTABLISHED
    return conn


def test_the_exchange_log_keeps_every_header_field_and_no_data():
    pool, _ = make_pool()
    conn = pool.open_passive(80, 0.0, config=TcbConfig())
    seg = TcpSegment(
        5555,
        80,
        seq=1,
        ack=2,
        flags=Flags.ACK | Flags.PSH | Flags.URG,
        window=3,
        urgent=4,
        options=TcpOptions(timestamps=(5, 6), sack_blocks=((7, 8),)),
        payload=b"data",
    )
    conn.record(1.5, "in", seg)
    conn.record(1.6, "out", TcpSegment(80, 5555, seq=9, flags=Flags.SYN))
    (t, way, state, header, n), second = conn.exchange_log()
    assert (t, way, state, n) == (1.5, "in", State.LISTEN, 4)
    assert header == dataclasses.replace(seg, payload=b"")
    assert second[3] == TcpSegment(80, 5555, seq=9, flags=Flags.SYN) and second[4] == 0


def test_the_exchange_log_keeps_the_last_segments_only():
    pool, _ = make_pool()
    conn = pool.open_passive(80, 0.0)
    for i in range(3 * KEEP_EXCHANGE + 7):
        conn.record(float(i), "in", TcpSegment(1, 80, seq=i, payload=b"x"))
        assert len(conn.exchange) <= 2 * KEEP_EXCHANGE
    log = conn.exchange_log()
    assert len(log) == KEEP_EXCHANGE
    assert [seg.seq for _, _, _, seg, _ in log] == list(range(2 * KEEP_EXCHANGE + 7, 3 * KEEP_EXCHANGE + 7))


def test_the_news_of_a_connection_is_bounded():
    pool, _ = make_pool()
    conn = pool.open_passive(80, 0.0)
    for i in range(5 * KEEP_NEWS):
        conn.tell(Event(EventKind.DATA, str(i)))
        assert len(conn.news) <= 2 * KEEP_NEWS
    assert conn.news[-KEEP_NEWS:] == [
        Event(EventKind.DATA, str(i)) for i in range(4 * KEEP_NEWS, 5 * KEEP_NEWS)
    ]


def test_local_ports_in_use_follow_the_connections():
    """The ports an active OPEN may not take are those of live connections, counted as they come and go
    (no scan of every connection per OPEN)."""
    pool, out = make_pool()
    conns = [establish(pool, out, rport) for rport in (7, 9, 13)]
    shared = pool.open_active(PEER, 19, 0.0, local_port=conns[0].tcb.local_port)  # same local port
    assert pool._ports == {conns[0].tcb.local_port: 2, conns[1].tcb.local_port: 1, conns[2].tcb.local_port: 1}
    assert pool._port_in_use(conns[1].tcb.local_port)
    for conn in (*conns, shared):
        pool.apply(conn, conn.tcb.abort(0.1), 0.1)
    assert pool._ports == {} and pool._by_key == {}
    assert not pool._port_in_use(conns[1].tcb.local_port)


def test_closed_connections_kept_are_the_last_ones_opened():
    pool, out = make_pool()
    conns = [establish(pool, out) for _ in range(KEEP_CLOSED + 20)]
    live = establish(pool, out)
    for conn in reversed(conns):  # closed newest first: the oldest opened still go first
        pool.apply(conn, conn.tcb.abort(0.2), 0.2)
    assert list(pool.conns.values()) == [*conns[20:], live]


def test_a_wait_for_one_connection_is_woken_by_it_and_not_by_another():
    pool, out = make_pool()
    mine, other = establish(pool, out, 7), establish(pool, out, 9)
    returned = threading.Event()

    def waiter() -> None:
        with pool.lock:
            pool.wait_for(mine, WAIT)
        returned.set()

    pool.lock.release()
    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    try:
        registered = threading.Event()
        for _ in range(1000):
            with pool.lock:
                if mine in pool._waiting:
                    registered.set()
                    break
            returned.wait(0.01)
        assert registered.is_set(), "the waiter never waited"
        with pool.lock:
            pool.apply(other, other.tcb.send(b"x", 0.3), 0.3)
            assert mine in pool._waiting  # still waiting: not woken by another connection
            pool.apply(mine, mine.tcb.send(b"y", 0.3), 0.3)
            assert mine not in pool._waiting
        assert returned.wait(WAIT), "the waiter was not woken by its connection"
    finally:
        thread.join(WAIT)
        pool.lock.acquire()


def test_a_passive_open_waiter_is_woken_when_a_half_open_connection_completes():
    """The handshake may complete on a half-open connection of the passive OPEN (the listener's own TCB
    being busy): the passive OPEN's waiters are woken when it becomes the connection."""
    pool, _ = make_pool()
    pool._isn = FixedIsn(7000)
    listener = pool.open_passive(80, 0.0)
    pool.deliver(PEER, TcpSegment(6000, 80, seq=100, flags=Flags.SYN, window=1000), 0.0)
    pool.deliver(PEER, TcpSegment(6001, 80, seq=300, flags=Flags.SYN, window=1000), 0.0)
    assert len(listener.embryos) == 1
    waiter = threading.Lock()
    waiter.acquire()
    pool._waiting[listener] = [waiter]  # as wait_for leaves it
    pool.deliver(PEER, TcpSegment(6001, 80, seq=301, ack=7001, flags=Flags.ACK, window=1000), 0.1)
    assert listener.tcb.state is State.ESTABLISHED and listener.tcb.remote_port == 6001
    assert listener not in pool._waiting and waiter.acquire(blocking=False)


def test_notify_all_on_the_pools_condition_wakes_the_waits_for_one_connection_too():
    """Whoever interrupts a waiting user call (the daemon, for a client's Ctrl-C) wakes it with
    `changed.notify_all()`, however it waits."""
    pool, out = make_pool()
    conn = establish(pool, out)
    waiter = threading.Lock()
    waiter.acquire()
    pool._waiting[conn] = [waiter]  # as wait_for leaves it
    pool.changed.notify_all()
    assert pool._waiting == {} and waiter.acquire(blocking=False)
