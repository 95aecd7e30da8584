"""Fuzzing the running stack over the lab link: thousands of random and damaged IPv4 packets from the
kernel's side, aimed at live connections, a listener and ports where nothing listens.

The stack runs in the lab (tests/interop's `lab_stack`) with connections to Linux's echo service and
one that Linux opened to a passive OPEN of the stack. From the kernel's namespace, packets built with
scapy (a packet library the project does not write) are written onto the veth through a packet
socket, so the stack meets them as it would meet them on a wire: well-formed segments with random
flags, numbers near and far from the windows and random options; and damaged ones: bad TCP and IPv4
checksums, truncated datagrams, bad data offsets and header lengths, total lengths that lie, random
option octets, IPv4 options, stray fragments, random octets, scapy's own `fuzz()`, and ICMP errors
quoting the connections.

The connections are of two kinds, as in test_tcb_fuzz.py:
- protected ones get only what an off-path attacker could send without knowing their numbers
  (fuzzer.blind_safe, aimed from their STATUS before the run; they are idle meanwhile, so the numbers
  hold), and must echo data exactly afterwards;
- sacrificial ones get anything, in-window junk and RSTs included, and need only leave the stack
  sound.

Afterwards: the stack's threads are alive, it reported no internal error, every connection's STATUS
keeps SND.UNA =< SND.NXT =< snd_max, the protected connections (and a new one) still echo exactly, and
the bad-packet counter counted at least the packets with a wrong checksum. The number of packets is
tests/fuzz/budget.lab_packets() (a tenth of TCPSH_FUZZ_SEGMENTS, at least 2,000); TCPSH_FUZZ_SEED
repeats a run. Network rule: traffic only inside the lab (198.18.0.0/15).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from stack.lab import Lab
from stack.runtime import Stack, StackError
from stack.tcp import State, TcbStatus
from stack.tcp.seq import seq_le
from stack.wire.tcp import TcpOptions, TcpSegment
from tests.fuzz import budget
from tests.fuzz.fuzzer import RandomSource, View, _fmt_seg, blind_safe, make_blind, random_segment
from tests.interop.conftest import KernelProcess, Wire, wait_for

scapy = pytest.importorskip("scapy.all")

pytestmark = pytest.mark.root

ECHO = 7
PASSIVE_PORT, LISTEN_PORT = 7070, 7071
BATCH = 100

SENT: Counter[str] = Counter()  # packets sent per kind, for the summary

ECHO_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
print("CONNECTED", s.getsockname()[1], flush=True)
while piece := s.recv(65536):
    s.sendall(piece)
print("EOF", flush=True)
s.close()
"""
"""Connect to the stack's passive OPEN and echo everything back until the end of the stream."""


@dataclass
class Target:
    cid: str
    view: View
    protected: bool


def view_of(status: TcbStatus) -> View:
    """The connection's numbers, RCV.WND widened by one scale unit: what the stack takes may reach a
    little past what it offers (a scaled window rounds), and the blind rule must not miss that."""
    v = View.of_status(status)
    return replace(v, rcv_wnd=v.rcv_wnd + (1 << status.rcv_shift))


def receive_exactly(stack: Stack, cid: str, n: int) -> bytes:
    got = bytearray()
    while len(got) < n:
        piece = stack.receive(cid, n - len(got), timeout=10)
        assert piece, f"{cid}: the stream ended after {len(got)} of {n} octets"
        got += piece
    return bytes(got)


def echoes(stack: Stack, cid: str, n: int, seed: int) -> None:
    data = random.Random(seed).randbytes(n)
    stack.send(cid, data, push=True, timeout=10)
    back = receive_exactly(stack, cid, n)
    assert hashlib.sha256(back).hexdigest() == hashlib.sha256(data).hexdigest(), f"{cid}: the echo differs"


# -- packets ------------------------------------------------------------------------------------------------


def scapy_options(opts: TcpOptions) -> list[tuple[object, object]]:
    """TcpOptions as scapy's option list, cut to what fits in 40 octets."""
    out: list[tuple[object, object]] = []
    room = 40
    if opts.mss is not None:
        out.append(("MSS", opts.mss))
        room -= 4
    if opts.wscale is not None:
        out.append(("WScale", opts.wscale))
        room -= 3
    if opts.sack_permitted:
        out.append(("SAckOK", b""))
        room -= 2
    if opts.timestamps is not None:
        out.append(("Timestamp", opts.timestamps))
        room -= 10
    blocks = opts.sack_blocks[: max(0, (room - 2) // 8)]
    if blocks:
        out.append(("SAck", tuple(edge for block in blocks for edge in block)))
        room -= 2 + 8 * len(blocks)
    for kind, data in opts.unknown:
        if 2 + len(data) <= room:
            out.append((kind, data))
            room -= 2 + len(data)
    return out


class Packets:
    """Random and damaged IPv4 datagrams from the kernel's address to the stack's."""

    def __init__(self, lab: Lab, seed: int) -> None:
        self.r = RandomSource(seed)
        self.rng = self.r.rng
        self.src, self.dst = str(lab.kernel_addr), str(lab.stack_addr)
        self.dst_packed = lab.stack_addr.packed

    def ip(self, **kw: object) -> object:
        fields = {"src": self.src, "dst": self.dst, "id": self.rng.randrange(65536), "flags": "DF"}
        fields.update(kw)
        return scapy.IP(**fields)

    def tcp(self, seg: TcpSegment, **kw: object) -> object:
        fields = {
            "sport": seg.src_port,
            "dport": seg.dst_port,
            "seq": seg.seq,
            "ack": seg.ack,
            "flags": int(seg.flags),
            "window": seg.window,
            "urgptr": seg.urgent,
            "options": scapy_options(seg.options),
        }
        fields.update(kw)
        return scapy.TCP(**fields)

    def datagram(self, seg: TcpSegment, damage: str) -> bytes:
        """`seg` as an IPv4 datagram, damaged as `damage` says."""
        rng = self.rng
        seg = replace(seg, payload=seg.payload[:1380])  # a frame that fits the veth's MTU, with options
        payload = scapy.Raw(seg.payload) if seg.payload else b""
        if damage == "tcp checksum":
            ip = self.ip()
            good = bytes(ip / self.tcp(seg) / payload)
            wrong = int.from_bytes(good[36:38], "big") ^ (1 << rng.randrange(16))  # 20 + 16: the field
            return bytes(ip / self.tcp(seg, chksum=wrong) / payload)
        if damage == "ip checksum":
            good = bytes(self.ip() / self.tcp(seg) / payload)
            return good[:10] + (int.from_bytes(good[10:12], "big") ^ 0x5A5A).to_bytes(2, "big") + good[12:]
        if damage == "truncated":
            good = bytes(self.ip() / self.tcp(seg) / payload)
            return good[: rng.randrange(len(good))]
        if damage == "data offset":
            return bytes(self.ip() / self.tcp(seg, dataofs=rng.randrange(16), options=[]) / payload)
        if damage == "header length":
            return bytes(self.ip(ihl=rng.randrange(16)) / self.tcp(seg) / payload)
        if damage == "total length":
            return bytes(self.ip(len=rng.randrange(65536)) / self.tcp(seg) / payload)
        if damage == "option octets":
            words = rng.randint(1, 10)
            junk = rng.randbytes(4 * words)
            return bytes(
                self.ip() / self.tcp(seg, dataofs=5 + words, options=[]) / scapy.Raw(junk + seg.payload)
            )
        if damage == "ip options":  # option octets in the IPv4 header, the header still correct
            words = rng.randint(1, 10)
            # Record route, timestamp, security, router alert, NOP, EOL, unknown. No source routes:
            # the stack would take their hops as the connection's return route (MUST-53), and random
            # hops are addresses outside the lab.
            first = rng.choice((7, 68, 130, 148, 1, 0, 25))
            d = bytearray(bytes(self.ip() / self.tcp(seg) / payload))
            d[20:20] = bytes((first,)) + rng.randbytes(4 * words - 1)
            d[0], d[2:4], d[10:12] = 0x40 | (5 + words), len(d).to_bytes(2, "big"), b"\0\0"
            d[10:12] = scapy.checksum(bytes(d[: 20 + 4 * words])).to_bytes(2, "big")
            return bytes(d)
        if damage == "fragment":
            frag = rng.randrange(1, 8192) if rng.random() < 0.7 else 0
            return bytes(self.ip(flags="MF", frag=frag) / self.tcp(seg) / payload)
        return bytes(self.ip() / self.tcp(seg) / payload)

    def random_octets(self) -> bytes:
        rng = self.rng
        raw = bytearray(rng.randbytes(rng.randrange(1, 120)))
        if len(raw) >= 20 and rng.random() < 0.8:  # through the link's filter: to us, TCP or ICMP
            raw[0] = (raw[0] & 0x0F) | 0x40
            raw[9] = rng.choice((6, 1))
            raw[16:20] = self.dst_packed
        return bytes(raw)

    def scapy_fuzz(self, dport: int) -> bytes:
        return bytes(scapy.fuzz(scapy.IP(src=self.src, dst=self.dst) / scapy.TCP(dport=dport)))

    def icmp(self, t: Target) -> bytes:
        """An ICMP error quoting one of the connection's segments, at a random sequence number."""
        rng = self.rng
        kind = rng.choice(((3, rng.randrange(16)), (11, 0), (12, 0), (4, 0), (5, 1), (8, 0), (3, 4)))
        quoted = scapy.IP(src=self.dst, dst=self.src) / scapy.TCP(
            sport=t.view.local_port, dport=t.view.remote_port, seq=rng.getrandbits(32)
        )
        icmp = scapy.ICMP(type=kind[0], code=kind[1], nexthopmtu=rng.choice((0, 68, 552, 600, 1500)))
        return bytes(self.ip(flags=0) / icmp / bytes(quoted)[: rng.choice((28, 40, 60))])


DAMAGE = (
    "tcp checksum",
    "ip checksum",
    "truncated",
    "data offset",
    "header length",
    "total length",
    "option octets",
    "ip options",
    "fragment",
)
SURELY_BAD = ("tcp checksum", "ip checksum")  # always counted by the stack as bad packets


def passes_filter(datagram: bytes, dst: bytes) -> bool:
    """What the link's BPF program lets through to the stack (stack/link/raw.py): TCP or ICMP to us."""
    return len(datagram) >= 20 and datagram[16:20] == dst and datagram[9] in (1, 6)


# -- the test -----------------------------------------------------------------------------------------------


def diagnose(stack: Stack, cid: str) -> str:
    """A connection's STATUS and its last segments, for a failure message."""
    rows = [f"{cid}: {stack.status(cid)}"]
    for t, way, state, seg, n in stack.exchange(cid)[-30:]:
        rows.append(f"  {t:.4f} {way:3} {state} {_fmt_seg(seg)} data {n}")
    return "\n".join(rows)


def wait_until_read(stack: Stack, count: float, context: str) -> None:
    """Until the stack has read `count` datagrams: its socket buffer holds a few thousand, not a run."""
    wait_for(lambda: stack.counters.datagrams_in >= count, 10, f"the stack to read the packets ({context})")


def sound(stack: Stack) -> None:
    """The stack's threads alive, no internal error, and every connection's numbers in order."""
    dead = [t.name for t in stack._threads if not t.is_alive()]
    assert not dead, f"threads died: {dead}"
    assert stack.errors == [], f"the stack's threads reported errors: {stack.errors}"
    for cid, s in stack.connections():
        assert seq_le(s.snd_una, s.snd_nxt) and seq_le(s.snd_nxt, s.snd_max), (cid, s)


@pytest.mark.timeout(max(120, budget.lab_packets() // 100))  # about 1.5 ms a packet, with room
def test_random_and_damaged_packets_leave_the_stack_sound(
    lab_stack: Stack, stack_lab: Lab, wire: Wire, kernel_python: Callable[..., KernelProcess]
) -> None:
    stack, lab = lab_stack, stack_lab
    seed = int(os.environ.get("TCPSH_FUZZ_SEED") or random.randrange(1 << 32))
    total = budget.lab_packets()
    context = f"TCPSH_FUZZ_SEED={seed} ({total} packets)"

    # The connections: two to the echo service and one from Linux to a passive OPEN, protected; two
    # more to the echo service, sacrificed; a passive OPEN nothing connects to.
    protected = [stack.open(lab.kernel_addr, ECHO, timeout=5) for _ in range(2)]
    passive = stack.listen(PASSIVE_PORT)
    client = kernel_python(ECHO_CLIENT, lab.stack_addr, PASSIVE_PORT)
    client.expect("CONNECTED ")
    assert stack.wait_state(passive, State.ESTABLISHED, 5), stack.status(passive).state
    protected.append(passive)
    sacrificed = [stack.open(lab.kernel_addr, ECHO, timeout=5) for _ in range(2)]
    listener = stack.listen(LISTEN_PORT)
    for n, cid in enumerate(protected + sacrificed):
        echoes(stack, cid, 1000, seed + n)  # each has carried data before the fuzz
    targets = [Target(cid, view_of(stack.status(cid)), cid in protected) for cid in protected + sacrificed]
    used = {t.view.local_port for t in targets} | {PASSIVE_PORT, LISTEN_PORT}

    before = stack.counters.bad_packets
    datagrams_before = stack.counters.datagrams_in
    packets = Packets(lab, seed)
    r, rng = packets.r, packets.rng
    kinds: Counter[str] = Counter()
    through = 0  # packets the link's filter lets through to the stack
    start = time.monotonic()
    for i in range(total):
        pick = rng.random()
        if pick < 0.06:
            kind, datagram = "random octets", packets.random_octets()
        elif pick < 0.12:
            dport = rng.choice((*sorted(used), rng.randrange(1, 65536)))
            kind, datagram = "scapy fuzz()", packets.scapy_fuzz(dport)
        elif pick < 0.16:
            kind, datagram = "icmp", packets.icmp(rng.choice(targets))
        else:
            if pick < 0.26:  # the passive OPEN nobody connects to, or a port nothing listens on
                port = LISTEN_PORT
                while rng.random() < 0.5 and port in used:
                    port = rng.randrange(1, 65536)
                v = View(State.LISTEN, port, rng.randrange(1, 65536), 0, 0, 0, 0, 0, 0, 0, 0)
                seg = random_segment(r, v)
            else:
                t = rng.choice(targets)
                seg = random_segment(r, t.view)
                if t.protected and not blind_safe(t.view, seg):
                    seg = make_blind(r, t.view, seg)
            damage = rng.choice(DAMAGE) if rng.random() < 0.5 else "none"
            kind, datagram = damage, packets.datagram(seg, damage)
        kinds[kind] += 1
        through += passes_filter(datagram, packets.dst_packed)
        wire.send(datagram)
        if (i + 1) % BATCH == 0:
            # Let the stack keep up: its socket buffer holds a few thousand, not a whole run.
            wait_until_read(stack, datagrams_before + through * 0.98, context)
    SENT.update(kinds)
    wait_until_read(stack, datagrams_before + through, context)
    seconds = time.monotonic() - start
    print(f"\n{total} packets in {seconds:.1f} s, {through} through the link's filter: {dict(kinds)}")

    sound(stack)
    fates = {cid: str(stack.status(cid).state) for cid in sacrificed}
    print(f"counters {stack.counters}; resets sent {stack.pool.resets_sent}; the sacrificed: {fates}")
    bad = stack.counters.bad_packets - before
    surely_bad = sum(kinds[k] for k in SURELY_BAD)
    assert bad >= surely_bad, f"{bad} bad packets counted, at least {surely_bad} sent ({context})"
    # The protected connections carry data as before; the sacrificed ones are whatever the fuzz left.
    for n, cid in enumerate(protected):
        status = stack.status(cid)
        assert status.state is State.ESTABLISHED, (cid, status.state, context)
        try:
            echoes(stack, cid, 100_000, seed + 100 + n)
        except (AssertionError, StackError) as e:
            raise AssertionError(f"{context}: {e}\n{diagnose(stack, cid)}") from None
    stack.status(listener)
    fresh = stack.open(lab.kernel_addr, ECHO, timeout=5)
    echoes(stack, fresh, 100_000, seed + 200)
    for cid in (*protected, fresh):
        stack.close(cid)
    client.expect("EOF")
    for cid in sacrificed:
        if stack.status(cid).state is not State.CLOSED:
            stack.abort(cid)
    sound(stack)
