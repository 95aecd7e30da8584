"""Source routes (RFC 9293 section 3.9.2.1, RFC 791 3.1, RFC 1122 3.2.1.8) at the datagram level, over a
fake link with the stack's threads running; scapy reads the options back as an independent oracle."""

from __future__ import annotations

from ipaddress import IPv4Address

from scapy.layers.inet import IP

from stack.runtime import Stack
from stack.tcp import State
from stack.wire import Flags, IpProto, IPv4Header, TcpOptions, TcpSegment, build_ipv4, build_tcp, parse_ipv4
from stack.wire.ipv4 import LSRR, recorded_route, source_route_option
from stack.wire.tcp import parse_tcp
from tests.unit.test_ip_input import PEER, STACK, FakeLink, wait_until

G1, G2 = IPv4Address("198.18.1.1"), IPv4Address("198.18.2.1")
R1, R2 = IPv4Address("198.18.3.1"), IPv4Address("198.18.4.1")


def completed(*recorded: IPv4Address) -> bytes:
    """A loose source route option as it reaches its destination: every entry recorded, pointer past."""
    option = bytearray(source_route_option(recorded))
    option[2] = len(option) + 1
    return bytes(option)


def segment_from_peer(seg: TcpSegment, options: bytes) -> bytes:
    header = IPv4Header(src=PEER, dst=STACK, protocol=IpProto.TCP, options=options)
    return build_ipv4(header, build_tcp(seg, PEER, STACK))


def sent_by_scapy(datagram: bytes) -> tuple[IPv4Address, int, list[IPv4Address]]:
    pkt = IP(datagram)
    (opt,) = [o for o in pkt.options if o.option != 0]  # the zero octets that pad it are End of List
    assert opt.option == LSRR & 0x1F and opt.copy_flag == 1
    return IPv4Address(pkt.dst), opt.pointer, [IPv4Address(r) for r in opt.routers]


def test_an_active_open_with_a_source_route_sends_every_datagram_by_it(stack: Stack, link: FakeLink) -> None:
    """MUST-51: the application gives the route at OPEN; the datagram goes to the first hop with the
    rest and the destination in the option; the TCP checksum covers the final destination."""
    stack.open(PEER, 80, route=(G1, G2), wait=False, local_port=40000)
    (syn,) = link.wait_sent(1)
    assert sent_by_scapy(syn) == (G1, 4, [G2, PEER])
    seg = parse_tcp(parse_ipv4(syn)[1], STACK, PEER)  # raises if the checksum named another destination
    assert seg.flags == Flags.SYN
    assert stack.status("c1").route == (str(G1), str(G2))


def test_a_syn_that_came_by_a_source_route_is_answered_by_the_reverse_route(
    stack: Stack, link: FakeLink
) -> None:
    """MUST-53: a passive OPEN saves the return route of a completed source route and uses it for all
    the connection's segments (RFC 1122 3.2.1.8: the recorded route, reversed)."""
    stack.listen(80)
    syn = TcpSegment(5000, 80, seq=100, flags=Flags.SYN, window=8000, options=TcpOptions(mss=1460))
    link.arrive(segment_from_peer(syn, completed(R1, R2)))
    (synack,) = link.wait_sent(1)
    assert sent_by_scapy(synack) == (R2, 4, [R1, PEER])
    iss = parse_tcp(parse_ipv4(synack)[1]).seq
    ack = TcpSegment(5000, 80, seq=101, ack=iss + 1, flags=Flags.ACK, window=8000)
    link.arrive(segment_from_peer(ack, b""))  # later segments need not carry the route again
    wait_until(lambda: stack.status("c1").state is State.ESTABLISHED, "the handshake")
    stack.send("c1", b"hello", push=True)
    data = link.wait_sent(2)[-1]
    assert sent_by_scapy(data)[0] == R2


def test_a_route_the_user_gave_overrides_one_that_arrives(stack: Stack, link: FakeLink) -> None:
    """MUST-52, and SHLD-24 for a passive connection: a later received route overrides an earlier one."""
    stack.open(PEER, 80, route=(G1,), wait=False, local_port=40000)
    (syn,) = link.wait_sent(1)
    iss = parse_tcp(parse_ipv4(syn)[1]).seq
    synack = TcpSegment(80, 40000, seq=900, ack=iss + 1, flags=Flags.SYN | Flags.ACK, window=8000)
    link.arrive(segment_from_peer(synack, completed(R1)))
    ack = link.wait_sent(2)[-1]
    assert sent_by_scapy(ack)[0] == G1  # the user's route stands
    stack.listen(81)
    link.arrive(segment_from_peer(TcpSegment(6000, 81, seq=5, flags=Flags.SYN, window=8000), completed(R1)))
    link.wait_sent(3)
    link.arrive(segment_from_peer(TcpSegment(6000, 81, seq=5, flags=Flags.SYN, window=8000), completed(R2)))
    again = link.wait_sent(4)[-1]
    assert sent_by_scapy(again)[:2] == (R2, 4)  # the SYN,ACK again, by the newer route


def test_recorded_route_reads_only_completed_well_formed_options() -> None:
    assert recorded_route(completed(R1, R2)) == (R1, R2)
    assert recorded_route(b"\x01" + completed(R1)) == (R1,)  # after a NOP
    assert recorded_route(source_route_option([R1, R2])) is None  # not at its destination yet
    assert recorded_route(b"\x83\x07\x08\xc6\x12") is None  # cut short
    assert recorded_route(b"\x07\x07\x04" + R1.packed) is None  # record route, not source route
    assert recorded_route(b"") is None


def test_only_a_segment_the_connection_takes_can_change_its_route(stack: Stack, link: FakeLink) -> None:
    """A forged segment that the connection drops (a RST far outside the window) must not redirect it;
    a segment it takes does (SHLD-24)."""
    stack.open(PEER, 80, wait=False, local_port=40000)
    (syn,) = link.wait_sent(1)
    iss = parse_tcp(parse_ipv4(syn)[1]).seq
    synack = TcpSegment(80, 40000, 900, iss + 1, Flags.SYN | Flags.ACK, window=8000)
    link.arrive(segment_from_peer(synack, b""))
    wait_until(lambda: stack.status("c1").state is State.ESTABLISHED, "the handshake")
    forged = TcpSegment(80, 40000, 900 + 123_456_789, iss + 1, Flags.RST, window=8000)
    link.arrive(segment_from_peer(forged, completed(R1)))
    plain = TcpSegment(80, 40000, 901, iss + 1, Flags.ACK | Flags.PSH, window=8000, payload=b"hi")
    link.arrive(segment_from_peer(plain, b""))  # after the forgery, in order: when it is in, so is that
    wait_until(lambda: stack.status("c1").rcv_nxt == 903, "the first data")
    assert stack.status("c1").route == ()
    data = TcpSegment(80, 40000, 903, iss + 1, Flags.ACK | Flags.PSH, window=8000, payload=b"yo")
    link.arrive(segment_from_peer(data, completed(R2)))
    wait_until(lambda: stack.status("c1").rcv_nxt == 905, "the second data")
    assert stack.status("c1").route == (str(R2),)
