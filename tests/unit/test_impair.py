"""The impairment layer (stack/link/impair.py) over a fake link: each impairment does what it says, the
same seed gives the same run, bad settings are refused with one line, and close() stops its thread.

Timing is never asserted beyond "not before it was due": waits are on a condition, with a timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

import pytest

from stack.link.impair import ImpairedLink, Impairment, flip_bit
from stack.link.raw import Frame
from stack.wire.errors import ParseError
from stack.wire.ipv4 import IpProto, IPv4Header, build_ipv4, parse_ipv4
from stack.wire.tcp import Flags, TcpSegment, build_tcp, parse_tcp

STACK = IPv4Address("198.18.0.1")
PEER = IPv4Address("198.18.0.2")
WAIT = 10.0  # the most any test waits for what must come


def datagram(n: int, size: int = 100, src: IPv4Address = STACK, dst: IPv4Address = PEER) -> bytes:
    """A real IPv4/TCP datagram whose sequence number is `n`, `size` octets of payload."""
    seg = TcpSegment(40000, 7, seq=n, ack=1, flags=Flags.ACK, window=1000, payload=bytes(size))
    return build_ipv4(IPv4Header(src=src, dst=dst, protocol=IpProto.TCP), build_tcp(seg, src, dst))


def seq_of(data: bytes) -> int:
    _, payload = parse_ipv4(data)
    return parse_tcp(payload).seq


@dataclass
class Sent:
    at: float
    data: bytes
    dst: IPv4Address


class FakeLink:
    """Records what is sent (with the time); hands out queued frames, waiting up to the timeout."""

    address = STACK
    mtu = 1500

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.sent: list[Sent] = []
        self.queue: list[Frame] = []
        self.closed = False

    def send(self, datagram: bytes, dst: IPv4Address) -> None:
        with self.cv:
            self.sent.append(Sent(time.monotonic(), datagram, dst))
            self.cv.notify_all()

    def receive(self, timeout: float | None, wakeup: int | None = None) -> Iterable[Frame]:
        with self.cv:
            self.cv.wait_for(lambda: self.queue, timeout)
            frames, self.queue = self.queue, []
            return frames

    def arrive(self, *frames: Frame) -> None:
        with self.cv:
            self.queue.extend(frames)
            self.cv.notify_all()

    def wait_sent(self, count: int) -> list[Sent]:
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.sent) >= count, WAIT), (
                f"{len(self.sent)} of {count} datagrams sent within {WAIT} s"
            )
            return list(self.sent)

    def fileno(self) -> int:
        return 42

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake() -> FakeLink:
    return FakeLink()


def impaired(fake: FakeLink, seed: int = 7, **out: object) -> ImpairedLink:
    link = ImpairedLink(fake, seed=seed)
    if out:
        link.set("out", **out)
    return link


def send_all(link: ImpairedLink, n: int, size: int = 100) -> list[bytes]:
    packets = [datagram(i, size) for i in range(n)]
    for p in packets:
        link.send(p, PEER)
    return packets


def receive_all(link: ImpairedLink, count: int) -> list[tuple[float, Frame]]:
    """Call receive() as the stack's receive thread does until `count` frames came out."""
    got: list[tuple[float, Frame]] = []
    deadline = time.monotonic() + WAIT
    while len(got) < count:
        assert time.monotonic() < deadline, f"{len(got)} of {count} frames within {WAIT} s"
        for f in link.receive(0.5):
            got.append((time.monotonic(), f))
    return got


# ---------------------------------------------------------------------- pass-through


def test_with_nothing_set_it_is_a_pass_through(fake: FakeLink) -> None:
    link = ImpairedLink(fake, seed=1)
    packets = send_all(link, 5)
    assert [s.data for s in fake.sent] == packets
    frame = Frame(packets[0], False)
    fake.arrive(frame)
    assert list(link.receive(0.1)) == [frame]
    assert link._thread is None  # no scheduler thread for a pass-through
    assert not link.active
    assert link.settings("out").describe() == "off"
    assert link.address == STACK and link.mtu == 1500 and link.fileno() == 42


def test_off_restores_the_pass_through(fake: FakeLink) -> None:
    link = impaired(fake, loss=1.0)
    send_all(link, 10)
    assert fake.sent == []
    assert link.counters("out").dropped == 10
    link.off()
    packets = send_all(link, 3)
    assert [s.data for s in fake.sent] == packets
    assert not link._out.engaged and not link._in.engaged


# ---------------------------------------------------------------------- loss


def lost_indices(seed: int, n: int = 10_000, **settings: object) -> list[int]:
    fake = FakeLink()
    link = impaired(fake, seed=seed, **settings)
    send_all(link, n, size=0)
    kept = {seq_of(s.data) for s in fake.sent}
    assert link.counters("out").dropped + link.counters("out").passed == n
    return [i for i in range(n) if i not in kept]


def test_loss_rate_is_near_the_setting_and_the_same_seed_gives_the_same_losses() -> None:
    first = lost_indices(seed=42, loss=0.05)
    assert 400 <= len(first) <= 600  # 5% of 10,000, with room for about 4.5 standard deviations
    assert lost_indices(seed=42, loss=0.05) == first
    assert lost_indices(seed=43, loss=0.05) != first


def test_reseed_starts_the_same_choices_again(fake: FakeLink) -> None:
    link = impaired(fake, seed=5, loss=0.3)
    send_all(link, 200, size=0)
    first = [seq_of(s.data) for s in fake.sent]
    fake.sent.clear()
    link.reseed(5)
    send_all(link, 200, size=0)
    assert [seq_of(s.data) for s in fake.sent] == first
    assert link.seed == 5


def runs(indices: list[int]) -> list[int]:
    """Lengths of the runs of consecutive numbers in `indices` (sorted)."""
    out: list[int] = []
    for i, n in enumerate(indices):
        if i and n == indices[i - 1] + 1:
            out[-1] += 1
        else:
            out.append(1)
    return out


def test_losses_in_bursts_come_in_runs_of_about_the_burst_length() -> None:
    independent = runs(lost_indices(seed=3, loss=0.1))
    bursty_lost = lost_indices(seed=3, loss=0.1, burst=5)
    bursty = runs(bursty_lost)
    assert 700 <= len(bursty_lost) <= 1300  # the long-run rate is still about 10%
    assert sum(independent) / len(independent) < 1.5  # 1/(1-p), about 1.1
    assert 3.5 <= sum(bursty) / len(bursty) <= 7  # about 5
    assert max(bursty) > max(independent)


def test_all_lost_at_100_percent(fake: FakeLink) -> None:
    link = impaired(fake, loss=1.0, burst=3)
    send_all(link, 100)
    assert fake.sent == [] and link.counters("out").dropped == 100


# ---------------------------------------------------------------------- duplication and corruption


def test_duplication_sends_a_second_copy(fake: FakeLink) -> None:
    link = impaired(fake, duplicate=1.0)
    packets = send_all(link, 50)
    assert [s.data for s in fake.sent] == [p for p in packets for _ in (1, 2)]
    assert link.counters("out").duplicated == 50 and link.counters("out").passed == 100


def test_duplication_at_a_percentage_copies_about_that_many(fake: FakeLink) -> None:
    link = impaired(fake, duplicate=0.2)
    send_all(link, 5000, size=0)
    copies = link.counters("out").duplicated
    assert 800 <= copies <= 1200
    assert len(fake.sent) == 5000 + copies


def differing_bits(a: bytes, b: bytes) -> list[int]:
    assert len(a) == len(b)
    pairs = enumerate(zip(a, b, strict=True))
    return [i * 8 + bit for i, (x, y) in pairs for bit in range(8) if (x ^ y) >> bit & 1]


def test_corruption_flips_one_bit_after_the_ip_header_and_the_tcp_checksum_catches_it(fake: FakeLink) -> None:
    link = impaired(fake, corrupt=1.0)
    packets = send_all(link, 200)
    assert link.counters("out").corrupted == 200
    for original, sent in zip(packets, fake.sent, strict=True):
        (bit,) = differing_bits(original, sent.data)
        assert bit >= 20 * 8  # past the IPv4 header
        ip, payload = parse_ipv4(sent.data)  # the IPv4 header is intact
        with pytest.raises(ParseError):
            parse_tcp(payload, ip.src, ip.dst)


def test_a_corrupted_frame_arriving_is_marked_for_checksum_verification(fake: FakeLink) -> None:
    link = ImpairedLink(fake, seed=1)
    link.set("in", corrupt=1.0)
    original = datagram(1, src=PEER, dst=STACK)
    fake.arrive(Frame(original, verify_checksum=False))
    ((_, frame),) = receive_all(link, 1)
    assert frame.verify_checksum is True
    assert len(differing_bits(original, frame.data)) == 1
    ip, payload = parse_ipv4(frame.data)
    with pytest.raises(ParseError):
        parse_tcp(payload, ip.src, ip.dst)


def test_a_datagram_without_anything_after_its_header_is_not_corrupted() -> None:
    import random

    header_only = build_ipv4(IPv4Header(src=STACK, dst=PEER, protocol=IpProto.TCP), b"")
    assert flip_bit(header_only, random.Random(1)) is None


# ---------------------------------------------------------------------- delay, reordering, rate


def test_delay_with_jitter_never_releases_a_datagram_before_it_is_due(fake: FakeLink) -> None:
    link = impaired(fake, delay=0.05, jitter=0.01)
    started: dict[int, float] = {}
    for i in range(30):
        started[i] = time.monotonic()
        link.send(datagram(i), PEER)
    sent = fake.wait_sent(30)
    assert sorted(seq_of(s.data) for s in sent) == list(range(30))
    for s in sent:
        assert s.at >= started[seq_of(s.data)] + 0.04
        assert s.dst == PEER
    assert link.counters("out").delayed == 30
    link.close()


def test_inbound_delay_holds_frames_until_they_are_due(fake: FakeLink) -> None:
    link = ImpairedLink(fake, seed=1)
    link.set("in", delay=0.05)
    frames = [Frame(datagram(i, src=PEER, dst=STACK), True) for i in range(5)]
    arrived = time.monotonic()
    fake.arrive(*frames)
    got = receive_all(link, 5)
    assert [f for _, f in got] == frames  # the same frames, in order
    assert all(at >= arrived + 0.05 for at, _ in got)
    assert link.counters("in").delayed == 5 and link.counters("in").passed == 5


def test_reordering_changes_the_order_and_loses_nothing(fake: FakeLink) -> None:
    link = impaired(fake, reorder=0.2, hold=1.0)  # long enough that only the last can go on its own
    send_all(link, 1000, size=0)
    order = [seq_of(s.data) for s in fake.wait_sent(1000)]
    assert sorted(order) == list(range(1000))
    assert order != list(range(1000))
    reordered = link.counters("out").reordered
    assert 100 <= reordered <= 300
    # a held datagram goes right after the one that overtook it
    late = [i for i in range(1, 1000) if order[i] < order[i - 1]]
    assert len(late) >= reordered - 1  # the last one may have gone on its own, after its hold time
    link.close()


def test_a_held_datagram_goes_after_its_hold_time_when_nothing_follows(fake: FakeLink) -> None:
    link = impaired(fake, reorder=1.0, hold=0.02)
    before = time.monotonic()
    link.send(datagram(1), PEER)
    (sent,) = fake.wait_sent(1)
    assert sent.at >= before + 0.02
    link.close()


def test_rate_limit_spaces_datagrams_by_their_serialization_time(fake: FakeLink) -> None:
    link = impaired(fake, rate=1_000_000)  # 1 Mbit/s
    packets = [datagram(i, size=1000 - 40) for i in range(10)]  # 1000 octets: 8 ms each
    start = time.monotonic()
    for p in packets:
        link.send(p, PEER)
    sent = fake.wait_sent(10)
    assert [s.data for s in sent] == packets
    for i, s in enumerate(sent):
        assert s.at >= start + (i + 1) * 0.008
    link.close()


def test_a_full_queue_drops_what_does_not_fit(fake: FakeLink) -> None:
    link = impaired(fake, delay=1.0, limit=5)
    send_all(link, 8)
    c = link.counters("out")
    assert c.delayed == 5 and c.dropped == 3
    link.close()


# ---------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss": 1.5}, "loss 150% is out of range 0-100%"),
        ({"duplicate": -0.01}, "duplicate -1% is out of range 0-100%"),
        ({"delay": -0.01}, "delay -10ms must be zero or more"),
        ({"jitter": 120.0}, "jitter 120s is more than the 60s allowed"),
        ({"rate": 0}, "rate 0 must be more than 0 bits per second"),
        ({"burst": 0.5}, "burst 0.5 must be 1 packet or more"),
        ({"loss": 0.9, "burst": 3}, "loss 90% cannot come in bursts of 3: at most 75%"),
        ({"loss": "5%"}, "loss '5%' is not a number"),
        ({"limit": 0}, "limit 0 must be a whole number of datagrams"),
        ({"lost": 0.1}, "unknown impairment 'lost' (known: loss, burst, delay"),
    ],
)
def test_bad_settings_raise_one_clear_line_and_change_nothing(
    fake: FakeLink, changes: dict[str, object], message: str
) -> None:
    link = impaired(fake, loss=0.1)
    with pytest.raises(ValueError) as caught:
        link.set("both", **changes)
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text
    assert link.settings("out") == Impairment(loss=0.1)
    assert link.settings("in") == Impairment()


def test_an_unknown_direction_is_refused(fake: FakeLink) -> None:
    with pytest.raises(ValueError, match="direction 'sideways' is one of out, in, both"):
        ImpairedLink(fake).set("sideways", loss=0.1)


def test_settings_describe_themselves_in_the_words_of_the_command() -> None:
    s = Impairment(loss=0.05, burst=3, delay=0.05, jitter=0.01, duplicate=0.01, corrupt=0.005, rate=10e6)
    assert s.describe() == (
        "loss 5% in bursts of 3, delay 50ms ±10ms, duplicate 1%, corrupt 0.5%, rate 10mbit"
    )
    assert Impairment(reorder=0.1).describe() == "reorder 10% (held up to 10ms)"
    assert Impairment().describe() == "off" and not Impairment().active


def test_each_direction_has_its_own_settings_and_counters(fake: FakeLink) -> None:
    link = ImpairedLink(fake, seed=1)
    link.set("in", loss=1.0)
    send_all(link, 3)
    fake.arrive(Frame(datagram(9, src=PEER, dst=STACK), True))
    assert list(link.receive(0.5)) == []
    assert len(fake.sent) == 3
    assert link.counters("in").dropped == 1 and link.counters("out").dropped == 0
    link.reset_counters()
    assert link.counters("in").dropped == 0


# ---------------------------------------------------------------------- life cycle


def test_close_stops_the_scheduler_thread_and_closes_the_inner_link(fake: FakeLink) -> None:
    link = impaired(fake, delay=5.0)
    link.send(datagram(1), PEER)
    thread = link._thread
    assert thread is not None and thread.is_alive()
    link.close()
    assert not thread.is_alive()
    assert fake.closed
    assert fake.sent == []  # what still waited is dropped
    link.send(datagram(2), PEER)  # after close: nothing is queued, nothing restarts
    assert link._thread is thread and not thread.is_alive()


def test_sends_from_several_threads_while_settings_change(fake: FakeLink) -> None:
    link = impaired(fake, delay=0.001, jitter=0.001)
    lock = threading.Lock()  # the stack sends under its send lock

    def sender(base: int) -> None:
        for i in range(200):
            with lock:
                link.send(datagram(base + i), PEER)

    threads = [threading.Thread(target=sender, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for k in range(20):
        link.set("out", jitter=0.001 * (k % 3), duplicate=0.0)
    for t in threads:
        t.join()
    sent = fake.wait_sent(800)
    assert sorted(seq_of(s.data) for s in sent) == sorted(k * 1000 + i for k in range(4) for i in range(200))
    link.close()
