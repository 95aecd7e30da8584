"""Congestion control, behind one small interface so that algorithms can be chosen per connection.

Reno here is RFC 5681: slow start, congestion avoidance, the loss window after a retransmission
timeout (with RFC 6298's exponential backoff this answers MUST-19), restart after idle, and fast
recovery with NewReno's partial acknowledgments (RFC 6582). The TCB decides when (duplicate ACKs,
partial and full ACKs, idle periods, RTT samples); the algorithm decides by how much. Time comes only
from the arguments.

CUBIC (RFC 9438) changes only congestion avoidance and the size of the reduction; it shares slow start
and the steps of fast recovery with Reno, so the TCB drives both the same way.
"""

from __future__ import annotations

import math
from typing import Protocol


class CongestionControl(Protocol):
    cwnd: int
    ssthresh: int

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        """New data acknowledged: `acked` octets, `flight` octets were outstanding before the ACK."""

    def on_timeout(self, flight: int, now: float) -> None:
        """The retransmission timer expired with `flight` octets outstanding."""

    def enter_recovery(self, flight: int, now: float) -> None:
        """Third duplicate ACK: fast retransmit, then fast recovery (RFC 5681 3.2, RFC 6582 3.2)."""

    def dupack_in_recovery(self) -> None:
        """Another duplicate ACK during fast recovery: a segment has left the network."""

    def partial_ack(self, acked: int) -> None:
        """An ACK that does not cover the recovery point (RFC 6582 3.2 step 5)."""

    def exit_recovery(self, flight: int) -> None:
        """A full ACK ends fast recovery (RFC 6582 3.2 step 4)."""

    def restart_after_idle(self, iw: int) -> None:
        """Nothing was sent for longer than an RTO (RFC 5681 4.1); `iw` is the connection's IW."""

    def on_rtt(self, srtt: float) -> None:
        """The smoothed RTT in seconds after a new sample (CUBIC uses it; Reno does not)."""


def initial_window(mss: int, *, rfc6928: bool = False) -> int:
    """IW in octets: RFC 5681 section 3.1, min(4*SMSS, max(2*SMSS, 4380 bytes)), or the larger one of
    RFC 6928 section 2, min(10*MSS, max(2*MSS, 14600))."""
    if rfc6928:
        return min(10 * mss, max(2 * mss, 14600))
    return min(4 * mss, max(2 * mss, 4380))


class Reno:
    """RFC 5681 slow start and congestion avoidance, RFC 6582 fast recovery."""

    name = "reno"

    def __init__(self, mss: int, iw: int | None = None) -> None:
        self.mss = mss
        self.cwnd = initial_window(mss) if iw is None else iw
        self.ssthresh = 1 << 30  # "arbitrarily high" (RFC 5681 section 3.1)
        self._ca_acc = 0

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        if self.cwnd < self.ssthresh:
            # slow start (3.1): cwnd += min(N, SMSS)
            self.cwnd += min(acked, self.mss)
        else:
            # congestion avoidance (3.1): about one SMSS per RTT, counted in acknowledged bytes
            self._ca_acc += acked
            if self._ca_acc >= self.cwnd:
                self._ca_acc -= self.cwnd
                self.cwnd += self.mss

    def _loss_ssthresh(self, flight: int) -> int:
        # RFC 5681 equation (4): ssthresh = max(FlightSize / 2, 2*SMSS)
        return max(flight // 2, 2 * self.mss)

    def on_timeout(self, flight: int, now: float) -> None:
        # RFC 5681 3.1: ssthresh as in (4); cwnd = loss window = 1 SMSS
        self.ssthresh = self._loss_ssthresh(flight)
        self.cwnd = self.mss
        self._ca_acc = 0

    def enter_recovery(self, flight: int, now: float) -> None:
        # RFC 5681 3.2 steps 2 and 3: ssthresh as in (4); cwnd = ssthresh + 3*SMSS
        self.ssthresh = self._loss_ssthresh(flight)
        self.cwnd = self.ssthresh + 3 * self.mss
        self._ca_acc = 0

    def dupack_in_recovery(self) -> None:
        # RFC 5681 3.2 step 4: inflate by one SMSS
        self.cwnd += self.mss

    def partial_ack(self, acked: int) -> None:
        # RFC 6582 3.2 step 5: deflate by the amount acknowledged, add back one SMSS if that was >= SMSS
        self.cwnd = max(self.mss, self.cwnd - acked + (self.mss if acked >= self.mss else 0))

    def exit_recovery(self, flight: int) -> None:
        # RFC 6582 3.2 step 4, option 1: cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS)
        self.cwnd = min(self.ssthresh, max(flight, self.mss) + self.mss)

    def restart_after_idle(self, iw: int) -> None:
        # RFC 5681 4.1: cwnd = min(RW, cwnd) with the restart window RW = min(IW, cwnd)
        if iw < self.cwnd:
            self.cwnd = iw
            self._ca_acc = 0

    def on_rtt(self, srtt: float) -> None:
        pass  # Reno counts acknowledged bytes, not time


# RFC 9438 section 5: the constants, with windows in segments and time in seconds.
C = 0.4  # 5.1
MAX_RTT = 3600.0  # an RTT past an hour is taken as an hour: the cubic stays finite
BETA = 0.7  # β_cubic, 4.6 and 5.1
ALPHA = 3 * (1 - BETA) / (1 + BETA)  # α_cubic, 4.3 Figure 3
DEFAULT_RTT = 0.1  # until the first sample: moves the target only one guessed RTT along the curve


class Cubic(Reno):
    """RFC 9438: the window in congestion avoidance is a cubic function of the time since the last
    congestion event, with a plateau at W_max, the window where that loss happened."""

    name = "cubic"
    fast_convergence = True  # 4.7

    def __init__(self, mss: int, iw: int | None = None) -> None:
        super().__init__(mss, iw)
        self.srtt = DEFAULT_RTT
        # In segments (floats), as the RFC writes them.
        self.w_max = 0.0  # 0: no congestion event yet, or a timeout (4.8)
        self.cwnd_prior = 0.0  # cwnd at the last congestion event (4.6)
        self.cwnd_epoch = 0.0
        self.w_est = 0.0
        self.k = 0.0  # seconds
        self.epoch: float | None = None  # t_epoch, when this congestion avoidance stage began
        self._frac = 0.0  # growth below one octet, kept for the next ACK

    def w_cubic(self, t: float) -> float:
        """4.2 Figure 1: W_cubic(t) = C*(t-K)^3 + W_max, in segments."""
        return C * (t - self.k) ** 3 + self.w_max

    def on_rtt(self, srtt: float) -> None:
        if math.isfinite(srtt) and srtt >= 0:
            self.srtt = min(srtt, MAX_RTT)

    def _start_epoch(self, now: float) -> float:
        self.epoch = now
        self.cwnd_epoch = self.cwnd / self.mss
        self.w_est = self.cwnd_epoch  # 4.3: W_est = cwnd_epoch at the start of the stage
        if self.w_max <= self.cwnd_epoch:
            # 4.8: after a timeout (and before any loss) K = 0 and W_max = cwnd_epoch
            self.w_max = self.cwnd_epoch
            self.k = 0.0
        else:
            self.k = math.cbrt((self.w_max - self.cwnd_epoch) / C)  # 4.2 Figure 2
        return now

    def on_ack(self, acked: int, flight: int, now: float) -> None:
        if self.cwnd < self.ssthresh:
            super().on_ack(acked, flight, now)  # slow start as Reno (4.10; no HyStart++)
            return
        epoch = self._start_epoch(now) if self.epoch is None else self.epoch
        segs = acked / self.mss
        cwnd = self.cwnd / self.mss
        # 4.3 Figure 4: W_est grows like Reno's window; α_cubic becomes 1 once W_est >= cwnd_prior
        alpha = 1.0 if self.w_est >= self.cwnd_prior else ALPHA
        self.w_est += alpha * segs / cwnd
        t = now - epoch
        if self.w_cubic(t) < self.w_est:
            new = max(cwnd, self.w_est)  # 4.3: the Reno-friendly region, cwnd = W_est
        else:
            # 4.2: target = W_cubic(t + RTT) clamped to [cwnd, 1.5*cwnd]; 4.4 (concave, cwnd < W_max)
            # and 4.5 (convex) both grow by (target - cwnd)/cwnd per acknowledged segment.
            target = min(max(self.w_cubic(t + self.srtt), cwnd), 1.5 * cwnd)
            new = min(target, cwnd + (target - cwnd) / cwnd * segs)
        self._frac += new * self.mss - self.cwnd
        whole = int(self._frac)
        self.cwnd += whole
        self._frac -= whole

    def _loss_ssthresh(self, flight: int) -> int:
        cwnd = self.cwnd / self.mss
        if self.fast_convergence and cwnd < self.w_max:
            self.w_max = cwnd * (1 + BETA) / 2  # 4.7: release bandwidth to newer flows
        else:
            self.w_max = cwnd  # 4.6/4.7: the window where the loss happened
        self.cwnd_prior = cwnd  # 4.6
        self.epoch = None
        self._frac = 0.0
        # 4.6: ssthresh = flight_size * β_cubic (nearest octet), at least 2 SMSS
        return max(round(flight * BETA), 2 * self.mss)

    def on_timeout(self, flight: int, now: float) -> None:
        # 4.8: ssthresh as in 4.6, cwnd = 1 SMSS as Reno; the next stage takes K = 0 and W_max = cwnd_epoch
        super().on_timeout(flight, now)
        self.w_max = 0.0

    def restart_after_idle(self, iw: int) -> None:
        # RFC 5681 4.1 for the window; 5.8: t must not count the idle time, so a new stage begins
        super().restart_after_idle(iw)
        self.epoch = None


CONGESTION_CONTROLS: dict[str, type[Reno]] = {"reno": Reno, "cubic": Cubic}


def algorithm(name: str) -> type[Reno]:
    """The congestion control called `name`, or ValueError naming the known ones."""
    try:
        return CONGESTION_CONTROLS[name]
    except KeyError:
        known = ", ".join(CONGESTION_CONTROLS)
        raise ValueError(f"unknown congestion control {name!r}; known: {known}") from None
