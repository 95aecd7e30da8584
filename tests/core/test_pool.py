"""The connection pool without threads or sockets: demultiplexing, listeners, ports, resets."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from stack.host import EPHEMERAL, IpParams, Pool, PoolError
from stack.tcp import State, TcbConfig
from stack.tcp.isn import FixedIsn
from stack.wire.tcp import Flags, TcpOptions, TcpSegment

US = IPv4Address("198.18.0.1")
PEER = IPv4Address("198.18.0.2")
OTHER = IPv4Address("198.18.0.3")


class Wire:
    def __init__(self) -> None:
        self.out: list[tuple[TcpSegment, IPv4Address]] = []
        self.ip: list[IpParams | None] = []

    def emit(self, seg: TcpSegment, src: IPv4Address, dst: IPv4Address, ip: IpParams | None) -> None:
        self.out.append((seg, dst))
        self.ip.append(ip)


def make_pool() -> tuple[Pool, Wire]:
    """A pool whose lock the test holds throughout, as the stack's threads do around every call."""
    wire = Wire()
    pool = Pool(US, wire.emit, lambda c, t: None, lambda c, e: None, isn=FixedIsn(7000))
    pool.lock.acquire()
    return pool, wire


def syn(sport: int, dport: int, seq: int = 100) -> TcpSegment:
    return TcpSegment(sport, dport, seq=seq, flags=Flags.SYN, window=1000, options=TcpOptions(mss=1460))


def test_segment_to_no_connection_is_answered_with_rst():
    """RFC 9293 section 3.10.7.1 through the pool: SYN to a closed port -> <SEQ=0><ACK=SEG.SEQ+1><RST,ACK>."""
    pool, wire = make_pool()
    pool.deliver(PEER, syn(5555, 80), 0.0)
    (seg, dst), = wire.out
    assert dst == PEER
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack) == (80, 5555, 0, 101)
    assert seg.flags == Flags.RST | Flags.ACK


def test_rst_to_no_connection_is_not_answered():
    pool, wire = make_pool()
    pool.deliver(PEER, TcpSegment(5555, 80, seq=1, flags=Flags.RST), 0.0)
    assert wire.out == []


def test_several_listens_on_one_port_most_specific_first():
    """MUST-42: simultaneous LISTENs on one port; MUST-41: one passive OPEN does not disturb another."""
    pool, wire = make_pool()
    anyone = pool.open_passive(80, 0.0)
    only_peer = pool.open_passive(80, 0.0, remote=PEER)
    only_peer_port = pool.open_passive(80, 0.0, remote=PEER, rport=6000)
    pool.deliver(PEER, syn(6000, 80), 0.0)
    assert only_peer_port.tcb.state is State.SYN_RECEIVED
    assert (anyone.tcb.state, only_peer.tcb.state) == (State.LISTEN, State.LISTEN)
    pool.deliver(PEER, syn(6001, 80), 0.0)
    assert only_peer.tcb.state is State.SYN_RECEIVED
    assert anyone.tcb.state is State.LISTEN
    pool.deliver(OTHER, syn(6002, 80), 0.0)
    assert anyone.tcb.state is State.SYN_RECEIVED
    assert anyone.tcb.remote_addr == OTHER and anyone.tcb.remote_port == 6002
    # each SYN,ACK went to its own peer
    assert [(s.dst_port, d) for s, d in wire.out] == [(6000, PEER), (6001, PEER), (6002, OTHER)]


def test_segments_reach_their_connection_by_four_tuple():
    pool, _ = make_pool()
    a = pool.open_passive(80, 0.0)
    b = pool.open_passive(80, 0.0)
    pool.deliver(PEER, syn(6000, 80, seq=100), 0.0)
    pool.deliver(PEER, syn(6001, 80, seq=500), 0.0)
    assert {a.tcb.remote_port, b.tcb.remote_port} == {6000, 6001}
    first = a if a.tcb.remote_port == 6000 else b
    pool.deliver(PEER, TcpSegment(6000, 80, seq=101, ack=7001, flags=Flags.ACK, window=1000), 0.0)
    assert first.tcb.state is State.ESTABLISHED
    assert (b if first is a else a).tcb.state is State.SYN_RECEIVED


def test_ephemeral_ports_never_collide_with_live_connections():
    pool, _ = make_pool()
    ports = {pool.open_active(PEER, 7, 0.0).tcb.local_port for _ in range(200)}
    assert len(ports) == 200
    assert all(p in EPHEMERAL for p in ports)


@pytest.mark.parametrize("addr", ["224.0.0.1", "255.255.255.255", "0.0.0.0"])
def test_open_to_broadcast_or_multicast_is_refused(addr: str):
    """MUST-46: no OPEN to a broadcast or multicast address."""
    pool, wire = make_pool()
    with pytest.raises(PoolError, match="not a unicast address"):
        pool.open_active(IPv4Address(addr), 80, 0.0)
    assert wire.out == []


@pytest.mark.parametrize("addr", ["224.0.0.1", "255.255.255.255"])
def test_syn_from_broadcast_or_multicast_source_is_dropped(addr: str):
    """MUST-63: a SYN from an invalid source is rejected silently (no RST, no connection)."""
    pool, wire = make_pool()
    listener = pool.open_passive(80, 0.0)
    pool.deliver(IPv4Address(addr), syn(6000, 80), 0.0)
    assert listener.tcb.state is State.LISTEN
    assert wire.out == []


def test_bad_ports_are_refused_with_a_clear_error():
    pool, _ = make_pool()
    with pytest.raises(PoolError, match="out of range"):
        pool.open_active(PEER, 0, 0.0)
    with pytest.raises(PoolError, match="out of range"):
        pool.open_passive(70000, 0.0)


def test_closed_connection_leaves_the_demultiplexer():
    pool, wire = make_pool()
    conn = pool.open_active(PEER, 7, 0.0, local_port=40000)
    pool.apply(conn, conn.tcb.abort(0.0), 0.0)
    wire.out.clear()
    pool.deliver(PEER, TcpSegment(7, 40000, seq=1, ack=7001, flags=Flags.ACK, window=100), 0.0)
    (seg, _), = wire.out
    assert seg.flags == Flags.RST and seg.seq == 7001  # answered as CLOSED, not by the old TCB


def test_a_connection_sends_with_its_own_ttl_and_dscp_and_may_change_them():
    """MUST-49: TTL configurable; MUST-48/SHLD-22: the application's Diffserv field passed to IP
    unchanged; SHLD-21: changeable during the connection. Segments for no connection use the stack's."""
    pool, wire = make_pool()
    conn = pool.open_active(PEER, 7, 0.0, config=TcbConfig(ttl=9, dscp=46))
    assert [p and p[:3] for p in wire.ip] == [(9, 46, ())]  # the SYN
    lport = conn.tcb.local_port
    synack = TcpSegment(7, lport, seq=300, ack=7001, flags=Flags.SYN | Flags.ACK, window=1000)
    pool.deliver(PEER, synack, 0.05)
    assert conn.tcb.state is State.ESTABLISHED and wire.ip[-1][:3] == (9, 46, ())  # its ACK
    pool.apply(conn, conn.tcb.configure("dscp", "10", 0.1), 0.1)
    pool.apply(conn, conn.tcb.send(b"x", 0.1), 0.1)
    assert wire.out[-1][0].payload == b"x" and wire.ip[-1][:3] == (9, 10, ())
    pool.deliver(PEER, syn(5555, 81), 0.2)  # no listener: the RST goes with the stack's own fields
    assert wire.ip[-1] is None
    with pytest.raises(ValueError, match="dscp must be from 0 to 63"):
        conn.tcb.configure("dscp", "64", 0.3)
    with pytest.raises(ValueError, match="ttl must be from 1 to 255"):
        conn.tcb.configure("ttl", "0", 0.3)


def test_open_takes_the_local_address_only_if_it_is_the_stacks():
    """MUST-43: OPEN's optional local IP address; this stack has one, so that one or an error."""
    pool, wire = make_pool()
    conn = pool.open_active(PEER, 7, 0.0, local_addr=US)
    assert conn.tcb.local_addr == US and wire.out
    with pytest.raises(PoolError, match=r"198.18.0.3 is not this stack's address \(198.18.0.1\)"):
        pool.open_active(PEER, 7, 0.0, local_addr=OTHER)
