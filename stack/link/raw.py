"""The raw link: IPv4 datagrams out through a raw IP socket, in through an AF_PACKET socket.

DESIGN.md, "The wire, on a real host":
- Send: a raw IP socket (IPPROTO_RAW, so IP_HDRINCL: the stack writes the whole IPv4 header, and with it
  TTL, DSCP and the DF bit); the kernel routes and resolves neighbours.
- Receive: an AF_PACKET socket bound to the interface. It sees packets before netfilter, so the firewall
  rule that silences the kernel's TCP on the stack's address does not hide them from the stack.
- PACKET_AUXDATA tells, for each packet, whether the sending kernel left the checksum to offload
  (TP_STATUS_CSUMNOTREADY, every segment from a local kernel over veth) or the device verified it
  (TP_STATUS_CSUM_VALID); only the others are checked in Python.
- The receive queue holds more than the largest window the stack offers (RECEIVE_QUEUE, forced past
  net.core.rmem_max where the process may): a burst that arrives while the stack's receive thread is
  busy waits instead of being dropped. What the kernel still drops is counted (`drops`).
- A classic BPF filter attached to the socket passes only IPv4 TCP and ICMP to the stack's address, so
  everything else is dropped in the kernel, cheaply; what still arrives addressed to a broadcast or
  multicast link address is dropped too (MUST-57).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from ipaddress import IPv4Address

ETH_P_IP = 0x0800
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
TP_STATUS_CSUMNOTREADY = 1 << 3
TP_STATUS_CSUM_VALID = 1 << 7
PACKET_HOST = 0
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
# Bytes of receive queue asked for (the kernel doubles it for its bookkeeping). Each datagram is charged
# its whole buffer (truesize), more than its length: a 4 MiB window (TcbConfig.full) of 1448-octet
# segments is about 2,900 datagrams, which this holds with room to spare.
RECEIVE_QUEUE = 12 << 20

_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_STATS = struct.Struct("=II")  # struct tpacket_stats: tp_packets, tp_drops
_RECV_SIZE = 65536 + 256


@dataclass(frozen=True, slots=True)
class Frame:
    """One IPv4 datagram from the link, and whether its transport checksum still needs checking."""

    data: bytes
    verify_checksum: bool


def bpf_ipv4_to(address: IPv4Address) -> bytes:
    """A classic BPF program for a cooked (SOCK_DGRAM) socket: accept IPv4 TCP or ICMP to `address`.

    The network header starts at offset 0 on a SOCK_DGRAM packet socket.
    """
    BPF_LD_W_ABS = 0x20
    BPF_LD_B_ABS = 0x30
    BPF_JEQ_K = 0x15
    BPF_RET_K = 0x06
    prog = [
        (BPF_LD_W_ABS, 0, 0, 16),  # A <- destination address
        (BPF_JEQ_K, 0, 4, int(address)),  # != ours: drop
        (BPF_LD_B_ABS, 0, 0, 9),  # A <- protocol
        (BPF_JEQ_K, 1, 0, 6),  # TCP: accept
        (BPF_JEQ_K, 0, 1, 1),  # not ICMP: drop
        (BPF_RET_K, 0, 0, 0x40000),  # accept (up to 256 KiB)
        (BPF_RET_K, 0, 0, 0),  # drop
    ]
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


def _attach_filter(sock: socket.socket, program: bytes) -> None:
    import ctypes

    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class RawLink:
    """IPv4 in and out on one interface, for the stack's own address.

    It cuts nothing for the stack: `offload` is False and `gso_max` 0, so every TCP segment reaches
    `send` no longer than the MSS, its checksum complete (stack/link/packet.py's PacketLink, a
    RawLink, is the one that can).
    """

    offload: bool = False
    gso_max: int = 0

    def __init__(
        self,
        interface: str,
        address: IPv4Address,
        *,
        mtu: int | None = None,
        namespace: AbstractContextManager[object] | None = None,
    ) -> None:
        """Open the sockets (inside `namespace`, a context that enters the right network namespace)."""
        self.interface = interface
        self.address = address
        with namespace or nullcontext():
            self._rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
            try:
                _attach_filter(self._rx, bpf_ipv4_to(address))
                self._rx.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                self._rx.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                _set_receive_queue(self._rx, RECEIVE_QUEUE)
                self._rx.bind((interface, ETH_P_IP))
                self._tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
                self._tx.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            except BaseException:
                self._rx.close()
                raise
            self.mtu = mtu or _interface_mtu(self._tx, interface)
        self._rx.setblocking(False)
        self._closed = False
        self._drops = 0
        self._stats_lock = threading.Lock()

    def fileno(self) -> int:
        return self._rx.fileno()

    def send(self, datagram: bytes, dst: IPv4Address) -> None:
        """Send one whole IPv4 datagram (header written by the stack)."""
        self._tx.sendto(datagram, (str(dst), 0))

    def receive(self, timeout: float | None, wakeup: int | None = None) -> Iterator[Frame]:
        """Wait up to `timeout` for traffic, then yield every datagram that is waiting."""
        fds = [self._rx] if wakeup is None else [self._rx, wakeup]
        ready, _, _ = select.select(fds, [], [], timeout)
        if self._rx not in ready:
            return
        space = socket.CMSG_SPACE(_AUXDATA.size)
        for _ in range(256):  # a bounded batch, so shutdown is never starved
            try:
                data, anc, _flags, addr = self._rx.recvmsg(_RECV_SIZE, space)
            except (BlockingIOError, InterruptedError):
                return
            if addr[2] != PACKET_HOST:
                continue  # broadcast, multicast or another host's frame (MUST-57)
            verify = True
            for level, kind, cdata in anc:
                if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= _AUXDATA.size:
                    status = _AUXDATA.unpack_from(cdata)[0]
                    if status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID):
                        verify = False
            yield Frame(data, verify)

    @property
    def drops(self) -> int:
        """Datagrams for the stack that the kernel dropped since the link opened, because the receive
        queue was full when they came (PACKET_STATISTICS tp_drops): loss on the host, not the wire."""
        with self._stats_lock:
            if not self._closed:
                # Reading the statistics resets them: they are added up here.
                raw = self._rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
                self._drops += _STATS.unpack(raw)[1]
            return self._drops

    def close(self) -> None:
        if not self._closed:
            _ = self.drops  # the last count, kept after the socket is gone
            self._closed = True
            self._rx.close()
            self._tx.close()


def _set_receive_queue(sock: socket.socket, size: int) -> None:
    """SO_RCVBUFFORCE (CAP_NET_ADMIN) past net.core.rmem_max; without the capability, as much as
    SO_RCVBUF gives."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _interface_mtu(sock: socket.socket, interface: str) -> int:
    """The interface's MTU by SIOCGIFMTU on a socket of its namespace (/sys shows the mount's namespace)."""
    import fcntl

    SIOCGIFMTU = 0x8921
    req = struct.pack("16si", interface.encode()[:15], 0)
    try:
        return int(struct.unpack("16si", fcntl.ioctl(sock.fileno(), SIOCGIFMTU, req))[1])
    except OSError:
        return 1500
