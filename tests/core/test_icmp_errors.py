"""ICMP errors for TCP (RFC 9293 section 3.9.2.2, RFC 1122 4.2.3.9, RFC 5927, RFC 1191): soft errors
reported and survived, hard errors abort, fragmentation needed lowers the segment size, and nothing is
believed unless it quotes a sequence number in flight. Through the pool, as the stack delivers them."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from stack.host import Pool
from stack.tcp import EventKind, State, TcbConfig, TcpError
from stack.tcp.isn import FixedIsn
from stack.tcp.tcb import MIN_PMTU, RTX
from stack.wire.icmp import IcmpType, UnreachCode, icmp_error
from stack.wire.ipv4 import IpProto, IPv4Flags, IPv4Header, build_ipv4
from stack.wire.tcp import Flags, TcpOptions, TcpSegment, build_tcp

US = IPv4Address("198.18.0.1")
PEER = IPv4Address("198.18.0.2")
ROUTER = IPv4Address("198.18.0.254")
ISS, IRS, MSS = 10_000, 20_000, 1460
BASE = ISS + 1
UNREACH, TIME_EXCEEDED, PARAM = IcmpType.DEST_UNREACHABLE, IcmpType.TIME_EXCEEDED, IcmpType.PARAMETER_PROBLEM


class Pooled:
    """A pool with one connection, established by a crafted handshake; what it sends is kept."""

    def __init__(self, config: TcbConfig | None = None) -> None:
        self.sent: list[TcpSegment] = []
        self.events: list[tuple[EventKind, str]] = []
        self.pool = Pool(
            US,
            lambda seg, src, dst, ip: self.sent.append(seg),
            lambda conn, t: None,
            lambda conn, ev: self.events.append((ev.kind, ev.message)),
            config=config or TcbConfig(),
            isn=FixedIsn(ISS),
        )
        self.pool.lock.acquire()
        self.conn = self.pool.open_active(PEER, 80, 0.0, local_port=40000)
        synack = TcpSegment(80, 40000, seq=IRS, ack=BASE, flags=Flags.SYN | Flags.ACK, window=60_000,
                            options=TcpOptions(mss=MSS))
        self.pool.deliver(PEER, synack, 0.01)
        assert self.tcb.state is State.ESTABLISHED
        self.sent.clear()
        self.events.clear()

    @property
    def tcb(self):
        return self.conn.tcb

    def send(self, n: int, now: float = 0.02) -> list[TcpSegment]:
        self.pool.apply(self.conn, self.tcb.send(bytes(n), now), now)
        out, self.sent = self.sent, []
        return out

    def icmp(self, type_: int, code: int, quoting: TcpSegment, now: float = 0.05, mtu: int = 0,
             sport: int = 40000) -> list[TcpSegment]:
        """An ICMP error from a router quoting `quoting` as we sent it (our address to the peer's)."""
        seg = TcpSegment(sport, quoting.dst_port, seq=quoting.seq, ack=quoting.ack, flags=quoting.flags,
                         window=quoting.window, payload=quoting.payload)
        datagram = build_ipv4(
            IPv4Header(src=US, dst=PEER, protocol=IpProto.TCP, flags=IPv4Flags.DF), build_tcp(seg, US, PEER)
        )
        self.pool.icmp_error(ROUTER, icmp_error(type_, code, datagram, mtu=mtu), now)
        out, self.sent = self.sent, []
        return out


@pytest.mark.parametrize(
    ("type_", "code", "text"),
    [
        (UNREACH, UnreachCode.NET, "network unreachable"),
        (UNREACH, UnreachCode.HOST, "host unreachable"),
        (UNREACH, UnreachCode.SOURCE_ROUTE_FAILED, "source route failed"),
        (UNREACH, UnreachCode.ADMIN_PROHIBITED, "communication administratively prohibited"),
        (TIME_EXCEEDED, 0, "time to live exceeded in transit"),
        (PARAM, 0, "parameter problem"),
    ],
)
def test_soft_errors_are_reported_and_the_connection_goes_on(type_, code, text):
    """SHLD-25: report to the application; MUST-56: do not abort (codes 0, 1, 5, time exceeded, param)."""
    c = Pooled()
    (first,) = c.send(100)
    c.icmp(type_, code, first)
    assert (EventKind.NETWORK_ERROR, f"{text} (ICMP from {ROUTER})") in c.events
    assert c.tcb.state is State.ESTABLISHED and c.tcb.soft_error == text
    assert c.tcb.status(0.05).icmp_errors == 1


def test_a_connection_that_times_out_after_a_soft_error_says_so():
    """RFC 1122 4.2.3.9: the soft error is what the user hears when the connection finally times out."""
    c = Pooled(TcbConfig(r2=5.0))
    (first,) = c.send(100)
    c.icmp(UNREACH, UnreachCode.HOST, first)
    now = 0.05
    while c.tcb.state is not State.CLOSED:
        now = c.tcb._timers[RTX]
        c.pool.fire_timer(c.conn, now)
    told = "error: connection aborted due to user timeout (last ICMP: host unreachable)"
    assert (EventKind.TIMED_OUT, told) in c.events


@pytest.mark.parametrize(("code", "text"), [(UnreachCode.PROTOCOL, "protocol"), (UnreachCode.PORT, "port")])
def test_protocol_or_port_unreachable_aborts_the_connection(code, text):
    """SHLD-26: destination unreachable codes 2 and 3 are hard errors: the connection is aborted."""
    c = Pooled()
    (first,) = c.send(100)
    assert c.icmp(UNREACH, code, first) == []
    assert (EventKind.UNREACHABLE, f"{text} unreachable (ICMP from {ROUTER})") in c.events
    assert c.tcb.state is State.CLOSED
    assert c.tcb.send(b"x", 0.1).error is TcpError.UNREACHABLE


def test_an_error_quoting_nothing_in_flight_is_not_believed():
    """RFC 5927 section 4.1: the quoted sequence number must lie in [SND.UNA, SND.NXT)."""
    c = Pooled()
    assert len(c.send(100)) == 1
    for seq in (BASE - 1, BASE + 100, BASE + 100_000):
        forged = TcpSegment(40000, 80, seq=seq, flags=Flags.ACK)
        c.icmp(UNREACH, UnreachCode.PORT, forged)
    assert c.tcb.state is State.ESTABLISHED and c.events == []
    assert c.tcb.status(0.1).icmp_ignored == 3


def test_source_quench_redirect_and_errors_for_no_connection_are_ignored():
    """MUST-55: source quench is silently discarded; a host takes no redirects."""
    c = Pooled()
    (first,) = c.send(100)
    c.icmp(IcmpType.SOURCE_QUENCH, 0, first)
    c.icmp(UNREACH, UnreachCode.PORT, first, sport=40001)  # quotes a connection we do not have
    assert c.tcb.state is State.ESTABLISHED and c.events == []
    assert c.pool.icmp_ignored == 2


def test_fragmentation_needed_lowers_the_mss_and_sends_again_at_once():
    """RFC 1191 / SHLD-6: the path MTU falls to the next-hop MTU; what is in flight goes again in smaller
    segments at once, and cwnd is kept (not a congestion signal)."""
    c = Pooled()
    c.tcb.cc.cwnd = 10 * MSS
    sent = c.send(4 * MSS)
    assert [len(s.payload) for s in sent] == [MSS] * 4
    cwnd = c.tcb.cc.cwnd
    again = c.icmp(UNREACH, UnreachCode.FRAGMENTATION_NEEDED, sent[0], mtu=1000)
    assert c.tcb.path_mtu == 1000 and c.tcb.eff_snd_mss == 960
    assert [(s.seq - BASE, len(s.payload)) for s in again][:3] == [(0, 960), (960, 960), (1920, 960)]
    assert sum(len(s.payload) for s in again) == 4 * MSS
    assert c.tcb.cc.cwnd == cwnd and c.tcb.rto_expiries == 0
    assert (EventKind.PATH_MTU, "path MTU 1000: segments of at most 960 octets") in c.events
    assert all(len(s.payload) <= 960 for s in c.send(5000))


def test_path_mtu_never_rises_and_never_falls_below_the_floor():
    c = Pooled()
    sent = c.send(2 * MSS)
    c.icmp(UNREACH, UnreachCode.FRAGMENTATION_NEEDED, sent[0], mtu=9000)
    assert c.tcb.path_mtu == 1500
    c.icmp(UNREACH, UnreachCode.FRAGMENTATION_NEEDED, sent[0], mtu=68)
    assert c.tcb.path_mtu == MIN_PMTU


def test_a_router_that_gives_no_mtu_gets_the_next_plateau():
    """RFC 1191 section 5: with a next-hop MTU of zero, step down to the plateau below the datagram."""
    c = Pooled()
    sent = c.send(2 * MSS)
    c.icmp(UNREACH, UnreachCode.FRAGMENTATION_NEEDED, sent[0], mtu=0)
    assert c.tcb.path_mtu == 1492  # the plateau below the 1500-octet datagram (IEEE 802.3)


def test_the_user_can_turn_soft_error_reports_off():
    """SHLD-20: the application can disable the error report routine; the error is still counted and
    kept for a timeout's message."""
    c = Pooled(TcbConfig(icmp_reports=False))
    (first,) = c.send(100)
    c.icmp(UNREACH, UnreachCode.HOST, first)
    assert c.events == [] and c.tcb.soft_error == "host unreachable" and c.tcb.icmp_errors == 1
