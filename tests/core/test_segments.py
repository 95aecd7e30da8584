"""Hand-built segment tests for the TCB, in the style of smoltcp's TCP socket tests.

Each test puts a TCB into a known state with known numbers, feeds it one crafted segment (or user call,
or timer), and asserts the exact segments it answers with (ports, SEQ, ACK, flags, window, options,
payload) and the state, variables and events that follow. Every test names the paragraph of
RFC 9293 section 3.10 it checks; /work/shared/reference/rfc9293.txt has the text.

The numbers, fixed for every test unless a test says otherwise:

    we      198.18.0.1 port 80,    ISS = 10000 (FixedIsn), advertise window 65535 and MSS 1460
    peer    198.18.0.2 port 49500, ISS = 20000 (our IRS),  advertises window 8192 and MSS 1460

The handshake that builds a state happens at t = 0; probes arrive at t = NOW = 0.5, before the first
retransmission timeout (RTO 1 s).

Where the TCB disagrees with the RFC text, the test keeps the RFC's behaviour and is marked
`xfail(strict=True, reason="BUG: ...")`.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from stack.tcp import EventKind, Result, State, Tcb, TcbConfig, TcpError, reset_for
from stack.tcp.isn import FixedIsn
from stack.tcp.seq import MASK
from stack.wire.tcp import NO_OPTIONS, Flags, TcpOptions, TcpSegment

# ---------------------------------------------------------------------------------------------- numbers

LOCAL = IPv4Address("198.18.0.1")
REMOTE = IPv4Address("198.18.0.2")
LPORT = 80
RPORT = 49500
ISS = 10_000
IRS = 20_000
PEER_WND = 8192
PEER_MSS = 1460
OUR_WND = 65535
OUR_MSS = 1460
T0 = 0.0
NOW = 0.5

NONE = 0
FIN = Flags.FIN
SYN = Flags.SYN
RST = Flags.RST
PSH = Flags.PSH
ACK = Flags.ACK
URG = Flags.URG

SYNCHRONIZED = [
    State.ESTABLISHED,
    State.FIN_WAIT_1,
    State.FIN_WAIT_2,
    State.CLOSE_WAIT,
    State.CLOSING,
    State.LAST_ACK,
    State.TIME_WAIT,
]

# (SND.UNA, SND.NXT, RCV.NXT) of each synchronized state as the builders below leave it, as offsets
# from ISS and IRS: our FIN takes ISS+1, the peer's FIN takes IRS+1.
SEQS = {
    State.ESTABLISHED: (1, 1, 1),
    State.FIN_WAIT_1: (1, 2, 1),
    State.FIN_WAIT_2: (2, 2, 1),
    State.CLOSE_WAIT: (1, 1, 2),
    State.CLOSING: (1, 2, 2),
    State.LAST_ACK: (1, 2, 2),
    State.TIME_WAIT: (2, 2, 2),
}


def sq(x: int) -> int:
    """A sequence number modulo 2**32."""
    return x & MASK


def snd_una(state: State, iss: int = ISS) -> int:
    return sq(iss + SEQS[state][0])


def snd_nxt(state: State, iss: int = ISS) -> int:
    return sq(iss + SEQS[state][1])


def rcv_nxt(state: State, irs: int = IRS) -> int:
    return sq(irs + SEQS[state][2])


# ---------------------------------------------------------------------------------------------- segments


def seg(
    seq: int = IRS + 1,
    ack: int = ISS + 1,
    flags: int = ACK,
    *,
    window: int = PEER_WND,
    urgent: int = 0,
    options: TcpOptions = NO_OPTIONS,
    payload: bytes = b"",
) -> TcpSegment:
    """A segment from the peer (198.18.0.2:49500) to us (198.18.0.1:80)."""
    return TcpSegment(RPORT, LPORT, sq(seq), sq(ack), flags, window, urgent, options, payload)


def out(
    seq: int,
    ack: int = 0,
    flags: int = ACK,
    *,
    window: int = OUR_WND,
    urgent: int = 0,
    options: TcpOptions = NO_OPTIONS,
    payload: bytes = b"",
) -> TcpSegment:
    """A segment we are expected to send (198.18.0.1:80 to 198.18.0.2:49500)."""
    return TcpSegment(LPORT, RPORT, sq(seq), sq(ack), flags, window, urgent, options, payload)


def rst(seq: int) -> TcpSegment:
    """<SEQ=seq><CTL=RST>: no ACK, window 0."""
    return out(seq, 0, RST, window=0)


def ack_for(state: State, *, window: int = OUR_WND) -> TcpSegment:
    """<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> of a synchronized state as built below."""
    return out(snd_nxt(state), rcv_nxt(state), ACK, window=window)


def syn_ack_out(iss: int = ISS, irs: int = IRS, *, mss: int = OUR_MSS, window: int = OUR_WND) -> TcpSegment:
    return out(iss, irs + 1, SYN | ACK, window=window, options=TcpOptions(mss=mss))


def syn_out(iss: int = ISS, *, mss: int = OUR_MSS, window: int = OUR_WND) -> TcpSegment:
    return out(iss, 0, SYN, window=window, options=TcpOptions(mss=mss))


def peer_syn(
    irs: int = IRS, *, window: int = PEER_WND, mss: int | None = PEER_MSS, payload: bytes = b""
) -> TcpSegment:
    """The peer's SYN <SEQ=irs><CTL=SYN> with its MSS option."""
    return seg(irs, 0, SYN, window=window, options=TcpOptions(mss=mss), payload=payload)


def arrive(tcb: Tcb, s: TcpSegment, now: float = NOW) -> Result:
    return tcb.segment_arrives(s, now, REMOTE)


def kinds(res: Result) -> list[EventKind]:
    return [e.kind for e in res.events]


# ---------------------------------------------------------------------------------------------- states


def closed(cfg: TcbConfig | None = None, *, iss: int = ISS) -> Tcb:
    """A TCB that was never opened: CLOSED ("TCB does not exist")."""
    return Tcb(LOCAL, LPORT, REMOTE, RPORT, config=cfg, isn=FixedIsn(iss))


def listen(cfg: TcbConfig | None = None, *, iss: int = ISS, remote: bool = False) -> Tcb:
    """Passive OPEN, the remote socket unspecified unless `remote`."""
    if remote:
        tcb = Tcb(LOCAL, LPORT, REMOTE, RPORT, config=cfg, isn=FixedIsn(iss))
    else:
        tcb = Tcb(LOCAL, LPORT, config=cfg, isn=FixedIsn(iss))
    res = tcb.open(T0, active=False)
    assert res.ok and res.segments == [] and tcb.state is State.LISTEN
    return tcb


def our_wnd(cfg: TcbConfig | None) -> int:
    return min(OUR_WND, (cfg or TcbConfig()).rcv_buf)


def our_mss(cfg: TcbConfig | None) -> int:
    return (cfg or TcbConfig()).mtu - 40


def syn_sent(cfg: TcbConfig | None = None, *, iss: int = ISS) -> Tcb:
    """Active OPEN at t=0: <SEQ=ISS><CTL=SYN> sent."""
    tcb = closed(cfg, iss=iss)
    res = tcb.open(T0)
    assert res.ok and res.segments == [syn_out(iss, mss=our_mss(cfg), window=our_wnd(cfg))]
    assert tcb.state is State.SYN_SENT
    return tcb


def syn_received(
    cfg: TcbConfig | None = None,
    *,
    from_listen: bool = True,
    iss: int = ISS,
    irs: int = IRS,
    peer_wnd: int = PEER_WND,
    peer_mss: int | None = PEER_MSS,
) -> Tcb:
    """The peer's SYN arrives at t=0 in LISTEN (or, with from_listen=False, in SYN-SENT)."""
    tcb = listen(cfg, iss=iss) if from_listen else syn_sent(cfg, iss=iss)
    res = tcb.segment_arrives(peer_syn(irs, window=peer_wnd, mss=peer_mss), T0, REMOTE)
    assert res.segments == [syn_ack_out(iss, irs, mss=our_mss(cfg), window=our_wnd(cfg))]
    assert tcb.state is State.SYN_RECEIVED
    return tcb


def established(
    cfg: TcbConfig | None = None,
    *,
    iss: int = ISS,
    irs: int = IRS,
    peer_wnd: int = PEER_WND,
    peer_mss: int | None = PEER_MSS,
    at: float = T0,
) -> Tcb:
    """Active OPEN at t=0, the peer's SYN,ACK at `at`, our ACK sent."""
    tcb = syn_sent(cfg, iss=iss)
    res = tcb.segment_arrives(
        seg(irs, iss + 1, SYN | ACK, window=peer_wnd, options=TcpOptions(mss=peer_mss)), at, REMOTE
    )
    assert res.segments == [out(iss + 1, irs + 1, ACK, window=our_wnd(cfg))]
    assert tcb.state is State.ESTABLISHED
    return tcb


def fin_wait_1(cfg: TcbConfig | None = None, **kw: object) -> Tcb:
    """ESTABLISHED, then CLOSE: our FIN <SEQ=ISS+1> sent."""
    tcb = established(cfg, **kw)  # type: ignore[arg-type]
    res = tcb.close(T0)
    assert res.ok and res.segments == [out(tcb.iss + 1, tcb.irs + 1, FIN | ACK, window=our_wnd(cfg))]
    assert tcb.state is State.FIN_WAIT_1
    return tcb


def fin_wait_2(cfg: TcbConfig | None = None, **kw: object) -> Tcb:
    """FIN-WAIT-1, then the peer acknowledges our FIN."""
    tcb = fin_wait_1(cfg, **kw)
    res = tcb.segment_arrives(seg(tcb.irs + 1, tcb.iss + 2, ACK), T0, REMOTE)
    assert res.segments == []
    assert tcb.state is State.FIN_WAIT_2
    return tcb


def close_wait(cfg: TcbConfig | None = None, **kw: object) -> Tcb:
    """ESTABLISHED, then the peer's FIN <SEQ=IRS+1>, which we acknowledge."""
    tcb = established(cfg, **kw)  # type: ignore[arg-type]
    res = tcb.segment_arrives(seg(tcb.irs + 1, tcb.iss + 1, FIN | ACK), T0, REMOTE)
    assert res.segments == [out(tcb.iss + 1, tcb.irs + 2, ACK, window=our_wnd(cfg))]
    assert tcb.state is State.CLOSE_WAIT
    return tcb


def closing(cfg: TcbConfig | None = None, **kw: object) -> Tcb:
    """FIN-WAIT-1, then the peer's FIN that does not acknowledge ours (simultaneous close)."""
    tcb = fin_wait_1(cfg, **kw)
    res = tcb.segment_arrives(seg(tcb.irs + 1, tcb.iss + 1, FIN | ACK), T0, REMOTE)
    assert res.segments == [out(tcb.iss + 2, tcb.irs + 2, ACK, window=our_wnd(cfg))]
    assert tcb.state is State.CLOSING
    return tcb


def last_ack(cfg: TcbConfig | None = None, **kw: object) -> Tcb:
    """CLOSE-WAIT, then CLOSE: our FIN <SEQ=ISS+1> sent."""
    tcb = close_wait(cfg, **kw)
    res = tcb.close(T0)
    assert res.ok and res.segments == [out(tcb.iss + 1, tcb.irs + 2, FIN | ACK, window=our_wnd(cfg))]
    assert tcb.state is State.LAST_ACK
    return tcb


def time_wait(cfg: TcbConfig | None = None, **kw: object) -> Tcb:
    """FIN-WAIT-2, then the peer's FIN, which we acknowledge; the 2 MSL timer runs from t=0."""
    tcb = fin_wait_2(cfg, **kw)
    res = tcb.segment_arrives(seg(tcb.irs + 1, tcb.iss + 2, FIN | ACK), T0, REMOTE)
    assert res.segments == [out(tcb.iss + 2, tcb.irs + 2, ACK, window=our_wnd(cfg))]
    assert tcb.state is State.TIME_WAIT
    return tcb


def deleted(cfg: TcbConfig | None = None) -> Tcb:
    """A TCB that was ESTABLISHED and was aborted: CLOSED again."""
    tcb = established(cfg)
    tcb.abort(T0)
    assert tcb.state is State.CLOSED
    return tcb


BUILD: dict[State, Callable[..., Tcb]] = {
    State.CLOSED: closed,
    State.LISTEN: listen,
    State.SYN_SENT: syn_sent,
    State.SYN_RECEIVED: syn_received,
    State.ESTABLISHED: established,
    State.FIN_WAIT_1: fin_wait_1,
    State.FIN_WAIT_2: fin_wait_2,
    State.CLOSE_WAIT: close_wait,
    State.CLOSING: closing,
    State.LAST_ACK: last_ack,
    State.TIME_WAIT: time_wait,
}

ALL_STATES = list(BUILD)


def build(state: State, cfg: TcbConfig | None = None) -> Tcb:
    tcb = BUILD[state](cfg)
    assert tcb.state is state
    return tcb


def test_builders_leave_the_numbers_documented_above():
    """The fixtures themselves: RFC 9293 section 3.3.1 variables in each built state."""
    for state in SYNCHRONIZED:
        tcb = build(state)
        assert (tcb.iss, tcb.irs) == (ISS, IRS)
        assert (tcb.snd_una, tcb.snd_nxt, tcb.rcv_nxt) == (snd_una(state), snd_nxt(state), rcv_nxt(state))
        assert tcb.snd_wnd == PEER_WND
        assert tcb.rcv_wnd == OUR_WND


# ============================================================================ 3.10.7.1 CLOSED


@pytest.mark.parametrize(
    ("flags", "payload"),
    [(ACK, b""), (ACK | PSH, b"data"), (FIN | ACK, b""), (SYN | ACK, b""), (ACK | URG, b"x")],
)
def test_reset_for_segment_with_ack_is_seq_seg_ack(flags, payload):
    """3.10.7.1: "If the ACK bit is on, <SEQ=SEG.ACK><CTL=RST>"."""
    s = seg(1234, 987654, flags, payload=payload)
    assert reset_for(s) == out(987654, 0, RST, window=0)


@pytest.mark.parametrize(
    ("flags", "payload", "seg_len"),
    [
        (NONE, b"", 0),
        (SYN, b"", 1),
        (FIN, b"", 1),
        (SYN | FIN, b"", 2),
        (PSH, b"hello", 5),
        (SYN, b"hello", 6),
        (SYN | FIN, b"hello", 7),
    ],
)
def test_reset_for_segment_without_ack_is_seq_zero_ack_seq_plus_len(flags, payload, seg_len):
    """3.10.7.1: "If the ACK bit is off, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>"; SEG.LEN counts SYN
    and FIN (3.3.1)."""
    s = seg(5000, 0, flags, payload=payload)
    assert reset_for(s) == out(0, 5000 + seg_len, RST | ACK, window=0)


def test_reset_for_wraps_ack_modulo_2_32():
    """3.10.7.1 with 3.10 "all arithmetic on sequence numbers ... is modulo 2^32"."""
    s = seg(0xFFFFFFFF, 0, SYN | FIN, payload=b"ab")
    assert reset_for(s) == out(0, 3, RST | ACK, window=0)


@pytest.mark.parametrize("flags", [RST, RST | ACK, RST | SYN, RST | FIN, RST | ACK | PSH])
def test_reset_for_never_answers_rst(flags):
    """3.10.7.1: "An incoming segment containing a RST is discarded"."""
    assert reset_for(seg(1, 2, flags, payload=b"x")) is None


@pytest.mark.parametrize("make", [closed, deleted], ids=["never-opened", "deleted"])
@pytest.mark.parametrize(
    ("incoming", "reply"),
    [
        (seg(300, 700, ACK), rst(700)),
        (seg(300, 700, ACK | PSH, payload=b"text"), rst(700)),
        (seg(300, 0, SYN), out(0, 301, RST | ACK, window=0)),
        (seg(300, 0, SYN, payload=b"abc"), out(0, 304, RST | ACK, window=0)),
        (seg(300, 0, FIN), out(0, 301, RST | ACK, window=0)),
        (seg(300, 0, NONE, payload=b"hello"), out(0, 305, RST | ACK, window=0)),
        (seg(300, 700, RST), None),
        (seg(300, 700, RST | ACK), None),
    ],
    ids=["ack", "ack-data", "syn", "syn-data", "fin", "data", "rst", "rst-ack"],
)
def test_closed_answers_every_segment_but_rst_with_rst(make, incoming, reply):
    """3.10.7.1: all data discarded; RST for anything but a RST; the TCB stays CLOSED."""
    tcb = make()
    res = arrive(tcb, incoming)
    assert res.segments == ([] if reply is None else [reply])
    assert res.events == []
    assert tcb.state is State.CLOSED
    assert tcb.readable == 0


# ============================================================================ 3.10.7.2 LISTEN


@pytest.mark.parametrize("flags", [RST, RST | ACK, RST | SYN, RST | SYN | ACK, RST | FIN])
def test_listen_ignores_rst(flags):
    """3.10.7.2 first: "An incoming RST should be ignored. Return." """
    tcb = listen()
    res = arrive(tcb, seg(IRS, ISS, flags))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.LISTEN
    assert tcb.remote_addr is None and tcb.remote_port is None


@pytest.mark.parametrize(
    ("flags", "payload"),
    [(ACK, b""), (SYN | ACK, b""), (ACK | PSH, b"data"), (FIN | ACK, b""), (SYN | FIN | ACK, b"x")],
)
def test_listen_answers_ack_with_rst_seq_seg_ack(flags, payload):
    """3.10.7.2 second: "Any acknowledgment is bad ... <SEQ=SEG.ACK><CTL=RST>"."""
    tcb = listen()
    res = arrive(tcb, seg(IRS, 4242, flags, payload=payload))
    assert res.segments == [rst(4242)]
    assert res.events == []
    assert tcb.state is State.LISTEN
    assert tcb.readable == 0


def test_listen_syn_sends_syn_ack_and_enters_syn_received():
    """3.10.7.2 third: RCV.NXT <- SEG.SEQ+1, IRS <- SEG.SEQ, <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>,
    SND.NXT <- ISS+1, SND.UNA <- ISS, SYN-RECEIVED, and the unspecified remote socket filled in."""
    tcb = listen()
    res = arrive(tcb, peer_syn(), now=T0)
    assert res.segments == [out(ISS, IRS + 1, SYN | ACK, options=TcpOptions(mss=1460))]
    assert res.events == []
    assert tcb.state is State.SYN_RECEIVED
    assert (tcb.irs, tcb.rcv_nxt) == (IRS, IRS + 1)
    assert (tcb.iss, tcb.snd_una, tcb.snd_nxt) == (ISS, ISS, ISS + 1)
    assert (tcb.remote_addr, tcb.remote_port) == (REMOTE, RPORT)
    assert tcb.from_listen is True  # MUST-11
    assert tcb.deadline == T0 + 1.0  # the SYN,ACK is under the retransmission timer (initial RTO 1 s)


def test_listen_fully_specified_keeps_its_remote_socket():
    """3.10.7.2 third: only "unspecified fields should be filled in"."""
    tcb = listen(remote=True)
    res = arrive(tcb, peer_syn(), now=T0)
    assert res.segments == [syn_ack_out()]
    assert (tcb.remote_addr, tcb.remote_port) == (REMOTE, RPORT)


@pytest.mark.parametrize(("mss", "eff"), [(None, 536), (1000, 1000), (1460, 1460), (9000, 1460)])
def test_listen_syn_mss_option_sets_send_mss(mss, eff):
    """3.10.7.2 third with 3.7.1: MSS from the SYN (MUST-14), 536 without it (MUST-15),
    Eff.snd.MSS = min(SendMSS+20, MMS_S) - 20 (MUST-16)."""
    tcb = listen()
    res = arrive(tcb, peer_syn(mss=mss), now=T0)
    assert res.segments == [syn_ack_out()]
    assert tcb.eff_snd_mss == eff


@pytest.mark.parametrize(
    ("flags", "payload"),
    [(NONE, b""), (FIN, b""), (PSH, b"data"), (NONE, b"data"), (URG, b"u"), (FIN | PSH, b"bye")],
)
def test_listen_drops_other_segments(flags, payload):
    """3.10.7.2 fourth: "other data or control ... Drop the segment and return"."""
    tcb = listen()
    res = arrive(tcb, seg(IRS, 0, flags, payload=payload))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.LISTEN
    assert tcb.readable == 0
    assert tcb.deadline is None


def test_listen_syn_with_text_acknowledges_only_the_syn():
    """3.10.7.2 third: the SYN,ACK is <ACK=RCV.NXT>, RCV.NXT = SEG.SEQ+1, whatever text rides on the SYN."""
    tcb = listen()
    res = arrive(tcb, peer_syn(payload=b"early"), now=T0)
    assert res.segments == [syn_ack_out()]
    assert tcb.rcv_nxt == IRS + 1


def test_listen_syn_text_is_delivered_once_established():
    """3.10.7.2 third: "any other control or text should be queued for processing later ... will be
    processed in the SYN-RECEIVED state"; so once the handshake completes the text is the user's."""
    tcb = listen()
    arrive(tcb, peer_syn(payload=b"early"), now=T0)
    res = arrive(tcb, seg(IRS + 6, ISS + 1, ACK))
    assert tcb.state is State.ESTABLISHED
    assert res.segments == [out(ISS + 1, IRS + 6, ACK, window=OUR_WND - 5)]
    assert [(e.kind, e.count) for e in res.events] == [(EventKind.ESTABLISHED, 0), (EventKind.DATA, 5)]
    assert tcb.receive(100, NOW).data == b"early"


def test_listen_syn_with_text_and_fin_closes_once_established():
    """3.10.7.2 third: "any other control or text" includes a FIN: processed (eighth step) once the
    connection is synchronized, so ESTABLISHED -> CLOSE-WAIT with the text delivered."""
    tcb = listen()
    arrive(tcb, seg(IRS, 0, SYN | FIN, payload=b"early"), now=T0)
    res = arrive(tcb, seg(IRS + 7, ISS + 1, ACK))
    assert res.segments == [out(ISS + 1, IRS + 7, ACK, window=OUR_WND - 5)]
    assert sorted(kinds(res), key=str) == sorted(
        [EventKind.ESTABLISHED, EventKind.DATA, EventKind.PEER_CLOSED], key=str
    )
    assert tcb.state is State.CLOSE_WAIT
    assert tcb.receive(100, NOW).data == b"early"


# ============================================================================ 3.10.7.3 SYN-SENT


def test_open_active_sends_syn():
    """3.10.1 CLOSED, active: <SEQ=ISS><CTL=SYN>, SND.UNA <- ISS, SND.NXT <- ISS+1, SYN-SENT; MSS option
    on the SYN (MUST-14) valued mtu-40 (MUST-67)."""
    tcb = closed()
    res = tcb.open(T0)
    assert res.ok
    assert res.segments == [out(ISS, 0, SYN, options=TcpOptions(mss=1460))]
    assert res.events == []
    assert (tcb.snd_una, tcb.snd_nxt) == (ISS, ISS + 1)
    assert tcb.state is State.SYN_SENT
    assert res.deadline == tcb.deadline == T0 + 1.0


@pytest.mark.parametrize("ack", [ISS, ISS - 1, ISS + 2, ISS + 2**31])
@pytest.mark.parametrize("flags", [ACK, SYN | ACK, ACK | PSH], ids=["ack", "syn-ack", "psh"])
def test_syn_sent_bad_ack_is_answered_with_rst(ack, flags):
    """3.10.7.3 first: "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset <SEQ=SEG.ACK><CTL=RST>
    and discard the segment"."""
    tcb = syn_sent()
    res = arrive(tcb, seg(IRS, ack, flags, payload=b"x" if flags & PSH else b""))
    assert res.segments == [rst(ack)]
    assert res.events == []
    assert tcb.state is State.SYN_SENT
    assert (tcb.snd_una, tcb.snd_nxt) == (ISS, ISS + 1)


@pytest.mark.parametrize("ack", [ISS, ISS + 2, ISS - 5])
def test_syn_sent_bad_ack_with_rst_is_dropped(ack):
    """3.10.7.3 first: bad ACK "(unless the RST bit is set, if so drop the segment and return)"."""
    tcb = syn_sent()
    res = arrive(tcb, seg(IRS, ack, RST | ACK))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.SYN_SENT


def test_syn_sent_rst_with_acceptable_ack_refuses_the_connection():
    """3.10.7.3 second: "If the ACK was acceptable, then signal to the user ... drop the segment, enter
    CLOSED state, delete TCB". The RFC words the signal "connection reset"; a RST answering our SYN is
    what sockets call a refusal, and TcpError.REFUSED is the value this stack reports for it."""
    tcb = syn_sent()
    res = arrive(tcb, seg(0, ISS + 1, RST | ACK))
    assert res.segments == []
    assert kinds(res) == [EventKind.REFUSED, EventKind.CLOSED]
    assert tcb.state is State.CLOSED
    assert tcb.deadline is None
    assert tcb.send(b"x", NOW).error is TcpError.REFUSED


@pytest.mark.parametrize("seq", [0, IRS, 12345])
def test_syn_sent_rst_without_ack_is_dropped(seq):
    """3.10.7.3 second: "Otherwise (no ACK), drop the segment and return"."""
    tcb = syn_sent()
    res = arrive(tcb, seg(seq, 0, RST))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.SYN_SENT
    assert tcb.deadline == T0 + 1.0


def test_syn_sent_syn_ack_establishes_and_acks():
    """3.10.7.3 fourth: RCV.NXT <- SEG.SEQ+1, IRS <- SEG.SEQ, SND.UNA <- SEG.ACK; SND.UNA > ISS so
    ESTABLISHED and <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
    tcb = syn_sent()
    res = arrive(tcb, seg(IRS, ISS + 1, SYN | ACK, window=3000, options=TcpOptions(mss=1460)))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)]
    assert kinds(res) == [EventKind.ESTABLISHED]
    assert tcb.state is State.ESTABLISHED
    assert (tcb.irs, tcb.rcv_nxt) == (IRS, IRS + 1)
    assert (tcb.snd_una, tcb.snd_nxt) == (ISS + 1, ISS + 1)
    assert tcb.snd_wnd == 3000
    assert tcb.deadline is None  # nothing outstanding: the retransmission timer is off (RFC 6298 5.2)


def test_syn_sent_syn_ack_with_text_delivers_it():
    """3.10.7.3 fourth: "If there are other controls or text in the segment, then continue processing
    at the sixth step under Section 3.10.7.4"; one ACK covers the SYN and the text."""
    tcb = syn_sent()
    res = arrive(tcb, seg(IRS, ISS + 1, SYN | ACK | PSH, options=TcpOptions(mss=1460), payload=b"hello"))
    assert res.segments == [out(ISS + 1, IRS + 6, ACK, window=OUR_WND - 5)]
    assert kinds(res) == [EventKind.ESTABLISHED, EventKind.DATA]
    assert res.events[1].count == 5
    r = tcb.receive(100, NOW)
    assert (r.data, r.push) == (b"hello", True)


def test_syn_sent_syn_ack_with_fin_goes_to_close_wait():
    """3.10.7.3 fourth, then 3.10.7.4 eighth: the FIN is processed; ESTABLISHED -> CLOSE-WAIT."""
    tcb = syn_sent()
    res = arrive(tcb, seg(IRS, ISS + 1, SYN | ACK | FIN, options=TcpOptions(mss=1460)))
    assert res.segments == [out(ISS + 1, IRS + 2, ACK)]
    assert kinds(res) == [EventKind.ESTABLISHED, EventKind.PEER_CLOSED]
    assert tcb.state is State.CLOSE_WAIT
    assert tcb.rcv_nxt == IRS + 2


def test_syn_sent_queued_data_rides_on_the_ack_of_the_syn():
    """3.10.7.3 fourth: "Data or controls that were queued for transmission MAY be included"."""
    tcb = syn_sent()
    assert tcb.send(b"GET /", T0).segments == []  # 3.10.2 SYN-SENT: queued
    res = arrive(tcb, seg(IRS, ISS + 1, SYN | ACK, options=TcpOptions(mss=1460)))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK | PSH, payload=b"GET /")]
    assert tcb.snd_nxt == ISS + 6


def test_syn_sent_syn_alone_is_simultaneous_open():
    """3.10.7.3 fourth, MUST-10: "Otherwise, enter SYN-RECEIVED, form <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK>";
    SND.WND <- SEG.WND, SND.WL1 <- SEG.SEQ, SND.WL2 <- SEG.ACK; MUST-11 remembers it came from SYN-SENT."""
    tcb = syn_sent()
    res = arrive(tcb, peer_syn(window=4000), now=0.25)
    assert res.segments == [out(ISS, IRS + 1, SYN | ACK, options=TcpOptions(mss=1460))]
    assert res.events == []
    assert tcb.state is State.SYN_RECEIVED
    assert tcb.from_listen is False
    assert (tcb.irs, tcb.rcv_nxt, tcb.snd_una, tcb.snd_nxt) == (IRS, IRS + 1, ISS, ISS + 1)
    assert (tcb.snd_wnd, tcb.snd_wl1, tcb.snd_wl2) == (4000, IRS, 0)


@pytest.mark.parametrize(("mss", "eff"), [(None, 536), (512, 512), (1200, 1200), (65535, 1460)])
def test_syn_sent_reads_mss_option(mss, eff):
    """3.10.7.3 fourth with MUST-14 (receive the MSS option), MUST-15 (536 without it), MUST-16."""
    tcb = syn_sent()
    arrive(tcb, seg(IRS, ISS + 1, SYN | ACK, options=TcpOptions(mss=mss)))
    assert tcb.eff_snd_mss == eff
    assert tcb.status(NOW).snd_mss == eff


@pytest.mark.parametrize(
    "incoming",
    [
        seg(IRS, ISS + 1, ACK),
        seg(IRS, 0, NONE),
        seg(IRS, 0, FIN),
        seg(IRS, ISS + 1, FIN | ACK),
        seg(IRS, 0, PSH, payload=b"data"),
        seg(IRS, ISS + 1, ACK | PSH, payload=b"data"),
    ],
    ids=["ack", "bare", "fin", "fin-ack", "data", "ack-data"],
)
def test_syn_sent_drops_segment_with_neither_syn_nor_rst(incoming):
    """3.10.7.3 fifth: "if neither of the SYN or RST bits is set, then drop the segment and return"."""
    tcb = syn_sent()
    res = arrive(tcb, incoming)
    assert res.segments == [] and res.events == []
    assert tcb.state is State.SYN_SENT
    assert (tcb.snd_una, tcb.snd_nxt, tcb.readable) == (ISS, ISS + 1, 0)


def test_syn_sent_syn_text_is_queued_until_established():
    """3.10.7.3 fourth: "If there are other controls or text in the segment, queue them for processing
    after the ESTABLISHED state has been reached"."""
    tcb = syn_sent()
    res = arrive(tcb, peer_syn(payload=b"early"), now=T0)
    assert res.segments == [syn_ack_out()]
    res = arrive(tcb, seg(IRS + 6, ISS + 1, ACK))
    assert tcb.state is State.ESTABLISHED
    assert res.segments == [out(ISS + 1, IRS + 6, ACK, window=OUR_WND - 5)]
    assert tcb.receive(100, NOW).data == b"early"


# ============================================================================ 3.10.7.4 first: sequence number

SYNC_IDS = [str(s) for s in SYNCHRONIZED]


@pytest.fixture(params=SYNCHRONIZED, ids=SYNC_IDS)
def sync_state(request: pytest.FixtureRequest) -> State:
    return request.param


def unacceptable_segments(state: State) -> dict[str, TcpSegment]:
    """Segments that fail every test of Table 6 (RCV.WND = 65535), each acknowledging only SND.UNA."""
    n = rcv_nxt(state)
    una = snd_una(state)
    return {
        "empty-below-rcv-nxt": seg(n - 1, una),
        "empty-at-right-edge": seg(n + OUR_WND, una),
        "old-text": seg(n - 10, una, ACK | PSH, payload=b"0123456789"),
        "text-past-right-edge": seg(n + OUR_WND, una, ACK | PSH, payload=b"late"),
        "old-fin": seg(n - 1, una, FIN | ACK),
        "far-away": seg(n + 2**31, una, ACK, payload=b"x"),
    }


UNACCEPTABLE_KINDS = list(unacceptable_segments(State.ESTABLISHED))


@pytest.mark.parametrize("kind", UNACCEPTABLE_KINDS)
def test_unacceptable_segment_is_answered_with_ack_and_dropped(sync_state, kind):
    """3.10.7.4 first: "If an incoming segment is not acceptable, an acknowledgment should be sent in
    reply ... <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>. After sending the acknowledgment, drop the
    unacceptable segment and return." """
    tcb = build(sync_state)
    res = arrive(tcb, unacceptable_segments(sync_state)[kind])
    assert res.segments == [ack_for(sync_state)]
    assert res.events == []
    assert tcb.state is sync_state
    assert (tcb.snd_una, tcb.rcv_nxt, tcb.readable) == (snd_una(sync_state), rcv_nxt(sync_state), 0)
    assert tcb.status(NOW).ooo_queued == 0


@pytest.mark.parametrize("offset", [-1, OUR_WND])
def test_unacceptable_rst_is_dropped_silently(sync_state, offset):
    """3.10.7.4 first: an unacceptable segment is answered "(unless the RST bit is set, if so drop the
    segment and return)"; second, RFC 5961 check 1: "outside the current receive window, silently drop"."""
    tcb = build(sync_state)
    res = arrive(tcb, seg(rcv_nxt(sync_state) + offset, snd_una(sync_state), RST | ACK))
    assert res.segments == [] and res.events == []
    assert tcb.state is sync_state


# Table 6: (SEG.SEQ as an offset from RCV.NXT, given RCV.WND; SEG.LEN; acceptable)
TABLE_6 = [
    ("seq=nxt", lambda w: 0, 0, True),  # 0 / >0: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND
    ("seq=nxt+1", lambda w: 1, 0, True),
    ("seq=nxt+wnd-1", lambda w: w - 1, 0, True),
    ("seq=nxt+wnd", lambda w: w, 0, False),
    ("seq=nxt-1", lambda w: -1, 0, False),
    ("text-at-nxt", lambda w: 0, 10, True),  # >0 / >0: the first octet in the window ...
    ("text-at-nxt+wnd-1", lambda w: w - 1, 10, True),
    ("text-at-nxt+wnd", lambda w: w, 10, False),
    ("text-ending-at-nxt+4", lambda w: -5, 10, True),  # ... or the last octet in the window
    ("text-ending-at-nxt", lambda w: -9, 10, True),
    ("text-ending-at-nxt-1", lambda w: -10, 10, False),
    ("text-far-left", lambda w: -100, 10, False),
]


@pytest.mark.parametrize(
    ("offset", "length", "acceptable"), [t[1:] for t in TABLE_6], ids=[t[0] for t in TABLE_6]
)
def test_table_6_acceptability_with_open_window(offset, length, acceptable):
    """3.10.7.4 first, Table 6, cases "0 / >0" and ">0 / >0". An acceptable empty segment needs no
    reply; acceptable text is taken (in order or held); an unacceptable segment gets <ACK=RCV.NXT>."""
    tcb = established()
    # Text before IRS+1 would be the peer's SYN; move RCV.NXT on first so "old" text is plausible.
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"a" * 200))
    tcb.receive(1000, NOW)
    n, w = IRS + 201, tcb.rcv_wnd
    assert w > 1000
    res = arrive(tcb, seg(n + offset(w), ISS + 1, ACK, payload=b"b" * length))
    taken = tcb.readable + tcb.status(NOW).ooo_queued
    if acceptable and length == 0:
        assert res.segments == []
    elif acceptable:
        assert taken > 0
    else:
        # The buffer is empty again, but 200 octets read move the right edge by less than an MSS:
        # receiver SWS avoidance (MUST-39) keeps the edge where it was, so the window is RCV.WND.
        assert res.segments == [out(ISS + 1, n, ACK, window=w)]
        assert w == OUR_WND - 200
        assert taken == 0
    assert tcb.state is State.ESTABLISHED


def zero_window(cfg_buf: int = 100) -> Tcb:
    """ESTABLISHED with a receive buffer of 100 octets, filled by the peer: RCV.WND = 0, RCV.NXT = IRS+101."""
    tcb = established(TcbConfig(rcv_buf=cfg_buf))
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=bytes(cfg_buf)))
    assert res.segments == [out(ISS + 1, IRS + 1 + cfg_buf, ACK, window=0)]
    assert tcb.rcv_wnd == 0
    return tcb


def test_zero_window_empty_segment_at_rcv_nxt_is_acceptable():
    """3.10.7.4 first, Table 6 "0 / 0": SEG.SEQ = RCV.NXT is acceptable; its window is taken."""
    tcb = zero_window()
    res = arrive(tcb, seg(IRS + 101, ISS + 1, ACK, window=5000))
    assert res.segments == []
    assert tcb.snd_wnd == 5000


@pytest.mark.parametrize("offset", [1, -1, 100])
def test_zero_window_empty_segment_elsewhere_is_unacceptable(offset):
    """3.10.7.4 first, Table 6 "0 / 0": anything but SEG.SEQ = RCV.NXT is answered with an ACK."""
    tcb = zero_window()
    res = arrive(tcb, seg(IRS + 101 + offset, ISS + 1, ACK, window=5000))
    assert res.segments == [out(ISS + 1, IRS + 101, ACK, window=0)]
    assert tcb.snd_wnd == PEER_WND


@pytest.mark.parametrize("offset", [0, 1, -1])
def test_zero_window_text_is_not_acceptable(offset):
    """3.10.7.4 first, Table 6 ">0 / 0": "not acceptable": ACK <SEQ=SND.NXT><ACK=RCV.NXT>, text dropped."""
    tcb = zero_window()
    res = arrive(tcb, seg(IRS + 101 + offset, ISS + 1, ACK | PSH, payload=b"probe"))
    assert res.segments == [out(ISS + 1, IRS + 101, ACK, window=0)]
    assert tcb.rcv_nxt == IRS + 101
    assert tcb.readable == 100
    assert tcb.status(NOW).ooo_queued == 0


def test_zero_window_probe_still_carries_a_valid_ack():
    """3.10.7.4 first: "If the RCV.WND is zero, no segments will be acceptable, but special allowance
    should be made to accept valid ACKs" (MUST-66)."""
    tcb = zero_window()
    tcb.send(b"0123456789", NOW)
    res = arrive(tcb, seg(IRS + 101, ISS + 11, ACK, payload=b"p"))
    assert res.segments == [out(ISS + 11, IRS + 101, ACK, window=0)]
    assert tcb.snd_una == ISS + 11
    assert tcb.readable == 100


def test_zero_window_rst_at_rcv_nxt_resets():
    """3.10.7.4 first, MUST-66: special allowance for RSTs with a zero window; second: RST at RCV.NXT."""
    tcb = zero_window()
    res = arrive(tcb, seg(IRS + 101, 0, RST))
    assert res.segments == []
    assert kinds(res) == [EventKind.RESET, EventKind.CLOSED]
    assert tcb.state is State.CLOSED


def test_zero_window_urg_is_processed():
    """3.10.7.4 first, MUST-66: special allowance for URGs with a zero window (sixth step: RCV.UP moves)."""
    tcb = zero_window()
    res = arrive(tcb, seg(IRS + 101, ISS + 1, ACK | URG, urgent=50))
    assert tcb.rcv_up == IRS + 151
    assert kinds(res) == [EventKind.URGENT]


# ============================================================================ 3.10.7.4 second: RST

RESET_SIGNALLED = {State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSE_WAIT}


@pytest.mark.parametrize("flags", [RST, RST | ACK], ids=["rst", "rst-ack"])
def test_rst_at_rcv_nxt_closes(sync_state, flags):
    """3.10.7.4 second, RFC 5961 check 2: RST at RCV.NXT "MUST reset the connection": ESTABLISHED,
    FIN-WAIT-1/2, CLOSE-WAIT signal "connection reset" (MUST-12); CLOSING, LAST-ACK, TIME-WAIT just
    enter CLOSED and delete the TCB."""
    tcb = build(sync_state)
    res = arrive(tcb, seg(rcv_nxt(sync_state), snd_una(sync_state), flags))
    assert res.segments == []
    if sync_state in RESET_SIGNALLED:
        assert kinds(res) == [EventKind.RESET, EventKind.CLOSED]
    else:
        assert kinds(res) == [EventKind.CLOSED]
    assert tcb.state is State.CLOSED
    assert tcb.deadline is None


def test_rst_flushes_queues_and_later_calls_report_the_reset():
    """3.10.7.4 second, ESTABLISHED: "All segment queues should be flushed"; outstanding calls get
    "reset" responses (this TCB answers the next call with the reason the connection ended)."""
    tcb = established()
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"unread"))
    tcb.send(b"unacked", NOW)
    arrive(tcb, seg(IRS + 7, 0, RST))
    st = tcb.status(NOW)
    assert (st.recv_queued, st.send_queued, st.ooo_queued) == (0, 0, 0)
    assert tcb.receive(100, NOW).error is TcpError.RESET
    assert tcb.send(b"x", NOW).error is TcpError.RESET


@pytest.mark.parametrize("offset", [1, OUR_WND - 1])
def test_in_window_rst_not_at_rcv_nxt_gets_challenge_ack(sync_state, offset):
    """3.10.7.4 second, RFC 5961 check 3: "within the current receive window ... MUST send an
    acknowledgment (challenge ACK) <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>" and drop the segment."""
    tcb = build(sync_state)
    res = arrive(tcb, seg(rcv_nxt(sync_state) + offset, snd_una(sync_state), RST))
    assert res.segments == [ack_for(sync_state)]
    assert res.events == []
    assert tcb.state is sync_state


def test_syn_received_from_listen_rst_returns_to_listen():
    """3.10.7.4 second, SYN-RECEIVED: passive OPEN -> "return this connection to LISTEN state and
    return. The user need not be informed." (MUST-11); the retransmission queue is flushed."""
    tcb = syn_received()
    res = arrive(tcb, seg(IRS + 1, 0, RST))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.LISTEN
    assert (tcb.remote_addr, tcb.remote_port) == (None, None)
    assert tcb.deadline is None
    # and it listens again: a new SYN from another port is answered
    res = tcb.segment_arrives(
        TcpSegment(50000, LPORT, 777, 0, SYN, PEER_WND, options=TcpOptions(mss=1460)), NOW, REMOTE
    )
    assert res.segments == [TcpSegment(LPORT, 50000, ISS, 778, SYN | ACK, OUR_WND, 0, TcpOptions(mss=1460))]
    assert (tcb.state, tcb.remote_port, tcb.irs) == (State.SYN_RECEIVED, 50000, 777)


def test_syn_received_from_listen_fully_specified_rst_keeps_remote():
    """3.10.7.4 second, SYN-RECEIVED: back to LISTEN as the passive OPEN specified it."""
    tcb = listen(remote=True)
    arrive(tcb, peer_syn(), now=T0)
    arrive(tcb, seg(IRS + 1, 0, RST))
    assert tcb.state is State.LISTEN
    assert (tcb.remote_addr, tcb.remote_port) == (REMOTE, RPORT)


def test_syn_received_from_syn_sent_rst_refuses():
    """3.10.7.4 second, SYN-RECEIVED: active OPEN -> "the connection was refused; signal the user
    'connection refused'... enter the CLOSED state and delete the TCB"."""
    tcb = syn_received(from_listen=False)
    res = arrive(tcb, seg(IRS + 1, 0, RST))
    assert res.segments == []
    assert kinds(res) == [EventKind.REFUSED, EventKind.CLOSED]
    assert tcb.state is State.CLOSED
    assert tcb.deadline is None


@pytest.mark.parametrize("from_listen", [True, False], ids=["from-listen", "from-syn-sent"])
def test_syn_received_in_window_rst_not_at_rcv_nxt_gets_challenge_ack(from_listen):
    """3.10.7.4 second, RFC 5961 check 3, SYN-RECEIVED: challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT>."""
    tcb = syn_received(from_listen=from_listen)
    res = arrive(tcb, seg(IRS + 5, 0, RST))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)]
    assert tcb.state is State.SYN_RECEIVED


@pytest.mark.parametrize("seq", [IRS, IRS + 1 + OUR_WND], ids=["old", "past-window"])
def test_syn_received_unacceptable_rst_is_dropped(seq):
    """3.10.7.4 first and second (RFC 5961 check 1), SYN-RECEIVED: a RST outside the window is dropped."""
    tcb = syn_received()
    res = arrive(tcb, seg(seq, 0, RST))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.SYN_RECEIVED


def test_simultaneous_open_completes_on_the_peer_ack():
    """3.10.7.4 fifth, SYN-RECEIVED from SYN-SENT: the acceptable ACK <SEQ=IRS+1><ACK=ISS+1> establishes."""
    tcb = syn_received(from_listen=False)
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK))
    assert res.segments == []
    assert kinds(res) == [EventKind.ESTABLISHED]
    assert tcb.state is State.ESTABLISHED


@pytest.mark.parametrize("from_listen", [True, False], ids=["from-listen", "from-syn-sent"])
@pytest.mark.parametrize("seq", [IRS + 1 + OUR_WND, IRS - 5000], ids=["past-window", "old"])
def test_syn_received_unacceptable_segment_gets_ack(from_listen, seq):
    """3.10.7.4 first, SYN-RECEIVED: an unacceptable segment gets <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
    tcb = syn_received(from_listen=from_listen)
    res = arrive(tcb, seg(seq, ISS + 1, ACK, payload=b"x"))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)]
    assert tcb.state is State.SYN_RECEIVED


def test_syn_received_rst_back_to_listen_flushes_queued_data():
    """3.10.7.4 second, SYN-RECEIVED from a passive OPEN: back to LISTEN, "In either case, the
    retransmission queue should be flushed": what was SENT for that peer is not sent to another."""
    tcb = syn_received()
    tcb.send(b"for the first peer", NOW)
    arrive(tcb, seg(IRS + 1, 0, RST))
    assert tcb.state is State.LISTEN
    assert tcb.status(NOW).send_queued == 0
    tcb.segment_arrives(TcpSegment(50000, LPORT, 777, 0, SYN, PEER_WND), 1.0, REMOTE)
    res = tcb.segment_arrives(TcpSegment(50000, LPORT, 778, ISS + 1, ACK, PEER_WND), 1.0, REMOTE)
    assert all(not s.payload for s in res.segments)


# ============================================================================ 3.10.7.4 fourth: SYN


@pytest.mark.parametrize(
    ("flags", "offset"),
    [(SYN, 0), (SYN | ACK, 10), (SYN, -5000)],
    ids=["syn-at-rcv-nxt", "syn-ack-in-window", "syn-old"],
)
def test_syn_in_synchronized_state_gets_challenge_ack(sync_state, flags, offset):
    """3.10.7.4 fourth (RFC 5961 section 4): "if the SYN bit is set, irrespective of the sequence
    number, TCP endpoints MUST send a 'challenge ACK' <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>" and drop it."""
    tcb = build(sync_state)
    deadline = tcb.deadline
    res = arrive(
        tcb, seg(rcv_nxt(sync_state) + offset, snd_una(sync_state), flags, options=TcpOptions(mss=1))
    )
    assert res.segments == [ack_for(sync_state)]
    assert res.events == []
    assert tcb.state is sync_state
    assert tcb.rcv_nxt == rcv_nxt(sync_state)
    assert tcb.eff_snd_mss == PEER_MSS
    assert tcb.deadline == deadline


def test_syn_received_from_listen_in_window_syn_returns_to_listen():
    """3.10.7.4 fourth, SYN-RECEIVED: "If the connection was initiated with a passive OPEN, then return
    this connection to the LISTEN state and return"."""
    tcb = syn_received()
    res = arrive(tcb, seg(IRS + 10, 0, SYN))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.LISTEN


def test_syn_received_from_syn_sent_in_window_syn_gets_challenge_ack():
    """3.10.7.4 fourth, SYN-RECEIVED from an active OPEN: "handle per the directions for synchronized
    states": challenge ACK <SEQ=SND.NXT><ACK=RCV.NXT>."""
    tcb = syn_received(from_listen=False)
    res = arrive(tcb, seg(IRS + 10, 0, SYN))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)]
    assert tcb.state is State.SYN_RECEIVED


def test_syn_received_retransmitted_syn_gets_syn_ack_again():
    """3.10.7.4 first, SYN-RECEIVED: the peer's SYN again (SEG.SEQ = IRS) is not acceptable and must be
    acknowledged. This TCB acknowledges it by sending its SYN,ACK again (<ACK=RCV.NXT> as the RFC's
    reply has), which the peer in SYN-SENT needs since its own SYN,ACK evidently went missing; the RFC's
    plain <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> would be dropped by the peer's 3.10.7.3 fifth step."""
    tcb = syn_received()
    res = arrive(tcb, peer_syn())
    assert res.segments == [syn_ack_out()]
    assert tcb.state is State.SYN_RECEIVED


def test_simultaneous_open_syn_ack_is_not_answered_with_syn_ack():
    """3.10.7.4 first: in SYN-RECEIVED after a simultaneous open (Figure 7 line 6), the peer's SYN,ACK
    <SEQ=IRS><ACK=ISS+1> is either the acceptable ACK that moves us to ESTABLISHED (Figure 7), or an
    unacceptable segment answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> (Table 6). Answering it with
    another SYN,ACK makes two such TCBs answer each other's SYN,ACKs forever."""
    tcb = syn_received(from_listen=False)
    res = arrive(tcb, seg(IRS, ISS + 1, SYN | ACK, options=TcpOptions(mss=1460)))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)] or (
        res.segments == [] and tcb.state is State.ESTABLISHED
    )


def test_simultaneous_open_between_two_tcbs_establishes():
    """MUST-10 and Figure 7: each side goes CLOSED -> SYN-SENT -> SYN-RECEIVED -> ESTABLISHED."""
    from tests.core.net import Net

    a = Tcb(LOCAL, LPORT, REMOTE, RPORT, isn=FixedIsn(ISS))
    b = Tcb(REMOTE, RPORT, LOCAL, LPORT, isn=FixedIsn(IRS))
    net = Net(a, b, codec=False)
    net.take("a", a.open(0.0))
    net.take("b", b.open(0.0))
    net.run(until=5.0, stop=lambda: net.states() == (State.ESTABLISHED, State.ESTABLISHED))
    assert net.states() == (State.ESTABLISHED, State.ESTABLISHED)
    assert len(net.log) <= 6


# ============================================================================ 3.10.7.4 fifth: ACK


def test_syn_received_acceptable_ack_establishes():
    """3.10.7.4 fifth, SYN-RECEIVED: "If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state and
    continue processing with SND.WND <- SEG.WND, SND.WL1 <- SEG.SEQ, SND.WL2 <- SEG.ACK"."""
    tcb = syn_received()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=3333))
    assert res.segments == []
    assert kinds(res) == [EventKind.ESTABLISHED]
    assert tcb.state is State.ESTABLISHED
    assert (tcb.snd_una, tcb.snd_nxt) == (ISS + 1, ISS + 1)
    assert (tcb.snd_wnd, tcb.snd_wl1, tcb.snd_wl2) == (3333, IRS + 1, ISS + 1)
    assert tcb.deadline is None


def test_syn_received_ack_with_text_establishes_and_delivers():
    """3.10.7.4 fifth then seventh: the ACK that completes the handshake may carry text."""
    tcb = syn_received()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK | PSH, payload=b"hello"))
    assert res.segments == [out(ISS + 1, IRS + 6, ACK, window=OUR_WND - 5)]
    assert kinds(res) == [EventKind.ESTABLISHED, EventKind.DATA]
    assert tcb.receive(10, NOW).data == b"hello"


def test_syn_received_ack_with_fin_goes_to_close_wait():
    """3.10.7.4 fifth then eighth, SYN-RECEIVED/ESTABLISHED: "Enter the CLOSE-WAIT state"."""
    tcb = syn_received()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, FIN | ACK))
    assert res.segments == [out(ISS + 1, IRS + 2, ACK)]
    assert kinds(res) == [EventKind.ESTABLISHED, EventKind.PEER_CLOSED]
    assert tcb.state is State.CLOSE_WAIT


@pytest.mark.parametrize("from_listen", [True, False], ids=["from-listen", "from-syn-sent"])
@pytest.mark.parametrize("ack", [ISS, ISS - 1, ISS - 1000])
def test_syn_received_unacceptable_ack_gets_rst(from_listen, ack):
    """3.10.7.4 fifth, SYN-RECEIVED: "If the segment acknowledgment is not acceptable, form a reset
    segment <SEQ=SEG.ACK><CTL=RST> and send it"."""
    tcb = syn_received(from_listen=from_listen)
    res = arrive(tcb, seg(IRS + 1, ack, ACK))
    assert res.segments == [rst(ack)]
    assert res.events == []
    assert tcb.state is State.SYN_RECEIVED


def test_syn_received_ack_beyond_snd_nxt_gets_ack():
    """3.10.7.4 fifth: the RFC 5961 check (MAY-12) comes before the per-state rules, and "All incoming
    segments whose ACK value doesn't satisfy the above condition MUST be discarded and an ACK sent back";
    so SEG.ACK > SND.NXT in SYN-RECEIVED is answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>."""
    tcb = syn_received()
    res = arrive(tcb, seg(IRS + 1, ISS + 2, ACK))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)]
    assert tcb.state is State.SYN_RECEIVED


@pytest.mark.parametrize("flags", [NONE, PSH, FIN], ids=["bare", "text", "fin"])
def test_syn_received_segment_without_ack_is_dropped(flags):
    """3.10.7.4 fifth: "if the ACK bit is off, drop the segment and return"."""
    tcb = syn_received()
    res = arrive(tcb, seg(IRS + 1, 0, flags, payload=b"data" if flags & PSH else b""))
    assert res.segments == [] and res.events == []
    assert (tcb.state, tcb.rcv_nxt, tcb.readable) == (State.SYN_RECEIVED, IRS + 1, 0)


@pytest.mark.parametrize("flags", [PSH, FIN | PSH], ids=["text", "text-fin"])
def test_established_segment_without_ack_is_dropped(flags):
    """3.10.7.4 fifth: "if the ACK bit is off, drop the segment and return": no text, no FIN."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 1, 0, flags, payload=b"data"))
    assert res.segments == [] and res.events == []
    assert (tcb.state, tcb.rcv_nxt, tcb.readable) == (State.ESTABLISHED, IRS + 1, 0)


@pytest.mark.parametrize("beyond", [1, 2**30])
def test_ack_of_something_not_yet_sent_gets_ack_and_is_dropped(sync_state, beyond):
    """3.10.7.4 fifth: "If the ACK acks something not yet sent (SEG.ACK > SND.NXT), then send an ACK,
    drop the segment, and return" (also RFC 5961: SEG.ACK =< SND.NXT)."""
    tcb = build(sync_state)
    res = arrive(tcb, seg(rcv_nxt(sync_state), snd_nxt(sync_state) + beyond, ACK | PSH, payload=b"text"))
    assert res.segments == [ack_for(sync_state)]
    assert res.events == []
    assert tcb.state is sync_state
    assert (tcb.snd_una, tcb.rcv_nxt, tcb.readable) == (snd_una(sync_state), rcv_nxt(sync_state), 0)


def test_rfc5961_ack_too_old_gets_ack_and_is_dropped(sync_state):
    """3.10.7.4 fifth, MAY-12: acceptable only if SND.UNA - MAX.SND.WND =< SEG.ACK; others "MUST be
    discarded and an ACK sent back". MAX.SND.WND is the peer's 8192 here."""
    tcb = build(sync_state)
    res = arrive(tcb, seg(rcv_nxt(sync_state), snd_una(sync_state) - PEER_WND - 1, ACK | PSH, payload=b"t"))
    assert res.segments == [ack_for(sync_state)]
    assert tcb.state is sync_state
    assert (tcb.rcv_nxt, tcb.readable) == (rcv_nxt(sync_state), 0)


def test_duplicate_ack_within_max_snd_wnd_is_ignored_but_text_processed():
    """3.10.7.4 fifth: "If the ACK is a duplicate (SEG.ACK < SND.UNA), it can be ignored" and
    processing goes on (RFC 5961: SND.UNA - MAX.SND.WND =< SEG.ACK is acceptable)."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 1, ISS + 1 - PEER_WND, ACK | PSH, window=1, payload=b"data"))
    assert res.segments == [out(ISS + 1, IRS + 5, ACK, window=OUR_WND - 4)]
    assert tcb.snd_una == ISS + 1
    assert tcb.snd_wnd == PEER_WND  # SND.UNA =< SEG.ACK fails: no window update
    assert tcb.receive(10, NOW).data == b"data"


def test_ack_advances_snd_una_and_removes_acknowledged_data():
    """3.10.7.4 fifth, ESTABLISHED: "If SND.UNA < SEG.ACK =< SND.NXT, then set SND.UNA <- SEG.ACK. Any
    segments on the retransmission queue that are thereby entirely acknowledged are removed"; the
    retransmission timer restarts (RFC 6298 5.3) and stops when all is acknowledged (5.2)."""
    tcb = established()
    res = tcb.send(bytes(100), T0)
    assert res.segments == [out(ISS + 1, IRS + 1, ACK | PSH, payload=bytes(100))]
    assert tcb.deadline == T0 + 1.0
    res = arrive(tcb, seg(IRS + 1, ISS + 41, ACK))
    assert res.segments == []
    assert (tcb.snd_una, tcb.snd_nxt) == (ISS + 41, ISS + 101)
    assert tcb.status(NOW).send_unacked == 60
    assert tcb.deadline == NOW + 1.0
    arrive(tcb, seg(IRS + 1, ISS + 101, ACK))
    assert tcb.snd_una == ISS + 101
    assert tcb.status(NOW).send_unacked == 0
    assert tcb.deadline is None


def test_window_update_from_newer_segment():
    """3.10.7.4 fifth: "If (SND.WL1 < SEG.SEQ or ...), set SND.WND <- SEG.WND, SND.WL1 <- SEG.SEQ, and
    SND.WL2 <- SEG.ACK"."""
    tcb = established()
    assert (tcb.snd_wl1, tcb.snd_wl2) == (IRS, ISS + 1)
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=3000))
    assert (tcb.snd_wnd, tcb.snd_wl1, tcb.snd_wl2) == (3000, IRS + 1, ISS + 1)


def test_window_update_from_same_seq_newer_ack():
    """3.10.7.4 fifth: "... or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)" updates the window."""
    tcb = established()
    tcb.send(bytes(100), T0)
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=3000))
    arrive(tcb, seg(IRS + 1, ISS + 51, ACK, window=2000))
    assert (tcb.snd_wnd, tcb.snd_wl1, tcb.snd_wl2) == (2000, IRS + 1, ISS + 51)
    # the very same numbers again with another window: SND.WL2 =< SEG.ACK still holds
    arrive(tcb, seg(IRS + 1, ISS + 51, ACK, window=0))
    assert tcb.snd_wnd == 0


def test_old_segment_does_not_update_window():
    """3.10.7.4 fifth: "The check here prevents using old segments to update the window": a segment with
    SEG.SEQ < SND.WL1 (a retransmission overlapping new text) leaves SND.WND alone."""
    tcb = established()
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=1000, payload=b"0123456789"))
    arrive(tcb, seg(IRS + 11, ISS + 1, ACK, window=2000, payload=b"abcdefghij"))
    assert (tcb.snd_wnd, tcb.snd_wl1) == (2000, IRS + 11)
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=500, payload=b"0123456789abcdefghijKLMNO"))
    assert res.segments == [out(ISS + 1, IRS + 26, ACK, window=OUR_WND - 25)]
    assert (tcb.snd_wnd, tcb.snd_wl1, tcb.snd_wl2) == (2000, IRS + 11, ISS + 1)
    assert tcb.receive(100, NOW).data == b"0123456789abcdefghijKLMNO"


def test_duplicate_ack_does_not_update_window():
    """3.10.7.4 fifth: the window is updated only "If SND.UNA =< SEG.ACK =< SND.NXT"."""
    tcb = established()
    tcb.send(bytes(100), T0)
    arrive(tcb, seg(IRS + 1, ISS + 51, ACK, window=3000))
    arrive(tcb, seg(IRS + 1, ISS + 21, ACK | PSH, window=9999, payload=b"new"))
    assert tcb.snd_una == ISS + 51
    assert tcb.snd_wnd == 3000
    assert tcb.readable == 3


def test_fin_wait_1_ack_of_fin_enters_fin_wait_2():
    """3.10.7.4 fifth, FIN-WAIT-1: "if the FIN segment is now acknowledged, then enter FIN-WAIT-2"."""
    tcb = fin_wait_1()
    res = arrive(tcb, seg(IRS + 1, ISS + 2, ACK))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.FIN_WAIT_2
    assert tcb.snd_una == ISS + 2
    assert tcb.deadline is None  # FIN-WAIT-2 runs no timer of the RFC's


def test_fin_wait_1_ack_of_data_but_not_fin_stays():
    """3.10.7.4 fifth, FIN-WAIT-1: an ACK that leaves our FIN unacknowledged does not leave FIN-WAIT-1."""
    tcb = established()
    tcb.send(b"0123456789", T0)
    res = tcb.close(T0)
    assert res.segments == [out(ISS + 11, IRS + 1, FIN | ACK)]
    arrive(tcb, seg(IRS + 1, ISS + 11, ACK))
    assert tcb.state is State.FIN_WAIT_1
    arrive(tcb, seg(IRS + 1, ISS + 12, ACK))
    assert tcb.state is State.FIN_WAIT_2


def test_closing_ack_of_fin_enters_time_wait():
    """3.10.7.4 fifth, CLOSING: "if the ACK acknowledges our FIN, then enter the TIME-WAIT state"."""
    tcb = closing()
    res = arrive(tcb, seg(IRS + 2, ISS + 2, ACK))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.TIME_WAIT
    assert tcb.deadline == NOW + 2 * TcbConfig().msl


def test_closing_ack_not_of_fin_is_ignored():
    """3.10.7.4 fifth, CLOSING: "otherwise, ignore the segment"."""
    tcb = closing()
    res = arrive(tcb, seg(IRS + 2, ISS + 1, ACK))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.CLOSING


def test_last_ack_ack_of_fin_closes():
    """3.10.7.4 fifth, LAST-ACK: "If our FIN is now acknowledged, delete the TCB, enter the CLOSED state"."""
    tcb = last_ack()
    res = arrive(tcb, seg(IRS + 2, ISS + 2, ACK))
    assert res.segments == []
    assert kinds(res) == [EventKind.CLOSED]
    assert tcb.state is State.CLOSED
    assert tcb.deadline is None


def test_last_ack_ack_not_of_fin_stays():
    """3.10.7.4 fifth, LAST-ACK: only the acknowledgment of our FIN closes."""
    tcb = last_ack()
    res = arrive(tcb, seg(IRS + 2, ISS + 1, ACK))
    assert res.segments == [] and res.events == []
    assert tcb.state is State.LAST_ACK


def test_time_wait_retransmitted_fin_is_acked_and_restarts_2msl():
    """3.10.7.4 fifth, TIME-WAIT: "The only thing that can arrive in this state is a retransmission of the
    remote FIN. Acknowledge it, and restart the 2 MSL timeout." """
    tcb = time_wait()
    assert tcb.deadline == T0 + 60.0
    res = arrive(tcb, seg(IRS + 1, ISS + 2, FIN | ACK), now=42.0)
    assert res.segments == [ack_for(State.TIME_WAIT)]
    assert res.events == []
    assert tcb.state is State.TIME_WAIT
    assert tcb.deadline == 42.0 + 60.0


def test_time_wait_plain_ack_does_not_restart_2msl():
    """3.10.7.4 fifth, TIME-WAIT: only the FIN restarts the timer."""
    tcb = time_wait()
    res = arrive(tcb, seg(IRS + 2, ISS + 2, ACK), now=42.0)
    assert res.segments == []
    assert tcb.deadline == T0 + 60.0


# ============================================================================ 3.10.7.4 sixth: URG


def test_urg_updates_rcv_up_and_signals_once():
    """3.10.7.4 sixth: "RCV.UP <- max(RCV.UP,SEG.UP), and signal the user ... If the user has already
    been signaled ... for this continuous sequence of urgent data, do not signal the user again"; the
    urgent pointer points at the octet after the urgent data (MUST-62)."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK | URG, urgent=10, payload=b"01234"))
    assert tcb.rcv_up == IRS + 11
    assert kinds(res) == [EventKind.URGENT, EventKind.DATA]
    assert res.segments == [out(ISS + 1, IRS + 6, ACK, window=OUR_WND - 5)]
    res = arrive(tcb, seg(IRS + 6, ISS + 1, ACK | URG, urgent=5, payload=b"56789"))
    assert tcb.rcv_up == IRS + 11
    assert kinds(res) == [EventKind.DATA]
    # a later, separate stretch of urgent data is signalled again
    res = arrive(tcb, seg(IRS + 11, ISS + 1, ACK | URG, urgent=3, payload=b"abc"))
    assert tcb.rcv_up == IRS + 14
    assert kinds(res) == [EventKind.URGENT, EventKind.DATA]


def test_urg_pointer_advancing_in_urgent_mode_is_not_signalled_again():
    """3.10.7.4 sixth: "If the user has already been signaled (or is still in the 'urgent mode') for this
    continuous sequence of urgent data, do not signal the user again"; 3.8.5: "If the urgent pointer is
    updated while the user is in 'urgent mode', the update will be invisible to the user"."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK | URG, urgent=10, payload=b"01234"))
    assert EventKind.URGENT in kinds(res)
    res = arrive(tcb, seg(IRS + 6, ISS + 1, ACK | URG, urgent=20, payload=b"56789"))
    assert tcb.rcv_up == IRS + 26
    assert kinds(res) == [EventKind.DATA]


def test_urg_pointer_never_moves_back():
    """3.10.7.4 sixth: RCV.UP <- max(RCV.UP, SEG.UP)."""
    tcb = established()
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK | URG, urgent=100))
    assert tcb.rcv_up == IRS + 101
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK | URG, urgent=5, payload=b"xy"))
    assert tcb.rcv_up == IRS + 101
    assert EventKind.URGENT not in kinds(res)


@pytest.mark.parametrize("state", [State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT])
def test_urg_after_peer_fin_is_ignored(state):
    """3.10.7.4 sixth, CLOSE-WAIT/CLOSING/LAST-ACK/TIME-WAIT: "This should not occur since a FIN has been
    received from the remote side. Ignore the URG." """
    tcb = build(state)
    up = tcb.rcv_up
    res = arrive(tcb, seg(rcv_nxt(state), snd_una(state), ACK | URG, urgent=10))
    assert tcb.rcv_up == up
    assert EventKind.URGENT not in kinds(res)


# ============================================================================ 3.10.7.4 seventh: text


def test_established_text_is_delivered_and_acked():
    """3.10.7.4 seventh: the text is the user's, RCV.NXT advances over it, "Send an acknowledgment of the
    form <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>"; the window shrinks by what is buffered, its right edge
    stays; PUSH is passed to the user."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK | PSH, payload=b"hello"))
    assert res.segments == [out(ISS + 1, IRS + 6, ACK, window=OUR_WND - 5)]
    assert [(e.kind, e.count) for e in res.events] == [(EventKind.DATA, 5)]
    assert tcb.rcv_nxt == IRS + 6
    assert tcb.rcv_wnd == OUR_WND - 5
    r = tcb.receive(100, NOW)
    assert (r.data, r.push, r.error) == (b"hello", True, None)


def test_receive_window_right_edge_never_moves_left():
    """3.10.7.4 seventh: "The total of RCV.NXT and RCV.WND should not be reduced" (SHLD-14)."""
    tcb = established(TcbConfig(rcv_buf=1000))
    edge = tcb.rcv_nxt + tcb.rcv_wnd
    for i in range(5):
        arrive(tcb, seg(IRS + 1 + 100 * i, ISS + 1, ACK, payload=bytes(100)))
        assert tcb.rcv_nxt + tcb.rcv_wnd == edge
    tcb.receive(50, NOW)  # too little to be worth a window update: the edge stays put
    arrive(tcb, seg(IRS + 501, ISS + 1, ACK, payload=bytes(10)))
    assert tcb.rcv_nxt + tcb.rcv_wnd >= edge


def test_ack_of_text_rides_on_queued_data():
    """3.10.7.4 seventh: "This acknowledgment should be piggybacked on a segment being transmitted if
    possible": the window update lets queued data go, and that segment carries the ACK."""
    tcb = established(peer_wnd=0)
    assert tcb.send(b"abc", NOW).segments == []
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK | PSH, window=100, payload=b"hi"))
    assert res.segments == [out(ISS + 1, IRS + 3, ACK | PSH, window=OUR_WND - 2, payload=b"abc")]


def test_window_field_is_at_most_65535():
    """3.1 / MUST-1: the window field is 16 bits (no window scaling negotiated): a bigger buffer is
    offered as 65535."""
    tcb = established(TcbConfig(rcv_buf=1 << 20))
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"x"))
    assert res.segments == [out(ISS + 1, IRS + 2, ACK, window=OUR_WND)]


def test_text_without_push_is_delivered_without_push():
    """3.10.7.4 seventh: "If the segment empties and carries a PUSH flag, then the user is informed"."""
    tcb = established()
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"hello"))
    r = tcb.receive(100, NOW)
    assert (r.data, r.push) == (b"hello", False)


@pytest.mark.parametrize("state", [State.FIN_WAIT_1, State.FIN_WAIT_2])
def test_half_close_text_is_still_received(state):
    """3.10.4 CLOSE ("receiving goes on") and 3.10.7.4 seventh, FIN-WAIT-1/2: text is delivered and ACKed."""
    tcb = build(state)
    res = arrive(tcb, seg(IRS + 1, snd_una(state), ACK | PSH, payload=b"more"))
    assert res.segments == [out(ISS + 2, IRS + 5, ACK, window=OUR_WND - 4)]
    assert kinds(res) == [EventKind.DATA]
    assert tcb.state is state
    assert tcb.receive(100, NOW).data == b"more"


@pytest.mark.parametrize("state", [State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT])
def test_text_after_peer_fin_is_ignored(state):
    """3.10.7.4 seventh, CLOSE-WAIT/CLOSING/LAST-ACK/TIME-WAIT: "Ignore the segment text"."""
    tcb = build(state)
    res = arrive(tcb, seg(rcv_nxt(state), snd_una(state), ACK | PSH, payload=b"after fin"))
    assert res.segments == []
    assert res.events == []
    assert (tcb.rcv_nxt, tcb.readable) == (rcv_nxt(state), 0)


def test_text_overlapping_left_edge_is_trimmed():
    """3.10.7.4 first: "If a segment's contents straddle the boundary between old and new, only the new
    parts are processed"."""
    tcb = established()
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"hello"))
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"helloworld"))
    assert res.segments == [out(ISS + 1, IRS + 11, ACK, window=OUR_WND - 10)]
    assert [(e.kind, e.count) for e in res.events] == [(EventKind.DATA, 5)]
    assert tcb.receive(100, NOW).data == b"helloworld"


def test_text_past_right_edge_is_trimmed():
    """3.10.7.4 first: "trimming off any portions that lie outside the window"."""
    tcb = established(TcbConfig(rcv_buf=20))
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=bytes(range(30))))
    assert res.segments == [out(ISS + 1, IRS + 21, ACK, window=0)]
    assert tcb.receive(100, NOW).data == bytes(range(20))


def test_fin_past_right_edge_is_trimmed_with_the_text():
    """3.10.7.4 first: trimming "(including SYN and FIN)": a FIN behind text that overflows the window
    is not processed."""
    tcb = established(TcbConfig(rcv_buf=20))
    res = arrive(tcb, seg(IRS + 1, ISS + 1, FIN | ACK, payload=bytes(25)))
    assert res.segments == [out(ISS + 1, IRS + 21, ACK, window=0)]
    assert tcb.state is State.ESTABLISHED


def test_fin_just_past_right_edge_is_trimmed():
    """3.10.7.4 first: the FIN of <SEQ=RCV.NXT> with RCV.WND octets of text occupies RCV.NXT+RCV.WND,
    outside the window, so it is trimmed off "(including SYN and FIN)" and not processed."""
    tcb = established(TcbConfig(rcv_buf=20))
    res = arrive(tcb, seg(IRS + 1, ISS + 1, FIN | ACK, payload=bytes(20)))
    assert res.segments == [out(ISS + 1, IRS + 21, ACK, window=0)]
    assert tcb.state is State.ESTABLISHED


def test_out_of_order_text_is_held_and_duplicate_ack_sent_then_delivered():
    """3.10.7.4 first: "Segments with higher beginning sequence numbers SHOULD be held for later
    processing (SHLD-31)"; seventh: MAY-13 ACK of RCV.NXT for an in-window segment not at the left
    edge; when the gap fills, all is delivered under one ACK (MUST-58, MUST-59)."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 6, ISS + 1, ACK, payload=b"world"))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)]
    assert res.events == []
    assert (tcb.rcv_nxt, tcb.readable, tcb.status(NOW).ooo_queued) == (IRS + 1, 0, 5)
    res = arrive(tcb, seg(IRS + 11, ISS + 1, ACK, payload=b"!!"))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)]
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"hello"))
    assert res.segments == [out(ISS + 1, IRS + 13, ACK, window=OUR_WND - 12)]
    assert [(e.kind, e.count) for e in res.events] == [(EventKind.DATA, 12)]
    assert tcb.status(NOW).ooo_queued == 0
    assert tcb.receive(100, NOW).data == b"hello" + b"world" + b"!!"


def test_out_of_order_fin_is_held_until_the_gap_fills():
    """3.10.7.4 first (SHLD-31) and eighth: a FIN behind a gap is processed once the gap fills."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 6, ISS + 1, FIN | ACK, payload=b"world"))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK)]
    assert tcb.state is State.ESTABLISHED
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"hello"))
    assert res.segments == [out(ISS + 1, IRS + 12, ACK, window=OUR_WND - 10)]
    assert sorted(kinds(res), key=str) == sorted([EventKind.DATA, EventKind.PEER_CLOSED], key=str)
    assert tcb.state is State.CLOSE_WAIT
    assert tcb.receive(100, NOW).data == b"helloworld"


def test_overlapping_out_of_order_segments_are_merged():
    """3.10.7.4 first: "we reconstruct the segment to contain just the new data"."""
    tcb = established()
    arrive(tcb, seg(IRS + 4, ISS + 1, ACK, payload=b"defgh"))
    arrive(tcb, seg(IRS + 6, ISS + 1, ACK, payload=b"fghij"))
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=b"abcd"))
    assert res.segments == [out(ISS + 1, IRS + 11, ACK, window=OUR_WND - 10)]
    assert tcb.receive(100, NOW).data == b"abcdefghij"


# ============================================================================ 3.10.7.4 eighth: FIN


def test_established_fin_enters_close_wait():
    """3.10.7.4 eighth: "signal the user 'connection closing' ... advance RCV.NXT over the FIN, and send
    an acknowledgment for the FIN"; ESTABLISHED: "Enter the CLOSE-WAIT state"."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, FIN | ACK))
    assert res.segments == [out(ISS + 1, IRS + 2, ACK)]
    assert kinds(res) == [EventKind.PEER_CLOSED]
    assert tcb.state is State.CLOSE_WAIT
    assert tcb.rcv_nxt == IRS + 2
    assert tcb.receive(100, NOW).error is TcpError.CLOSING


def test_established_fin_with_text_delivers_text_then_closes():
    """3.10.7.4 eighth: "FIN implies PUSH for any segment text not yet delivered to the user"."""
    tcb = established()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, FIN | ACK, payload=b"bye"))
    assert res.segments == [out(ISS + 1, IRS + 5, ACK, window=OUR_WND - 3)]
    assert sorted(kinds(res), key=str) == sorted([EventKind.DATA, EventKind.PEER_CLOSED], key=str)
    assert tcb.state is State.CLOSE_WAIT
    r = tcb.receive(100, NOW)
    assert (r.data, r.push) == (b"bye", True)
    assert tcb.receive(100, NOW).error is TcpError.CLOSING


def test_fin_wait_1_fin_without_ack_of_ours_enters_closing():
    """3.10.7.4 eighth, FIN-WAIT-1: "otherwise, enter the CLOSING state"."""
    tcb = fin_wait_1()
    res = arrive(tcb, seg(IRS + 1, ISS + 1, FIN | ACK))
    assert res.segments == [out(ISS + 2, IRS + 2, ACK)]
    assert kinds(res) == [EventKind.PEER_CLOSED]
    assert tcb.state is State.CLOSING
    assert tcb.deadline == T0 + 1.0  # our FIN is still under the retransmission timer


def test_fin_wait_1_fin_acking_ours_enters_time_wait():
    """3.10.7.4 eighth, FIN-WAIT-1: "If our FIN has been ACKed (perhaps in this segment), then enter
    TIME-WAIT, start the time-wait timer, turn off the other timers"."""
    tcb = fin_wait_1()
    res = arrive(tcb, seg(IRS + 1, ISS + 2, FIN | ACK))
    assert res.segments == [out(ISS + 2, IRS + 2, ACK)]
    assert kinds(res) == [EventKind.PEER_CLOSED]
    assert tcb.state is State.TIME_WAIT
    assert tcb.deadline == NOW + 2 * TcbConfig().msl
    assert list(tcb.status(NOW).timers) == ["time-wait"]


def test_fin_wait_2_fin_enters_time_wait():
    """3.10.7.4 eighth, FIN-WAIT-2: "Enter the TIME-WAIT state. Start the time-wait timer, turn off the
    other timers"."""
    tcb = fin_wait_2()
    res = arrive(tcb, seg(IRS + 1, ISS + 2, FIN | ACK, payload=b"last"))
    assert res.segments == [out(ISS + 2, IRS + 6, ACK, window=OUR_WND - 4)]
    assert sorted(kinds(res), key=str) == sorted([EventKind.DATA, EventKind.PEER_CLOSED], key=str)
    assert tcb.state is State.TIME_WAIT
    assert tcb.deadline == NOW + 2 * TcbConfig().msl
    assert tcb.receive(100, NOW).data == b"last"


@pytest.mark.parametrize("state", [State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK])
def test_retransmitted_fin_is_acked_and_state_kept(state):
    """3.10.7.4 first (the old FIN is not acceptable: ACK it) and eighth: CLOSE-WAIT, CLOSING and LAST-ACK
    "Remain" in their state; the user is not told "connection closing" twice."""
    tcb = build(state)
    res = arrive(tcb, seg(IRS + 1, snd_una(state), FIN | ACK))
    assert res.segments == [ack_for(state)]
    assert res.events == []
    assert tcb.state is state
    assert tcb.rcv_nxt == IRS + 2
