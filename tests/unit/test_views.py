"""The shell's views rendered to plain text at a fixed width, for TCBs in known states."""

from __future__ import annotations

import io
from ipaddress import IPv4Address

from rich.console import Console, RenderableType

from stack.host import Pool
from stack.runtime import Counters
from stack.tcp import State, Tcb, TcbConfig
from stack.wire.tcp import Flags, TcpOptions, TcpSegment
from tcpsh import views
from tcpsh.watch import render
from tests.core.net import handshaken

A = IPv4Address("198.18.0.1")
B = IPv4Address("198.18.0.2")
NEAR_WRAP = 0xFFFF_FF00


def text(r: RenderableType, width: int = 100) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, highlight=False, force_terminal=False).print(r)
    return buf.getvalue()


def established(iss: int = 1000, irs: int = 5000, *, unacked: bytes = b"", queued: int = 0) -> Tcb:
    """Our TCB after a handshake, with `unacked` sent and not acknowledged and `queued` octets
    waiting behind a window of 2000."""
    tcb = handshaken(iss=iss, irs=irs, window=2000, mss=1000, now=0.01)
    if unacked or queued:
        tcb.send(unacked + bytes(queued), 0.02)
    return tcb


def test_pool_table_shows_state_and_relative_numbers():
    tcb = established(unacked=b"x" * 300)
    out = text(views.pool_table([("c1", tcb.status(0.03))]), width=140)
    assert "c1" in out and "ESTABLISHED" in out
    assert "198.18.0.1:40000" in out and "198.18.0.2:80" in out
    row = next(line for line in out.splitlines() if "c1" in line)
    # SND.UNA is ISS+1 -> 1 relative; SND.NXT 301; RCV.NXT IRS+1 -> 1
    assert " 1 " in row and " 301 " in row


def test_pool_table_without_connections_says_how_to_start():
    assert "try 'open HOST:PORT'" in text(views.pool_table([]), width=120)


def test_tcb_table_lists_every_rfc_variable_and_timers():
    tcb = established(unacked=b"abc")
    out = text(views.tcb_table("c1", tcb.status(0.5)))
    for name in (
        "ISS",
        "SND.UNA",
        "SND.NXT",
        "SND.WND",
        "SND.UP",
        "SND.WL1",
        "SND.WL2",
        "IRS",
        "RCV.NXT",
        "RCV.WND",
        "RCV.UP",
        "RTO",
        "SRTT",
        "RTTVAR",
        "cwnd",
        "ssthresh",
    ):
        assert name in out, name
    assert "timer retransmission" in out
    assert "ISS+4" in out  # SND.NXT after three octets


def test_numbers_near_the_wrap_are_relative_in_the_pool_and_absolute_in_status():
    tcb = established(iss=NEAR_WRAP + 0xF0, irs=0xFFFF_FFFE, unacked=b"y" * 40)
    st = tcb.status(0.03)
    assert st.snd_nxt < st.iss  # SND.NXT has wrapped past 2**32
    pool = text(views.pool_table([("c1", st)]), width=140)
    row = next(line for line in pool.splitlines() if "c1" in line)
    assert " 41 " in row  # ISS+41 although the absolute number wrapped
    detail = text(views.tcb_table("c1", st))
    assert str(st.snd_nxt) in detail and "ISS+41" in detail
    assert "IRS+1" in detail and "RCV.NXT" in detail and str(st.rcv_nxt) == "4294967295"


def test_send_space_draws_figure_3_parts():
    tcb = established(unacked=b"z" * 1000, queued=3000)  # window 2000: 1000 in flight, 1000 usable...
    st = tcb.status(0.03)
    out = text(views.send_space(st, width=60))
    assert f"sent, unacknowledged {st.send_unacked}" in out
    assert "usable window" in out and "queued beyond the window" in out
    assert "SND.UNA=1" in out and f"SND.NXT={st.snd_nxt - st.iss}" in out
    assert "SND.UNA+SND.WND=2001" in out
    bar = out.splitlines()[0]
    assert "█" in bar and "▒" in bar


def test_send_space_absolute_numbers():
    st = established(iss=NEAR_WRAP).status(0.03)
    out = text(views.send_space(st, relative=False))
    assert f"SND.UNA={st.snd_una}" in out


def test_receive_space_draws_figure_4_parts():
    tcb = established()
    tcb.segment_arrives(
        TcpSegment(80, 40000, seq=5001, ack=1001, flags=Flags.ACK, window=2000, payload=b"q" * 500), 0.1
    )
    tcb.segment_arrives(
        TcpSegment(80, 40000, seq=5601, ack=1001, flags=Flags.ACK, window=2000, payload=b"r" * 100), 0.1
    )
    out = text(views.receive_space(tcb.status(0.2)))
    assert "arrived, not read 500" in out
    assert "out of order 100" in out
    assert "RCV.NXT=501" in out


def test_watch_view_shows_each_connection_and_degrades_to_narrow_terminals():
    a = established(unacked=b"a" * 10).status(0.03)
    listener = Tcb(A, 80, config=TcbConfig())
    listener.open(0.0, active=False)
    conns = [("c1", a), ("c2", listener.status(0.0))]
    wide = text(views.watch_view(conns, width=120), width=120)
    assert "c1 ESTABLISHED" in wide and "c2 LISTEN" in wide
    assert "timers: retransmission" in wide
    narrow = text(views.watch_view(conns, width=30), width=30)
    assert "c1" in narrow  # no crash, still readable
    plain = render(lambda: conns, relative=True, width=80, color=False)
    assert "\x1b[" not in plain


def test_trace_line_is_tcpdump_style():
    seg = TcpSegment(40000, 80, seq=1001, ack=5001, flags=Flags.PSH | Flags.ACK, window=512, payload=b"hello")
    line = views.trace_line(1.5, "out", A, B, seg, seq_base=1000, ack_base=5000).plain
    assert (
        line.strip() == "1.500000 > 198.18.0.1.40000 > 198.18.0.2.80: [P.], seq 1:6, ack 1, win 512, length 5"
    )
    syn = TcpSegment(40000, 80, seq=7, flags=Flags.SYN, window=65535, options=TcpOptions(mss=1460))
    assert (
        "[S], seq 7, win 65535, options [mss 1460], length 0" in views.trace_line(0, "out", A, B, syn).plain
    )
    rst = TcpSegment(80, 40000, seq=9, flags=Flags.RST)
    assert "< 198.18.0.2.80 > 198.18.0.1.40000: [R], seq 9" in views.trace_line(0, "in", B, A, rst).plain


def test_exchange_line_uses_the_rfc_figure_notation():
    syn = TcpSegment(40000, 80, seq=100, flags=Flags.SYN)
    assert views.exchange_line(2, "out", State.SYN_SENT, syn).startswith(
        "  2.  SYN-SENT     --> <SEQ=100><CTL=SYN>"
    )
    synack = TcpSegment(80, 40000, seq=300, ack=101, flags=Flags.SYN | Flags.ACK)
    line = views.exchange_line(3, "in", State.ESTABLISHED, synack)
    assert line.startswith("  3.  ESTABLISHED  <-- <SEQ=300><ACK=101><CTL=SYN,ACK>")
    data = TcpSegment(40000, 80, seq=101, ack=301, flags=Flags.ACK)
    assert "<CTL=ACK><DATA=5>" in views.exchange_line(4, "out", State.ESTABLISHED, data, 5)


def test_stack_notes_say_only_what_happened():
    c = Counters()
    pool = Pool(IPv4Address("198.18.0.1"), lambda *a: None, lambda *a: None, lambda *a: None)
    assert views.stack_notes(c, pool) == []
    c.bad_packets, c.echo_replies, c.reassembly.reassembled, pool.resets_sent = 3, 2, 1, 4
    assert views.stack_notes(c, pool) == [
        "stack: 3 bad packets dropped, 4 RSTs for no connection, 2 pings answered, 1 datagrams reassembled"
    ]
    c.offloaded, pool.acks_coalesced = 5, 6
    assert views.stack_notes(c, pool)[0].endswith(
        "5 segments of up to 64 KB cut by the kernel, 6 ACKs coalesced"
    )
    assert views.stack_notes(c, pool, link_drops=7)[0].startswith(
        "stack: 7 datagrams dropped by the kernel before the stack read them, 3 bad packets dropped"
    )
