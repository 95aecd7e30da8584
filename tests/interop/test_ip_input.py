"""The stack's IP input against the Linux side of the lab: `ping` of the stack's address answered by the
stack (small and fragmented both ways), and TCP segments cut into IPv4 fragments by scapy, a packet
library the project does not write, sent from the kernel's namespace through a packet socket: in order,
out of order with duplicates, and with a fragment missing, which times out (RFC 791 section 3.2).

The fragmented segments come from a crafted peer: the stack opens a connection to a port of the kernel's
namespace where an nftables rule of the test's own keeps the kernel's TCP from seeing anything, and the
test answers the SYN itself and sends the data. (The kernel's own TCP never fragments: it sends with
Don't Fragment and segments within the path MTU.)

Network rule: traffic only to the addresses of the lab these tests build (198.18.0.0/15). No test sleeps
in place of a condition: they wait on a counter, on Stack.wait_state, or on RECEIVE with a timeout.
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Iterator

import pytest

from stack.lab import Lab
from stack.link.impair import ImpairedLink
from stack.link.raw import RawLink
from stack.runtime import Stack
from stack.tcp import State, TcbConfig
from stack.wire.reassembly import Reassembler
from tests.interop.conftest import IMPAIR_SEED, wait_for
from tests.interop.transfer import kernel_ns_run, nft_in_kernel_ns

scapy = pytest.importorskip("scapy.all")

pytestmark = pytest.mark.root

SILENT_PORT = 40404  # on the kernel's side: nothing listens, and the test's rule hides it from the kernel
REASSEMBLY_TIMEOUT = 1.0


@pytest.fixture
def frag_stack(stack_lab: Lab) -> Iterator[Stack]:
    """A started Stack on the lab as `lab_stack` builds it, with a short reassembly timeout."""
    raw = RawLink(stack_lab.stack_if, stack_lab.stack_addr, namespace=stack_lab.enter_stack_ns())
    link = ImpairedLink(raw, seed=IMPAIR_SEED)
    config = TcbConfig.full(mtu=link.mtu, rto_min=0.2)
    the_stack = Stack(link, config=config, reassembler=Reassembler(timeout=REASSEMBLY_TIMEOUT)).start()
    try:
        yield the_stack
    finally:
        try:
            the_stack.shutdown(grace=0.5)
        finally:
            the_stack.stop()
    assert not the_stack.errors, the_stack.errors


@pytest.fixture
def kernel_echo_off(stack_lab: Lab) -> Iterator[None]:
    """The stack namespace's own kernel stops answering echo requests, as `tcpsh --lab` has it, so
    that every reply is the stack's."""
    stack_lab.kernel_answers_echo(False)
    try:
        yield
    finally:
        stack_lab.kernel_answers_echo(True)


# ---------------------------------------------------------------------- ping


def ping(lab: Lab, *args: str) -> str:
    return kernel_ns_run(lab, ["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", *args, str(lab.stack_addr)])


def received(output: str) -> int:
    match = re.search(r"(\d+) (?:packets )?received", output)
    assert match, output
    return int(match.group(1))


def test_ping_of_the_stacks_address_is_answered_by_the_stack(
    frag_stack: Stack, stack_lab: Lab, kernel_echo_off: None
) -> None:
    before = frag_stack.counters.echo_replies
    out = ping(stack_lab)
    assert received(out) == 3 and "DUP" not in out, out
    # The stack counts a reply once its send returned; ping may have read the last one before that.
    c = frag_stack.counters
    wait_for(lambda: c.echo_replies - before == 3, 5, f"three replies counted: {c.echo_replies - before}")


def test_a_ping_too_big_for_the_link_is_reassembled_and_answered_in_fragments(
    frag_stack: Stack, stack_lab: Lab, kernel_echo_off: None
) -> None:
    """4000 octets of data: the kernel fragments each request, the stack reassembles it, and fragments its
    reply, which the kernel reassembles and ping checks."""
    before = frag_stack.counters.reassembly.reassembled
    out = ping(stack_lab, "-s", "4000", "-M", "dont")
    assert received(out) == 3 and "DUP" not in out and "wrong data" not in out, out
    assert frag_stack.counters.reassembly.reassembled - before == 3  # counted before the reply went


def test_without_the_stack_the_kernel_still_answers_ping(stack_lab: Lab) -> None:
    """The lab's own behaviour is unchanged when no stack runs: ICMP passes the firewall rule."""
    assert received(ping(stack_lab)) == 3


# ---------------------------------------------------------------------- fragmented TCP from a crafted peer


class CraftedPeer:
    """The far end of one connection of the stack, played by the test from the kernel's namespace."""

    def __init__(self, stack: Stack, lab: Lab) -> None:
        self.stack, self.lab = stack, lab
        self.remove_rule = nft_in_kernel_ns(
            lab,
            "tcpsh_test_fragments",
            "chain input {\n"
            "    type filter hook input priority filter; policy accept;\n"
            f"    ip saddr {lab.stack_addr} tcp dport {SILENT_PORT} drop\n"
            "}",
        )
        with lab.enter_kernel_ns():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        self.mac = bytes.fromhex(lab.stack_mac.replace(":", ""))
        self.ip_id = 0x3100
        self.seq = 0x7000_0000
        self.cid = stack.open(lab.kernel_addr, SILENT_PORT, wait=False)
        status = stack.status(self.cid)
        self.port, self.ack = status.local_port, status.snd_nxt
        self.send([self.tcp("SA", options=[("MSS", 1460)])])
        self.seq += 1
        assert stack.wait_state(self.cid, State.ESTABLISHED, 10), stack.status(self.cid).state

    def close(self) -> None:
        try:
            if self.stack.status(self.cid).state is not State.CLOSED:
                self.stack.abort(self.cid)
        finally:
            self.sock.close()
            self.remove_rule()

    def tcp(self, flags: str, payload: bytes = b"", **kw: object) -> object:
        self.ip_id += 1
        ip = scapy.IP(src=str(self.lab.kernel_addr), dst=str(self.lab.stack_addr), id=self.ip_id, flags=0)
        seg = scapy.TCP(sport=SILENT_PORT, dport=self.port, seq=self.seq, ack=self.ack, flags=flags,
                        window=65535, **kw)
        return ip / seg / scapy.Raw(payload) if payload else ip / seg

    def data(self, payload: bytes, fragsize: int) -> list[object]:
        """One segment carrying `payload`, cut into fragments of `fragsize` octets of data (the last less)."""
        packet = self.tcp("PA", payload)
        self.seq += len(payload)
        pieces = scapy.fragment(packet, fragsize=fragsize)
        assert len(pieces) > 1
        return list(pieces)

    def send(self, packets: list[object]) -> None:
        for p in packets:
            self.sock.sendto(bytes(p), (self.lab.kernel_if, 0x0800, 0, 0, self.mac))


@pytest.fixture
def peer(frag_stack: Stack, stack_lab: Lab) -> Iterator[CraftedPeer]:
    the_peer = CraftedPeer(frag_stack, stack_lab)
    try:
        yield the_peer
    finally:
        the_peer.close()


def receive_exactly(stack: Stack, cid: str, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        out += stack.receive(cid, n - len(out), timeout=10)
    return bytes(out)


PAYLOAD = random.Random(815).randbytes(3000)


def test_a_fragmented_segment_arrives_intact(frag_stack: Stack, peer: CraftedPeer) -> None:
    before = frag_stack.counters.reassembly.snapshot()
    start = frag_stack.status(peer.cid).rcv_nxt
    pieces = peer.data(PAYLOAD, fragsize=1000)
    assert len(pieces) == 4  # 1000 + 1000 + 1000 + 20 (the TCP header) octets
    peer.send(pieces)
    assert receive_exactly(frag_stack, peer.cid, len(PAYLOAD)) == PAYLOAD
    assert frag_stack.status(peer.cid).rcv_nxt == (start + len(PAYLOAD)) % (1 << 32)
    after = frag_stack.counters.reassembly
    assert after.reassembled - before.reassembled == 1
    assert after.fragments - before.fragments == 4
    assert after.dropped == before.dropped


def test_fragments_out_of_order_and_duplicated_arrive_intact(frag_stack: Stack, peer: CraftedPeer) -> None:
    first = peer.data(PAYLOAD, fragsize=512)
    second = peer.data(PAYLOAD[::-1], fragsize=376)
    rng = random.Random(791)
    mixed = first + second + rng.sample(first, 2) + rng.sample(second, 2)
    rng.shuffle(mixed)
    peer.send(mixed)
    assert receive_exactly(frag_stack, peer.cid, 2 * len(PAYLOAD)) == PAYLOAD + PAYLOAD[::-1]
    assert frag_stack.status(peer.cid).state is State.ESTABLISHED
    assert frag_stack.counters.reassembly.overlaps == 0


def test_a_missing_fragment_times_out_and_the_segment_sent_again_arrives(
    frag_stack: Stack, peer: CraftedPeer
) -> None:
    counters = frag_stack.counters.reassembly
    timed_out, dropped = counters.timed_out, counters.dropped
    seq = peer.seq
    pieces = peer.data(PAYLOAD, fragsize=800)
    peer.send(pieces[:2] + pieces[3:])  # the third never comes
    wait_for(lambda: counters.timed_out == timed_out + 1, 10 * REASSEMBLY_TIMEOUT, "the reassembly timeout")
    assert counters.dropped - dropped == len(pieces) - 1
    assert frag_stack.reassembler.in_progress == 0 and frag_stack.reassembler.memory == 0
    status = frag_stack.status(peer.cid)
    assert status.recv_queued == 0 and status.ooo_queued == 0 and status.state is State.ESTABLISHED
    # As TCP would: the segment again, in a datagram of its own (a new IP identification).
    peer.seq = seq
    peer.send(peer.data(PAYLOAD, fragsize=800))
    assert receive_exactly(frag_stack, peer.cid, len(PAYLOAD)) == PAYLOAD
