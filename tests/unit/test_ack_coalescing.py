"""ACK coalescing: the segments of one batch from the link (what one wake-up of the receive thread
reads) get one bare ACK per connection, the last, when the peer speaks SACK; without SACK every
duplicate ACK must go, for the peer counts them (RFC 5681 section 3.2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stack.runtime import Stack
from stack.tcp import State, TcbConfig
from stack.wire.ipv4 import parse_ipv4
from stack.wire.tcp import Flags, TcpOptions, TcpSegment, build_tcp, parse_tcp
from tests.unit.conftest import started
from tests.unit.test_ip_input import PEER, STACK, WAIT, FakeLink, ip

ISN = 70_000


def connect(stack: Stack, link: FakeLink, *, sack: bool) -> tuple[str, int, int]:
    """An active OPEN answered by a crafted SYN,ACK (SACK-permitted with `sack`): id, our port, our next
    sequence number."""
    cid = stack.open(PEER, 80, wait=False)
    syn = parse_tcp(parse_ipv4(link.wait_sent(1)[0])[1])
    synack = TcpSegment(80, syn.src_port, ISN, syn.seq + 1, Flags.SYN | Flags.ACK, 65535,
                        options=TcpOptions(mss=1460, sack_permitted=sack))
    link.arrive(ip(build_tcp(synack, PEER, STACK), 6))
    assert stack.wait_state(cid, State.ESTABLISHED, WAIT)
    return cid, syn.src_port, syn.seq + 1


def data(port: int, ack: int, offset: int, n: int = 1000) -> bytes:
    seg = TcpSegment(80, port, ISN + 1 + offset, ack, Flags.ACK, 65535, payload=bytes(n))
    return ip(build_tcp(seg, PEER, STACK), 6)


def acks_after(link: FakeLink, mark: int) -> list[TcpSegment]:
    return [s for s in (parse_tcp(parse_ipv4(d)[1]) for d in link.sent[mark:]) if not s.payload]


@pytest.fixture
def stack_link() -> Iterator[tuple[Stack, FakeLink]]:
    link = FakeLink()
    # Delayed ACKs as in the stack's profile: an ACK for every second segment, and at once for one out of
    # order (RFC 9293 SHLD-19, RFC 5681 4.2); reading what arrived opens no window worth an update.
    for s in started(link, TcbConfig(sack=True, delayed_ack=True)):
        yield s, link


@pytest.mark.parametrize("sack", [True, False], ids=["sack", "no-sack"])
def test_one_batch_of_segments_gets_one_ack_with_sack_and_one_each_without(
    sack: bool, stack_link: tuple[Stack, FakeLink]
) -> None:
    stack, link = stack_link
    cid, port, nxt = connect(stack, link, sack=sack)
    mark = len(link.sent)
    # Four in order, then one beyond a hole: one batch (the fake link hands them over together).
    link.arrive(*(data(port, nxt, k * 1000) for k in (0, 1, 2, 3, 5)))
    # Once the data can be read, the batch is over (it is taken under the pool lock): all ACKs are out.
    assert stack.receive(cid, 8000, timeout=WAIT) == bytes(4000)
    acks = acks_after(link, mark)
    last = acks[-1]
    assert last.ack == ISN + 1 + 4000  # all that is in order
    if sack:
        assert len(acks) == 1, [(a.ack - ISN - 1, a.options.sack_blocks) for a in acks]
        assert last.options.sack_blocks == ((ISN + 1 + 5000, ISN + 1 + 6000),)  # and what is beyond
        assert stack.pool.acks_coalesced >= 1
    else:
        # Every ACK the TCB asked for went: for the data in order (every second segment) and the
        # duplicate at once for the segment beyond the hole.
        assert len(acks) >= 2 and stack.pool.acks_coalesced == 0
