"""The fast path against Linux's TCP in the lab (issue 8): the stack on PacketLink, its TCBs emitting
64 KB segments that the kernel cuts (segmentation offload), and Linux's TSO frames taken whole.
Every transfer is checked by the SHA-256 of every byte, as the plain link's are in test_transport.py,
and each test checks that the path it is about was taken (datagrams the kernel cut, frames larger
than one segment).

Network rule: traffic only inside the lab these tests build (198.18.0.0/15).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.labs import receive_offload, segments_of_mtu
from stack.lab import Lab
from stack.runtime import Stack
from tests.interop.transfer import (
    KernelPython,
    random_loss,
    receive_from_kernel,
    send_to_kernel,
)

pytestmark = pytest.mark.root

SIZE = 50_000_000
LOSSY = 20_000_000


class Largest:
    """The largest datagram the stack's receive path took, by a tap."""

    def __init__(self, stack: Stack) -> None:
        self.largest = 0
        stack.tap(self._tap)

    def _tap(self, direction: str, _src: object, _dst: object, seg: object, datagram: bytes) -> None:
        if direction == "in":
            self.largest = max(self.largest, len(datagram))


def test_50mb_to_linux_leaves_in_datagrams_the_kernel_cuts(
    fast_stack: Stack, stack_lab: Lab, kernel_python: KernelPython
) -> None:
    t = send_to_kernel(fast_stack, stack_lab, kernel_python, SIZE)
    c = fast_stack.counters
    print(f"\nstack -> Linux: {SIZE / t.seconds / 1e6:.1f} MB/s; {c.offloaded} datagrams cut")
    assert t.intact, f"{t.count} octets, SHA-256 {t.digest}"
    assert c.offloaded > 0, "no datagram went out through the link's segmentation offload"
    assert c.segments_out >= SIZE // 1448, "fewer segments counted than the data needs"
    assert fast_stack.errors == []


def test_50mb_from_linux_in_its_tso_frames_arrives_whole(fast_stack: Stack, stack_lab: Lab) -> None:
    """Linux's TCP sends frames of up to 64 KB over the veth (TSO, its default there); the stack takes
    each whole, one TCB call for many segments."""
    largest = Largest(fast_stack)
    t = receive_from_kernel(fast_stack, stack_lab, SIZE)
    print(f"\nLinux -> stack: {SIZE / t.seconds / 1e6:.1f} MB/s; largest datagram {largest.largest}")
    assert t.intact, f"{t.count} octets, SHA-256 {t.digest}"
    assert largest.largest > 2 * stack_lab.mtu, "every datagram was one segment"
    assert fast_stack.errors == []


def test_50mb_from_linux_in_segments_of_the_mtu_arrives_joined_by_gro(
    fast_stack: Stack, stack_lab: Lab
) -> None:
    """TSO off on the veth: Linux's segments cross it one by one, at most the MTU each, and GRO on the
    stack's end joins them before its packet socket reads them, as a NIC's GRO does."""
    largest = Largest(fast_stack)
    with segments_of_mtu(stack_lab):
        t = receive_from_kernel(fast_stack, stack_lab, SIZE)
    print(f"\nLinux -> stack, TSO off: {SIZE / t.seconds / 1e6:.1f} MB/s; largest datagram {largest.largest}")
    assert t.intact, f"{t.count} octets, SHA-256 {t.digest}"
    assert largest.largest > 2 * stack_lab.mtu, "GRO joined nothing: every datagram was one segment"
    assert fast_stack.errors == []


@pytest.fixture
def lossy_wire(stack_lab: Lab) -> Iterator[None]:
    """Each packet on the veth one segment, so that a drop loses one: TSO off on both ends (the kernel
    cuts the stack's datagrams before the veth, in software), and GRO off (the drops are made in an
    ingress hook, after GRO: a drop there would take a whole joined frame)."""
    with segments_of_mtu(stack_lab), receive_offload(stack_lab, False):
        yield


@pytest.mark.parametrize("direction", ["stack-to-linux", "linux-to-stack"])
def test_20mb_through_2_percent_loss_each_way(
    direction: str, fast_stack: Stack, stack_lab: Lab, kernel_python: KernelPython, lossy_wire: None
) -> None:
    """Loss on the wire, after the kernel has cut the stack's datagrams: each lost segment is repaired
    one MSS at a time (retransmissions never go as large segments)."""
    with random_loss(stack_lab, 2) as loss:
        if direction == "stack-to-linux":
            t = send_to_kernel(fast_stack, stack_lab, kernel_python, LOSSY)
        else:
            t = receive_from_kernel(fast_stack, stack_lab, LOSSY)
    print(f"\n{direction}: {LOSSY / t.seconds / 1e6:.1f} MB/s through {loss}; "
          f"{t.status.fast_retransmits} fast retransmits, {t.status.rto_expiries} RTO expiries")
    assert t.intact, f"{t.count} octets, SHA-256 {t.digest}"
    assert loss.to_kernel[1] and loss.to_stack[1], f"the wire lost nothing one way: {loss}"
    if direction == "stack-to-linux":
        assert fast_stack.counters.offloaded > 0
        assert t.status.fast_retransmits > 0, "no loss was repaired by fast retransmit"
    assert fast_stack.errors == []
