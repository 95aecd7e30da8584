"""Hand-built tests of the TCB's user calls, timers, sequence wrap, MSS and bad input (RFC 9293 section
3.10.1-3.10.6 and 3.10.8, section 3.7.1, section 3.8.1 with RFC 6298), with the numbers and helpers of
test_segments.py: we are 198.18.0.1:80 with ISS 10000, the peer 198.18.0.2:49500 with ISS 20000.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stack.tcp import EventKind, State, Tcb, TcbConfig, TcpError
from stack.tcp.isn import FixedIsn
from stack.wire.tcp import NO_OPTIONS, TcpOptions, TcpSegment
from tests.core.test_segments import (
    ACK,
    ALL_STATES,
    FIN,
    IRS,
    ISS,
    LOCAL,
    LPORT,
    NOW,
    OUR_WND,
    PEER_WND,
    PSH,
    REMOTE,
    RPORT,
    RST,
    SYN,
    SYNCHRONIZED,
    T0,
    URG,
    arrive,
    build,
    close_wait,
    closed,
    deleted,
    established,
    fin_wait_1,
    fin_wait_2,
    kinds,
    last_ack,
    listen,
    out,
    rcv_nxt,
    rst,
    seg,
    snd_nxt,
    snd_una,
    sq,
    syn_ack_out,
    syn_out,
    syn_received,
    syn_sent,
    time_wait,
)

NOT_CLOSED = [s for s in ALL_STATES if s is not State.CLOSED]
SYN_STATES = [State.SYN_SENT, State.SYN_RECEIVED]
BUILD_WITH_CFG = {State.SYN_SENT: syn_sent, State.SYN_RECEIVED: syn_received}


# ============================================================================ 3.10.1 OPEN


def test_open_passive_enters_listen():
    """3.10.1 CLOSED: "If passive, enter the LISTEN state and return"."""
    tcb = Tcb(LOCAL, LPORT, isn=FixedIsn(ISS))
    res = tcb.open(T0, active=False)
    assert (res.error, res.segments, res.events, res.deadline) == (None, [], [], None)
    assert tcb.state is State.LISTEN
    assert tcb.passive is True


def test_open_active_without_remote_socket_is_refused():
    """3.10.1 CLOSED: "If active and the remote socket is unspecified, return 'error: remote socket
    unspecified'"; nothing is created, so a passive OPEN may follow."""
    tcb = Tcb(LOCAL, LPORT, isn=FixedIsn(ISS))
    res = tcb.open(T0, active=True)
    assert res.error is TcpError.REMOTE_UNSPECIFIED
    assert res.segments == []
    assert tcb.state is State.CLOSED
    assert tcb.open(T0, active=False).ok
    assert tcb.state is State.LISTEN


def test_open_active_in_listen_turns_active():
    """3.10.1 LISTEN: "If the OPEN call is active and the remote socket is specified, then change the
    connection from passive to active, select an ISS. Send a SYN segment, set SND.UNA to ISS, SND.NXT to
    ISS+1. Enter SYN-SENT state"."""
    tcb = listen(remote=True)
    res = tcb.open(NOW, active=True)
    assert res.ok
    assert res.segments == [syn_out()]
    assert (tcb.state, tcb.passive, tcb.snd_una, tcb.snd_nxt) == (State.SYN_SENT, False, ISS, ISS + 1)
    assert tcb.deadline == NOW + 1.0


def test_open_active_in_listen_without_remote_socket_is_refused():
    """3.10.1 LISTEN: "If the remote socket was not specified, then return 'error: remote socket
    unspecified'"."""
    tcb = listen()
    res = tcb.open(NOW, active=True)
    assert res.error is TcpError.REMOTE_UNSPECIFIED
    assert res.segments == []
    assert tcb.state is State.LISTEN


@pytest.mark.parametrize("state", [s for s in NOT_CLOSED if s is not State.LISTEN])
@pytest.mark.parametrize("active", [True, False], ids=["active", "passive"])
def test_open_in_existing_connection_is_already_exists(state, active):
    """3.10.1 SYN-SENT ... TIME-WAIT: "Return 'error: connection already exists'"."""
    tcb = build(state)
    res = tcb.open(NOW, active=active)
    assert res.error is TcpError.ALREADY_EXISTS
    assert res.segments == [] and res.events == []
    assert tcb.state is state


def test_open_passive_in_listen_is_already_exists():
    """3.10.1: a second passive OPEN of a LISTEN connection finds it existing (only an active OPEN
    changes LISTEN)."""
    tcb = listen()
    assert tcb.open(NOW, active=False).error is TcpError.ALREADY_EXISTS
    assert tcb.state is State.LISTEN


def test_open_on_deleted_tcb_is_not_exist():
    """3.10.1 CLOSED creates a new TCB; this object was deleted, so it does not come back to life: the
    caller makes a new Tcb (the connection pool does). The TCB says the connection does not exist."""
    tcb = deleted()
    res = tcb.open(NOW)
    assert res.error is TcpError.NOT_EXIST
    assert res.segments == []
    assert tcb.state is State.CLOSED


# ============================================================================ 3.10.2 SEND


def test_send_in_closed_is_not_exist():
    """3.10.2 CLOSED: "Otherwise, return 'error: connection does not exist'"."""
    tcb = closed()
    res = tcb.send(b"x", NOW)
    assert res.error is TcpError.NOT_EXIST
    assert res.segments == []


def test_send_in_listen_without_remote_is_remote_unspecified():
    """3.10.2 LISTEN: "If the remote socket was not specified, then return 'error: remote socket
    unspecified'"."""
    tcb = listen()
    res = tcb.send(b"x", NOW)
    assert res.error is TcpError.REMOTE_UNSPECIFIED
    assert res.segments == []
    assert tcb.state is State.LISTEN


def test_send_in_listen_with_remote_turns_active_and_queues():
    """3.10.2 LISTEN: "If the remote socket is specified, then change the connection from passive to
    active, select an ISS. Send a SYN segment ... Data associated with SEND may be sent with SYN segment
    or queued for transmission after entering ESTABLISHED state"."""
    tcb = listen(remote=True)
    res = tcb.send(b"hello", NOW)
    assert res.ok
    assert res.segments == [syn_out()]
    assert tcb.state is State.SYN_SENT
    res = arrive(tcb, seg(IRS, ISS + 1, SYN | ACK, options=TcpOptions(mss=1460)), now=0.6)
    assert res.segments == [out(ISS + 1, IRS + 1, ACK | PSH, payload=b"hello")]


def test_send_in_listen_without_room_is_insufficient_resources():
    """3.10.2 LISTEN: "If there is no room to queue the request, respond with 'error: insufficient
    resources'"."""
    tcb = listen(TcbConfig(snd_buf=4), remote=True)
    res = tcb.send(b"hello", NOW)
    assert res.error is TcpError.INSUFFICIENT_RESOURCES
    assert res.segments == []
    assert tcb.state is State.LISTEN


@pytest.mark.parametrize("state", SYN_STATES)
def test_send_before_established_is_queued(state):
    """3.10.2 SYN-SENT, SYN-RECEIVED: "Queue the data for transmission after entering ESTABLISHED"."""
    tcb = build(state)
    res = tcb.send(b"hello", NOW)
    assert res.ok and res.segments == []
    assert tcb.status(NOW).send_queued == 5
    assert tcb.snd_nxt == ISS + 1


def test_send_queued_in_syn_received_goes_out_once_established():
    """3.10.2 SYN-RECEIVED, then 3.10.7.4 fifth: the queued data is sent on entering ESTABLISHED."""
    tcb = syn_received()
    tcb.send(b"hello", NOW)
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK), now=0.6)
    assert kinds(res) == [EventKind.ESTABLISHED]
    assert res.segments == [out(ISS + 1, IRS + 1, ACK | PSH, payload=b"hello")]


@pytest.mark.parametrize("state", SYN_STATES)
def test_send_before_established_without_room_is_insufficient_resources(state):
    """3.10.2 SYN-SENT, SYN-RECEIVED: "If no space to queue, respond with 'error: insufficient
    resources'"."""
    tcb = BUILD_WITH_CFG[state](TcbConfig(snd_buf=8))
    assert tcb.send(b"12345", NOW).ok
    res = tcb.send(b"6789", NOW)
    assert res.error is TcpError.INSUFFICIENT_RESOURCES
    assert tcb.status(NOW).send_queued == 5


@pytest.mark.parametrize("state", [State.ESTABLISHED, State.CLOSE_WAIT])
def test_send_segmentizes_with_piggybacked_ack(state):
    """3.10.2 ESTABLISHED, CLOSE-WAIT: "Segmentize the buffer and send it with a piggybacked
    acknowledgment (acknowledgment value = RCV.NXT)"; PSH on the segment that empties the queue."""
    tcb = build(state)
    res = tcb.send(b"hello", NOW)
    assert res.ok
    assert res.segments == [out(ISS + 1, rcv_nxt(state), ACK | PSH, payload=b"hello")]
    assert (tcb.snd_una, tcb.snd_nxt) == (ISS + 1, ISS + 6)
    assert tcb.deadline == NOW + 1.0  # RFC 6298 (5.1)


@pytest.mark.parametrize("state", [State.ESTABLISHED, State.CLOSE_WAIT])
def test_send_without_room_is_insufficient_resources(state):
    """3.10.2 ESTABLISHED, CLOSE-WAIT: "If there is insufficient space to remember this buffer, simply
    return 'error: insufficient resources'"; the refused SEND queues nothing."""
    tcb = (
        established(TcbConfig(snd_buf=10))
        if state is State.ESTABLISHED
        else close_wait(TcbConfig(snd_buf=10))
    )
    res = tcb.send(bytes(11), NOW)
    assert res.error is TcpError.INSUFFICIENT_RESOURCES
    assert res.segments == []
    assert tcb.snd_nxt == ISS + 1
    assert tcb.send(bytes(10), NOW).ok


def test_send_is_cut_to_mss_and_windows():
    """3.10.2 "Segmentize the buffer": pieces of at most Eff.snd.MSS (MUST-16), as much as the send and
    congestion windows allow (initial window 3 * 1460 here, RFC 5681 3.1); PSH only when the queue empties."""
    tcb = established()
    data = bytes(range(256)) * 40  # 10240 octets
    res = tcb.send(data, NOW)
    assert res.segments == [
        out(ISS + 1, IRS + 1, ACK, payload=data[0:1460]),
        out(ISS + 1461, IRS + 1, ACK, payload=data[1460:2920]),
        out(ISS + 2921, IRS + 1, ACK, payload=data[2920:4380]),
    ]
    assert tcb.status(NOW).send_queued == 10240 - 4380


def test_send_urgent_sets_snd_up_and_urgent_pointer():
    """3.10.2 ESTABLISHED: "If the URGENT flag is set, then SND.UP <- SND.NXT and set the urgent pointer
    in the outgoing segments"; the pointer names the octet after the urgent data (MUST-62)."""
    tcb = established()
    res = tcb.send(b"ab", NOW, push=True, urgent=True)
    assert res.segments == [out(ISS + 1, IRS + 1, ACK | PSH | URG, urgent=2, payload=b"ab")]
    assert tcb.snd_up == ISS + 3


@pytest.mark.parametrize(
    "state", [State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING, State.LAST_ACK, State.TIME_WAIT]
)
def test_send_after_close_is_connection_closing(state):
    """3.10.2 FIN-WAIT-1 ... TIME-WAIT: "Return 'error: connection closing' and do not service request"."""
    tcb = build(state)
    res = tcb.send(b"late", NOW)
    assert res.error is TcpError.CLOSING
    assert res.segments == []
    assert tcb.snd_nxt == snd_nxt(state)


def test_send_after_close_in_syn_received_is_connection_closing():
    """3.10.4 SYN-RECEIVED queues the CLOSE; 3.10.2: no SEND may follow a CLOSE."""
    tcb = syn_received()
    tcb.send(b"a", NOW)
    assert tcb.close(NOW).ok
    assert tcb.send(b"b", NOW).error is TcpError.CLOSING


# ============================================================================ 3.10.3 RECEIVE


def test_receive_in_closed_is_not_exist():
    """3.10.3 CLOSED: "return 'error: connection does not exist'"."""
    assert closed().receive(100, NOW).error is TcpError.NOT_EXIST


@pytest.mark.parametrize(
    "state",
    [State.LISTEN, State.SYN_SENT, State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2],
)
def test_receive_with_nothing_yet_is_queued(state):
    """3.10.3 LISTEN, SYN-SENT, SYN-RECEIVED: "Queue for processing after entering ESTABLISHED";
    ESTABLISHED, FIN-WAIT-1/2: "If insufficient incoming segments are queued to satisfy the request,
    queue the request": no error, no data yet."""
    tcb = build(state)
    res = tcb.receive(100, NOW)
    assert (res.error, res.data, res.segments) == (None, b"", [])
    assert tcb.state is state


def test_receive_returns_data_and_push_in_pieces():
    """3.10.3 ESTABLISHED: "Reassemble queued incoming segments into receive buffer and return to user.
    Mark 'push seen' (PUSH) if this is the case"."""
    tcb = established()
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK | PSH, payload=b"abcdef"))
    r = tcb.receive(4, NOW)
    assert (r.data, r.push) == (b"abcd", False)
    r = tcb.receive(4, NOW)
    assert (r.data, r.push) == (b"ef", True)
    assert tcb.receive(4, NOW).data == b""


def test_receive_that_opens_the_window_sends_a_window_update():
    """3.10.3 / 3.8.6.2.2: after the user reads, the window update goes out once it has opened by
    enough; the update is <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> with the new window."""
    tcb = established(TcbConfig(rcv_buf=100))
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, payload=bytes(100)))
    assert tcb.rcv_wnd == 0
    res = tcb.receive(10, NOW)
    assert res.segments == []  # 10 octets: too small to be worth an update (receiver SWS avoidance)
    res = tcb.receive(90, NOW)
    assert res.segments == [out(ISS + 1, IRS + 101, ACK, window=100)]
    assert tcb.rcv_wnd == 100


def test_receive_in_close_wait_returns_data_on_hand_then_closing():
    """3.10.3 CLOSE-WAIT: "RECEIVEs must be satisfied by data already on hand ... If no text is awaiting
    delivery, the RECEIVE will get an 'error: connection closing' response"."""
    tcb = established()
    arrive(tcb, seg(IRS + 1, ISS + 1, FIN | ACK, payload=b"tail"))
    assert tcb.state is State.CLOSE_WAIT
    assert tcb.receive(100, NOW).data == b"tail"
    assert tcb.receive(100, NOW).error is TcpError.CLOSING


@pytest.mark.parametrize("state", [State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK, State.TIME_WAIT])
def test_receive_after_peer_fin_without_data_is_closing(state):
    """3.10.3 CLOSE-WAIT (nothing on hand), CLOSING, LAST-ACK, TIME-WAIT: "error: connection closing"."""
    res = build(state).receive(100, NOW)
    assert res.error is TcpError.CLOSING
    assert res.data == b""


def test_receive_in_time_wait_still_returns_unread_data():
    """3.10.3 TIME-WAIT says "connection closing", but 3.10.7.4 seventh had the TCP take responsibility
    for delivering this text and acknowledge it; the TCB hands over what it acknowledged first (as the
    CLOSE-WAIT paragraph does), then answers "connection closing"."""
    tcb = fin_wait_2()
    arrive(tcb, seg(IRS + 1, ISS + 2, FIN | ACK, payload=b"last words"))
    assert tcb.state is State.TIME_WAIT
    assert tcb.receive(100, NOW).data == b"last words"
    assert tcb.receive(100, NOW).error is TcpError.CLOSING


# ============================================================================ 3.10.4 CLOSE


def test_close_in_closed_is_not_exist():
    """3.10.4 CLOSED: "return 'error: connection does not exist'"."""
    assert closed().close(NOW).error is TcpError.NOT_EXIST


@pytest.mark.parametrize("state", [State.LISTEN, State.SYN_SENT])
def test_close_in_listen_or_syn_sent_deletes(state):
    """3.10.4 LISTEN: "Delete TCB, enter CLOSED state, and return"; SYN-SENT: "Delete the TCB"."""
    tcb = build(state)
    res = tcb.close(NOW)
    assert res.ok
    assert res.segments == []
    assert kinds(res) == [EventKind.CLOSED]
    assert tcb.state is State.CLOSED
    assert tcb.deadline is None


def test_close_in_syn_received_sends_fin():
    """3.10.4 SYN-RECEIVED: "If no SENDs have been issued and there is no pending data to send, then
    form a FIN segment and send it, and enter FIN-WAIT-1 state"."""
    tcb = syn_received()
    res = tcb.close(NOW)
    assert res.ok
    assert res.segments == [out(ISS + 1, IRS + 1, FIN | ACK)]
    assert tcb.state is State.FIN_WAIT_1
    assert tcb.snd_nxt == ISS + 2


def test_close_in_syn_received_with_data_waits_for_established():
    """3.10.4 SYN-RECEIVED: "otherwise, queue for processing after entering ESTABLISHED state"; then
    3.10.4 ESTABLISHED: the FIN follows the data, state FIN-WAIT-1."""
    tcb = syn_received()
    tcb.send(b"hello", NOW)
    res = tcb.close(NOW)
    assert res.ok and res.segments == []
    assert tcb.state is State.SYN_RECEIVED
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK), now=0.6)
    assert kinds(res) == [EventKind.ESTABLISHED]
    assert tcb.state is State.FIN_WAIT_1
    assert res.segments == [out(ISS + 1, IRS + 1, ACK | PSH | FIN, payload=b"hello")]


def test_close_in_established_sends_fin():
    """3.10.4 ESTABLISHED: "form a FIN segment and send it ... enter FIN-WAIT-1 state"."""
    tcb = established()
    res = tcb.close(NOW)
    assert res.ok
    assert res.segments == [out(ISS + 1, IRS + 1, FIN | ACK)]
    assert tcb.state is State.FIN_WAIT_1
    assert tcb.deadline == NOW + 1.0


def test_close_in_established_waits_for_data_to_be_segmentized():
    """3.10.4 ESTABLISHED: "Queue this until all preceding SENDs have been segmentized, then form a FIN
    segment and send it. In any case, enter FIN-WAIT-1 state"."""
    tcb = established(peer_wnd=0)
    assert tcb.send(b"abc", NOW).segments == []
    res = tcb.close(NOW)
    assert res.ok and res.segments == []
    assert tcb.state is State.FIN_WAIT_1
    res = arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=100))
    assert res.segments == [out(ISS + 1, IRS + 1, ACK | PSH | FIN, payload=b"abc")]


@pytest.mark.parametrize("state", [State.FIN_WAIT_1, State.FIN_WAIT_2])
def test_close_again_in_fin_wait_is_closing_and_sends_no_second_fin(state):
    """3.10.4 FIN-WAIT-1/2: "Strictly speaking, this is an error and should receive an 'error: connection
    closing' response ... as long as a second FIN is not emitted"."""
    tcb = build(state)
    res = tcb.close(NOW)
    assert res.error is TcpError.CLOSING
    assert res.segments == []
    assert (tcb.state, tcb.snd_nxt) == (state, ISS + 2)


def test_close_in_close_wait_sends_fin_and_enters_last_ack():
    """3.10.4 CLOSE-WAIT: "send a FIN segment, enter LAST-ACK state"."""
    tcb = close_wait()
    res = tcb.close(NOW)
    assert res.ok
    assert res.segments == [out(ISS + 1, IRS + 2, FIN | ACK)]
    assert tcb.state is State.LAST_ACK


def test_close_in_close_wait_sends_queued_data_first():
    """3.10.4 CLOSE-WAIT: "Queue this request until all preceding SENDs have been segmentized"."""
    tcb = close_wait()
    arrive(tcb, seg(IRS + 2, ISS + 1, ACK, window=0))  # the peer's window closes
    assert tcb.send(b"reply", NOW).segments == []
    assert tcb.close(NOW).segments == []
    assert tcb.state is State.LAST_ACK
    res = arrive(tcb, seg(IRS + 2, ISS + 1, ACK, window=100))
    assert res.segments == [out(ISS + 1, IRS + 2, ACK | PSH | FIN, payload=b"reply")]


@pytest.mark.parametrize("state", [State.CLOSING, State.LAST_ACK, State.TIME_WAIT])
def test_close_late_is_closing(state):
    """3.10.4 CLOSING, LAST-ACK, TIME-WAIT: "Respond with 'error: connection closing'"."""
    tcb = build(state)
    res = tcb.close(NOW)
    assert res.error is TcpError.CLOSING
    assert res.segments == []
    assert tcb.state is state


# ============================================================================ 3.10.5 ABORT


def test_abort_in_closed_is_not_exist():
    """3.10.5 CLOSED: "return 'error: connection does not exist'"."""
    assert closed().abort(NOW).error is TcpError.NOT_EXIST


ABORT_SNDNXT = {
    State.SYN_RECEIVED: ISS + 1,
    State.ESTABLISHED: ISS + 1,
    State.FIN_WAIT_1: ISS + 2,
    State.FIN_WAIT_2: ISS + 2,
    State.CLOSE_WAIT: ISS + 1,
}


@pytest.mark.parametrize("state", NOT_CLOSED)
def test_abort_sends_rst_only_where_the_rfc_says(state):
    """3.10.5: SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1/2, CLOSE-WAIT: "Send a reset segment
    <SEQ=SND.NXT><CTL=RST>"; LISTEN, SYN-SENT, CLOSING, LAST-ACK, TIME-WAIT send nothing. In every
    state: delete the TCB, enter CLOSED."""
    tcb = build(state)
    res = tcb.abort(NOW)
    assert res.ok
    expected = [rst(ABORT_SNDNXT[state])] if state in ABORT_SNDNXT else []
    assert res.segments == expected
    assert kinds(res) == [EventKind.CLOSED]
    assert tcb.state is State.CLOSED
    assert tcb.deadline is None


def test_abort_flushes_every_queue():
    """3.10.5 ESTABLISHED: "all segments queued for transmission (except for the RST formed above) or
    retransmission should be flushed"."""
    tcb = established(peer_wnd=10)
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=10, payload=b"unread"))
    arrive(tcb, seg(IRS + 20, ISS + 1, ACK, window=10, payload=b"held"))
    tcb.send(bytes(100), NOW)
    res = tcb.abort(NOW)
    assert res.segments == [rst(ISS + 11)]
    st = tcb.status(NOW)
    assert (st.send_queued, st.recv_queued, st.ooo_queued) == (0, 0, 0)


# ======================================================================= FLUSH (MAY-14) and 3.10.6 STATUS


def test_flush_drops_data_right_of_the_send_window():
    """MAY-14 FLUSH: the queued data that the send window does not yet cover is dropped; what was sent
    stays for retransmission. Result.count is how much was dropped."""
    tcb = established(peer_wnd=100)
    res = tcb.send(bytes(range(250)) + bytes(50), NOW)
    assert res.segments == [out(ISS + 1, IRS + 1, ACK, payload=bytes(range(100)))]
    res = tcb.flush(NOW)
    assert (res.error, res.count, res.segments) == (None, 200, [])
    st = tcb.status(NOW)
    assert (st.send_queued, st.send_unacked) == (0, 100)
    res = arrive(tcb, seg(IRS + 1, ISS + 101, ACK, window=1000))
    assert res.segments == []


def test_flush_keeps_what_the_window_covers():
    """MAY-14 FLUSH: data inside the send window is not "right of the send window"."""
    tcb = established(peer_wnd=0)
    tcb.send(b"abc", NOW)
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=0))
    assert tcb.flush(NOW).count == 3
    tcb = established()
    tcb.send(b"abc", NOW)
    assert tcb.flush(NOW).count == 0


def test_flush_in_closed_is_not_exist():
    """MAY-14 FLUSH on no connection: "connection does not exist" as every other call (3.10.2)."""
    assert closed().flush(NOW).error is TcpError.NOT_EXIST


def test_status_of_established_connection():
    """3.10.6 ESTABLISHED: "Return 'state = ESTABLISHED' and the TCB pointer": the 3.3.1 variables."""
    tcb = established()
    tcb.send(b"0123456789", NOW)
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK | PSH, payload=b"abc"))
    st = tcb.status(0.75)
    assert st.state is State.ESTABLISHED
    assert (st.local_addr, st.local_port, st.remote_addr, st.remote_port) == (LOCAL, LPORT, REMOTE, RPORT)
    assert (st.iss, st.snd_una, st.snd_nxt, st.snd_max) == (ISS, ISS + 1, ISS + 11, ISS + 11)
    assert (st.snd_wnd, st.snd_wl1, st.snd_wl2, st.max_snd_wnd) == (PEER_WND, IRS + 1, ISS + 1, PEER_WND)
    assert (st.irs, st.rcv_nxt, st.rcv_wnd, st.rcv_up) == (IRS, IRS + 4, OUR_WND - 3, IRS + 1)
    assert (st.snd_mss, st.rcv_mss) == (1460, 1460)
    assert (st.send_queued, st.send_unacked, st.recv_queued, st.ooo_queued) == (0, 10, 3, 0)
    assert st.timers == {"retransmission": pytest.approx(0.75)}
    assert st.passive is False


@pytest.mark.parametrize("state", NOT_CLOSED)
def test_status_names_the_state(state):
    """3.10.6: "Return 'state = <STATE>'" in every state but CLOSED, spelled as the RFC spells it."""
    st = build(state).status(NOW)
    assert st.state is state
    assert str(st.state) == {s: s.value for s in State}[state]


@pytest.mark.parametrize("state", ALL_STATES)
def test_status_counts_nothing_queued_when_nothing_is_queued(state):
    """3.10.6 STATUS: the TCB's queues as they are; no state built here has unsent data, and the
    unacknowledged count is what lies between SND.UNA and SND.NXT (SYN and FIN included)."""
    st = build(state).status(NOW)
    assert st.send_queued == 0
    assert st.recv_queued == 0
    assert st.send_unacked == (st.snd_nxt - st.snd_una if state is not State.LISTEN else 0)


def test_status_of_time_wait_shows_only_its_timer():
    """3.10.6 TIME-WAIT, with 3.10.7.4 eighth: only the time-wait timer runs."""
    st = time_wait().status(10.0)
    assert st.timers == {"time-wait": 50.0}


# ============================================================================ 3.10.8 timeouts


def run_timer(tcb: Tcb) -> tuple[float, object]:
    """Fire the TCB's timer at its deadline; return (time, result)."""
    t = tcb.deadline
    assert t is not None
    return t, tcb.on_timer(t)


def test_timer_before_deadline_does_nothing():
    """3.10.8: nothing expires early."""
    tcb = syn_sent()
    res = tcb.on_timer(0.999)
    assert (res.segments, res.events) == ([], [])
    assert tcb.deadline == 1.0


def test_rto_retransmits_syn_with_backoff():
    """3.10.8 RETRANSMISSION TIMEOUT: "send the segment at the front of the retransmission queue again,
    reinitialize the retransmission timer"; RFC 6298 (5.5) doubles RTO each time."""
    tcb = syn_sent()
    times = []
    for _ in range(4):
        t, res = run_timer(tcb)
        assert res.segments == [syn_out()]
        times.append(t)
    assert times == [1.0, 3.0, 7.0, 15.0]
    assert tcb.deadline == 31.0
    assert tcb.state is State.SYN_SENT
    assert tcb.retransmissions == 4


def test_rto_retransmits_syn_ack_with_backoff():
    """3.10.8 RETRANSMISSION TIMEOUT in SYN-RECEIVED: <SEQ=ISS><ACK=RCV.NXT><CTL=SYN,ACK> again."""
    tcb = syn_received()
    t, res = run_timer(tcb)
    assert (t, res.segments) == (1.0, [syn_ack_out()])
    t, res = run_timer(tcb)
    assert (t, res.segments) == (3.0, [syn_ack_out()])
    assert tcb.state is State.SYN_RECEIVED


def test_rto_retransmits_data_with_backoff():
    """3.10.8 RETRANSMISSION TIMEOUT with RFC 6298 (5.4)-(5.6): the earliest unacknowledged segment again,
    RTO doubled, timer restarted."""
    tcb = established()
    tcb.send(b"hello", T0)
    data = out(ISS + 1, IRS + 1, ACK | PSH, payload=b"hello")
    for t_expected in (1.0, 3.0, 7.0):
        t, res = run_timer(tcb)
        assert (t, res.segments) == (t_expected, [data])
    assert tcb.deadline == 15.0
    assert tcb.retransmissions == 3


def test_rto_after_partial_ack_retransmits_from_snd_una():
    """RFC 6298 (5.4) with 3.10.7.4 fifth: what was acknowledged left the retransmission queue; the
    retransmission starts at the new SND.UNA."""
    tcb = established()
    data = bytes(range(100))
    tcb.send(data, T0)
    arrive(tcb, seg(IRS + 1, ISS + 41, ACK))
    t, res = run_timer(tcb)
    assert t == NOW + 1.0
    assert res.segments == [out(ISS + 41, IRS + 1, ACK | PSH, payload=data[40:])]


def test_rto_retransmits_only_the_first_segment():
    """RFC 6298 (5.4): "Retransmit the earliest segment that has not been acknowledged"; after a timeout
    the congestion window is one segment (RFC 5681 section 3.1, MUST-19)."""
    tcb = established()
    data = bytes(3000)
    tcb.send(data, T0)
    _, res = run_timer(tcb)
    assert res.segments == [out(ISS + 1, IRS + 1, ACK, payload=data[:1460])]


def test_rto_backoff_is_bounded_by_rto_max():
    """RFC 6298 (2.5): "A maximum value MAY be placed on RTO provided it is at least 60 seconds"; with it
    configured to 4 s the intervals stop doubling at 4."""
    tcb = established(TcbConfig(rto_max=4.0))
    tcb.send(b"x", T0)
    times = [run_timer(tcb)[0] for _ in range(5)]
    assert times == [1.0, 3.0, 7.0, 11.0, 15.0]


@pytest.mark.parametrize(
    ("make", "fin"),
    [
        (fin_wait_1, out(ISS + 1, IRS + 1, FIN | ACK)),
        (last_ack, out(ISS + 1, IRS + 2, FIN | ACK)),
        (lambda: build(State.CLOSING), out(ISS + 1, IRS + 2, FIN | ACK)),
    ],
    ids=["FIN-WAIT-1", "LAST-ACK", "CLOSING"],
)
def test_rto_retransmits_fin(make, fin):
    """3.10.8 RETRANSMISSION TIMEOUT: our FIN is on the retransmission queue like any segment."""
    tcb = make()
    t, res = run_timer(tcb)
    assert (t, res.segments) == (1.0, [fin])
    t, res = run_timer(tcb)
    assert (t, res.segments) == (3.0, [fin])


def test_karn_no_rtt_sample_from_retransmitted_segment():
    """MUST-18 (Karn): the ACK of a retransmitted segment gives no RTT sample."""
    tcb = established(at=0.2)  # the handshake sampled 0.2 s
    assert (tcb.rto.srtt, tcb.rto.rttvar) == (pytest.approx(0.2), pytest.approx(0.1))
    tcb.send(b"x", 1.0)
    t, res = run_timer(tcb)
    assert t == 2.0 and len(res.segments) == 1
    arrive(tcb, seg(IRS + 1, ISS + 2, ACK), now=2.3)
    assert (tcb.rto.srtt, tcb.rto.rttvar) == (pytest.approx(0.2), pytest.approx(0.1))


def test_rtt_sampled_from_segment_sent_once():
    """RFC 6298 (2.3): a segment not retransmitted is timed: SRTT <- 7/8 SRTT + 1/8 R."""
    tcb = established(at=0.2)
    tcb.send(b"x", 1.0)
    arrive(tcb, seg(IRS + 1, ISS + 2, ACK), now=1.6)
    assert tcb.rto.srtt == pytest.approx(0.875 * 0.2 + 0.125 * 0.6)


def test_karn_after_syn_retransmission_and_rto_of_three_seconds():
    """MUST-18 for the SYN, and RFC 6298 (5.7): after the SYN's timer expired "the RTO MUST be
    re-initialized to 3 seconds when data transmission begins"."""
    tcb = syn_sent()
    run_timer(tcb)
    arrive(tcb, seg(IRS, ISS + 1, SYN | ACK, options=TcpOptions(mss=1460)), now=1.2)
    assert tcb.state is State.ESTABLISHED
    assert tcb.rto.srtt is None
    assert tcb.rto.rto == 3.0
    tcb.send(b"x", 2.0)
    assert tcb.deadline == 5.0


def test_r1_signals_retransmitting_once():
    """3.8.3 R1 (SHLD-9, SHLD-10): after R1 = 3 retransmissions the user is told, once per episode."""
    tcb = established()
    tcb.send(b"x", T0)
    seen = []
    for _ in range(5):
        _, res = run_timer(tcb)
        seen.append(kinds(res))
    assert seen == [[], [], [EventKind.RETRANSMITTING], [], []]
    assert tcb.state is State.ESTABLISHED


def test_r2_gives_up_with_timed_out():
    """3.8.3 R2 (MUST-20, SHLD-11 at least 100 s) and 3.10.8 USER TIMEOUT: "flush all queues, signal the
    user 'error: connection aborted due to user timeout' ... delete the TCB, enter the CLOSED state"."""
    tcb = established()
    tcb.send(b"x", T0)
    while tcb.state is State.ESTABLISHED:
        t, res = run_timer(tcb)
    assert t == 100.0
    assert res.segments == []
    assert kinds(res) == [EventKind.TIMED_OUT, EventKind.CLOSED]
    assert tcb.deadline is None
    assert tcb.send(b"y", t).error is TcpError.TIMED_OUT


@pytest.mark.parametrize("r2", [5.0, 30.0, 250.0])
def test_r2_is_configurable(r2):
    """MUST-21: "An application MUST be able to set the value for R2 for a particular connection"."""
    tcb = established(TcbConfig(r2=r2))
    tcb.send(b"x", T0)
    while tcb.state is State.ESTABLISHED:
        t, res = run_timer(tcb)
    assert t == r2
    assert EventKind.TIMED_OUT in kinds(res)


@pytest.mark.parametrize("state", SYN_STATES)
def test_r2_for_syn_is_at_least_three_minutes(state):
    """MUST-22, MUST-23: the SYN (or SYN,ACK) is retransmitted for at least 3 minutes before the attempt
    is given up. An active OPEN then times out; a handshake a passive OPEN answered goes back to LISTEN
    without a word, as for a RST (3.10.7.4): the passive OPEN stays for the next peer."""
    tcb = build(state)
    sent = []
    seen = []
    while tcb.state is state:
        t, res = run_timer(tcb)
        sent += [t for s in res.segments if s.flags & SYN]
        seen += kinds(res)
    assert t == 180.0
    assert sent == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0]
    if state is State.SYN_SENT:
        assert kinds(res) == [EventKind.TIMED_OUT, EventKind.CLOSED]
    else:
        assert tcb.state is State.LISTEN and seen == []  # not even R1's "retransmitting"


def test_a_passive_handshake_may_be_bounded_sooner():
    """syn_received_timeout (below R2 for a SYN only by the user's choice, MUST-23) ends a handshake the
    passive OPEN answered: back to LISTEN."""
    tcb = syn_received(TcbConfig(syn_received_timeout=10.0))
    while tcb.state is State.SYN_RECEIVED:
        t, _ = run_timer(tcb)
    assert (t, tcb.state) == (10.0, State.LISTEN)


def test_r2_for_syn_is_configurable():
    """MUST-21 for the SYN: TcbConfig.r2_syn."""
    tcb = syn_sent(TcbConfig(r2_syn=10.0))
    while tcb.state is State.SYN_SENT:
        t, res = run_timer(tcb)
    assert t == 10.0
    assert EventKind.TIMED_OUT in kinds(res)


def test_ack_starts_a_new_r2_episode():
    """3.8.3: R2 counts retransmissions of the same segment; an ACK of new data starts afresh."""
    tcb = established(TcbConfig(r2=10.0))
    tcb.send(b"ab", T0)
    run_timer(tcb)  # 1.0
    arrive(tcb, seg(IRS + 1, ISS + 2, ACK), now=1.5)
    while tcb.state is State.ESTABLISHED:
        t, _ = run_timer(tcb)
    assert t == 11.5


@pytest.mark.parametrize("msl", [30.0, 120.0])
def test_time_wait_lasts_exactly_2msl(msl):
    """MUST-13, 3.10.8 TIME-WAIT TIMEOUT: "If the time-wait timeout expires on a connection, delete the
    TCB, enter the CLOSED state"; TIME-WAIT lasts 2 MSL."""
    tcb = time_wait(TcbConfig(msl=msl))
    assert tcb.deadline == 2 * msl
    res = tcb.on_timer(2 * msl - 0.001)
    assert (res.segments, res.events, tcb.state) == ([], [], State.TIME_WAIT)
    res = tcb.on_timer(2 * msl)
    assert res.segments == []
    assert kinds(res) == [EventKind.TIME_WAIT_OVER, EventKind.CLOSED]
    assert tcb.state is State.CLOSED
    assert tcb.deadline is None


def test_zero_send_window_is_probed():
    """3.8.6.1 (MUST-36): "The sending TCP peer must regularly transmit at least one octet of new data (if
    available) ... even if the send window is zero"; the probe goes out on a timer."""
    tcb = established(peer_wnd=0)
    assert tcb.send(b"hello", NOW).segments == []
    assert tcb.deadline is not None
    _, res = run_timer(tcb)
    assert len(res.segments) == 1
    probe = res.segments[0]
    assert probe.seq == ISS + 1 and probe.payload and b"hello".startswith(probe.payload)


def test_no_timer_runs_after_time_wait_is_over():
    """3.10.8 TIME-WAIT TIMEOUT deletes the TCB: nothing is left to fire."""
    tcb = time_wait()
    tcb.on_timer(60.0)
    assert tcb.deadline is None
    res = tcb.on_timer(1000.0)
    assert (res.segments, res.events, tcb.state) == ([], [], State.CLOSED)


def test_window_shrunk_to_zero_is_probed():
    """3.8.6 (MUST-35): "If the window shrinks to zero, the TCP implementation MUST probe it in the
    standard way"; 3.8.6.1: "or retransmit to the receiving TCP peer even if the send window is zero"."""
    tcb = established()
    data = bytes(range(100))
    tcb.send(data, T0)
    assert arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=0)).segments == []
    _, res = run_timer(tcb)
    assert len(res.segments) == 1
    probe = res.segments[0]
    assert probe.seq == ISS + 1 and probe.payload and data.startswith(probe.payload)


def test_zero_window_connection_stays_open_while_probes_are_answered():
    """3.8.6.1 (MUST-37): "As long as the receiving TCP peer continues to send acknowledgments in
    response to the probe segments, the sending TCP peer MUST allow the connection to stay open"; SHLD-17."""
    tcb = established()
    tcb.send(bytes(100), T0)
    arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=0))
    probes = 0
    while tcb.deadline is not None and tcb.deadline < 400.0:
        t, res = run_timer(tcb)
        for _ in res.segments:
            probes += 1
            arrive(tcb, seg(IRS + 1, ISS + 1, ACK, window=0), now=t + 0.01)
    assert tcb.state is State.ESTABLISHED
    assert probes >= 5


# ============================================================================ sequence number wrap (3.4)

WRAP = 0xFFFF_FFF0


def test_handshake_near_the_wrap():
    """3.4 / 3.10: "all arithmetic on sequence numbers ... is modulo 2^32": ISS and IRS of 0xFFFFFFF0."""
    tcb = established(iss=WRAP, irs=WRAP)
    assert (tcb.snd_una, tcb.snd_nxt, tcb.rcv_nxt) == (WRAP + 1, WRAP + 1, WRAP + 1)


def test_text_across_the_wrap_is_accepted_and_acked():
    """3.10.7.4 seventh across the wrap: 32 octets from 0xFFFFFFF1 end at 0x11."""
    tcb = established(iss=WRAP, irs=WRAP)
    data = bytes(range(32))
    res = arrive(tcb, seg(WRAP + 1, WRAP + 1, ACK | PSH, payload=data))
    assert res.segments == [out(WRAP + 1, 0x11, ACK, window=OUR_WND - 32)]
    assert tcb.rcv_nxt == 0x11
    assert tcb.receive(100, NOW).data == data


def test_out_of_order_text_across_the_wrap():
    """3.10.7.4 first (SHLD-31) across the wrap: the later half (past 0) is held, then joined."""
    tcb = established(iss=WRAP, irs=WRAP)
    res = arrive(tcb, seg(0x1, WRAP + 1, ACK, payload=b"B" * 16))
    assert res.segments == [out(WRAP + 1, WRAP + 1, ACK)]
    res = arrive(tcb, seg(WRAP + 1, WRAP + 1, ACK, payload=b"A" * 16))
    assert res.segments == [out(WRAP + 1, 0x11, ACK, window=OUR_WND - 32)]
    assert tcb.receive(100, NOW).data == b"A" * 16 + b"B" * 16


def test_old_segment_across_the_wrap_is_unacceptable():
    """3.10.7.4 first across the wrap: text that ended before RCV.NXT = 0x11 is old."""
    tcb = established(iss=WRAP, irs=WRAP)
    arrive(tcb, seg(WRAP + 1, WRAP + 1, ACK, payload=bytes(32)))
    res = arrive(tcb, seg(WRAP + 1, WRAP + 1, ACK, payload=bytes(16)))
    assert res.segments == [out(WRAP + 1, 0x11, ACK, window=OUR_WND - 32)]
    assert tcb.readable == 32


def test_data_sent_across_the_wrap_is_acknowledged():
    """3.10.7.4 fifth across the wrap: SND.UNA < SEG.ACK =< SND.NXT with SEG.ACK = 0x11."""
    tcb = established(iss=WRAP, irs=WRAP)
    data = bytes(range(32))
    res = tcb.send(data, NOW)
    assert res.segments == [out(WRAP + 1, WRAP + 1, ACK | PSH, payload=data)]
    assert tcb.snd_nxt == 0x11
    res = arrive(tcb, seg(WRAP + 1, 0x11, ACK))
    assert res.segments == []
    assert tcb.snd_una == 0x11
    assert tcb.status(NOW).send_unacked == 0
    assert tcb.deadline is None


def test_ack_beyond_snd_nxt_across_the_wrap_is_rejected():
    """3.10.7.4 fifth across the wrap: SEG.ACK = 0x12 > SND.NXT = 0x11."""
    tcb = established(iss=WRAP, irs=WRAP)
    tcb.send(bytes(32), NOW)
    res = arrive(tcb, seg(WRAP + 1, 0x12, ACK))
    assert res.segments == [out(0x11, WRAP + 1, ACK)]
    assert tcb.snd_una == WRAP + 1


@pytest.mark.parametrize(("ack", "ok"), [(0, True), (0xFFFF_FFFF, False), (1, False)])
def test_syn_sent_ack_check_with_iss_at_2_32_minus_1(ack, ok):
    """3.10.7.3 first with ISS = 0xFFFFFFFF: SND.NXT = 0; SEG.ACK = 0 is acceptable, ISS and 1 are not."""
    tcb = syn_sent(iss=0xFFFF_FFFF)
    res = arrive(tcb, seg(IRS, ack, SYN | ACK, options=TcpOptions(mss=1460)))
    if ok:
        assert tcb.state is State.ESTABLISHED
        assert res.segments == [out(0, IRS + 1, ACK)]
    else:
        assert tcb.state is State.SYN_SENT
        assert res.segments == [rst(ack)]


def test_fin_at_2_32_minus_1():
    """3.10.7.4 eighth across the wrap: "advance RCV.NXT over the FIN" from 0xFFFFFFFF to 0."""
    tcb = established(irs=0xFFFF_FFFE)
    assert tcb.rcv_nxt == 0xFFFF_FFFF
    res = arrive(tcb, seg(0xFFFF_FFFF, ISS + 1, FIN | ACK))
    assert res.segments == [out(ISS + 1, 0, ACK)]
    assert (tcb.state, tcb.rcv_nxt) == (State.CLOSE_WAIT, 0)


# ============================================================================ MSS (3.7.1)


@pytest.mark.parametrize(("mtu", "mss"), [(1500, 1460), (576, 536), (1280, 1240), (9000, 8960)])
def test_mss_option_on_our_syn_is_mtu_minus_40(mtu, mss):
    """MUST-67 (3.7.1): "the MSS value to be sent in an MSS option MUST be less than or equal to MMS_R -
    20"; MMS_R = MTU - 20, so MTU - 40; MUST-14: sent on the SYN."""
    cfg = TcbConfig(mtu=mtu)
    tcb = closed(cfg)
    assert tcb.open(T0).segments == [syn_out(mss=mss)]
    tcb = listen(cfg)
    res = arrive(tcb, TcpSegment(RPORT, LPORT, IRS, 0, SYN, PEER_WND, options=TcpOptions(mss=1460)))
    assert res.segments == [syn_ack_out(mss=mss)]


def test_no_mss_option_on_non_syn_segments():
    """MUST-65: "TCP implementations MUST NOT send the MSS option in non-SYN segments"; we send options
    only on the SYN and SYN,ACK."""
    sent: list[TcpSegment] = []
    tcb = established()
    sent += tcb.send(b"abc", NOW).segments
    sent += arrive(tcb, seg(IRS + 1, ISS + 4, ACK | PSH, payload=b"xyz")).segments
    sent += arrive(tcb, seg(IRS + 10, ISS + 4, ACK, payload=b"ooo")).segments
    sent += arrive(tcb, seg(IRS + 1, ISS + 4, SYN)).segments
    sent += tcb.close(NOW).segments
    sent += tcb.on_timer(tcb.deadline).segments
    sent += arrive(tcb, seg(IRS + 4, ISS + 5, FIN | ACK)).segments
    sent += established().abort(NOW).segments
    assert len(sent) >= 7
    assert all(s.options == NO_OPTIONS for s in sent if not s.flags & SYN)


@pytest.mark.parametrize(
    ("mtu", "peer_mss", "sizes"),
    [
        (1500, 1000, [1000, 1000, 500]),
        (1500, 9000, [1460, 1040]),
        (1500, None, [536, 536, 536, 536, 356]),  # 536 default; the initial window is 2144 octets
        (576, 1460, [536, 536, 536, 536, 356]),
        (1500, 1460, [1460, 1040]),
    ],
)
def test_effective_send_mss_bounds_segment_sizes(mtu, peer_mss, sizes):
    """MUST-16 (3.7.1): Eff.snd.MSS = min(SendMSS+20, MMS_S) - TCPhdrsize - IPoptionsize; the segments
    carry at most that much."""
    tcb = established(TcbConfig(mtu=mtu), peer_mss=peer_mss, peer_wnd=60000)
    res = tcb.send(bytes(2500), NOW)
    got = [len(s.payload) for s in res.segments]
    assert got == sizes[: len(got)]
    assert max(got) == min(peer_mss or 536, mtu - 40)


# ============================================================================ bad input


@pytest.mark.parametrize("state", ALL_STATES)
def test_malformed_options_are_counted_and_survived(state):
    """MUST-7: "be prepared to handle an illegal option length"; DESIGN: bad packets are counted and
    never raise. The options parser marks what it could not read as malformed; the TCB counts it."""
    tcb = build(state)
    s = seg(
        rcv_nxt(state) if state in SYNCHRONIZED else IRS,
        snd_una(state) if state in SYNCHRONIZED else ISS + 1,
        ACK,
        options=TcpOptions(malformed=True),
    )
    arrive(tcb, s)
    assert tcb.bad_segments == 1
    assert tcb.status(NOW).bad_segments == 1
    assert isinstance(tcb.state, State)


def test_malformed_options_on_syn_in_listen_still_answered():
    """MUST-7 with 3.10.7.2: a SYN whose option list ends in a bad length is still a SYN; the MSS read
    before the bad option is used."""
    tcb = listen()
    res = arrive(tcb, seg(IRS, 0, SYN, options=TcpOptions(mss=1000, malformed=True)))
    assert res.segments == [syn_ack_out()]
    assert tcb.bad_segments == 1
    assert tcb.eff_snd_mss == 1000


U32 = st.integers(0, 0xFFFF_FFFF)


def near(base: int) -> st.SearchStrategy[int]:
    return st.integers(-70_000, 70_000).map(lambda d: sq(base + d))


segments = st.builds(
    TcpSegment,
    src_port=st.sampled_from([RPORT, 0, 65535]),
    dst_port=st.sampled_from([LPORT, 0, 65535]),
    seq=st.one_of(near(IRS), U32),
    ack=st.one_of(near(ISS), U32),
    flags=st.integers(0, 255).map(lambda f: type(ACK)(f)),
    window=st.integers(0, 0xFFFF),
    urgent=st.integers(0, 0xFFFF),
    options=st.builds(
        TcpOptions,
        mss=st.none() | st.integers(0, 0xFFFF),
        wscale=st.none() | st.integers(0, 255),
        sack_permitted=st.booleans(),
        malformed=st.booleans(),
    ),
    payload=st.binary(max_size=64),
)


@pytest.mark.parametrize("state", ALL_STATES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(st.tuples(segments, st.booleans()), min_size=1, max_size=6))
def test_arbitrary_segments_never_raise(state, batch):
    """DESIGN "Bad packets from the wire never kill the receive thread": any header values, in any
    state, followed now and then by the timer: no exception, and the TCB stays in a State."""
    tcb = build(state)
    now = NOW
    before = tcb.segments_in
    for s, fire in batch:
        res = tcb.segment_arrives(s, now, REMOTE)
        assert all(isinstance(o, TcpSegment) for o in res.segments)
        if fire and tcb.deadline is not None:
            now = max(now, tcb.deadline)
            tcb.on_timer(now)
        assert isinstance(tcb.state, State)
    assert tcb.segments_in == before + len(batch)


@pytest.mark.parametrize("flags", [RST, URG | ACK, FIN | SYN | RST | PSH | ACK | URG])
def test_odd_flag_combinations_in_established(flags):
    """3.10.7.4: the steps run in order whatever bits are set; RST is checked before SYN and FIN."""
    tcb = established()
    arrive(tcb, seg(IRS + 1, ISS + 1, flags, urgent=1, payload=b"x"))
    assert isinstance(tcb.state, State)
    if flags & RST:
        assert tcb.state is State.CLOSED
