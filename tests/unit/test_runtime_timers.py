"""The runtime's timer heap and its news, without the threads (a Stack not started, over a fake link):
a deadline moved later rides on the entry already on the heap instead of pushing (and waking the timer
thread for) one per segment, and still comes due exactly when asked; events are queued only for
listeners."""

from __future__ import annotations

from ipaddress import IPv4Address

from stack.host import Conn
from stack.runtime import Stack, heap_frozen
from stack.tcp import Event, EventKind, State, TcbConfig
from tests.unit.test_ip_input import FakeLink

PEER = IPv4Address("198.18.0.2")


def make() -> Stack:
    return Stack(FakeLink(), config=TcbConfig())


def with_listeners(*ports: int) -> tuple[Stack, list[Conn]]:
    """A Stack not started, with a passive OPEN on each port and an empty timer heap."""
    stack = make()
    with stack.pool.lock:
        conns = [stack.pool.open_passive(port, 0.0) for port in ports]
    stack._heap.clear()
    stack._armed.clear()
    return stack, conns


def test_a_later_deadline_rides_on_the_entry_already_there():
    stack, (a, b) = with_listeners(80, 81)
    stack._schedule(a, 5.0)
    for later in (6.0, 7.0, 9.0):  # e.g. the retransmission timer restarted by each ACK
        stack._schedule(a, later)
    assert len(stack._heap) == 1
    stack._schedule(b, 8.0)
    assert stack._due(4.9) == []
    assert stack._due(5.0) == []  # a's entry came up, and moved on to its deadline now, 9.0
    assert [(d, c) for d, _, c in sorted(stack._heap)] == [(8.0, b), (9.0, a)]
    assert stack._due(8.5) == [b]
    assert stack._due(9.0) == [a]
    assert stack._heap == [] and stack._armed == {}


def test_an_earlier_deadline_is_pushed_and_the_one_it_replaces_goes_stale():
    stack, (a,) = with_listeners(80)
    stack._schedule(a, 5.0)
    stack._schedule(a, 2.0)  # e.g. a delayed ACK before the retransmission timer
    assert stack._due(2.0) == [a]
    assert stack._due(10.0) == []  # the entry at 5.0 is stale: a was due once, at 2.0
    stack._schedule(a, 12.0)  # after it fired, the next deadline is pushed again
    assert stack._due(12.0) == [a]


def test_a_deadline_that_moved_later_then_earlier_comes_due_at_the_earlier():
    stack, (a,) = with_listeners(80)
    stack._schedule(a, 5.0)
    stack._schedule(a, 9.0)
    stack._schedule(a, 7.0)  # still after the entry at 5.0: rides on it
    assert stack._due(5.0) == []
    assert stack._due(6.9) == []
    assert stack._due(7.0) == [a]


def test_a_connections_timers_fire_through_the_heap():
    """The pool schedules through the stack; what comes due is what the TCB's deadline says."""
    stack = make()
    with stack.pool.lock:
        conn = stack.pool.open_active(PEER, 7, 100.0)  # SYN sent: the retransmission timer runs
        deadline = conn.tcb.deadline
        assert deadline is not None
        assert stack._due(deadline - 0.001) == []
        assert stack._due(deadline) == [conn]
        stack.pool.fire_timer(conn, deadline)  # the SYN again, and the timer restarted
        assert conn.tcb.state is State.SYN_SENT and conn.tcb.retransmissions == 1
        assert stack._due(conn.tcb.deadline) == [conn]


def test_events_are_queued_only_for_listeners():
    stack = make()
    with stack.pool.lock:
        stack.pool.open_active(PEER, 7, 0.0)
        stack._notify(stack.pool.get("c1"), Event(EventKind.DATA))
    assert stack._news == []
    heard: list[tuple[str, Event]] = []
    stack.subscribe(lambda cid, ev: heard.append((cid, ev)))
    with stack.pool.lock:
        stack._notify(stack.pool.get("c1"), Event(EventKind.DATA, count=3))
    stack._deliver_news(wait=True)
    assert heard == [("c1", Event(EventKind.DATA, count=3))]
    assert stack._news == []


def test_the_heap_alive_when_a_stack_starts_is_kept_out_of_collections_until_it_ends() -> None:
    """heap_frozen, which tcpsh, the daemon and the benchmark hold around a running stack: what lived
    before is no work for a full collection (that would stall the stack's threads), and comes back to
    the collector after, garbage included."""
    import gc
    import weakref

    class Cycle:
        me: object

    garbage = Cycle()
    garbage.me = garbage
    gone = weakref.ref(garbage)
    del garbage
    assert gc.get_freeze_count() == 0
    with heap_frozen():
        assert gc.get_freeze_count() > 0
        gc.collect()
        assert gone() is not None  # frozen: not walked, so not collected
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gone() is None
