"""What the stack hears on its link (RFC 9293 MUST-57): segments sent to a broadcast or multicast
address, or in a link-layer broadcast frame, are silently discarded; the same SYN sent to the stack's
own address is answered. Frames are crafted with scapy and sent from the kernel's namespace."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address

import pytest

from stack.lab import Lab
from stack.runtime import Stack
from stack.wire.tcp import TcpSegment
from tests.interop.conftest import wait_for

scapy = pytest.importorskip("scapy.all")

PORT = 8123
BROADCAST_MAC = b"\xff" * 6


def test_syns_to_broadcast_or_multicast_addresses_are_silently_discarded(
    lab_stack: Stack, stack_lab: Lab
) -> None:
    stack = lab_stack
    stack.listen(PORT)
    answered: list[int] = []

    def tap(direction: str, src: IPv4Address, dst: IPv4Address, seg: TcpSegment, datagram: bytes) -> None:
        if direction == "out" and seg.src_port == PORT:
            answered.append(seg.dst_port)

    def syn(dst: str, sport: int) -> bytes:
        ip = scapy.IP(src=str(stack_lab.kernel_addr), dst=dst)
        return bytes(ip / scapy.TCP(sport=sport, dport=PORT, flags="S", seq=1000))

    stack.tap(tap)
    with stack_lab.enter_kernel_ns():
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    try:
        mac = bytes.fromhex(stack_lab.stack_mac.replace(":", ""))
        to = (stack_lab.kernel_if, 0x0800, 0, 0)
        sock.sendto(syn(str(stack_lab.stack_addr), 40001), (*to, BROADCAST_MAC))  # a link-layer broadcast
        sock.sendto(syn("255.255.255.255", 40002), (*to, mac))  # the limited broadcast address
        sock.sendto(syn("224.0.0.1", 40003), (*to, mac))  # a multicast address
        sock.sendto(syn(str(stack_lab.stack_addr), 40004), (*to, mac))  # control: the stack's own address
        wait_for(lambda: 40004 in answered, 10, "the SYN,ACK to the unicast SYN")
    finally:
        stack.untap(tap)
        sock.close()
    assert set(answered) == {40004}, answered
    assert not stack.errors
