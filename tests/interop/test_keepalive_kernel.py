"""Keep-alive against Linux: its answers keep an idle connection open; when they stop, the probes
run out and the user is told."""

from __future__ import annotations

import pytest

from stack.lab import Lab
from stack.runtime import Stack
from stack.tcp import Event, EventKind, State
from stack.wire.tcp import TcpSegment
from tests.interop.conftest import wait_for
from tests.interop.transfer import nft_in_kernel_ns

pytestmark = pytest.mark.root


def probes_and_answers(stack: Stack) -> tuple[list[TcpSegment], list[TcpSegment]]:
    out: list[TcpSegment] = []
    inn: list[TcpSegment] = []
    stack.tap(lambda d, s, t, seg, dg: (out if d == "out" else inn).append(seg))
    return out, inn


def test_linux_answers_probes_and_the_idle_connection_stays(lab_stack: Stack, stack_lab: Lab) -> None:
    out, inn = probes_and_answers(lab_stack)
    cid = lab_stack.open(stack_lab.kernel_addr, 7, timeout=5)
    for name, value in (("keepalive-idle", "0.3"), ("keepalive-interval", "0.3"), ("keepalive", "on")):
        lab_stack.configure(cid, name, value)
    snd_nxt = lab_stack.status(cid).snd_nxt

    def answered() -> int:
        probes = [s for s in out if s.seq == (snd_nxt - 1) & 0xFFFFFFFF and not s.payload]
        return min(len(probes), sum(1 for s in inn if s.ack == snd_nxt and not s.payload))

    wait_for(lambda: answered() >= 3, 10, "three probes answered by Linux")
    assert lab_stack.status(cid).state is State.ESTABLISHED
    lab_stack.send(cid, b"still here\n")
    assert lab_stack.receive(cid, 100, timeout=5) == b"still here\n"


def test_unanswered_probes_end_the_connection(lab_stack: Stack, stack_lab: Lab) -> None:
    events: list[tuple[str, Event]] = []
    lab_stack.subscribe(lambda cid, ev: events.append((cid, ev)))
    cid = lab_stack.open(stack_lab.kernel_addr, 7, timeout=5)
    port = lab_stack.status(cid).local_port
    remove = nft_in_kernel_ns(  # the kernel's side falls silent: everything it sends us is dropped
        stack_lab,
        f"tcpsh_mute_{port}",
        "  chain out {\n    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {stack_lab.stack_addr} tcp dport {port} drop\n  }}",
    )
    try:
        for name, value in (
            ("keepalive-idle", "0.2"),
            ("keepalive-interval", "0.2"),
            ("keepalive-probes", "3"),
            ("keepalive", "on"),
        ):
            lab_stack.configure(cid, name, value)
        assert lab_stack.wait_state(cid, State.CLOSED, timeout=10)
    finally:
        remove()
    kinds = [ev.kind for c, ev in events if c == cid]
    assert EventKind.TIMED_OUT in kinds
    timed_out = next(ev for c, ev in events if c == cid and ev.kind is EventKind.TIMED_OUT)
    assert "3 keep-alive probes unanswered" in timed_out.message
