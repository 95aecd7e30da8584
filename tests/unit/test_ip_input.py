"""The stack's IPv4 input path (Stack._input in stack/runtime.py) over a fake link, with the threads
running: fragments reassembled and then processed like any datagram, ICMP echo answered, ICMP errors
handed to the pool, IP options ignored (RFC 9293 MUST-50), and bad packets counted, never raised out of
the receive thread. Waits are on a condition or a counter, with a timeout; no test sleeps instead."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address

import pytest

from stack.link.raw import Frame
from stack.runtime import Stack
from stack.tcp import State, TcbConfig
from stack.wire import (
    NO_OPTIONS,
    Flags,
    IcmpMessage,
    IcmpType,
    IpProto,
    IPv4Flags,
    IPv4Header,
    TcpOptions,
    TcpSegment,
    UnreachCode,
    build_icmp,
    build_ipv4,
    build_tcp,
    echo_request,
    icmp_error,
    parse_icmp,
    parse_ipv4,
    parse_tcp,
)
from stack.wire.reassembly import Reassembler, fragment

STACK = IPv4Address("198.18.0.1")
PEER = IPv4Address("198.18.0.2")
WAIT = 10.0


class FakeLink:
    """Records what is sent; hands out queued frames, waiting up to the timeout."""

    address = STACK
    mtu = 1500

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.sent: list[bytes] = []
        self.queue: list[Frame] = []

    def send(self, datagram: bytes, dst: IPv4Address) -> None:
        with self.cv:
            self.sent.append(datagram)
            self.cv.notify_all()

    def receive(self, timeout: float | None, wakeup: int | None = None) -> Iterable[Frame]:
        with self.cv:
            self.cv.wait_for(lambda: self.queue, timeout)
            frames, self.queue = self.queue, []
            return frames

    def arrive(self, *datagrams: bytes) -> None:
        with self.cv:
            self.queue.extend(Frame(d, True) for d in datagrams)
            self.cv.notify_all()

    def wait_sent(self, count: int) -> list[bytes]:
        with self.cv:
            done = self.cv.wait_for(lambda: len(self.sent) >= count, WAIT)
            assert done, f"{len(self.sent)} of {count} sent"
            return list(self.sent)

    def close(self) -> None:
        pass


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def ip(payload: bytes, proto: int = IpProto.ICMP, *, src: IPv4Address = PEER, **kw: object) -> bytes:
    return build_ipv4(IPv4Header(src=src, dst=STACK, protocol=proto, **kw), payload)  # type: ignore[arg-type]


def fragments(datagram: bytes, mtu: int) -> list[bytes]:
    h, payload = parse_ipv4(datagram)
    return [build_ipv4(fh, fd) for fh, fd in fragment(h, bytes(payload), mtu)]


def icmp_of(datagram: bytes) -> tuple[IPv4Header, IcmpMessage]:
    h, payload = parse_ipv4(datagram)
    assert h.protocol == IpProto.ICMP
    return h, parse_icmp(payload)


# ---------------------------------------------------------------------- ICMP echo


def test_echo_request_is_answered(stack: Stack, link: FakeLink) -> None:
    link.arrive(ip(build_icmp(echo_request(0x1234, 7, b"abcdefgh" * 7)), dscp=10, identification=99))
    (reply,) = link.wait_sent(1)
    h, msg = icmp_of(reply)
    assert (h.src, h.dst, h.ttl, h.dscp) == (STACK, PEER, stack.ttl, 10)
    assert not h.is_fragment
    assert msg.type == IcmpType.ECHO_REPLY and msg.code == 0
    assert (msg.ident, msg.seq, msg.body) == (0x1234, 7, b"abcdefgh" * 7)
    c = stack.counters
    assert (c.icmp_in, c.icmp_out, c.echo_replies, c.bad_packets) == (1, 1, 1, 0)


def test_a_fragmented_echo_request_is_reassembled_and_the_reply_fragmented(
    stack: Stack, link: FakeLink
) -> None:
    data = bytes(range(256)) * 16  # 4096 octets: as `ping -s 4096`
    request = ip(build_icmp(echo_request(1, 2, data)), identification=4242)
    pieces = fragments(request, 1500)
    assert len(pieces) == 3
    link.arrive(*reversed(pieces))
    sent = link.wait_sent(3)
    assert all(len(d) <= link.mtu for d in sent)
    r = Reassembler()
    wholes = [w for d in sent if (w := r.add(*parse_ipv4(d), 0.0)) is not None]
    assert len(wholes) == 1
    reply = parse_icmp(wholes[0][1])
    assert reply.type == IcmpType.ECHO_REPLY and reply.body == data and (reply.ident, reply.seq) == (1, 2)
    assert stack.counters.reassembly.reassembled == 1 and stack.counters.reassembly.fragments == 3


@pytest.mark.parametrize(
    "src", [IPv4Address("224.0.0.1"), IPv4Address("255.255.255.255"), IPv4Address("0.0.0.0")]
)
def test_echo_from_a_source_that_is_not_unicast_is_not_answered(
    stack: Stack, link: FakeLink, src: IPv4Address
) -> None:
    link.arrive(ip(build_icmp(echo_request(1, 1)), src=src))
    wait_until(lambda: stack.counters.icmp_ignored == 1, "the request to be ignored")
    assert link.sent == [] and stack.counters.icmp_out == 0


def test_echo_to_another_address_is_not_ours(stack: Stack, link: FakeLink) -> None:
    other = build_ipv4(
        IPv4Header(src=PEER, dst=IPv4Address("198.18.0.255"), protocol=IpProto.ICMP),
        build_icmp(echo_request(1, 1)),
    )
    link.arrive(other)
    wait_until(lambda: stack.counters.not_for_us == 1, "the datagram to be counted")
    assert link.sent == []


def test_other_icmp_types_are_ignored(stack: Stack, link: FakeLink) -> None:
    link.arrive(ip(build_icmp(IcmpMessage(IcmpType.ECHO_REPLY, 0, 5, b"x"))))
    link.arrive(ip(build_icmp(IcmpMessage(IcmpType.TIMESTAMP, 0, 5, bytes(12)))))
    wait_until(lambda: stack.counters.icmp_ignored == 2, "both to be ignored")
    assert link.sent == []


def test_malformed_icmp_is_a_bad_packet_and_the_thread_lives_on(stack: Stack, link: FakeLink) -> None:
    good = build_icmp(echo_request(9, 9, b"payload"))
    bad_checksum = good[:2] + bytes([good[2] ^ 0xFF]) + good[3:]
    link.arrive(ip(good[:5]), ip(bad_checksum), ip(b""))
    wait_until(lambda: stack.counters.bad_packets == 3, "three bad packets")
    assert link.sent == [] and stack.counters.icmp_in == 0
    link.arrive(ip(good))
    link.wait_sent(1)
    assert all(t.is_alive() for t in stack._threads)


def test_other_protocols_are_dropped_and_counted(stack: Stack, link: FakeLink) -> None:
    link.arrive(ip(b"\x00" * 8, IpProto.UDP))
    wait_until(lambda: stack.counters.other_protocols == 1, "the UDP datagram to be counted")
    assert link.sent == []


# ---------------------------------------------------------------------- ICMP errors


def test_icmp_errors_go_to_the_pool(stack: Stack, link: FakeLink, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[IPv4Address, IcmpMessage, float]] = []
    def record(src: IPv4Address, msg: IcmpMessage, now: float) -> None:
        seen.append((src, msg, now))

    monkeypatch.setattr(stack.pool, "icmp_error", record, raising=False)
    ours = build_ipv4(
        IPv4Header(src=STACK, dst=PEER, protocol=IpProto.TCP),
        build_tcp(TcpSegment(40000, 80, seq=123, flags=Flags.SYN), STACK, PEER),
    )
    msg = icmp_error(IcmpType.DEST_UNREACHABLE, UnreachCode.FRAGMENTATION_NEEDED, ours, mtu=1280)
    router = IPv4Address("198.19.0.1")
    link.arrive(ip(build_icmp(msg), src=router))
    wait_until(lambda: len(seen) == 1, "the pool to see the error")
    src, got, _ = seen[0]
    assert src == router and got.next_hop_mtu == 1280 and got.quoted_tcp() == (40000, 80, 123)
    assert stack.counters.icmp_errors == 1 and link.sent == []


def test_icmp_error_the_pool_cannot_use_is_not_fatal(stack: Stack, link: FakeLink) -> None:
    """Whatever the pool does with an error quoting garbage, the receive thread goes on."""
    msg = IcmpMessage(IcmpType.TIME_EXCEEDED, 0, 0, b"\x45garbage")
    link.arrive(ip(build_icmp(msg)), ip(build_icmp(echo_request(1, 1))))
    link.wait_sent(1)
    assert stack.counters.icmp_errors == 1
    assert all(t.is_alive() for t in stack._threads)


# ---------------------------------------------------------------------- TCP through reassembly and options


class Peer:
    """The far end of one connection, crafted by hand: a SYN,ACK to the stack's SYN, then data."""

    def __init__(self, stack: Stack, link: FakeLink) -> None:
        self.stack, self.link = stack, link
        self.cid = stack.open(PEER, 80, wait=False)
        syn = parse_tcp(parse_ipv4(link.wait_sent(1)[0])[1])
        assert syn.flags == Flags.SYN
        self.port, self.their_next = syn.src_port, syn.seq + 1
        self.seq = 70_000

    def segment(self, flags: int, payload: bytes = b"", options: TcpOptions = NO_OPTIONS) -> bytes:
        seg = TcpSegment(
            80, self.port, self.seq, self.their_next, flags, 65535, options=options, payload=payload
        )
        return build_tcp(seg, PEER, STACK)

    def handshake(self, **ip_fields: object) -> None:
        self.link.arrive(ip(self.segment(Flags.SYN | Flags.ACK, options=TcpOptions(mss=1460)), IpProto.TCP,
                            **ip_fields))
        self.seq += 1
        assert self.stack.wait_state(self.cid, State.ESTABLISHED, WAIT)

    def data(self, payload: bytes, **ip_fields: object) -> bytes:
        datagram = ip(self.segment(Flags.ACK | Flags.PSH, payload), IpProto.TCP, **ip_fields)
        self.seq += len(payload)
        return datagram


def receive_exactly(stack: Stack, cid: str, n: int) -> bytes:
    out = b""
    while len(out) < n:
        out += stack.receive(cid, n - len(out), timeout=WAIT)
    return out


# A record-route option (RFC 791: type 7, copied flag clear) with room for two addresses, a NOP, a
# made-up option (type 0x5E) that nothing understands, and End of Option List padding.
OPTIONS = bytes([7, 11, 4]) + bytes(8) + b"\x01" + bytes([0x5E, 4, 0xAA, 0xBB]) + b"\x00" * 4


def test_ip_options_are_ignored_by_tcp_must_50(stack: Stack, link: FakeLink) -> None:
    """RFC 9293 MUST-50: options TCP does not understand are ignored; the segments arrive as usual."""
    peer = Peer(stack, link)
    peer.handshake(options=OPTIONS)
    link.arrive(peer.data(b"through the options", options=OPTIONS))
    assert receive_exactly(stack, peer.cid, 19) == b"through the options"
    assert stack.counters.bad_packets == 0


def test_a_fragmented_segment_arrives_whole(stack: Stack, link: FakeLink) -> None:
    peer = Peer(stack, link)
    peer.handshake()
    payload = bytes(range(256)) * 12  # 3072 octets, one segment
    link.arrive(*fragments(peer.data(payload, identification=777), 576))
    assert receive_exactly(stack, peer.cid, len(payload)) == payload
    assert stack.counters.reassembly.reassembled == 1
    assert stack.counters.segments_in == 2  # the SYN,ACK and the reassembled segment


def test_fragments_out_of_order_with_options_and_duplicates(stack: Stack, link: FakeLink) -> None:
    peer = Peer(stack, link)
    peer.handshake()
    payload = b"0123456789" * 300
    pieces = fragments(peer.data(payload, identification=778, options=OPTIONS), 700)
    link.arrive(pieces[2], pieces[0], pieces[2], *pieces[3:][::-1], pieces[1])
    assert receive_exactly(stack, peer.cid, len(payload)) == payload
    assert stack.counters.reassembly.duplicates == 1


def test_a_tap_sees_the_reassembled_datagram(stack: Stack, link: FakeLink) -> None:
    peer = Peer(stack, link)
    peer.handshake()
    seen: list[tuple[TcpSegment, bytes]] = []
    stack.tap(lambda way, src, dst, seg, datagram: seen.append((seg, datagram)) if way == "in" else None)
    payload = b"x" * 2000
    whole = peer.data(payload, identification=779)
    link.arrive(*fragments(whole, 1000))
    assert receive_exactly(stack, peer.cid, len(payload)) == payload
    (seg, datagram), = seen
    assert seg.payload == payload
    assert bytes(parse_ipv4(datagram)[1]) == bytes(parse_ipv4(whole)[1])


def test_tiny_and_overlapping_tcp_fragments_never_reach_the_connection(stack: Stack, link: FakeLink) -> None:
    peer = Peer(stack, link)
    peer.handshake()
    whole = peer.data(b"A" * 64, identification=780)
    _, payload = parse_ipv4(whole)
    head = IPv4Header(src=PEER, dst=STACK, protocol=IpProto.TCP, identification=780, flags=IPv4Flags.MF)
    # RFC 1858: a first fragment of 16 octets, and a fragment at offset 1 rewriting the flags.
    link.arrive(build_ipv4(head, bytes(payload[:16])))
    link.arrive(build_ipv4(dataclasses.replace(head, fragment_offset=1), bytes(payload[8:24])))
    wait_until(lambda: stack.counters.reassembly.tiny == 2, "both tiny fragments dropped")
    # An overlap with other data: the first 24 octets, then octets 16..40 changed.
    link.arrive(build_ipv4(head, bytes(payload[:24])))
    evil = bytearray(payload[16:40])
    evil[0] ^= 1
    link.arrive(build_ipv4(dataclasses.replace(head, fragment_offset=2), bytes(evil)))
    wait_until(lambda: stack.counters.reassembly.overlaps == 1, "the overlap")
    assert stack.status(peer.cid).recv_queued == 0 and stack.reassembler.in_progress == 0


def test_a_missing_fragment_times_out_on_the_stacks_clock(link: FakeLink) -> None:
    clock = Clock()
    stack = Stack(link, config=TcbConfig(), clock=clock, reassembler=Reassembler(timeout=2.0)).start()
    try:
        request = ip(build_icmp(echo_request(1, 1, bytes(3000))), identification=5)
        pieces = fragments(request, 1500)
        link.arrive(*pieces[:-1])
        wait_until(lambda: stack.counters.reassembly.fragments == 2, "the fragments to be held")
        assert stack.reassembler.in_progress == 1
        clock.now += 2.5  # the receive loop wakes at least twice a second and expires what is due
        wait_until(lambda: stack.counters.reassembly.timed_out == 1, "the timeout")
        assert stack.reassembler.in_progress == 0 and stack.reassembler.memory == 0
        link.arrive(pieces[-1])  # too late: starts a datagram of its own
        wait_until(lambda: stack.counters.reassembly.fragments == 3, "the last fragment")
        assert link.sent == [] and stack.counters.icmp_in == 0
    finally:
        stack.stop()
