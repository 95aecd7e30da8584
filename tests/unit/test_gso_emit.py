"""The runtime's side of segmentation offload: a segment the TCB emits larger than Eff.snd.MSS reaches a
link that can cut it as one datagram with the pseudo-header sum in its checksum field (`send_tcp`), and
a link that cannot as segments of the MSS with whole checksums. dpkt is the oracle for the checksums."""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from stack.runtime import Stack
from stack.tcp import TcbConfig
from stack.wire.checksum import ones_complement_sum
from stack.wire.ipv4 import parse_ipv4
from stack.wire.tcp import TcpSegment, parse_tcp
from tests.unit.conftest import started
from tests.unit.test_ip_input import FakeLink, Peer, wait_until

dpkt = pytest.importorskip("dpkt")

GSO = 65_000
MSS = 1460  # what Peer's SYN,ACK offers


class OffloadLink(FakeLink):
    """A link that takes large TCP datagrams and says how it was asked to cut them."""

    offload = True
    gso_max = GSO

    def __init__(self) -> None:
        super().__init__()
        self.cut: list[tuple[int, int]] = []

    def send_tcp(self, datagram: bytes, dst: IPv4Address, ip_header_len: int, mss: int) -> None:
        with self.cv:
            self.cut.append((ip_header_len, mss))
        self.send(datagram, dst)


def checksum_ok(datagram: bytes) -> bool:
    """dpkt recomputes the TCP checksum of `datagram` (IP.__bytes__ fills a zero sum) and agrees."""
    ip = dpkt.ip.IP(datagram)
    given = ip.data.sum
    ip.data.sum = 0
    ip.sum = 0
    return dpkt.ip.IP(bytes(ip)).data.sum == given


class SmallOffloadLink(OffloadLink):
    gso_max = 2 * MSS  # a NIC that takes less in one frame than the TCB may emit


DATA = bytes(range(256)) * 40  # 10,240 octets; the initial window lets 4,380 go (RFC 5681 3.1)


@pytest.fixture
def stack_link(request: pytest.FixtureRequest) -> Iterator[tuple[Stack, FakeLink]]:
    """A stack whose TCBs offload segmentation, on a link of the kind the test asks for (indirect)."""
    link = request.param()
    for s in started(link, TcbConfig(gso_max=GSO, rcv_buf=65535)):
        yield s, link


def first_window(stack: Stack, link: FakeLink, datagrams: int) -> tuple[int, list[tuple[bytes, TcpSegment]]]:
    """Connect to a crafted peer and SEND DATA: how many datagrams went before, and the `datagrams`
    datagrams of the first window, parsed."""
    peer = Peer(stack, link)
    peer.handshake()
    mark = len(link.sent)
    stack.send(peer.cid, DATA)
    wait_until(lambda: len(link.sent) >= mark + datagrams, "the first window's datagrams")
    return mark, [(d, parse_tcp(parse_ipv4(d)[1])) for d in link.sent[mark:]]


@pytest.mark.parametrize("stack_link", [FakeLink, SmallOffloadLink], indirect=True, ids=["plain", "small"])
def test_a_link_that_cannot_cut_it_gets_segments_of_the_mss_with_whole_checksums(
    stack_link: tuple[Stack, FakeLink],
) -> None:
    """A link that cannot cut (plain), or cannot take the segment in one frame (its gso_max is smaller
    than what the TCB emits): the segment is cut here, the link asked to cut nothing."""
    stack, link = stack_link
    mark, segments = first_window(stack, link, 3)
    assert [len(s.payload) for _, s in segments] == [MSS, MSS, MSS]
    assert all(len(d) <= 1500 and checksum_ok(d) for d, _ in segments)
    assert b"".join(s.payload for _, s in segments) == DATA[: 3 * MSS]
    assert stack.counters.segments_out == mark + 3
    assert getattr(link, "cut", []) == []


@pytest.mark.parametrize("stack_link", [OffloadLink], indirect=True, ids=["offload"])
def test_a_link_that_cuts_gets_one_datagram_and_completes_its_checksum(
    stack_link: tuple[Stack, OffloadLink],
) -> None:
    stack, link = stack_link
    seen: list[TcpSegment] = []
    stack.tap(lambda direction, _s, _d, seg, _dg: seen.append(seg) if direction == "out" else None)
    mark, ((datagram, seg),) = first_window(stack, link, 1)
    assert len(seg.payload) == 3 * MSS and link.cut == [(20, MSS)]
    # The field holds the pseudo-header sum: what the link adds over the segment completes the checksum.
    tcp = bytearray(datagram[20:])
    tcp[16:18] = (~ones_complement_sum(tcp) & 0xFFFF).to_bytes(2, "big")
    assert checksum_ok(datagram[:20] + bytes(tcp))
    # Taps see the segments the wire carries, and they are counted as such.
    assert [len(s.payload) for s in seen if s.payload] == [MSS, MSS, MSS]
    assert stack.counters.segments_out == mark + 3
