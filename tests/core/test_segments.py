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

NONE = Flags(0)
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
    flags: Flags = ACK,
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
    flags: Flags = ACK,
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


@pytest.mark.xfail(
    strict=True,
    reason="BUG: text on a SYN received in LISTEN is dropped, not queued for processing in SYN-RECEIVED",
)
def test_listen_syn_text_is_delivered_once_established():
    """3.10.7.2 third: "any other control or text should be queued for processing later ... will be
    processed in the SYN-RECEIVED state"; so once the handshake completes the text is the user's."""
    tcb = listen()
    arrive(tcb, peer_syn(payload=b"early"), now=T0)
    arrive(tcb, seg(IRS + 6, ISS + 1, ACK))
    assert tcb.state is State.ESTABLISHED
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


@pytest.mark.parametrize("ack", [ISS, ISS - 1, ISS - 100_000, ISS + 2, ISS + 1000, ISS + 2**31])
@pytest.mark.parametrize(
    "flags", [ACK, SYN | ACK, ACK | FIN, ACK | PSH], ids=["ack", "syn-ack", "fin-ack", "psh"]
)
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


@pytest.mark.xfail(
    strict=True,
    reason="BUG: text on a SYN,ACK is discarded: RCV.WND counts as 0 (the window our SYN advertised is "
    "forgotten), so the text is trimmed away and only the SYN is acknowledged",
)
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


@pytest.mark.xfail(
    strict=True,
    reason="BUG: text on a SYN received in SYN-SENT (simultaneous open) is dropped, not queued",
)
def test_syn_sent_syn_text_is_queued_until_established():
    """3.10.7.3 fourth: "If there are other controls or text in the segment, queue them for processing
    after the ESTABLISHED state has been reached"."""
    tcb = syn_sent()
    arrive(tcb, peer_syn(payload=b"early"), now=T0)
    arrive(tcb, seg(IRS + 6, ISS + 1, ACK))
    assert tcb.state is State.ESTABLISHED
    assert tcb.receive(100, NOW).data == b"early"
