"""The retransmission timer's value per RFC 6298 (RFC 9293 section 3.8.1)."""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 1 / 8
BETA = 1 / 4
K = 4


@dataclass
class RtoEstimator:
    """SRTT, RTTVAR and RTO (RFC 6298 section 2), with exponential backoff (section 5.5).

    rto_min is 1 s by default as RFC 6298 (2.4) says; it may be configured lower (Linux uses 200 ms).
    """

    initial: float = 1.0
    rto_min: float = 1.0
    rto_max: float = 60.0
    granularity: float = 0.001
    srtt: float | None = None
    rttvar: float | None = None
    rto: float = 1.0
    backoff: int = 0

    def __post_init__(self) -> None:
        self.rto = self.initial

    def sample(self, r: float) -> None:
        """Take one RTT measurement R (from a segment that was not retransmitted: Karn, MUST-18)."""
        if self.srtt is None or self.rttvar is None:
            # (2.2) first measurement
            self.srtt = r
            self.rttvar = r / 2
        else:
            # (2.3) subsequent measurements: RTTVAR first, with the old SRTT
            self.rttvar = (1 - BETA) * self.rttvar + BETA * abs(self.srtt - r)
            self.srtt = (1 - ALPHA) * self.srtt + ALPHA * r
        self.backoff = 0
        self.rto = self._bounded(self.srtt + max(self.granularity, K * self.rttvar))

    def reset_backoff(self) -> None:
        """Undo the backoff: RTO from SRTT and RTTVAR again (or the initial value before any sample)."""
        self.backoff = 0
        if self.srtt is None or self.rttvar is None:
            self.rto = self._bounded(self.initial)
        else:
            self.rto = self._bounded(self.srtt + max(self.granularity, K * self.rttvar))

    def timed_out(self) -> None:
        """(5.5) back off the timer: RTO <- RTO * 2, up to rto_max."""
        self.backoff += 1
        self.rto = self._bounded(self.rto * 2)

    def _bounded(self, rto: float) -> float:
        return min(self.rto_max, max(self.rto_min, rto))
