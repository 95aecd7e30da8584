"""The fast link (stack/link/packet.py) on the wire: what `send_tcp` hands the kernel arrives on the
kernel's side of the lab as segments of the MSS with correct checksums, the frames go to the MAC
address the kernel's neighbour table holds (the plain way until it holds one), and coalesced frames
from Linux's TCP reach the stack whole.

The oracle is independent of the stack: an AF_PACKET capture in the kernel's namespace, parsed and
checksummed with dpkt, and the Linux kernel's own TCP. Each test builds a lab of its own, since some
change the veth's offloads or addresses.
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import dpkt
import pytest

from stack import netns
from stack.lab import Lab
from stack.link.packet import PacketLink, pseudo_header_sum
from tests.interop.conftest import make_lab, wait_for

scapy = pytest.importorskip("scapy.all")

MSS = 1460  # the lab's MTU of 1500 less the IP and TCP headers
SPORT, DPORT = 40123, 9
ETH_P_ALL = 0x0003
NUD_REACHABLE = 0x02


@pytest.fixture
def plain_lab() -> Iterator[Lab]:
    """A lab of the test's own, without services (the kernel's side needs none but its TCP)."""
    the_lab = make_lab(services=False)
    try:
        yield the_lab
    finally:
        the_lab.close()


def offloads(lab: Lab, *, segmentation: bool, checksum: bool) -> None:
    """TSO and tx checksum offload on the stack's veth (pyroute2's Ethtool, as bench/labs.py)."""
    from pyroute2.ethtool import Ethtool

    with netns.entered(lab.stack_ns):
        tool = Ethtool()
        try:
            features = tool.get_features(lab.stack_if)
            features.features["tx-tcp-segmentation"].enable = segmentation
            features.features["tx-checksum-ip-generic"].enable = checksum
            tool.set_features(lab.stack_if, features)
        finally:
            tool.close()


def tcp_datagram(payload: bytes, *, seq: int = 1000, whole_length: bool = True) -> bytes:
    """An IPv4 TCP datagram from the stack to the kernel (headers by scapy) as `send_tcp` takes it:
    the checksum field holds the pseudo-header sum of the whole TCP length (or, `whole_length`
    False, of length zero: the wrong convention, for a control)."""
    ip = scapy.IP(src="198.18.0.1", dst="198.18.0.2", id=100, flags="DF")
    raw = bytearray(bytes(ip / scapy.TCP(sport=SPORT, dport=DPORT, seq=seq, ack=1, flags="PA") / payload))
    length = len(raw) - 20 if whole_length else 0
    struct.pack_into(
        "!H",
        raw,
        36,
        pseudo_header_sum(IPv4Address(bytes(raw[12:16])), IPv4Address(bytes(raw[16:20])), length),
    )
    return bytes(raw)


class Capture:
    """Every frame on the kernel's veth end, read by an AF_PACKET socket in the kernel's namespace."""

    def __init__(self, lab: Lab) -> None:
        with lab.enter_kernel_ns():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((lab.kernel_if, ETH_P_ALL))
        self.frames: list[bytes] = []

    def tcp_from_stack(self, port: int = SPORT) -> list[dpkt.ethernet.Ethernet]:
        out = []
        for frame in self.frames:
            eth = dpkt.ethernet.Ethernet(frame)
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP) and ip.data.sport == port:
                out.append(eth)
        return out

    def until(self, payload_octets: int, timeout: float = 10.0) -> list[dpkt.ethernet.Ethernet]:
        """Read frames until the stack's segments carry `payload_octets` in all; those segments."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while sum(len(e.data.data.data) for e in self.tcp_from_stack()) < payload_octets:
            if time.monotonic() > deadline:
                pytest.fail(f"{payload_octets} octets did not arrive within {timeout:g} s")
            with contextlib.suppress(TimeoutError):
                self.frames.append(self.sock.recv(1 << 17))
        return self.tcp_from_stack()

    def clear(self) -> None:
        self.frames.clear()

    def close(self) -> None:
        self.sock.close()


def checksum_ok(ip: dpkt.ip.IP) -> bool:
    """dpkt computes the TCP checksum of a copy with the field zeroed; it must equal the one carried.
    (dpkt fills in a zeroed TCP checksum only while it fills in the IP header's too.)"""
    carried = ip.data.sum
    copy = dpkt.ip.IP(bytes(ip))
    copy.data.sum = 0
    copy.sum = 0
    return dpkt.ip.IP(bytes(copy)).data.sum == carried


def neighbour_reachable(lab: Lab) -> bool:
    from pyroute2 import IPRoute

    with netns.entered(lab.stack_ns):
        ipr = IPRoute()
        try:
            entries = ipr.get_neighbours(dst=str(lab.kernel_addr))
            return any(e["state"] & NUD_REACHABLE and e.get("NDA_LLADDR") for e in entries)
        finally:
            ipr.close()


def resolved(link: PacketLink, lab: Lab) -> None:
    """Have the stack's kernel resolve the far side's MAC address (an ICMP echo request through the
    raw socket, which the kernel routes), wait until it has, and make the link read it."""
    echo = scapy.IP(src=str(lab.stack_addr), dst=str(lab.kernel_addr)) / scapy.ICMP()
    link.send(bytes(echo), lab.kernel_addr)
    wait_for(lambda: neighbour_reachable(lab), 10, "the kernel's neighbour entry for the far side")
    link.forget()


@pytest.fixture
def link_and_capture(plain_lab: Lab) -> Iterator[tuple[PacketLink, Capture]]:
    link = PacketLink(plain_lab.stack_if, plain_lab.stack_addr, namespace=plain_lab.enter_stack_ns())
    capture = Capture(plain_lab)
    try:
        yield link, capture
    finally:
        capture.close()
        link.close()


def test_a_64k_datagram_arrives_as_mss_segments_with_correct_checksums(
    plain_lab: Lab, link_and_capture: tuple[PacketLink, Capture]
) -> None:
    """TSO and tx checksum off on the stack's veth, so that the kernel cuts and checksums in software
    before the veth and the capture sees what a wire would carry."""
    link, capture = link_and_capture
    offloads(plain_lab, segmentation=False, checksum=False)
    assert link.offload and link.gso_max >= 64000
    payload = bytes((i * 31 + i // 256) & 0xFF for i in range(65400))
    assert len(payload) <= link.gso_max
    resolved(link, plain_lab)

    link.send_tcp(tcp_datagram(payload), plain_lab.kernel_addr, 20, MSS)
    segments = capture.until(len(payload))

    assert len(segments) == math.ceil(len(payload) / MSS) == 45
    assert all(len(bytes(e)) <= 14 + link.mtu for e in segments)
    assert all(len(e.data.data.data) == MSS for e in segments[:-1])
    assert all(checksum_ok(e.data) for e in segments)
    assert [e.data.data.seq for e in segments] == [1000 + i * MSS for i in range(45)]
    assert b"".join(e.data.data.data for e in segments) == payload
    assert {e.dst for e in segments} == {bytes.fromhex(plain_lab.kernel_mac.replace(":", ""))}
    assert [bool(e.data.data.flags & dpkt.tcp.TH_PUSH) for e in segments] == [False] * 44 + [True]


def test_the_checksum_field_must_hold_the_sum_over_the_whole_length(
    plain_lab: Lab, link_and_capture: tuple[PacketLink, Capture]
) -> None:
    """The control: a pseudo-header sum taken with the TCP length left out gives wrong checksums, so
    the test above tells the two conventions apart."""
    link, capture = link_and_capture
    offloads(plain_lab, segmentation=False, checksum=False)
    resolved(link, plain_lab)
    link.send_tcp(tcp_datagram(bytes(5000), whole_length=False), plain_lab.kernel_addr, 20, MSS)
    segments = capture.until(5000)
    assert len(segments) == 4
    assert not any(checksum_ok(e.data) for e in segments)


def test_a_small_datagram_arrives_whole_with_a_correct_checksum(
    plain_lab: Lab, link_and_capture: tuple[PacketLink, Capture]
) -> None:
    link, capture = link_and_capture
    offloads(plain_lab, segmentation=False, checksum=False)
    resolved(link, plain_lab)
    link.send_tcp(tcp_datagram(b"hello, kernel"), plain_lab.kernel_addr, 20, MSS)
    (segment,) = capture.until(13)
    assert segment.data.data.data == b"hello, kernel"
    assert checksum_ok(segment.data)


def test_until_the_neighbour_is_known_datagrams_go_the_plain_way(
    plain_lab: Lab, link_and_capture: tuple[PacketLink, Capture]
) -> None:
    """With the veth's TSO on (its default), a frame the kernel did not cut crosses it whole: so one
    frame on the far side shows the packet socket's path, MSS segments the plain one. Before the stack's
    kernel has the far side's MAC address the datagram is cut in software, each segment complete;
    the kernel then resolves the address, and the next datagram leaves whole through the packet socket."""
    link, capture = link_and_capture
    from pyroute2 import IPRoute

    with netns.entered(plain_lab.stack_ns):
        ipr = IPRoute()
        with contextlib.suppress(Exception):
            ipr.neigh("del", dst=str(plain_lab.kernel_addr), ifindex=plain_lab.stack_ifindex)
        ipr.close()
    assert not neighbour_reachable(plain_lab)
    payload = bytes(range(256)) * 40  # 10,240 octets: 8 segments

    link.send_tcp(tcp_datagram(payload), plain_lab.kernel_addr, 20, MSS)
    plain = capture.until(len(payload))
    assert len(plain) == 8 and all(checksum_ok(e.data) for e in plain)
    assert b"".join(e.data.data.data for e in plain) == payload

    resolved(link, plain_lab)
    capture.clear()
    link.send_tcp(tcp_datagram(payload, seq=20000), plain_lab.kernel_addr, 20, MSS)
    (whole,) = capture.until(len(payload))
    assert whole.data.data.data == payload and whole.data.data.seq == 20000


def test_a_new_mac_address_in_the_neighbour_table_is_followed(plain_lab: Lab) -> None:
    """The far side changes its MAC address and the stack's kernel learns it: within `refresh` seconds
    the link sends to the new one, with no other call."""
    link = PacketLink(
        plain_lab.stack_if, plain_lab.stack_addr, namespace=plain_lab.enter_stack_ns(), refresh=0.05
    )
    capture = Capture(plain_lab)
    from pyroute2 import IPRoute

    try:
        resolved(link, plain_lab)
        link.send_tcp(tcp_datagram(b"before"), plain_lab.kernel_addr, 20, MSS)
        (before,) = capture.until(6)
        new_mac = "02:00:5e:10:00:01"
        with netns.entered(plain_lab.kernel_ns):
            ipr = IPRoute()
            ipr.link("set", index=ipr.link_lookup(ifname=plain_lab.kernel_if)[0], address=new_mac)
            ipr.close()
        with netns.entered(plain_lab.stack_ns):
            ipr = IPRoute()
            ipr.neigh(
                "replace",
                dst=str(plain_lab.kernel_addr),
                ifindex=plain_lab.stack_ifindex,
                lladdr=new_mac,
                state=NUD_REACHABLE,
            )
            ipr.close()
        wanted = bytes.fromhex(new_mac.replace(":", ""))
        seq = 5000

        def sent_to_new_mac() -> bool:
            nonlocal seq
            capture.clear()
            link.send_tcp(tcp_datagram(b"after", seq=seq), plain_lab.kernel_addr, 20, MSS)
            seq += 5
            return capture.until(5)[-1].dst == wanted

        assert before.dst == bytes.fromhex(plain_lab.kernel_mac.replace(":", ""))
        wait_for(sent_to_new_mac, 5, "a frame to the far side's new MAC address")
    finally:
        capture.close()
        link.close()


def test_coalesced_frames_from_linux_arrive_whole_and_need_no_checksum_check(plain_lab: Lab) -> None:
    """A crafted client (scapy) opens a connection to a Linux listener through the link and acknowledges
    what Linux sends: Linux's TCP sends TSO frames over the veth, which reach the stack whole, marked
    as not to be checked again (the kernel left their checksums to offload), and carry the data exactly."""
    link = PacketLink(
        plain_lab.stack_if, plain_lab.stack_addr, namespace=plain_lab.enter_stack_ns(), gro=True
    )
    data = bytes((i * 13) & 0xFF for i in range(400_000))
    with plain_lab.enter_kernel_ns():
        listener = socket.socket()
    listener.bind((str(plain_lab.kernel_addr), 5001))
    listener.listen(1)
    listener.settimeout(10)
    sent: list[int] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(data)
            sent.append(len(data))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    stack, kernel = str(plain_lab.stack_addr), str(plain_lab.kernel_addr)

    def segment(flags: str, seq: int, ack: int = 0) -> bytes:
        return bytes(
            scapy.IP(src=stack, dst=kernel)
            / scapy.TCP(sport=41000, dport=5001, flags=flags, seq=seq, ack=ack, window=65535)
        )

    received: dict[int, bytes] = {}
    big: list[tuple[int, bool]] = []
    try:
        link.send(segment("S", 7000), plain_lab.kernel_addr)
        deadline = time.monotonic() + 20
        isn = None
        rcv_nxt = 0
        while (isn is None or rcv_nxt - isn - 1 < len(data)) and time.monotonic() < deadline:
            for frame in link.receive(0.5):
                ip = dpkt.ip.IP(frame.data)
                tcp = ip.data
                if not isinstance(tcp, dpkt.tcp.TCP) or tcp.sport != 5001:
                    continue
                if tcp.flags & dpkt.tcp.TH_SYN:
                    isn, rcv_nxt = tcp.seq, tcp.seq + 1
                elif tcp.data:
                    received[tcp.seq] = tcp.data
                    if len(frame.data) > link.mtu:
                        big.append((len(frame.data), frame.verify_checksum))
                    while rcv_nxt in received:
                        rcv_nxt += len(received[rcv_nxt])
                link.send(segment("A", 7001, rcv_nxt), plain_lab.kernel_addr)
        assert isn is not None, "no SYN,ACK from Linux"
        stream = b""
        at = isn + 1
        while at in received and len(stream) < len(data):
            stream += received[at]
            at += len(received[at])
        assert stream == data
        assert big, "no frame longer than the MTU reached the stack"
        assert max(size for size, _ in big) > 2 * link.mtu
        assert not any(verify for _, verify in big)
    finally:
        link.send(segment("R", 7001), plain_lab.kernel_addr)
        listener.close()
        server.join(timeout=5)
        link.close()
