"""Congestion control, behind one small interface so that algorithms can be chosen per connection.

Reno here is RFC 5681: slow start, congestion avoidance, the loss window after a retransmission
timeout (with RFC 6298's exponential backoff this answers MUST-19), restart after idle, and fast
recovery with NewReno's partial acknowledgments (RFC 6582). The TCB decides when (duplicate ACKs,
partial and full ACKs, idle periods, RTT samples); the algorithm decides by how much. Time comes only
from the arguments.
"""

from __future__ import annotations

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


CONGESTION_CONTROLS: dict[str, type[Reno]] = {"reno": Reno}
