"""The Transmission Control Block: one TCP connection as a sans-I/O state machine.

The TCB never reads a socket, never sleeps and never asks the time. Every input (a user call, an
arriving segment, a timer) carries `now`, in seconds on the caller's clock, and every method returns
a `Result`: the segments to send, the events for the user, and the next deadline at which `on_timer`
must be called. The structure follows RFC 9293 section 3.10 (Event Processing): each user call and
each step of SEGMENT ARRIVES is a method or a commented block citing its paragraph.

Sequence space bookkeeping (RFC 9293 section 3.3.1, figure 3):

    SND.UNA <= SND.NXT <= snd_max          snd_max is the highest sequence number ever sent; after a
                                          retransmission timeout SND.NXT is pulled back to SND.UNA
                                          (go-back-N) and ACKs are judged against snd_max.
    _sndq holds every octet from _sndq_seq on: unacknowledged ones, then unsent ones.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from stack.tcp.config import TcbConfig
from stack.tcp.congestion import CongestionControl, algorithm, initial_window
from stack.tcp.isn import IsnSource, Rfc6528Isn
from stack.tcp.rto import RtoEstimator
from stack.tcp.sack import Range, Scoreboard, receiver_blocks
from stack.tcp.seq import seq_add, seq_diff, seq_ge, seq_gt, seq_in, seq_le, seq_lt, seq_max
from stack.tcp.types import SYNCHRONIZED, Event, EventKind, Result, State, TcpError
from stack.wire.icmp import IcmpType, UnreachCode
from stack.wire.tcp import NO_OPTIONS, Flags, TcpOptions, TcpSegment

DEFAULT_SEND_MSS = 536  # MUST-15: IPv4 default send MSS when the peer sends no MSS option
MAX_WINDOW = 0xFFFF  # the window field is 16 bits (MUST-1: unsigned), scaled after RFC 7323 negotiation
MAX_WSCALE = 14  # RFC 7323 section 2.3

# Timer names, as shown in STATUS.
RTX = "retransmission"
PERSIST = "persist"
KEEPALIVE = "keep-alive"
DELACK = "delayed ACK"
TLP = "loss probe"  # RFC 8985 section 7: the tail loss probe timeout (PTO)
# Where our data or FIN may be in flight and unacknowledged.
PROBING_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)
TIME_WAIT = "time-wait"
SENDING_STATES = frozenset(
    {State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK}
)

_shared_isn = Rfc6528Isn()

# ICMP errors a TCP acts on (RFC 1122 section 4.2.3.9): protocol and port unreachable are hard; the
# rest of destination unreachable, time exceeded and parameter problem are soft.
HARD_UNREACH = {UnreachCode.PROTOCOL: "protocol unreachable", UnreachCode.PORT: "port unreachable"}
SOFT_ERRORS = {
    IcmpType.DEST_UNREACHABLE: "destination unreachable",
    IcmpType.TIME_EXCEEDED: "time to live exceeded in transit",
    IcmpType.PARAMETER_PROBLEM: "parameter problem",
}
_UNREACH_TEXT = {
    UnreachCode.NET: "network unreachable",
    UnreachCode.HOST: "host unreachable",
    UnreachCode.SOURCE_ROUTE_FAILED: "source route failed",
    UnreachCode.NET_UNKNOWN: "destination network unknown",
    UnreachCode.HOST_UNKNOWN: "destination host unknown",
    UnreachCode.NET_PROHIBITED: "network administratively prohibited",
    UnreachCode.HOST_PROHIBITED: "host administratively prohibited",
    UnreachCode.ADMIN_PROHIBITED: "communication administratively prohibited",
}
# RFC 1191 section 7: the plateaus a host steps down to when a router gives no MTU; 552 is the least
# path MTU believed (Linux's min_pmtu), so that forged errors cannot shrink segments to nothing.
MTU_PLATEAUS = (68, 296, 508, 1006, 1492, 2002, 4352, 8166, 17914, 32000, 65535)
MIN_PMTU = 552


def _spans(pieces: list[tuple[int, bytes, bool]]) -> list[Range]:
    """The contiguous ranges that out-of-order pieces (in order, disjoint) cover."""
    spans: list[Range] = []
    for seq, text, _ in pieces:
        if not text:
            continue
        end = seq_add(seq, len(text))
        if spans and spans[-1][1] == seq:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((seq, end))
    return spans


def reset_for(seg: TcpSegment) -> TcpSegment | None:
    """The RST that answers a segment reaching no connection (RFC 9293 sections 3.5.2 and 3.10.7.1).

    A RST is never answered with a RST.
    """
    if seg.flags & Flags.RST:
        return None
    if seg.flags & Flags.ACK:
        # <SEQ=SEG.ACK><CTL=RST>
        return TcpSegment(seg.dst_port, seg.src_port, seq=seg.ack, flags=Flags.RST)
    # <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    return TcpSegment(
        seg.dst_port, seg.src_port, seq=0, ack=seq_add(seg.seq, seg.seg_len), flags=Flags.RST | Flags.ACK
    )


@dataclass(frozen=True)
class TcbStatus:
    """A snapshot of every variable of RFC 9293 section 3.3.1 and the rest of the TCB (STATUS call)."""

    state: State
    local_addr: IPv4Address | None
    local_port: int
    remote_addr: IPv4Address | None
    remote_port: int | None
    passive: bool
    iss: int
    snd_una: int
    snd_nxt: int
    snd_max: int
    snd_wnd: int
    snd_up: int
    snd_wl1: int
    snd_wl2: int
    max_snd_wnd: int
    irs: int
    rcv_nxt: int
    rcv_wnd: int
    rcv_up: int
    snd_mss: int
    rcv_mss: int
    rto: float
    srtt: float | None
    rttvar: float | None
    cwnd: int
    ssthresh: int
    cc: str
    timers: dict[str, float]  # name -> seconds left
    send_queued: int  # octets not yet sent
    send_unacked: int  # octets sent, not yet acknowledged
    recv_queued: int  # octets received in order, not yet read by the user
    ooo_queued: int  # octets held out of order
    retransmissions: int
    segments_in: int
    segments_out: int
    bad_segments: int
    rto_expiries: int = 0  # retransmission timeouts (each one collapses cwnd to one segment)
    fast_retransmits: int = 0  # losses repaired by fast retransmit (three duplicate ACKs or SACK)
    loss_probes: int = 0  # tail loss probes sent (RFC 8985 section 7); each is also a retransmission
    spurious_timeouts: int = 0  # timeouts found spurious by the timestamps and undone (RFC 3522, RFC 4015)
    snd_shift: int = 0  # RFC 7323 window scale applied to the peer's windows
    rcv_shift: int = 0  # ... and to ours
    timestamps: bool = False  # RFC 7323 timestamps in use
    sack: bool = False  # RFC 2018 SACK in use
    sacked: int = 0  # octets the peer has SACKed above SND.UNA (the scoreboard, RFC 6675)
    in_recovery: bool = False  # fast recovery (RFC 6582, or RFC 6675 with SACK)
    path_mtu: int = 0  # the path MTU the send MSS follows (RFC 1191)
    icmp_errors: int = 0  # ICMP errors believed for this connection
    icmp_ignored: int = 0  # ICMP errors quoting no sequence number in flight (RFC 5927)
    soft_error: str = ""  # the last ICMP soft error, reported with a timeout (RFC 1122 4.2.3.9)
    paws_dropped: int = 0  # segments dropped as old duplicates by their timestamps (PAWS, RFC 7323)
    challenge_acks: int = 0  # RFC 5961 challenge ACKs sent
    challenge_acks_suppressed: int = 0  # ... and held back by the rate limit (RFC 5961 section 7)
    urgent_pending: int = 0  # octets of urgent data received and not yet read (MUST-33)
    # A passive OPEN under load (filled in by the pool): its half-open connections and SYN cookies.
    half_open: int = 0
    dscp_in: int = 0  # the Diffserv field of the last segment that arrived (MAY-9)
    route: tuple[str, ...] = ()  # the source route the connection's datagrams take (MUST-51, MUST-53)
    syn_cookies_sent: int = 0
    syn_cookies_taken: int = 0
    settings: dict[str, str] = dataclasses.field(default_factory=dict)  # what `set` can change


class Tcb:
    """One connection. Create it, then call `open` (RFC 9293 section 3.10.1)."""

    # Slots, not a __dict__: ten thousand idle connections are a benchmark target (issue 8).
    __slots__ = (
        "_ack_now", "_before_timeout", "_challenge_since", "_challenges", "_close_error", "_delack_bytes",
        "_dupacks",
        "_episode_start", "_ev", "_fin_news", "_fin_queued", "_high_rxt", "_in_recovery", "_isn",
        "_ka_probes", "_last_ack_sent", "_last_data_sent", "_last_heard", "_listen_remote", "_ooo",
        "_ooo_len", "_ooo_recent", "_ooo_spans", "_opened", "_peer_sack", "_peer_wscale",
        "_persist_backoff", "_probe", "_r1_told", "_rcv_adv", "_rcv_far", "_rcv_push", "_rcvq", "_recover",
        "_retx_count", "_rexmits", "_rtt_seq", "_rtt_time", "_rtx_due", "_sb", "_sent_log", "_sndq",
        "_sndq_seq", "_syn_retransmitted", "_timers", "_ts_now", "_tx", "_urgent_out", "_urgent_signalled",
        "bad_segments", "cc", "challenge_acks", "challenge_acks_suppressed", "config", "fast_retransmits",
        "from_listen", "icmp_errors", "icmp_ignored", "irs", "iss", "local_addr", "local_port",
        "loss_probes", "max_snd_wnd", "passive", "path_mtu", "paws_dropped", "rcv_nxt", "rcv_shift",
        "rcv_up", "remote_addr", "remote_port", "retransmissions", "rto", "rto_expiries", "sack_ok",
        "segments_in", "segments_out", "snd_max", "snd_mss", "snd_nxt", "snd_shift", "snd_una", "snd_up",
        "snd_wl1", "snd_wl2", "snd_wnd", "soft_error", "spurious_timeouts", "state", "ts_ok", "ts_recent",
    )

    def __init__(
        self,
        local_addr: IPv4Address | None,
        local_port: int,
        remote_addr: IPv4Address | None = None,
        remote_port: int | None = None,
        *,
        config: TcbConfig | None = None,
        isn: IsnSource | None = None,
    ) -> None:
        # A copy of its own, so that `set` on one connection changes no other.
        self.config = config.copy() if config else TcbConfig()
        self.local_addr = local_addr
        self.local_port = local_port
        self.remote_addr = remote_addr
        self.remote_port = remote_port
        # What the passive OPEN specified, to go back to on a return to LISTEN (3.10.7.4).
        self._listen_remote = (remote_addr, remote_port)
        self._isn = isn or _shared_isn
        self.state = State.CLOSED
        self._opened = False
        self.passive = False
        self.from_listen = False  # MUST-11: SYN-RECEIVED remembers whether it came from LISTEN

        # Send sequence variables (3.3.1)
        self.iss = 0
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_max = 0
        self.snd_wnd = 0
        self.snd_up = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0  # MAX.SND.WND of RFC 5961 section 5
        # Receive sequence variables (3.3.1)
        self.irs = 0
        self.rcv_nxt = 0
        self.rcv_up = 0
        self._rcv_adv = 0  # right edge of the window last advertised: RCV.NXT + RCV.WND
        self._rcv_far = 0  # the furthest right edge ever advertised: data up to it is taken
        self._urgent_signalled = False

        self.snd_mss = DEFAULT_SEND_MSS  # SendMSS: the peer's MSS option, or 536 (MUST-15)
        self.path_mtu = self.config.mtu  # lowered by ICMP fragmentation needed (RFC 1191)
        # RFC 7323: window scale shifts (0 until both SYNs carried the option) and timestamps.
        self.snd_shift = 0
        self.rcv_shift = 0
        self.ts_ok = False
        self.ts_recent = 0
        self._last_ack_sent = 0
        self._ts_now = 0  # our TSval clock: milliseconds of the caller's time
        self._peer_wscale: int | None = None
        self._sndq = bytearray()
        self._sndq_seq = 0
        self._fin_queued = False  # CLOSE was called: a FIN follows the queued data
        self._rcvq = bytearray()
        self._rcv_push = False
        # Out-of-order segments held for later (SHLD-31): (seq, text, fin), disjoint and in order; the
        # contiguous spans they form (the SACK blocks of RFC 2018), and the newest arrivals' seqs.
        self._ooo: list[tuple[int, bytes, bool]] = []
        self._ooo_len = 0
        self._ooo_spans: list[Range] = []
        self._ooo_recent: list[int] = []
        # RFC 2018 / RFC 6675: SACK negotiated, the scoreboard, and HighRxt (the end of the highest
        # retransmission in this recovery).
        self.sack_ok = False
        self._peer_sack = False
        self._sb = Scoreboard()
        self._high_rxt = 0
        # RFC 8985 (RACK) section 6.2, applied to retransmissions in SACK recovery: when data sent after a
        # retransmission is SACKed, later by more than a reordering window, the retransmission was lost
        # too. Kept only while SACK is in use: (end, time) of new data in flight, and (start, end, time)
        # of this recovery's retransmissions.
        self._sent_log: list[tuple[int, float]] = []
        self._rexmits: list[tuple[int, int, float]] = []
        # A loss probe that no ACK advancing SND.UNA has answered yet (RFC 8985 7.3): when it went, and
        # SND.MAX after it.
        self._probe: tuple[float, int] | None = None
        self.loss_probes = 0
        # The first timeout of an episode, while timestamps are in use (RFC 3522 section 3.2): the TSval
        # of its retransmission, the congestion state before it, and pipe_prev (RFC 4015 section 3.2).
        self._before_timeout: tuple[int, CongestionControl, int] | None = None
        self.spurious_timeouts = 0
        self._close_error: TcpError | None = None  # why the connection ended, if not by a clean close

        self.rto = RtoEstimator(
            initial=self.config.rto_initial, rto_min=self.config.rto_min, rto_max=self.config.rto_max
        )
        self.cc: CongestionControl = self._make_cc(self.config.cc)
        self._timers: dict[str, float] = {}
        self._rtt_seq: int | None = None  # Karn (MUST-18): the one segment being timed
        self._rtt_time = 0.0
        self._syn_retransmitted = False
        self._retx_count = 0  # consecutive timeouts for the same SND.UNA
        self._episode_start = 0.0  # when the oldest unacknowledged segment was sent
        self._r1_told = False
        self._persist_backoff = 0  # zero-window probes sent without the window opening (SHLD-30)
        self._rtx_due = 0.0  # when the retransmission timer would fire without the R2 limit
        self._fin_news = False  # a FIN was taken: PEER_CLOSED follows the DATA event
        # Fast retransmit and recovery (RFC 5681 3.2, RFC 6582): duplicate ACKs counted, the recovery
        # point ("recover", the highest sequence number sent when recovery began).
        self._dupacks = 0
        self._in_recovery = False
        self._recover = 0
        self._last_heard = 0.0  # when the peer last sent anything (keep-alive idleness)
        self._delack_bytes = 0  # octets taken since our last ACK (delayed ACK)
        self._last_data_sent = 0.0  # when data last went out (restart after idle)
        self._ka_probes = 0  # keep-alive probes sent since then

        self._tx: list[TcpSegment] = []
        self._ev: list[Event] = []
        self._ack_now = False

        self.retransmissions = 0
        self.segments_in = 0
        self.segments_out = 0
        self.bad_segments = 0
        self.rto_expiries = 0
        self.fast_retransmits = 0
        # ICMP (RFC 9293 section 3.9.2.2): what errors said.
        self.icmp_errors = 0
        self.icmp_ignored = 0
        self.soft_error = ""
        # RFC 5961 section 7: challenge ACKs sent, and held back by the rate limit.
        self.challenge_acks = 0
        self.challenge_acks_suppressed = 0
        self.paws_dropped = 0  # segments dropped as old duplicates by their timestamps (RFC 7323 5.3)
        self._challenge_since = -1.0
        self._challenges = 0
        self._urgent_out = False  # SND.UP is ahead of SND.UNA: segments before it carry URG (MUST-30)

    def _initial_window(self) -> int:
        """IW: RFC 5681 section 3.1, or RFC 6928's ten segments when `iw10` is set."""
        return initial_window(self.eff_snd_mss, rfc6928=self.config.iw10)

    def _make_cc(self, name: str) -> CongestionControl:
        return algorithm(name)(self.eff_snd_mss, self._initial_window())

    # ------------------------------------------------------------------ derived values

    @property
    def eff_snd_mss(self) -> int:
        """Eff.snd.MSS = min(SendMSS+20, MMS_S) - TCPhdrsize - IPoptionsize (MUST-16, section 3.7.1).

        TCPhdrsize is 20 plus the options every segment carries (timestamps, when negotiated).
        """
        mms_s = min(self.config.mtu, self.path_mtu) - 20
        options = 12 if self.ts_ok else 0  # the timestamps option on every segment (RFC 7323 3.2)
        return max(1, min(self.snd_mss + 20, mms_s) - 20 - options)

    @property
    def rcv_wnd(self) -> int:
        """RCV.WND: what is left of the window last advertised, from RCV.NXT."""
        return max(0, seq_diff(self._rcv_adv, self.rcv_nxt))

    @property
    def _accept_wnd(self) -> int:
        """What segments may fill: up to the furthest edge ever offered (RFC 7323 section 2.4: a scaled
        window may show its edge a little to the left of one offered before; data sent there is
        taken, never refused)."""
        return max(0, seq_diff(self._rcv_far, self.rcv_nxt))

    @property
    def deadline(self) -> float | None:
        return min(self._timers.values()) if self._timers else None

    @property
    def send_space(self) -> int:
        """How many more octets SEND would accept now."""
        return max(0, self.config.snd_buf - len(self._sndq))

    @property
    def readable(self) -> int:
        return len(self._rcvq)

    @property
    def deleted(self) -> bool:
        """True once the TCB has been opened and has since returned to CLOSED."""
        return self._opened and self.state is State.CLOSED

    def _unsent(self) -> int:
        # SND.NXT may stand one past the data (our FIN): nothing unsent then, never a negative count.
        return max(0, len(self._sndq) - max(0, seq_diff(self.snd_nxt, self._sndq_seq)))

    def _queued(self, offset: int, n: int) -> bytes:
        """`n` octets of the send queue from `offset`, copied once (a bytearray slice is a copy too)."""
        with memoryview(self._sndq) as view:
            return bytes(view[offset : offset + n])

    def _fin_seq(self) -> int:
        return seq_add(self._sndq_seq, len(self._sndq))

    def _fin_acked(self) -> bool:
        return self._fin_queued and seq_gt(self.snd_una, self._fin_seq())

    def _flight(self) -> int:
        return seq_diff(self.snd_max, self.snd_una)

    def _rcv_free(self) -> int:
        """Receive buffer not taken by data in order or held out of order (may be slightly negative,
        by less than a scale unit, when a rounded-up window was filled)."""
        return self.config.rcv_buf - len(self._rcvq) - self._ooo_len

    def _ooo_bytes(self) -> int:
        return self._ooo_len

    def _ooo_clear(self) -> None:
        self._ooo.clear()
        self._ooo_spans.clear()
        self._ooo_recent.clear()
        self._ooo_len = 0

    # ------------------------------------------------------------------ results

    def _result(self, error: TcpError | None = None, data: bytes = b"", push: bool = False) -> Result:
        res = Result(self._tx, self._ev, self.deadline, error, data, push)
        self._tx = []
        self._ev = []
        return res

    def _tick(self, now: float) -> None:
        """Our timestamp clock (RFC 7323 section 5.4: 1 ms a tick) follows the caller's time."""
        self._ts_now = int(now * 1000) & 0xFFFFFFFF

    def _signal(self, kind: EventKind, message: str = "", count: int = 0) -> None:
        self._ev.append(Event(kind, message, count))

    def _emit(
        self, seq: int, flags: int, payload: bytes = b"", options: TcpOptions = NO_OPTIONS
    ) -> TcpSegment:
        """Queue one segment for the wire. Every segment but a RST carries ACK=RCV.NXT once synchronized."""
        window = 0
        ack = 0
        if not flags & Flags.RST:
            window = self._window_to_advertise()
            if flags & Flags.SYN:
                window = min(window, MAX_WINDOW)  # the window of a SYN is never scaled (RFC 7323 2.2)
            else:
                scaled = window >> self.rcv_shift
                keep = self._accept_wnd
                if keep > scaled << self.rcv_shift:
                    # The scaled field cannot say `keep` exactly: round up rather than move the right
                    # edge left (SHLD-14), as Linux does, as long as the buffer then holds less than
                    # one scale unit over rcv_buf (so a peer cannot make it creep). Otherwise the edge
                    # shows up to 2**shift - 1 octets to the left (RFC 7323 section 2.4), and what was
                    # offered before is still taken (_rcv_far).
                    up = -(-keep >> self.rcv_shift)
                    if up << self.rcv_shift < self._rcv_free() + (1 << self.rcv_shift):
                        scaled = min(MAX_WINDOW, up)
                window = scaled
                if options is NO_OPTIONS and (self.ts_ok or (self.sack_ok and self._ooo_spans)):
                    options = TcpOptions(
                        timestamps=(self._ts_now, self.ts_recent) if self.ts_ok else None,  # RFC 7323 3.2
                        sack_blocks=self._sack_blocks() if flags & Flags.ACK else (),
                    )
        if flags & Flags.ACK:
            ack = self.rcv_nxt
            shift = 0 if flags & Flags.SYN else self.rcv_shift
            self._rcv_adv = seq_add(self.rcv_nxt, window << shift)
            self._rcv_far = seq_max(self._rcv_far, self._rcv_adv)
            self._last_ack_sent = ack
            self._ack_now = False
            self._delack_bytes = 0
            self._timers.pop(DELACK, None)  # this segment carries the ACK that was owed
        urgent = 0
        if self._urgent_out and not flags & (Flags.SYN | Flags.RST):
            if seq_lt(seq, self.snd_up):
                # The pointer is the offset of the octet after the urgent data (MUST-62); beyond what
                # 16 bits say, 0xFFFF, so the peer still learns that urgent data is coming (MUST-31).
                flags |= Flags.URG
                urgent = min(0xFFFF, seq_diff(self.snd_up, seq))
            elif not seq_lt(self.snd_una, self.snd_up):
                self._urgent_out = False
        seg = TcpSegment(
            self.local_port,
            self.remote_port or 0,
            seq=seq,
            ack=ack,
            flags=flags,
            window=window,
            urgent=urgent,
            options=options,
            payload=payload,
        )
        self._tx.append(seg)
        self.segments_out += 1
        return seg

    def _window_to_advertise(self) -> int:
        """The window to offer (RFC 9293 section 3.8.6.2.2): the right edge never moves left (SHLD-14),
        and it moves right only by at least min(RCV.BUFF / 2, Eff.snd.MSS) at a time, so the peer is
        never invited to send small segments (receiver SWS avoidance, MUST-39)."""
        free = self._rcv_free()
        keep = self._accept_wnd
        if free - keep >= min(self.config.rcv_buf // 2, self.config.mss_to_advertise):
            keep = free
        return min(MAX_WINDOW << self.rcv_shift, keep)

    def _sack_blocks(self) -> tuple[Range, ...]:
        """SACK blocks for the out-of-order data held (RFC 2018 section 4): three fit beside the
        timestamps option, four without it."""
        if not self.sack_ok or not self._ooo_spans:
            return ()
        # Only what lies above the ACK (text that came on a SYN waits at RCV.NXT itself).
        spans = [b for b in self._ooo_spans if seq_gt(b[0], self.rcv_nxt)]
        return receiver_blocks(spans, self._ooo_recent, 3 if self.ts_ok else 4)

    # ------------------------------------------------------------------ 3.10.1 OPEN

    def open(self, now: float, *, active: bool = True) -> Result:
        """OPEN (RFC 9293 section 3.10.1): active sends a SYN, passive enters LISTEN."""
        self._tick(now)
        if self.state is State.CLOSED:
            if self._opened:
                return self._result(TcpError.NOT_EXIST)
            self._opened = True
            if not active:
                self.passive = True
                self.state = State.LISTEN
                return self._result()
            if self.remote_addr is None or not self.remote_port:
                self._opened = False
                return self._result(TcpError.REMOTE_UNSPECIFIED)
            self._send_syn(now)
            return self._result()
        if self.state is State.LISTEN and active:
            # LISTEN: an active OPEN with the remote socket specified turns the connection active.
            if self.remote_addr is None or not self.remote_port:
                return self._result(TcpError.REMOTE_UNSPECIFIED)
            self.passive = False
            self._send_syn(now)
            return self._result()
        return self._result(TcpError.ALREADY_EXISTS)

    def _send_syn(self, now: float) -> None:
        """Select an ISS, send <SEQ=ISS><CTL=SYN>, SND.UNA <- ISS, SND.NXT <- ISS+1, enter SYN-SENT."""
        self.iss = self._isn(now, self.local_addr, self.local_port, self.remote_addr, self.remote_port or 0)
        self.snd_una = self._recover = self.iss
        self.snd_nxt = self.snd_max = seq_add(self.iss, 1)
        self._sndq_seq = self.snd_nxt
        self.state = State.SYN_SENT
        self._transmit_syn(now, first=True)

    def _our_shift(self) -> int:
        """The smallest window scale that lets the whole receive buffer be offered (RFC 7323 2.3)."""
        shift = 0
        while (MAX_WINDOW << shift) < self.config.rcv_buf and shift < MAX_WSCALE:
            shift += 1
        return shift

    def _syn_options(self) -> TcpOptions:
        """MUST-14 / SHLD-5 / MAY-3: the MSS option on every SYN, valued from MMS_R (MUST-67); window
        scale and timestamps when configured, and on a SYN,ACK only when the peer's SYN had them
        (RFC 7323 sections 2.2 and 3.2)."""
        cfg = self.config
        answering = self.state is not State.SYN_SENT
        wscale = None
        if cfg.window_scale and (not answering or self._peer_wscale is not None):
            wscale = self._our_shift()
        ts = None
        if cfg.timestamps and (not answering or self.ts_ok):
            ts = (self._ts_now, self.ts_recent if answering else 0)
        # RFC 2018 section 2: SACK-permitted on a SYN; on a SYN,ACK only if the SYN had it.
        sack = cfg.sack and (not answering or self._peer_sack)
        return TcpOptions(mss=cfg.mss_to_advertise, wscale=wscale, sack_permitted=sack, timestamps=ts)

    def _transmit_syn(self, now: float, *, first: bool) -> None:
        """(Re)send our SYN (SYN-SENT) or SYN,ACK (otherwise) and run the retransmission timer."""
        flags = Flags.SYN if self.state is State.SYN_SENT else Flags.SYN | Flags.ACK
        self._emit(self.iss, flags, options=self._syn_options())
        if not first:
            self._rtt_seq = None  # Karn: never time a segment whose sequence number went out before
        else:
            self._rtt_seq, self._rtt_time = seq_add(self.iss, 1), now
            self._episode_start = now
        self._arm_rtx(now)

    # ------------------------------------------------------------------ 3.10.2 SEND

    def send(self, data: bytes, now: float, *, push: bool = False, urgent: bool = False) -> Result:
        """SEND (RFC 9293 section 3.10.2). Data is queued whole or refused whole.

        With `urgent`, SND.UP is set past this data and every segment sent before it carries URG with
        the pointer to the octet after the urgent data (MUST-30, MUST-62); the urgent data may be
        of any length (MUST-31). Applications should not need it (SHLD-13): it is here to drive peers
        that do."""
        self._tick(now)
        st = self.state
        if st is State.CLOSED:
            return self._result(self._close_error or TcpError.NOT_EXIST)
        if self._fin_queued or st not in (
            State.LISTEN,
            State.SYN_SENT,
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.CLOSE_WAIT,
        ):
            return self._result(TcpError.CLOSING)
        if len(self._sndq) + len(data) > self.config.snd_buf:
            return self._result(TcpError.INSUFFICIENT_RESOURCES)
        if st is State.LISTEN:
            if self.remote_addr is None or not self.remote_port:
                return self._result(TcpError.REMOTE_UNSPECIFIED)
            self.passive = False
            self._send_syn(now)
        self._sndq += data
        if urgent and data:
            self.snd_up = seq_add(self._sndq_seq, len(self._sndq))
            self._urgent_out = True
        # PUSH (MAY-15): every segment that empties the queue carries PSH (MUST-61), so pushed data is
        # never held back indefinitely (MUST-60); successive PSH bits collapse into one (SHLD-27).
        self._output(now)
        return self._result()

    # ------------------------------------------------------------------ 3.10.3 RECEIVE

    def receive(self, max_bytes: int, now: float) -> Result:
        """RECEIVE (RFC 9293 section 3.10.3): up to max_bytes of in-order data, possibly none yet."""
        self._tick(now)
        st = self.state
        if self._rcvq:
            n = min(max_bytes, len(self._rcvq))
            if n == len(self._rcvq):
                data = bytes(self._rcvq)  # one copy, not a slice copied again
                self._rcvq.clear()
            else:
                with memoryview(self._rcvq) as view:
                    data = bytes(view[:n])
                del self._rcvq[:n]
            push = self._rcv_push and not self._rcvq
            if not self._rcvq:
                self._rcv_push = False
            self._window_update(now)
            return self._result(data=data, push=push)
        if st is State.CLOSED:
            return self._result(self._close_error or TcpError.NOT_EXIST)
        if st in (State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT):
            return self._result(TcpError.CLOSING)
        return self._result()  # LISTEN, SYN-*, ESTABLISHED, FIN-WAIT-*: nothing yet; the caller waits

    def _window_update(self, now: float) -> None:
        """After the user reads, tell the peer once the window has opened by enough (3.8.6.2.2)."""
        if self.state not in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2):
            return
        free = self._rcv_free()
        offer = min(free, MAX_WINDOW << self.rcv_shift)
        opened = offer - self.rcv_wnd
        if opened < min(self.config.rcv_buf // 2, self.config.mss_to_advertise):
            return
        if self.config.delayed_ack and self.rcv_wnd >= offer // 2:
            # The peer still sees at least half of what we could offer: the next ACK carries the new
            # window soon enough, and a bulk transfer is not answered with an update per read.
            return
        self._ack_now = True
        self._output(now)

    # ------------------------------------------------------------------ 3.10.4 CLOSE

    def close(self, now: float) -> Result:
        """CLOSE (RFC 9293 section 3.10.4): no more data will be sent; receiving goes on (half-close)."""
        self._tick(now)
        st = self.state
        if st is State.CLOSED:
            return self._result(TcpError.NOT_EXIST)
        if st in (State.LISTEN, State.SYN_SENT):
            self._delete("closed by user")
            return self._result()
        if self._fin_queued:
            return self._result(TcpError.CLOSING)
        if st is State.SYN_RECEIVED:
            self._fin_queued = True
            if not self._sndq:
                self.state = State.FIN_WAIT_1
                self._output(now)
            # otherwise the FIN waits for ESTABLISHED and the queued data
            return self._result()
        if st is State.ESTABLISHED:
            self._fin_queued = True
            self.state = State.FIN_WAIT_1
            self._output(now)
            return self._result()
        if st is State.CLOSE_WAIT:
            self._fin_queued = True
            self.state = State.LAST_ACK
            self._output(now)
            return self._result()
        return self._result(TcpError.CLOSING)

    # ------------------------------------------------------------------ 3.10.5 ABORT

    def abort(self, now: float) -> Result:
        """ABORT (RFC 9293 section 3.10.5)."""
        self._tick(now)
        st = self.state
        if st is State.CLOSED:
            return self._result(TcpError.NOT_EXIST)
        if st in (
            State.SYN_RECEIVED,
            State.ESTABLISHED,
            State.FIN_WAIT_1,
            State.FIN_WAIT_2,
            State.CLOSE_WAIT,
        ):
            # <SEQ=SND.NXT><CTL=RST>; SND.NXT here is the highest sequence number sent.
            self._emit(self.snd_max, Flags.RST)
        self._rcvq.clear()
        self._delete("aborted by user")
        return self._result()

    # ------------------------------------------------------------------ FLUSH (MAY-14)

    def flush(self, now: float) -> Result:
        """FLUSH: drop queued data that lies right of the send window (not yet sendable).

        Result.count is the number of octets dropped.
        """
        if self.state is State.CLOSED:
            return self._result(TcpError.NOT_EXIST)
        window_end = seq_add(self.snd_una, self.snd_wnd)
        keep_to = seq_max(seq_max(self.snd_max, window_end), self._sndq_seq)
        keep = seq_diff(keep_to, self._sndq_seq)
        dropped = max(0, len(self._sndq) - keep)
        if dropped:
            del self._sndq[keep:]
        res = self._result()
        res.count = dropped
        return res

    # ------------------------------------------------------------------ 3.10.6 STATUS

    def status(self, now: float) -> TcbStatus:
        return TcbStatus(
            state=self.state,
            local_addr=self.local_addr,
            local_port=self.local_port,
            remote_addr=self.remote_addr,
            remote_port=self.remote_port,
            passive=self.passive,
            iss=self.iss,
            snd_una=self.snd_una,
            snd_nxt=self.snd_nxt,
            snd_max=self.snd_max,
            snd_wnd=self.snd_wnd,
            snd_up=self.snd_up,
            snd_wl1=self.snd_wl1,
            snd_wl2=self.snd_wl2,
            max_snd_wnd=self.max_snd_wnd,
            irs=self.irs,
            rcv_nxt=self.rcv_nxt,
            rcv_wnd=self.rcv_wnd,
            rcv_up=self.rcv_up,
            snd_mss=self.eff_snd_mss,
            rcv_mss=self.config.mss_to_advertise,
            rto=self.rto.rto,
            srtt=self.rto.srtt,
            rttvar=self.rto.rttvar,
            cwnd=self.cc.cwnd,
            ssthresh=self.cc.ssthresh,
            cc=self.config.cc,
            timers={name: max(0.0, t - now) for name, t in self._timers.items()},
            send_queued=self._unsent() if self.state in SYNCHRONIZED else len(self._sndq),
            send_unacked=max(0, self._flight()) if self.state is not State.LISTEN else 0,
            recv_queued=len(self._rcvq),
            ooo_queued=self._ooo_bytes(),
            retransmissions=self.retransmissions,
            segments_in=self.segments_in,
            segments_out=self.segments_out,
            bad_segments=self.bad_segments,
            rto_expiries=self.rto_expiries,
            fast_retransmits=self.fast_retransmits,
            loss_probes=self.loss_probes,
            spurious_timeouts=self.spurious_timeouts,
            snd_shift=self.snd_shift,
            rcv_shift=self.rcv_shift,
            timestamps=self.ts_ok,
            sack=self.sack_ok,
            sacked=self._sb.sacked,
            in_recovery=self._in_recovery,
            path_mtu=self.path_mtu,
            icmp_errors=self.icmp_errors,
            icmp_ignored=self.icmp_ignored,
            soft_error=self.soft_error,
            paws_dropped=self.paws_dropped,
            challenge_acks=self.challenge_acks,
            challenge_acks_suppressed=self.challenge_acks_suppressed,
            urgent_pending=max(0, seq_diff(self.rcv_up, seq_add(self.rcv_nxt, -len(self._rcvq)))),
            settings=self.config.describe(),
        )

    # ------------------------------------------------------------------ deletion

    def _delete(self, reason: str) -> None:
        """Enter CLOSED and delete the TCB (timers stop, send queues flushed)."""
        self.state = State.CLOSED
        self._timers.clear()
        self._sndq.clear()
        self._ooo_clear()
        self._sb.clear()
        self._signal(EventKind.CLOSED, reason)

    def _time_out(self, message: str) -> None:
        """The peer stopped answering (R2, or keep-alive probes): tell the user, delete the TCB."""
        if self.soft_error:
            message += f" (last ICMP: {self.soft_error})"  # RFC 1122 section 4.2.3.9
        self._close_error = TcpError.TIMED_OUT
        self._signal(EventKind.TIMED_OUT, message)
        self._delete(TcpError.TIMED_OUT.value)

    def _reset_by_peer(self, kind: EventKind, error: TcpError) -> None:
        """"connection reset" / "connection refused": flush all queues, signal, delete (MUST-12)."""
        self._close_error = error
        self._rcvq.clear()
        self._signal(kind, str(error))
        self._delete(error.value)

    # ------------------------------------------------------------------ ICMP (3.9.2.2)

    def icmp_error(
        self,
        type_: int,
        code: int,
        seq: int,
        now: float,
        *,
        mtu: int | None = None,
        quoted_length: int = 0,
        reporter: IPv4Address | None = None,
    ) -> Result:
        """An ICMP error quoting one of our segments (RFC 9293 section 3.9.2.2, RFC 1122 4.2.3.9).

        It is believed only if the quoted sequence number is one in flight (RFC 5927 section 4.1), so
        an attacker must guess it as for a RST. Soft errors are reported and change nothing (SHLD-25,
        MUST-56); protocol and port unreachable abort the connection (SHLD-26); fragmentation needed
        lowers the path MTU and the segments with it (RFC 1191, SHLD-6). Source quench is ignored
        (MUST-55), as is anything else."""
        self._tick(now)
        if self.state in (State.CLOSED, State.LISTEN) or not seq_in(self.snd_una, seq, self.snd_max):
            self.icmp_ignored += 1
            return self._result()
        where = f" (ICMP from {reporter})" if reporter is not None else ""
        if type_ == IcmpType.DEST_UNREACHABLE and code == UnreachCode.FRAGMENTATION_NEEDED:
            self.icmp_errors += 1
            self._path_mtu_lowered(mtu or 0, quoted_length, now)
        elif type_ == IcmpType.DEST_UNREACHABLE and code in HARD_UNREACH:
            self.icmp_errors += 1
            self._close_error = TcpError.UNREACHABLE
            self._signal(EventKind.UNREACHABLE, f"{HARD_UNREACH[code]}{where}")
            self._delete(TcpError.UNREACHABLE.value)
        elif type_ in SOFT_ERRORS:
            self.icmp_errors += 1
            if type_ == IcmpType.DEST_UNREACHABLE:
                self.soft_error = _UNREACH_TEXT.get(code, f"destination unreachable (code {code})")
            else:
                self.soft_error = SOFT_ERRORS[type_]
            if self.config.icmp_reports:
                self._signal(EventKind.NETWORK_ERROR, f"{self.soft_error}{where}")
        else:
            self.icmp_ignored += 1
        self._output(now)
        return self._result()

    def _path_mtu_lowered(self, mtu: int, quoted_length: int, now: float) -> None:
        """RFC 1191 section 6.1: take the smaller MTU (a router that did not say gets the next plateau
        below the datagram it refused, section 5), never below MIN_PMTU; then send again at once what
        is in flight, in smaller segments (not a congestion signal: cwnd is kept, section 6.5)."""
        if not mtu:
            mtu = next((p for p in reversed(MTU_PLATEAUS) if p < quoted_length), MIN_PMTU)
        mtu = max(MIN_PMTU, mtu)
        if mtu >= self.path_mtu:
            return
        self.path_mtu = mtu
        self.cc.mss = self.eff_snd_mss
        self._signal(EventKind.PATH_MTU, f"path MTU {mtu}: segments of at most {self.eff_snd_mss} octets")
        if self.state in SYNCHRONIZED and seq_lt(self.snd_una, self.snd_max):
            self.snd_nxt = self.snd_una
            self._high_rxt = self.snd_una

    # ------------------------------------------------------------------ 3.10.7 SEGMENT ARRIVES

    def segment_arrives(self, seg: TcpSegment, now: float, remote_addr: IPv4Address | None = None) -> Result:
        """SEGMENT ARRIVES (RFC 9293 section 3.10.7). `remote_addr` is the source address (for LISTEN)."""
        self._tick(now)
        self.segments_in += 1
        self._last_heard = now
        self._ka_probes = 0
        if seg.options.malformed:
            # MUST-7: an illegal option length was survived by the parser; the options read before it
            # are used and the rest ignored. Counted, so it shows in STATUS.
            self.bad_segments += 1
        st = self.state
        if st is State.CLOSED:
            rst = reset_for(seg)  # 3.10.7.1
            if rst is not None:
                self._tx.append(rst)
            return self._result()
        if st is State.LISTEN:
            self._arrives_listen(seg, now, remote_addr)
        elif st is State.SYN_SENT:
            self._arrives_syn_sent(seg, now)
        else:
            self._arrives_other(seg, now)
        self._output(now)
        return self._result()

    def _reply_rst(self, seg: TcpSegment) -> None:
        rst = reset_for(seg)
        if rst is not None:
            self._tx.append(rst)
            self.segments_out += 1

    def _synchronize_receive(self, seg: TcpSegment) -> None:
        """From the peer's SYN: IRS <- SEG.SEQ, RCV.NXT <- SEG.SEQ+1, and its options."""
        self.irs = seg.seq
        self.rcv_nxt = self.rcv_up = seq_add(seg.seq, 1)
        # RCV.WND starts as the window our SYN (or SYN,ACK) offers: the free receive buffer.
        self._rcv_adv = self._rcv_far = seq_add(self.rcv_nxt, min(MAX_WINDOW, self.config.rcv_buf))
        # MSS option on a SYN (MUST-14); 536 when absent (MUST-15).
        opts = seg.options
        # A zero MSS is no usable value: treated as absent, as Linux does.
        self.snd_mss = opts.mss if opts.mss else DEFAULT_SEND_MSS
        # RFC 7323 2.2: scaling is in force only when both SYNs carry the option; 3.2 likewise for
        # timestamps. The peer's shift is clamped to 14 (2.3).
        cfg = self.config
        self._peer_wscale = opts.wscale
        if cfg.window_scale and opts.wscale is not None:
            self.snd_shift, self.rcv_shift = min(opts.wscale, MAX_WSCALE), self._our_shift()
        else:
            self.snd_shift = self.rcv_shift = 0
        self.ts_ok = cfg.timestamps and opts.timestamps is not None
        if opts.timestamps is not None:
            self.ts_recent = opts.timestamps[0]
        self._peer_sack = opts.sack_permitted
        self.sack_ok = cfg.sack and opts.sack_permitted  # RFC 2018 section 2
        self.cc = self._make_cc(self.config.cc)

    # 3.10.7.2 LISTEN
    def _arrives_listen(self, seg: TcpSegment, now: float, remote_addr: IPv4Address | None) -> None:
        f = seg.flags
        # First, check for a RST: ignore it.
        if f & Flags.RST:
            return
        # Second, check for an ACK: any acknowledgment is bad in LISTEN. <SEQ=SEG.ACK><CTL=RST>
        if f & Flags.ACK:
            self._reply_rst(seg)
            return
        # Third, check for a SYN.
        if f & Flags.SYN:
            # Fill in the parts of the remote socket the passive OPEN left unspecified.
            if remote_addr is not None:
                self.remote_addr = remote_addr
            self.remote_port = seg.src_port
            self._synchronize_receive(seg)
            self.iss = self._isn(now, self.local_addr, self.local_port, self.remote_addr, seg.src_port)
            self.snd_una = self._recover = self.iss
            self.snd_nxt = self.snd_max = seq_add(self.iss, 1)
            self._sndq_seq = self.snd_nxt
            # The SYN's window is the first SND.WND (as Linux does; 3.10.7.4 sets it again on the ACK).
            self.snd_wnd = self.max_snd_wnd = seg.window
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self.state = State.SYN_RECEIVED
            self.from_listen = True  # MUST-11
            self._transmit_syn(now, first=True)
            self._queue_syn_text(seg)
            return
        # Fourth, other data or control: drop.

    # 3.10.7.3 SYN-SENT
    def _arrives_syn_sent(self, seg: TcpSegment, now: float) -> None:
        f = seg.flags
        ack_ok = False
        # First, check the ACK bit.
        if f & Flags.ACK:
            if seq_le(seg.ack, self.iss) or seq_gt(seg.ack, self.snd_max):
                if not f & Flags.RST:
                    self._reply_rst(seg)  # <SEQ=SEG.ACK><CTL=RST>
                return
            ack_ok = seq_lt(self.snd_una, seg.ack)
        # Second, check the RST bit.
        if f & Flags.RST:
            if ack_ok:
                self._reset_by_peer(EventKind.REFUSED, TcpError.REFUSED)
            return
        # Third, security: no security/compartment option is used, so it always matches.
        # Fourth, check the SYN bit.
        if not f & Flags.SYN:
            return  # Fifth: neither SYN nor RST: drop.
        self._synchronize_receive(seg)
        if f & Flags.ACK:
            self._ack_advances(seg.ack, now)
        if seq_gt(self.snd_una, self.iss):
            # Our SYN is acknowledged: ESTABLISHED. SND.WND from this segment (it carries an ACK).
            self.snd_wnd = seg.window
            self.max_snd_wnd = max(self.max_snd_wnd, seg.window)
            self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
            self._established(now)
            self._ack_now = True  # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, or piggybacked on queued data
            # Other text or controls continue at the sixth step of 3.10.7.4, text starting after the SYN.
            if seg.payload or f & (Flags.FIN | Flags.URG):
                self._process_text_and_fin(seg, seq_add(seg.seq, 1), seg.payload, now)
            return
        # Simultaneous open (MUST-10): SYN-RECEIVED, send <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>.
        self.state = State.SYN_RECEIVED
        self.from_listen = False  # MUST-11: this one came from SYN-SENT
        self.snd_wnd = seg.window
        self.max_snd_wnd = max(self.max_snd_wnd, seg.window)
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        self._transmit_syn(now, first=False)
        self._queue_syn_text(seg)

    def _queue_syn_text(self, seg: TcpSegment) -> None:
        """Text and FIN on a SYN are "queued for processing later" (3.10.7.2, 3.10.7.3): held in the
        out-of-order queue at IRS+1 and taken once the connection is ESTABLISHED."""
        text = seg.payload[: self.rcv_wnd]
        fin = bool(seg.flags & Flags.FIN) and len(text) == len(seg.payload)
        if text or fin:
            self._ooo_insert(self.rcv_nxt, bytes(text), fin)

    def _established(self, now: float) -> None:
        self.state = State.ESTABLISHED
        self._last_heard = now
        if self._syn_retransmitted and self.rto.srtt is None:
            # RFC 6298 (5.7): after a lost SYN, RTO is at least 3 s when data transmission begins.
            self.rto.rto = max(self.rto.rto, 3.0)
        self._signal(EventKind.ESTABLISHED, "established")
        if self._fin_queued:
            # CLOSE was called in SYN-RECEIVED with data queued: the FIN follows that data.
            self.state = State.FIN_WAIT_1
        if self._ooo and self._ooo[0][0] == self.rcv_nxt:
            self._ack_now = True  # text that came on the SYN is taken now
            self._signal_delivery(self._drain_ooo(now))

    # 3.10.7.4 Other states
    def _acceptable(self, seq: int, seg_len: int) -> bool:
        """The four cases of Table 6."""
        wnd = self._accept_wnd
        nxt = self.rcv_nxt
        if seg_len == 0:
            if wnd == 0:
                return seq == nxt
            return seq_in(nxt, seq, seq_add(nxt, wnd))
        if wnd == 0:
            return False
        end = seq_add(nxt, wnd)
        return seq_in(nxt, seq, end) or seq_in(nxt, seq_add(seq, seg_len - 1), end)

    def _arrives_other(self, seg: TcpSegment, now: float) -> None:
        f = seg.flags
        st = self.state
        ts = seg.options.timestamps if self.ts_ok else None
        if ts is not None and not f & Flags.RST and seq_lt(ts[0], self.ts_recent):
            # PAWS (RFC 7323 5.3 R1): an old duplicate; acknowledge and drop it.
            self.paws_dropped += 1
            self._ack_now = True
            return
        # First, check sequence number.
        if not self._acceptable(seg.seq, seg.seg_len):
            # RCV.WND of zero: valid ACKs, URGs and RSTs still get special allowance (MUST-66).
            zero_window_ctl = (
                self._accept_wnd == 0 and seg.seq == self.rcv_nxt and not f & (Flags.SYN | Flags.FIN)
            )
            if not zero_window_ctl:
                if f & Flags.RST:
                    return  # 5961 (1): outside the window: silently drop
                if st is State.SYN_RECEIVED and f & Flags.SYN and not f & Flags.ACK and seg.seq == self.irs:
                    # The peer's SYN again: our SYN,ACK was lost; send it again at once.
                    self.retransmissions += 1
                    self._transmit_syn(now, first=False)
                    return
                if st is State.TIME_WAIT and f & Flags.FIN:
                    self._start_time_wait(now)  # a retransmitted FIN: re-acknowledge, restart 2 MSL
                if f & Flags.SYN:
                    # RFC 5961 section 4.2: a SYN, whatever its sequence number, gets a challenge ACK,
                    # under the same limit as the others (section 7).
                    self._challenge_ack(now)
                    return
                self._ack_now = True  # <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>
                return
            if seg.payload:
                self._ack_now = True  # a zero-window probe: answer with the current window
            seg = replace(seg, payload=b"")
        # RFC 7323 5.3 R3: the timestamp to echo, taken below once the segment has passed the RST, SYN
        # and ACK checks (a forged segment they drop must not set it, or PAWS would drop the real ones).
        echo_ts = ts[0] if ts is not None and seq_le(seg.seq, self._last_ack_sent) else None
        # Second, check the RST bit (with the RFC 5961 section 3 checks).
        if f & Flags.RST:
            if seg.seq != self.rcv_nxt:
                self._challenge_ack(now)  # (3) challenge ACK, then drop
                return
            if st is State.SYN_RECEIVED:
                if self.from_listen:
                    self._return_to_listen()
                else:
                    self._reset_by_peer(EventKind.REFUSED, TcpError.REFUSED)
            elif st in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT):
                self._reset_by_peer(EventKind.RESET, TcpError.RESET)
            else:  # CLOSING, LAST-ACK, TIME-WAIT
                self._delete("reset by peer")
            return
        # Third, check security: no compartments are used, nothing to check.
        # Fourth, check the SYN bit.
        if f & Flags.SYN:
            if st is State.SYN_RECEIVED and self.from_listen:
                self._return_to_listen()
                return
            self._challenge_ack(now)  # RFC 5961 section 4: challenge ACK, then drop
            return
        # Fifth, check the ACK field.
        if not f & Flags.ACK:
            return
        ack = seg.ack
        wnd = seg.window << self.snd_shift  # RFC 7323 2.3: SND.WND = SEG.WND << Snd.Wind.Shift
        ts = seg.options.timestamps
        tsecr = ts[1] if self.ts_ok and ts is not None else None
        # RFC 5961 section 5 (MAY-12): acceptable only if SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT.
        if seq_gt(ack, self.snd_max) or seq_lt(ack, seq_add(self.snd_una, -self.max_snd_wnd)):
            self._challenge_ack(now)
            return
        newly_sacked = 0
        if self.sack_ok and seg.options.sack_blocks and st is not State.SYN_RECEIVED:
            # RFC 6675 section 5: every ACK's SACK blocks update the scoreboard.
            base = ack if seq_gt(ack, self.snd_una) else self.snd_una
            newly_sacked = self._sb.update(seg.options.sack_blocks, base, self.snd_max)
        if echo_ts is not None and not (st is State.SYN_RECEIVED and not seq_lt(self.snd_una, ack)):
            self.ts_recent = echo_ts
        if st is State.SYN_RECEIVED:
            if not seq_lt(self.snd_una, ack):
                self._reply_rst(seg)  # <SEQ=SEG.ACK><CTL=RST>
                return
            self.snd_wnd = wnd
            self.max_snd_wnd = max(self.max_snd_wnd, wnd)
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
            self._ack_advances(ack, now, tsecr)
            self._established(now)
            st = self.state
        elif seq_lt(self.snd_una, ack):
            self._ack_advances(ack, now, tsecr)
        elif self._is_duplicate_ack(seg, wnd, newly_sacked):
            self._duplicate_ack(now)
        if newly_sacked and self._rexmits and self.config.tlp:
            self._lost_retransmissions()
        # Window update (SND.WL1/SND.WL2 rule).
        if seq_le(self.snd_una, ack) and (
            seq_lt(self.snd_wl1, seg.seq) or (self.snd_wl1 == seg.seq and seq_le(self.snd_wl2, ack))
        ):
            self._window_changes(wnd, now)
            self.max_snd_wnd = max(self.max_snd_wnd, wnd)
            self.snd_wl1, self.snd_wl2 = seg.seq, ack
        if self.snd_wnd == 0 and self.snd_una != self.snd_max:
            # The peer answers while its window is closed: it is alive, so the connection stays open
            # however long the window stays zero (MUST-37, SHLD-17); R1 and R2 count from here.
            self._episode_start = now
            self._retx_count = 0
            self._r1_told = False
            if RTX in self._timers:
                self._timers[RTX] = min(self._rtx_due, now + self._r2())
        if st is State.FIN_WAIT_1 and self._fin_acked():
            self.state = st = State.FIN_WAIT_2
        if st is State.CLOSING:
            if self._fin_acked():
                self._start_time_wait(now)
            return
        if st is State.LAST_ACK:
            if self._fin_acked():
                self._delete("closed")
            return
        if st is State.TIME_WAIT:
            if f & Flags.FIN:
                self._ack_now = True
                self._start_time_wait(now)
            return
        # Sixth to eighth: URG, segment text, FIN.
        self._process_text_and_fin(seg, seg.seq, seg.payload, now)

    def _challenge_ack(self, now: float) -> None:
        """A challenge ACK (RFC 5961 sections 3.2, 4.2, 5.2), at most `challenge_ack_limit` a second
        (section 7). The limit is this connection's own: a limit shared by all connections would tell
        an off-path attacker which of its guesses hit (CVE-2016-5696)."""
        if now - self._challenge_since >= 1.0:
            self._challenge_since, self._challenges = now, 0
        if self._challenges >= self.config.challenge_ack_limit:
            self.challenge_acks_suppressed += 1
            return
        self._challenges += 1
        self.challenge_acks += 1
        self._ack_now = True

    def _window_changes(self, window: int, now: float) -> None:
        """SND.WND <- SEG.WND. When a zero window opens, a probe octet it refused goes again at once
        (rather than at the backed-off retransmission time), with the timer's backoff undone."""
        opened = self.snd_wnd == 0 and window > 0
        self.snd_wnd = window
        if opened:
            self._persist_backoff = 0
            if seq_gt(self.snd_nxt, self.snd_una):
                self.snd_nxt = self.snd_una
                self.rto.reset_backoff()
                self._arm_rtx(now, restart=True)

    def _return_to_listen(self) -> None:
        """SYN-RECEIVED from a passive OPEN goes back to LISTEN; the user need not be told."""
        self.state = State.LISTEN
        self.remote_addr, self.remote_port = self._listen_remote
        self.from_listen = False
        self._timers.clear()
        self._sndq.clear()  # "the retransmission queue should be flushed": nothing goes to the next peer
        self._sndq_seq = 0
        self._rtt_seq = None
        self._ooo_clear()
        self._sb.clear()

    def _ack_advances(self, ack: int, now: float, tsecr: int | None = None) -> None:
        """SND.UNA < SEG.ACK =< snd_max: remove what is acknowledged, sample the RTT, restart the timer."""
        flight = self._flight()
        before_timeout, self._before_timeout = self._before_timeout, None
        # RFC 3522 section 3.2: the first acceptable ACK after a timeout's retransmission echoes a
        # timestamp older than that retransmission's: it acknowledges the original, and the timeout
        # was spurious (an ACK delayed, not a segment lost).
        spurious = before_timeout is not None and bool(tsecr) and seq_lt(tsecr, before_timeout[0])
        n = 0
        if seq_gt(ack, self._sndq_seq):
            n = min(len(self._sndq), seq_diff(ack, self._sndq_seq))
            del self._sndq[:n]
            self._sndq_seq = seq_add(self._sndq_seq, n)
        self.snd_una = ack
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        if self._sb:
            self._sb.advance(ack)
        log = self._sent_log
        if log and seq_le(log[0][0], ack):
            k = 1
            while k < len(log) and seq_le(log[k][0], ack):
                k += 1
            del log[:k]
        if tsecr:
            # RFC 7323 4.1: the echoed timestamp times every acknowledged segment, retransmitted or not.
            self.rto.sample(max(0, (self._ts_now - tsecr) & 0xFFFFFFFF) / 1000)
            self._rtt_seq = None
        elif self._rtt_seq is not None and seq_ge(ack, self._rtt_seq):
            self.rto.sample(now - self._rtt_time)  # RFC 6298 (2), Karn-safe: only untouched segments
            self._rtt_seq = None
        if self.rto.srtt is not None:
            self.cc.on_rtt(self.rto.srtt)
        self._dupacks = 0
        if self._in_recovery:
            if seq_gt(ack, self._recover):
                # Full ACK: fast recovery is over (RFC 6582 3.2 step 4; RFC 6675 section 5 (A)).
                self._in_recovery = False
                self._rexmits.clear()
                self.cc.exit_recovery(self._flight())
            elif not self.sack_ok:
                # Partial ACK: the next hole was lost too; send it now (RFC 6582 3.2 step 5).
                self.cc.partial_ack(n)
                self._retransmit_first(now)
            # With SACK a partial ACK only updates the pipe: _output goes on by RFC 6675 (C).
        elif spurious:
            assert before_timeout is not None
            self._undo_timeout(before_timeout, n)
        elif n:
            self.cc.on_ack(n, flight, now)
        self._retx_count = 0
        self._r1_told = False
        # RFC 6298 (5.2) all acknowledged: stop the timer; (5.3) otherwise restart it.
        self._probe = None
        if self.snd_una == self.snd_max:
            self._timers.pop(RTX, None)
            self._timers.pop(TLP, None)
        else:
            self._episode_start = now
            self._arm_rtx(now, restart=True)
            self._arm_tlp(now)

    def _undo_timeout(self, before: tuple[int, CongestionControl, int], acked: int) -> None:
        """The Eifel response to a spurious timeout (RFC 4015 section 3.2): go on with new data rather
        than the rest of go-back-N (step 4: SND.NXT = SND.MAX), and give the congestion state back
        (step 5: ssthresh = pipe_prev, cwnd = FlightSize + min(bytes_acked, IW); the algorithm's own state
        as before the timeout, as RFC 9438 section 4.9 asks of CUBIC). The RTO follows the ACK's RTT
        sample (step 6)."""
        _, cc, pipe_prev = before
        self.spurious_timeouts += 1
        self.snd_nxt = self.snd_max
        self._high_rxt = self.snd_una
        cc.ssthresh = pipe_prev
        room = max(self._flight() + min(acked, self._initial_window()), self.eff_snd_mss)  # a FIN's ACK: 0
        cc.cwnd = min(max(cc.cwnd, pipe_prev), room)
        self.cc = cc

    def _is_duplicate_ack(self, seg: TcpSegment, wnd: int, newly_sacked: int) -> bool:
        """RFC 5681 section 2: data outstanding, no data and no SYN or FIN in the segment, SEG.ACK =
        SND.UNA, and the window unchanged. With SACK blocks, RFC 6675 section 2 instead: the ACK
        SACKs data not SACKed before (the window may change; Linux's often does)."""
        if (
            self.snd_una == self.snd_max
            or seg.payload
            or seg.flags & (Flags.SYN | Flags.FIN)
            or seg.ack != self.snd_una
        ):
            return False
        if self.sack_ok and seg.options.sack_blocks:
            return newly_sacked > 0
        return wnd == self.snd_wnd

    def _duplicate_ack(self, now: float) -> None:
        self._dupacks += 1
        if self._in_recovery:
            if not self.sack_ok:
                self.cc.dupack_in_recovery()  # RFC 5681 3.2 step 4; _output sends what cwnd allows
            # With SACK the pipe shrank with what was SACKed: _output sends by RFC 6675 (C).
        elif seq_gt(self.snd_una, self._recover) and (
            self._dupacks >= 3
            or (self.sack_ok and self._sb.is_lost(self.snd_una, self.eff_snd_mss))
            or (self.sack_ok and self._probe is not None and self._probe_shows_loss(self._probe))
        ):
            # Fast retransmit (RFC 5681 3.2 steps 2-3) on the third duplicate ACK, or when the
            # scoreboard shows the first octet lost (RFC 6675 section 5 step 4); only when the ACK
            # covers more than the last recovery point (RFC 6582 3.2 step 2). After a loss probe, by
            # time rather than by count (RFC 8985 sections 6.2 and 7.4): see _probe_shows_loss.
            self._enter_recovery(now)
        # On the first two, limited transmit (RFC 3042) lets _send_data send new data.

    def _enter_recovery(self, now: float) -> None:
        self._recover = seq_add(self.snd_max, -1)  # RecoveryPoint = HighData
        self._in_recovery = True
        self.cc.enter_recovery(self._flight(), now)
        self.fast_retransmits += 1
        if not self.sack_ok:
            self._retransmit_first(now)  # NewReno (RFC 6582 section 3.2 step 2)
            return
        # RFC 6675 section 5 step 4: cwnd = ssthresh, no inflation (the pipe paces recovery);
        # retransmit the first segment presumed lost, HighRxt at its end.
        self.cc.cwnd = self.cc.ssthresh
        hole = self._sb.next_hole(self.snd_una, self.snd_max, self.snd_una, self.snd_max, self.eff_snd_mss)
        if hole is not None:
            sent = self._resend(hole[0], hole[1], now)
            self._high_rxt = seq_add(hole[0], sent)
        self._arm_rtx(now, restart=True)

    def _arm_tlp(self, now: float) -> None:
        """RFC 8985 section 7.2: after new data goes out, or an ACK advances SND.UNA with data still in
        flight, a loss probe is due in PTO = 2 * SRTT (plus the peer's delayed-ACK time when one segment
        is in flight), if that comes before the retransmission timer. Only with SACK (7: the probe's
        answer must be able to show which segments are missing), outside recovery, one probe at a time."""
        self._timers.pop(TLP, None)
        srtt = self.rto.srtt
        if srtt is None or not self.sack_ok or not self.config.tlp or self._in_recovery:
            return
        if self._probe is not None:
            return  # one probe at a time
        if self.state not in PROBING_STATES or self.snd_una == self.snd_max:
            return
        pto = 2 * srtt
        if self._flight() <= self.eff_snd_mss:
            pto = max(pto, 1.5 * srtt + self.config.ack_delay)
        due = now + max(pto, 0.01)
        if due < self._timers.get(RTX, due + 1):
            self._timers[TLP] = due

    def _loss_probe(self, now: float) -> None:
        """RFC 8985 section 7.3: send one segment of new data if the peer's window allows, else the last
        segment sent again, so that the peer's answer (its SACK blocks, or an ACK that was lost before)
        starts fast recovery instead of the retransmission timer; then the timer runs anew."""
        mss = self.eff_snd_mss
        self._probe = (now, self.snd_max)  # in force as it goes: its own sending arms no other probe
        self.loss_probes += 1
        window_end = seq_add(self.snd_una, self.snd_wnd)
        una, high = self.snd_una, self.snd_max
        hole = self._sb.next_hole(una, high, una, high, mss) if self._sb else None
        if self._unsent() > 0 and seq_lt(self.snd_nxt, window_end) and self.snd_nxt == self.snd_max:
            self._send_new(now, mss, False, mss)
        elif hole is not None:
            # The peer SACKed data above a hole: the first hole, the oldest data most likely lost, never
            # what the peer holds already (RFC 6675 section 5: SACKed data is not sent again).
            self._resend(hole[0], hole[1], now)
        else:
            # The last MSS of what was sent (with the FIN, when it went: _resend adds it at the end).
            self._resend(seq_add(self.snd_max, -min(mss, self._flight())), mss, now)
        self._probe = (now, self.snd_max)
        self._arm_rtx(now, restart=True)

    def _sent_at(self, octet_end: int) -> float | None:
        """When the newest transmission of new data that holds octet `octet_end - 1` went (None when the
        log no longer has it)."""
        sent_at = None
        for end, when in reversed(self._sent_log):  # the newest SACKed octet is among the last sent
            if seq_lt(end, octet_end):
                break
            sent_at = when  # of the transmission that holds octet octet_end - 1, in the end
        return sent_at

    def _probe_shows_loss(self, probe: tuple[float, int]) -> bool:
        """RFC 8985 section 6.2 on the answer to a loss probe: the segment at SND.UNA is lost when data
        sent after it by more than the reordering window (min_RTT/4, here SRTT/4) has been SACKed. The
        probe itself went a PTO after the rest, so a SACK of it shows a tail loss at once; a segment
        merely overtaken by the one sent right after it is not taken for lost (RFC 6675's three
        duplicate ACKs, or the timer, still apply to it)."""
        log = self._sent_log
        if not log:
            return True  # no time known for the segment at SND.UNA: the probe's answer decides, as before
        highest = self._sb.highest
        if highest is None:
            return False  # nothing SACKed: no time to judge by; three duplicate ACKs or the timer decide
        probe_at, probe_end = probe
        sacked_sent = probe_at if seq_ge(highest, probe_end) else self._sent_at(highest)
        if sacked_sent is None:
            return True
        return sacked_sent > log[0][1] + (self.rto.srtt or 0.0) / 4

    def _lost_retransmissions(self) -> None:
        """RFC 8985 section 6.2 for this recovery's retransmissions: one sent before the data the newest
        SACK covers, by more than the reordering window (min_RTT/4, here SRTT/4), and still neither
        acknowledged nor SACKed, was lost in its turn. HighRxt goes back to it, so that NextSeg (RFC 6675
        rule 1) sends it again now rather than after a retransmission timeout."""
        sent_at = self._sent_at(self._sb.highest)
        if sent_at is None:
            return
        window = (self.rto.srtt or 0.0) / 4
        kept = []
        for start, end, when in self._rexmits:
            if seq_le(end, self.snd_una) or self._sb.sacked_at(start) is not None:
                continue  # it arrived
            if sent_at > when + window:
                if seq_lt(start, self._high_rxt):
                    self._high_rxt = start
            else:
                kept.append((start, end, when))
        self._rexmits = kept

    def _retransmit_first(self, now: float) -> None:
        """Send the first unacknowledged segment again, leaving SND.NXT where it is."""
        if self._resend(self.snd_una, self.eff_snd_mss, now):
            self._arm_rtx(now, restart=True)

    def _resend(self, seq: int, limit: int, now: float) -> int:
        """Send again up to `limit` octets from `seq` (with our FIN if it was sent and they reach it);
        SND.NXT stays where it is. Returns the sequence space sent again."""
        offset = seq_diff(seq, self._sndq_seq)
        if offset < 0:
            return 0
        remaining = len(self._sndq) - offset
        n = max(0, min(limit, remaining))
        flags = Flags.ACK
        if n == remaining and self._fin_queued and seq_gt(self.snd_max, self._fin_seq()):
            flags |= Flags.FIN
        if n == 0 and not flags & Flags.FIN:
            return 0
        if n and n == remaining:
            flags |= Flags.PSH
        self.retransmissions += 1
        if self._rtt_seq is not None and seq_lt(seq, self._rtt_seq):
            self._rtt_seq = None  # Karn (MUST-18)
        if self._in_recovery and self.sack_ok and n:
            self._rexmits.append((seq, seq_add(seq, n), now))
        self._emit(seq, flags, self._queued(offset, n))
        if RTX not in self._timers:
            self._arm_rtx(now)
        return n + (1 if flags & Flags.FIN else 0)

    def _resend_hole(self, now: float, *, lost_only: bool) -> bool:
        """NextSeg of RFC 6675 section 4 for retransmissions: rule 1 (`lost_only`), the first unSACKed
        segment above HighRxt that IsLost; rule 3, the first unSACKed one below the highest SACKed
        octet. Sends it and moves HighRxt past it."""
        highest = self._sb.highest
        if highest is None:
            return False
        mss = self.eff_snd_mss
        below = highest
        if lost_only:
            lost = self._sb.lost_point(mss)
            if lost is None:
                return False
            below = lost
        start = self._high_rxt if seq_gt(self._high_rxt, self.snd_una) else self.snd_una
        hole = self._sb.next_hole(start, below, self.snd_una, self.snd_max, mss)
        if hole is None:
            return False
        sent = self._resend(hole[0], hole[1], now)
        self._high_rxt = seq_add(hole[0], max(1, sent))
        return True

    def _process_text_and_fin(self, seg: TcpSegment, seq: int, text: bytes, now: float) -> None:
        """Sixth (URG), seventh (segment text) and eighth (FIN) steps of 3.10.7.4."""
        st = self.state
        fin = bool(seg.flags & Flags.FIN)
        if st not in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2):
            # CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: the peer already sent FIN; ignore URG and text.
            if fin and st is not State.SYN_RECEIVED:
                self._ack_now = True
            return
        # Sixth: URG (MUST-30, MUST-62: the pointer is the offset of the first non-urgent octet).
        if seg.flags & Flags.URG:
            up = seq_add(seg.seq, seg.urgent)
            if seq_gt(up, self.rcv_up):
                self.rcv_up = up
            if seq_gt(self.rcv_up, self.rcv_nxt) and not self._urgent_signalled:
                self._urgent_signalled = True
                self._signal(EventKind.URGENT, "urgent data pending")
        # Trim to the window: what lies before RCV.NXT was received already, what lies past the
        # right edge is dropped (with a FIN that lies there).
        if seq_lt(seq, self.rcv_nxt):
            cut = seq_diff(self.rcv_nxt, seq)
            text = text[cut:]
            seq = self.rcv_nxt
        room = seq_diff(seq_add(self.rcv_nxt, self._accept_wnd), seq)
        if len(text) + fin > room:
            # What lies past the right edge is dropped, and a FIN that lies there with it.
            text = text[: max(0, room)]
            fin = False
        if not text and not fin:
            return
        if seq != self.rcv_nxt:
            # Out of order: hold it (SHLD-31) and send a duplicate ACK at once (MAY-13).
            self._ack_now = True
            self._ooo_insert(seq, bytes(text), fin)
            return
        filled_gap = bool(self._ooo)
        delivered = self._accept_in_order(bytes(text), fin, bool(seg.flags & Flags.PSH), now)
        self._signal_delivery(delivered + self._drain_ooo(now))
        # Every segment with text or FIN is acknowledged: at once without delayed ACKs, when it ends a
        # gap (RFC 5681 4.2) or carries a FIN; otherwise within ack_delay, or at the second full-sized
        # segment (SHLD-18, MUST-40, SHLD-19; MUST-58 aggregates).
        self._delack_bytes += len(text)
        if (
            not self.config.delayed_ack
            or fin
            or filled_gap
            or self._delack_bytes >= 2 * self.config.mss_to_advertise
        ):
            self._ack_now = True
        elif DELACK not in self._timers:
            self._timers[DELACK] = now + self.config.ack_delay

    def _signal_delivery(self, delivered: int) -> None:
        """Tell the user of the text just taken, then of a FIN that came behind it (in that order)."""
        if delivered:
            self._signal(EventKind.DATA, f"{delivered} bytes", delivered)
        if self._fin_news:
            self._fin_news = False
            self._signal(EventKind.PEER_CLOSED, "connection closing")

    def _drain_ooo(self, now: float) -> int:
        """Take whatever the out-of-order queue now continues (MUST-59: one ACK for all of them)."""
        delivered = 0
        q = self._ooo
        taken = 0
        while taken < len(q) and self.state in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2):
            oseq, otext, ofin = q[taken]
            if seq_gt(oseq, self.rcv_nxt):
                break
            taken += 1
            self._ooo_len -= len(otext)
            skip = seq_diff(self.rcv_nxt, oseq)
            if skip > len(otext) or (skip == len(otext) and not ofin):
                continue
            delivered += self._accept_in_order(otext[skip:], ofin, False, now)
        if taken:
            del q[:taken]
        spans = self._ooo_spans
        while spans and not seq_gt(spans[0][1], self.rcv_nxt):
            spans.pop(0)
        return delivered

    def _ooo_insert(self, seq: int, text: bytes, fin: bool) -> None:
        """Hold an out-of-order segment (SHLD-31). The queue keeps disjoint pieces in sequence order:
        what is already held is never held twice, so it never holds more than the window offered; and
        it holds at most `ooo_max` pieces, so tiny segments cannot make it grow without bound."""
        q = self._ooo
        end = seq_add(seq, len(text))
        i = len(q)
        while i > 0 and seq_gt(q[i - 1][0], seq):  # arrivals usually extend the right end: scan from there
            i -= 1
        if i > 0:
            ps, pt, pf = q[i - 1]
            pend = seq_add(ps, len(pt))
            over = seq_diff(pend, seq)
            if over >= len(text):
                if fin and not pf and pend == end:
                    q[i - 1] = (ps, pt, True)
                self._ooo_note(seq)
                return  # nothing new
            if over > 0:
                text, seq = text[over:], pend
        covered = False
        while i < len(q) and seq_lt(q[i][0], end):
            ns, nt, nf = q[i]
            nend = seq_add(ns, len(nt))
            if seq_le(nend, end):
                del q[i]  # wholly inside the new segment
                self._ooo_len -= len(nt)
                covered = True
                fin = fin or (nf and nend == end)
            else:
                text, fin = text[: seq_diff(ns, seq)], False
                break
        if not text and not fin:
            self._ooo_note(seq)
            return
        if len(q) >= self.config.ooo_max:
            return  # full: the segment will come again
        q.insert(i, (seq, text, fin))
        self._ooo_len += len(text)
        if covered:
            self._ooo_spans = _spans(q)  # pieces were replaced: the spans again from the pieces
        elif text:
            self._ooo_span_add(seq, seq_add(seq, len(text)))
        self._ooo_note(seq)

    def _ooo_note(self, seq: int) -> None:
        """Remember the newest out-of-order arrivals, for the order of SACK blocks (RFC 2018 section 4)."""
        recent = self._ooo_recent
        if seq in recent:
            recent.remove(seq)
        recent.insert(0, seq)
        del recent[4:]

    def _ooo_span_add(self, left: int, right: int) -> None:
        """Add [left, right), disjoint from what is held, to the contiguous spans, joining neighbours."""
        spans = self._ooo_spans
        i = len(spans)
        while i > 0 and seq_gt(spans[i - 1][0], left):
            i -= 1
        if i > 0 and spans[i - 1][1] == left:
            i -= 1
            left = spans[i][0]
            del spans[i]
        if i < len(spans) and spans[i][0] == right:
            right = spans[i][1]
            del spans[i]
        spans.insert(i, (left, right))

    def _accept_in_order(self, text: bytes, fin: bool, push: bool, now: float) -> int:
        """Take responsibility for in-order text (seventh step) and a FIN behind it (eighth step)."""
        if text:
            self._rcvq += text
            self.rcv_nxt = seq_add(self.rcv_nxt, len(text))
            if push:
                self._rcv_push = True
            if seq_le(self.rcv_up, self.rcv_nxt):
                self._urgent_signalled = False
        if fin:
            self._fin_arrives(now)
        return len(text)

    def _fin_arrives(self, now: float) -> None:
        """Eighth, check the FIN bit: advance RCV.NXT over it, acknowledge it, signal "connection closing"."""
        self.rcv_nxt = seq_add(self.rcv_nxt, 1)
        # The FIN takes sequence space but no buffer: the window's right edge moves with it.
        self._rcv_adv = seq_add(self._rcv_adv, 1)
        self._rcv_far = seq_add(self._rcv_far, 1)
        self._rcv_push = True  # FIN implies PUSH for undelivered text
        self._ack_now = True
        self._ooo_clear()
        self._fin_news = True  # signalled by _signal_delivery, after the text the FIN follows
        st = self.state
        if st in (State.SYN_RECEIVED, State.ESTABLISHED):
            self.state = State.CLOSE_WAIT
        elif st is State.FIN_WAIT_1:
            if self._fin_acked():
                self._start_time_wait(now)
            else:
                self.state = State.CLOSING
        elif st is State.FIN_WAIT_2:
            self._start_time_wait(now)

    def _start_time_wait(self, now: float) -> None:
        """TIME-WAIT for 2*MSL (MUST-13), other timers off."""
        self.state = State.TIME_WAIT
        self._timers.clear()
        self._timers[TIME_WAIT] = now + 2 * self.config.msl

    # ------------------------------------------------------------------ sending

    def _output(self, now: float) -> None:
        """Send whatever the windows allow, then a bare ACK if one is owed and nothing carried it."""
        st = self.state
        if st in SENDING_STATES:
            self._send_data(now)
            self._update_persist(now)
        self._update_keepalive(now)
        if self._ack_now and st in SYNCHRONIZED | {State.SYN_RECEIVED}:
            # A bare ACK carries the highest sequence number sent, which the peer's window contains.
            self._emit(self.snd_max, Flags.ACK)

    def _update_keepalive(self, now: float) -> None:
        """Run the keep-alive timer while keep-alive is on and the connection is idle (MUST-26)."""
        cfg = self.config
        idle = (
            cfg.keepalive
            and self.state in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_2)
            and self.snd_una == self.snd_max
            and self._unsent() == 0
        )
        if not idle:
            self._timers.pop(KEEPALIVE, None)
            return
        if self._ka_probes == 0:
            self._timers[KEEPALIVE] = self._last_heard + cfg.keepalive_idle
        elif KEEPALIVE not in self._timers:
            self._timers[KEEPALIVE] = now + cfg.keepalive_interval

    def _keepalive_timeout(self, now: float) -> None:
        """KEEP-ALIVE TIMEOUT: send a probe <SEQ=SND.NXT-1><ACK=RCV.NXT> (3.8.4), which an alive peer
        answers with an ACK; give up after keepalive_probes unanswered ones (MUST-29)."""
        del self._timers[KEEPALIVE]
        cfg = self.config
        if self._ka_probes >= cfg.keepalive_probes:
            self._time_out(f"{self._ka_probes} keep-alive probes unanswered")
            return
        self._ka_probes += 1
        self._emit(seq_add(self.snd_max, -1), Flags.ACK, b"\0" if cfg.keepalive_garbage else b"")
        self._timers[KEEPALIVE] = now + cfg.keepalive_interval

    def configure(self, name: str, value: str, now: float) -> Result:
        """Change a setting of this connection (`set ID NAME VALUE`); ValueError for bad input."""
        before = self.config.cc
        self.config.set(name, value)
        if self.config.cc != before:
            # Another algorithm takes over from the window and threshold reached so far.
            cwnd, ssthresh = self.cc.cwnd, self.cc.ssthresh
            self.cc = self._make_cc(self.config.cc)
            self.cc.cwnd, self.cc.ssthresh = cwnd, ssthresh
            if self.rto.srtt is not None:
                self.cc.on_rtt(self.rto.srtt)
        self.rto.rto_min, self.rto.rto_max = self.config.rto_min, self.config.rto_max
        if name.replace("-", "_").startswith("keepalive"):
            self._timers.pop(KEEPALIVE, None)
            self._ka_probes = 0
        self._update_keepalive(now)
        return self._result()

    def _update_persist(self, now: float) -> None:
        """The persist timer runs while data waits behind a zero window with nothing in flight
        (RFC 9293 section 3.8.6.1, MUST-36): the first probe after one RTO (SHLD-29), then backing off
        exponentially (SHLD-30). With data in flight, the retransmission timer probes instead."""
        # With nothing in flight, data waits only behind a zero window or for sender SWS avoidance;
        # then the persist timer runs, and its expiry sends a probe (or the override segment).
        waiting = self._unsent() > 0 and self.snd_una == self.snd_max
        if not waiting:
            self._timers.pop(PERSIST, None)
        elif PERSIST not in self._timers:
            interval = min(self.config.rto_max, self.rto.rto * (1 << min(self._persist_backoff, 16)))
            self._timers[PERSIST] = now + interval

    def _send_data(self, now: float, *, probe: bool = False) -> None:
        """Send what the windows allow. With `probe`, one octet goes out even into a zero window: a
        zero-window probe (3.8.6.1: "at least one octet of new data ... even if the send window is
        zero"); it also overrides sender SWS avoidance (the override timeout of 3.8.6.2.1).

        In SACK recovery each segment is chosen by NextSeg (RFC 6675 section 4): a lost hole first,
        then new data, then any other hole, while cwnd - pipe allows a full segment."""
        mss = self.eff_snd_mss
        sack_recovery = self._in_recovery and self.sack_ok
        while seq_ge(self.snd_nxt, self._sndq_seq):  # else our SYN is still unacknowledged
            room = self._cwnd_room(mss)
            if sack_recovery:
                if room < mss:
                    return
                if self._resend_hole(now, lost_only=True):  # NextSeg rule 1
                    continue
            if self._send_new(now, room, probe, mss):  # rule 2, and all sending outside recovery
                probe = False
                continue
            if sack_recovery and self._resend_hole(now, lost_only=False):  # NextSeg rule 3
                continue
            return

    def _cwnd_room(self, mss: int) -> int:
        """What congestion control lets go now: cwnd less what is in the network."""
        cwnd = self.cc.cwnd
        if self._in_recovery and self.sack_ok:
            return cwnd - self._sb.pipe(self.snd_una, self.snd_max, self._high_rxt, mss)  # RFC 6675
        if not self._in_recovery and self._dupacks:
            cwnd += min(self._dupacks, 2) * mss  # limited transmit (RFC 3042)
        flight = seq_diff(self.snd_nxt, self.snd_una)
        if self._sb and seq_lt(self.snd_nxt, self.snd_max):
            flight -= self._sb.sacked_below(self.snd_nxt)  # going back after a timeout: SACKed is not sent
        return cwnd - flight

    def _segment_limit(self, mss: int, probe: bool) -> int:
        """The most one segment may carry: Eff.snd.MSS, or up to `gso_max` of new data outside recovery
        when segmentation offload is on (the link or the stack cuts it into Eff.snd.MSS pieces with the
        same header, PSH and FIN on the last only, as Linux's TSO/GSO does). Retransmissions, probes and
        urgent data go one segment at a time."""
        big = self.config.gso_max
        if big <= mss or probe or self._in_recovery or self._urgent_out or seq_lt(self.snd_nxt, self.snd_max):
            return mss
        return big - big % mss

    def _send_new(self, now: float, room: int, probe: bool, mss: int) -> bool:
        """Send one segment from SND.NXT (new data, or data again after a timeout pulled SND.NXT
        back), or the FIN; False when nothing may go."""
        if self._sb and seq_lt(self.snd_nxt, self.snd_max):
            end = self._sb.sacked_at(self.snd_nxt)
            if end is not None:
                self.snd_nxt = end  # going back after a timeout steps over what the peer SACKed
                return True
        offset = seq_diff(self.snd_nxt, self._sndq_seq)
        remaining = len(self._sndq) - offset
        if remaining <= 0:
            if self._fin_queued and self.snd_nxt == self._fin_seq():
                # The FIN goes out once all data has been segmentized (3.10.4), whatever the window.
                self._transmit(now, Flags.ACK | Flags.FIN, b"")
            return False
        usable = min(seq_diff(seq_add(self.snd_una, self.snd_wnd), self.snd_nxt), room)
        if usable <= 0:
            if not probe:
                return False  # window full (or shrunk: nothing new goes out, MUST-34)
            usable = 1
        n = min(self._segment_limit(mss, probe), usable, remaining)
        if n > mss and n < remaining:
            n -= n % mss  # a large segment is cut into whole segments, but for the end of what is queued
        if self._sb and seq_lt(self.snd_nxt, self.snd_max):
            nxt_sacked = self._sb.next_sacked(self.snd_nxt)
            if nxt_sacked is not None:
                n = min(n, seq_diff(nxt_sacked, self.snd_nxt))
        if n < mss and not probe:
            if n < remaining and n < self.max_snd_wnd // 2 and seq_ge(self.snd_nxt, self.snd_max):
                # Sender SWS avoidance (RFC 9293 3.8.6.2.1, MUST-38): less than a full segment, less
                # than all that is queued and less than half the largest window the peer offered:
                # wait for the window to open (the persist timer overrides a wait with nothing in
                # flight).
                return False
            if (
                self.config.nagle
                and not self._fin_queued
                and self.snd_una != self.snd_max
                and seq_ge(self.snd_nxt, self.snd_max)
            ):
                # Nagle (RFC 9293 3.7.4, SHLD-7): a segment short of the MSS waits while data is
                # unacknowledged; the ACK that comes for it lets the gathered data go.
                return False
        payload = self._queued(offset, n)
        flags = Flags.ACK
        if n == remaining:
            flags |= Flags.PSH
            if self._fin_queued and usable > n:
                flags |= Flags.FIN  # the FIN fits in both windows behind the last data
        self._transmit(now, flags, payload)
        return True

    def _transmit(self, now: float, flags: int, payload: bytes) -> None:
        seq = self.snd_nxt
        length = len(payload) + (1 if flags & Flags.FIN else 0)
        end = seq_add(seq, length)
        if seq_lt(seq, self.snd_max):
            self.retransmissions += 1
            if self._rtt_seq is not None and seq_le(seq, self._rtt_seq):
                self._rtt_seq = None  # Karn (MUST-18)
        else:
            if self._rtt_seq is None:
                self._rtt_seq, self._rtt_time = end, now
            if self.sack_ok and length:
                self._sent_log.append((end, now))
        if self.snd_una == self.snd_max:
            self._episode_start = now
            if payload and self._last_data_sent and now - self._last_data_sent > self.rto.rto:
                # RFC 5681 section 4.1: after an idle time longer than the RTO, cwnd = min(cwnd, IW).
                self.cc.restart_after_idle(self._initial_window())
        if payload:
            self._last_data_sent = now
        self._emit(seq, flags, payload)
        self.snd_nxt = end
        new = seq_gt(end, self.snd_max)
        if new:
            self.snd_max = end
        if RTX not in self._timers:
            self._arm_rtx(now)  # RFC 6298 (5.1)
        if new:
            self._arm_tlp(now)

    def _r2(self) -> float:
        if self._half_open_passive():
            return min(self.config.r2_syn, self.config.syn_received_timeout)
        return self.config.r2_syn if self.state in (State.SYN_SENT, State.SYN_RECEIVED) else self.config.r2

    def _half_open_passive(self) -> bool:
        """SYN-RECEIVED reached from LISTEN: a handshake the user never asked for by name."""
        return self.state is State.SYN_RECEIVED and self.from_listen

    def _arm_rtx(self, now: float, *, restart: bool = False) -> None:
        """Run the retransmission timer for RTO, never past the R2 limit of this episode (MUST-20)."""
        if restart or RTX not in self._timers:
            self._rtx_due = now + self.rto.rto
            self._timers[RTX] = min(self._rtx_due, self._episode_start + self._r2())

    # ------------------------------------------------------------------ 3.10.8 Timeouts

    def on_timer(self, now: float) -> Result:
        """Fire every timer that is due at `now`."""
        self._tick(now)
        t = self._timers.get(TIME_WAIT)
        if t is not None and now >= t:
            # TIME-WAIT TIMEOUT: delete the TCB.
            self._signal(EventKind.TIME_WAIT_OVER, "TIME-WAIT over")
            self._delete("closed")
            return self._result()
        t = self._timers.get(TLP)
        if t is not None and now >= t:
            # First: the probe runs the retransmission timer anew, which may then be due at once (R2).
            del self._timers[TLP]
            if not self._in_recovery and self.snd_una != self.snd_max:
                self._loss_probe(now)
        t = self._timers.get(RTX)
        if t is not None and now >= t:
            self._timers.pop(TLP, None)
            self._retransmission_timeout(now)
        t = self._timers.get(PERSIST)
        if t is not None and now >= t:
            # PERSIST TIMEOUT: send one octet into the zero window; the retransmission timer takes over.
            del self._timers[PERSIST]
            self._persist_backoff += 1
            self._send_data(now, probe=True)
        t = self._timers.get(KEEPALIVE)
        if t is not None and now >= t and self.state is not State.CLOSED:
            self._keepalive_timeout(now)
        t = self._timers.get(DELACK)
        if t is not None and now >= t:
            del self._timers[DELACK]
            self._ack_now = True
            self._output(now)
        return self._result()

    def _retransmission_timeout(self, now: float) -> None:
        """RETRANSMISSION TIMEOUT with RFC 6298 (5.4)-(5.7), R1 and R2 (RFC 9293 section 3.8.3)."""
        del self._timers[RTX]
        if now >= self._episode_start + self._r2():  # the very sum _arm_rtx set the timer to
            if self._half_open_passive():
                # A peer that never completed the handshake: back to LISTEN after syn_received_timeout,
                # as for a RST (3.10.7.4); the passive OPEN stays, the user need not be told.
                self._return_to_listen()
                return
            # R2 passed (MUST-20, and MUST-22 for a SYN): give up, tell the user (USER TIMEOUT).
            self._time_out(str(TcpError.TIMED_OUT))
            return
        self._retx_count += 1
        if self._retx_count >= self.config.r1 and not self._r1_told and not self._half_open_passive():
            # R1 passed: tell the user, the connection goes on (SHLD-9).
            self._r1_told = True
            self._signal(EventKind.RETRANSMITTING, f"{self._retx_count} retransmissions without answer")
        self.rto.timed_out()  # (5.5) back off
        if seq_lt(self.snd_una, self._sndq_seq):
            # Our SYN is not yet acknowledged (SYN-SENT, SYN-RECEIVED, or a FIN-WAIT-1 entered from it).
            self.retransmissions += 1
            self._syn_retransmitted = True
            self._transmit_syn(now, first=False)
            return
        self._before_timeout = None
        if self.snd_wnd:
            self.rto_expiries += 1
            if self._retx_count == 1 and self.ts_ok:
                # Eifel (RFC 3522 section 3.2): the first ACK after this retransmission will tell, by
                # the timestamp it echoes, whether it was needed; keep what the timeout changes.
                pipe_prev = max(self._flight(), self.cc.ssthresh)
                self._before_timeout = (self._ts_now, copy.copy(self.cc), pipe_prev)
            self.cc.on_timeout(self._flight(), now)
        # else the window is closed: what goes now is a zero-window probe (MUST-35), not a sign of
        # congestion, and cwnd is kept.
        self._in_recovery = False  # RFC 6582 section 4: after a timeout, recover = highest sent
        self._dupacks = 0
        self._recover = seq_add(self.snd_max, -1)
        self._rtt_seq = None
        # (5.4) retransmit the earliest unacknowledged segment; go-back-N from SND.UNA, paced by cwnd,
        # stepping over what the peer SACKed (RFC 6675 section 5.1). The peer may have dropped what it
        # SACKed (RFC 2018 section 8): after a second timeout in a row the scoreboard is forgotten.
        self.snd_nxt = self.snd_una
        self._high_rxt = self.snd_una
        self._rexmits.clear()
        if self._retx_count >= 2:
            self._sb.clear()
        # With the window shrunk to zero the retransmission is a probe of one octet (MUST-35).
        self._send_data(now, probe=self.snd_wnd == 0)
        self._arm_rtx(now, restart=True)  # (5.6)
