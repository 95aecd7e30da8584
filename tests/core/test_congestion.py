"""Reno's textbook traces, called directly with a fake clock: slow start, congestion avoidance, NewReno's
partial and full ACKs, the loss window after a timeout (RFC 5681, RFC 6582); the initial window of RFC
5681 and RFC 6928; restart after idle (RFC 5681 4.1).

test_recovery.py checks through a TCB that the third duplicate ACK halves and inflates the window and
that a fourth inflates it by one segment; these start where it stops."""

from __future__ import annotations

import pytest

from stack.tcp.congestion import CONGESTION_CONTROLS, Cubic, Reno, initial_window

MSS = 1000


def one_rtt(cc: Reno, now: float, rtt: float = 0.1) -> float:
    """Every segment of the window is acknowledged, one ACK per segment, within one RTT."""
    n = cc.cwnd // MSS
    for _ in range(n):
        now += rtt / n
        cc.on_ack(MSS, cc.cwnd, now)
    return now


# ---------------------------------------------------------------------- initial window


@pytest.mark.parametrize(
    ("mss", "rfc5681", "rfc6928"),
    [
        (536, 2144, 5360),  # 4 segments; 10 segments
        (1095, 4380, 10950),  # the largest SMSS with 4 segments (RFC 5681 3.1)
        (1460, 4380, 14600),  # 3 segments; 10 segments
        (2190, 4380, 14600),  # 2 segments above this (RFC 5681 3.1); 14600 bytes, 6.7 segments
        (8960, 17920, 17920),  # jumbo frames: 2 segments either way
    ],
)
def test_initial_window_by_rfc5681_and_rfc6928(mss, rfc5681, rfc6928):
    assert initial_window(mss) == initial_window(mss, rfc6928=False) == rfc5681
    assert initial_window(mss, rfc6928=True) == rfc6928


@pytest.mark.parametrize("algorithm", [Reno, Cubic])
def test_the_window_starts_at_the_initial_window_given(algorithm):
    assert algorithm(1460).cwnd == 4380  # RFC 5681 when the TCB gives none
    assert algorithm(1460, initial_window(1460, rfc6928=True)).cwnd == 14600


def test_registry_names_each_algorithm():
    assert CONGESTION_CONTROLS["reno"] is Reno and CONGESTION_CONTROLS["cubic"] is Cubic
    assert all(cls.name == name for name, cls in CONGESTION_CONTROLS.items())


# ---------------------------------------------------------------------- slow start, avoidance


def test_slow_start_doubles_the_window_every_rtt():
    """RFC 5681 3.1: cwnd += min(N, SMSS) per ACK, so a window of ACKs doubles it."""
    cc = Reno(MSS)
    assert cc.cwnd == 4000
    now, seen = 0.0, []
    for _ in range(4):
        now = one_rtt(cc, now)
        seen.append(cc.cwnd)
    assert seen == [8000, 16000, 32000, 64000]


def test_slow_start_counts_at_most_one_segment_per_ack():
    """RFC 5681 3.1: an ACK for three segments opens the window by one SMSS, not three."""
    cc = Reno(MSS)
    cc.on_ack(3 * MSS, 4000, 0.1)
    assert cc.cwnd == 5000
    cc.on_ack(400, 4000, 0.1)
    assert cc.cwnd == 5400


def test_congestion_avoidance_adds_one_segment_per_window_of_acknowledged_bytes():
    """RFC 5681 3.1: about one SMSS per RTT once cwnd >= ssthresh, counted in acknowledged bytes."""
    cc = Reno(MSS)
    cc.cwnd = cc.ssthresh = 10_000
    for i in range(9):
        cc.on_ack(MSS, 10_000, 0.01 * i)
        assert cc.cwnd == 10_000
    cc.on_ack(MSS, 10_000, 0.1)  # the tenth segment: a whole window acknowledged
    assert cc.cwnd == 11_000
    now, seen = 0.1, []
    for _ in range(3):
        now = one_rtt(cc, now)
        seen.append(cc.cwnd)
    assert seen == [12_000, 13_000, 14_000]


def test_slow_start_hands_over_to_avoidance_at_ssthresh():
    cc = Reno(MSS)
    cc.ssthresh = 8000
    now = one_rtt(cc, 0.0)  # 4 ACKs in slow start: 4000 -> 8000 = ssthresh
    assert cc.cwnd == 8000
    one_rtt(cc, now)
    assert cc.cwnd == 9000


# ---------------------------------------------------------------------- fast recovery


def test_newreno_episode_partial_acks_deflate_and_the_full_ack_deflates_to_ssthresh():
    """RFC 6582 3.2: step 5 deflates by the newly acknowledged data and adds back one SMSS when that was
    at least one SMSS; step 4 ends with min(ssthresh, max(FlightSize, SMSS) + SMSS)."""
    cc = Reno(MSS)
    cc.cwnd = 20_000
    cc.enter_recovery(20_000, 1.0)
    assert (cc.ssthresh, cc.cwnd) == (10_000, 13_000)
    cc.dupack_in_recovery()
    cc.dupack_in_recovery()
    assert cc.cwnd == 15_000
    cc.partial_ack(3000)  # three segments: 15000 - 3000 + 1000
    assert cc.cwnd == 13_000
    cc.partial_ack(400)  # less than a segment: nothing added back
    assert cc.cwnd == 12_600
    cc.exit_recovery(16_000)  # much in flight: ssthresh wins
    assert (cc.cwnd, cc.ssthresh) == (10_000, 10_000)


def test_full_ack_with_little_in_flight_leaves_flight_plus_one_segment():
    cc = Reno(MSS)
    cc.cwnd = 20_000
    cc.enter_recovery(20_000, 1.0)
    cc.exit_recovery(4000)
    assert cc.cwnd == 5000
    cc.exit_recovery(0)  # max(FlightSize, SMSS) + SMSS
    assert cc.cwnd == 2000


def test_partial_ack_never_deflates_below_one_segment():
    cc = Reno(MSS)
    cc.enter_recovery(4000, 1.0)  # ssthresh 2 SMSS, cwnd 5 SMSS
    cc.partial_ack(5500)  # 5000 - 5500 + 1000
    assert cc.cwnd == MSS


def test_an_ack_after_recovery_grows_the_window_by_avoidance():
    cc = Reno(MSS)
    cc.cwnd = 20_000
    cc.enter_recovery(20_000, 1.0)
    cc.exit_recovery(20_000)
    one_rtt(cc, 1.1)
    assert cc.cwnd == 11_000


# ---------------------------------------------------------------------- timeout


@pytest.mark.parametrize(
    ("flight", "ssthresh"),
    [(30_000, 15_000), (3000, 2000), (0, 2000)],  # max(FlightSize / 2, 2*SMSS)
)
def test_rto_collapses_the_window_to_one_segment(flight, ssthresh):
    """RFC 5681 3.1, equation (4) and the loss window LW = 1 SMSS."""
    cc = Reno(MSS)
    cc.cwnd = 40_000
    cc.on_timeout(flight, 5.0)
    assert (cc.cwnd, cc.ssthresh) == (MSS, ssthresh)


def test_after_rto_slow_start_up_to_ssthresh_then_avoidance():
    cc = Reno(MSS)
    cc.cwnd = 16_000
    cc.on_timeout(16_000, 5.0)
    now, seen = 5.0, []
    for _ in range(5):
        now = one_rtt(cc, now)
        seen.append(cc.cwnd)
    assert seen == [2000, 4000, 8000, 9000, 10_000]


def test_a_second_timeout_keeps_ssthresh_from_the_flight_then():
    cc = Reno(MSS)
    cc.cwnd = 16_000
    cc.on_timeout(16_000, 5.0)
    cc.on_timeout(MSS, 6.0)  # the one retransmitted segment is all that is in flight
    assert (cc.cwnd, cc.ssthresh) == (MSS, 2 * MSS)


# ---------------------------------------------------------------------- restart after idle


@pytest.mark.parametrize("algorithm", [Reno, Cubic])
def test_restart_after_idle_cuts_the_window_to_the_initial_window(algorithm):
    """RFC 5681 4.1: cwnd = min(RW, cwnd) with RW = min(IW, cwnd); ssthresh is kept."""
    cc = algorithm(1460)
    cc.cwnd, cc.ssthresh = 50_000, 30_000
    cc.restart_after_idle(14_600)
    assert (cc.cwnd, cc.ssthresh) == (14_600, 30_000)
    cc.cwnd = 8000  # already below the restart window: unchanged
    cc.restart_after_idle(14_600)
    assert cc.cwnd == 8000


def test_after_restart_the_window_grows_again_by_slow_start():
    cc = Reno(MSS)
    cc.cwnd, cc.ssthresh = 40_000, 20_000
    cc.restart_after_idle(4000)
    one_rtt(cc, 100.0)
    assert cc.cwnd == 8000


def test_reno_ignores_rtt():
    cc = Reno(MSS)
    before = vars(cc).copy()
    cc.on_rtt(0.25)
    assert vars(cc) == before
