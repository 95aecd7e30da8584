from stack.tcp import EventKind, State
from tests.core.net import connected


def test_handshake_data_and_active_close():
    net = connected(codec=False)
    net.take("a", net.a.tcb.send(b"hello", net.now))
    net.run_until(lambda: bytes(net.b.received) == b"hello")
    net.take("a", net.a.tcb.close(net.now))
    net.run_until(lambda: net.states() == (State.FIN_WAIT_2, State.CLOSE_WAIT))
    net.take("b", net.b.tcb.close(net.now))
    net.run_until(lambda: net.b.tcb.state is State.CLOSED and net.a.tcb.state is State.TIME_WAIT)
    net.run_until(lambda: net.a.tcb.state is State.CLOSED)
    assert EventKind.TIME_WAIT_OVER in net.a.kinds()


def test_simultaneous_close_goes_through_closing():
    net = connected(codec=False)
    net.take("a", net.a.tcb.close(net.now))
    net.take("b", net.b.tcb.close(net.now))
    assert net.states() == (State.FIN_WAIT_1, State.FIN_WAIT_1)
    net.run_until(lambda: net.states() == (State.TIME_WAIT, State.TIME_WAIT))
    net.run_until(lambda: net.states() == (State.CLOSED, State.CLOSED))


def test_data_is_signalled_before_the_fin_that_follows_it():
    """A FIN implies PUSH for the text before it (3.10.7.4 eighth): the user hears of the text first."""
    net = connected(codec=False)
    net.b.auto_read = False
    net.take("a", net.a.tcb.send(b"last words", net.now))
    net.take("a", net.a.tcb.close(net.now))
    net.run_until(lambda: net.b.tcb.state is State.CLOSE_WAIT)
    kinds = [k for k in net.b.kinds() if k in (EventKind.DATA, EventKind.PEER_CLOSED)]
    assert kinds == [EventKind.DATA, EventKind.PEER_CLOSED]
    assert net.b.tcb.receive(100, net.now).data == b"last words"
