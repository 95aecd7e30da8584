"""Per-connection settings with their defaults and the RFC that sets each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TcbConfig:
    # The link's MTU; MMS_S = MMS_R = mtu - 20 (IPv4 header without options), RFC 9293 section 3.7.1.
    mtu: int = 1500
    # Receive buffer: the receive window can never exceed this (RFC 9293 section 3.8.6).
    rcv_buf: int = 65535
    # Send buffer: SEND beyond this returns "insufficient resources".
    snd_buf: int = 1 << 20
    # RFC 6298: initial RTO 1 s, minimum 1 s (may be set lower), maximum at least 60 s.
    rto_initial: float = 1.0
    rto_min: float = 1.0
    rto_max: float = 60.0
    # RFC 9293 section 3.8.3: R1 as a count of retransmissions (SHLD-10: at least 3),
    # R2 as time (SHLD-11: at least 100 s; MUST-23: at least 3 minutes for a SYN).
    r1: int = 3
    r2: float = 100.0
    r2_syn: float = 180.0
    # Maximum segment lifetime; TIME-WAIT lasts 2*MSL (MUST-13). RFC 9293 suggests 2 minutes;
    # 30 s keeps TIME-WAIT at one minute, as Linux does.
    msl: float = 30.0
    # Congestion control algorithm name (see stack.tcp.congestion).
    cc: str = "reno"

    @property
    def mss_to_advertise(self) -> int:
        """MSS option value: MMS_R - 20 (MUST-67), the receive MTU less the IP and TCP headers."""
        return self.mtu - 40
