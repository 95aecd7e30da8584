"""A passive OPEN under a SYN flood (RFC 4987): half-open connections bounded by the backlog and in time,
SYN cookies past the backlog, and a real client that still gets the connection. Through the pool, with
crafted segments."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from stack.host import Pool, PoolError
from stack.tcp import EventKind, State, TcbConfig
from stack.tcp.isn import FixedIsn
from stack.tcp.syncookie import MSS_TABLE, PERIOD, SynCookies
from stack.wire.tcp import Flags, TcpOptions, TcpSegment

US = IPv4Address("198.18.0.1")
CLIENT = IPv4Address("198.18.0.2")
ISS = 7000


def spoofed(k: int) -> IPv4Address:
    return IPv4Address(int(IPv4Address("198.19.0.0")) + k)


def syn(sport: int, seq: int = 100, mss: int = 1460, **opts: object) -> TcpSegment:
    return TcpSegment(sport, 80, seq=seq, flags=Flags.SYN, window=64_000, options=TcpOptions(mss=mss, **opts))


def ack(sport: int, seq: int, ack_: int) -> TcpSegment:
    return TcpSegment(sport, 80, seq=seq, ack=ack_, flags=Flags.ACK, window=64_000)


class Listener:
    def __init__(self, **cfg: object) -> None:
        self.sent: list[tuple[TcpSegment, IPv4Address]] = []
        self.events: list[tuple[str, EventKind]] = []
        self.timers: dict[int, tuple[object, float]] = {}
        self.pool = Pool(
            US,
            lambda seg, src, dst, ip: self.sent.append((seg, dst)),
            lambda conn, t: self.timers.__setitem__(id(conn), (conn, t)),
            lambda conn, ev: self.events.append((conn.id, ev.kind)),
            config=TcbConfig(**cfg),  # type: ignore[arg-type]
            isn=FixedIsn(ISS),
        )
        self.pool.lock.acquire()
        self.conn = self.pool.open_passive(80, 0.0)

    def to(self, dst: IPv4Address) -> list[TcpSegment]:
        return [s for s, d in self.sent if d == dst]

    def run_timers(self, until: float) -> None:
        """Fire every timer due up to `until`, in order, as the stack's timer thread would."""
        while True:
            due = sorted((t, k) for k, (_, t) in self.timers.items() if t <= until)
            if not due:
                return
            t, k = due[0]
            conn, _ = self.timers.pop(k)
            self.pool.fire_timer(conn, t)  # type: ignore[arg-type]


def test_a_real_client_gets_the_passive_open_while_a_spoofed_syn_holds_it_half_open():
    lis = Listener(syn_received_timeout=30.0)
    lis.pool.deliver(spoofed(1), syn(1111), 0.0)
    assert lis.conn.tcb.state is State.SYN_RECEIVED  # RFC 9293 3.10.7.2: the passive OPEN answers it
    lis.pool.deliver(CLIENT, syn(5000, seq=900), 0.1)
    (synack,) = lis.to(CLIENT)
    assert synack.flags == Flags.SYN | Flags.ACK and synack.ack == 901
    lis.pool.deliver(CLIENT, ack(5000, 901, synack.seq + 1), 0.2)
    assert lis.conn.tcb.state is State.ESTABLISHED
    assert (lis.conn.tcb.remote_addr, lis.conn.tcb.remote_port) == (CLIENT, 5000)
    assert lis.events == [("c1", EventKind.ESTABLISHED)]
    assert lis.pool.status(lis.conn, 0.2).half_open == 1  # the spoofed handshake, still waiting
    lis.run_timers(until=29.0)
    assert lis.pool.status(lis.conn, 29.0).half_open == 1
    lis.run_timers(until=31.0)
    assert lis.pool.status(lis.conn, 31.0).half_open == 0  # gone after syn_received_timeout, untold
    assert lis.conn.tcb.state is State.ESTABLISHED and lis.events == [("c1", EventKind.ESTABLISHED)]


def test_a_spoofed_syn_alone_gives_the_passive_open_back_to_listen_without_a_word():
    lis = Listener(syn_received_timeout=30.0)
    lis.pool.deliver(spoofed(1), syn(1111), 0.0)
    lis.run_timers(until=29.0)
    assert lis.conn.tcb.state is State.SYN_RECEIVED
    lis.run_timers(until=31.0)
    assert lis.conn.tcb.state is State.LISTEN and lis.events == []
    lis.pool.deliver(CLIENT, syn(5000, seq=900), 40.0)  # and it still serves the next peer
    assert lis.conn.tcb.state is State.SYN_RECEIVED and lis.conn.tcb.remote_addr == CLIENT


def test_past_the_backlog_syns_get_cookies_and_nothing_is_kept():
    lis = Listener(backlog=3)
    for k in range(10):
        lis.pool.deliver(spoofed(k), syn(1000 + k), 0.0)
    st = lis.pool.status(lis.conn, 0.0)
    assert (st.half_open, st.syn_cookies_sent) == (2, 7)  # the passive OPEN's own + 2 = the backlog of 3
    assert all(len(lis.to(spoofed(k))) == 1 for k in range(10))  # every SYN was answered
    lis.pool.deliver(CLIENT, syn(5000, seq=900, mss=1400, wscale=7, sack_permitted=True), 0.5)
    (cookie,) = lis.to(CLIENT)
    assert cookie.options == TcpOptions(mss=1460)  # a cookie carries the MSS only
    lis.pool.deliver(CLIENT, ack(5000, 901, cookie.seq + 1), 0.6)
    assert lis.conn.tcb.state is State.ESTABLISHED and lis.conn.tcb.remote_port == 5000
    assert lis.conn.tcb.snd_mss == 1220  # the largest the cookie can say, not above 1400
    assert lis.pool.status(lis.conn, 0.6).syn_cookies_taken == 1


def test_an_ack_with_a_forged_cookie_is_refused():
    lis = Listener(backlog=1)
    lis.pool.deliver(spoofed(1), syn(1111), 0.0)  # the passive OPEN is half-open
    lis.sent.clear()
    lis.pool.deliver(CLIENT, ack(5000, 901, 123456), 0.1)
    (rst,) = lis.to(CLIENT)
    assert rst.flags == Flags.RST and rst.seq == 123456  # as LISTEN answers an ACK
    assert lis.conn.tcb.state is State.SYN_RECEIVED and lis.conn.tcb.remote_addr == spoofed(1)


def test_closing_the_passive_open_takes_its_half_open_connections_with_it():
    lis = Listener()
    for k in range(3):
        lis.pool.deliver(spoofed(k), syn(1000 + k), 0.0)
    assert lis.pool.status(lis.conn, 0.0).half_open == 2
    lis.pool.apply(lis.conn, lis.conn.tcb.abort(0.1), 0.1)
    assert lis.pool.status(lis.conn, 0.1).half_open == 0
    lis.pool.deliver(spoofed(1), ack(1001, 101, ISS + 1), 0.2)
    assert lis.to(spoofed(1))[-1].flags & Flags.RST  # nothing answers for it any more


def test_max_connections_refuses_opens_with_a_clear_error():
    lis = Listener(max_connections=3)
    lis.pool.open_active(CLIENT, 7, 0.0)
    lis.pool.open_active(CLIENT, 7, 0.0)
    with pytest.raises(PoolError, match=r"insufficient resources: 3 connections \(max-connections\)"):
        lis.pool.open_active(CLIENT, 7, 0.0)


def test_cookies_round_trip_and_expire():
    jar = SynCookies(b"k" * 16)
    flow = (CLIENT, 5000, US, 80)
    iss, mss = jar.make(100.0, flow, 900, 1460)
    assert mss == 1460 and jar.check(100.0 + PERIOD, flow, 900, iss) == 1460
    assert jar.check(100.0 + 2.5 * PERIOD, flow, 900, iss) is None  # too old
    assert jar.check(100.0, flow, 901, iss) is None  # another SYN
    assert jar.check(100.0, (CLIENT, 5001, US, 80), 900, iss) is None  # another flow
    assert jar.check(100.0, flow, 900, iss ^ 1) is None
    assert [jar.make(0.0, flow, 1, m)[1] for m in (100, 536, 1300, 1460, 9000)] == [
        MSS_TABLE[0], 536, 1220, 1460, 8960
    ]
