"""The pure parts of the fast link (stack/link/packet.py): the checksum-field value `send_tcp` expects,
the virtio_net_hdr it packs, the software cut it falls back to, and the impairment layer's face of it.

Checksums and headers are checked with dpkt and scapy, not with the stack's own code.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import dpkt
import pytest

from stack.link.impair import ImpairedLink
from stack.link.packet import (
    GSO_TCPV4,
    NEEDS_CSUM,
    gso_max_for,
    is_source_routed,
    pseudo_header_sum,
    segment,
    vnet_header,
)
from stack.link.raw import RawLink

scapy = pytest.importorskip("scapy.all")

SRC = IPv4Address("198.18.0.1")
DST = IPv4Address("198.18.0.2")
FIN, PSH, ACK, URG, CWR = 0x01, 0x08, 0x10, 0x20, 0x80


def offload_datagram(
    payload: bytes, *, flags: int = PSH | ACK, options: bytes = b"", seq: int = 1000
) -> bytes:
    """A TCP datagram as `send_tcp` takes it: built by scapy, then its TCP checksum field replaced by
    the folded pseudo-header sum of the whole TCP length."""
    ip = scapy.IP(src=str(SRC), dst=str(DST), id=7, flags="DF", options=options)
    tcp = scapy.TCP(sport=40000, dport=9, seq=seq, ack=5, flags=flags, window=501)
    raw = bytearray(bytes(ip / tcp / payload))
    ihl = (raw[0] & 0x0F) * 4
    struct.pack_into("!H", raw, ihl + 16, pseudo_header_sum(SRC, DST, len(raw) - ihl))
    return bytes(raw)


def dpkt_tcp_checksum_ok(datagram: bytes) -> bool:
    """dpkt recomputes the TCP checksum of a zeroed copy; equal to the one carried means it is right."""
    ip = dpkt.ip.IP(datagram)
    carried = ip.data.sum
    fresh = dpkt.ip.IP(datagram)
    fresh.data.sum = 0
    fresh.sum = 0
    return dpkt.ip.IP(bytes(fresh)).data.sum == carried and dpkt.ip.IP(bytes(fresh)).sum == ip.sum


# ---------------------------------------------------------------------- the checksum-field value


@pytest.mark.parametrize("length", [20, 21, 1480, 65515])
def test_pseudo_header_sum_completes_to_scapys_checksum(length: int) -> None:
    """Adding the folded sum of the TCP header and data to the pseudo-header sum and complementing
    gives scapy's checksum for the same segment: the value is the uncomplemented pseudo-header sum."""
    payload = bytes((i * 7) & 0xFF for i in range(length - 20))
    seg = bytes(scapy.IP(src=str(SRC), dst=str(DST)) / scapy.TCP(sport=1, dport=2, flags="A") / payload)
    expected = struct.unpack_from("!H", seg, 36)[0]
    tcp = bytearray(seg[20:])
    tcp[16:18] = b"\0\0"
    words = int.from_bytes(tcp + (b"\0" if len(tcp) % 2 else b""), "big")
    total = words + pseudo_header_sum(SRC, DST, length)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert ~total & 0xFFFF == expected


def test_pseudo_header_sum_is_the_folded_sum_of_the_twelve_octets() -> None:
    pseudo = SRC.packed + DST.packed + bytes([0, 6]) + struct.pack("!H", 1000)
    total = sum(struct.unpack("!6H", pseudo))
    folded = (total & 0xFFFF) + (total >> 16)
    assert pseudo_header_sum(SRC, DST, 1000) == folded
    with pytest.raises(ValueError):
        pseudo_header_sum(SRC, DST, 65536)


# ---------------------------------------------------------------------- the virtio_net_hdr


def test_vnet_header_for_a_datagram_the_kernel_cuts() -> None:
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack(
        "<BBHHHH", vnet_header(20, 32, 64000, 1448)
    )
    assert (flags, gso_type) == (NEEDS_CSUM, GSO_TCPV4)
    assert hdr_len == 14 + 20 + 32
    assert gso_size == 1448
    assert (csum_start, csum_offset) == (14 + 20, 16)


def test_vnet_header_for_one_segment_only_completes_the_checksum() -> None:
    assert struct.unpack("<BBHHHH", vnet_header(24, 20, 1448, 1448)) == (1, 0, 58, 0, 38, 16)


def test_vnet_header_asks_for_ecn_segmentation_when_cwr_is_set() -> None:
    assert vnet_header(20, 20, 3000, 1000, cwr=True)[1] == GSO_TCPV4 | 0x80


def test_gso_max_leaves_room_for_the_largest_headers() -> None:
    assert gso_max_for(65536) == 65536 - 14 - 60 - 60  # veth: its skbs hold the Ethernet header too
    assert gso_max_for(512 * 1024) == 65535 - 60 - 60  # BIG TCP devices: IPv4's own limit binds
    assert RawLink.offload is False and RawLink.gso_max == 0


def test_source_routes_are_found_among_the_options() -> None:
    lsrr = bytes(scapy.IP(options=[scapy.IPOption_LSRR(routers=["198.18.0.9"])]))
    rr = bytes(scapy.IP(options=[scapy.IPOption_RR(routers=["0.0.0.0"])]))
    nop_then_ssrr = bytes(
        scapy.IP(options=[scapy.IPOption_NOP(), scapy.IPOption_SSRR(routers=["198.18.0.9"])])
    )
    assert is_source_routed(lsrr, (lsrr[0] & 0xF) * 4)
    assert is_source_routed(nop_then_ssrr, (nop_then_ssrr[0] & 0xF) * 4)
    assert not is_source_routed(rr, (rr[0] & 0xF) * 4)
    assert not is_source_routed(bytes(scapy.IP()), 20)


# ---------------------------------------------------------------------- the software cut


def test_segment_cuts_as_the_kernel_does_with_correct_checksums() -> None:
    data = bytes(range(256)) * 20  # 5120 octets
    pieces = segment(offload_datagram(data, flags=CWR | PSH | FIN | ACK), 20, 1448)
    assert [len(dpkt.ip.IP(p).data.data) for p in pieces] == [1448, 1448, 1448, 776]
    parsed = [dpkt.ip.IP(p) for p in pieces]
    assert all(dpkt_tcp_checksum_ok(p) for p in pieces)
    assert b"".join(p.data.data for p in parsed) == data
    assert [p.data.seq for p in parsed] == [1000, 2448, 3896, 5344]
    assert [p.data.flags for p in parsed] == [CWR | ACK, ACK, ACK, PSH | FIN | ACK]
    assert [p.id for p in parsed] == [7, 8, 9, 10]
    assert all(p.len == len(raw) for p, raw in zip(parsed, pieces, strict=True))


def test_segment_keeps_ip_options_and_an_odd_tail() -> None:
    data = b"x" * 2001
    options = bytes(scapy.IPOption_RR(routers=["0.0.0.0"])) + b"\0"
    pieces = segment(offload_datagram(data, options=options), 28, 1000)
    assert [len(dpkt.ip.IP(p).data.data) for p in pieces] == [1000, 1000, 1]
    assert all(dpkt.ip.IP(p).hl == 7 for p in pieces)
    assert all(dpkt_tcp_checksum_ok(p) for p in pieces)


def test_segment_of_a_short_datagram_completes_its_checksum() -> None:
    (only,) = segment(offload_datagram(b"hello"), 20, 1448)
    expected = bytes(
        scapy.IP(src=str(SRC), dst=str(DST), id=7, flags="DF")
        / scapy.TCP(sport=40000, dport=9, seq=1000, ack=5, flags="PA", window=501)
        / b"hello"
    )
    assert only == expected
    (bare,) = segment(offload_datagram(b"", flags=ACK), 20, 1448)
    assert dpkt_tcp_checksum_ok(bare)


# ---------------------------------------------------------------------- the impairment layer


class OffloadingLink:
    """A fake link that can cut: records whole datagrams handed to send_tcp and single ones to send."""

    address = SRC
    mtu = 1500
    offload = True
    gso_max = 65402

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.cut: list[tuple[bytes, int]] = []

    def send(self, datagram: bytes, dst: IPv4Address) -> None:
        self.sent.append(datagram)

    def send_tcp(self, datagram: bytes, dst: IPv4Address, ip_header_len: int, mss: int) -> None:
        self.cut.append((datagram, mss))

    def receive(self, timeout: float | None, wakeup: int | None = None) -> list[object]:
        return []

    def close(self) -> None:
        pass


def test_an_impaired_link_offloads_only_while_nothing_is_impaired() -> None:
    inner = OffloadingLink()
    link = ImpairedLink(inner, seed=1)
    try:
        assert link.offload and link.gso_max == 65402
        big = offload_datagram(b"y" * 3000)
        link.send_tcp(big, DST, 20, 1000)
        assert inner.cut == [(big, 1000)] and not inner.sent

        link.set("in", loss=0.01)
        assert not link.offload and link.gso_max == 65402
        link.send_tcp(big, DST, 20, 1000)  # set meanwhile: cut here, each piece through the impairment
        assert len(inner.cut) == 1
        assert [len(dpkt.ip.IP(p).data.data) for p in inner.sent] == [1000, 1000, 1000]
        assert all(dpkt_tcp_checksum_ok(p) for p in inner.sent)

        link.off()
        assert link.offload
    finally:
        link.close()


def test_an_impaired_raw_link_does_not_offload() -> None:
    class Plain(OffloadingLink):
        offload = False
        gso_max = 0

    link = ImpairedLink(Plain(), seed=1)
    assert not link.offload and link.gso_max == 0
