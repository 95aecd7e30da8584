"""What the shell shows: rich renderables built from TCB snapshots. Pure functions, no I/O.

- `pool_table`: one row a connection (`status`).
- `tcb_table`: every variable of one TCB (`status ID`).
- `send_space` / `receive_space`: the sequence spaces drawn as RFC 9293 figures 3 and 4.
- `watch_view`: the live view of `watch`, built from the two above and the timers.
- `trace_line`: one segment in tcpdump's style (`trace on`).
- `exchange_line`: one segment in the notation of the RFC's own figures (`exchange ID`).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from stack.tcp import State, TcbStatus
from stack.tcp.seq import MASK, seq_diff
from stack.wire.tcp import Flags, TcpSegment

if TYPE_CHECKING:
    from stack.host import Pool
    from stack.runtime import Counters

STATE_STYLE = {
    State.ESTABLISHED: "bold green",
    State.LISTEN: "cyan",
    State.SYN_SENT: "yellow",
    State.SYN_RECEIVED: "yellow",
    State.FIN_WAIT_1: "magenta",
    State.FIN_WAIT_2: "magenta",
    State.CLOSE_WAIT: "magenta",
    State.CLOSING: "magenta",
    State.LAST_ACK: "magenta",
    State.TIME_WAIT: "blue",
    State.CLOSED: "dim",
}


def state_text(state: State) -> Text:
    return Text(str(state), style=STATE_STYLE.get(state, ""))


def rel(value: int, base: int, relative: bool) -> int:
    """A sequence number relative to `base` (ISS or IRS), as tcpdump shows them, or absolute."""
    return (value - base) & MASK if relative else value


def remote_text(s: TcbStatus) -> str:
    return f"{s.remote_addr or '*'}:{s.remote_port or '*'}"


# ---------------------------------------------------------------------- status


def pool_table(
    conns: Sequence[tuple[str, TcbStatus]], *, relative: bool = True, notes: Sequence[str] = ()
) -> Table:
    """One row a connection; `notes` (the impairment in force, say) go in the caption."""
    t = Table(title="connections", title_justify="left", caption_justify="left")
    for col in ("id", "state", "local", "remote"):
        t.add_column(col, no_wrap=True)
    for col in ("snd.una", "snd.nxt", "snd.wnd", "rcv.nxt", "rcv.wnd", "unacked", "queued", "readable"):
        t.add_column(col, justify="right", no_wrap=True)
    for cid, s in conns:
        synced = s.state not in (State.LISTEN, State.CLOSED)
        t.add_row(
            cid,
            state_text(s.state),
            f"{s.local_addr}:{s.local_port}",
            remote_text(s),
            str(rel(s.snd_una, s.iss, relative)) if synced else "-",
            str(rel(s.snd_nxt, s.iss, relative)) if synced else "-",
            str(s.snd_wnd),
            str(rel(s.rcv_nxt, s.irs, relative)) if synced else "-",
            str(s.rcv_wnd),
            str(s.send_unacked),
            str(s.send_queued),
            str(s.recv_queued),
        )
    caption = list(notes)
    if not conns:
        caption.append("no connections yet: try 'open HOST:PORT' or 'open --passive PORT'")
    if caption:
        t.caption = "\n".join(caption)
    return t


def stack_notes(c: Counters, pool: Pool, link_drops: int = 0) -> list[str]:
    """What the stack dropped or answered on its own, for `status`: one line, only what happened.
    `link_drops`: datagrams the kernel dropped on the link before the stack could read them."""
    r = c.reassembly
    parts = [
        (link_drops, "datagrams dropped by the kernel before the stack read them"),
        (c.bad_packets, "bad packets dropped"),
        (c.send_failures, "datagrams the link refused"),
        (c.not_for_us, "not for this address"),
        (pool.resets_sent, "RSTs for no connection"),
        (pool.dropped, "from a source that is not unicast"),
        (c.echo_replies, "pings answered"),
        (c.icmp_errors, "ICMP errors"),
        (c.icmp_ignored + pool.icmp_ignored, "ICMP ignored"),
        (r.reassembled, "datagrams reassembled"),
        (r.dropped, "fragments dropped"),
        (c.offloaded, "segments of up to 64 KB cut by the kernel"),
        (pool.acks_coalesced, "ACKs coalesced"),
    ]
    said = [f"{n} {what}" for n, what in parts if n]
    return ["stack: " + ", ".join(said)] if said else []


def tcb_table(cid: str, s: TcbStatus) -> Table:
    """Every TCB variable of RFC 9293 section 3.3.1, then RTO, congestion state, timers and queues."""
    t = Table(title=Text.assemble(f"{cid} ", state_text(s.state)), title_justify="left", show_header=False)
    t.add_column("variable", no_wrap=True)
    t.add_column("value", justify="right", no_wrap=True)
    t.add_column("", style="dim", no_wrap=True)
    rows: list[tuple[str, str, str]] = [
        ("local", f"{s.local_addr}:{s.local_port}", ""),
        ("remote", remote_text(s), "passive OPEN" if s.passive else ""),
        ("ISS", str(s.iss), "initial send sequence number"),
        ("SND.UNA", str(s.snd_una), f"ISS+{rel(s.snd_una, s.iss, True)}"),
        ("SND.NXT", str(s.snd_nxt), f"ISS+{rel(s.snd_nxt, s.iss, True)}"),
        ("SND.WND", str(s.snd_wnd), "the peer's window"),
        ("SND.UP", str(s.snd_up), ""),
        ("SND.WL1", str(s.snd_wl1), "SEG.SEQ of the last window update"),
        ("SND.WL2", str(s.snd_wl2), "SEG.ACK of the last window update"),
        ("IRS", str(s.irs), "initial receive sequence number"),
        ("RCV.NXT", str(s.rcv_nxt), f"IRS+{rel(s.rcv_nxt, s.irs, True)}"),
        ("RCV.WND", str(s.rcv_wnd), "our window"),
        ("RCV.UP", str(s.rcv_up), f"{s.urgent_pending} urgent octets unread" if s.urgent_pending else ""),
        ("window scale", f"{s.snd_shift} / {s.rcv_shift}", "theirs / ours (RFC 7323)"),
        ("timestamps", "on" if s.timestamps else "off", "RFC 7323"),
        ("SACK", "on" if s.sack else "off", "RFC 2018"),
        ("send MSS", str(s.snd_mss), "Eff.snd.MSS"),
        ("receive MSS", str(s.rcv_mss), "sent in our MSS option"),
        ("RTO", f"{s.rto:.3f} s", "RFC 6298"),
        ("SRTT", "-" if s.srtt is None else f"{s.srtt * 1000:.2f} ms", ""),
        ("RTTVAR", "-" if s.rttvar is None else f"{s.rttvar * 1000:.2f} ms", ""),
        ("cwnd", str(s.cwnd), s.cc),
        ("ssthresh", str(s.ssthresh), ""),
        ("recovery", "fast recovery" if s.in_recovery else "-", "RFC 6675 with SACK, else RFC 6582"),
        ("SACKed", str(s.sacked), "octets the peer SACKed above SND.UNA"),
        ("send queued", str(s.send_queued), "octets not yet sent"),
        ("send unacked", str(s.send_unacked), "sent, not yet acknowledged"),
        ("receive queued", str(s.recv_queued), "arrived, not yet read"),
        ("out of order", str(s.ooo_queued), "held for a gap to fill"),
        ("segments in / out", f"{s.segments_in} / {s.segments_out}", ""),
        ("retransmissions", str(s.retransmissions), "segments sent again"),
        ("RTO expiries", str(s.rto_expiries), "timeouts: cwnd back to one segment"),
        ("fast retransmits", str(s.fast_retransmits), "losses repaired without a timeout"),
        ("loss probes", str(s.loss_probes), "tails probed before the timer (RFC 8985)"),
        ("spurious timeouts", str(s.spurious_timeouts), "undone: the ACK was late, not lost (RFC 4015)"),
        ("bad segments", str(s.bad_segments), "dropped as malformed"),
        ("PAWS drops", str(s.paws_dropped), "old duplicates by their timestamps (RFC 7323)"),
        ("challenge ACKs", f"{s.challenge_acks} / {s.challenge_acks_suppressed}", "sent / held (RFC 5961)"),
        ("path MTU", str(s.path_mtu), "RFC 1191"),
        ("DSCP", f"{s.settings.get('dscp', '0')} / {s.dscp_in}", "sent / last received (MUST-48, MAY-9)"),
        ("half-open", f"{s.half_open} / {s.settings.get('backlog', '-')}", "SYN-RECEIVED / backlog"),
        ("SYN cookies", f"{s.syn_cookies_sent} / {s.syn_cookies_taken}", "sent / returned (RFC 4987)"),
        ("ICMP errors", f"{s.icmp_errors} / {s.icmp_ignored}", "believed / ignored (RFC 5927)"),
    ]
    for name, left in sorted(s.timers.items()):
        rows.append((f"timer {name}", f"{left:.3f} s", "left"))
    for name, value in s.settings.items():
        rows.append((name, value, "set ID NAME VALUE"))
    for row in rows:
        t.add_row(*row)
    return t


# ---------------------------------------------------------------------- sequence spaces


def _bar(parts: Sequence[tuple[int, str, str]], width: int) -> Text:
    """A bar of `width` cells, each part (size, char, style) given cells in proportion, at least one
    for a part that is not empty."""
    total = sum(max(0, n) for n, _, _ in parts)
    text = Text()
    if total <= 0:
        return Text("·" * width, style="dim")
    nonzero = [p for p in parts if p[0] > 0]
    spare = width - len(nonzero)
    cells = [1 + (spare * n) // total if n > 0 else 0 for n, _, _ in parts]
    # give the rounding leftovers to the largest part
    if nonzero:
        biggest = max(range(len(parts)), key=lambda i: parts[i][0])
        cells[biggest] += width - sum(cells)
    for (_, ch, style), n in zip(parts, cells, strict=True):
        text.append(ch * n, style=style)
    return text


def send_space(s: TcbStatus, *, relative: bool = True, width: int = 60) -> RenderableType:
    """RFC 9293 figure 3: acknowledged | sent, unacknowledged | usable window | not yet allowed."""
    unacked = max(0, seq_diff(s.snd_nxt, s.snd_una))
    usable = max(0, s.snd_wnd - unacked)
    waiting = max(0, s.send_queued - usable)
    bar = Text("send  ")
    bar.append("acked|", style="dim")
    bar.append_text(
        _bar([(unacked, "█", "yellow"), (usable, "░", "green"), (waiting, "▒", "red")], width - 8)
    )
    right = (s.snd_una + s.snd_wnd) & MASK
    nums = Text(
        f"      SND.UNA={rel(s.snd_una, s.iss, relative)}  SND.NXT={rel(s.snd_nxt, s.iss, relative)}"
        f"  SND.UNA+SND.WND={rel(right, s.iss, relative)}",
        style="dim",
    )
    legend = Text.assemble(
        "      ",
        ("█", "yellow"),
        f" sent, unacknowledged {unacked}  ",
        ("░", "green"),
        f" usable window {usable}  ",
        ("▒", "red"),
        f" queued beyond the window {waiting}",
    )
    return Group(bar, nums, legend)


def receive_space(s: TcbStatus, *, relative: bool = True, width: int = 60) -> RenderableType:
    """RFC 9293 figure 4: received and read | received, not read | window (with out-of-order data)."""
    unread = s.recv_queued
    ooo = min(s.ooo_queued, s.rcv_wnd)
    free = max(0, s.rcv_wnd - ooo)
    bar = Text("recv  ")
    bar.append(" read|", style="dim")
    bar.append_text(_bar([(unread, "█", "cyan"), (ooo, "▓", "magenta"), (free, "░", "green")], width - 8))
    right = (s.rcv_nxt + s.rcv_wnd) & MASK
    nums = Text(
        f"      RCV.NXT={rel(s.rcv_nxt, s.irs, relative)}  RCV.NXT+RCV.WND={rel(right, s.irs, relative)}",
        style="dim",
    )
    legend = Text.assemble(
        "      ",
        ("█", "cyan"),
        f" arrived, not read {unread}  ",
        ("▓", "magenta"),
        f" out of order {s.ooo_queued}  ",
        ("░", "green"),
        f" window RCV.WND {s.rcv_wnd}",
    )
    return Group(bar, nums, legend)


def timers_text(s: TcbStatus) -> Text:
    if not s.timers:
        return Text("timers: none running", style="dim")
    t = Text("timers: ")
    for name, left in sorted(s.timers.items()):
        t.append(f"{name} ", style="bold")
        t.append(f"{left:6.2f} s   ")
    return t


def watch_view(
    conns: Sequence[tuple[str, TcbStatus]], *, relative: bool = True, width: int = 100
) -> RenderableType:
    """The `watch` screen: a panel per connection with both sequence spaces and the timers."""
    bar_width = max(20, min(80, width - 12))
    panels: list[RenderableType] = []
    for cid, s in conns:
        title = Text.assemble(
            (f"{cid} ", "bold"), state_text(s.state), f"  {s.local_addr}:{s.local_port} -> {remote_text(s)}"
        )
        if s.state in (State.LISTEN, State.CLOSED):
            body: RenderableType = timers_text(s)
        else:
            extra = Text(
                f"RTO {s.rto:.3f} s  SRTT "
                + ("-" if s.srtt is None else f"{s.srtt * 1000:.2f} ms")
                + f"  cwnd {s.cwnd} ({s.cc}{', recovering' if s.in_recovery else ''})"
                + f"  SACKed {s.sacked}  retransmissions {s.retransmissions}"
                + f"  RTO expiries {s.rto_expiries}  fast retransmits {s.fast_retransmits}",
                style="dim",
            )
            body = Group(
                send_space(s, relative=relative, width=bar_width),
                receive_space(s, relative=relative, width=bar_width),
                timers_text(s),
                extra,
            )
        panels.append(Panel(body, title=title, title_align="left"))
    if not panels:
        panels.append(Text("no connections to watch"))
    footer = Text(
        f"sequence numbers {'relative to ISS/IRS' if relative else 'absolute'}   "
        "a: absolute/relative   q, Esc or Ctrl-C: back to the prompt",
        style="dim",
    )
    return Group(*panels, footer)


# ---------------------------------------------------------------------- segments


FLAG_LETTERS = (
    (Flags.SYN, "S"),
    (Flags.FIN, "F"),
    (Flags.RST, "R"),
    (Flags.PSH, "P"),
    (Flags.URG, "U"),
    (Flags.ECE, "E"),
    (Flags.CWR, "W"),
)


def tcpdump_flags(flags: int) -> str:
    """Flags as tcpdump writes them: [S], [S.], [P.], [F.], [R.] ('.' is ACK)."""
    letters = "".join(ch for bit, ch in FLAG_LETTERS if flags & bit)
    if flags & Flags.ACK:
        letters += "."
    return f"[{letters or 'none'}]"


def options_text(seg: TcpSegment) -> str:
    o = seg.options
    parts = []
    if o.mss is not None:
        parts.append(f"mss {o.mss}")
    if o.sack_permitted:
        parts.append("sackOK")
    if o.timestamps is not None:
        parts.append(f"TS val {o.timestamps[0]} ecr {o.timestamps[1]}")
    if o.wscale is not None:
        parts.append(f"wscale {o.wscale}")
    if o.sack_blocks:
        parts.append("sack " + " ".join(f"{a}:{b}" for a, b in o.sack_blocks))
    for kind, _ in o.unknown:
        parts.append(f"opt-{kind}")
    if o.malformed:
        parts.append("malformed")
    return f", options [{','.join(parts)}]" if parts else ""


def trace_line(
    elapsed: float,
    direction: str,
    src: IPv4Address,
    dst: IPv4Address,
    seg: TcpSegment,
    *,
    seq_base: int | None = None,
    ack_base: int | None = None,
) -> Text:
    """One segment as tcpdump prints it; seq and ack relative to the bases when they are known."""
    arrow = "<" if direction == "in" else ">"
    style = "cyan" if direction == "in" else "yellow"
    seq = seg.seq if seq_base is None else (seg.seq - seq_base) & MASK
    text = Text()
    text.append(f"{elapsed:10.6f} ", style="dim")
    text.append(f"{arrow} ", style=f"bold {style}")
    text.append(f"{src}.{seg.src_port} > {dst}.{seg.dst_port}: ")
    text.append(
        tcpdump_flags(seg.flags), style="bold" if seg.flags & (Flags.SYN | Flags.FIN | Flags.RST) else ""
    )
    n = len(seg.payload)
    if n or seg.flags & (Flags.SYN | Flags.FIN):
        text.append(f", seq {seq}:{(seq + seg.seg_len) & MASK}" if n else f", seq {seq}")
    elif seg.flags & Flags.RST:
        text.append(f", seq {seq}")
    if seg.flags & Flags.ACK:
        ack = seg.ack if ack_base is None else (seg.ack - ack_base) & MASK
        text.append(f", ack {ack}")
    text.append(f", win {seg.window}")
    if seg.flags & Flags.URG:
        text.append(f", urg {seg.urgent}")
    text.append(options_text(seg))
    text.append(f", length {n}")
    return text


def exchange_line(n: int, direction: str, state: State, seg: TcpSegment, length: int | None = None) -> str:
    """One step in the notation of RFC 9293 section 3.5's figures, with our state after the step:

    2.  SYN-SENT     --> <SEQ=100><CTL=SYN>                 -->
    3.  ESTABLISHED  <-- <SEQ=300><ACK=101><CTL=SYN,ACK>    <--
    """
    parts = [f"<SEQ={seg.seq}>"]
    if seg.flags & Flags.ACK:
        parts.append(f"<ACK={seg.ack}>")
    names = [name for bit, name in FIGURE_FLAGS if seg.flags & bit]
    parts.append(f"<CTL={','.join(names)}>")
    length = len(seg.payload) if length is None else length
    if length:
        parts.append(f"<DATA={length}>")
    arrow = "-->" if direction == "out" else "<--"
    return f"{n:3d}.  {state!s:<12} {arrow} {''.join(parts):<48} {arrow}"


FIGURE_FLAGS = (
    (Flags.SYN, "SYN"),
    (Flags.FIN, "FIN"),
    (Flags.RST, "RST"),
    (Flags.PSH, "PSH"),
    (Flags.URG, "URG"),
    (Flags.ACK, "ACK"),
)
