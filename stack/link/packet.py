"""The fast link: large TCP datagrams that the kernel cuts into segments and checksums.

DESIGN.md, "The fast path: let the kernel cut and join segments". A Python stack pays per packet, not
per byte, so `PacketLink` hands the kernel one datagram of up to 64 KB of TCP payload and lets it do
what a NIC's TCP segmentation offload does:

- Send (`send_tcp`): an AF_PACKET SOCK_RAW socket with PACKET_VNET_HDR (SOL_PACKET option 15,
  net/packet/af_packet.c `packet_snd`). Each send is one Ethernet frame preceded by a 10-octet
  `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h, little-endian `'<BBHHHH'`: flags,
  gso_type, hdr_len, gso_size, csum_start, csum_offset), which the kernel turns into an skb with
  CHECKSUM_PARTIAL and, when gso_type is TCPV4, a GSO skb of segments of gso_size payload octets
  (include/linux/virtio_net.h `virtio_net_hdr_to_skb`). Flags is NEEDS_CSUM; csum_start is the
  TCP header's offset in the frame and csum_offset 16, the checksum field's offset in it.
- The checksum field must then hold the folded, uncomplemented sum of the pseudo-header, with the TCP
  length of the WHOLE datagram (header and all of its payload): what Linux's own TCP writes there
  (`tcp_v4_send_check`: `th->check = ~tcp_v4_check(skb->len, saddr, daddr, 0)`), and what
  `tcp_gso_segment` (net/ipv4/tcp_offload.c) corrects for each segment by taking the whole length out
  and putting the segment's in. `pseudo_header_sum()` computes it; the interop test
  tests/interop/test_packet_link.py checks every cut segment's checksum with dpkt, and that a sum
  with a zero length gives wrong checksums.
- The frame needs the next hop's MAC address. The kernel's neighbour table has it: it is read over
  rtnetlink (a route lookup for the next hop, then the neighbour entry), with pyroute2's message
  classes on a netlink socket of the link's own namespace (see `_Rtnl` for why not pyroute2's
  IPRoute), at most once per `refresh` seconds per destination and never per packet. An entry that
  is missing, incomplete or failed is asked for with RTM_NEWNEIGH and NTF_USE, which makes the kernel
  resolve it (or, for a stale one, confirm it) as if it had a packet to send; until a MAC is known
  the datagram goes out through the raw IP socket, cut and checksummed in Python (`segment()`). A
  send on the packet socket that fails forgets the destination, so the next one looks it up again.
- Anything else goes the plain way of `RawLink`: `send()` (ICMP, fragments, the stack's own
  segments), and a TCP datagram with a source route option, which `send_tcp` cuts in Python.
- Receive: `RawLink.receive`, unchanged (this class is a RawLink). Coalesced TCP frames (the
  sender's TSO, or GRO on the interface) arrive whole, up to 65,535 octets of IP datagram, with
  PACKET_AUXDATA status CSUMNOTREADY or CSUM_VALID, so `Frame.verify_checksum` is False for them.
  PACKET_VNET_HDR is not set on the receive socket: the auxdata status already says what the stack
  needs, and the header would cost a copy of every frame to strip it.

Offloads of the interface, measured on this project's machine (kernel 6.18, the lab's veth, one Python
loop sending 65,160 octets of payload, 45 segments of 1448, per frame):
- tx checksum and TSO on (the veth's defaults): the GSO frame crosses the veth whole and the peer's
  TCP takes it as Linux's own TSO frames: 80,700 sends/s, 5,260 MB/s of payload from a bare socket
  loop; through `send_tcp` 54,000 calls/s, 3,460 MB/s.
- TSO off (tx checksum on or off): the kernel cuts it in software before the veth, in the sending
  thread: 4,700-5,300 sends/s, 306-345 MB/s with the peer's kernel taking every segment (1,576 MB/s
  when the peer drops the frames at once; through `send_tcp` 4,300 calls/s, 274 MB/s). With tx
  checksum off, it also fills in each segment's checksum, so a capture on the far side shows correct
  checksums (the interop test runs this way).
- The veth applies GSO in software anyway for a frame longer than its gso_max_size (65,536 octets of
  skb, Ethernet header included); `gso_max` keeps below that.
So the link leaves the interface's offloads as it finds them: the kernel then does for these frames
exactly what it does for its own TCP on the same interface (that is also what the benchmark compares
against), and a link must not change a real host interface that others use. Where segments of at most
the MTU must cross the veth (a capture, a loss model on the far side), turn TSO off there, as
bench/labs.py `segments_of_mtu` does; this link's frames are then cut in software.

GRO: on veth, `ethtool -K IF gro on` (which puts the veth in NAPI mode) joined 45 segments of 1448
octets sent to it in one burst into one frame of 63,752 octets, which reached the AF_PACKET socket
whole and marked CSUM_VALID. In a bulk transfer from Linux's TCP (TSO off on both ends, or one segment
per skb) it joined nothing: every frame the stack read was one segment (20 MB, 13,815 frames, the
largest 1,500 octets), so the lab does not rely on it. `PacketLink(..., gro=True)` turns it on for the
link's interface and `close()` puts it back; `set_gro()` does the same at any time. Off by default: on
a host's real interface it is the host's setting, not the stack's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from stack.link.raw import SOL_PACKET, RawLink
from stack.wire.checksum import fold16, internet_checksum, raw_sum

__all__ = [
    "GSO_TCPV4",
    "NEEDS_CSUM",
    "PACKET_VNET_HDR",
    "PacketLink",
    "gso_max_for",
    "is_source_routed",
    "pseudo_header_sum",
    "segment",
    "vnet_header",
]

PACKET_VNET_HDR = 15
NEEDS_CSUM = 1  # VIRTIO_NET_HDR_F_NEEDS_CSUM
GSO_NONE = 0  # VIRTIO_NET_HDR_GSO_NONE
GSO_TCPV4 = 1  # VIRTIO_NET_HDR_GSO_TCPV4
GSO_ECN = 0x80  # VIRTIO_NET_HDR_GSO_ECN: the segment carries CWR (SKB_GSO_TCP_ECN)
ETH_HLEN = 14
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
TCP_CHECK_OFFSET = 16
MAX_IP_HEADER = 60
MAX_TCP_HEADER = 60
IP_MAXPACKET = 65535

_VNET = struct.Struct("<BBHHHH")
_PSEUDO = struct.Struct("!4s4sxBH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TCP_FIN, _TCP_PSH, _TCP_URG, _TCP_CWR = 0x01, 0x08, 0x20, 0x80
_IPOPT_LSRR, _IPOPT_SSRR, _IPOPT_END, _IPOPT_NOP = 131, 137, 0, 1

# rtnetlink neighbour states (include/uapi/linux/neighbour.h)
NUD_INCOMPLETE, NUD_REACHABLE, NUD_STALE, NUD_DELAY = 0x01, 0x02, 0x04, 0x08
NUD_PROBE, NUD_FAILED, NUD_NOARP, NUD_PERMANENT = 0x10, 0x20, 0x40, 0x80
NTF_USE = 0x01
_NUD_USABLE = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP


# ---------------------------------------------------------------------- pure parts


def pseudo_header_sum(src: IPv4Address, dst: IPv4Address, tcp_length: int) -> int:
    """What `send_tcp` expects in the TCP checksum field: the folded 16-bit one's complement sum, NOT
    complemented, of the TCP pseudo-header (RFC 9293 section 3.1: source, destination, zero, protocol
    6, TCP length), where `tcp_length` is the length of the whole datagram's TCP header plus ALL of
    its payload, before any cutting. This is Linux's CHECKSUM_PARTIAL convention for TCP
    (`tcp_v4_send_check`); `tcp_gso_segment` swaps the whole length for each segment's.
    Never 0: the protocol octet makes the sum non-zero, and a multiple of 0xFFFF folds to 0xFFFF.
    """
    if not 0 <= tcp_length <= 0xFFFF:
        raise ValueError(f"TCP length {tcp_length} does not fit the pseudo-header's 16 bits")
    return fold16(int.from_bytes(_PSEUDO.pack(src.packed, dst.packed, 6, tcp_length), "big"))


def vnet_header(
    ip_header_len: int, tcp_header_len: int, payload_len: int, mss: int, *, cwr: bool = False
) -> bytes:
    """The virtio_net_hdr that precedes an Ethernet frame carrying one IPv4 TCP datagram.

    NEEDS_CSUM with csum_start at the TCP header (Ethernet 14 + IP header) and csum_offset 16 (the
    TCP checksum field); when the payload is longer than `mss`, gso_type TCPV4 (with ECN when the
    header carries CWR, as Linux's SKB_GSO_TCP_ECN), gso_size `mss` and hdr_len the Ethernet, IP
    and TCP headers; otherwise gso_type NONE, gso_size 0 (the kernel refuses a GSO frame that
    would be one segment).
    """
    start = ETH_HLEN + ip_header_len
    if payload_len > mss:
        if mss <= 0:
            raise ValueError(f"segment size {mss} must be more than zero")
        gso = GSO_TCPV4 | (GSO_ECN if cwr else 0)
        return _VNET.pack(NEEDS_CSUM, gso, start + tcp_header_len, mss, start, TCP_CHECK_OFFSET)
    return _VNET.pack(NEEDS_CSUM, GSO_NONE, start + tcp_header_len, 0, start, TCP_CHECK_OFFSET)


def gso_max_for(device_gso_max_size: int) -> int:
    """The largest TCP payload one `send_tcp` may carry on a device whose skbs may be
    `device_gso_max_size` octets long (IFLA_GSO_MAX_SIZE, Ethernet header included): the IP datagram
    within both that and IPv4's 65,535 octets, with room for the largest IP and TCP headers (60 each).
    65,402 on veth; a frame within it crosses a TSO device whole."""
    datagram = min(IP_MAXPACKET, device_gso_max_size - ETH_HLEN)
    return max(0, datagram - MAX_IP_HEADER - MAX_TCP_HEADER)


def is_source_routed(datagram: bytes, ip_header_len: int) -> bool:
    """Whether the IPv4 options (RFC 791 section 3.1) of `datagram` hold a loose or strict source route."""
    at = 20
    while at < ip_header_len:
        kind = datagram[at]
        if kind == _IPOPT_END:
            return False
        if kind in (_IPOPT_LSRR, _IPOPT_SSRR):
            return True
        if kind == _IPOPT_NOP:
            at += 1
            continue
        if at + 1 >= ip_header_len or datagram[at + 1] < 2:
            return False  # malformed: not ours to judge here
        at += datagram[at + 1]
    return False


def segment(datagram: bytes, ip_header_len: int, mss: int) -> list[bytes]:
    """Cut a TCP datagram as `send_tcp` takes it (checksum field holding `pseudo_header_sum` of the
    whole length) into finished datagrams of at most `mss` payload octets, each with its own
    correct IP header checksum and TCP checksum: in software what the kernel's GSO does
    (net/ipv4/tcp_offload.c `tcp_gso_segment`, net/ipv4/af_inet.c `inet_gso_segment`): the same
    headers on each, the IP total length per piece and the identification counting up from the
    datagram's, the sequence number advancing, CWR on the first only, PSH and FIN on the last only.
    A datagram within `mss` comes back as one, its checksum completed.
    """
    ihl = ip_header_len
    thl = (datagram[ihl + 12] >> 4) * 4
    header_end = ihl + thl
    ip_header = bytearray(datagram[:ihl])
    tcp_header = bytearray(datagram[ihl:header_end])
    payload = memoryview(datagram)[header_end:]
    src, dst = bytes(ip_header[12:16]), bytes(ip_header[16:20])
    ident = _U16.unpack_from(ip_header, 4)[0]
    seq = _U32.unpack_from(tcp_header, 4)[0]
    flags = tcp_header[13]
    size = len(payload) if len(payload) <= mss else mss
    if size <= 0 and len(payload):
        raise ValueError(f"segment size {mss} must be more than zero")
    out: list[bytes] = []
    at = 0
    while True:
        piece = payload[at : at + size] if size else payload[0:0]
        last = at + size >= len(payload)
        f = flags if last else flags & ~(_TCP_FIN | _TCP_PSH)
        if at:
            f &= ~_TCP_CWR
        tcp_header[13] = f
        _U32.pack_into(tcp_header, 4, (seq + at) & 0xFFFFFFFF)
        _U16.pack_into(tcp_header, TCP_CHECK_OFFSET, 0)
        length = thl + len(piece)
        pseudo = int.from_bytes(_PSEUDO.pack(src, dst, 6, length), "big")
        _U16.pack_into(tcp_header, TCP_CHECK_OFFSET, internet_checksum(piece, raw_sum(tcp_header) + pseudo))
        _U16.pack_into(ip_header, 2, ihl + length)
        _U16.pack_into(ip_header, 4, (ident + len(out)) & 0xFFFF)
        _U16.pack_into(ip_header, 10, 0)
        _U16.pack_into(ip_header, 10, internet_checksum(ip_header))
        out.append(bytes(ip_header) + bytes(tcp_header) + bytes(piece))
        if last:
            return out
        at += size


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


# ---------------------------------------------------------------------- the kernel's tables


class _Rtnl:
    """A minimal rtnetlink client: one NETLINK_ROUTE socket, made in the link's namespace, with
    pyroute2's message classes to encode and decode.

    pyroute2 0.9's IPRoute opens its socket per thread, lazily, in the namespace of whichever thread
    calls: from the stack's threads (which stay in the host's namespace) it would read, and with
    NTF_USE write, the host's tables. A plain socket keeps the namespace it was made in.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)  # NETLINK_ROUTE
        try:
            self.sock.bind((0, 0))
            self.sock.settimeout(1.0)
        except BaseException:
            self.sock.close()
            raise
        self.lock = threading.Lock()
        self.seq = 0

    def request(self, msg: Any, kind: int, flags: int) -> list[Any]:
        """Send `msg` as a `kind` request; the answers with its sequence number (an error raises OSError)."""
        from pyroute2.netlink import NLMSG_DONE, NLMSG_ERROR
        from pyroute2.netlink.rtnl.marshal import MarshalRtnl

        with self.lock:
            self.seq = self.seq % 0x7FFFFFFF + 1
            msg["header"]["type"] = kind
            msg["header"]["flags"] = flags
            msg["header"]["sequence_number"] = self.seq
            msg.encode()
            self.sock.send(msg.data)
            marshal = MarshalRtnl()
            while True:
                answers = [
                    m
                    for m in marshal.parse(self.sock.recv(65536))
                    if m["header"]["sequence_number"] == self.seq
                ]
                if answers:
                    break
        out = []
        for m in answers:
            t = m["header"]["type"]
            if t == NLMSG_ERROR:
                if m["error"]:
                    raise OSError(-m["error"], f"rtnetlink: {os.strerror(-m['error'])}")
            elif t != NLMSG_DONE:
                out.append(m)
        return out

    def link(self, index: int) -> Any:
        from pyroute2.netlink import NLM_F_REQUEST
        from pyroute2.netlink.rtnl import RTM_GETLINK
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

        msg = ifinfmsg()
        msg["index"] = index
        return self.request(msg, RTM_GETLINK, NLM_F_REQUEST)[0]

    def route(self, dst: IPv4Address) -> tuple[int, IPv4Address]:
        """(output interface index, next hop) of the kernel's route to `dst`."""
        from pyroute2.netlink import NLM_F_REQUEST
        from pyroute2.netlink.rtnl import RTM_GETROUTE
        from pyroute2.netlink.rtnl.rtmsg import rtmsg

        msg = rtmsg()
        msg["family"] = socket.AF_INET
        msg["dst_len"] = 32
        msg["attrs"] = [("RTA_DST", str(dst))]
        answer = self.request(msg, RTM_GETROUTE, NLM_F_REQUEST)[0]
        gateway = answer.get("RTA_GATEWAY")
        return int(answer.get("RTA_OIF") or 0), IPv4Address(gateway) if gateway else dst

    def neighbour(self, index: int, hop: IPv4Address) -> tuple[int, str | None]:
        """(NUD state, link-layer address) of `hop` on interface `index`; (0, None) when there is none."""
        from pyroute2.netlink import NLM_F_REQUEST
        from pyroute2.netlink.rtnl import RTM_GETNEIGH
        from pyroute2.netlink.rtnl.ndmsg import ndmsg

        msg = ndmsg()
        msg["family"] = socket.AF_INET
        msg["ifindex"] = index
        msg["attrs"] = [("NDA_DST", str(hop))]
        try:
            answer = self.request(msg, RTM_GETNEIGH, NLM_F_REQUEST)
        except FileNotFoundError:
            return 0, None
        if not answer:
            return 0, None
        return int(answer[0]["state"]), answer[0].get("NDA_LLADDR")

    def use_neighbour(self, index: int, hop: IPv4Address) -> None:
        """RTM_NEWNEIGH with NTF_USE (`ip neigh replace HOP dev IF use`): the kernel acts as if it had a
        packet for `hop`: it starts resolving a new or failed entry and re-confirms a stale one."""
        from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
        from pyroute2.netlink.rtnl import RTM_NEWNEIGH
        from pyroute2.netlink.rtnl.ndmsg import ndmsg

        msg = ndmsg()
        msg["family"] = socket.AF_INET
        msg["ifindex"] = index
        msg["flags"] = NTF_USE
        msg["state"] = 0
        msg["attrs"] = [("NDA_DST", str(hop))]
        self.request(msg, RTM_NEWNEIGH, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)

    def close(self) -> None:
        self.sock.close()


@dataclass(slots=True)
class _Hop:
    """What the link knows of one destination: the Ethernet header to put before its frames (None:
    not known, send the plain way), and when to ask the kernel again."""

    ethernet: bytes | None
    due: float
    wait: float  # the next wait while unresolved (doubles up to `refresh`)


# ---------------------------------------------------------------------- the link


class PacketLink(RawLink):
    """RawLink plus `send_tcp`: TCP datagrams of up to `gso_max` payload octets, which the kernel
    cuts into segments of the given MSS and checksums (see the module docstring)."""

    def __init__(
        self,
        interface: str,
        address: IPv4Address,
        *,
        mtu: int | None = None,
        namespace: AbstractContextManager[object] | None = None,
        gro: bool = False,
        refresh: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open the sockets in `namespace` (as RawLink). `gro=True` turns GRO on for `interface` (the
        lab's veth; put back by `close()`). `refresh` is how long, in seconds, a destination's next-hop
        MAC address is used before the kernel's tables are read again."""
        self._packet: socket.socket | None = None
        self._rtnl: _Rtnl | None = None
        self._netns: int | None = None
        self._gro_before: bool | None = None
        self._ethernet = False
        self.refresh = refresh
        self._clock = clock
        self._hops: dict[IPv4Address, _Hop] = {}
        with namespace or nullcontext():
            super().__init__(interface, address, mtu=mtu)
            try:
                self._netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                self._rtnl = _Rtnl()
                self._packet = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                self._packet.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
                self._packet.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
                self._packet.bind((interface, 0))
                self.ifindex = socket.if_nametoindex(interface)
                info = self._rtnl.link(self.ifindex)
                self._source_mac = _mac(info.get("IFLA_ADDRESS") or "00:00:00:00:00:00")
                self.gso_max = gso_max_for(int(info.get("IFLA_GSO_MAX_SIZE") or IP_MAXPACKET + 1))
                self._ethernet = info["ifi_type"] == ARPHRD_ETHER
                if gro:
                    self._gro_before = self._set_gro(True)
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ what the stack asks

    @property
    def offload(self) -> bool:
        """True while `send_tcp` cuts in the kernel: the link is open and its interface is Ethernet."""
        return self._packet is not None and self._ethernet

    def send_tcp(self, datagram: bytes, dst: IPv4Address, ip_header_len: int, mss: int) -> None:
        """Send one IPv4 datagram carrying TCP, cut into segments of `mss` payload octets when longer.

        `datagram`'s TCP checksum field must hold `pseudo_header_sum(src, dst, len(TCP header +
        payload))` (the whole datagram's TCP length); its IP header checksum must be correct (the
        kernel copies the IP header to each segment and recomputes it there). At most `gso_max`
        payload octets; segments of `mss` must fit the MTU; no urgent data beyond `mss` (the kernel
        would copy the urgent pointer to every segment): ValueError otherwise. A datagram with a
        source route, or one to a destination whose MAC address is not yet known, is cut here and
        sent through the raw socket. Raises OSError as `send` does.
        """
        thl = (datagram[ip_header_len + 12] >> 4) * 4
        payload_len = len(datagram) - ip_header_len - thl
        if payload_len > mss:
            if ip_header_len + thl + mss > self.mtu:
                raise ValueError(
                    f"segments of {mss} octets and {ip_header_len + thl} of headers exceed MTU {self.mtu}"
                )
            if datagram[ip_header_len + 13] & _TCP_URG:
                raise ValueError("urgent data must be sent in segments of at most the MSS")
        if ip_header_len > 20 and is_source_routed(datagram, ip_header_len):
            self._send_plain(datagram, dst, ip_header_len, mss)
            return
        hop = self._hops.get(dst)
        now = self._clock()
        if hop is None or now >= hop.due:
            hop = self._look_up(dst, now, hop)
        packet = self._packet
        if hop.ethernet is None or packet is None:
            self._send_plain(datagram, dst, ip_header_len, mss)
            return
        cwr = bool(datagram[ip_header_len + 13] & _TCP_CWR)
        try:
            packet.sendmsg(
                [vnet_header(ip_header_len, thl, payload_len, mss, cwr=cwr) + hop.ethernet, datagram]
            )
        except OSError:
            self._hops.pop(dst, None)  # the next datagram asks the kernel again
            raise

    def _send_plain(self, datagram: bytes, dst: IPv4Address, ip_header_len: int, mss: int) -> None:
        for piece in segment(datagram, ip_header_len, mss):
            self.send(piece, dst)

    # ------------------------------------------------------------------ the next hop

    def _look_up(self, dst: IPv4Address, now: float, old: _Hop | None) -> _Hop:
        """Read the route and the neighbour entry for `dst` (one netlink exchange each), ask the kernel
        to resolve or re-confirm the neighbour when it is not known to be reachable, and remember
        the answer until `refresh` seconds from now (an unresolved one: 5 ms, doubling up to that)."""
        rtnl = self._rtnl
        ethernet: bytes | None = None
        try:
            if rtnl is None:
                raise OSError("link closed")
            index, hop = rtnl.route(dst)
            if index == self.ifindex and self._ethernet:
                state, lladdr = rtnl.neighbour(index, hop)
                if state & _NUD_USABLE and lladdr:
                    ethernet = _mac(lladdr) + self._source_mac + _U16.pack(ETH_P_IP)
                if not state & (NUD_REACHABLE | NUD_PERMANENT | NUD_NOARP | NUD_DELAY | NUD_PROBE):
                    rtnl.use_neighbour(index, hop)  # missing, incomplete, failed or stale
        except OSError:
            ethernet = None  # no route, or the table could not be read: the plain way meanwhile
        if ethernet is not None:
            entry = _Hop(ethernet, now + self.refresh, 0.0)
        else:
            wait = min(self.refresh, 2 * old.wait if old is not None and old.ethernet is None else 0.005)
            entry = _Hop(None, now + wait, wait)
        self._hops[dst] = entry
        return entry

    def forget(self, dst: IPv4Address | None = None) -> None:
        """Forget what was learnt of `dst` (of every destination with None): the next `send_tcp` reads
        the kernel's tables again."""
        if dst is None:
            self._hops.clear()
        else:
            self._hops.pop(dst, None)

    # ------------------------------------------------------------------ GRO

    def _set_gro(self, on: bool) -> bool:
        """Set generic receive offload on the interface (the calling thread must be in the link's
        namespace); returns what it was. pyroute2's Ethtool, as bench/labs.py uses it for TSO."""
        from pyroute2.ethtool import Ethtool

        tool = Ethtool()
        try:
            features = tool.get_features(self.interface)
            before = bool(features.features["rx-gro"].enable)
            if before != on:
                features.features["rx-gro"].enable = on
                tool.set_features(self.interface, features)
            return before
        finally:
            tool.close()

    def set_gro(self, on: bool) -> bool:
        """Turn GRO on or off for the link's interface, from any thread; returns what it was. With GRO
        on, the kernel joins consecutive segments of a connection before the AF_PACKET socket sees
        them (measured on veth: up to 44 segments, 63,752 octets, in one frame)."""
        with self._in_namespace():
            return self._set_gro(on)

    @contextlib.contextmanager
    def _in_namespace(self) -> Iterator[None]:
        """The calling thread in the link's network namespace for the body, then back (setns(2) is per
        thread; stack.netns.entered does the same by name)."""
        from pyroute2 import netns

        if self._netns is None:
            raise OSError("link closed")
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            netns.setns(self._netns)
            try:
                yield
            finally:
                netns.setns(original)
        finally:
            os.close(original)

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        """Close the sockets; GRO is put back as it was when the link turned it on."""
        if self._gro_before is False:
            self._gro_before = None
            with contextlib.suppress(Exception):  # the interface may be gone with its namespace
                self.set_gro(False)
        for sock in (self._packet, self._rtnl):
            if sock is not None:
                sock.close()
        self._packet = self._rtnl = None
        if self._netns is not None:
            os.close(self._netns)
            self._netns = None
        if hasattr(self, "_closed"):
            super().close()
