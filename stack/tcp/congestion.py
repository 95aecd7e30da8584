"""Congestion control, behind one small interface so that algorithms can be chosen per connection.

Reno here is RFC 5681: slow start, congestion avoidance, and the loss window after a retransmission
timeout, which with RFC 6298's exponential backoff answers MUST-19. Fast retransmit and recovery
build on the same interface.
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


def initial_window(mss: int) -> int:
    """IW per RFC 5681 section 3.1: min(4*SMSS, max(2*SMSS, 4380 bytes))."""
    return min(4 * mss, max(2 * mss, 4380))


class Reno:
    """RFC 5681 slow start and congestion avoidance."""

    name = "reno"

    def __init__(self, mss: int) -> None:
        self.mss = mss
        self.cwnd = initial_window(mss)
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

    def on_timeout(self, flight: int, now: float) -> None:
        # (4) ssthresh = max(FlightSize / 2, 2*SMSS); cwnd = loss window = 1 SMSS
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self._ca_acc = 0
