"""CUBIC (RFC 9438) traces, called directly with a fake clock: the reduction to β_cubic * W_max, K, the
cubic curve's plateau at W_max with concave growth before and convex after, the per-ACK growth toward
W_cubic(t + RTT) clamped to 1.5 * cwnd, the Reno-friendly region, fast convergence, the timeout.

Windows in the RFC are in segments; here MSS = 1000 so that 70 segments are 70000 octets. Growth goes
into cwnd in whole octets, so ACK by ACK a step may be one octet short of the formula."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.tcp.congestion import ALPHA, BETA, C, Cubic, Reno

MSS = 1000
RTT = 0.1
LOSS_AT = 10.0  # when the congestion event happens


def ack_clock(cc: Reno, now: float, rtts: int, rtt: float = RTT) -> tuple[float, list[tuple]]:
    """ACK clocking: each RTT the whole window is acknowledged, one ACK per segment, evenly spread.
    Returns the time after and, per ACK, (time, cwnd before, cwnd after, W_est after)."""
    steps = []
    for _ in range(rtts):
        n = max(1, cc.cwnd // MSS)
        for _ in range(n):
            now += rtt / n
            before = cc.cwnd
            cc.on_ack(MSS, cc.cwnd, now)
            steps.append((now, before, cc.cwnd, getattr(cc, "w_est", 0.0)))
    return now, steps


def lost_at(w_max: int, rtt: float = RTT) -> Cubic:
    """A CUBIC sender in congestion avoidance whose window of `w_max` segments, all in flight, met a
    loss at LOSS_AT, went through fast recovery, and left it with everything but the repair in flight."""
    cc = Cubic(MSS)
    cc.on_rtt(rtt)
    cc.cwnd = w_max * MSS
    cc.ssthresh = w_max * MSS // 2
    cc.enter_recovery(w_max * MSS, LOSS_AT)
    cc.exit_recovery(w_max * MSS)
    return cc


def test_constants_are_the_rfcs():
    """RFC 9438 5.1: C = 0.4, β_cubic = 0.7; 4.3: α_cubic = 3 * (1 - β_cubic) / (1 + β_cubic)."""
    assert (C, BETA) == (0.4, 0.7)
    assert pytest.approx(0.529, abs=1e-3) == ALPHA


def test_loss_reduces_the_window_to_beta_times_w_max():
    """4.6: ssthresh = flight_size * β_cubic, cwnd = ssthresh; the fast recovery steps as Reno's."""
    cc = Cubic(MSS)
    cc.cwnd = 100 * MSS
    cc.enter_recovery(100 * MSS, LOSS_AT)
    assert (cc.ssthresh, cc.cwnd) == (70_000, 73_000)  # ssthresh + 3*SMSS while recovering
    assert (cc.w_max, cc.cwnd_prior) == (100.0, 100.0)
    cc.dupack_in_recovery()
    assert cc.cwnd == 74_000
    cc.partial_ack(2000)
    assert cc.cwnd == 73_000
    cc.exit_recovery(90_000)
    assert (cc.cwnd, cc.ssthresh) == (70_000, 70_000)


def test_ssthresh_is_at_least_two_segments():
    cc = Cubic(MSS)
    cc.enter_recovery(2500, LOSS_AT)
    assert cc.ssthresh == 2 * MSS  # 4.6: not 1750


def test_k_is_the_time_to_climb_back_to_w_max():
    """4.2 Figure 2: K = cbrt((W_max - cwnd_epoch) / C), here cbrt(100 * 0.3 / 0.4) = cbrt(75) s."""
    cc = lost_at(100)
    cc.on_ack(MSS, 70_000, LOSS_AT + 0.01)  # the first ACK in congestion avoidance starts the epoch
    assert (cc.epoch, cc.cwnd_epoch) == (LOSS_AT + 0.01, 70.0)
    assert cc.k == pytest.approx(math.cbrt(75))
    assert round(cc.k, 3) == 4.217
    assert cc.w_cubic(0) == pytest.approx(70.0)  # the curve starts at the reduced window
    assert cc.w_cubic(cc.k) == 100.0  # and reaches W_max at K


def test_the_curve_is_concave_before_k_flat_at_k_and_convex_after():
    cc = lost_at(100)
    cc.on_ack(MSS, 70_000, LOSS_AT)
    k, w = cc.k, cc.w_cubic
    before = [w(k - d) - w(k - d - 0.5) for d in (3.0, 2.0, 1.0, 0.0)]
    after = [w(k + d + 0.5) - w(k + d) for d in (0.0, 1.0, 2.0, 3.0)]
    assert all(g > 0 for g in before + after)
    assert before == sorted(before, reverse=True)  # concave: slower and slower up to W_max
    assert after == sorted(after)  # convex: faster and faster beyond it
    assert w(k + 0.1) - w(k - 0.1) < 0.001  # the plateau
    for d in (0.5, 1.0, 2.0):
        assert w(k + d) - 100 == pytest.approx(100 - w(k - d))


def test_ack_clocked_window_follows_the_curve_through_the_plateau():
    cc = lost_at(100)
    _, steps = ack_clock(cc, LOSS_AT, rtts=60)
    k = math.cbrt(75)

    def cwnd_at(t: float) -> int:
        return next(after for at, _, after, _ in steps if at - LOSS_AT >= t)

    assert cwnd_at(0) == 70_000 + 7  # the first ACK: W_est's step, ALPHA / 70 of a segment
    assert abs(cwnd_at(k) - 100_000) < 100  # at K: W_max, within a tenth of a segment
    growth = [cwnd_at(t + 0.5) - cwnd_at(t) for t in (0.0, 1.0, 2.0, 3.0, k, k + 0.5, k + 1.0)]
    assert growth[:4] == sorted(growth[:4], reverse=True)  # concave
    assert growth[4:] == sorted(growth[4:])  # convex
    assert growth[4] < 100  # the plateau: under a tenth of a segment in the half second after K


def test_each_ack_grows_the_window_by_target_minus_cwnd_over_cwnd():
    """4.2: cwnd += (target - cwnd) / cwnd per ACK, target = W_cubic(t + RTT) within [cwnd, 1.5*cwnd]."""
    cc = lost_at(100)
    _, steps = ack_clock(cc, LOSS_AT, rtts=55)
    epoch = steps[0][0]
    k = math.cbrt(100 * (1 - 0.7) / 0.4)
    checked = 0
    for now, before, after, w_est in steps:
        t = now - epoch
        if t < 0.5:
            continue  # the first ACKs are in the Reno-friendly region
        w = before / MSS
        w_cubic = 0.4 * (t - k) ** 3 + 100
        assert w_est < w_cubic  # the cubic region
        target = min(max(0.4 * (t + RTT - k) ** 3 + 100, w), 1.5 * w)
        assert abs((after - before) - (target - w) / w * MSS) <= 1
        checked += 1
    assert checked > 4000


def test_the_target_is_clamped_to_one_and_a_half_windows():
    """4.2: long after the epoch began W_cubic(t + RTT) is enormous; each ACK adds at most half a
    segment, and one ACK for many segments no more than takes cwnd to 1.5 * cwnd."""
    cc = Cubic(MSS)
    cc.cwnd = cc.ssthresh = 10_000
    cc.on_ack(MSS, 10_000, 0.0)  # K = 0, W_max = 10: W_est (10.1) is ahead of W_cubic (10)
    assert (cc.k, cc.w_max, cc.cwnd) == (0.0, 10.0, 10_100)
    cc.on_ack(MSS, 10_100, 100.0)
    assert cc.cwnd == 10_600  # (1.5 * 10.1 - 10.1) / 10.1 of a segment
    cc.on_ack(20 * MSS, 10_600, 100.1)
    assert abs(cc.cwnd - 15_900) <= 1


def test_reno_friendly_region_dominates_on_short_rtts_and_small_windows():
    """4.3: with W_max = 10 segments and an RTT of 10 ms, W_est (Reno's window, counted in ACKs) runs
    ahead of W_cubic (which needs K = 1.96 s to reach W_max) and sets cwnd."""
    cc = lost_at(10, rtt=0.01)
    reno = Reno(MSS)
    reno.cwnd = reno.ssthresh = 7000
    _, steps = ack_clock(cc, LOSS_AT, rtts=100, rtt=0.01)
    ack_clock(reno, LOSS_AT, rtts=100, rtt=0.01)
    first = steps[0]
    assert first[2] == 7000 + int(ALPHA / 7 * MSS) == 7075  # α_cubic / cwnd of a segment
    for now, _, after, w_est in steps:
        assert cc.w_cubic(now - first[0]) < w_est
        assert abs(after - w_est * MSS) < 1  # cwnd = W_est
    # α_cubic until W_est reaches cwnd_prior = 10 (about 6 RTTs), then 1 like Reno: about one segment
    # per RTT, a little behind Reno, which grew by one segment per RTT from the first
    assert reno.cwnd == 107_000
    assert 100_000 < cc.cwnd < reno.cwnd


def test_w_est_grows_at_alpha_until_it_reaches_cwnd_prior_then_as_reno():
    cc = lost_at(10, rtt=0.01)
    cc.on_ack(MSS, 7000, LOSS_AT)
    assert cc.w_est == pytest.approx(7 + ALPHA / 7)
    cc.w_est = 10.0  # reached cwnd_prior
    cc.on_ack(MSS, 7000, LOSS_AT + 0.001)
    assert cc.w_est == pytest.approx(10 + 1 / 7.075)


@pytest.mark.parametrize(("fast", "w_max"), [(True, 68.0), (False, 80.0)])
def test_fast_convergence_lowers_w_max_after_a_loss_below_the_last_one(fast, w_max):
    """4.7: a loss at 80 segments after one at 100: W_max = 80 * (1 + β_cubic) / 2 = 68."""
    cc = lost_at(100)
    cc.fast_convergence = fast
    ack_clock(cc, LOSS_AT, rtts=2)
    cc.cwnd = 80 * MSS
    cc.enter_recovery(80 * MSS, 20.0)
    assert cc.w_max == pytest.approx(w_max)
    assert cc.ssthresh == 56_000
    cc.exit_recovery(80 * MSS)
    cc.on_ack(MSS, 56_000, 20.1)
    assert cc.k == pytest.approx(math.cbrt((w_max - 56) / 0.4))  # sooner to the lower plateau


def test_a_loss_above_the_last_w_max_takes_the_window_as_it_is():
    cc = lost_at(100)
    cc.cwnd = 120 * MSS
    cc.enter_recovery(120 * MSS, 30.0)
    assert cc.w_max == 120.0


def test_timeout_collapses_to_one_segment_and_starts_the_next_epoch_at_k_zero():
    """4.8: ssthresh as in 4.6 and cwnd = 1 SMSS; in the first congestion avoidance after it, K = 0
    and W_max = cwnd at its start."""
    cc = lost_at(100)
    ack_clock(cc, LOSS_AT, rtts=20)
    assert cc.cwnd > 90_000
    cc.on_timeout(100 * MSS, 20.0)
    assert (cc.cwnd, cc.ssthresh, cc.epoch) == (MSS, 70_000, None)
    now, _ = ack_clock(cc, 21.0, rtts=6)  # slow start: 1, 2, 4, ... 64 segments
    assert cc.cwnd == 64_000 and cc.epoch is None
    now, _ = ack_clock(cc, now, rtts=1)  # to ssthresh, then congestion avoidance
    assert cc.epoch is not None
    assert (cc.k, cc.w_max, cc.cwnd_epoch) == (0.0, 70.0, 70.0)
    assert 70_000 < cc.cwnd < 71_000


def test_timeout_with_little_in_flight_keeps_ssthresh_at_two_segments():
    cc = Cubic(MSS)
    cc.on_timeout(1500, 1.0)
    assert (cc.cwnd, cc.ssthresh) == (MSS, 2 * MSS)


def test_slow_start_is_renos():
    cubic, reno = Cubic(MSS), Reno(MSS)
    for cc in (cubic, reno):
        ack_clock(cc, 0.0, rtts=5)
    assert cubic.cwnd == reno.cwnd == 128_000


def test_the_target_looks_one_rtt_ahead():
    slow, fast = lost_at(100, rtt=0.5), lost_at(100, rtt=0.05)
    for cc in (slow, fast):
        cc.on_ack(MSS, 70_000, LOSS_AT)
        cc.on_ack(MSS, 70_000, LOSS_AT + 1.0)
    assert slow.cwnd > fast.cwnd


def test_rtt_samples_that_are_not_times_are_ignored():
    cc = Cubic(MSS)
    cc.on_rtt(0.25)
    for bad in (math.nan, math.inf, -1.0):
        cc.on_rtt(bad)
    assert cc.srtt == 0.25


def test_restart_after_idle_begins_a_new_epoch():
    """RFC 9438 5.8: the idle time is not time on the curve. Without the restart, t counts the idle
    100 s and the next ACK jumps by the clamp's half segment."""
    idle, fresh = Cubic(MSS), Cubic(MSS)
    for cc in (idle, fresh):
        cc.cwnd = cc.ssthresh = 20_000
        cc.on_ack(MSS, 20_000, 0.0)
    fresh.restart_after_idle(40_000)  # the window is below the restart window: only the epoch goes
    for cc in (idle, fresh):
        cc.on_ack(MSS, 20_000, 100.0)
    assert fresh.epoch == 100.0
    assert idle.cwnd - 20_050 == 500
    assert fresh.cwnd - 20_050 < 100


# ---------------------------------------------------------------------- any sequence of events

events = st.lists(
    st.one_of(
        st.tuples(st.just("ack"), st.integers(0, 100_000), st.integers(0, 1 << 22), st.floats(0, 30)),
        st.tuples(st.just("recover"), st.integers(0, 1 << 22), st.floats(0, 5)),
        st.tuples(st.just("dupack")),
        st.tuples(st.just("partial"), st.integers(0, 100_000)),
        st.tuples(st.just("exit"), st.integers(0, 1 << 22)),
        st.tuples(st.just("timeout"), st.integers(0, 1 << 22), st.floats(0, 60)),
        st.tuples(st.just("idle"), st.integers(1, 100_000)),
        st.tuples(st.just("rtt"), st.floats(allow_nan=True, allow_infinity=True)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(algorithm=st.sampled_from([Reno, Cubic]), mss=st.sampled_from([536, 1000, 1460, 8960]), run=events)
def test_any_sequence_keeps_the_windows_whole_and_above_their_floors(algorithm, mss, run):
    cc = algorithm(mss)
    now = 0.0
    for event in run:
        match event:
            case ("ack", acked, flight, dt):
                now += dt
                cc.on_ack(acked, flight, now)
            case ("recover", flight, dt):
                now += dt
                cc.enter_recovery(flight, now)
            case ("dupack",):
                cc.dupack_in_recovery()
            case ("partial", acked):
                cc.partial_ack(acked)
            case ("exit", flight):
                cc.exit_recovery(flight)
            case ("timeout", flight, dt):
                now += dt
                cc.on_timeout(flight, now)
            case ("idle", iw):
                cc.restart_after_idle(max(iw, mss))
            case ("rtt", srtt):
                cc.on_rtt(srtt)
        assert type(cc.cwnd) is int and type(cc.ssthresh) is int
        assert cc.cwnd >= mss and cc.ssthresh >= 2 * mss
        for value in vars(cc).values():
            assert not isinstance(value, float) or math.isfinite(value)
