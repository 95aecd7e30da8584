"""Per-connection settings with their defaults and the RFC that sets each."""

from __future__ import annotations

from dataclasses import dataclass, fields
from operator import attrgetter

from stack.tcp.congestion import algorithm


@dataclass(slots=True)
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
    # Congestion control algorithm name (see stack.tcp.congestion): "reno" or "cubic" (RFC 9438).
    cc: str = "reno"
    # Initial window: RFC 5681's (3 or 4 segments), or RFC 6928's ten segments when on.
    iw10: bool = False
    # Keep-alive (RFC 9293 section 3.8.4, MAY-5): off by default (MUST-25); when on, a probe goes out
    # only after `keepalive_idle` seconds without a segment from the peer and nothing outstanding
    # (MUST-26), at least two hours by default (MUST-28), configurable (MUST-27); unanswered probes are
    # repeated every `keepalive_interval` and the connection is dropped only after `keepalive_probes`
    # of them (MUST-29). A probe carries no data (SHLD-12) unless `keepalive_garbage` (MAY-6).
    keepalive: bool = False
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_probes: int = 9
    keepalive_garbage: bool = False
    # Delayed ACK (RFC 9293 section 3.8.6.3, SHLD-18): at most ack_delay after the data (MUST-40: under
    # 0.5 s), and at least every second full-sized segment (SHLD-19). 100 ms, not the classic 200 ms:
    # Linux's minimum RTO is 200 ms, and an ACK held that long makes it retransmit needlessly.
    delayed_ack: bool = False
    ack_delay: float = 0.1
    # Nagle's algorithm (RFC 9293 section 3.7.4, SHLD-7), which the application can turn off (MUST-17).
    nagle: bool = False
    # RFC 7323: window scale and timestamps (RTT measurement, PAWS), offered on our SYN.
    window_scale: bool = False
    timestamps: bool = False
    # RFC 2018 selective acknowledgments, offered on our SYN; with them, loss recovery by RFC 6675.
    sack: bool = False
    # RFC 8985 section 7: tail loss probes, and lost retransmissions found by time (6.2), with SACK.
    tlp: bool = True
    # ICMP soft errors reported to the user (RFC 9293 SHLD-25); the user may turn the reports off
    # (SHLD-20: "disable the Error Report Routine"); they are still counted and kept for a timeout.
    icmp_reports: bool = True
    # IP fields of the connection's datagrams: TTL (MUST-49) and Diffserv codepoint (MUST-48, SHLD-21:
    # changeable on a live connection; SHLD-23: an application should rarely need to).
    ttl: int = 64
    dscp: int = 0
    # RFC 5961 section 7: challenge ACKs a connection sends in a second, at most.
    challenge_ack_limit: int = 10
    # A passive OPEN holds at most `backlog` half-open connections (SYN-RECEIVED), each for at most
    # syn_received_timeout seconds (then back to LISTEN); past the backlog it answers with SYN cookies
    # (RFC 4987). 180 s keeps MUST-23 (a SYN,ACK is a SYN); the user may choose less.
    backlog: int = 128
    syn_received_timeout: float = 180.0
    # Connections and half-open connections the stack holds at most (a stack-wide default).
    max_connections: int = 65536
    # The out-of-order queue holds at most this many pieces (its octets are bounded by the window).
    ooo_max: int = 4096
    # Segmentation offload, as Linux's TSO/GSO: new data may leave the TCB in segments of up to this
    # many octets, which the link (or the stack, in software) cuts into segments of Eff.snd.MSS before
    # the wire, so the per-segment work is paid once per 64 KB. 0: one segment of at most Eff.snd.MSS
    # at a time. Retransmissions, probes and urgent data always go one segment at a time.
    gso_max: int = 0

    @classmethod
    def full(cls, **overrides: object) -> TcbConfig:
        """The stack's defaults: the RFC 9293 baseline plus RFC 7323, SACK and a 4 MiB receive buffer
        (a limit, not memory taken: at 200 MB/s, 1 MiB is 5 ms of data, less than the round trip through
        two Python threads takes at times; Linux's own buffers grow to 6 MB).

        TcbConfig() alone is the baseline of RFC 9293 section 3.10 (MSS the only option), which the
        crafted-segment tests check exactly; connections the stack opens use this profile.
        """
        base: dict[str, object] = {
            "window_scale": True,
            "timestamps": True,
            "sack": True,
            "iw10": True,
            "delayed_ack": True,
            "nagle": True,
            "rcv_buf": 4 << 20,
            "gso_max": GSO_DEFAULT,
        }
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    def set(self, name: str, text: str, *, at_open: bool = False) -> None:
        """Set a field from text ("on", "off", "30", "0.2", "64k"), with a clear error for bad input.

        `at_open`: the defaults of connections not yet opened, where what the SYN negotiates
        (AT_OPEN) may change too."""
        key = name.replace("-", "_")
        allowed = SETTABLE + AT_OPEN if at_open else SETTABLE
        if key in AT_OPEN and not at_open:
            raise ValueError(f"{name} is negotiated at OPEN: change it with 'set default {name} {text}'")
        field = next((f for f in fields(self) if f.name == key and key in allowed), None)
        if field is None:
            raise ValueError(f"unknown setting {name!r}; settings: {', '.join(settable_names(at_open))}")
        kind = type(getattr(self, key))
        if key == "cc":
            algorithm(text)
            self.cc = text
            return
        if kind is bool:
            word = text.lower()
            if word not in ("on", "off", "true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"{name} is on or off, not {text!r}")
            setattr(self, key, word in ("on", "true", "1", "yes"))
            return
        try:
            value = parse_size(text) if key in SIZES else kind(text)
        except ValueError:
            unit = " of bytes (64k, 4M)" if key in SIZES else ""
            raise ValueError(f"{name} takes a number{unit}, not {text!r}") from None
        low, high = RANGES.get(key, (None, None))
        if low is not None and high is not None:
            if not low <= value <= high:
                raise ValueError(f"{name} must be from {low} to {high}")
        elif value <= 0:
            raise ValueError(f"{name} must be more than zero")
        if key == "ack_delay" and value >= 0.5:
            raise ValueError("ack-delay must be under 0.5 s (RFC 9293 MUST-40)")
        if key in SIZES and not 536 <= value <= MAX_BUFFER:
            raise ValueError(f"{name} must be from 536 bytes to {MAX_BUFFER >> 20}M")
        setattr(self, key, value)

    def describe(self, *, at_open: bool = False) -> dict[str, str]:
        """The settable fields as the shell shows them."""
        out = {}
        for key in SETTABLE + AT_OPEN if at_open else SETTABLE:
            value = getattr(self, key)
            if isinstance(value, bool):
                shown = "on" if value else "off"
            else:
                shown = f"{value:g}" if isinstance(value, float) else str(value)
            out[key.replace("_", "-")] = shown
        return out

    @property
    def mss_to_advertise(self) -> int:
        """MSS option value: MMS_R - 20 (MUST-67), the receive MTU less the IP and TCP headers."""
        return self.mtu - 40

    def copy(self) -> TcbConfig:
        """A copy of these settings (each connection has its own), equal to dataclasses.replace(self)
        and made about nine times faster: every field read in one call and passed in order."""
        return TcbConfig(*_field_values(self))


# Every field's value, in the order of the fields (and so of __init__'s parameters).
_field_values = attrgetter(*(f.name for f in fields(TcbConfig)))

# What `set ID NAME VALUE` may change on a live connection.
SETTABLE = (
    "cc",
    "rcv_buf",
    "snd_buf",
    "keepalive",
    "keepalive_idle",
    "keepalive_interval",
    "keepalive_probes",
    "keepalive_garbage",
    "nagle",
    "delayed_ack",
    "ack_delay",
    "r1",
    "r2",
    "rto_min",
    "rto_max",
    "msl",
    "challenge_ack_limit",
    "ooo_max",
    "backlog",
    "syn_received_timeout",
    "ttl",
    "dscp",
    "icmp_reports",
    "gso_max",
    "tlp",
)
# GSO_LIMIT: an IPv4 datagram of at most 65,535 octets holds a 20-octet IP header, a TCP header of up to 60
# and the data.
GSO_LIMIT = 65535 - 20 - 60
GSO_DEFAULT = 64_000  # under GSO_LIMIT and under what a veth or a NIC takes in one frame (64 KiB)
RANGES = {"ttl": (1, 255), "dscp": (0, 63), "gso_max": (0, GSO_LIMIT)}


# What the SYN negotiates: `set default NAME VALUE` changes it for connections opened from then on.
AT_OPEN = ("sack", "timestamps", "window_scale", "iw10", "max_connections")

SIZES = ("rcv_buf", "snd_buf")  # byte counts, given as 65536, 64k or 4M
MAX_BUFFER = 1 << 30  # RFC 7323 section 2.3: a window never exceeds 2**30 octets


def parse_size(text: str) -> int:
    """65536, 64k, 64K, 4m, 4M: bytes (k and M are powers of 1024); ValueError otherwise."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    return int(float(digits) * scale)


def settable_names(at_open: bool = False) -> list[str]:
    return [k.replace("_", "-") for k in (SETTABLE + AT_OPEN if at_open else SETTABLE)]
